"""Which prior runs for a PSF, and with which settings: the selection rules.

``prior: auto`` looks for a shipped prior (``siamdecon/priors/*.pt``) pretrained for exactly the
image's PSF, else (with ``prior.transfer``) the shipped prior whose PSF is nearest in width within
:data:`TRANSFER_RATIO`; :func:`config_for_psf` fills in what the presets leave to the prior (its
start, the fine-tuning steps measured best for it). The prior file itself and pretraining live in
:mod:`siamdecon.prior`.
"""

from __future__ import annotations

import functools
import math
from importlib import resources
from pathlib import Path

import numpy as np

from .config import Config
from .errors import ConfigError
from .prior import Prior
from .psf import psf_widths

__all__ = [
    "TRANSFER_RATIO",
    "FINE_TUNE_STEPS",
    "ADOPT_PSF_PRIOR_START",
    "shipped_priors",
    "config_for_psf",
    "resolve_prior",
]

#: RMS width of the image's PSF over the prior's, along every axis, within which ``transfer`` may
#: use the prior. Measured (benchmarks/prior_transfer.py), 2D on camera, coins and cell, mean gain
#: of the fine-tuned transferred prior over training from scratch: +3.14 dB at 0.55x, +2.76 at 0.78x,
#: +0.97 at 1.14x, +0.49 at 1.38x (one image -0.05), 0.00 at 1.90x (one image -0.62): wider PSFs
#: gain less. 3D, the benchmark volume, prior alone (the 3D preset does not fine-tune): +1.7 to
#: +1.8 dB at lateral widths 0.93x, 1.28x and 1.35x (axial 1.0x), hence a narrower range there.
TRANSFER_RATIO: dict[int, tuple[float, float]] = {2: (0.5, 1.5), 3: (0.9, 1.4)}


def shipped_priors() -> list[Path]:
    """The prior files that ship inside the package."""
    folder = resources.files("siamdecon") / "priors"
    if not folder.is_dir():
        return []
    return sorted(Path(str(f)) for f in folder.iterdir() if f.name.endswith(".pt"))


@functools.lru_cache(maxsize=8)
def _load_shipped(path: Path) -> Prior:
    # Package files do not change while running; "auto" is resolved by the CLI and again by
    # training, for every image of a batch or benchmark.
    return Prior.load(path)


#: Fine-tuning steps when ``prior.fine_tune_steps`` is ``None`` (the presets), per prior and
#: dimensionality (docs/benchmark-microscopy.md, docs/priors.md). The generic 2D prior is used as
#: it is: 200 blind-spot steps on the image lowered it on 6 of 8 quick microscopy cases (by
#: 0.14-0.92 dB; at 512^2 on 6 of 8), though they raise it on the paper's suite of natural images
#: (+0.36 dB), and held-out pixels cannot tell which (docs/priors.md); a generic prior specialized
#: to one PSF (fast-2d-generic-paper-psf.pt) counts as generic. A prior of another start made for
#: the image's PSF (used when the user's start is its start): in 2D 200 steps (batch 16) added about 0.27 dB
#: on the paper's suite; in 3D they lost 1.3 dB. A 3D prior the user gives is fine-tuned: nothing measured
#: says it fits the data as it is.
FINE_TUNE_STEPS = {"generic": {2: 0, 3: 200}, "this-psf": {2: 200, 3: 0}, "other": {2: 200, 3: 200}}


#: Dimensionalities in which the ``fast`` preset adopts the start of a shipped prior made for
#: exactly the image's PSF (the paper's) instead of its generic start and prior. In 3D the paper-PSF
#: prior is far ahead of the generic one on that PSF's data (33.33 against 28.08 dB on the quick
#: microscopy suite). In 2D the generic prior as it is and the paper-PSF prior fine-tuned 200 steps
#: are close on that PSF's data, each ahead on some measures (paper's suite: +1.22 against +1.06 dB
#: over the best Lucy-Richardson, SSIM 0.612 against 0.646; docs/priors.md), and the generic one
#: takes seconds instead of half a minute: 2D keeps the generic start for every PSF (for the
#: paper's, the generic prior specialized to it: +1.55 dB, SSIM 0.640).
ADOPT_PSF_PRIOR_START: dict[int, bool] = {2: False, 3: True}


def config_for_psf(config: Config, psf: np.ndarray) -> Config:
    """The config that runs for this PSF.

    For the ``fast`` preset's own start with ``prior.source="auto"``, in 3D (see
    :data:`ADOPT_PSF_PRIOR_START`), a shipped prior pretrained for exactly this PSF (the paper's)
    beats the generic start on that PSF's data but corrects another start: its start is adopted.
    ``prior.fine_tune_steps=None`` becomes the steps measured best for the prior that will run
    (:data:`FINE_TUNE_STEPS`). Starts and step counts the user chose are kept.

    Parameters
    ----------
    config : Config
        The run's config.
    psf : np.ndarray
        The normalized PSF of the image.
    """
    config = _adopted_start(config, psf)
    if config.prior.fine_tune_steps is not None:
        return config
    prior = resolve_prior(config.prior.source, psf, config)
    if prior is None:
        kind = "other"
    elif prior.generic or prior.start.kind == "generic":
        # A generic prior specialized to one PSF (`pretrain --psf --init`) runs as generic ones do.
        kind = "generic"
    else:
        kind = "this-psf" if prior.matches_psf(psf) else "other"
    steps = FINE_TUNE_STEPS[kind][config.ndim]
    return config.model_copy(update={"prior": config.prior.model_copy(update={"fine_tune_steps": steps})})


def _adopted_start(config: Config, psf: np.ndarray) -> Config:
    from .config import make_config

    if config.prior.source != "auto" or config.preset != "fast" or not ADOPT_PSF_PRIOR_START[config.ndim]:
        return config
    preset = make_config("fast", config.ndim)
    t = config.training
    if t.start != preset.training.start:
        return config
    shipped = [_load_shipped(p) for p in shipped_priors()]
    if any(p.incompatibility(config) is None and p.matches_psf(psf) for p in shipped):
        return config
    for p in shipped:
        if p.generic or p.ndim != config.ndim or p.network != config.network or not p.matches_psf(psf):
            continue
        return config.model_copy(update={"training": t.model_copy(update={"start": p.start})})
    return config


def resolve_prior(choice: str, psf: np.ndarray, config: Config) -> Prior | None:
    """The prior ``config`` asks for, checked against the PSF and the network.

    Parameters
    ----------
    choice : str
        ``"none"``; ``"auto"`` (a shipped prior made for this PSF and network; else a shipped
        generic prior for this network, made for any PSF; else, if ``config.prior.transfer``, the
        shipped prior whose PSF is nearest in width, when its RMS width along every axis is within
        :data:`TRANSFER_RATIO` of this PSF's; else none); or a path to a prior file (which must fit
        the network, and be generic or made for this PSF, or an error says why).
    psf : np.ndarray
        The normalized PSF of the image.
    config : Config
        The run's config.
    """
    if choice == "none":
        return None
    if choice == "auto":
        fitting = [p for p in map(_load_shipped, shipped_priors()) if p.incompatibility(config) is None]
        for prior in fitting:
            if prior.matches_psf(psf):
                return prior
        generic = [p for p in fitting if p.generic]
        if generic:
            return generic[0]
        fitting = [p for p in fitting if not p.generic]
        if not (config.prior.transfer and fitting):
            return None
        # Another PSF: the prior whose PSF is nearest in width along every axis.
        widths = psf_widths(psf)
        if min(widths) == 0.0:  # a single bright line or pixel: nothing to compare
            return None
        ratios = [[w / max(v, 1e-12) for w, v in zip(widths, psf_widths(p.psf), strict=True)] for p in fitting]
        worst = [max(abs(math.log(r)) for r in rs) for rs in ratios]
        i = int(np.argmin(worst))
        low, high = TRANSFER_RATIO[config.ndim]
        return fitting[i] if all(low <= r <= high for r in ratios[i]) else None
    prior = Prior.load(choice)
    reason = prior.incompatibility(config)
    if reason is not None:
        raise ConfigError(f"prior '{choice}' cannot start this network: {reason}")
    if not prior.generic and not prior.matches_psf(psf):
        raise ConfigError(
            f"prior '{choice}' was pretrained for another PSF (shape {prior.psf.shape}); pretrain one for this"
            " PSF with `siamdecon pretrain`"
        )
    return prior
