"""Timing of the PSF convolution: FFT against direct, forward and backward."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic_path
from ..operators import PSFConvolution

__all__ = ["time_convolution", "fft_speed_table"]


def time_convolution(backend: str, kernel: int, ndim: int, size: int, batch: int = 1, repeats: int = 3) -> float:
    """Best-of-``repeats`` seconds for one forward + backward pass of the PSF convolution."""
    rng = np.random.default_rng(0)
    psf = rng.random((kernel,) * ndim).astype(np.float32)
    op = PSFConvolution(psf / psf.sum(), backend=backend)
    x = torch.randn(batch, 1, *((size,) * ndim), requires_grad=True)
    best = float("inf")
    for _ in range(repeats + 1):  # the first call also builds the cached PSF transform
        t = time.perf_counter()
        op(x).square().sum().backward()
        best = min(best, time.perf_counter() - t)
        x.grad = None
    return best


def fft_speed_table(
    kernels_2d: tuple[int, ...] = (5, 9, 17, 31, 63),
    kernels_3d: tuple[int, ...] = (3, 5, 9, 17, 31),
    size_2d: int = 256,
    size_3d: int = 48,
    batch_2d: int = 8,
    batch_3d: int = 2,
    out: str | Path | None = None,
) -> list[dict[str, Any]]:
    """FFT vs direct PSF convolution (forward + backward) at several kernel sizes, from one run.

    Returns rows with ``fft_ms``, ``direct_ms``, their ``ratio`` (direct / FFT) and the backend
    that ``auto`` picks. With ``out``, the rows are also written there as JSON.
    """
    rows = []
    for ndim, kernels, size, batch in ((2, kernels_2d, size_2d, batch_2d), (3, kernels_3d, size_3d, batch_3d)):
        for k in kernels:
            if k > size:
                continue
            fft_s = time_convolution("fft", k, ndim, size, batch)
            direct_s = time_convolution("direct", k, ndim, size, batch)
            auto = PSFConvolution(np.ones((k,) * ndim)).choose_backend((size,) * ndim)
            rows.append(
                {
                    "ndim": ndim,
                    "kernel": f"{k}^{ndim}",
                    "image": f"{batch}x{size}^{ndim}",
                    "fft_ms": 1e3 * fft_s,
                    "direct_ms": 1e3 * direct_s,
                    "ratio": direct_s / fft_s,
                    "auto": auto,
                    "auto_is_faster": (auto == "fft") == (fft_s <= direct_s),
                }
            )
    if out is not None:
        with atomic_path(Path(out)) as tmp:
            tmp.write_text(json.dumps(rows, indent=1))
    return rows
