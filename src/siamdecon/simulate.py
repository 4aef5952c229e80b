"""The benchmark degradation of the paper, and synthetic phantoms.

Protocol (both papers): ground truth in [0, 1]; blur with the PSF ("same" size, zero boundary);
Poisson-Gaussian noise ``y + sqrt(alpha * y + sigma^2) * N(0, 1)``; in 2D, salt-and-pepper
(a fraction of pixels replaced by ``U(0, 1)``); quantization ``round(2^bits * y) / 2^bits``
clipped to [0, 1].
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .operators import PSFConvolution

__all__ = ["rescale01", "degrade", "filament_phantom"]


def rescale01(image: np.ndarray) -> np.ndarray:
    """Linearly rescale to [0, 1] (float32)."""
    arr = np.asarray(image, dtype=np.float64)
    lo, hi = arr.min(), arr.max()
    if hi <= lo:
        raise ValueError("cannot rescale a constant image")
    return ((arr - lo) / (hi - lo)).astype(np.float32)


def degrade(
    clean: np.ndarray,
    psf: np.ndarray,
    *,
    poisson: float = 0.001,
    gaussian: float = 0.1,
    salt_pepper: float | None = None,
    bits: int | None = 10,
    seed: int = 0,
) -> np.ndarray:
    """Blur and add noise as in the paper's benchmark.

    Parameters
    ----------
    clean : np.ndarray
        Ground truth, 2D or 3D, expected in [0, 1].
    psf : np.ndarray
        Kernel summing to 1, same number of dimensions.
    poisson : float
        ``alpha``: signal-dependent variance factor (0.001).
    gaussian : float
        ``sigma``: signal-independent noise std (0.1).
    salt_pepper : float, optional
        Fraction of pixels replaced by ``U(0, 1)``; default 0.01 for 2D and 0 for 3D.
    bits : int or None
        Quantization depth (10); ``None`` skips quantization and clipping.
    seed : int
        Seed of the noise.

    Returns
    -------
    np.ndarray
        The degraded image (float32).
    """
    clean = np.asarray(clean, dtype=np.float32)
    if clean.ndim != np.ndim(psf):
        raise ValueError(f"image is {clean.ndim}D but the PSF is {np.ndim(psf)}D")
    if salt_pepper is None:
        salt_pepper = 0.01 if clean.ndim == 2 else 0.0
    rng = np.random.default_rng(seed)
    op = PSFConvolution(psf, backend="fft")
    blurred = op.convolve_numpy(clean).astype(np.float64)
    var = np.clip(poisson * blurred + gaussian**2, 0.0, None)
    noisy = blurred + np.sqrt(var) * rng.standard_normal(blurred.shape)
    if salt_pepper > 0:
        hit = rng.random(noisy.shape) < salt_pepper
        noisy[hit] = rng.random(int(hit.sum()))
    if bits is not None:
        noisy = np.clip(np.round(noisy * 2**bits) / 2**bits, 0.0, 1.0)
    return noisy.astype(np.float32)


def filament_phantom(
    shape: tuple[int, int, int] = (64, 128, 128),
    n_filaments: int = 40,
    thickness: float = 0.8,
    seed: int = 0,
) -> np.ndarray:
    """Microtubule-like volume: random smooth thin filaments, scaled to [0, 1].

    Each filament is a random walk with slowly turning direction (a smooth curve), drawn by
    marking the voxels it passes and blurring slightly with a Gaussian of ``thickness`` voxels.

    Parameters
    ----------
    shape : tuple of int
        Volume shape ``(z, y, x)``.
    n_filaments : int
        Number of filaments (density).
    thickness : float
        Gaussian sigma of the filament cross-section, in voxels.
    seed : int
        Random seed.
    """
    rng = np.random.default_rng(seed)
    vol = np.zeros(shape, dtype=np.float32)
    size = np.array(shape, dtype=np.float64)
    length = int(2 * size.max())
    for _ in range(n_filaments):
        pos = rng.random(3) * size
        direction = rng.normal(size=3)
        direction[0] *= 0.3  # microtubules lie mostly in the xy plane
        direction /= np.linalg.norm(direction)
        brightness = rng.uniform(0.5, 1.0)
        for _ in range(length * 2):
            turn = rng.normal(scale=0.08, size=3)
            turn[0] *= 0.3
            direction = direction + turn
            direction /= np.linalg.norm(direction)
            pos = pos + 0.5 * direction
            idx = np.round(pos).astype(int)
            if np.any(idx < 0) or np.any(idx >= size):
                break
            vol[tuple(idx)] = max(vol[tuple(idx)], brightness)
    if thickness > 0:
        vol = ndimage.gaussian_filter(vol, thickness)
    return rescale01(vol) if vol.max() > 0 else vol
