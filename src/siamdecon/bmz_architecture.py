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
    start : {"none", "input", "lucy-richardson", "generic"}
        ``f(x) = unet(x)``, ``x + unet(x)``, or ``s(x) + unet([s(x), x])`` with ``s`` a few
        Lucy-Richardson iterations with the PSF on the input itself; ``"generic"`` (the fast
        preset's default): ``s_a(x) + unet([s_a(x), x, s_b(x)..., sigma(x)])``, Lucy-Richardson
        estimates of the offset-subtracted photon counts with the object extended beyond the
        input's border, and the camera model's noise level at every pixel.
    iterations : int
        Lucy-Richardson iterations of the start (``s_a``).
    psf_shape : list of int
        Shape of the PSF, stored in the ``psf`` buffer of the state dict.
    mean, std : float
        Standardization of the training image: ``(x - mean) / std``.
    tta : bool
        Average over the 8 rotations and flips of the (y, x) plane (for the generic start, of its
        input channels, which is valid for any PSF).
    extra_iterations : list of int
        ``"generic"`` only: the iteration counts of the further estimates ``s_b``.
    gain, offset, read_variance : float
        ``"generic"`` only: the camera model of the training image,
        ``var(raw) = gain * (raw - offset) + read_variance``.
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
        extra_iterations: list[int] | None = None,
        gain: float = 1.0,
        offset: float = 0.0,
        read_variance: float = 0.0,
    ) -> None:
        super().__init__()
        if ndim not in (2, 3) or len(psf_shape) != ndim:
            raise ValueError(f"ndim must be 2 or 3 with a PSF of as many axes, got {ndim} and {psf_shape}")
        if start not in ("none", "input", "lucy-richardson", "generic"):
            raise ValueError(f"start must be 'none', 'input', 'lucy-richardson' or 'generic', got {start!r}")
        if extra_iterations and start != "generic":
            raise ValueError("extra_iterations are inputs of the 'generic' start only")
        if start == "generic" and gain <= 0:
            raise ValueError(f"the generic start needs a positive camera gain, got {gain}")
        self.ndim, self.start, self.iterations = ndim, start, int(iterations)
        self.mean, self.std, self.tta = float(mean), float(std), bool(tta)
        self.extra_iterations = [int(n) for n in extra_iterations or []]
        self.gain, self.offset, self.read_variance = float(gain), float(offset), float(read_variance)
        in_channels = {"lucy-richardson": 2, "generic": 3 + len(self.extra_iterations)}.get(start, 1)
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

    def _extended_estimates(self, data: torch.Tensor, counts: list[int]) -> list[torch.Tensor]:
        """Lucy-Richardson with the object estimated on the input padded by half the PSF:
        ``u <- u * P^T(w x / P u) / P^T w``, ``w`` one on the input and zero outside; where
        ``P^T w`` is below 1e-3 the estimate keeps its value. Starts from the input's mean."""
        ks = tuple(self.psf.shape)
        half = [k // 2 for k in ks]
        spatial = tuple(data.shape[-self.ndim :])
        inner = (..., *(slice(h, h + n) for h, n in zip(half, spatial)))
        ext = tuple(n + 2 * h for n, h in zip(spatial, half))
        fshape, otf = self._otfs(ext, data)
        adjoint = otf.conj()
        weight = data.new_zeros((*data.shape[:2], *ext))
        weight[inner] = 1.0
        norm = self._convolve(weight, adjoint, fshape)
        small = norm < 1e-3
        norm = torch.where(small, torch.ones_like(norm), norm)
        dims = tuple(range(2, data.ndim))
        start = torch.clamp(data.mean(dim=dims, keepdim=True), min=1e-6).expand_as(data).contiguous()
        pad: list[int] = []
        for h in reversed(half):
            pad += [h, h]
        u = F.pad(start, pad, mode="replicate")
        ratio = data.new_zeros(weight.shape)
        kept: dict[int, torch.Tensor] = {}
        for done in range(1, max(counts) + 1):
            ratio[inner] = data / (self._convolve(u, otf, fshape)[inner] + 1e-12)
            factor = self._convolve(ratio, adjoint, fshape) / norm
            u = u * torch.where(small, torch.ones_like(factor), factor)
            if done in counts:
                kept[done] = u[inner].clone()
        return [kept[n] for n in counts]

    def _generic_inputs(self, z: torch.Tensor) -> torch.Tensor:
        raw = z * self.std + self.mean
        photons = (raw - self.offset) / self.gain
        # Lucy-Richardson needs non-negative data; the read noise's negative excursions carry no light.
        scale = torch.clamp(photons.abs().mean(dim=tuple(range(1, z.ndim)), keepdim=True), min=1e-6)
        positive = torch.clamp(photons, min=0.0) + 1e-3 * scale
        estimates = self._extended_estimates(positive, [self.iterations, *self.extra_iterations])
        standardized = [(e * self.gain + self.offset - self.mean) / self.std for e in estimates]
        pool = F.avg_pool2d if self.ndim == 2 else F.avg_pool3d
        local = pool(F.pad(raw, [1] * (2 * self.ndim), mode="replicate"), 3, stride=1)
        variance = self.gain * torch.clamp(local - self.offset, min=0.0) + self.read_variance
        sigma = torch.sqrt(torch.clamp(variance, min=0.0)) / self.std
        return torch.cat([standardized[0], z, *standardized[1:], sigma], dim=1)

    def _deconvolve(self, z: torch.Tensor) -> torch.Tensor:
        if self.start != "lucy-richardson":  # the generic start's channels are made in forward
            return self.unet(z)
        return self.unet(torch.cat([self._start_estimate(z), z], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.std
        if self.start == "generic":
            # Computed once: rotating the channels made with the PSF (not the image) keeps the
            # average valid for a PSF without the plane's symmetries.
            z = self._generic_inputs(z)
        if not self.tta:
            out = self._deconvolve(z)
        else:
            out = torch.zeros_like(z[:, :1])
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
