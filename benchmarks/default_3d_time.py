"""Time the 3D default end to end on a large microscopy-suite volume: fit, predict, check, fallback.

    python benchmarks/default_3d_time.py [--shape 64,256,256] [--case 3d-confocal/membranes] [--threads N]

What ``siamdecon deconvolve`` runs on one 3D volume with the fast preset (the shipped prior for the
PSF, fine-tuned; prediction; the held-out check and, when it falls back, Spitfire on the whole
volume), with each stage's seconds, the process's peak resident memory (the volume, the model and
every stage; Linux) and the PSNR of the input, the network and the written result. Prints one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from siamdecon import Deconvolver, make_config
from siamdecon.benchmark.microscopy import microscopy_cases
from siamdecon.metrics import psnr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="64,256,256")
    ap.add_argument("--case", default="3d-confocal/membranes")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: PyTorch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = tuple(int(s) for s in args.shape.split(","))
    case = next(microscopy_cases(quick=True, patterns=[args.case], shapes={3: shape}))
    t = time.perf_counter()
    model = Deconvolver.fit(case.noisy, case.psf, make_config("fast", 3), progress=False)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    net = model.predict(case.noisy)
    predict_s = time.perf_counter() - t
    t = time.perf_counter()
    report = model.check(case.noisy)
    check_s = time.perf_counter() - t
    t = time.perf_counter()
    written = report.output(case.noisy, model.psf, net)
    fallback_s = time.perf_counter() - t

    def score(x):
        return round(psnr(case.to_truth(x), case.clean), 2)

    print(
        json.dumps(
            {
                "case": case.key,
                "shape": list(shape),
                "threads": torch.get_num_threads(),
                "prior": model.prior,
                "steps": len(model.history),
                "hessian_choice": model.provenance.get("hessian_choice"),
                "fit_seconds": round(fit_s, 1),
                "predict_seconds": round(predict_s, 1),
                "check_seconds": round(check_s, 1),
                "fallback_seconds": round(fallback_s, 1),
                "total_seconds": round(fit_s + predict_s + check_s + fallback_s, 1),
                "winner": report.winner.label,
                "step_z": round(report.step_z, 1),
                "psnr_input": score(case.noisy),
                "psnr_network": score(net),
                "psnr_written": score(written),
                # ru_maxrss is in KiB on Linux.
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
