"""Lucy-Richardson steps from the network's estimate: true PSNR and held-out error per step count (issue #12).

    python benchmarks/refine_steps.py [--quick] [--cases '3d-*/nuclei'] [--steps 0,1,2,4,8]
        >> docs/performance/refine_steps.jsonl

For every case of the microscopy suite (full sizes unless ``--quick``): the fast default is fitted
as ``deconvolve`` fits it; for every step count ``k``, the true PSNR of the network's estimate of
the whole image after ``k`` Lucy-Richardson steps from it (``richardson_lucy_refine``), and the
held-out error the check would give it: on the check's region, folds and held-out pixels, the
network runs on each fold's masked copy and the ``k`` steps treat that fold's pixels as missing
data (as the check scores its one step). The best classical candidate's error comes from the
check itself. One JSON line per case.
"""

import argparse
import json
import time

import numpy as np
import torch

from siamdecon import Deconvolver, make_config
from siamdecon.benchmark.microscopy import microscopy_cases
from siamdecon.classical import richardson_lucy_refine
from siamdecon.holdout import _candidate, _held_out, reconvolve, replace_by_neighbours
from siamdecon.metrics import psnr
from siamdecon.noise import NoiseModel

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true")
parser.add_argument("--cases", default="3d-*/nuclei")
parser.add_argument("--steps", default="0,1,2,3,4,6,8,12,16")
parser.add_argument("--threads", type=int, default=2)
args = parser.parse_args()
torch.set_num_threads(args.threads)
counts = [int(k) for k in args.steps.split(",")]


def refine(d: np.ndarray, data: np.ndarray, op, k: int, offset: float, w=None) -> np.ndarray:
    if k == 0:
        return d
    return richardson_lucy_refine(d, data, op, offset=offset, iterations=k, weights=w)


for case in microscopy_cases(quick=args.quick, patterns=args.cases.split(",")):
    y = case.noisy.astype(np.float32)
    t = time.perf_counter()
    model = Deconvolver.fit(y, case.psf, make_config("fast", case.clean.ndim), progress=False, allow_interrupt=False)
    fit_s = time.perf_counter() - t
    n = model.normalization
    noise = NoiseModel(n.gain, n.offset, n.read_variance)
    report = model.check(y, noise=noise)
    # The check's own held-out pixels, folds, error weights and PSF operator.
    ho = _held_out(y, model.psf, noise, model.config.mask.fraction, None, None, None, 0)
    yc, masks, held, weights, op = ho.image, ho.masks, ho.held, ho.weights, ho.op
    est = model.predict(y)
    true = {k: round(psnr(case.to_truth(refine(est, y, op, k, noise.offset)), case.clean), 3) for k in counts}
    preds = {k: np.zeros_like(yc) for k in counts}
    for mask in masks:
        masked = replace_by_neighbours(yc, mask)
        d = model.predict(masked)
        for k in counts:
            preds[k][mask] = reconvolve(refine(d, masked, op, k, noise.offset, (~mask).astype(np.float32)), op)[mask]
    held_err = {k: round(_candidate("n", {}, preds[k], yc, held, weights).error, 6) for k in counts}
    best = report.classical[0]
    row = {
        "case": case.key,
        "shape": list(y.shape),
        "psnr_input": round(psnr(case.to_truth(y), case.clean), 3),
        "psnr_steps": true,
        "heldout_steps": held_err,
        "check_network": round(report.networks[0].error, 6),
        "best_classical": best.label,
        "best_classical_error": round(best.error, 6),
        "psnr_best_classical_written": round(psnr(case.to_truth(report.output(y, model.psf, None)), case.clean), 3)
        if report.fell_back
        else None,
        "winner": report.winner.label,
        "fit_seconds": round(fit_s, 1),
    }
    print(json.dumps(row), flush=True)
