"""Would a blend of the network with a classical estimate, weighed on held-out pixels, be better?

    python benchmarks/blend_check.py [--cases '3d-*'] [--out docs/performance/blend_check.jsonl]

For every quick microscopy case: the default (fast preset) and `Deconvolver.check` on it; then, for
the best Lucy-Richardson and the best Spitfire candidate of the check, the PSNR against the truth
of `a * network + (1 - a) * classical` for `a` = 0, 0.1, ..., 1 (the oracle's view), and of the
blend whose `a` minimizes the held-out error (the blurred-domain predictions are linear in the
estimate, so `a` has a closed form), with the held-out errors of both ends and of that blend. One
JSON line per case.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _io_common import emit
from siamdecon import Deconvolver, evaluate, make_config
from siamdecon.benchmark.microscopy import microscopy_cases
from siamdecon.holdout import CheckReport, classical_estimate


def heldout_blend(report: CheckReport, kind: str) -> tuple[float, dict[str, float]]:
    """The held-out-optimal weight of the network against the best ``kind`` candidate, and errors."""
    y = report.observed.astype(np.float64)
    w = report.observed_weights.astype(np.float64)
    pn = report.networks[0].predictions.astype(np.float64)
    pc = next(c for c in report.classical if c.name == kind).predictions.astype(np.float64)
    diff = pn - pc
    a = float(np.sum(w * diff * (y - pc)) / max(float(np.sum(w * diff * diff)), 1e-30))

    def error(t: float) -> float:
        return round(float(np.mean(w * (t * pn + (1.0 - t) * pc - y) ** 2)), 6)

    clipped = float(np.clip(a, 0.0, 1.0))
    return a, {"error_network": error(1.0), "error_classical": error(0.0), "error_blend": error(clipped)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="3d-*", help="patterns on the quick suite's case keys")
    ap.add_argument("--out", default="docs/performance/blend_check.jsonl")
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for case in microscopy_cases(quick=True, patterns=args.cases.split(",")):
        t0 = time.perf_counter()

        def score(e: np.ndarray, case=case) -> float:
            return round(evaluate(case.to_truth(e), case.clean)["psnr"], 3)

        model = Deconvolver.fit(case.noisy, case.psf, make_config("fast", case.noisy.ndim), progress=False)
        net = model.predict(case.noisy)
        report = model.check(case.noisy)
        row = {"case": case.key, "psnr_network": score(net), "winner": report.winner.label, "blends": {}}
        for kind in ("spitfire", "lucy-richardson"):
            best = next(c for c in report.classical if c.name == kind)
            est = classical_estimate(best, case.noisy, model.psf, report.noise.offset)
            a, errors = heldout_blend(report, kind)
            clipped = float(np.clip(a, 0.0, 1.0))
            row["blends"][best.label] = {
                "psnr": {f"{t:.1f}": score(t * net + (1.0 - t) * est) for t in np.linspace(0.0, 1.0, 11)},
                "heldout_a": round(a, 3),
                "psnr_heldout_a": score(clipped * net + (1.0 - clipped) * est),
                **errors,
            }
        row["seconds"] = round(time.perf_counter() - t0, 1)
        emit(out, row)


if __name__ == "__main__":
    main()
