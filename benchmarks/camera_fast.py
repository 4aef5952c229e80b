"""Issue #2 target: default `siamdecon deconvolve` on the degraded camera image vs the best Lucy-Richardson.

Runs the real command line (as a user would), once per loss preset, and prints JSON:
PSNR/SSIM/time of the input, of Lucy-Richardson at 1, 2, 3, 5, 10, 20 iterations (scikit-image's
start of 0.5 and siamdecon's mean start) and of siamdecon.

    python benchmarks/camera_fast.py [--losses siamese-deconvolved,blind-spot] [--steps N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from siamdecon import evaluate, richardson_lucy_series
from siamdecon.demo import LR_ITERATIONS, camera_example
from siamdecon.io import read_image, write_image


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--losses", default="default,siamese-deconvolved,siamese-reconvolved,blind-spot")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    clean, noisy, psf = camera_example(512, seed=0)
    out: dict = {"image": "skimage camera 512x512, paper protocol, paper 2D PSF", "input": evaluate(noisy, clean)}
    lr = {}
    for init in (0.5, "mean"):
        t = time.perf_counter()
        series = richardson_lucy_series(noisy, psf, LR_ITERATIONS, init=init, clip=init == 0.5)
        seconds = time.perf_counter() - t
        for n, v in series.items():
            lr[f"init={init},n={n}"] = {**evaluate(v, clean), "seconds_all_iterations": seconds}
    best_key = max(lr, key=lambda k: lr[k]["psnr"])
    out["lucy_richardson"] = lr
    out["lucy_richardson_best"] = {"setting": best_key, **lr[best_key]}
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_image(tmp / "noisy.tif", noisy)
        np.save(tmp / "psf.npy", psf)
        for loss in args.losses.split(","):
            cmd = [
                sys.executable,
                "-m",
                "siamdecon.cli",
                "deconvolve",
                str(tmp / "noisy.tif"),
                "--psf",
                str(tmp / "psf.npy"),
                "-o",
                str(tmp / "out.tif"),
                "--quiet",
                "--seed",
                str(args.seed),
            ]
            if loss != "default":
                cmd += ["--loss", loss]
            if args.steps is not None:
                cmd += ["--steps", str(args.steps)]
            t = time.perf_counter()
            subprocess.run(cmd, check=True)
            seconds = time.perf_counter() - t
            scores = evaluate(read_image(tmp / "out.tif").data, clean)
            runs[loss] = {
                **scores,
                "seconds": seconds,
                "psnr_gain_over_best_lr": scores["psnr"] - out["lucy_richardson_best"]["psnr"],
            }
            print(json.dumps({loss: runs[loss]}), file=sys.stderr)
    out["siamdecon"] = runs
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
