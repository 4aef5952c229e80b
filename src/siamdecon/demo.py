"""The bundled example: scikit-image's 'camera', degraded by the paper's protocol, deconvolved."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .classical import richardson_lucy_series
from .config import make_config
from .holdout import steps_phrase
from .io import write_image
from .metrics import evaluate
from .model import Deconvolver
from .psf import generate_psf
from .simulate import degrade, rescale01

__all__ = ["LR_ITERATIONS", "camera_example", "run_demo", "comparison_figure"]

LR_ITERATIONS = (1, 2, 3, 5, 10, 20)


def camera_example(size: int = 512, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(clean, noisy, psf)``: the camera image (centre crop of ``size``) and the paper's 2D PSF."""
    from skimage import data

    img = data.camera()
    if size < img.shape[0]:
        a = (img.shape[0] - size) // 2
        img = img[a : a + size, a : a + size]
    clean = rescale01(img)
    psf = generate_psf(ndim=2)
    return clean, degrade(clean, psf, seed=seed), psf


def comparison_figure(path: Path, panels: list[tuple[str, np.ndarray]]) -> None:
    """Save a row of grey images with titles as a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_path

    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6))
    for ax, (title, img) in zip(np.atleast_1d(axes), panels, strict=False):
        shown = img if img.ndim == 2 else img.max(axis=0)
        ax.imshow(np.clip(shown, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def run_demo(out: Path, steps: int | None = None, seed: int = 0, size: int = 512, progress: bool = True) -> list[dict]:
    """Run the demo, write its files into ``out`` and return the table rows."""
    out = Path(out)
    clean, noisy, psf = camera_example(size, seed)
    rows: list[dict] = [{"method": "input (blurred + noisy)", **evaluate(noisy, clean), "seconds": 0.0}]
    t0 = time.perf_counter()
    series = richardson_lucy_series(noisy, psf, LR_ITERATIONS)
    lr_seconds = time.perf_counter() - t0
    scored = {n: evaluate(v, clean) for n, v in series.items()}
    best = max(scored, key=lambda n: scored[n]["psnr"])
    rows.append({"method": f"Lucy-Richardson, best ({best} it.)", **scored[best], "seconds": lr_seconds})
    cfg = make_config("fast", ndim=2, steps=steps, fine_tune_steps=steps, seed=seed)
    t0 = time.perf_counter()
    model = Deconvolver.fit(noisy, psf, cfg, progress=progress)
    result = model.predict(noisy)
    # As `siamdecon deconvolve` runs it: the held-out check, and its fallback if the network is behind.
    report = model.check(noisy)
    result = report.output(noisy, model.psf, result)
    seconds = time.perf_counter() - t0
    how = model.training_summary
    if report.fell_back:
        how = f"check fell back to {report.winner.label}"
    elif report.lr_steps:
        how += f" + {steps_phrase(report.lr_steps)}"
    row = {"method": f"siamdecon ({how})", **evaluate(result, clean), "seconds": seconds}
    rows.append({**row, "check": report.summary()})
    write_image(out / "clean.tif", clean)
    write_image(out / "noisy.tif", noisy)
    write_image(out / "lucy_richardson.tif", series[best])
    write_image(out / "siamdecon.tif", result)
    comparison_figure(
        out / "comparison.png",
        [
            ("ground truth", clean),
            (f"input  {rows[0]['psnr']:.2f} dB", noisy),
            (f"LR best ({best} it.)  {rows[1]['psnr']:.2f} dB", series[best]),
            (f"siamdecon  {rows[2]['psnr']:.2f} dB", result),
        ],
    )
    from .io import atomic_path

    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps({"rows": rows, "config": cfg.model_dump(mode="json")}, indent=2))
    return rows
