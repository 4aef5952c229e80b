"""Standardization, random patches and augmentation for single-image training."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

__all__ = ["Normalization", "standardize", "default_intensity_range", "PatchSampler", "psf_is_dihedral"]


@dataclass(frozen=True)
class Normalization:
    """Per-image intensity statistics.

    Attributes
    ----------
    mean, std : float
        ``standardized = (raw - mean) / std``.
    low, high : float
        The intensity range the boundary losses keep the output in (raw units); see
        :func:`default_intensity_range`.
    """

    mean: float
    std: float
    low: float
    high: float

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Raw intensities to standardized units (float32)."""
        return ((np.asarray(raw, dtype=np.float32) - self.mean) / self.std).astype(np.float32)

    def invert(self, standardized: np.ndarray) -> np.ndarray:
        """Standardized units back to raw intensities (float32)."""
        return (np.asarray(standardized, dtype=np.float32) * self.std + self.mean).astype(np.float32)

    def to_dict(self) -> dict[str, float]:
        """Plain dictionary (for model files)."""
        return asdict(self)


def default_intensity_range(image: np.ndarray) -> tuple[float, float]:
    """The range the boundary losses keep the output in, when none is given.

    Data already scaled to [0, 1] (the benchmark protocol) get [0, 1], as in the paper. Other
    data get ``[min(0, lowest), highest + (highest - low)]``: no negative intensities, and twice the
    input's range as headroom, because deconvolution legitimately raises peaks above the blurred
    image's maximum.
    """
    arr = np.asarray(image)
    lo, hi = float(arr.min()), float(arr.max())
    if lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    low = min(0.0, lo)
    return low, hi + (hi - low)


def standardize(
    image: np.ndarray, low: float | None = None, high: float | None = None
) -> tuple[np.ndarray, Normalization]:
    """Standardize an image to zero mean and unit variance.

    Parameters
    ----------
    image : np.ndarray
        Raw image.
    low, high : float, optional
        Intensity range for the boundary losses; default :func:`default_intensity_range`.

    Returns
    -------
    standardized : np.ndarray
        Float32 array.
    norm : Normalization
        The statistics, to invert the standardization later.
    """
    arr = np.asarray(image, dtype=np.float64)
    mean = float(arr.mean())
    std = float(arr.std())
    if not np.isfinite(std) or std <= 1e-12 * max(1.0, abs(mean)):
        raise ValueError("the image is constant (zero variance); there is nothing to deconvolve")
    default_lo, default_hi = default_intensity_range(arr)
    lo = default_lo if low is None else float(low)
    hi = default_hi if high is None else float(high)
    if hi <= lo:
        raise ValueError(f"intensity range low={lo} must be below high={hi}")
    norm = Normalization(mean=mean, std=std, low=lo, high=hi)
    return norm.apply(arr), norm


class PatchSampler:
    """Draw random patches (with rot90/flip augmentation) from one multi-channel image.

    Parameters
    ----------
    image : np.ndarray
        ``(C, *spatial)`` array, already standardized.
    patch_size : int
        Patch side; clipped to the image size on small axes.
    batch_size : int
        Patches per batch.
    augment : bool
        Random rot90 and flips in the (y, x) plane.
    seed : int
        Seed of the sampler's own random generator.
    """

    def __init__(self, image: np.ndarray, patch_size: int, batch_size: int, augment: bool = True, seed: int = 0):
        if image.ndim not in (3, 4):
            raise ValueError(f"expected a (C, *spatial) array with 2 or 3 spatial axes, got shape {image.shape}")
        self.image = np.ascontiguousarray(image, dtype=np.float32)
        self.spatial = image.shape[1:]
        self.patch = tuple(min(patch_size, s) for s in self.spatial)
        self.batch_size = batch_size
        self.augment = augment
        self.rng = np.random.default_rng(seed)

    def _one(self) -> np.ndarray:
        starts = [int(self.rng.integers(0, s - p + 1)) for s, p in zip(self.spatial, self.patch, strict=False)]
        index = (slice(None), *[slice(a, a + p) for a, p in zip(starts, self.patch, strict=False)])
        patch = self.image[index]
        if self.augment:
            square = patch.shape[-1] == patch.shape[-2]
            k = int(self.rng.integers(0, 4)) if square else 2 * int(self.rng.integers(0, 2))
            patch = np.rot90(patch, k, axes=(-2, -1))
            if self.rng.integers(0, 2):
                patch = patch[..., ::-1]
        return np.ascontiguousarray(patch)

    def sample(self) -> torch.Tensor:
        """A batch ``(B, C, *patch)`` as a float32 CPU tensor."""
        return torch.from_numpy(np.stack([self._one() for _ in range(self.batch_size)]))


def psf_is_dihedral(psf: np.ndarray, rtol: float = 1e-3) -> bool:
    """Whether the PSF is unchanged (within ``rtol`` of its peak) by rot90 and flips in (y, x).

    Rotating and flipping training patches, or averaging predictions over rotations, is only
    consistent with the forward operator when the PSF has that symmetry.
    """
    k = np.asarray(psf, dtype=np.float64)
    tol = rtol * float(np.abs(k).max())
    if k.shape[-1] != k.shape[-2]:
        return False
    variants = [np.rot90(k, r, axes=(-2, -1)) for r in range(4)]
    variants += [v[..., ::-1] for v in variants]
    return all(float(np.abs(v - k).max()) <= tol for v in variants)
