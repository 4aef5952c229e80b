"""Standardization, random patches and augmentation for single-image training.

Besides one in-memory image, training can draw from several arrays (the time points of a channel)
and from arrays read lazily (Zarr): :func:`array_statistics` computes their joint mean, standard
deviation and range block by block, and :class:`ArrayPatchSampler` draws patches across them
without loading any of them whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "Normalization",
    "standardize",
    "default_intensity_range",
    "PatchSampler",
    "psf_is_dihedral",
    "ArrayStatistics",
    "array_statistics",
    "normalization_from_statistics",
    "ArrayPatchSampler",
    "iter_blocks",
    "TrainingSource",
    "ImageSource",
]


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
    gain, offset, read_variance : float
        The camera's noise model in raw units, ``var = gain * (raw - offset) + read_variance``
        (:class:`siamdecon.noise.NoiseModel`), for networks whose inputs include the noise level;
        the defaults stand for "not estimated".
    """

    mean: float
    std: float
    low: float
    high: float
    gain: float = 1.0
    offset: float = 0.0
    read_variance: float = 0.0

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
    image: np.ndarray, low: float | None = None, high: float | None = None, noise: bool = False
) -> tuple[np.ndarray, Normalization]:
    """Standardize an image to zero mean and unit variance.

    Parameters
    ----------
    image : np.ndarray
        Raw image.
    low, high : float, optional
        Intensity range for the boundary losses; default :func:`default_intensity_range`.
    noise : bool
        Also estimate the camera's noise model (:func:`siamdecon.noise.estimate_noise`).

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
    model = {}
    if noise:
        from .noise import estimate_noise

        model = estimate_noise(arr).to_dict()
    norm = Normalization(mean=mean, std=std, low=lo, high=hi, **model)
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
        return augment_patch(patch, self.rng) if self.augment else np.ascontiguousarray(patch)

    def sample(self) -> torch.Tensor:
        """A batch ``(B, C, *patch)`` as a float32 CPU tensor."""
        return torch.from_numpy(np.stack([self._one() for _ in range(self.batch_size)]))


def augment_patch(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random rotation by a multiple of 90 degrees (180 only, for non-square patches) and flip in
    the last two axes: the symmetries of a PSF that :func:`psf_is_dihedral` accepts."""
    square = patch.shape[-1] == patch.shape[-2]
    k = int(rng.integers(0, 4)) if square else 2 * int(rng.integers(0, 2))
    patch = np.rot90(patch, k, axes=(-2, -1))
    if rng.integers(0, 2):
        patch = patch[..., ::-1]
    return np.ascontiguousarray(patch)


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


def iter_blocks(shape: Sequence[int], block: Sequence[int]) -> Iterator[tuple[slice, ...]]:
    """Regions of at most ``block`` voxels per axis tiling an array of ``shape``, in C order."""
    counts = [-(-int(n) // int(b)) for n, b in zip(shape, block, strict=True)]
    for index in np.ndindex(*counts):
        yield tuple(
            slice(i * int(b), min((i + 1) * int(b), int(n))) for i, b, n in zip(index, block, shape, strict=True)
        )


@dataclass(frozen=True)
class ArrayStatistics:
    """Joint statistics of one or several arrays (float64 accumulation)."""

    count: int
    mean: float
    std: float
    minimum: float
    maximum: float


def _read_blocks(array: Any) -> Sequence[int]:
    chunks = getattr(array, "chunks", None)
    shape = tuple(int(n) for n in array.shape)
    if isinstance(array, np.ndarray) or not chunks:
        # In memory: a few large slabs along the first axis keep the float64 copies small.
        first = max(1, min(shape[0], (1 << 22) // max(1, int(np.prod(shape[1:])))))
        return (first, *shape[1:])
    # Whole chunks along the last axes, as many along the first as fit about 4 M voxels.
    inner = [min(int(c), int(n)) for c, n in zip(chunks[-len(shape) :], shape, strict=True)]
    per_slab = max(1, (1 << 22) // max(1, int(np.prod(inner[1:]))))
    inner[0] = min(shape[0], max(inner[0], (per_slab // inner[0]) * inner[0]))
    return inner


def array_statistics(
    arrays: Sequence[Any],
    *,
    check: Callable[[np.ndarray, tuple[slice, ...], int], None] | None = None,
    progress: bool = False,
) -> ArrayStatistics:
    """Mean, standard deviation, minimum and maximum over all voxels of ``arrays``, block by block.

    Each array is read in chunk-aligned blocks (a Zarr array chunk by chunk), so the memory used is
    that of one block, whatever the arrays' sizes. Partial results are merged with Chan's pairwise
    formula, which keeps the variance accurate for billions of voxels.

    Parameters
    ----------
    arrays : sequence of array-like
        Arrays with a ``shape`` that can be indexed by slices (NumPy, Zarr, :class:`~siamdecon.stack.VolumeView`).
    check : callable, optional
        Called as ``check(block, region, index)`` on every block read (for example to refuse NaN).
    progress : bool
        Show a progress bar over blocks.
    """
    from tqdm.auto import tqdm

    count, mean, m2 = 0, 0.0, 0.0
    lo, hi = np.inf, -np.inf
    plan = [(i, region) for i, a in enumerate(arrays) for region in iter_blocks(a.shape, _read_blocks(a))]
    for i, region in tqdm(plan, desc="statistics", disable=not progress or len(plan) < 2, leave=False):
        block = np.asarray(arrays[i][region])
        if check is not None:
            check(block, region, i)
        b = block.astype(np.float64, copy=False)
        n = b.size
        if n == 0:
            continue
        bmean = float(b.mean())
        bm2 = float(((b - bmean) ** 2).sum())
        delta = bmean - mean
        total = count + n
        mean += delta * n / total
        m2 += bm2 + delta * delta * count * n / total
        count = total
        lo, hi = min(lo, float(b.min())), max(hi, float(b.max()))
    if count == 0:
        raise ValueError("no voxels to compute statistics on")
    return ArrayStatistics(count, mean, float(np.sqrt(m2 / count)), lo, hi)


def normalization_from_statistics(
    stats: ArrayStatistics, low: float | None = None, high: float | None = None
) -> Normalization:
    """The :class:`Normalization` :func:`standardize` would compute for data with these statistics."""
    if not np.isfinite(stats.std) or stats.std <= 1e-12 * max(1.0, abs(stats.mean)):
        raise ValueError("the image is constant (zero variance); there is nothing to deconvolve")
    default_lo, default_hi = default_intensity_range(np.array([stats.minimum, stats.maximum]))
    lo = default_lo if low is None else float(low)
    hi = default_hi if high is None else float(high)
    if hi <= lo:
        raise ValueError(f"intensity range low={lo} must be below high={hi}")
    return Normalization(mean=stats.mean, std=stats.std, low=lo, high=hi)


class ArrayPatchSampler:
    """Random patches drawn across several arrays (time points), in memory or read lazily.

    The interface of :class:`PatchSampler` (``sample()`` returns ``(B, 1, *patch)``), with one
    :class:`Normalization` applied to every patch. In-memory NumPy arrays are sampled directly.
    Other arrays (Zarr, :class:`~siamdecon.stack.VolumeView`) are read once into a pool of random
    regions, each up to ``region_factor`` patches wide per axis, until ``max_pool_bytes``; patches
    then come from the pool, so training never holds more than the pool, whatever the data's size.

    Parameters
    ----------
    arrays : sequence of array-like
        Raw (not standardized) 2D or 3D arrays with the same number of dimensions.
    normalization : Normalization
        Applied to every patch.
    patch_size, batch_size, augment, seed
        As for :class:`PatchSampler`.
    max_pool_bytes : int
        Memory for the pool of regions read from lazy arrays (float32).
    region_factor : int
        Side of a pooled region in patches (per axis, clipped to the array).
    """

    def __init__(
        self,
        arrays: Sequence[Any],
        normalization: Normalization,
        patch_size: int,
        batch_size: int,
        augment: bool = True,
        seed: int = 0,
        *,
        max_pool_bytes: int = 64 * 1024 * 1024,
        region_factor: int = 2,
    ) -> None:
        if not arrays:
            raise ValueError("no arrays to sample from")
        ndims = {len(a.shape) for a in arrays}
        if len(ndims) != 1 or next(iter(ndims)) not in (2, 3):
            raise ValueError(f"arrays must all be 2D or all 3D, got shapes {[tuple(a.shape) for a in arrays]}")
        self.norm = normalization
        self.batch_size = batch_size
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        smallest = np.min([a.shape for a in arrays], axis=0)
        self.patch = tuple(int(min(patch_size, s)) for s in smallest)
        self.sources: list[np.ndarray] = []
        lazy = [a for a in arrays if not isinstance(a, np.ndarray)]
        self.sources = [np.asarray(a) for a in arrays if isinstance(a, np.ndarray)]
        if lazy:
            self.sources += self._pool(lazy, max_pool_bytes, region_factor)
        # A source is chosen with probability proportional to its number of patch positions.
        positions = np.array(
            [np.prod([s - p + 1 for s, p in zip(src.shape, self.patch, strict=True)]) for src in self.sources],
            dtype=np.float64,
        )
        self.weights = positions / positions.sum()

    def _pool(self, arrays: Sequence[Any], max_bytes: int, factor: int) -> list[np.ndarray]:
        region = [tuple(min(factor * p, int(n)) for p, n in zip(self.patch, a.shape, strict=True)) for a in arrays]
        per_region = [4 * int(np.prod(r)) for r in region]
        sizes = np.array([float(np.prod(a.shape)) for a in arrays])
        budget = max(1, int(max_bytes // max(per_region)))
        # Regions are spread over the arrays in proportion to their sizes, at least one each while the budget lasts.
        counts = np.maximum(1, np.floor(budget * sizes / sizes.sum())).astype(int)
        pool: list[np.ndarray] = []
        for a, r, k in zip(arrays, region, counts, strict=True):
            whole = all(rr == int(n) for rr, n in zip(r, a.shape, strict=True))
            for _ in range(1 if whole else int(k)):
                starts = [int(self.rng.integers(0, int(n) - rr + 1)) for n, rr in zip(a.shape, r, strict=True)]
                window = tuple(slice(s, s + rr) for s, rr in zip(starts, r, strict=True))
                pool.append(np.ascontiguousarray(np.asarray(a[window], dtype=np.float32)))
        return pool

    def _one(self) -> np.ndarray:
        src = self.sources[int(self.rng.choice(len(self.sources), p=self.weights))]
        starts = [int(self.rng.integers(0, s - p + 1)) for s, p in zip(src.shape, self.patch, strict=True)]
        patch = src[tuple(slice(a, a + p) for a, p in zip(starts, self.patch, strict=True))]
        patch = self.norm.apply(patch)[None]
        return augment_patch(patch, self.rng) if self.augment else np.ascontiguousarray(patch)

    def sample(self) -> torch.Tensor:
        """A batch ``(B, 1, *patch)`` as a float32 CPU tensor."""
        return torch.from_numpy(np.stack([self._one() for _ in range(self.batch_size)]))


class TrainingSource:
    """What training draws from: its normalization and random patches.

    :func:`siamdecon.training.train` takes an in-memory image (an :class:`ImageSource`) or any
    source with this interface: several time points, arrays read lazily
    (:func:`siamdecon.sources.train_on_arrays`).
    """

    ndim: int

    def normalization(self, low: float | None, high: float | None, noise: bool) -> Normalization:
        """The data's statistics, with the boundary range ``[low, high]`` (default from the data)
        and, with ``noise``, the camera's noise model."""
        raise NotImplementedError

    def sampler(self, normalization: Normalization, patch_size: int, batch_size: int, augment: bool, seed: int):
        """An object whose ``sample()`` returns a ``(B, 1, *patch)`` float32 tensor of standardized patches."""
        raise NotImplementedError


class ImageSource(TrainingSource):
    """One in-memory 2D image or 3D volume."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = np.asarray(image, dtype=np.float32)
        self.ndim = self.image.ndim
        self._standardized: tuple[Normalization, np.ndarray] | None = None

    def normalization(self, low: float | None, high: float | None, noise: bool) -> Normalization:
        standardized, norm = standardize(self.image, low, high, noise=noise)
        self._standardized = (norm, standardized)
        return norm

    def sampler(self, normalization: Normalization, patch_size: int, batch_size: int, augment: bool, seed: int):
        if self._standardized is not None and self._standardized[0] == normalization:
            standardized = self._standardized[1]
        else:
            standardized = normalization.apply(self.image)
        return PatchSampler(standardized[None], patch_size, batch_size, augment, seed=seed)
