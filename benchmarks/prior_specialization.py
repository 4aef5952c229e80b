"""The generic 2D prior specialized to the paper's PSF, against the generic prior, as is and as the default writes it.

    siamdecon pretrain --psf tests/data/paper_psf_2d.npy --init fast-2d-generic.pt --seed 1 \\
        --steps 6000 -o specialized.pt                   # 13 min on 2 CPU cores
    python benchmarks/prior_specialization.py specialized.pt [--out docs/performance/prior_specialization.jsonl]

``pretrain --psf --init`` continues the generic prior's training on synthetic images blurred by
that PSF alone, with the paper's noise (80 % dead leaves, 20 % fluorescence-like). Both priors
run as they are (no fine-tuning) on the paper's suite (scikit-image's 14 images at 512², the
paper's protocol, beside the best Lucy-Richardson with oracle iterations) and on the microscopy
suite's paper-protocol nuclei at 128², 256² and 512²; each is scored as it is ("as is") and as
``siamdecon deconvolve`` writes it after the held-out check ("checked": the network, the network
after one Lucy-Richardson step, or a classical fallback). One JSON line per image and prior, then
one summary line per suite and prior.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from _io_common import emit
from siamdecon import Deconvolver, evaluate, make_config, richardson_lucy_series
from siamdecon.benchmark import suite_2d
from siamdecon.benchmark.microscopy import microscopy_cases
from siamdecon.prior_choice import shipped_priors


def _scores(prior: str, noisy: np.ndarray, psf: np.ndarray, score) -> dict:
    cfg = make_config("fast", 2, prior={"source": prior, "fine_tune_steps": 0})
    model = Deconvolver.fit(noisy, psf, cfg, progress=False)
    plain = model.predict(noisy)
    report = model.check(noisy)
    written = report.output(noisy, model.psf, plain)
    return {"as_is": score(plain), "checked": score(written), "winner": report.winner.label}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prior", help="the specialized prior file")
    ap.add_argument("--out", default="docs/performance/prior_specialization.jsonl")
    args = ap.parse_args()
    generic = next(str(p) for p in shipped_priors() if p.name == "fast-2d-generic.pt")
    priors = {"generic": generic, "specialized": args.prior}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    summary: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for c in suite_2d():
        series = richardson_lucy_series(c.noisy, c.psf, (1, 2, 3, 5, 10, 20))
        lr = max(evaluate(v, c.clean)["psnr"] for v in series.values())
        summary.setdefault(("paper", "lr-best"), []).append((lr, lr))
        for name, src in priors.items():
            r = _scores(src, c.noisy, c.psf, lambda e, c=c: evaluate(e, c.clean)["psnr"])
            summary.setdefault(("paper", name), []).append((r["as_is"], r["checked"]))
            emit(out, {"suite": "paper", "image": c.name, "prior": name, **r, "lr_best": round(lr, 3)})
    for size in (128, 256, 512):
        for case in microscopy_cases(quick=True, patterns=["2d-paper/*"], shapes={2: (size, size)}):
            for name, src in priors.items():
                r = _scores(src, case.noisy, case.psf, lambda e, c=case: evaluate(c.to_truth(e), c.clean)["psnr"])
                summary.setdefault((f"nuclei-{size}", name), []).append((r["as_is"], r["checked"]))
                emit(out, {"suite": "microscopy", "image": case.key, "size": size, "prior": name, **r})
    for (suite, name), rows in summary.items():
        a = np.array(rows)
        emit(out, {"suite": suite, "prior": name, "n": len(rows), "as_is": round(float(a[:, 0].mean()), 3),
              "checked": round(float(a[:, 1].mean()), 3)})  # fmt: skip


if __name__ == "__main__":
    main()
