"""Validated configuration objects and the named presets.

A :class:`Config` holds everything a training run needs: network, loss, mask, optimization and
inference (tiling) settings. It is a pydantic model, so every value is checked, unknown keys are
rejected, and it saves to and loads from YAML or JSON. What the network corrects
(``training.start``), the learning-rate schedule (``training.schedule``) and the loss (``loss``) are
each one of a few typed kinds with only their own fields (``{kind: generic, iterations: 4,
extra_iterations: [16]}``, ``{kind: step, decay_every: 500}``, ``{name: blind-spot,
boundary_weight: 0.1}``), so a field that would have no effect cannot be written. Files in the flat
layout of earlier versions load as the same typed config. Presets are small factory functions:

``fast``
    The CPU default: a small U-Net that corrects Lucy-Richardson estimates, started from a shipped
    prior (``prior.source: auto``). A prior pretrained for the image's PSF (the paper's) is
    fine-tuned for 200 steps of 16 patches in 2D (about 45 s) or used as it is in 3D; otherwise the
    generic prior, pretrained for any PSF and camera, is used as it is in 2D and fine-tuned for 200
    steps on the volume in 3D (:data:`siamdecon.prior_choice.FINE_TUNE_STEPS`). With
    ``prior.source: none`` the network trains from scratch on the image (``training.steps``).
``paper``
    Exactly the protocol of Papkov et al. (2023): the 96-/48-wide U-Net, 3,000 (2D) or 15,000 (3D)
    steps, batch 16/4, patches 128^2/64^3, Adam 4e-4 halved every 500/2,000 steps. Meant for a GPU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .losses import LOSS_PRESETS, LossPreset, LossWeights, loss_preset

__all__ = [
    "NoStart",
    "InputStart",
    "LucyRichardsonStart",
    "GenericStart",
    "StartConfig",
    "StepSchedule",
    "OneCycleSchedule",
    "ConstantSchedule",
    "ScheduleConfig",
    "PresetLoss",
    "CustomLoss",
    "LossConfig",
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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# -- what the network corrects (training.start) ---------------------------------------------------
class NoStart(_Model):
    """The network outputs the estimate itself (the paper's setting)."""

    kind: Literal["none"] = "none"

    def iterations_run(self) -> tuple[int, ...]:
        """Lucy-Richardson iteration counts of the start's estimates (none here)."""
        return ()


class InputStart(_Model):
    """The network outputs a correction added to its (standardized) input."""

    kind: Literal["input"] = "input"

    def iterations_run(self) -> tuple[int, ...]:
        """Lucy-Richardson iteration counts of the start's estimates (none here)."""
        return ()


class LucyRichardsonStart(_Model):
    """The network corrects a Lucy-Richardson estimate of ``iterations`` iterations."""

    kind: Literal["lucy-richardson"] = "lucy-richardson"
    iterations: int = Field(5, ge=1, description="Lucy-Richardson iterations of the start estimate")

    def iterations_run(self) -> tuple[int, ...]:
        """Lucy-Richardson iteration counts of the start's estimates."""
        return (self.iterations,)


class GenericStart(_Model):
    """The network corrects Lucy-Richardson estimates computed with the object extended beyond the
    field, and sees them and the image's noise level as inputs: one network for any PSF and camera."""

    kind: Literal["generic"] = "generic"
    iterations: int = Field(4, ge=1, description="Lucy-Richardson iterations of the estimate corrected")
    extra_iterations: tuple[Annotated[int, Field(ge=1)], ...] = Field(
        (16,), description="iteration counts of further Lucy-Richardson input channels"
    )

    def iterations_run(self) -> tuple[int, ...]:
        """Lucy-Richardson iteration counts of the start's estimates (the corrected one first)."""
        return (self.iterations, *self.extra_iterations)


StartConfig = Annotated[
    Union[NoStart, InputStart, LucyRichardsonStart, GenericStart],  # noqa: UP007 (pydantic needs Union here)
    Field(discriminator="kind"),
]


# -- learning-rate schedule (training.schedule) ---------------------------------------------------
class StepSchedule(_Model):
    """The paper's schedule: the rate times ``decay_factor`` every ``decay_every`` steps."""

    kind: Literal["step"] = "step"
    decay_every: int = Field(500, ge=1, description="steps between decays")
    decay_factor: float = Field(0.5, gt=0, le=1, description="rate multiplier at each decay")


class OneCycleSchedule(_Model):
    """A linear warm-up from a tenth of the rate, then a cosine decay to 2 % of it."""

    kind: Literal["onecycle"] = "onecycle"
    warmup_fraction: float = Field(0.1, ge=0, lt=1, description="fraction of the steps warming up")


class ConstantSchedule(_Model):
    """The same rate at every step."""

    kind: Literal["constant"] = "constant"


ScheduleConfig = Annotated[
    Union[StepSchedule, OneCycleSchedule, ConstantSchedule],  # noqa: UP007
    Field(discriminator="kind"),
]


# -- the training loss (Config.loss) ---------------------------------------------------------------
class PresetLoss(_Model):
    """One of the paper's losses: Eq. 2 (blind-spot), Eq. 3 or Eq. 4, with a boundary term."""

    name: LossPreset = "siamese-deconvolved"
    boundary_weight: float = Field(0.0, ge=0, description="weight of both boundary terms (paper: 0 or 0.1)")

    def weights(self) -> LossWeights:
        """The term weights."""
        return loss_preset(self.name, self.boundary_weight)

    @property
    def label(self) -> str:
        """How the loss is named in logs and reports."""
        return self.name if not self.boundary_weight else f"{self.name} + boundary {self.boundary_weight:g}"


class CustomLoss(_Model):
    """Explicit weights of the six loss terms."""

    name: Literal["custom"] = "custom"
    terms: LossWeights

    def weights(self) -> LossWeights:
        """The term weights."""
        return self.terms

    @property
    def label(self) -> str:
        """How the loss is named in logs and reports."""
        return "custom (" + ", ".join(f"{k} {v:g}" for k, v in self.terms.active().items()) + ")"


LossConfig = Annotated[Union[PresetLoss, CustomLoss], Field(discriminator="name")]  # noqa: UP007

# Keys of the flat layout written by siamdecon before the typed start, schedule and loss, and the
# defaults they had: a saved value equal to its default was never a choice, so it is dropped when
# the variant that runs does not take it; any other value there is refused (it had no effect).
_LEGACY_START = {"start_iterations": ("iterations", 5), "start_extra_iterations": ("extra_iterations", ())}
_LEGACY_SCHEDULE = {
    "decay_every": ("decay_every", 500),
    "decay_factor": ("decay_factor", 0.5),
    "warmup_fraction": ("warmup_fraction", 0.1),
}


def _fields_by_kind(*variants: type[BaseModel]) -> dict[str, tuple[str, ...]]:
    """Each variant's kind and the fields it takes besides ``kind``, read off the classes."""
    return {v.model_fields["kind"].default: tuple(f for f in v.model_fields if f != "kind") for v in variants}


_TAKES = _fields_by_kind(
    NoStart, InputStart, LucyRichardsonStart, GenericStart, StepSchedule, OneCycleSchedule, ConstantSchedule
)


def _variant(data: dict[str, Any], field: str, legacy: dict[str, tuple[str, Any]]) -> None:
    """Turn ``field: "kind"`` (and the flat legacy keys beside it) into the variant's mapping."""
    value = data.get(field)
    given = {k: data.pop(k) for k in list(legacy) if k in data}
    if value is None and not given:
        return
    if isinstance(value, str):
        value = {"kind": value}
    elif value is None:
        raise ValueError(f"{', '.join(given)} given without {field}")
    elif isinstance(value, BaseModel):
        if not given:
            return  # already a config object: pydantic checks it
        value = value.model_dump()
    value = dict(value)
    kind = value.get("kind")
    for old, raw in given.items():
        new, default = legacy[old]
        if isinstance(raw, list):
            raw = tuple(raw)
        if new in _TAKES.get(kind, ()):
            if new in value and value[new] != raw:
                raise ValueError(f"{old}={raw!r} disagrees with {field}.{new}={value[new]!r}")
            value[new] = raw
        elif raw != default:
            raise ValueError(f"{old}={raw!r} applies to no {field} of kind {kind!r}")
    data[field] = value


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
    schedule: ScheduleConfig = Field(default_factory=StepSchedule, description="learning-rate schedule")
    augment: bool = Field(True, description="random rot90 and flips (xy plane in 3D)")
    intensity_range: tuple[float, float] | None = Field(
        None, description="raw range the boundary losses keep the output in (default: see data.default_intensity_range)"
    )
    loss_border: int = Field(0, ge=0, description="patch margin excluded from the loss (pixels)")
    start: StartConfig = Field(
        default_factory=NoStart,
        description=(
            "what the network corrects: nothing (kind 'none'), its input, a Lucy-Richardson estimate, or"
            " 'generic' (Lucy-Richardson estimates and the noise level as inputs: any PSF and camera)"
        ),
    )
    recalibrate_norm: bool = Field(
        True, description="re-estimate BatchNorm statistics on unmasked patches after training"
    )
    seed: int = 0
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description="auto, cpu, cuda, cuda:N or mps")
    threads: int | None = Field(None, ge=1, description="CPU threads (default: PyTorch's choice)")

    @model_validator(mode="before")
    @classmethod
    def _typed_variants(cls, data: Any) -> Any:
        # "start: generic" is short for its mapping with the defaults; the flat keys of earlier
        # files (start_iterations, decay_every, ...) become the variant's own fields.
        if isinstance(data, dict):
            data = dict(data)
            _variant(data, "start", _LEGACY_START)
            _variant(data, "schedule", _LEGACY_SCHEDULE)
        return data


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
    fine_tune_hessian: float | tuple[float, ...] = Field(
        0.0,
        description="weight of the sparse-Hessian term on the network's output during the fine-tuning"
        " (siamdecon.losses.hessian_l1; 0: none), or several: one fine-tuning per weight, the network"
        " that predicts held-out pixels best is kept (Deconvolver.fit)",
    )

    @field_validator("fine_tune_hessian", mode="after")
    @classmethod
    def _hessian_weights(cls, value: float | tuple[float, ...]) -> float | tuple[float, ...]:
        values = value if isinstance(value, tuple) else (value,)
        if not values:
            raise ValueError("give at least one Hessian weight (0 for none)")
        if any(not v >= 0 for v in values):
            raise ValueError(f"Hessian weights must be >= 0, got {value}")
        if isinstance(value, tuple):
            if len(set(value)) != len(value):
                raise ValueError(f"the Hessian weights to choose from repeat a value: {value}")
            return value[0] if len(value) == 1 else value
        return value

    @property
    def hessian_grid(self) -> tuple[float, ...]:
        """The Hessian weights to choose from (one: nothing to choose)."""
        h = self.fine_tune_hessian
        return h if isinstance(h, tuple) else (h,)

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
    loss: LossConfig = Field(default_factory=PresetLoss, description="the loss of training from scratch")
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    mask: MaskConfig = Field(default_factory=MaskConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    prior: PriorConfig = Field(default_factory=PriorConfig)

    @model_validator(mode="before")
    @classmethod
    def _typed_loss(cls, data: Any) -> Any:
        # "loss: blind-spot" is short for {name: blind-spot}; files written before the typed loss
        # carry loss, boundary_weight and weights (which overrode loss) side by side.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        loss = data.get("loss")
        bound = data.pop("boundary_weight", None)
        terms = data.pop("weights", None)
        if terms is not None:
            if bound:
                raise ValueError("boundary_weight goes with a named loss; explicit weights carry their own bound terms")
            data["loss"] = {"name": "custom", "terms": terms}
        elif isinstance(loss, str):
            if loss == "custom":
                raise ValueError("loss 'custom' needs its terms: loss: {name: custom, terms: {rec: 1, ...}}")
            data["loss"] = {"name": loss, **({"boundary_weight": bound} if bound is not None else {})}
        elif bound is not None:
            if isinstance(loss, dict):
                data["loss"] = {**loss, "boundary_weight": bound}
            elif loss is None:
                data["loss"] = {"boundary_weight": bound}
            else:
                raise ValueError("give boundary_weight inside loss")
        return data

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.inference.tile_overlap >= self.inference.tile_size:
            raise ValueError(
                f"tile_overlap ({self.inference.tile_overlap}) must be smaller than tile_size"
                f" ({self.inference.tile_size})"
            )
        return self

    def loss_weights(self) -> LossWeights:
        """The term weights of training from scratch."""
        return self.loss.weights()

    def fine_tune_weights(self) -> LossWeights:
        """The term weights of fine-tuning a prior: ``prior.fine_tune_loss``, with the training
        loss's boundary weight and ``prior.fine_tune_hessian``."""
        grid = self.prior.hessian_grid
        if len(grid) > 1:
            raise ConfigError(
                f"prior.fine_tune_hessian holds several weights {grid}: Deconvolver.fit chooses one on"
                " held-out pixels; training itself takes one weight"
            )
        weights = loss_preset(self.prior.fine_tune_loss, self.boundary_weight)
        if grid[0]:
            weights = weights.model_copy(update={"hess": grid[0]})
        return weights

    @property
    def boundary_weight(self) -> float:
        """Weight of the boundary terms of the training loss."""
        if isinstance(self.loss, PresetLoss):
            return self.loss.boundary_weight
        return self.loss.terms.bound

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
                "schedule": {"kind": "step", "decay_every": 500, "decay_factor": 0.5},
                "start": {"kind": "none"},
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
            "schedule": {"kind": "step", "decay_every": 2000, "decay_factor": 0.5},
            "start": {"kind": "none"},
            "loss_border": 0,
        },
        "inference": {"tile_size": 64, "tile_overlap": 16, "context": 0},
    }


def _fast(ndim: int) -> dict[str, Any]:
    # Chosen by measurement on this CPU (docs/performance/README.md, docs/benchmark-microscopy.md).
    # The network corrects Lucy-Richardson estimates computed with the object extended beyond the
    # field (no dark rim, so PSFs wider than a patch work) and sees the noise level estimated from
    # the image, so one network serves any PSF and camera.
    onecycle = {"kind": "onecycle", "warmup_fraction": 0.1}
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
                "schedule": onecycle,
                "start": {"kind": "generic", "iterations": 4, "extra_iterations": (16,)},
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
            "schedule": onecycle,
            "start": {"kind": "generic", "iterations": 8, "extra_iterations": (24,)},
            "loss_border": 8,
        },
        "inference": {"tile_size": 96, "tile_overlap": 16, "context": 16},
        # The shipped generic 3D prior, fine-tuned on the volume (prior_choice.FINE_TUNE_STEPS), with
        # and without a sparse-Hessian term (the two side by side, sharing the start's estimates);
        # the held-out pixels keep one: the term helps smooth objects and hurts others.
        "prior": {"source": "auto", "transfer": True, "fine_tune_hessian": (0.0, 0.03)},
    }


PRESETS = {"fast": _fast, "paper": _paper}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, BaseModel):
            v = v.model_dump()
        if isinstance(v, str) and k in _VARIANTS and isinstance(out.get(k), dict):
            v = {"kind": v}
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            # A variant of another kind replaces the preset's whole mapping: the preset's
            # fields of its own kind are not the new kind's.
            if k in _VARIANTS and v.get("kind", out[k].get("kind")) != out[k].get("kind"):
                out[k] = dict(v)
            else:
                out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


_VARIANTS = ("start", "schedule")

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
        Either section dictionaries (``training={"steps": 50}``,
        ``training={"start": {"kind": "lucy-richardson", "iterations": 3}}``) or flat field names of
        any section (``steps=50``, ``width=32``, ``tile_size=128``) or the loss:
        ``loss="blind-spot"`` (a preset's name), ``boundary_weight=0.1``, or
        ``loss={"name": "custom", "terms": {...}}``. A ``start`` or ``schedule`` of another kind
        than the preset's replaces it (``"kind"`` alone takes that kind's defaults); of the same
        kind it updates it. ``None`` values are ignored, so CLI options that were not given leave
        the preset alone.

    Raises
    ------
    ConfigError
        On an unknown preset, an unknown option name or an invalid value.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if ndim not in (2, 3):
        raise ConfigError(f"ndim must be 2 or 3, got {ndim}")
    data: dict[str, Any] = {"preset": preset, "ndim": ndim, "loss": {"name": default_loss(ndim)}}
    data = _merge(data, PRESETS[preset](ndim))
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "loss":
            if isinstance(value, BaseModel):
                value = value.model_dump()
            if isinstance(value, str):
                if value not in LOSS_PRESETS:
                    raise ConfigError(f"unknown loss {value!r}; choose one of {', '.join(LOSS_PRESETS)}")
                # A preset name keeps the boundary weight already set.
                value = {**data["loss"], "name": value} if "terms" not in data["loss"] else {"name": value}
            data["loss"] = value
            continue
        if key == "boundary_weight":
            data["loss"] = {**data["loss"], "boundary_weight": value}
            continue
        if key in Config.model_fields:
            data[key] = _merge({key: data.get(key)}, {key: value})[key] if isinstance(value, dict) else value
            if isinstance(data[key], BaseModel):
                data[key] = data[key].model_dump()
            continue
        sections = [name for name, fields in _SECTIONS.items() if key in fields]
        if not sections:
            raise ConfigError(f"unknown option {key!r}")
        if len(sections) > 1:
            raise ConfigError(
                f"option {key!r} exists in several sections ({', '.join(sections)}); give it as"
                f" {sections[0]}={{{key!r}: ...}}"
            )
        data[sections[0]] = _merge(data.get(sections[0], {}), {key: value})
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid settings:\n{exc}") from exc
