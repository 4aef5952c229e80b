"""Does replacing impulses (salt and pepper) before the generic 2D prior help? (issue #12; not kept)

    python benchmarks/impulse_removal.py [Z]

Pixels more than Z (default 6) noise standard deviations (the camera model estimated from the
image, at the 3x3 median) from their 3x3 median are replaced by it; the default (the generic prior
as is) runs on the image and on the cleaned image. Paper's suite (14 images at 512²) and the quick
microscopy suite's 2D cases: fraction replaced (%), PSNR and SSIM before -> after.
docs/priors.md, "The paper's 2D PSF".
"""

import sys

import numpy as np
import torch
from scipy import ndimage

from siamdecon import Deconvolver, evaluate, make_config
from siamdecon.benchmark import suite_2d
from siamdecon.benchmark.microscopy import microscopy_cases
from siamdecon.benchmark.suites import IMAGES_2D
from siamdecon.noise import estimate_noise

torch.set_num_threads(1)
Z = float(sys.argv[1]) if len(sys.argv) > 1 else 6.0


def clean_impulses(y, z=Z):
    y = y.astype(np.float32)
    med = ndimage.median_filter(y, size=3, mode="reflect")
    nm = estimate_noise(y)
    sd = np.sqrt(np.maximum(nm.variance(med), 1e-12))
    bad = np.abs(y - med) > z * sd
    out = y.copy()
    out[bad] = med[bad]
    return out, bad.mean()


def run(noisy, psf):
    m = Deconvolver.fit(noisy, psf, make_config("fast", 2), progress=False)
    return m.predict(noisy)


def compare(name: str, noisy: np.ndarray, psf: np.ndarray, score) -> tuple[float, ...]:
    """PSNR and SSIM of the default on ``noisy`` and on it with impulses replaced; prints a line."""
    a = score(run(noisy, psf))
    cleaned, frac = clean_impulses(noisy)
    b = score(run(cleaned, psf))
    r = (a["psnr"], a["ssim"], b["psnr"], b["ssim"])
    print(name, round(frac * 100, 3), *(round(v, 3) for v in r[:2]), "->", *(round(v, 3) for v in r[2:]), flush=True)
    return r


rows = [compare(c.name, c.noisy, c.psf, lambda e, c=c: evaluate(e, c.clean)) for c in suite_2d(IMAGES_2D, 512)]
print("paper mean", np.mean(rows, 0).round(3))
for case in microscopy_cases(quick=True, patterns=["2d-*"]):
    compare(case.key, case.noisy, case.psf, lambda e, case=case: evaluate(case.to_truth(e), case.clean))
