"""What the held-out check costs on a large volume, and what its fallback costs.

    python benchmarks/holdout_cost.py [--shape 64,256,256] [--case 3d-widefield/nuclei] [--steps 1]

Builds a microscopy-suite case at ``--shape``, trains the fast preset for ``--steps`` steps (1: a
network the check should reject, so that the fallback runs too), then times ``Deconvolver.check``
and, if it falls back, ``report.estimate`` on the whole volume. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time

from siamdecon import Deconvolver, make_config
from siamdecon.benchmark.microscopy import microscopy_cases
from siamdecon.metrics import psnr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="64,256,256")
    ap.add_argument("--case", default="3d-widefield/nuclei")
    ap.add_argument("--steps", type=int, default=1)
    args = ap.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    case = next(microscopy_cases(quick=True, patterns=[args.case], shapes={len(shape): shape}))
    model = Deconvolver.fit(case.noisy, case.psf, make_config("fast", len(shape), steps=args.steps), progress=False)
    t = time.perf_counter()
    report = model.check(case.noisy)
    check_s = time.perf_counter() - t
    t = time.perf_counter()
    est = report.estimate(case.noisy, model.psf) if report.fell_back else None  # the fallback's cost alone
    fallback_s = time.perf_counter() - t
    print(
        json.dumps(
            {
                "shape": list(shape),
                "region": [[s.start, s.stop] for s in report.region],
                "check_seconds": round(check_s, 1),
                "fallback_seconds": round(fallback_s, 1),
                "winner": report.winner.label,
                "z": round(report.z, 2),
                "psnr_input": round(psnr(case.to_truth(case.noisy), case.clean), 3),
                "psnr_written": round(psnr(case.to_truth(est), case.clean), 3) if est is not None else None,
            }
        )
    )


if __name__ == "__main__":
    main()
