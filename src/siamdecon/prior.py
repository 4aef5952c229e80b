"""Priors: starting networks pretrained on synthetic images for one PSF.

Training on one image alone leaves the PSF's null space to whatever a few hundred steps find
(README "Performance on a CPU"). A prior fixes the start: the same U-Net is first trained,
supervised, to deconvolve synthetic images (dead leaves and fluorescence-like filaments and spots,
:mod:`siamdecon.simulate`) blurred with the PSF and noised over a range of noise levels. No real
image is used, so a prior may be shipped and used on any data taken with that PSF. Training on the
image itself then fine-tunes it (``prior.fine_tune_steps``), or, for the generic 2D prior, uses it
as it is.

A prior is pretrained for one PSF and one network shape. ``prior: auto`` in a config looks for a
shipped prior (``siamdecon/priors/*.pt``) whose PSF equals the image's PSF; with
``prior.transfer`` (the ``fast`` preset) and no such prior, it takes the shipped prior whose PSF is
nearest in width, if the widths are close enough; the rules live in :mod:`siamdecon.prior_choice`.
The Lucy-Richardson
start and (in 2D) the fine-tuning then use the image's own PSF. That was ahead of training from
scratch, on average, for every PSF measured in that range (``benchmarks/prior_transfer.py``).
``siamdecon pretrain`` makes a prior for the exact PSF.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, TypeAdapter
from tqdm.auto import tqdm

from ._version import __version__
from .config import Config, NetworkConfig, StartConfig, TrainingConfig, _Model
from .errors import ConfigError, InputError
from .network import prefer_channels_last
from .runtime import keep_freed_memory

__all__ = [
    "PretrainConfig",
    "Prior",
    "pretrain",
    "default_pretrain_config",
]

_FORMAT = "siamdecon-prior"
_FORMAT_VERSION = 1
# A PSF "equals" a prior's when every tap agrees within this fraction of the peak.
_PSF_TOLERANCE = 1e-3


class PretrainConfig(_Model):
    """Settings of supervised pretraining on synthetic images (defaults: 2D; see
    :func:`default_pretrain_config` for 3D)."""

    images: int = Field(600, ge=1, description="synthetic training images (or volumes)")
    image_size: int = Field(256, ge=16, description="side of each synthetic image (y and x)")
    depth: int = Field(48, ge=8, description="3D only: z planes of each synthetic volume")
    fluorescence_fraction: float = Field(
        0.2, ge=0, le=1, description="2D only: share of fluorescence-like images (the rest: dead leaves)"
    )
    blur_probability: float = Field(0.5, ge=0, le=1, description="share of images slightly smoothed first")
    gaussian: tuple[float, float] = Field((0.02, 0.15), description="range of the Gaussian noise std")
    poisson: tuple[float, float] = Field((0.0, 0.003), description="range of the Poisson factor alpha")
    salt_pepper: float = Field(
        0.01, ge=0, lt=1, description="salt-and-pepper fraction, on half of the images (the 3D protocol has none)"
    )
    steps: int = Field(6000, ge=1)
    batch_size: int = Field(16, ge=1)
    patch_size: int = Field(64, ge=16)
    lr: float = Field(2e-3, gt=0)
    seed: int = 0
    psfs: int = Field(
        0,
        ge=0,
        description=(
            "0: pretrain for the given PSF; N > 0: a generic prior, for any PSF and camera, on N random"
            " PSFs and random cameras (siamdecon.synthetic)"
        ),
    )


@dataclass
class Prior:
    """A pretrained U-Net, the PSF it was trained for and how it was made.

    Attributes
    ----------
    state_dict : dict
        U-Net weights.
    network : NetworkConfig
        The U-Net's shape.
    start : StartConfig
        The start estimate the U-Net corrects (as ``training.start``).
    psf : np.ndarray or None
        The normalized PSF it was pretrained for; ``None`` for a generic prior (any PSF and camera,
        which its start estimate's inputs carry).
    settings : PretrainConfig
        How it was trained.
    info : dict
        Steps, seconds, final loss, version.
    name : str
        The file it was read from.
    ndim : int
        2 or 3 (the PSF's dimensionality when there is one).
    """

    state_dict: dict[str, torch.Tensor]
    network: NetworkConfig
    start: StartConfig
    psf: np.ndarray | None
    settings: PretrainConfig
    info: dict[str, Any] = field(default_factory=dict)
    name: str = "prior"
    ndim: int = 0

    def __post_init__(self) -> None:
        if self.psf is not None:
            self.ndim = int(np.ndim(self.psf))
        if self.ndim not in (2, 3):
            raise ValueError(f"a prior is for 2D or 3D data, got ndim={self.ndim}")

    @property
    def generic(self) -> bool:
        """Whether the prior was pretrained for any PSF rather than for one."""
        return self.psf is None

    def matches_psf(self, psf: np.ndarray) -> bool:
        """Whether ``psf`` (normalized) is this prior's PSF (never for a generic prior)."""
        if self.psf is None:
            return False
        psf = np.asarray(psf, dtype=np.float64)
        own = np.asarray(self.psf, dtype=np.float64)
        if psf.shape != own.shape:
            return False
        return float(np.abs(psf / psf.sum() - own).max()) <= _PSF_TOLERANCE * float(own.max())

    def incompatibility(self, config: Config) -> str | None:
        """Why this prior cannot start ``config``'s network, or ``None`` if it can."""
        if self.ndim != config.ndim:
            return f"it is for {self.ndim}D data, the config for {config.ndim}D"
        if self.network != config.network:
            return f"its network is {self.network.model_dump()}, the config's {config.network.model_dump()}"
        if self.start != config.training.start:
            return (
                f"it corrects the start {self.start.model_dump()}, the config's is {config.training.start.model_dump()}"
            )
        return None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to one file (atomically)."""
        from .torchfile import write_torch_file

        p = Path(path)
        state = {
            "network": self.network.model_dump_json(),
            "start": self.start.model_dump_json(),
            "ndim": self.ndim,
            "psf": None if self.psf is None else torch.from_numpy(np.asarray(self.psf, dtype=np.float32).copy()),
            "settings": self.settings.model_dump_json(),
            "info": {k: v for k, v in self.info.items() if isinstance(v, (int, float, str))},
            "state_dict": {k: v.detach().cpu().contiguous() for k, v in self.state_dict.items()},
        }
        return write_torch_file(p, _FORMAT, _FORMAT_VERSION, state)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Prior:
        """Read a file written by :meth:`save`."""
        from .torchfile import read_torch_file

        p = Path(path)
        state = read_torch_file(p, _FORMAT, _FORMAT_VERSION, "prior")
        try:
            return cls(
                state_dict=state["state_dict"],
                network=NetworkConfig.model_validate_json(state["network"]),
                start=_read_start(state),
                psf=None if state["psf"] is None else state["psf"].numpy(),
                settings=PretrainConfig.model_validate_json(state["settings"]),
                info=dict(state.get("info", {})),
                name=p.name,
                ndim=int(state.get("ndim", 0)),
            )
        except Exception as exc:
            raise InputError(f"prior file '{p}' is damaged or incompatible: {exc}") from exc


def _read_start(state: dict[str, Any]) -> StartConfig:
    """The start of a prior file: a JSON mapping, or (files before the typed start) its kind
    beside ``start_iterations`` and ``start_extra_iterations``."""
    raw = state["start"]
    if raw.lstrip().startswith("{"):
        return TypeAdapter(StartConfig).validate_json(raw)
    legacy = {"start": raw, "start_iterations": int(state["start_iterations"])}
    legacy["start_extra_iterations"] = tuple(int(n) for n in state.get("start_extra_iterations", ()))
    return TrainingConfig.model_validate(legacy).start


def default_pretrain_config(ndim: int, generic: bool = False, **overrides: Any) -> PretrainConfig:
    """Pretraining defaults for 2D or 3D, for one PSF or (``generic``) any PSF and camera.

    One PSF: 600 images of 256^2 (3D: 150 volumes of 48x128x128, batch 2, 4,000 steps). Generic:
    800 random structures of 192^2, 400 random PSFs, patches of 80^2, 9,000 steps (the shipped
    fast-2d-generic.pt); 3D: 80 volumes of 64x128^2, 150 PSFs, patches of 32x64x64, batch 2, 4,500 steps
    (the shipped fast-3d-generic.pt, an hour on 2 CPU cores).
    """
    if ndim not in (2, 3):
        raise ConfigError(f"ndim must be 2 or 3, got {ndim}")
    if generic:
        base: dict[str, Any] = (
            {"images": 800, "image_size": 192, "psfs": 400, "patch_size": 80, "steps": 9000}
            if ndim == 2
            else {
                "images": 80,
                "image_size": 128,
                "depth": 64,
                "psfs": 150,
                "patch_size": 64,
                "batch_size": 2,
                "steps": 4500,
            }
        )
    elif ndim == 3:
        base = {"images": 150, "image_size": 128, "patch_size": 48, "batch_size": 2, "steps": 4000}
        base["salt_pepper"] = 0.0
    else:
        base = {}
    return PretrainConfig(**{**base, **{k: v for k, v in overrides.items() if v is not None}})


def _cosine(step: int, total: int, warm: float = 0.05) -> float:
    frac = step / max(total, 1)
    if frac < warm:
        return 0.1 + 0.9 * frac / warm
    return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * (frac - warm) / (1 - warm)))


def pretrain(
    psf: np.ndarray | None,
    config: Config,
    settings: PretrainConfig | None = None,
    *,
    device: str = "cpu",
    progress: bool = True,
    allow_interrupt: bool = True,
    init: Prior | None = None,
) -> Prior:
    """Train ``config``'s network, supervised, to deconvolve synthetic images.

    Parameters
    ----------
    psf : np.ndarray or None
        Normalized 2D or 3D PSF: images blurred with it and degraded by the paper's protocol over a
        range of noise levels. ``None``: a generic prior (``settings.psfs`` random PSFs and random
        cameras, :class:`siamdecon.synthetic.GenericBatches`; needs ``training.start="generic"``).
    config : Config
        Gives the network shape, the start estimate and the loss border.
    settings : PretrainConfig, optional
        Data and optimization; default :func:`default_pretrain_config` for the dimensionality.
    device : str
        Where to train.
    progress : bool
        Show progress bars.
    allow_interrupt : bool
        Ctrl-C stops early and returns the weights so far (``info["interrupted"]``).
    init : Prior, optional
        Continue from this prior's weights instead of a random initialization (it must fit
        ``config``'s network and start). A generic prior continued on one ``psf`` becomes a prior
        for that PSF; continued generic (``psf=None``), give ``settings`` another seed than the
        prior's so that new PSFs and structures are drawn. ``info["steps_before"]`` of the result
        counts the steps its weights had already been trained.

    Returns
    -------
    Prior
        The pretrained weights with their PSF (``None`` if generic) and settings.
    """
    # Seeding torch's global generator (network initialization) must not outlive the call.
    from .device import resolve_device

    dev = resolve_device(device)
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        return _pretrain(psf, config, settings, device, progress, allow_interrupt, init)


def _pretrain(
    psf: np.ndarray | None,
    config: Config,
    settings: PretrainConfig | None,
    device: str,
    progress: bool,
    stop: bool,
    init: Prior | None,
) -> Prior:
    from .data import Normalization
    from .device import resolve_device
    from .network import build_network
    from .synthetic import FixedPSFBatches, GenericBatches

    ndim = config.ndim if psf is None else np.ndim(psf)
    if config.ndim != ndim:
        raise ConfigError(f"the PSF is {ndim}D but the config is for {config.ndim}D")
    generic_start = config.training.start.kind == "generic"
    settings = settings or default_pretrain_config(ndim, generic=psf is None)
    if psf is None and not (generic_start and settings.psfs > 0):
        raise ConfigError(
            "a generic prior (no PSF) needs the 'generic' training.start and settings.psfs > 0 random PSFs"
        )
    if init is not None:
        why = init.incompatibility(config)
        if why is not None:
            raise ConfigError(f"cannot continue pretraining from prior '{init.name}': {why}")
    dev = resolve_device(device)
    keep_freed_memory(dev)
    torch.manual_seed(settings.seed)
    if psf is None:
        batches = GenericBatches(
            ndim,
            settings.patch_size,
            settings.batch_size,
            settings.images,
            settings.image_size,
            settings.depth,
            settings.psfs,
            seed=settings.seed,
            progress=progress,
        )
        kernel = batches.bank[0]
    else:
        kernel = np.asarray(psf, dtype=np.float32)
        batches = FixedPSFBatches(kernel, settings, generic_start, progress)
    net = build_network(config, kernel, Normalization(0.0, 1.0, 0.0, 1.0))
    if init is not None:
        net.unet.load_state_dict(init.state_dict)
    net = prefer_channels_last(net.to(dev), dev)
    opt = torch.optim.Adam(net.unet.parameters(), lr=settings.lr)
    first = batches()
    patch = tuple(first.x.shape[2:])
    border = min(config.training.loss_border, (min(patch) - 1) // 2)
    inner = (..., *(slice(border, p - border) for p in patch))
    start_time = time.perf_counter()
    losses: list[float] = []
    interrupted = False
    bar = tqdm(total=settings.steps, desc="pretraining", disable=not progress, dynamic_ncols=True)
    net.train()
    try:
        for step in range(settings.steps):
            for group in opt.param_groups:
                group["lr"] = settings.lr * _cosine(step, settings.steps)
            batch = first if step == 0 else batches()
            x, target = batch.x.to(dev), batch.target.to(dev)
            stats = {k: v.to(dev) for k, v in batch.stats.items()}
            if generic_start:
                with torch.no_grad():
                    inputs = net.generic_inputs(x, **stats, op=None if batch.op is None else batch.op.to(dev))
                out = net.unet(inputs)
            else:
                out = net(x, stats["mean"], stats["std"])
            loss = ((out - target)[inner] ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if not math.isfinite(losses[-1]):
                raise FloatingPointError(f"the pretraining loss became {losses[-1]} at step {step + 1}")
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-100:]):.4f}", refresh=False)
    except KeyboardInterrupt:
        if not stop:  # Ctrl-C ends pretraining early only when the caller allows it
            raise
        interrupted = True
    finally:
        bar.close()
    info = {
        "steps": len(losses),
        "seconds": time.perf_counter() - start_time,
        # Means over the first and last tenth (at most 10 and 100 steps): a short run's final
        # figure must not average its own start in.
        "initial_loss": float(np.mean(losses[: max(1, min(10, len(losses) // 10))])) if losses else float("nan"),
        "final_loss": float(np.mean(losses[-max(1, min(100, len(losses) // 10)) :])) if losses else float("nan"),
        "interrupted": int(interrupted),
        "siamdecon_version": __version__,
    }
    if init is not None:
        info["init"] = init.name
        info["steps_before"] = int(init.info.get("steps", 0)) + int(init.info.get("steps_before", 0))
    state = {k: v.detach().cpu().contiguous() for k, v in net.unet.state_dict().items()}
    return Prior(
        state, config.network, config.training.start, None if psf is None else kernel, settings, info, ndim=ndim
    )
