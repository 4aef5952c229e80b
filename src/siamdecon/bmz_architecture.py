"""The network of a siamdecon model as one self-contained file, for BioImage Model Zoo packages.

A ``pytorch_state_dict`` package names a Python file and a callable that builds the network; the
consumer (bioimageio.core, or any zoo-compatible tool) imports that file on its own, without
siamdecon installed. This module therefore depends on PyTorch alone, and it is attached to the
package as it is. It rebuilds :class:`siamdecon.network.DeconvolutionNetwork` (the U-Net, with
the same module names so that the trained ``state_dict`` loads strictly, and its
Lucy-Richardson start estimate) and wraps it in the standardization the model was trained with,
so that the package maps raw intensities to raw intensities exactly as ``siamdecon predict`` does
for an input that fits in one tile. :func:`siamdecon.bmz.export_bmz` checks that equality on the
package's test input before writing anything.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SiamdeconNetwork"]


def _conv(ndim: int) -> type[nn.Module]:
    return nn.Conv2d if ndim == 2 else nn.Conv3d


def _norm(kind: str, ndim: int, channels: int) -> nn.Module:
    if kind == "batch":
        return (nn.BatchNorm2d if ndim == 2 else nn.BatchNorm3d)(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


class _ResidualUnit(nn.Module):
    def __init__(self, ndim: int, c_in: int, c_out: int, norm: str) -> None:
        super().__init__()
        conv = _conv(ndim)
        self.body = nn.Sequential(
            _norm(norm, ndim, c_in),
            nn.ReLU(),
            conv(c_in, c_out, 3, padding=1, bias=norm == "none"),
            _norm(norm, ndim, c_out),
            nn.ReLU(),
            conv(c_out, c_out, 3, padding=1),
        )
        self.project = conv(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(x) + self.body(x)


class _UNet(nn.Module):
    def __init__(
        self, ndim: int, in_channels: int, width: int, levels: int, skip: str, norm: str, residual: bool
    ) -> None:
        super().__init__()
        conv = _conv(ndim)
        up = nn.ConvTranspose2d if ndim == 2 else nn.ConvTranspose3d
        self.levels, self.skip, self.residual = levels, skip, residual
        widths = [width * 2**i for i in range(levels)]
        self.stem = conv(in_channels, widths[0], 3, padding=1)
        self.encoder = nn.ModuleList([_ResidualUnit(ndim, widths[0], widths[0], norm)])
        self.downs = nn.ModuleList()
        for i in range(1, levels):
            self.downs.append(conv(widths[i - 1], widths[i], 2, stride=2))
            self.encoder.append(_ResidualUnit(ndim, widths[i], widths[i], norm))
        self.ups = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in reversed(range(levels - 1)):
            self.ups.append(up(widths[i + 1], widths[i], 2, stride=2))
            c_in = 2 * widths[i] if skip == "concat" else widths[i]
            self.decoder.append(_ResidualUnit(ndim, c_in, widths[i], norm))
        self.head = nn.Sequential(_norm(norm, ndim, widths[0]), nn.ReLU(), conv(widths[0], 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = x.shape[2:]
        multiple = 2 ** (self.levels - 1)
        pad: list[int] = []
        for s in reversed(spatial):
            pad += [0, (-s) % multiple]
        xp = F.pad(x, pad, mode="reflect") if any(pad) else x
        h = self.encoder[0](self.stem(xp))
        skips = [h]
        for down, unit in zip(self.downs, self.encoder[1:]):
            h = unit(down(h))
            skips.append(h)
        skips.pop()
        for up, unit in zip(self.ups, self.decoder):
            h = up(h)
            s = skips.pop()
            h = torch.cat([h, s], dim=1) if self.skip == "concat" else h + s
            h = unit(h)
        out = self.head(h)
        if any(pad):
            out = out[(..., *[slice(0, s) for s in spatial])]
        if self.residual:
            out = out + x[:, :1]
        return out


def _fft_size(n: int) -> int:
    """Smallest multiple of 4 >= n with prime factors 2, 3, 5 and 7 only (fast FFT lengths)."""
    m = max(int(n), 1)
    m += -m % 4
    while True:
        r = m
        for p in (2, 3, 5, 7):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 4


class SiamdeconNetwork(nn.Module):
    """Raw image in, deconvolved raw image out: ``invert(f(standardize(x)))``.

    Parameters
    ----------
    ndim : {2, 3}
        Spatial dimensions; inputs are ``(B, 1, *spatial)``.
    width, levels, skip, norm
        The U-Net (see ``siamdecon.network.UNet``).
    start : {"none", "input", "lucy-richardson"}
        ``f(x) = unet(x)``, ``x + unet(x)``, or ``s(x) + unet([s(x), x])`` with ``s`` a few
        Lucy-Richardson iterations with the PSF on the input itself.
    iterations : int
        Lucy-Richardson iterations of the start.
    psf_shape : list of int
        Shape of the PSF, stored in the ``psf`` buffer of the state dict.
    mean, std : float
        Standardization of the training image: ``(x - mean) / std``.
    tta : bool
        Average over the 8 rotations and flips of the (y, x) plane.
    """

    def __init__(
        self,
        ndim: int,
        width: int,
        levels: int,
        skip: str,
        norm: str,
        start: str,
        iterations: int,
        psf_shape: list[int],
        mean: float,
        std: float,
        tta: bool = False,
    ) -> None:
        super().__init__()
        if ndim not in (2, 3) or len(psf_shape) != ndim:
            raise ValueError(f"ndim must be 2 or 3 with a PSF of as many axes, got {ndim} and {psf_shape}")
        if start not in ("none", "input", "lucy-richardson"):
            raise ValueError(f"start must be 'none', 'input' or 'lucy-richardson', got {start!r}")
        self.ndim, self.start, self.iterations = ndim, start, int(iterations)
        self.mean, self.std, self.tta = float(mean), float(std), bool(tta)
        in_channels = 2 if start == "lucy-richardson" else 1
        self.unet = _UNet(ndim, in_channels, width, levels, skip, norm, residual=start != "none")
        self.register_buffer("psf", torch.zeros([int(s) for s in psf_shape]))

    def _otfs(self, spatial: tuple[int, ...], x: torch.Tensor) -> tuple[tuple[int, ...], torch.Tensor]:
        # Linear (not circular) convolution: the kernel centred on index 0 and the input zero-padded
        # to at least N + (K - 1) / 2 samples per axis.
        kernel = self.psf.to(device=x.device, dtype=x.dtype)
        ks = tuple(kernel.shape)
        fshape = tuple(_fft_size(max(s + (k - 1) // 2, k)) for s, k in zip(spatial, ks))
        pad: list[int] = []
        for k, m in zip(reversed(ks), reversed(fshape)):
            pad += [0, m - k]
        dims = tuple(range(-self.ndim, 0))
        centred = torch.roll(F.pad(kernel, pad), [-((k - 1) // 2) for k in ks], dims)
        return fshape, torch.fft.rfftn(centred, dim=dims)

    def _convolve(self, x: torch.Tensor, otf: torch.Tensor, fshape: tuple[int, ...]) -> torch.Tensor:
        dims = tuple(range(-self.ndim, 0))
        out = torch.fft.irfftn(torch.fft.rfftn(x, s=fshape, dim=dims) * otf, s=fshape, dim=dims)
        return out[(..., *(slice(0, s) for s in x.shape[-self.ndim :]))]

    def _start_estimate(self, z: torch.Tensor) -> torch.Tensor:
        raw = torch.clamp(z * self.std + self.mean, min=1e-3 * max(abs(self.mean), self.std))
        fshape, otf = self._otfs(tuple(raw.shape[-self.ndim :]), raw)
        adjoint = otf.conj()
        u = torch.full_like(raw, 1.0) * raw.mean(dim=tuple(range(1, raw.ndim)), keepdim=True)
        for _ in range(self.iterations):
            u = u * self._convolve(raw / (self._convolve(u, otf, fshape) + 1e-12), adjoint, fshape)
        return (u - self.mean) / self.std

    def _deconvolve(self, z: torch.Tensor) -> torch.Tensor:
        if self.start != "lucy-richardson":
            return self.unet(z)
        return self.unet(torch.cat([self._start_estimate(z), z], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.std
        if not self.tta:
            out = self._deconvolve(z)
        else:
            out = torch.zeros_like(z)
            for k in range(4):
                for flip in (False, True):
                    t = torch.rot90(z, k, dims=(-2, -1))
                    if flip:
                        t = torch.flip(t, dims=(-1,))
                    y = self._deconvolve(t)
                    if flip:
                        y = torch.flip(y, dims=(-1,))
                    out = out + torch.rot90(y, -k, dims=(-2, -1))
            out = out / 8
        return out * self.std + self.mean
