"""Does the held-out check pick the better estimate? (issue #12, item 5)

    python benchmarks/holdout_check.py [--quick] [--cases '3d-*'] [--out docs/holdout/results.jsonl]
                                       [--models DIR]

For every case of the microscopy suite: train the default (fast preset) as `deconvolve` does, run
`Deconvolver.check` (no ground truth), then compute every candidate on the whole image and score
it against the truth. One JSON line per case: each candidate's held-out error and true PSNR, the
check's winner (the network as is or after one Lucy-Richardson step, or a classical method), the
PSNR of what the checked default writes, and the oracle best. Models are kept
in `--models` so a rerun skips training.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from siamdecon import Deconvolver, make_config
from siamdecon.benchmark.microscopy import microscopy_cases
from siamdecon.classical import richardson_lucy_refine
from siamdecon.holdout import classical_estimate
from siamdecon.metrics import psnr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cases", action="append", default=[])
    ap.add_argument("--out", default="docs/holdout/results.jsonl")
    ap.add_argument("--models", default="/tmp/holdout-models")
    ap.add_argument("--folds", type=int, help="masks (default: the check's own choice)")
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    models = Path(args.models)
    models.mkdir(parents=True, exist_ok=True)
    for case in microscopy_cases(quick=args.quick, patterns=args.cases):
        row: dict = {"case": case.key}
        path = models / (case.key.replace("/", "__") + ".pt")
        t = time.perf_counter()
        if path.exists():
            model = Deconvolver.load(path)
        else:
            model = Deconvolver.fit(case.noisy, case.psf, make_config("fast", case.clean.ndim), progress=False)
            model.save(path)
        row["train_seconds"] = round(time.perf_counter() - t, 1)
        net = model.predict(case.noisy)
        row["input"] = round(psnr(case.to_truth(case.noisy), case.clean), 3)
        row["network"] = round(psnr(case.to_truth(net), case.clean), 3)
        report = model.check(case.noisy, folds=args.folds)
        row["check_seconds"] = round(report.seconds, 1)
        row["pixels"] = report.pixels
        row["z"] = round(report.z, 2)
        row["winner"] = report.winner.label
        row["heldout"] = {
            **{c.label: c.error for c in report.networks},
            **{c.label: c.error for c in report.classical},
        }
        truth: dict[str, float] = {"network": row["network"]}
        for c in report.networks:
            if c.params.get("lr_steps"):
                est = richardson_lucy_refine(
                    net, case.noisy, model.psf, offset=report.noise.offset, iterations=c.params["lr_steps"]
                )
                truth[c.label] = round(psnr(case.to_truth(est), case.clean), 3)
        for c in report.classical:
            est = classical_estimate(c, case.noisy, model.psf, report.noise.offset)
            truth[c.label] = round(psnr(case.to_truth(est), case.clean), 3)
        row["psnr"] = truth
        row["written"] = truth[report.winner.label]
        row["best_classical_by_check"] = report.classical[0].label
        row["best_by_truth"] = max(truth, key=truth.get)
        labels = list(truth)
        errs = np.array([row["heldout"][k] for k in labels])
        ps = np.array([truth[k] for k in labels])
        row["rank_corr"] = round(float(np.corrcoef(np.argsort(np.argsort(errs)), np.argsort(np.argsort(-ps)))[0, 1]), 3)
        print(json.dumps({k: v for k, v in row.items() if k not in ("heldout", "psnr")}), flush=True)
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
