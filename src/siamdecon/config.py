"""Validated configuration objects and the named presets.

A :class:`Config` holds everything a training run needs: network, loss, mask, optimization and
inference (tiling) settings. It is a pydantic model, so every value is checked, unknown keys are
rejected, and it saves to and loads from YAML or JSON. Presets are small factory functions:

``fast``
    The CPU default: a small U-Net that starts from a few Lucy-Richardson iterations and learns a
    correction in a few hundred steps (minutes on a laptop CPU). When a shipped prior was
    pretrained for the image's PSF (``prior.source: auto``), it starts from that prior and
    fine-tunes it for 200 steps of 16 patches in 2D (about 45 s) or uses it as it is in 3D.
    Another PSF of similar width gets the nearest shipped prior, with its own PSF in the start
    estimate and the fine-tuning (``prior.transfer``).
``paper``
    Exactly the protocol of Papkov et al. (2023): the 96-/48-wide U-Net, 3,000 (2D) or 15,000 (3D)
    steps, batch 16/4, patches 128^2/64^3, Adam 4e-4 halved every 500/2,000 steps. Meant for a GPU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError
from .losses import LOSS_PRESETS, LossPreset, LossWeights, loss_preset

__all__ = [
    "NetworkConfig",
    "MaskConfig",
    "TrainingConfig",
    "InferenceConfig",
    "PriorConfig",
    "Config",
    "PRESETS",
    "make_config",
    "default_loss",
]

Start = Literal["none", "input", "lucy-richardson", "generic"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class NetworkConfig(_Model):
    """U-Net shape (see :class:`siamdecon.network.UNet`)."""

    width: int = Field(96, ge=1, description="features in the first level")
    levels: int = Field(3, ge=1, le=6, description="resolution levels")
    skip: Literal["concat", "add"] = "concat"
    norm: Literal["batch", "group", "none"] = "batch"


class MaskConfig(_Model):
    """Stratified masking (see :mod:`siamdecon.masking`)."""

    fraction: float = Field(0.005, gt=0, lt=1, description="fraction of masked pixels")
    noise_std: float = Field(0.2, ge=0, description="std of the replacement noise (standardized units)")


class TrainingConfig(_Model):
    """Optimization settings."""

    steps: int = Field(3000, ge=0)
    batch_size: int = Field(16, ge=1)
    patch_size: int = Field(128, ge=8, description="side of the square/cubic training patch")
    lr: float = Field(4e-4, gt=0)
    schedule: Literal["step", "onecycle", "constant"] = "step"
    decay_every: int = Field(500, ge=1, description="step schedule: steps between decays")
    decay_factor: float = Field(0.5, gt=0, le=1, description="step schedule: lr multiplier")
    warmup_fraction: float = Field(0.1, ge=0, lt=1, description="onecycle: fraction of steps warming up")
    augment: bool = Field(True, description="random rot90 and flips (xy plane in 3D)")
    intensity_range: tuple[float, float] | None = Field(
        None, description="raw range the boundary losses keep the output in (default: see data.default_intensity_range)"
    )
    loss_border: int = Field(0, ge=0, description="patch margin excluded from the loss (pixels)")
    start: Start = Field(
        "none",
        description=(
            "what the network corrects: nothing, the input, Lucy-Richardson, or 'generic' (Lucy-Richardson"
            " estimates and the noise level as inputs: a network that takes any PSF and camera)"
        ),
    )
    start_iterations: int = Field(5, ge=1, description="Lucy-Richardson iterations of the start estimate")
    start_extra_iterations: tuple[int, ...] = Field(
        (), description="'generic' start: iteration counts of further Lucy-Richardson input channels"
    )
    recalibrate_norm: bool = Field(
        True, description="re-estimate BatchNorm statistics on unmasked patches after training"
    )
    seed: int = 0
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description="auto, cpu, cuda, cuda:N or mps")
    threads: int | None = Field(None, ge=1, description="CPU threads (default: PyTorch's choice)")


class InferenceConfig(_Model):
    """Tiled prediction."""

    tile_size: int = Field(256, ge=8, description="tile side; inputs up to this size run in one pass")
    tile_overlap: int = Field(32, ge=0, description="overlap between neighbouring tiles")
    context: int = Field(32, ge=0, description="extra context read around each tile and discarded")
    batch_size: int = Field(4, ge=1)
    tta: bool = Field(False, description="average predictions over the 8 rotations/flips of the xy plane")


class PriorConfig(_Model):
    """Starting from a pretrained network (see :mod:`siamdecon.prior`).

    With a prior, training on the image fine-tunes it for ``fine_tune_steps`` steps with its own
    loss and learning rate, instead of ``training.steps`` from scratch.
    """

    source: str = Field(
        "none",
        min_length=1,
        description=(
            "'none', 'auto' (a shipped prior made for this PSF and network, if any; see 'transfer') or a prior file"
        ),
    )
    fine_tune_steps: int | None = Field(
        None,
        ge=0,
        description="training steps on the image after the prior; None: the measured choice for the prior"
        " that runs (siamdecon.prior_choice.config_for_psf)",
    )
    fine_tune_lr: float = Field(2e-4, gt=0, description="peak learning rate of the fine-tuning")
    fine_tune_batch_size: int | None = Field(
        None, ge=1, description="patches per fine-tuning step (default: training.batch_size)"
    )
    fine_tune_loss: LossPreset = Field("blind-spot", description="loss of the fine-tuning")
    transfer: bool = Field(
        False,
        description=(
            "with 'auto': when no shipped prior was made for this PSF, start from the one made for the"
            " PSF nearest in width, if its RMS width along every axis is close (0.5-1.5x in 2D, 0.9-1.4x"
            " in 3D), and use this PSF in the start estimate and the fine-tuning"
        ),
    )


class Config(_Model):
    """A complete, validated run configuration.

    Examples
    --------
    >>> cfg = make_config("fast", ndim=2, steps=100)
    >>> cfg.training.steps
    100
    >>> Config.model_validate_json(cfg.model_dump_json()) == cfg
    True
    """

    preset: str = "custom"
    ndim: Literal[2, 3] = 2
    loss: LossPreset | Literal["custom"] = "siamese-deconvolved"
    boundary_weight: float = Field(0.0, ge=0)
    weights: LossWeights | None = Field(None, description="explicit term weights (overrides loss)")
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    mask: MaskConfig = Field(default_factory=MaskConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    prior: PriorConfig = Field(default_factory=PriorConfig)

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.loss == "custom" and self.weights is None:
            raise ValueError("loss 'custom' needs explicit 'weights'")
        t = self.training
        if t.start_extra_iterations and t.start != "generic":
            raise ValueError("training.start_extra_iterations are inputs of the 'generic' start only")
        if any(n < 1 for n in t.start_extra_iterations):
            raise ValueError(f"training.start_extra_iterations must be positive, got {t.start_extra_iterations}")
        if self.inference.tile_overlap >= self.inference.tile_size:
            raise ValueError(
                f"tile_overlap ({self.inference.tile_overlap}) must be smaller than tile_size"
                f" ({self.inference.tile_size})"
            )
        return self

    def loss_weights(self) -> LossWeights:
        """The effective term weights."""
        if self.weights is not None:
            return self.weights
        return loss_preset(self.loss, self.boundary_weight)

    # -- files ------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write as YAML (``.yaml``/``.yml``) or JSON (``.json``)."""
        from .io import atomic_path

        p = Path(path)
        data = self.model_dump(mode="json")
        if p.suffix.lower() in (".yaml", ".yml"):
            text = yaml.safe_dump(data, sort_keys=False)
        elif p.suffix.lower() == ".json":
            text = json.dumps(data, indent=2)
        else:
            raise ConfigError(f"config file '{p}' must end in .yaml, .yml or .json")
        with atomic_path(p) as tmp:
            tmp.write_text(text)
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Config:
        """Read a YAML or JSON config file, validating every value."""
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file '{p}' does not exist")
        try:
            text = p.read_text()
            data = yaml.safe_load(text) if p.suffix.lower() in (".yaml", ".yml") else json.loads(text)
        except (yaml.YAMLError, json.JSONDecodeError) as exc:
            raise ConfigError(f"config file '{p}' is not valid YAML/JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file '{p}' must hold a mapping of settings")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"config file '{p}' is invalid:\n{exc}") from exc


def default_loss(ndim: int) -> LossPreset:
    """The paper's recommendation: Eq. 4 (before the PSF) for 2D, Eq. 3 (after the PSF) for 3D."""
    return "siamese-deconvolved" if ndim == 2 else "siamese-reconvolved"


def _paper(ndim: int) -> dict[str, Any]:
    if ndim == 2:
        return {
            "network": {"width": 96, "levels": 3, "skip": "concat", "norm": "batch"},
            "training": {
                "steps": 3000,
                "batch_size": 16,
                "patch_size": 128,
                "lr": 4e-4,
                "schedule": "step",
                "decay_every": 500,
                "decay_factor": 0.5,
                "start": "none",
                "loss_border": 0,
            },
            "inference": {"tile_size": 128, "tile_overlap": 32, "context": 0},
        }
    return {
        "network": {"width": 48, "levels": 3, "skip": "add", "norm": "batch"},
        "training": {
            "steps": 15000,
            "batch_size": 4,
            "patch_size": 64,
            "lr": 4e-4,
            "schedule": "step",
            "decay_every": 2000,
            "decay_factor": 0.5,
            "start": "none",
            "loss_border": 0,
        },
        "inference": {"tile_size": 64, "tile_overlap": 16, "context": 0},
    }


def _fast(ndim: int) -> dict[str, Any]:
    # Chosen by measurement on this CPU (docs/performance/README.md, docs/benchmark-microscopy.md).
    # The network corrects Lucy-Richardson estimates computed with the object extended beyond the
    # field (no dark rim, so PSFs wider than a patch work) and sees the noise level estimated from
    # the image, so one network serves any PSF and camera.
    generic = {"start": "generic", "start_iterations": 4, "start_extra_iterations": (16,)}
    if ndim == 2:
        return {
            "network": {"width": 16, "levels": 3, "skip": "concat", "norm": "none"},
            # A 2 % mask (paper: 0.5 %) keeps Eq. 4 from fitting the noise on flat or small images.
            "mask": {"fraction": 0.02},
            "training": {
                "steps": 800,
                "batch_size": 4,
                "patch_size": 64,
                "lr": 2e-3,
                "schedule": "onecycle",
                **generic,
                "loss_border": 8,
            },
            "inference": {"tile_size": 512, "tile_overlap": 32, "context": 32, "tta": True},
            # A shipped prior, fine-tuned for the steps measured best for it (prior_choice.config_for_psf);
            # fine-tuning uses the blind-spot loss: Eq. 4 fine-tuning pulled priors down.
            "prior": {
                "source": "auto",
                "fine_tune_batch_size": 16,
                "fine_tune_lr": 1.6e-3,
                "transfer": True,
            },
        }
    return {
        "network": {"width": 8, "levels": 3, "skip": "add", "norm": "none"},
        "training": {
            "steps": 200,
            "batch_size": 2,
            "patch_size": 48,
            "lr": 2e-3,
            "schedule": "onecycle",
            **{**generic, "start_iterations": 8, "start_extra_iterations": (24,)},
            "loss_border": 8,
        },
        "inference": {"tile_size": 96, "tile_overlap": 16, "context": 16},
        # No shipped 3D prior fits this network: the default trains on the image itself. A prior
        # that does (--prior FILE) is fine-tuned for the training steps.
        "prior": {"source": "auto", "transfer": True},
    }


PRESETS = {"fast": _fast, "paper": _paper}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


_SECTIONS = {
    "network": NetworkConfig.model_fields,
    "mask": MaskConfig.model_fields,
    "training": TrainingConfig.model_fields,
    "inference": InferenceConfig.model_fields,
    "prior": PriorConfig.model_fields,
}


def make_config(preset: str = "fast", ndim: int = 2, **overrides: Any) -> Config:
    """Build a validated config from a preset, with overrides.

    Parameters
    ----------
    preset : {"fast", "paper"}
        Starting point.
    ndim : {2, 3}
        Image dimensionality (presets differ between 2D and 3D).
    **overrides
        Either section dictionaries (``training={"steps": 50}``) or flat field names of any
        section (``steps=50``, ``width=32``, ``tile_size=128``) or top-level fields
        (``loss="blind-spot"``, ``boundary_weight=0.1``). ``None`` values are ignored, so CLI
        options that were not given leave the preset alone.

    Raises
    ------
    ConfigError
        On an unknown preset, an unknown option name or an invalid value.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if ndim not in (2, 3):
        raise ConfigError(f"ndim must be 2 or 3, got {ndim}")
    data: dict[str, Any] = {"preset": preset, "ndim": ndim, "loss": default_loss(ndim)}
    data = _merge(data, PRESETS[preset](ndim))
    for key, value in overrides.items():
        if value is None:
            continue
        if key in Config.model_fields:
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = _merge(data[key], value)
            else:
                data[key] = value.model_dump() if isinstance(value, BaseModel) else value
            continue
        sections = [name for name, fields in _SECTIONS.items() if key in fields]
        if not sections:
            raise ConfigError(f"unknown option {key!r}")
        if len(sections) > 1:
            raise ConfigError(
                f"option {key!r} exists in several sections ({', '.join(sections)}); give it as"
                f" {sections[0]}={{{key!r}: ...}}"
            )
        data.setdefault(sections[0], {})[key] = value
    training = data.get("training", {})
    given = {
        **overrides.get("training", {}),
        **{k: v for k, v in overrides.items() if k in TrainingConfig.model_fields},
    }
    if training.get("start") != "generic" and "start_extra_iterations" not in given:
        # The preset's extra estimates belong to its generic start: another start asked for
        # replaces the preset's, extras included (extras given with it are still refused).
        training.pop("start_extra_iterations", None)
    if data.get("loss") not in (*LOSS_PRESETS, "custom"):
        raise ConfigError(f"unknown loss {data.get('loss')!r}; choose one of {', '.join(LOSS_PRESETS)}")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid settings:\n{exc}") from exc
