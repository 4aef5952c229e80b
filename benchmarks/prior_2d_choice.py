"""Which 2D prior, fine-tuned or not, for the paper's PSF and for microscope-like data? (issue #12)

    python benchmarks/prior_2d_choice.py [--images camera,coins] [--crop 512] [--micro-size 128]
                                         [--suites paper,microscopy]
                                         [--variants generic,generic-200,paper-prior-200]
                                         [--out docs/performance/prior_2d_choice.jsonl]

Variants (the fast preset's network in every case, no held-out check):

* ``generic``: the shipped generic 2D prior as it is (the 2D default for every PSF);
* ``generic-200``: the same prior fine-tuned 200 blind-spot steps of 16 patches on the image;
* ``paper-prior-200``: the prior made for the paper's PSF (its Lucy-Richardson start), fine-tuned
  200 steps (the 2D default for the paper's PSF until stop 21).

Runs on the paper's suite (scikit-image's 14 images degraded by the paper's protocol, beside the
best Lucy-Richardson, oracle iterations) and on the 2D cases of the quick microscopy suite (the
paper-PSF prior only where the case has the paper's PSF). One JSON line per image and variant
(PSNR, SSIM, seconds), then one summary line per suite and variant.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _io_common import emit
from siamdecon import Deconvolver, evaluate, make_config, richardson_lucy_series
from siamdecon.benchmark import suite_2d
from siamdecon.benchmark.microscopy import microscopy_cases
from siamdecon.benchmark.suites import IMAGES_2D
from siamdecon.prior_choice import shipped_priors

LR_START = {"kind": "lucy-richardson", "iterations": 1}


def _config(variant: str):
    generic = next(str(p) for p in shipped_priors() if p.name == "fast-2d-generic.pt")
    if variant == "generic":
        return make_config("fast", 2, prior={"source": generic, "fine_tune_steps": 0})
    if variant == "generic-200":
        return make_config("fast", 2, prior={"source": generic, "fine_tune_steps": 200})
    if variant == "paper-prior-200":
        return make_config("fast", 2, training={"start": LR_START}, prior={"fine_tune_steps": 200})
    raise SystemExit(f"unknown variant {variant!r}")


def _run(variant: str, noisy: np.ndarray, psf: np.ndarray) -> tuple[np.ndarray, float, str]:
    t = time.perf_counter()
    model = Deconvolver.fit(noisy, psf, _config(variant), progress=False)
    est = model.predict(noisy)
    return est, time.perf_counter() - t, str(model.prior)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", default=",".join(IMAGES_2D))
    ap.add_argument("--crop", type=int, default=512)
    ap.add_argument("--micro-size", type=int, default=128, help="side of the microscopy cases (the quick suite's: 128)")
    ap.add_argument("--suites", default="paper,microscopy")
    ap.add_argument("--variants", default="generic,generic-200,paper-prior-200")
    ap.add_argument("--out", default="docs/performance/prior_2d_choice.jsonl")
    args = ap.parse_args()
    variants = args.variants.split(",")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    summary: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    suites = args.suites.split(",")
    for c in suite_2d(args.images.split(","), args.crop) if "paper" in suites else ():
        series = richardson_lucy_series(c.noisy, c.psf, (1, 2, 3, 5, 10, 20))
        lr = max((evaluate(v, c.clean) for v in series.values()), key=lambda m: m["psnr"])
        summary.setdefault(("paper", "lr-best"), []).append((lr["psnr"], lr["ssim"], 0.0))
        for v in variants:
            est, sec, prior = _run(v, c.noisy, c.psf)
            m = evaluate(est, c.clean)
            summary.setdefault(("paper", v), []).append((m["psnr"], m["ssim"], sec))
            emit(
                out,
                {
                    "suite": "paper",
                    "image": c.name,
                    "variant": v,
                    "prior": prior,
                    "psnr": round(m["psnr"], 3),
                    "ssim": round(m["ssim"], 4),
                    "lr_best_psnr": round(lr["psnr"], 3),
                    "seconds": round(sec, 1),
                },
            )
    micro = microscopy_cases(quick=True, patterns=["2d-*"], shapes={2: (args.micro_size,) * 2})
    for case in micro if "microscopy" in suites else ():
        for v in variants:
            if v == "paper-prior-200" and case.psf_name != "paper-2d":
                continue
            est, sec, prior = _run(v, case.noisy, case.psf)
            m = evaluate(case.to_truth(est), case.clean)  # as the suite scores it
            summary.setdefault(("microscopy", v), []).append((m["psnr"], m["ssim"], sec))
            emit(
                out,
                {
                    "suite": "microscopy",
                    "size": args.micro_size,
                    "image": case.key,
                    "variant": v,
                    "prior": prior,
                    "psnr": round(m["psnr"], 3),
                    "ssim": round(m["ssim"], 4),
                    "seconds": round(sec, 1),
                },
            )
    for (suite, v), rows in summary.items():
        a = np.array(rows)
        emit(
            out,
            {
                "suite": suite,
                "variant": v,
                "n": len(rows),
                "mean_psnr": round(float(a[:, 0].mean()), 3),
                "mean_ssim": round(float(a[:, 1].mean()), 4),
                "mean_seconds": round(float(a[:, 2].mean()), 1),
            },
        )


if __name__ == "__main__":
    main()
