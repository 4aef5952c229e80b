"""Standardization, random patches and augmentation for single-image training."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

__all__ = ["Normalization", "standardize", "PatchSampler"]


@dataclass(frozen=True)
class Normalization:
    """Per-image intensity statistics.

    Attributes
    ----------
    mean, std : float
        ``standardized = (raw - mean) / std``.
    low, high : float
        The intensity range the boundary losses keep the output in (raw units): the input's
        minimum and maximum unless given explicitly.
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


def standardize(
    image: np.ndarray, low: float | None = None, high: float | None = None
) -> tuple[np.ndarray, Normalization]:
    """Standardize an image to zero mean and unit variance.

    Parameters
    ----------
    image : np.ndarray
        Raw image.
    low, high : float, optional
        Intensity range for the boundary losses; default the image's min and max.

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
    lo = float(arr.min()) if low is None else float(low)
    hi = float(arr.max()) if high is None else float(high)
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
