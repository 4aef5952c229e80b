"""Stratified blind-spot masks and masked inputs.

A mask ``J`` picks one pixel at random in every box of side ``round(fraction ** (-1 / ndim))``
(14 pixels in 2D and 6 in 3D for the default 0.5 %), so masked pixels cover the patch evenly.
The masked input replaces those pixels by Gaussian noise ``N(0, noise_std^2)`` in standardized
units, as in Noise2Same and the paper.
"""

from __future__ import annotations

import math

import torch

__all__ = ["box_size", "stratified_mask", "apply_mask"]


def box_size(fraction: float, ndim: int) -> int:
    """Side of the box that holds one masked pixel: ``round((1 / fraction) ** (1 / ndim))``."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"mask fraction must be in (0, 1), got {fraction}")
    return max(1, round((1.0 / fraction) ** (1.0 / ndim)))


def stratified_mask(
    shape: tuple[int, ...],
    fraction: float = 0.005,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Draw a stratified mask: one random pixel per box, independently for every batch item.

    Parameters
    ----------
    shape : tuple of int
        ``(B, C, *spatial)``; the same mask is used for all channels of an item.
    fraction : float
        Target fraction of masked pixels (0.005 in the paper).
    generator : torch.Generator, optional
        Source of randomness (CPU generator), for reproducibility.
    device : torch.device or str
        Where the returned mask lives.

    Returns
    -------
    torch.Tensor
        Float tensor of ``shape`` with ones at masked pixels and zeros elsewhere.
    """
    batch, channels, *spatial = shape
    ndim = len(spatial)
    side = box_size(fraction, ndim)
    boxes = [math.ceil(s / side) for s in spatial]
    offsets = torch.randint(0, side, (batch, *boxes, ndim), generator=generator)
    mask = torch.zeros((batch, *spatial), dtype=torch.float32)
    grids = torch.meshgrid(*[torch.arange(b) for b in boxes], indexing="ij")
    coords = [grids[i][None] * side + offsets[..., i] for i in range(ndim)]
    valid = torch.ones_like(coords[0], dtype=torch.bool)
    for c, s in zip(coords, spatial, strict=False):
        valid &= c < s
    b_index = torch.arange(batch).view(batch, *([1] * ndim)).expand_as(coords[0])
    mask[(b_index[valid], *[c[valid] for c in coords])] = 1.0
    mask = mask[:, None].expand(batch, channels, *spatial).contiguous()
    return mask.to(device)


def apply_mask(
    x: torch.Tensor,
    mask: torch.Tensor,
    noise_std: float = 0.2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Replace the masked pixels of ``x`` by ``N(0, noise_std^2)`` noise.

    Parameters
    ----------
    x : torch.Tensor
        Standardized input batch.
    mask : torch.Tensor
        Same shape as ``x``, one at masked pixels.
    noise_std : float
        Standard deviation of the replacement noise (0.2 in the paper).
    generator : torch.Generator, optional
        CPU generator for the noise.
    """
    noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype) * noise_std
    return x * (1.0 - mask) + noise * mask
