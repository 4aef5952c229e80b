"""Training one network on several arrays (time points) or on arrays too large for memory.

:func:`train_on_arrays` runs :func:`siamdecon.training.train` (the same losses, schedule, prior and
network) on an :class:`ArraysSource`: the statistics come from
:func:`~siamdecon.data.array_statistics` over all the arrays, computed block by block, and the
patches from an :class:`~siamdecon.data.ArrayPatchSampler` drawing across them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from . import training
from .config import Config
from .data import (
    ArrayPatchSampler,
    ArrayStatistics,
    Normalization,
    TrainingSource,
    array_statistics,
    normalization_from_statistics,
)
from .errors import InputError

__all__ = ["train_on_arrays", "ArraysSource", "DEFAULT_POOL_BYTES"]

#: Memory for the regions read from lazily read arrays (see :class:`ArrayPatchSampler`).
DEFAULT_POOL_BYTES = 64 * 1024 * 1024


def _finite_check(where: str):
    def check(block: np.ndarray, region: tuple[slice, ...], index: int) -> None:
        if not np.isfinite(block).all():
            span = ", ".join(f"{s.start}:{s.stop}" for s in region)
            raise InputError(
                f"{where} (array {index}) contains NaN or infinite values in region [{span}]; replace them"
                " (for example with the background level) before deconvolution."
            )

    return check


def train_on_arrays(
    arrays: Sequence[Any],
    psf: np.ndarray,
    config: Config,
    *,
    progress: bool = True,
    statistics: ArrayStatistics | None = None,
    max_pool_bytes: int = DEFAULT_POOL_BYTES,
    where: str = "image",
    **kwargs: Any,
) -> training.TrainResult:
    """Train one network on patches drawn across ``arrays``, with their joint normalization.

    Parameters
    ----------
    arrays : sequence of array-like
        Raw 2D or 3D arrays (NumPy, Zarr or :class:`~siamdecon.stack.VolumeView`), all with
        ``config.ndim`` dimensions: the time points of one channel, for instance.
    psf : np.ndarray
        Normalized kernel.
    config : Config
        Training settings, as for :func:`siamdecon.training.train`.
    progress : bool
        Progress bars (statistics, training).
    statistics : ArrayStatistics, optional
        Precomputed statistics of ``arrays`` (else computed here, one pass over the data).
    max_pool_bytes : int
        Memory for the regions read from lazy arrays.
    where : str
        How the data are named in messages.
    **kwargs
        Passed to :func:`siamdecon.training.train` (``callback``, ``allow_interrupt``, ``intensity_range``).

    Returns
    -------
    TrainResult
        As :func:`siamdecon.training.train`; its normalization is the arrays' joint one.
    """
    if not arrays:
        raise InputError(f"{where}: no arrays to train on")
    if any(len(a.shape) != config.ndim for a in arrays):
        raise InputError(f"{where}: every array must be {config.ndim}D, got shapes {[tuple(a.shape) for a in arrays]}")
    lazy = any(not isinstance(a, np.ndarray) for a in arrays)
    stats = statistics or array_statistics(arrays, check=_finite_check(where), progress=progress and lazy)
    try:
        normalization_from_statistics(stats)
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from None
    source = ArraysSource(arrays, stats, max_pool_bytes)
    return training.train(source, psf, config, progress=progress, **kwargs)


class ArraysSource(TrainingSource):
    """Several raw arrays (in memory or lazy) with their joint statistics, as a training source."""

    def __init__(self, arrays: Sequence[Any], statistics: ArrayStatistics, max_pool_bytes: int = DEFAULT_POOL_BYTES):
        self.arrays = list(arrays)
        self.ndim = len(self.arrays[0].shape)
        self.statistics = statistics
        self.max_pool_bytes = max_pool_bytes

    def normalization(self, low: float | None, high: float | None, noise: bool) -> Normalization:
        norm = normalization_from_statistics(self.statistics, low, high)
        if noise:
            from .noise import estimate_noise

            # The camera model from the first array (a central region of at most 4 M voxels if it is lazy).
            first = self.arrays[0]
            if not isinstance(first, np.ndarray):
                side = [min(int(n), max(2, int(round((1 << 22) ** (1 / len(first.shape)))))) for n in first.shape]
                region = tuple(slice((int(n) - k) // 2, (int(n) - k) // 2 + k) for n, k in zip(first.shape, side))
                first = np.asarray(first[region])
            norm = replace(norm, **estimate_noise(np.asarray(first, dtype=np.float64)).to_dict())
        return norm

    def sampler(self, normalization: Normalization, patch_size: int, batch_size: int, augment: bool, seed: int):
        return ArrayPatchSampler(
            self.arrays, normalization, patch_size, batch_size, augment, seed=seed, max_pool_bytes=self.max_pool_bytes
        )
