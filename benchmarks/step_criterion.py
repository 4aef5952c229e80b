"""When does the held-out check's Lucy-Richardson step help? Per-pixel errors against the truth.

    python benchmarks/step_criterion.py [--suite paper|microscopy-2d|microscopy-3d] [--prior FILE]
                                        [--out docs/performance/step_criterion.jsonl] [--dumps DIR]

For every image: the default (fast preset; on the paper suite the given 2D prior as it is, default
the shipped generic one), `Deconvolver.check` on it, and the network's result as is and after one
Lucy-Richardson step scored against the truth, and what the check writes. One JSON line per
image: the PSNR change of the step, the relative change of the held-out error by its mean, by the
mean of errors clipped at 9 (3 noise SDs) and by its median, the sign test `step_z` (positive: the
step predicts more held-out pixels better), and whether the check wrote the step. `--dumps`
keeps both per-pixel error arrays. The paper suite is scikit-image's 14 images at 512² and the
microscopy suite's paper-protocol nuclei at 128², 256² and 512²; the microscopy suites are the
quick cases.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from _io_common import emit
from siamdecon import Deconvolver, evaluate, make_config
from siamdecon.benchmark import suite_2d
from siamdecon.benchmark.microscopy import microscopy_cases
from siamdecon.classical import richardson_lucy_refine
from siamdecon.holdout import CheckReport
from siamdecon.prior_choice import shipped_priors


def step_statistics(as_is: np.ndarray, step: np.ndarray) -> dict[str, float]:
    """Relative changes (%) of the step's held-out errors against the estimate as is."""

    def change(a: float, b: float) -> float:
        return round(100.0 * (b / a - 1.0), 2)

    return {
        "mean_change": change(as_is.mean(), step.mean()),
        "clipped_change": change(np.minimum(as_is, 9.0).mean(), np.minimum(step, 9.0).mean()),
        "median_change": change(float(np.median(as_is)), float(np.median(step))),
    }


def _cases(suite: str) -> Iterator[tuple[str, np.ndarray, np.ndarray, Callable[[np.ndarray], float]]]:
    def scorer(case) -> Callable[[np.ndarray], float]:
        return lambda e: round(evaluate(case.to_truth(e), case.clean)["psnr"], 3)

    if suite == "paper":
        for c in suite_2d():
            yield c.name, c.noisy, c.psf, lambda e, c=c: round(evaluate(e, c.clean)["psnr"], 3)
        for size in (128, 256, 512):
            for case in microscopy_cases(quick=True, patterns=["2d-paper/*"], shapes={2: (size, size)}):
                yield f"{case.key}@{size}", case.noisy, case.psf, scorer(case)
    else:
        for case in microscopy_cases(quick=True, patterns=["2d-*" if suite == "microscopy-2d" else "3d-*"]):
            yield case.key, case.noisy, case.psf, scorer(case)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", choices=["paper", "microscopy-2d", "microscopy-3d"], default="paper")
    ap.add_argument("--prior", help="paper suite: the 2D prior file (default the shipped generic prior)")
    ap.add_argument("--out", default="docs/performance/step_criterion.jsonl")
    ap.add_argument("--dumps", help="folder for the per-pixel errors (.npz per image)")
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    prior = args.prior or next(str(p) for p in shipped_priors() if p.name == "fast-2d-generic.pt")
    for name, noisy, psf, score in _cases(args.suite):
        if args.suite == "paper":
            cfg = make_config("fast", 2, prior={"source": prior, "fine_tune_steps": 0})
        else:
            cfg = make_config("fast", noisy.ndim)
        model = Deconvolver.fit(noisy, psf, cfg, progress=False)
        plain = model.predict(noisy)
        report: CheckReport = model.check(noisy)
        step = richardson_lucy_refine(plain, noisy, model.psf, offset=report.noise.offset, iterations=1)
        as_is, stepped = report.networks
        if args.dumps:
            Path(args.dumps).mkdir(parents=True, exist_ok=True)
            np.savez(Path(args.dumps) / (name.replace("/", "__") + ".npz"), as_is=as_is.errors, step=stepped.errors)
        row = {
            "suite": args.suite,
            "image": name,
            "prior": model.prior,
            "psnr_as_is": score(plain),
            "psnr_step": score(step),
            "psnr_written": score(report.output(noisy, model.psf, plain)),
            **step_statistics(as_is.errors, stepped.errors),
            "step_z": round(report.step_z, 2),
            "step_written": bool(report.lr_steps),
            "winner": report.winner.label,
        }
        row["psnr_change"] = round(row["psnr_step"] - row["psnr_as_is"], 3)
        emit(out, row)


if __name__ == "__main__":
    main()
