"""siamdecon's Spitfire against sdeconv 1.0.4's, the reference it reproduces: differences and times.

    python benchmarks/spitfire_check.py [--quick] [--sizes 64 128] [--regs 0.9 0.995 0.999] [--no-3d] [--no-256]

Each case blurs a synthetic fluorescence image (``fluorescence_2d`` / ``tubes_3d``) with a
Gibson-Lanni PSF from ``generate_psf`` (17x17 in 2D, 9x17x17 in 3D, which is asymmetric along z),
adds Gaussian noise, and deconvolves it with both implementations at several ``reg`` values
(other parameters at their defaults: weight 0.6, pad 13, gradient step 0.01, precision 1e-7).
One JSON row per case: the largest absolute difference (also relative to the image range), the
PSNR of ours against sdeconv over the image range, both iteration counts, both run times and the
speed-up; a 256x256 image with a 33x33 PSF is run for a fixed 150 iterations only, to compare
the cost per iteration. Both run in this process on the same threads; sdeconv's 2D data term is a
direct convolution, which is what makes it slow.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scipy import signal

from siamdecon.psf import generate_psf
from siamdecon.simulate import fluorescence_2d, tubes_3d
from siamdecon.variational import load_sdeconv_spitfire, run_sdeconv_spitfire, spitfire


def _image(shape: tuple[int, ...], psf: np.ndarray, seed: int) -> np.ndarray:
    truth = fluorescence_2d(shape[0], seed=seed) if len(shape) == 2 else tubes_3d(shape, seed=seed)
    blurred = signal.convolve(truth, psf / psf.sum(), mode="same")
    noise = 0.01 * np.random.default_rng(seed).standard_normal(blurred.shape)
    return (100.0 * (blurred + noise) + 10.0).astype(np.float32)  # not in [0, 1]: exercises the scaling


def _case(name: str, image: np.ndarray, psf: np.ndarray, reg: float, max_iterations: int = 2500) -> dict:
    t = time.perf_counter()
    ours = spitfire(image, psf, reg=reg, max_iterations=max_iterations, return_info=True)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    ref = run_sdeconv_spitfire(image, psf, reg=reg, max_iterations=max_iterations)
    t_ref = time.perf_counter() - t
    span = float(np.ptp(image))
    diff = np.abs(ours.image.astype(np.float64) - ref.image)
    mse = float(np.mean(diff**2))
    return {
        "case": name,
        "shape": list(image.shape),
        "psf": list(psf.shape),
        "reg": reg,
        "max_abs_diff": float(diff.max()),
        "max_abs_diff_rel_range": float(diff.max()) / span,
        "psnr_db_vs_sdeconv": float(10 * np.log10(span**2 / mse)) if mse > 0 else float("inf"),
        "iterations_ours": ours.iterations,
        "iterations_sdeconv": ref.iterations,
        "stop_reason_ours": ours.stop_reason,
        "seconds_ours": round(t_ours, 3),
        "seconds_sdeconv": round(t_ref, 3),
        "ms_per_iteration_ours": round(1e3 * t_ours / ours.iterations, 2),
        "ms_per_iteration_sdeconv": round(1e3 * t_ref / ref.iterations, 2),
        "speedup": round(t_ref / t_ours, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="64x64 and one reg only")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="2D image sides")
    parser.add_argument("--regs", type=float, nargs="+", default=[0.9, 0.995, 0.999])
    parser.add_argument("--no-3d", action="store_true", help="skip the 16x64x64 volume")
    parser.add_argument("--no-256", action="store_true", help="skip the 256x256 per-iteration timing")
    args = parser.parse_args()
    cls, reason = load_sdeconv_spitfire()
    print(json.dumps({"sdeconv": reason, "torch": torch.__version__, "threads": torch.get_num_threads()}))
    if cls is None:
        return
    sizes, regs = ([64], [0.995]) if args.quick else (args.sizes, args.regs)

    psf2 = generate_psf(ndim=2, size=17)
    for size in sizes:
        image = _image((size, size), psf2, seed=size)
        for reg in regs:
            print(json.dumps(_case(f"2d_{size}", image, psf2, reg)), flush=True)
    if not (args.no_256 or args.quick):
        # The benchmark's size and a wide PSF; sdeconv takes minutes to converge here, so both
        # run a fixed 150 iterations: a per-iteration cost comparison.
        psf33 = generate_psf(ndim=2, size=33)
        image = _image((256, 256), psf33, seed=256)
        print(json.dumps(_case("2d_256_psf33_150_iterations", image, psf33, 0.995, max_iterations=150)), flush=True)
    if not (args.no_3d or args.quick):
        psf3 = generate_psf(ndim=3, size=17, num_z=9)
        volume = _image((16, 64, 64), psf3, seed=3)
        for reg in (0.99, 0.995):
            print(json.dumps(_case("3d_16x64x64", volume, psf3, reg)), flush=True)


if __name__ == "__main__":
    main()
