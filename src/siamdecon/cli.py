"""Command line interface: thin wrappers around the public API.

Every command validates its inputs before any long computation, reports bad input as one clear
``error:`` line (exit code 2) and writes outputs atomically.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

import typer

from .errors import InputError, SiamdeconError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Self-supervised deconvolution of 2D images and 3D volumes with a known PSF.",
)


@app.callback()
def _process_settings() -> None:
    """Self-supervised deconvolution of 2D images and 3D volumes with a known PSF."""
    # The command line owns its process: it lets training keep freed memory for reuse (faster CPU
    # steps), which the library only does when asked (siamdecon.runtime.allow_keep_freed_memory).
    from . import runtime

    runtime.allow_keep_freed_memory()


class Preset(str, Enum):
    fast = "fast"
    paper = "paper"


class Loss(str, Enum):
    siamese_deconvolved = "siamese-deconvolved"
    siamese_reconvolved = "siamese-reconvolved"
    blind_spot = "blind-spot"


def _err(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)


def _handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SiamdeconError as exc:
            _err(str(exc))
            raise typer.Exit(code=2) from None
        except (ValueError, RuntimeError, OSError) as exc:
            # Anything else the API refuses (an unavailable device, an unwritable folder...) is
            # still reported as one line rather than a traceback.
            _err(f"{type(exc).__name__}: {exc}")
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            _err("interrupted; no output was written")
            raise typer.Exit(code=130) from None

    return wrapper


def _check_output(path: Path) -> None:
    from .io import check_output_path

    check_output_path(path)


def _check_model_output(path: Path) -> None:
    from .io import check_writable

    check_writable(path, "model")


def _load_inputs(image: Path, psf: Path):
    from .io import read_image
    from .psf import check_psf_fits, load_psf

    img = read_image(image, "image")
    kernel = load_psf(psf, ndim=img.ndim)
    check_psf_fits(kernel.shape, img.data.shape, f"PSF '{psf}'")
    return img, kernel


def _hessian_weights(text: str | None) -> float | list[float] | None:
    """``--hessian 0.03`` or ``--hessian 0,0.03`` parsed."""
    if text is None:
        return None
    from .errors import ConfigError

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(
            f"--hessian must be one weight or several separated by commas (0: none; e.g. 0,0.03), got {text!r}"
        ) from None
    return values[0] if len(values) == 1 else values


def _config(
    ndim: int,
    preset: Preset,
    loss: Loss | None,
    boundary_weight: float | None,
    steps: int | None,
    seed: int | None,
    device: str | None,
    config_file: Path | None,
    mask_fraction: float | None = None,
    prior: str | None = None,
    hessian: str | None = None,
):
    from .config import Config, make_config

    weights = _hessian_weights(hessian)
    overrides = {
        "loss": loss.value if loss else None,
        "boundary_weight": boundary_weight,
        "mask": {"fraction": mask_fraction} if mask_fraction is not None else None,
        # --loss is the loss that runs: also the fine-tuning loss when a prior is used.
        "prior": {
            k: v
            for k, v in (
                ("source", prior),
                ("fine_tune_loss", loss.value if loss else None),
                ("fine_tune_hessian", weights),
            )
            if v is not None
        }
        or None,
        "steps": steps,
        # --steps counts the steps actually run: the fine-tuning ones when a prior is used.
        "fine_tune_steps": steps,
        "seed": seed,
        "device": device,
    }
    if config_file is not None:
        base = Config.load(config_file)
        if base.ndim != ndim:
            from .errors import ConfigError

            raise ConfigError(
                f"config file '{config_file}' is for {base.ndim}D data but the image is {ndim}D;"
                f" write one with 'siamdecon config --ndim {ndim}'"
            )
        merged = base.model_dump(exclude={"preset", "ndim"})
        for key, value in overrides.items():
            if value is None:
                continue
            # A section override (mask) changes the given fields and keeps the file's others;
            # --loss renames the file's loss and keeps its boundary weight.
            if key == "loss" and "terms" not in merged["loss"]:
                merged["loss"] = {**merged["loss"], "name": value}
            else:
                merged[key] = {**merged[key], **value} if isinstance(value, dict) else value
        return make_config(base.preset if base.preset in ("fast", "paper") else "fast", ndim, **merged)
    return make_config(preset.value, ndim, **overrides)


_PRESET = typer.Option(Preset.fast, "--preset", help="fast: CPU default (minutes); paper: the paper's protocol (GPU).")
_LOSS = typer.Option(
    None,
    "--loss",
    help="Default: siamese-deconvolved (Eq. 4) in 2D, siamese-reconvolved (Eq. 3) in 3D from scratch;"
    " blind-spot when fine-tuning a prior. Given, it is the loss that runs, fine-tuning included.",
)
_BOUND = typer.Option(None, "--boundary-weight", min=0.0, help="Weight of the boundary terms (paper: 0 or 0.1).")
_STEPS = typer.Option(
    None, "--steps", min=0, help="Training steps, or fine-tuning steps from a prior (default from the preset)."
)
_MASK = typer.Option(
    None,
    "--mask-fraction",
    help="Fraction of pixels masked per patch (default: 0.02 for the fast preset in 2D, else 0.005).",
)
_HESSIAN = typer.Option(
    None,
    "--hessian",
    help=(
        "Weight of a sparse-Hessian term on the network's output while fine-tuning a prior (0: none),"
        " or several separated by commas: one fine-tuning each, and the network that predicts held-out"
        " pixels best is kept (3D default 0,0.03; 2D default 0). --hessian 0 makes a 3D run faster."
    ),
)
_PRIOR = typer.Option(
    None,
    "--prior",
    help=(
        "Start from a network pretrained on synthetic images: 'auto' (fast preset default: a shipped prior"
        " made for this PSF, or else one made for a PSF of similar width), 'none'"
        " (train from scratch), or a file from 'siamdecon pretrain'."
    ),
)
_SEED = typer.Option(None, "--seed", help="Random seed (default 0).")
_DEVICE = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps.")
_CONFIG = typer.Option(
    None, "--config", exists=True, dir_okay=False, help="YAML/JSON config file (see 'siamdecon config')."
)


def _widths(psf) -> str:
    from .psf import psf_widths

    return " x ".join(f"{w:.2f}" for w in psf_widths(psf))


class OutputType(str, Enum):
    float32 = "float32"
    uint16 = "uint16"


class Immersion(str, Enum):
    oil = "oil"
    water = "water"
    silicone = "silicone"
    air = "air"


_INPUTS = typer.Argument(
    ...,
    help=(
        "Input file(s), folder(s) or quoted glob(s): TIFF/OME-TIFF/ImageJ hyperstacks, .npy, .png, OME-Zarr"
        " (.zarr), and CZI/ND2/LIF with the vendor extra."
    ),
)
_OUT = typer.Option(
    ...,
    "-o",
    "--output",
    help="Output file for one input (.tif OME-TIFF, .npy or .zarr OME-Zarr); output folder for several.",
)
_AXES = typer.Option(
    None, "--axes", help="Axes of the input arrays, e.g. TCZYX, CZYX, TYX (needed for .npy of 4-5 dimensions)."
)
_DTYPE = typer.Option(
    OutputType.float32, "--dtype", help="float32, or uint16 with each channel's scale recorded in the metadata."
)
_VOXEL = typer.Option(
    None, "--voxel-size", help="Voxel size of the images, Z,Y,X or Y,X in um (replaces their metadata)."
)
_PSF_VOXEL = typer.Option(
    None,
    "--psf-voxel-size",
    help="Voxel size of the PSF file(s), Z,Y,X or Y,X in um; a PSF on another grid is resampled to the image's.",
)
_WORKERS = typer.Option(None, "--workers", min=1, help="Run on a local Dask cluster of N worker processes.")
_SCHEDULER = typer.Option(
    None, "--scheduler", help="Run on an existing Dask scheduler, tcp://HOST:PORT (dask-jobqueue, dask-cuda...)."
)
_OVERWRITE = typer.Option(
    False, "--overwrite", help="Redo outputs a folder's manifest records as done, or made with other settings."
)
_MISSING = typer.Option(
    False, "--allow-missing-chunks", help="Accept OME-Zarr inputs with unwritten chunks (read as the fill value)."
)
_PER_T = typer.Option(
    False,
    "--per-timepoint",
    help="One model per time point (default: one per channel, trained across its time points).",
)
_PSFS = typer.Option(
    ...,
    "--psf",
    help=(
        "PSF file (.tif, .tiff, .npy): repeat once per channel, in channel order, or give one for all channels;"
        " or 'auto' to compute a widefield PSF on the image's voxel grid (with --na, --wavelength, --immersion)."
    ),
)
_NA = typer.Option(None, "--na", help="--psf auto: numerical aperture.")
_WAVELENGTH = typer.Option(
    None,
    "--wavelength",
    help="--psf auto: emission wavelength in um, one for all channels or one per channel (0.52,0.61).",
)
_IMMERSION = typer.Option(None, "--immersion", help="--psf auto: immersion medium (default oil).")
_QUIET = typer.Option(False, "--quiet", "-q", help="No progress output.")


def _echo(quiet: bool) -> Callable[[str], None]:
    def log(message: str) -> None:
        if not quiet or message.startswith("warning"):
            typer.echo(message, err=True)

    return log


def _psf_options(
    psf: list[str], na: float | None, wavelength: str | None, immersion: Immersion | None, psf_voxel_size: str | None
):
    from .axes import parse_triplet
    from .batch import PSFOptions
    from .errors import ConfigError

    auto = [p for p in psf if p.strip().lower() == "auto"]
    if auto:
        if len(psf) > 1:
            raise ConfigError("--psf auto computes every channel's PSF; do not give PSF files with it")
        if psf_voxel_size is not None:
            raise ConfigError("--psf-voxel-size is the voxel size of PSF files; --psf auto uses the image's grid")
        if na is None or wavelength is None:
            raise ConfigError("--psf auto needs --na and --wavelength (emission, um; one per channel or one for all)")
        try:
            waves = [float(v) for v in wavelength.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--wavelength must be numbers in um separated by commas, got {wavelength!r}") from None
        return PSFOptions(auto=True, na=na, wavelengths=waves, immersion=(immersion or Immersion.oil).value)
    given = {"--na": na, "--wavelength": wavelength, "--immersion": immersion}
    wrong = [k for k, v in given.items() if v is not None]
    if wrong:
        raise ConfigError(f"{', '.join(wrong)}: only with --psf auto (a computed PSF); PSF files were given")
    return PSFOptions(files=[Path(p) for p in psf], voxel_size=parse_triplet(psf_voxel_size, None, "--psf-voxel-size"))


def _configs(
    preset, loss, boundary_weight, steps, seed, device, config_file, mask_fraction, prior, hessian=None
) -> dict:
    """The training config for 2D and for 3D inputs (only the config file's own with --config)."""
    from .config import Config

    if config_file is not None:
        ndim = Config.load(config_file).ndim
        return {
            ndim: _config(
                ndim, preset, loss, boundary_weight, steps, seed, device, config_file, mask_fraction, prior, hessian
            )
        }
    return {
        ndim: _config(ndim, preset, loss, boundary_weight, steps, seed, device, None, mask_fraction, prior, hessian)
        for ndim in (2, 3)
    }


def _summary(summary, started: float, quiet: bool, single: bool) -> None:
    if single and summary.ok:
        if not quiet:
            r = summary.results[0]
            typer.echo(f"wrote {r.output} in {time.perf_counter() - started:.1f} s", err=True)
        return
    for line in summary.lines():
        typer.echo(line, err=True)
    if not summary.ok:
        # SystemExit, not typer.Exit: the error handler would report a typer.Exit as an error.
        raise SystemExit(1)


def _is_single(inputs: list[Path]) -> bool:
    from .batch import _many, expand_inputs

    return not _many([str(p) for p in inputs], expand_inputs([str(p) for p in inputs]))


# -- option groups shared by commands ------------------------------------------------------------------
# A command lists a group once (``@_grouped(training=TrainingOptions)``) and receives its options as
# one object; Typer sees the group's options as the command's own (its signature is extended).


@dataclass(frozen=True)
class TrainingOptions:
    """How networks are trained (deconvolve, train)."""

    preset: Preset
    loss: Loss | None
    boundary_weight: float | None
    steps: int | None
    mask_fraction: float | None
    prior: str | None
    hessian: str | None
    seed: int | None
    config: Path | None

    OPTIONS: ClassVar[dict[str, tuple[Any, Any]]] = {}

    def configs(self, device: str | None) -> dict:
        """The config for 2D and for 3D inputs (only the config file's own with --config)."""
        return _configs(
            self.preset,
            self.loss,
            self.boundary_weight,
            self.steps,
            self.seed,
            device,
            self.config,
            self.mask_fraction,
            self.prior,
            self.hessian,
        )


@dataclass(frozen=True)
class PSFSource:
    """Where each channel's PSF comes from (deconvolve, train)."""

    psf: list[str]
    psf_voxel_size: str | None
    na: float | None
    wavelength: str | None
    immersion: Immersion | None

    OPTIONS: ClassVar[dict[str, tuple[Any, Any]]] = {}

    def options(self):
        """The validated :class:`siamdecon.batch.PSFOptions`."""
        return _psf_options(self.psf, self.na, self.wavelength, self.immersion, self.psf_voxel_size)


@dataclass(frozen=True)
class InputOptions:
    """How input files are read (deconvolve, train, predict)."""

    axes: str | None
    voxel_size: str | None
    allow_missing_chunks: bool

    OPTIONS: ClassVar[dict[str, tuple[Any, Any]]] = {}

    def voxel(self) -> tuple[float, ...] | None:
        """``--voxel-size`` parsed."""
        from .axes import parse_triplet

        return parse_triplet(self.voxel_size, None, "--voxel-size")


@dataclass(frozen=True)
class RunOptions:
    """Where outputs go and how a run of many files is done (deconvolve, predict)."""

    dtype: OutputType
    overwrite: bool
    workers: int | None
    scheduler: str | None
    device: str | None
    quiet: bool

    OPTIONS: ClassVar[dict[str, tuple[Any, Any]]] = {}

    def files(self) -> dict[str, Any]:
        """Keyword arguments of :func:`siamdecon.batch.deconvolve_files` / ``predict_files``."""
        return {
            "dtype": self.dtype.value,
            "overwrite": self.overwrite,
            "workers": self.workers,
            "scheduler": self.scheduler,
            "device": self.device,
            "progress": not self.quiet,
            "log": _echo(self.quiet),
        }


TrainingOptions.OPTIONS.update(
    preset=(Preset, _PRESET),
    loss=(Loss | None, _LOSS),
    boundary_weight=(float | None, _BOUND),
    steps=(int | None, _STEPS),
    mask_fraction=(float | None, _MASK),
    prior=(str | None, _PRIOR),
    hessian=(str | None, _HESSIAN),
    seed=(int | None, _SEED),
    config=(Path | None, _CONFIG),
)
PSFSource.OPTIONS.update(
    psf=(list[str], _PSFS),
    psf_voxel_size=(str | None, _PSF_VOXEL),
    na=(float | None, _NA),
    wavelength=(str | None, _WAVELENGTH),
    immersion=(Immersion | None, _IMMERSION),
)
InputOptions.OPTIONS.update(
    axes=(str | None, _AXES),
    voxel_size=(str | None, _VOXEL),
    allow_missing_chunks=(bool, _MISSING),
)
RunOptions.OPTIONS.update(
    dtype=(OutputType, _DTYPE),
    overwrite=(bool, _OVERWRITE),
    workers=(int | None, _WORKERS),
    scheduler=(str | None, _SCHEDULER),
    device=(str | None, _DEVICE),
    quiet=(bool, _QUIET),
)


def _grouped(**groups: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the options of ``groups`` (keyword -> group class), passed as one object each."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name not in groups]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
            for cls in groups.values()
            for name, (annotation, default) in cls.OPTIONS.items()  # type: ignore[attr-defined]
        ]
        names = {p.name for p in own}
        clash = names & {p.name for p in added}
        if clash:
            raise TypeError(f"{fn.__name__}: options {sorted(clash)} are both the command's and a group's")

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            for key, cls in groups.items():
                fields = cls.OPTIONS  # type: ignore[attr-defined]
                kwargs[key] = cls(**{name: kwargs.pop(name) for name in fields})
            return fn(**kwargs)

        signature = inspect.Signature([*own, *added])
        command.__signature__ = signature  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
        return command

    return decorate


@app.command()
@_handle_errors
@_grouped(source=PSFSource, reading=InputOptions, training=TrainingOptions, run=RunOptions)
def deconvolve(
    inputs: list[Path] = _INPUTS,
    out: Path = _OUT,
    per_timepoint: bool = _PER_T,
    save_model: Path | None = typer.Option(
        None, "--save-model", help="Also save the trained model(s) here (one input; _c0, _c1... per channel)."
    ),
    check: bool | None = typer.Option(
        None,
        "--check/--no-check",
        help="Compare each channel's network with Lucy-Richardson and Spitfire on held-out pixels and write the"
        " classical result where the network predicts the data worse. Default: on, off with --preset paper.",
    ),
    *,
    source: PSFSource,
    reading: InputOptions,
    training: TrainingOptions,
    run: RunOptions,
) -> None:
    """Train on each input (self-supervised) and write its deconvolution: every channel and time point.

    Each channel gets its own PSF (--psf once per channel, or once for all), its own model trained
    on that channel (across its time points, or one per time point with --per-timepoint), its own
    normalization and output channel. With the fast preset, training starts from a shipped prior
    (pretrained for this PSF, or the generic one for any PSF): used as it is in 2D (seconds),
    fine-tuned on the volume in 3D (a minute or more). Several inputs (a folder, a glob) go to an output
    folder with a manifest: a rerun skips finished files and a failed file does not stop the others.
    """
    from .batch import deconvolve_files

    started = time.perf_counter()
    opts = source.options()
    if save_model is not None:
        _check_model_output(save_model)
    summary = deconvolve_files(
        [str(p) for p in inputs],
        out,
        opts,
        config=training.configs(run.device),
        axes=reading.axes,
        per_timepoint=per_timepoint,
        voxel_size=reading.voxel(),
        allow_missing_chunks=reading.allow_missing_chunks,
        save_model=save_model,
        check=check,
        **run.files(),
    )
    _summary(summary, started, run.quiet, _is_single(inputs))


@app.command()
@_handle_errors
@_grouped(source=PSFSource, reading=InputOptions, training=TrainingOptions)
def train(
    image: Path = typer.Argument(..., help="Input image, volume or stack (any format 'deconvolve' reads)."),
    out: Path = typer.Option(
        ..., "-o", "--output", help="Model file to write (e.g. model.pt; _c0, _c1... per channel)."
    ),
    per_timepoint: bool = _PER_T,
    device: str | None = _DEVICE,
    quiet: bool = _QUIET,
    *,
    source: PSFSource,
    reading: InputOptions,
    training: TrainingOptions,
) -> None:
    """Train a model per channel of IMAGE and save it (weights, config, PSF, normalization, axes) to OUT."""
    from .batch import train_file

    _check_model_output(out)
    opts = source.options()
    train_file(
        image,
        out,
        opts,
        config=training.configs(device),
        axes=reading.axes,
        per_timepoint=per_timepoint,
        voxel_size=reading.voxel(),
        allow_missing_chunks=reading.allow_missing_chunks,
        device=device,
        progress=not quiet,
        log=_echo(quiet),
    )


@app.command()
@_handle_errors
@_grouped(reading=InputOptions, run=RunOptions)
def predict(
    inputs: list[Path] = _INPUTS,
    model: list[Path] = typer.Option(
        ..., "--model", help="Model file from 'siamdecon train': one per channel, in channel order, or one for all."
    ),
    out: Path = _OUT,
    tile_size: int | None = typer.Option(None, "--tile-size", min=8, help="Tile side (default from the model)."),
    tile_overlap: int | None = typer.Option(None, "--tile-overlap", min=0, help="Tile overlap in pixels."),
    normalization: str = typer.Option(
        "model", "--normalization", help="model: the training image's statistics; image: recompute them on IMAGE."
    ),
    *,
    reading: InputOptions,
    run: RunOptions,
) -> None:
    """Deconvolve each input with saved model(s): one per channel, or one for all channels."""
    from .batch import predict_files

    started = time.perf_counter()
    if normalization not in ("model", "image"):
        from .errors import ConfigError

        raise ConfigError(f"--normalization must be 'model' or 'image', got {normalization!r}")
    summary = predict_files(
        [str(p) for p in inputs],
        out,
        model,
        axes=reading.axes,
        voxel_size=reading.voxel(),
        allow_missing_chunks=reading.allow_missing_chunks,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        normalization=normalization,
        **run.files(),
    )
    _summary(summary, started, run.quiet, _is_single(inputs))


@app.command("lucy-richardson")
@_handle_errors
def lucy_richardson(
    image: Path = typer.Argument(..., help="Input image or volume."),
    psf: Path = typer.Option(..., "--psf", help="PSF file, same dimensionality."),
    out: Path = typer.Option(..., "-o", "--output", help="Output file (.tif, .tiff or .npy)."),
    iterations: int = typer.Option(10, "--iterations", "-n", min=1, help="Number of iterations."),
    offset: float = typer.Option(
        0.0,
        "--offset",
        min=0.0,
        help=(
            "Camera offset (counts) subtracted first, negative values then clipped to 0; the output is the"
            " estimate above the offset. Without it Lucy-Richardson treats the offset as signal."
        ),
    ),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """Classical Lucy-Richardson deconvolution (for comparison)."""
    import numpy as np

    from .classical import richardson_lucy
    from .io import write_image
    from .training import resolve_device

    _check_output(out)
    img, kernel = _load_inputs(image, psf)
    data = img.data
    if offset > 0:
        data = np.clip(data - offset, 0.0, None)
    elif data.min() < 0:
        from .errors import InputError

        raise InputError(
            f"image '{image}' has negative values (minimum {data.min():.3g}); Lucy-Richardson needs"
            " non-negative intensities. Add an offset or clip first."
        )
    result = richardson_lucy(data, kernel, iterations, device=resolve_device(device))
    write_image(out, img.like(result))


@app.command("psf")
@_handle_errors
def psf_command(
    ctx: typer.Context,
    out: Path = typer.Option(..., "-o", "--output", help="Output PSF file (.tif or .npy)."),
    ndim: int = typer.Option(3, "--ndim", min=2, max=3, help="2: one plane; 3: a z-stack."),
    size: str = typer.Option(
        "17",
        "--size",
        help="Kernel side in pixels (odd), or 'auto': the smallest with its faces below --threshold of the peak.",
    ),
    na: float = typer.Option(0.8, "--na", help="Numerical aperture."),
    wavelength: float = typer.Option(0.6, "--wavelength", help="Emission wavelength (um)."),
    pixel_size: float = typer.Option(0.406, "--pixel-size", help="Lateral pixel size (um)."),
    z_step: float = typer.Option(0.406, "--z-step", help="Axial step (um)."),
    refractive_index: float | None = typer.Option(
        None,
        "--refractive-index",
        help="Immersion and sample index (default 1.33); --immersion-index and --sample-index set them apart.",
    ),
    plane: int | None = typer.Option(
        None,
        "--plane",
        help=(
            "2D paper kernel only: which plane of the 17-plane particle scan (default 0: about 3 um out of"
            " focus, a ring, as in the paper's 2D benchmark; 7 or 8 are nearest focus)."
        ),
    ),
    model: str | None = typer.Option(
        None, "--model", help="scalar or vectorial (default: scalar for the paper's kernel, vectorial otherwise)."
    ),
    scan: str | None = typer.Option(
        None,
        "--scan",
        help=(
            "paper: the paper's particle-scan kernel; focal: a z-stack through an emitter at --depth, centred"
            " on best focus; particle: the emitter moves instead. Default: paper, or focal when --immersion-index,"
            " --sample-index, --depth, --defocus, --confocal, --excitation-wavelength, --pinhole, --threshold,"
            " --oversample or an 'auto' size is given."
        ),
    ),
    num_z: str | None = typer.Option(
        None,
        "--num-z",
        help="3D: number of planes (odd) or 'auto' (default: the same as --size).",
    ),
    immersion_index: float | None = typer.Option(
        None, "--immersion-index", help="Immersion index (default: --refractive-index)."
    ),
    sample_index: float | None = typer.Option(
        None, "--sample-index", help="Sample index (default: the immersion index, no mismatch)."
    ),
    depth: float | None = typer.Option(None, "--depth", help="Emitter depth above the coverslip (um, default 0)."),
    defocus: float | None = typer.Option(
        None,
        "--defocus",
        help="Offset of the central (2D: the) plane from best focus (um, + = focal plane deeper; default 0).",
    ),
    confocal: bool = typer.Option(
        False, "--confocal", help="Point-scanning confocal PSF (needs --excitation-wavelength; --wavelength emits)."
    ),
    excitation_wavelength: float | None = typer.Option(
        None, "--excitation-wavelength", help="Confocal excitation wavelength (um)."
    ),
    pinhole: float | None = typer.Option(
        None, "--pinhole", help="Confocal pinhole diameter in Airy units (default 1; 0: a point pinhole)."
    ),
    threshold: float | None = typer.Option(
        None, "--threshold", help="'auto' sizes: fraction of the peak allowed on the faces (default 0.001)."
    ),
    oversample: int | None = typer.Option(
        None, "--oversample", help="Sub-pixel samples per pixel side (default 1; 3 ~ camera pixel integration)."
    ),
    from_beads: Path | None = typer.Option(
        None,
        "--from-beads",
        help=(
            "Measure the PSF from this image of sub-resolution beads (2D or 3D, raw counts) instead of"
            " computing it; its voxel size comes from its metadata, or --pixel-size and --z-step."
        ),
    ),
    like: Path | None = typer.Option(
        None, "--like", help="--from-beads: resample the PSF to the voxel size of this image (read from its metadata)."
    ),
    voxel_size: str | None = typer.Option(
        None,
        "--voxel-size",
        help="--from-beads: resample the PSF to this voxel size (um): one value, or Y,X / Z,Y,X.",
    ),
    bead_size: float | None = typer.Option(
        None, "--bead-size", help="--from-beads: bead diameter (um) to divide out of the PSF (e.g. 0.1)."
    ),
) -> None:
    """Generate a PSF: the paper's Gibson-Lanni kernel by default, or any widefield/confocal microscope.

    With --from-beads, measure it from an image of beads instead (--size then also takes Z,Y,X).
    """
    from .errors import ConfigError
    from .io import write_image
    from .psf import confocal_psf, generate_psf, widefield_psf

    _check_output(out)
    if from_beads is not None:
        _psf_from_beads(ctx, out, from_beads, like, voxel_size, bead_size, size, ndim, pixel_size, z_step)
        return
    bead_only = {"--like": like, "--voxel-size": voxel_size, "--bead-size": bead_size}
    wrong = [name for name, value in bead_only.items() if value is not None]
    if wrong:
        raise ConfigError(f"{', '.join(wrong)}: only with --from-beads (a measured PSF)")

    def parse_size(name: str, value: str | None) -> int | str | None:
        if value is None or value.strip().lower() == "auto":
            return None if value is None else "auto"
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n <= 0 or n % 2 == 0:
            raise ConfigError(f"{name} must be a positive odd integer or 'auto', got {value!r}")
        return n

    size_, num_z_ = parse_size("--size", size), parse_size("--num-z", num_z)
    if model is not None and model not in ("scalar", "vectorial"):
        raise ConfigError(f"--model must be 'scalar' or 'vectorial', got {model!r}")
    if scan is not None and scan not in ("paper", "focal", "particle"):
        raise ConfigError(f"--scan must be 'paper', 'focal' or 'particle', got {scan!r}")
    full_model = {
        "--immersion-index": immersion_index is not None,
        "--sample-index": sample_index is not None,
        "--depth": depth is not None,
        "--defocus": defocus is not None,
        "--confocal": confocal,
        "--excitation-wavelength": excitation_wavelength is not None,
        "--pinhole": pinhole is not None,
        "--threshold": threshold is not None,
        "--oversample": oversample is not None,
        "--size auto": size_ == "auto",
        "--num-z auto": num_z_ == "auto",
    }
    given = [name for name, on in full_model.items() if on]
    scan_ = scan or ("focal" if given else "paper")
    index = 1.33 if refractive_index is None else refractive_index
    try:
        if scan_ == "paper":
            if given:
                raise ConfigError(
                    f"{', '.join(given)}: not for the paper's kernel; use --scan focal or particle, not --scan paper"
                )
            kernel = generate_psf(
                ndim=ndim,
                size=size_,
                na=na,
                wavelength=wavelength,
                pixel_size=pixel_size,
                z_step=z_step,
                refractive_index=index,
                plane=plane,
                num_z=num_z_,
                model=model or "scalar",
            )
        else:
            if plane is not None:
                raise ConfigError(
                    "--plane selects a plane of the paper's kernel; with --scan focal or particle use --defocus"
                )
            if not confocal and (excitation_wavelength is not None or pinhole is not None):
                raise ConfigError("--excitation-wavelength and --pinhole need --confocal")
            if confocal and excitation_wavelength is None:
                raise ConfigError("--confocal needs --excitation-wavelength (um); --wavelength is the emission")
            if refractive_index is not None and immersion_index is not None:
                raise ConfigError("give --refractive-index or --immersion-index, not both")
            if ndim == 2 and num_z_ is not None:
                raise ConfigError("--num-z is for 3D kernels (--ndim 3)")
            lateral = None if size_ == "auto" else size_
            axial = lateral if num_z_ is None else (None if num_z_ == "auto" else num_z_)
            common = {
                "na": na,
                "pixel_size": pixel_size,
                "z_step": z_step,
                "shape": (axial, lateral, lateral) if ndim == 3 else (lateral, lateral),
                "immersion_index": index if immersion_index is None else immersion_index,
                "sample_index": sample_index,
                "depth": 0.0 if depth is None else depth,
                "defocus": 0.0 if defocus is None else defocus,
                "model": model or "vectorial",
                "scan": scan_,
                "oversample": 1 if oversample is None else oversample,
                "threshold": 1e-3 if threshold is None else threshold,
            }
            if confocal:
                kernel = confocal_psf(
                    ndim,
                    excitation_wavelength=excitation_wavelength,
                    emission_wavelength=wavelength,
                    pinhole_au=1.0 if pinhole is None else pinhole,
                    **common,
                )
            else:
                kernel = widefield_psf(ndim, wavelength=wavelength, **common)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    write_image(out, kernel)
    typer.echo(f"wrote {out} (shape {' x '.join(str(n) for n in kernel.shape)})", err=True)


# Options of the computed PSF that mean nothing for a measured one (--ndim, --size, --pixel-size and
# --z-step do: checked against the bead image, the output size, the bead image's voxel size).
_MODEL_OPTIONS = {
    "na": "--na",
    "wavelength": "--wavelength",
    "refractive_index": "--refractive-index",
    "plane": "--plane",
    "model": "--model",
    "scan": "--scan",
    "num_z": "--num-z",
    "immersion_index": "--immersion-index",
    "sample_index": "--sample-index",
    "depth": "--depth",
    "defocus": "--defocus",
    "confocal": "--confocal",
    "excitation_wavelength": "--excitation-wavelength",
    "pinhole": "--pinhole",
    "threshold": "--threshold",
    "oversample": "--oversample",
}
# Units of a voxel size in image metadata, in micrometres.
_UNITS_UM = {"um": 1.0, "micron": 1.0, "microns": 1.0, "\u00b5m": 1.0, "\u03bcm": 1.0, "nm": 1e-3, "mm": 1e3}


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was given on the command line (not left at its default)."""
    source = ctx.get_parameter_source(name)
    # By name: typer may ship its own copy of click's ParameterSource enum.
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _spacing_um(img, what: str) -> tuple[tuple[float, ...] | None, str]:
    """An image's voxel size in micrometres from its metadata, and a note on how it was read."""
    from .errors import InputError

    if img.spacing is None:
        return None, ""
    unit = (img.unit or "").strip()
    if not unit:
        if all(float(v) == 1.0 for v in img.spacing):
            return None, ""  # an uncalibrated file (ImageJ writes a resolution of 1 and no unit)
        return tuple(float(v) for v in img.spacing), f" (the {what} file names no unit: taken as um)"
    factor = _UNITS_UM.get(unit.lower()) or _UNITS_UM.get(unit)
    if factor is None:
        if unit.lower() in ("pixel", "pixels", "px"):
            return None, ""
        raise InputError(
            f"{what} '{img.path}' gives its voxel size in '{unit}', which siamdecon cannot convert to um;"
            " give the voxel size on the command line instead"
        )
    return tuple(float(v) * factor for v in img.spacing), ""


def _parse_voxel(text: str, ndim: int, name: str) -> tuple[float, ...]:
    from .errors import ConfigError

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * ndim
    if len(values) != ndim or not all(v > 0 and v < float("inf") for v in values):
        axes = "Z,Y,X" if ndim == 3 else "Y,X"
        raise ConfigError(f"{name} must be one positive size in um or {ndim} ({axes}), got {text!r}")
    return tuple(values)


def _parse_bead_size(text: str, ndim: int) -> tuple[int, ...] | None:
    from .errors import ConfigError

    if text.strip().lower() == "auto":
        return None
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * ndim
    if len(values) != ndim or any(v <= 0 or v % 2 == 0 for v in values):
        axes = "Z,Y,X" if ndim == 3 else "Y,X"
        raise ConfigError(
            f"--size must be 'auto', one positive odd integer or {ndim} ({axes}) for this {ndim}D bead image,"
            f" got {text!r}"
        )
    return tuple(values)


def _psf_from_beads(
    ctx: typer.Context,
    out: Path,
    beads: Path,
    like: Path | None,
    voxel_size: str | None,
    bead_size: float | None,
    size: str,
    ndim: int,
    pixel_size: float,
    z_step: float,
) -> None:
    """``siamdecon psf --from-beads``: measure, optionally resample, report and write the PSF."""
    import numpy as np

    from .beads import estimate_psf, psf_fwhm, resample_psf
    from .errors import ConfigError, InputError
    from .io import ImageData, read_image, write_image

    wrong = [flag for name, flag in _MODEL_OPTIONS.items() if _given(ctx, name)]
    if wrong:
        raise ConfigError(
            f"{', '.join(wrong)}: options of the computed PSF model, not of one measured with --from-beads"
        )
    if like is not None and voxel_size is not None:
        raise ConfigError("give --like or --voxel-size, not both: both set the voxel size to resample to")
    if bead_size is not None and not bead_size > 0:
        raise ConfigError(f"--bead-size must be a positive diameter in um, got {bead_size}")
    img = read_image(beads, "bead image")
    nd = img.ndim
    if _given(ctx, "ndim") and ndim != nd:
        raise InputError(f"bead image '{beads}' is {nd}D (shape {img.data.shape}) but --ndim {ndim} was given")
    shape = _parse_bead_size(size, nd) if _given(ctx, "size") else None

    # The bead image's voxel size: its metadata, where --pixel-size / --z-step given override it.
    voxel, voxel_note = _spacing_um(img, "bead image")
    given_xy, given_z = _given(ctx, "pixel_size"), _given(ctx, "z_step")
    if given_z and nd == 2:
        raise ConfigError("--z-step: the bead image is 2D")
    if given_xy or given_z:
        if voxel is None and nd == 3 and not (given_xy and given_z):
            raise InputError(
                f"bead image '{beads}' has no voxel size in its metadata; give both --pixel-size and --z-step"
            )
        base = list(voxel) if voxel is not None else [pixel_size] * nd
        if given_xy:
            base[-2:] = [pixel_size, pixel_size]
        if given_z:
            base[0] = z_step
        voxel_note = " (from the command line)" if voxel is None else " (metadata overridden by the command line)"
        voxel = tuple(base)

    target: tuple[float, ...] | None = None
    like_img = None
    if like is not None:
        like_img = read_image(like, "--like image")
        if like_img.ndim != nd:
            raise InputError(
                f"--like image '{like}' is {like_img.ndim}D but bead image '{beads}' is {nd}D; measure the PSF"
                " from beads imaged like the data (a z-stack for a volume, one plane for an image)"
            )
        target, _ = _spacing_um(like_img, "--like image")
        if target is None:
            raise InputError(f"--like image '{like}' has no voxel size in its metadata; give --voxel-size instead")
    elif voxel_size is not None:
        target = _parse_voxel(voxel_size, nd, "--voxel-size")
    needs_voxel = [n for n, on in (("--bead-size", bead_size is not None), ("resampling", target is not None)) if on]
    if voxel is None and needs_voxel:
        zs = " and --z-step" if nd == 3 else ""
        raise InputError(
            f"bead image '{beads}' has no voxel size in its metadata, which {' and '.join(needs_voxel)} need(s);"
            f" give it with --pixel-size{zs} (um)"
        )

    data = img.data
    if np.dtype(img.original_dtype).kind in "iu":
        # Raw integer counts: the dtype's full scale is how saturated beads are recognized.
        data = data.astype(img.original_dtype)
    resample = target is not None and not np.allclose(target, voxel, rtol=1e-6)  # type: ignore[arg-type]
    result = estimate_psf(data, shape=None if resample else shape, voxel=voxel, bead_diameter=bead_size)
    kernel = result.psf
    lines = [f"bead image {beads}: {'x'.join(str(s) for s in data.shape)}"]
    if voxel is not None:
        lines[0] += f", voxel {', '.join(f'{v:g}' for v in voxel)} um{voxel_note}"
    lines += result.summary()
    final_voxel = voxel
    if resample:
        kernel = resample_psf(kernel, voxel, target, shape=shape)  # type: ignore[arg-type]
        final_voxel = target
        axes = "zyx"[-nd:]
        widths = psf_fwhm(kernel)
        fwhm = ", ".join(f"{a} {w:.2f} px ({w * v:.3f} um)" for a, w, v in zip(axes, widths, target))  # type: ignore[arg-type]
        source = f"--like {like}" if like is not None else "--voxel-size"
        lines.append(
            f"resampled to voxel {', '.join(f'{v:g}' for v in target)} um ({source}):"  # type: ignore[union-attr]
            f" {'x'.join(str(s) for s in kernel.shape)}, FWHM {fwhm}"
        )
    if like_img is not None and any(k > n for k, n in zip(kernel.shape, like_img.data.shape)):
        raise InputError(
            f"the measured PSF ({'x'.join(map(str, kernel.shape))}) is larger than the --like image '{like}'"
            f" ({'x'.join(map(str, like_img.data.shape))}); give a smaller odd --size"
        )
    for line in lines:
        typer.echo(line, err=True)
    spacing = tuple(final_voxel) if final_voxel is not None else None
    write_image(out, ImageData(np.asarray(kernel, np.float32), spacing=spacing, unit="um" if spacing else None))
    typer.echo(f"wrote {out} (shape {' x '.join(str(n) for n in kernel.shape)})", err=True)


def _prior_file(path: Path) -> Path:
    """A prior file given by path, or by the name of a prior shipped with siamdecon."""
    from .prior_choice import shipped_priors

    if path.exists():
        return path
    shipped = {p.name: p for p in shipped_priors()}
    if str(path) in shipped:
        return shipped[str(path)]
    raise InputError(f"prior file '{path}' does not exist (shipped priors, usable by name: {', '.join(shipped)})")


@app.command()
@_handle_errors
def pretrain(
    psf: Path | None = typer.Option(
        None, "--psf", help="2D or 3D PSF file (.tif, .tiff, .npy) of your microscope (or --generic)."
    ),
    out: Path = typer.Option(..., "-o", "--output", help="Prior file to write (e.g. prior.pt)."),
    generic: bool = typer.Option(
        False, "--generic", help="A prior for any PSF: random PSFs, cameras and structures (as fast-2d-generic.pt)."
    ),
    ndim: int | None = typer.Option(None, "--ndim", min=2, max=3, help="With --generic: 2 or 3."),
    psfs: int | None = typer.Option(
        None, "--psfs", min=1, help="With --generic: random PSFs drawn (default 400 in 2D, 150 in 3D)."
    ),
    steps: int | None = typer.Option(
        None, "--steps", min=1, help="Pretraining steps (default 6000 in 2D, 4000 in 3D; --generic 9000, 4500)."
    ),
    images: int | None = typer.Option(
        None, "--images", min=1, help="Synthetic images or volumes (default 600 in 2D, 150 in 3D; --generic 800, 80)."
    ),
    seed: int | None = _SEED,
    lr: float | None = typer.Option(
        None, "--lr", min=1e-8, help="Peak learning rate of the cosine schedule (default 2e-3)."
    ),
    init: Path | None = typer.Option(
        None,
        "--init",
        help=(
            "Continue from this prior file's weights (e.g. a shipped generic prior, with --psf: specialize it to"
            " your PSF; with --generic: give another --seed than its own, so that new PSFs and structures are drawn)."
        ),
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Pretrain the fast preset's network on synthetic images blurred by PSF (once per microscope),
    or with --generic on random PSFs and cameras (the shipped fast-2d-generic.pt: --generic --ndim 2
    --steps 9000, about an hour on a 2-core CPU).

    Use the result with 'deconvolve --prior OUT'. About 25-30 minutes on a 2-core CPU with the defaults.
    """
    from .config import make_config
    from .errors import ConfigError
    from .prior import Prior, default_pretrain_config
    from .prior import pretrain as run_pretrain
    from .psf import load_psf

    if generic == (psf is not None):
        raise ConfigError("give either --psf FILE (a prior for that PSF) or --generic --ndim N (a prior for any PSF)")
    if generic and ndim is None:
        raise ConfigError("--generic needs --ndim 2 or --ndim 3")
    if psfs is not None and not generic:
        raise ConfigError("--psfs goes with --generic")
    if ndim is not None and not generic:
        raise ConfigError("--ndim goes with --generic; with --psf the PSF file's dimensionality is used")
    _check_model_output(out)
    kernel = load_psf(psf) if psf is not None else None
    nd = ndim if kernel is None else kernel.ndim
    settings = default_pretrain_config(nd, generic=generic, steps=steps, images=images, seed=seed, psfs=psfs, lr=lr)
    start_from = Prior.load(_prior_file(init)) if init is not None else None
    if start_from is not None and generic and start_from.generic and start_from.settings.seed == settings.seed:
        raise ConfigError(
            f"--init '{init}' was pretrained with seed {settings.seed}: continuing with the same --seed draws the"
            " same PSFs and structures again; give another --seed"
        )
    if not quiet:
        typer.echo(
            f"pretraining on {settings.images} synthetic images, {settings.steps} steps; Ctrl-C stops early"
            " and keeps the weights so far",
            err=True,
        )
    prior = run_pretrain(kernel, make_config("fast", nd), settings, device=device, progress=not quiet, init=start_from)
    prior.save(out)
    if not quiet:
        typer.echo(f"wrote prior {out} ({prior.info['steps']} steps, {prior.info['seconds']:.0f} s)", err=True)


@app.command("export-bmz")
@_handle_errors
def export_bmz_command(
    model: Path = typer.Argument(..., help="Model file written by 'siamdecon train' or '--save-model'."),
    out: Path = typer.Option(..., "-o", "--output", help="Package to write (.zip)."),
    test_image: Path | None = typer.Option(
        None,
        "--test-image",
        help="Image to take the package's test input from (a centre crop; default: a synthetic image).",
    ),
    name: str | None = typer.Option(None, "--name", help="Name of the package."),
    author: list[str] | None = typer.Option(None, "--author", help="An author's name (repeat for several)."),
    license_id: str = typer.Option("MIT", "--license", help="SPDX licence identifier of the package."),
    test: bool = typer.Option(True, "--test/--no-test", help="Run bioimageio.core's test_model on the package."),
) -> None:
    """Export MODEL as a BioImage Model Zoo package (model spec 0.5, PyTorch state dict); needs siamdecon[bmz]."""
    from .bmz import export_bmz
    from .io import read_image

    image = None
    if test_image is not None:
        image = read_image(test_image, "test image").data
    result = export_bmz(
        model,
        out,
        name=name,
        authors=list(author) if author else None,
        test_image=image,
        license=license_id,
        run_test=test,
    )
    typer.echo(
        f"wrote {result.path}: the package's network matches siamdecon's prediction to {result.max_difference:.3g}"
        f" (output range {result.output_range:.3g})",
        err=True,
    )
    if result.test_passed is None:
        return
    if not result.test_passed:
        _err(f"bioimageio.core test_model failed on '{out}': " + "; ".join(result.test_details))
        raise typer.Exit(code=1)
    typer.echo("bioimageio.core test_model: passed", err=True)


@app.command()
@_handle_errors
def simulate(
    clean: Path = typer.Argument(..., help="Ground truth image or volume in [0, 1]."),
    psf: Path = typer.Option(..., "--psf", help="PSF file, same dimensionality."),
    out: Path = typer.Option(..., "-o", "--output", help="Degraded output file."),
    poisson: float = typer.Option(0.001, "--poisson", min=0.0, help="alpha of the Poisson-Gaussian noise."),
    gaussian: float = typer.Option(0.1, "--gaussian", min=0.0, help="sigma of the Poisson-Gaussian noise."),
    salt_pepper: float | None = typer.Option(
        None, "--salt-pepper", min=0.0, max=1.0, help="Fraction replaced by U(0,1) (default 0.01 in 2D, 0 in 3D)."
    ),
    bits: int = typer.Option(10, "--bits", min=1, help="Quantization depth."),
    seed: int = typer.Option(0, "--seed"),
    rescale: bool = typer.Option(
        False, "--rescale", help="Rescale CLEAN to [0, 1] first (otherwise it must already be)."
    ),
) -> None:
    """Degrade a clean image by the paper's protocol (blur, noise, salt-and-pepper, quantization)."""
    from .errors import InputError
    from .io import write_image
    from .simulate import degrade, rescale01

    _check_output(out)
    img, kernel = _load_inputs(clean, psf)
    data = img.data
    if rescale:
        data = rescale01(data)
    elif data.min() < 0 or data.max() > 1:
        raise InputError(
            f"clean image '{clean}' has values in [{data.min():.4g}, {data.max():.4g}]; the protocol expects"
            " [0, 1]. Pass --rescale to rescale it linearly."
        )
    noisy = degrade(data, kernel, poisson=poisson, gaussian=gaussian, salt_pepper=salt_pepper, bits=bits, seed=seed)
    write_image(out, img.like(noisy))


@app.command()
@_handle_errors
def evaluate(
    image: Path = typer.Argument(..., help="Estimate to score."),
    truth: Path = typer.Option(..., "--truth", help="Ground truth in [0, 1], same shape."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Score an estimate against ground truth (PSNR, SSIM, RMSE, MI, SMI; estimate clipped to [0, 1])."""
    from .errors import InputError
    from .io import read_image
    from .metrics import evaluate as _evaluate

    est = read_image(image, "image").data
    ref = read_image(truth, "ground truth").data
    if est.shape != ref.shape:
        raise InputError(f"image '{image}' has shape {est.shape} but ground truth '{truth}' has {ref.shape}")
    if ref.min() < 0 or ref.max() > 1:
        raise InputError(
            f"ground truth '{truth}' has values in [{ref.min():.4g}, {ref.max():.4g}]; the metrics use data"
            " range 1 and need a truth scaled to [0, 1] (as 'siamdecon simulate --rescale' makes it)"
        )
    scores = _evaluate(est, ref)
    if as_json:
        typer.echo(json.dumps(scores))
    else:
        for k, v in scores.items():
            typer.echo(f"{k:>5}: {v:.4f}")


@app.command()
@_handle_errors
def config(
    out: Path = typer.Option(..., "-o", "--output", help="YAML or JSON file to write."),
    preset: Preset = _PRESET,
    ndim: int = typer.Option(2, "--ndim", min=2, max=3),
) -> None:
    """Write a preset's full configuration to a file, to edit and pass back with --config."""
    from .config import make_config

    make_config(preset.value, ndim).save(out)


@app.command()
@_handle_errors
def demo(
    out: Path = typer.Option(Path("siamdecon-demo"), "-o", "--output", help="Folder for images, figure and table."),
    steps: int | None = _STEPS,
    seed: int = typer.Option(0, "--seed"),
    size: int = typer.Option(512, "--size", min=64, max=512, help="Crop of the camera image (512 = whole)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Run the main job on a bundled example and compare with Lucy-Richardson.

    The scikit-image 'camera' photograph is degraded by the paper's protocol with the paper's 2D
    PSF, then deconvolved by Lucy-Richardson (best of 1-20 iterations, chosen with the ground
    truth) and by siamdecon (fast preset). Writes TIFFs, a side-by-side PNG and results.json.
    """
    from .demo import run_demo

    out.mkdir(parents=True, exist_ok=True)
    rows = run_demo(out, steps=steps, seed=seed, size=size, progress=not quiet)
    width = max(40, *(len(r["method"]) + 2 for r in rows))
    header = f"{'method':<{width}}{'PSNR':>8}{'SSIM':>8}{'time (s)':>10}"
    typer.echo(header)
    typer.echo("-" * len(header))
    for r in rows:
        typer.echo(f"{r['method']:<{width}}{r['psnr']:>8.2f}{r['ssim']:>8.3f}{r['seconds']:>10.1f}")
    for r in rows:
        if r.get("check"):
            typer.echo(f"\n{r['check']}")
    typer.echo(f"\nimages, comparison.png and results.json in {out}/")


class Suite(str, Enum):
    paper = "paper"
    microscopy = "microscopy"


@app.command()
@_handle_errors
def benchmark(
    out: Path = typer.Option(Path("siamdecon-benchmark"), "-o", "--output", help="Report folder (resumable)."),
    suite: Suite = typer.Option(
        Suite.paper,
        "--suite",
        help="paper: the paper's protocol; microscopy: microscope PSFs, camera noise, biological structures and peers.",
    ),
    quick: bool = typer.Option(False, "--quick", help="microscopy: a subset of the cases at small sizes."),
    cases: str | None = typer.Option(
        None, "--cases", help="microscopy: comma-separated patterns on case keys, e.g. '2d-*,3d-confocal/*'."
    ),
    rerun: str | None = typer.Option(
        None, "--rerun", help="microscopy: comma-separated methods to compute again (e.g. default after a change)."
    ),
    full: bool = typer.Option(
        False, "--full", help="paper: all 14 images, whole (up to 512 px crops), and 64x128x128 volumes."
    ),
    images: str | None = typer.Option(
        None, "--images", help="paper: comma-separated 2D images (default: camera,coins,cell)."
    ),
    crop: int | None = typer.Option(None, "--crop", min=16, help="paper: 2D centre crop (quick: 256, full: 512)."),
    volumes: int | None = typer.Option(
        None, "--volumes", min=0, help="paper: number of 3D phantom volumes (0: no 3D)."
    ),
    shape_3d: str | None = typer.Option(None, "--shape-3d", help="paper: 3D volume shape z,y,x (quick: 32,96,96)."),
    methods: str | None = typer.Option(
        None,
        "--methods",
        help=(
            "Comma-separated methods. paper: network methods (default: all seven). microscopy: input,"
            " lucy-richardson-best, lucy-richardson-20, spitfire-best, wiener, default, scratch (the default list),"
            " and spitfire-sdeconv (sdeconv's own Spitfire, a slow check)."
        ),
    ),
    preset: Preset | None = typer.Option(None, "--preset", help="paper: preset of the network methods (default fast)."),
    steps: int | None = _STEPS,
    seed: int = typer.Option(0, "--seed"),
    device: str | None = _DEVICE,
    figures: int | None = typer.Option(None, "--figures", help="paper: 2D images that get a figure (default 3)."),
    fft: bool = typer.Option(False, "--fft", help="paper: also time PSF convolution, FFT against direct."),
    report_only: bool = typer.Option(False, "--report-only", help="Only regenerate report.md and figures."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Run a benchmark suite and write results.json, report.md and figures (an interrupted run resumes).

    --suite paper (default): Lucy-Richardson, blind-spot and Siamese losses on the paper's protocol.
    --suite microscopy: siamdecon's default against Lucy-Richardson, Spitfire and Wiener on
    microscope-like data; --quick for a subset in minutes.
    """
    from .benchmark import write_report
    from .errors import ConfigError

    def listed(text: str | None) -> list[str]:
        return [v.strip() for v in text.split(",") if v.strip()] if text else []

    if not report_only and suite is Suite.microscopy:
        given = {
            "--full": full,
            "--images": images,
            "--crop": crop,
            "--volumes": volumes,
            "--shape-3d": shape_3d,
            "--preset": preset,
            "--steps": steps,
            "--figures": figures,
            "--fft": fft,
        }
        wrong = [name for name, v in given.items() if v not in (None, False)]
        if wrong:
            raise ConfigError(
                f"{', '.join(wrong)} belong(s) to --suite paper; the microscopy suite runs siamdecon as"
                " `deconvolve` does (fast preset) on fixed cases: choose them with --quick and --cases"
            )
        from .benchmark.microscopy import MicroscopySettings, run_microscopy

        settings = MicroscopySettings(
            quick=quick,
            seed=seed,
            methods=tuple(listed(methods)),
            patterns=tuple(listed(cases)),
            rerun=tuple(listed(rerun)),
            device=device,
        )
        run_microscopy(str(out), settings, progress=not quiet)
        typer.echo(f"wrote {write_report(out)}")
        return
    if not report_only:
        wrong = [name for name, v in {"--quick": quick, "--cases": cases, "--rerun": rerun}.items() if v]
        if wrong:
            raise ConfigError(f"{', '.join(wrong)} belong(s) to --suite microscopy")
        from .benchmark import IMAGES_2D, NETWORK_METHODS, QUICK_2D, BenchmarkSettings, run_benchmark
        from .benchmark.speed import fft_speed_table

        try:
            shape = (
                tuple(int(v) for v in shape_3d.split(",")) if shape_3d else ((64, 128, 128) if full else (32, 96, 96))
            )
        except ValueError:
            raise ConfigError(f"--shape-3d must be three integers like 32,96,96, got {shape_3d!r}") from None
        if len(shape) != 3:
            raise ConfigError(f"--shape-3d must be three integers like 32,96,96, got {shape_3d!r}")
        settings = BenchmarkSettings(
            images_2d=listed(images) if images is not None else (IMAGES_2D if full else QUICK_2D),
            crop=crop or (512 if full else 256),
            volumes_3d=volumes if volumes is not None else 1,
            shape_3d=shape,
            preset=(preset or Preset.fast).value,
            steps=steps,
            seed=seed,
            methods=listed(methods) or tuple(NETWORK_METHODS),
            figures=3 if figures is None else figures,
        )
        run_benchmark(out, settings, device=device, progress=not quiet)
        if fft:
            fft_speed_table(out=out / "fft_speed.json")
    fft_path = out / "fft_speed.json"
    rows = json.loads(fft_path.read_text()) if fft_path.exists() else None
    report = write_report(out, rows)
    typer.echo(f"wrote {report}")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
