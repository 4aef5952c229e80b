"""Tiled inference: overlapping tiles blended with pyramid weights.

Each tile's prediction is weighted by a separable pyramid, highest at the tile centre and lowest at
its border, so that the unreliable margins of a tile (where the network saw padding instead of
context) count least and neighbouring tiles blend without seams. Outputs always have exactly the
input's spatial shape.

:func:`predict_tiled_region` does the same for one region of an array that need not be in memory
(a Zarr store): it reads the region with ``margin`` voxels of real context around it and returns
the prediction of the region alone, so that a volume larger than memory is processed block by
block, each block independently (in another process, if wanted).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from .runtime import keep_freed_memory

__all__ = ["tile_layout", "pyramid_weights", "predict_tiled", "predict_tiled_region", "with_augmentation"]


def tile_layout(n: int, tile: int, overlap: int) -> tuple[int, list[int]]:
    """Tile length and start offsets covering ``[0, n)``, at most ``tile`` long, overlapping by at
    least ``overlap``.

    It uses as few tiles as the maximum size allows, then shrinks them to equal lengths, spread
    evenly: the work per pixel stays about the same at every image size (fixed ``tile``-sized
    tiles would cover a 1024-pixel axis with 3 tiles of 512, 1.5x the pixels).
    """
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap ({overlap}) must be at least 0 and smaller than the tile size ({tile})")
    if tile >= n:
        return n, [0]
    count = -(-(n - overlap) // (tile - overlap))
    length = min(tile, -(-(n + (count - 1) * overlap) // count))
    span = n - length
    starts = [round(i * span / (count - 1)) for i in range(count)]
    return length, starts


def pyramid_weights(shape: tuple[int, ...]) -> np.ndarray:
    """Separable pyramid: per axis ``min(i + 1, n - i)``, multiplied over axes (float32)."""
    w = np.ones((), dtype=np.float32)
    for n in shape:
        i = np.arange(n, dtype=np.float32)
        ramp = np.minimum(i + 1, n - i)
        w = np.multiply.outer(w, ramp)
    return w.astype(np.float32)


def with_augmentation(
    fn: Callable[[torch.Tensor], torch.Tensor],
    inputs: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Test-time augmentation: average ``fn`` over the 8 rotations/flips of the (y, x) plane.

    Training sees patches in all 8 orientations, so the network is nearly equivariant; averaging
    the 8 predictions cancels what is left of its orientation-dependent errors.

    Parameters
    ----------
    fn : callable
        The map to average.
    inputs : callable, optional
        Computed once on the tile, before the rotations: ``fn`` then takes its result. Rotating
        what was computed with the PSF, rather than the tile, keeps the average valid for a PSF
        without the plane's symmetries (the network sees the rotated object under the rotated PSF).
    """

    def averaged(x: torch.Tensor) -> torch.Tensor:
        if inputs is not None:
            x = inputs(x)
        total = None
        for k in range(4):
            for flip in (False, True):
                t = torch.rot90(x, k, dims=(-2, -1))
                if flip:
                    t = torch.flip(t, dims=(-1,))
                y = fn(t)
                if flip:
                    y = torch.flip(y, dims=(-1,))
                y = torch.rot90(y, -k, dims=(-2, -1))
                total = y if total is None else total + y
        return total / 8

    return averaged


def _tiles(spatial: tuple[int, ...], tile: tuple[int, ...], grids: list[list[int]]) -> Iterator[tuple[slice, ...]]:
    for index in np.ndindex(*[len(g) for g in grids]):
        yield tuple(slice(g[i], g[i] + t) for g, i, t in zip(grids, index, tile, strict=False))


def predict_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray,
    tile_size: int,
    overlap: int,
    *,
    batch_size: int = 4,
    margin: int = 0,
    out_channels: int = 1,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> np.ndarray:
    """Apply ``fn`` to overlapping tiles of ``image`` and blend the results.

    Parameters
    ----------
    fn : callable
        Maps a ``(B, C, *tile)`` tensor to ``(B, out_channels, *tile)``.
    image : np.ndarray
        ``(C, *spatial)`` input.
    tile_size : int
        Largest tile side; tiles are shrunk to equal sides that cover the image evenly
        (see :func:`tile_layout`).
    overlap : int
        Overlap between neighbouring tiles, in pixels.
    batch_size : int
        Tiles per call of ``fn``.
    margin : int
        Extra context read around every tile and discarded after prediction, so that the tile's
        own border does not see zero padding (use about the network's receptive field).
    out_channels : int
        Channels returned by ``fn``.
    device : str or torch.device
        Where ``fn`` runs.
    progress : bool
        Show a progress bar over tiles.

    Returns
    -------
    np.ndarray
        ``(out_channels, *spatial)`` float32 prediction.
    """
    if overlap >= tile_size:
        raise ValueError(f"overlap ({overlap}) must be smaller than the tile size ({tile_size})")
    keep_freed_memory(device)
    spatial = tuple(image.shape[1:])
    layouts = [tile_layout(n, tile_size, overlap) for n in spatial]
    tile = tuple(length for length, _ in layouts)
    window = tuple(min(t + 2 * margin, n) for t, n in zip(tile, spatial, strict=False))
    weights = torch.from_numpy(pyramid_weights(tile))
    out = torch.zeros((out_channels, *spatial), dtype=torch.float32)
    norm = torch.zeros(spatial, dtype=torch.float32)
    regions = list(_tiles(spatial, tile, [starts for _, starts in layouts]))
    src = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))

    def context(core: tuple[slice, ...]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
        # The window is shifted (not clipped) at the image border so all windows share one shape.
        starts = [min(max(c.start - margin, 0), n - w) for c, n, w in zip(core, spatial, window, strict=False)]
        win = tuple(slice(a, a + w) for a, w in zip(starts, window, strict=False))
        inner = tuple(slice(c.start - a, c.stop - a) for c, a in zip(core, starts, strict=False))
        return win, inner

    bar = tqdm(total=len(regions), desc="tiles", disable=not progress or len(regions) == 1, leave=False)
    try:
        with torch.no_grad():
            for b in range(0, len(regions), batch_size):
                chunk = [(r, *context(r)) for r in regions[b : b + batch_size]]
                batch = torch.stack([src[(slice(None), *win)] for _, win, _ in chunk]).to(device)
                pred = fn(batch).float().cpu()
                for (core, _, inner), p in zip(chunk, pred, strict=False):
                    out[(slice(None), *core)] += p[(slice(None), *inner)] * weights
                    norm[core] += weights
                bar.update(len(chunk))
    finally:
        bar.close()
    return (out / norm).numpy()


def predict_tiled_region(
    fn: Callable[[torch.Tensor], torch.Tensor],
    read: Callable[[tuple[slice, ...]], np.ndarray],
    spatial: tuple[int, ...],
    region: tuple[slice, ...],
    tile_size: int,
    overlap: int,
    *,
    batch_size: int = 4,
    margin: int = 0,
    out_channels: int = 1,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Predict one region of a large array: tiles of the region, with context read around them.

    The region is covered by overlapping tiles as :func:`predict_tiled` covers a whole image, and
    every tile sees ``margin`` voxels of context read from the array itself (not padding) where the
    array extends beyond the region. With the region equal to the whole array this is exactly
    :func:`predict_tiled`.

    Parameters
    ----------
    fn : callable
        Maps ``(B, C, *tile)`` to ``(B, out_channels, *tile)``.
    read : callable
        ``read(window)`` returns the ``(C, *window)`` float32 input for a tuple of spatial slices.
    spatial : tuple of int
        Spatial shape of the whole array.
    region : tuple of slice
        The region to predict (spatial, with explicit starts and stops).
    tile_size, overlap, batch_size, margin, out_channels, device
        As for :func:`predict_tiled`.

    Returns
    -------
    np.ndarray
        ``(out_channels, *region_shape)`` float32 prediction of the region.
    """
    if overlap >= tile_size:
        raise ValueError(f"overlap ({overlap}) must be smaller than the tile size ({tile_size})")
    keep_freed_memory(device)
    core_shape = tuple(r.stop - r.start for r in region)
    layouts = [tile_layout(n, tile_size, overlap) for n in core_shape]
    tile = tuple(length for length, _ in layouts)
    window = tuple(min(t + 2 * margin, n) for t, n in zip(tile, spatial, strict=False))
    regions = list(_tiles(core_shape, tile, [starts for _, starts in layouts]))

    def context(core: tuple[slice, ...]) -> tuple[list[int], tuple[slice, ...]]:
        # In array coordinates, the window is shifted (not clipped) at the array border, as in predict_tiled.
        starts = [
            min(max(r.start + c.start - margin, 0), n - w)
            for c, r, n, w in zip(core, region, spatial, window, strict=False)
        ]
        inner = tuple(
            slice(r.start + c.start - a, r.start + c.stop - a) for c, r, a in zip(core, region, starts, strict=False)
        )
        return starts, inner

    plans = [(r, *context(r)) for r in regions]
    # Read once everything the tiles' windows touch: the region and up to `margin` around it.
    lo = [min(p[1][i] for p in plans) for i in range(len(spatial))]
    hi = [max(p[1][i] for p in plans) + window[i] for i in range(len(spatial))]
    src = torch.from_numpy(np.ascontiguousarray(read(tuple(slice(a, b) for a, b in zip(lo, hi, strict=False)))))
    weights = torch.from_numpy(pyramid_weights(tile))
    out = torch.zeros((out_channels, *core_shape), dtype=torch.float32)
    norm = torch.zeros(core_shape, dtype=torch.float32)

    with torch.no_grad():
        for b in range(0, len(plans), batch_size):
            chunk = plans[b : b + batch_size]
            wins = [
                tuple(slice(a - o, a - o + w) for a, o, w in zip(st, lo, window, strict=False)) for _, st, _ in chunk
            ]
            batch = torch.stack([src[(slice(None), *win)] for win in wins]).to(device)
            pred = fn(batch).float().cpu()
            for (core, _, inner), p in zip(chunk, pred, strict=False):
                out[(slice(None), *core)] += p[(slice(None), *inner)] * weights
                norm[core] += weights
    return (out / norm).numpy()
