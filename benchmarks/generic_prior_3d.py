"""A generic 3D prior on the quick microscopy suite's 3D cases: alone, and fine-tuned on the volume.

The prior is the fast 3D preset's network pretrained on random PSFs, cameras and structures
(``siamdecon pretrain --generic --ndim 3``; the shipped ``fast-3d-generic.pt`` by default). Each
variant runs on every 3D quick case; one JSON line per (case, variant) with PSNR/SSIM against the
truth, in the truth's units, as the microscopy benchmark scores them.

    python benchmarks/generic_prior_3d.py                       # the shipped prior, both variants
    python benchmarks/generic_prior_3d.py --prior my.pt --variants prior-alone -o out.jsonl

Results: docs/priors.md ("The generic 3D prior"), docs/performance/generic_3d_prior_eval.jsonl.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from siamdecon import Deconvolver, make_config
from siamdecon.benchmark.microscopy import microscopy_cases
from siamdecon.metrics import evaluate
from siamdecon.prior_choice import shipped_priors


def _variants(prior: str) -> dict[str, dict]:
    return {
        "prior-alone": {"prior": {"source": prior, "fine_tune_steps": 0}},
        # What the fast 3D default runs: 200 blind-spot steps on the volume.
        "prior+200-bsp": {"prior": {"source": prior, "fine_tune_steps": 200}},
        "prior+200-eq3": {"prior": {"source": prior, "fine_tune_steps": 200, "fine_tune_loss": "siamese-reconvolved"}},
    }


def main() -> None:
    shipped = next((str(p) for p in shipped_priors() if p.name == "fast-3d-generic.pt"), None)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prior", default=shipped, help="prior file (default: the shipped fast-3d-generic.pt)")
    ap.add_argument("--variants", default="prior-alone,prior+200-bsp", help="comma-separated variants")
    ap.add_argument("--cases", default="3d-*", help="pattern on the quick suite's case keys")
    ap.add_argument("-o", "--output", type=Path, help="append the JSON lines to this file")
    args = ap.parse_args()
    if args.prior is None:
        ap.error("no shipped fast-3d-generic.pt: give --prior")
    variants = _variants(args.prior)
    chosen = args.variants.split(",")
    unknown = [v for v in chosen if v not in variants]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; choose from {', '.join(variants)}")
    for case in microscopy_cases(quick=True, patterns=[args.cases]):
        for name in chosen:
            cfg = make_config("fast", 3, **variants[name])
            t = time.perf_counter()
            model = Deconvolver.fit(case.noisy, case.psf, cfg, progress=False, allow_interrupt=False)
            scores = evaluate(case.to_truth(model.predict(case.noisy)), case.clean)
            row = {
                "case": case.key,
                "variant": name,
                "psnr": round(scores["psnr"], 2),
                "ssim": round(scores["ssim"], 3),
                "seconds": round(time.perf_counter() - t, 1),
                "prior": model.prior,
            }
            line = json.dumps(row)
            print(line, flush=True)
            if args.output is not None:
                with args.output.open("a") as f:
                    f.write(line + "\n")


if __name__ == "__main__":
    main()
