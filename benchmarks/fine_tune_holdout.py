"""Can held-out pixels choose between the generic 2D prior as is and fine-tuned? (issue #12)

    python benchmarks/fine_tune_holdout.py micro|paper >> docs/performance/fine_tune_holdout.jsonl

For every 2D case of the quick microscopy suite (``micro``) or image of the paper's suite at 512²
(``paper``): the check's held-out pixels ``J`` (its regions, folds and seed) are replaced by their
neighbours' mean, the generic prior is fine-tuned 200 blind-spot steps on that image (so neither
network saw ``J``), and both networks are scored on ``J`` by ``Deconvolver.check`` with the same
folds. One JSON line per case: true PSNR of the prior as is (``psnr0``) and fine-tuned
(``psnr1``), their held-out errors (as is and after one Lucy-Richardson step), paired sign-test z
and t statistic of fine-tuned minus prior. docs/priors.md, "The paper's 2D PSF".
"""

import json
import math
import sys
import time

import numpy as np
import torch

from siamdecon import Deconvolver, evaluate, make_config
from siamdecon.benchmark import suite_2d
from siamdecon.benchmark.microscopy import microscopy_cases
from siamdecon.benchmark.suites import IMAGES_2D
from siamdecon.holdout import MIN_HELD_OUT, _paired_z, check_regions, holdout_folds, replace_by_neighbours
from siamdecon.metrics import psnr
from siamdecon.noise import NoiseModel
from siamdecon.prior_choice import shipped_priors

torch.set_num_threads(2)
G = next(str(p) for p in shipped_priors() if p.name == "fast-2d-generic.pt")
which = sys.argv[1]
if which == "paper":
    cases = [(c.name, c.noisy, c.psf, lambda e, c=c: evaluate(e, c.clean)["psnr"]) for c in suite_2d(IMAGES_2D, 512)]
else:
    cases = [
        (c.key, c.noisy, c.psf, lambda e, c=c: psnr(c.to_truth(e), c.clean))
        for c in microscopy_cases(quick=True, patterns=["2d-*"])
    ]
for name, y, psf, P in cases:
    y = y.astype(np.float32)
    m0 = Deconvolver.fit(y, psf, make_config("fast", 2, prior={"source": G, "fine_tune_steps": 0}), progress=False)
    frac = m0.config.mask.fraction
    context, scored = check_regions(y.shape, m0.psf.shape)
    inner = tuple(slice(s.start - c.start, s.stop - c.start) for s, c in zip(scored, context))
    ishape = tuple(s.stop - s.start for s in inner)
    folds = int(min(8, max(2, math.ceil(MIN_HELD_OUT / max(1.0, math.prod(ishape) * frac)))))
    J = np.zeros(y.shape, bool)
    sub = np.zeros(tuple(c.stop - c.start for c in context), bool)
    sub[inner] = holdout_folds(ishape, folds, frac, 0).any(0)
    J[context] = sub
    t = time.time()
    m1 = Deconvolver.fit(
        replace_by_neighbours(y, J),
        psf,
        make_config("fast", 2, prior={"source": G, "fine_tune_steps": 200}),
        progress=False,
    )
    tft = time.time() - t
    n = m0.normalization
    noise = NoiseModel(n.gain, n.offset, n.read_variance) if (n.gain != 1.0 or n.read_variance != 0.0) else None
    r0 = m0.check(y, noise=noise, lr_iterations=(4,), spitfire_regs=(), folds=folds)
    r1 = m1.check(y, noise=noise, lr_iterations=(4,), spitfire_regs=(), folds=folds)
    assert r0.pixels == r1.pixels == int(J.sum()), (r0.pixels, r1.pixels, J.sum())
    e0 = {c.label: c.error for c in r0.networks}
    e1 = {c.label: c.error for c in r1.networks}
    z = _paired_z(r1.networks[0].errors, r0.networks[0].errors)
    d = r1.networks[0].errors - r0.networks[0].errors
    tstat = d.mean() / (d.std() / math.sqrt(d.size))
    row = {
        "case": name,
        "psnr0": round(P(m0.predict(y)), 3),
        "psnr1": round(P(m1.predict(y)), 3),
        "err0": round(e0["network"], 5),
        "err1": round(e1["network"], 5),
        "z_sign": round(z, 2),
        "t": round(float(tstat), 2),
        "err0_step": round(e0.get("network + 1 Lucy-Richardson step", 0), 5),
        "err1_step": round(e1.get("network + 1 Lucy-Richardson step", 0), 5),
        "ft_s": round(tft, 1),
        "pixels": r0.pixels,
    }
    print(json.dumps(row), flush=True)
