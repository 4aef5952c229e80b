"""The sparse-Hessian term in the fine-tuning, and choosing its weight on held-out pixels (issue #12).

    python benchmarks/hessian_fine_tune.py [--quick] [--cases '3d-*'] [--weights 0,0.01,0.03]
        >> docs/performance/hessian_fine_tune.jsonl

For every case of the microscopy suite (full sizes unless ``--quick``) and every weight: the fast
default with ``prior.fine_tune_hessian`` set to the weight, fitted as ``deconvolve`` fits it, the
network's true PSNR, the held-out check run as ``deconvolve`` runs it (its network error, which
needs no ground truth, its winner and the PSNR of what it writes). One JSON line per case and
weight. Every weight's check uses the same held-out pixels (seeded folds on a region that depends
on the shapes only), so the network errors of one case compare across weights, and with the
``check.network`` of the suite's ``default`` entry for the same case.
"""

import argparse
import json
import time

import numpy as np
import torch

from siamdecon import Deconvolver, make_config
from siamdecon.benchmark.microscopy import microscopy_cases
from siamdecon.metrics import psnr

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true")
parser.add_argument("--cases", default="3d-*")
parser.add_argument("--weights", default="0,0.03")
parser.add_argument("--threads", type=int, default=2)
args = parser.parse_args()
torch.set_num_threads(args.threads)
weights = [float(w) for w in args.weights.split(",")]
for case in microscopy_cases(quick=args.quick, patterns=args.cases.split(",")):
    y = case.noisy.astype(np.float32)
    for w in weights:
        cfg = make_config("fast", case.clean.ndim, fine_tune_hessian=w)
        t = time.perf_counter()
        model = Deconvolver.fit(y, case.psf, cfg, progress=False, allow_interrupt=False)
        fit_s = time.perf_counter() - t
        est = model.predict(y)
        t = time.perf_counter()
        report = model.check(y)
        written = report.output(y, model.psf, est)
        check_s = time.perf_counter() - t
        row = {
            "case": case.key,
            "quick": args.quick,
            "shape": list(y.shape),
            "hessian": w,
            "steps": len(model.history),
            "psnr_input": round(psnr(case.to_truth(y), case.clean), 3),
            "psnr_network": round(psnr(case.to_truth(est), case.clean), 3),
            "psnr_written": round(psnr(case.to_truth(written), case.clean), 3),
            "winner": report.winner.label,
            "network_error": round(report.networks[0].error, 6),
            "best_classical_error": round(min(c.error for c in report.classical), 6) if report.classical else None,
            "last_loss": {k: round(v, 5) for k, v in model.history[-1].items() if k not in ("step", "lr", "seconds")}
            if model.history
            else {},
            "fit_seconds": round(fit_s, 1),
            "check_seconds": round(check_s, 1),
        }
        print(json.dumps(row), flush=True)
