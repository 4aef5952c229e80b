"""Averaging the 3D default's two fine-tuned networks instead of choosing one (issue #12).

    python benchmarks/ensemble_fine_tune.py [--quick] [--cases '3d-*'] [--no-check]
        >> docs/performance/ensemble_fine_tune.jsonl

The 3D default fine-tunes the prior twice (Hessian weights 0 and 0.03) and keeps the network whose
estimate predicts held-out pixels better (``Deconvolver._from_result``). This measures, per case of
the microscopy suite, one seeded fit of both: each network's true PSNR and held-out error, the same
for the mean of their two estimates, and (unless ``--no-check``) what the check writes when it starts
from the kept network or from the mean. Held-out errors of one case use the same pixels and folds
(:func:`siamdecon.holdout.score_networks`), so they compare. One JSON line per case.
"""

import argparse
import json
import time

import numpy as np
import torch

from siamdecon import Deconvolver, make_config
from siamdecon.benchmark.microscopy import microscopy_cases
from siamdecon.holdout import check, score_networks
from siamdecon.metrics import psnr
from siamdecon.psf import normalize_psf, validate_psf
from siamdecon.training import train

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true")
parser.add_argument("--cases", default="3d-*")
parser.add_argument("--no-check", action="store_true")
parser.add_argument("--threads", type=int, default=2)
args = parser.parse_args()
torch.set_num_threads(args.threads)

for case in microscopy_cases(quick=args.quick, patterns=args.cases.split(",")):
    y = case.noisy.astype(np.float32)
    cfg = make_config("fast", y.ndim)
    grid = cfg.prior.hessian_grid
    psf = normalize_psf(validate_psf(case.psf, ndim=y.ndim))
    t = time.perf_counter()
    result = train(y, psf, cfg, progress=False, allow_interrupt=False)
    fit_s = time.perf_counter() - t
    if len(result.candidates) < 2:
        print(json.dumps({"case": case.key, "skipped": "fewer than two fine-tuned networks"}), flush=True)
        continue
    models = [
        Deconvolver(r.network, r.config or cfg, psf, r.normalization, r.history, r.seconds, r.interrupted, r.prior)
        for r in result.candidates
    ]

    def mean_predict(image: np.ndarray, models: list[Deconvolver] = models) -> np.ndarray:
        return np.mean([m.predict(image) for m in models], axis=0).astype(np.float32)

    predicts = [m.predict for m in models] + [mean_predict]
    kwargs = models[0]._check_arguments()
    scores = score_networks(predicts, y, psf, **kwargs)
    estimates = [p(y) for p in predicts]
    names = [f"hessian {w:g}" for w in grid] + ["mean"]
    row = {
        "case": case.key,
        "shape": list(y.shape),
        "psnr_input": round(psnr(case.to_truth(y), case.clean), 3),
        "psnr": {n: round(psnr(case.to_truth(e), case.clean), 3) for n, e in zip(names, estimates)},
        "held_out": {n: round(s.error, 6) for n, s in zip(names, scores)},
        "fit_seconds": round(fit_s, 1),
    }
    if not args.no_check:
        kept = int(np.argmin([s.error for s in scores[: len(models)]]))
        for label, index in (("kept", kept), ("mean", len(models))):
            report = check(predicts[index], y, psf, **kwargs)
            written = report.output(y, psf, estimates[index])
            row[f"written_{label}"] = {
                "psnr": round(psnr(case.to_truth(written), case.clean), 3),
                "winner": report.winner.label,
            }
    print(json.dumps(row), flush=True)
