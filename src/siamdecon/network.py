"""The U-Net of the paper, 2D and 3D.

Pre-activation residual units (norm, ReLU, 3x3 conv, twice, plus the identity), 2x2 strided
convolutions down, 2x2 transposed convolutions up, skips by concatenation or addition and a 1x1
head. With the paper's settings (3 levels, 96 features doubling per level, concatenating skips)
the 2D network has about 5.7 M parameters; the 3D one (48 features, additive skips) about 3.6 M.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .config import Config
    from .data import Normalization

__all__ = ["DeconvolutionNetwork", "UNet", "build_network", "count_parameters", "prefer_channels_last"]

Norm = Literal["batch", "group", "none"]
Skip = Literal["concat", "add"]


def _conv(ndim: int) -> type[nn.Module]:
    return nn.Conv2d if ndim == 2 else nn.Conv3d


def _norm(kind: Norm, ndim: int, channels: int) -> nn.Module:
    if kind == "batch":
        return (nn.BatchNorm2d if ndim == 2 else nn.BatchNorm3d)(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


class ResidualUnit(nn.Module):
    """``x + conv(relu(norm(conv(relu(norm(x))))))``; a 1x1 projection when widths differ."""

    def __init__(self, ndim: int, c_in: int, c_out: int, norm: Norm) -> None:
        super().__init__()
        conv = _conv(ndim)
        self.body = nn.Sequential(
            _norm(norm, ndim, c_in),
            nn.ReLU(inplace=False),
            conv(c_in, c_out, 3, padding=1, bias=norm == "none"),
            _norm(norm, ndim, c_out),
            nn.ReLU(inplace=True),
            conv(c_out, c_out, 3, padding=1),
        )
        self.project = conv(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(x) + self.body(x)


def _channels_last(ndim: int) -> torch.memory_format:
    return torch.channels_last if ndim == 2 else torch.channels_last_3d


def prefer_channels_last(net: nn.Module, device: torch.device) -> nn.Module:
    """Store ``net``'s U-Net weights channels-last when running on the CPU; returns ``net``.

    oneDNN's CPU convolutions are faster on channels-last tensors (measured by
    benchmarks/throughput.py: 1.09x per 2D training step of the fast preset, 1.35x in 3D). On other
    devices the layout is left as it is (untested there: no GPU on the development machine).
    """
    if device.type == "cpu":
        for module in net.modules():
            if isinstance(module, UNet):
                module.to(memory_format=_channels_last(module.ndim))
    return net


class UNet(nn.Module):
    """U-Net for 2D or 3D single-image restoration.

    Parameters
    ----------
    ndim : {2, 3}
        Spatial dimensions.
    in_channels, out_channels : int
        Channels of input and output.
    width : int
        Features of the first level; level ``i`` has ``width * 2**i``.
    levels : int
        Number of resolution levels (``levels - 1`` downsamplings); the paper uses 3.
    skip : {"concat", "add"}
        How encoder features join the decoder.
    norm : {"batch", "group", "none"}
        Normalization inside residual units.
    residual : bool
        If true, the output is ``input[:, :out_channels] + net(input)`` and the head starts at zero,
        so the untrained network is the identity on its first input channel(s).

    Notes
    -----
    Inputs of any size are accepted: they are padded (reflect) to a multiple of
    ``2**(levels - 1)`` and the output is cropped back.
    """

    def __init__(
        self,
        ndim: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        width: int = 96,
        levels: int = 3,
        skip: Skip = "concat",
        norm: Norm = "batch",
        residual: bool = False,
    ) -> None:
        super().__init__()
        if ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3, got {ndim}")
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        if skip not in ("concat", "add"):
            raise ValueError(f"skip must be 'concat' or 'add', got {skip!r}")
        if residual and in_channels < out_channels:
            raise ValueError("a residual network needs at least as many input as output channels")
        conv = _conv(ndim)
        down = conv
        up = nn.ConvTranspose2d if ndim == 2 else nn.ConvTranspose3d
        self.ndim, self.levels, self.skip, self.residual = ndim, levels, skip, residual
        self.out_channels = out_channels
        widths = [width * 2**i for i in range(levels)]
        self.stem = conv(in_channels, widths[0], 3, padding=1)
        self.encoder = nn.ModuleList([ResidualUnit(ndim, widths[0], widths[0], norm)])
        self.downs = nn.ModuleList()
        for i in range(1, levels):
            self.downs.append(down(widths[i - 1], widths[i], 2, stride=2))
            self.encoder.append(ResidualUnit(ndim, widths[i], widths[i], norm))
        self.ups = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in reversed(range(levels - 1)):
            self.ups.append(up(widths[i + 1], widths[i], 2, stride=2))
            c_in = 2 * widths[i] if skip == "concat" else widths[i]
            self.decoder.append(ResidualUnit(ndim, c_in, widths[i], norm))
        self.head = nn.Sequential(_norm(norm, ndim, widths[0]), nn.ReLU(inplace=True), conv(widths[0], out_channels, 1))
        if residual:
            nn.init.zeros_(self.head[-1].weight)
            nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = x.shape[2:]
        multiple = 2 ** (self.levels - 1)
        pad: list[int] = []
        for s in reversed(spatial):
            pad += [0, (-s) % multiple]
        xp = F.pad(x, pad, mode="reflect") if any(pad) else x
        fmt = _channels_last(self.ndim)
        if self.stem.weight.is_contiguous(memory_format=fmt) and not self.stem.weight.is_contiguous():
            # Weights stored channels-last (prefer_channels_last): give the input the same layout.
            xp = xp.contiguous(memory_format=fmt)
        h = self.encoder[0](self.stem(xp))
        skips = [h]
        for down, unit in zip(self.downs, self.encoder[1:], strict=False):
            h = unit(down(h))
            skips.append(h)
        skips.pop()
        for up, unit in zip(self.ups, self.decoder, strict=False):
            h = up(h)
            s = skips.pop()
            h = torch.cat([h, s], dim=1) if self.skip == "concat" else h + s
            h = unit(h)
        out = self.head(h)
        if any(pad):
            out = out[(..., *[slice(0, s) for s in spatial])]
        if self.residual:
            out = out + x[:, : self.out_channels]
        return out


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class DeconvolutionNetwork(nn.Module):
    """The trainable map ``f``: a U-Net, optionally correcting a classical start estimate.

    Parameters
    ----------
    unet : UNet
        The network. With a start estimate it must be residual and take :meth:`in_channels` channels.
    start : {"none", "input", "lucy-richardson", "generic"}
        ``"none"``: ``f(x) = unet(x)`` (the paper). ``"input"``: ``f(x) = x + unet(x)``.
        ``"lucy-richardson"``: ``f(x) = s(x) + unet([s(x), x])`` where ``s`` is ``iterations``
        Lucy-Richardson steps computed on the very input ``x`` (masked or not), so both Siamese
        branches see a start that depends only on their own input.
        ``"generic"``: the input of a prior that takes any PSF and any camera,
        ``f(x) = s_a(x) + unet([s_a(x), x, s_b(x)..., sigma(x)])``: Lucy-Richardson estimates after
        ``iterations`` and ``extra_iterations`` steps on the offset-subtracted, clipped data with the
        object extended beyond the input's border (the PSF enters through them), and the noise's
        standard deviation at every pixel from the camera model (``gain``, ``offset``,
        ``read_variance``), all in the standardized units of ``x``.
    psf : torch.Tensor or np.ndarray, optional
        Kernel for the Lucy-Richardson start.
    iterations : int
        Lucy-Richardson iterations of the start.
    mean, std : float
        Standardization of ``x`` (LR runs on raw, non-negative intensities).
    extra_iterations : tuple of int
        ``"generic"`` only: further Lucy-Richardson estimates given as input channels.
    gain, offset, read_variance : float
        ``"generic"`` only: the camera model, ``var(raw) = gain * (raw - offset) + read_variance``
        (see :class:`siamdecon.noise.NoiseModel`).
    """

    STARTS = ("none", "input", "lucy-richardson", "generic")

    def __init__(
        self,
        unet: UNet,
        start: str = "none",
        psf: torch.Tensor | None = None,
        iterations: int = 1,
        mean: float = 0.0,
        std: float = 1.0,
        extra_iterations: tuple[int, ...] = (),
        gain: float = 1.0,
        offset: float = 0.0,
        read_variance: float = 0.0,
    ) -> None:
        super().__init__()
        if start not in self.STARTS:
            raise ValueError(f"start must be one of {', '.join(self.STARTS)}, got {start!r}")
        if start != "none" and not unet.residual:
            raise ValueError("a start estimate needs a residual U-Net")
        if extra_iterations and start != "generic":
            raise ValueError("extra_iterations are inputs of the 'generic' start only")
        self.unet = unet
        self.start = start
        self.iterations = iterations
        self.extra_iterations = tuple(int(n) for n in extra_iterations)
        self.mean = float(mean)
        self.std = float(std)
        self.gain = float(gain)
        self.offset = float(offset)
        self.read_variance = float(read_variance)
        self.op = None
        if start in ("lucy-richardson", "generic"):
            if psf is None:
                raise ValueError(f"the {start!r} start needs the PSF")
            from .operators import PSFConvolution

            self.op = PSFConvolution(psf)

    @staticmethod
    def in_channels(start: str, extra_iterations: tuple[int, ...] = ()) -> int:
        """Input channels of the U-Net for a start."""
        return {"none": 1, "input": 1, "lucy-richardson": 2}.get(start, 3 + len(extra_iterations))

    def start_estimate(
        self, x: torch.Tensor, mean: float | torch.Tensor | None = None, std: float | torch.Tensor | None = None
    ) -> torch.Tensor:
        """``s(x)`` in standardized units (``x`` itself for ``start="input"``).

        ``mean`` and ``std`` default to the network's own; tensors of shape ``(B, 1, 1, ...)``
        give every sample its own (pretraining on many images, :mod:`siamdecon.prior`).
        """
        if self.op is None:
            return x
        if self.start == "generic":
            return self.generic_inputs(x, mean, std)[:, :1]
        mean = self.mean if mean is None else mean
        std = self.std if std is None else std
        raw = x * std + mean
        # LR needs positive data; noise can dip below zero, which carries no information here.
        if isinstance(mean, torch.Tensor) or isinstance(std, torch.Tensor):
            floor = 1e-3 * torch.maximum(torch.as_tensor(mean).abs(), torch.as_tensor(std))
            raw = torch.maximum(raw, floor.to(raw))
        else:
            raw = torch.clamp(raw, min=1e-3 * max(abs(mean), std))
        u = torch.full_like(raw, 1.0) * raw.mean(dim=tuple(range(1, raw.ndim)), keepdim=True)
        for _ in range(self.iterations):
            u = u * self.op.adjoint(raw / (self.op(u) + 1e-12))
        return (u - mean) / std

    def generic_inputs(
        self,
        x: torch.Tensor,
        mean: float | torch.Tensor | None = None,
        std: float | torch.Tensor | None = None,
        gain: float | torch.Tensor | None = None,
        offset: float | torch.Tensor | None = None,
        read_variance: float | torch.Tensor | None = None,
        op: nn.Module | None = None,
    ) -> torch.Tensor:
        """The ``"generic"`` start's channels ``[s_a, x, s_b..., sigma]`` (standardized units).

        Every statistic defaults to the network's own; tensors of shape ``(B, 1, 1, ...)`` give each
        sample its own, and ``op`` another PSF (pretraining on many PSFs and cameras).
        """
        from .classical import richardson_lucy_tensors

        mean = self.mean if mean is None else mean
        std = self.std if std is None else std
        gain = self.gain if gain is None else gain
        offset = self.offset if offset is None else offset
        read_variance = self.read_variance if read_variance is None else read_variance
        op = self.op if op is None else op
        raw = x * std + mean
        photons = (raw - offset) / gain
        # Lucy-Richardson needs non-negative data; the read noise's negative excursions carry no light.
        scale = torch.clamp(torch.as_tensor(photons.abs().mean(dim=tuple(range(1, x.ndim)), keepdim=True)), min=1e-6)
        positive = torch.clamp(photons, min=0.0) + 1e-3 * scale
        counts = (self.iterations, *self.extra_iterations)
        estimates = richardson_lucy_tensors(positive, op, counts)
        standardized = [((e * gain + offset) - mean) / std for e in estimates]
        kernel = 3
        pool = F.avg_pool2d if x.ndim == 4 else F.avg_pool3d
        local = pool(F.pad(raw, [kernel // 2] * (2 * (x.ndim - 2)), mode="replicate"), kernel, stride=1)
        variance = gain * torch.clamp(local - offset, min=0.0) + read_variance
        sigma = torch.sqrt(torch.clamp(variance, min=0.0)) / std
        return torch.cat([standardized[0], x, *standardized[1:], sigma], dim=1)

    def forward(
        self,
        x: torch.Tensor,
        mean: float | torch.Tensor | None = None,
        std: float | torch.Tensor | None = None,
        gain: float | torch.Tensor | None = None,
        offset: float | torch.Tensor | None = None,
        read_variance: float | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``f(x)`` for standardized ``x``; the statistics default to the network's own (those of
        the image it was trained on), so that prediction with another image's need not change it."""
        return self.unet(self.unet_inputs(x, mean, std, gain, offset, read_variance))

    def unet_inputs(
        self,
        x: torch.Tensor,
        mean: float | torch.Tensor | None = None,
        std: float | torch.Tensor | None = None,
        gain: float | torch.Tensor | None = None,
        offset: float | torch.Tensor | None = None,
        read_variance: float | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """What the U-Net sees for standardized ``x``: ``x`` itself, or ``x`` with the start's
        estimates (computed without gradient; networks with the same start, PSF and statistics
        can share them)."""
        if self.start in ("none", "input"):
            return x
        with torch.no_grad():
            if self.start == "generic":
                return self.generic_inputs(x, mean, std, gain, offset, read_variance)
            return torch.cat([self.start_estimate(x, mean, std), x], dim=1)


def build_network(config: Config, psf: np.ndarray, norm: Normalization) -> DeconvolutionNetwork:
    """The network described by ``config`` (input channels and residual follow ``training.start``)."""
    start = config.training.start.kind
    counts = config.training.start.iterations_run()
    extra = counts[1:]
    unet = UNet(
        ndim=config.ndim,
        in_channels=DeconvolutionNetwork.in_channels(start, extra),
        out_channels=1,
        width=config.network.width,
        levels=config.network.levels,
        skip=config.network.skip,
        norm=config.network.norm,
        residual=start != "none",
    )
    return DeconvolutionNetwork(
        unet,
        start=start,
        psf=torch.as_tensor(np.asarray(psf, dtype=np.float32)),
        iterations=counts[0] if counts else 1,
        mean=norm.mean,
        std=norm.std,
        extra_iterations=extra,
        gain=norm.gain,
        offset=norm.offset,
        read_variance=norm.read_variance,
    )
