"""Deconvolving real microscopy files: channels, time points, PSFs, folders, manifests and summaries.

:func:`deconvolve_files` and :func:`predict_files` take files, folders or glob patterns. Every file
is read with its axes (:func:`siamdecon.stack.read_stack`); every channel gets its own PSF, its own
model trained on that channel (by default on patches drawn across its time points; with
``per_timepoint`` one model per time point), its own normalization and its own output channel. The
output has the input's axes, shape and voxel size, and records how it was made.

With several inputs the output is a folder with a manifest (``siamdecon-manifest.json``) that
records the settings and every finished file: a rerun skips finished files, refuses changed
settings unless ``overwrite``, and a failure on one file does not stop the others (a full disk
does: the run stops and keeps what it finished). Work can run on a Dask cluster
(:mod:`siamdecon.cluster`): whole files, or the channel/time-point models and chunks of one file.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config
from .errors import ConfigError, InputError, SiamdeconError
from .stack import STACK_READ_SUFFIXES, Stack, file_checksum, read_stack, stack_suffix

__all__ = [
    "PSFOptions",
    "RunSettings",
    "FileResult",
    "RunSummary",
    "expand_inputs",
    "deconvolve_files",
    "predict_files",
    "train_file",
    "process_file",
    "channel_psfs",
    "MANIFEST_NAME",
    "IMMERSION_INDEX",
]

MANIFEST_NAME = "siamdecon-manifest.json"
_MANIFEST_FORMAT = "siamdecon-manifest"
#: Refractive index of each immersion medium for ``--psf auto``.
IMMERSION_INDEX = {"oil": 1.515, "water": 1.333, "silicone": 1.406, "air": 1.0}
_LOG = logging.getLogger("siamdecon")


# -- settings ----------------------------------------------------------------------------------------
@dataclass
class PSFOptions:
    """Where each channel's PSF comes from.

    Attributes
    ----------
    files : list of Path
        One PSF per channel in channel order, or one for all channels. Empty with ``auto``.
    auto : bool
        Generate a widefield PSF (vectorial Gibson-Lanni) on each image's voxel grid.
    na : float or None
        Numerical aperture (``auto``).
    wavelengths : list of float
        Emission wavelength(s) in micrometres (``auto``): one per channel, or one for all.
    immersion : str
        ``oil``, ``water``, ``silicone`` or ``air`` (``auto``).
    voxel_size : tuple of float or None
        Voxel size of the PSF files (Z,Y,X or Y,X), replacing their metadata.
    """

    files: list[Path] = field(default_factory=list)
    auto: bool = False
    na: float | None = None
    wavelengths: list[float] = field(default_factory=list)
    immersion: str = "oil"
    voxel_size: tuple[float, ...] | None = None


@dataclass
class RunSettings:
    """Everything a run needs besides its inputs (picklable, sent to cluster workers).

    Attributes
    ----------
    command : {"deconvolve", "predict"}
    configs : dict
        Config per spatial dimensionality (2, 3), for ``deconvolve``.
    psf : PSFOptions
        PSFs, for ``deconvolve``.
    models : list of Path
        Model files, one per channel or one for all, for ``predict``.
    axes : str or None
        Axes of the inputs (``--axes``), when their files do not say.
    dtype : {"float32", "uint16"}
    per_timepoint : bool
        One model per time point instead of one per channel.
    voxel_size : tuple or None
        Voxel size of the images, replacing their metadata.
    overwrite : bool
        Redo finished outputs and replace existing files.
    allow_missing_chunks : bool
        Accept OME-Zarr inputs with unwritten chunks.
    tile_size, tile_overlap, normalization, device
        Prediction options (``device`` also trains).
    max_timepoints : int
        Time points of a lazily read (OME-Zarr) channel its model trains on, evenly spaced; in-memory
        stacks use all of them.
    pool_bytes : int
        Memory for training patches read from OME-Zarr.
    threads : int or None
        Torch threads per job (set in cluster workers).
    save_model : Path or None
        Also save the trained model(s) (``deconvolve`` of one file).
    check : bool
        ``deconvolve`` only: compare each channel's network with Lucy-Richardson and Spitfire on
        held-out pixels (:mod:`siamdecon.holdout`) and write the classical result where the network
        predicts the data worse (in-memory inputs; OME-Zarr inputs get the check's verdict in the
        log and provenance, and the network's result).
    """

    command: str = "deconvolve"
    configs: dict[int, Config] = field(default_factory=dict)
    psf: PSFOptions = field(default_factory=PSFOptions)
    models: list[Path] = field(default_factory=list)
    axes: str | None = None
    dtype: str = "float32"
    per_timepoint: bool = False
    voxel_size: tuple[float, ...] | None = None
    overwrite: bool = False
    allow_missing_chunks: bool = False
    tile_size: int | None = None
    tile_overlap: int | None = None
    normalization: str = "model"
    device: str | None = None
    max_timepoints: int = 16
    pool_bytes: int = 64 * 1024 * 1024
    threads: int | None = None
    save_model: Path | None = None
    check: bool = False

    def identity(self) -> dict[str, Any]:
        """What the results depend on (recorded in the manifest; a change is refused or redone)."""
        configs = {}
        for ndim, cfg in sorted(self.configs.items()):
            data = cfg.model_dump(mode="json")
            data["training"].pop("device", None)
            data["training"].pop("threads", None)
            configs[str(ndim)] = data
        psf: dict[str, Any]
        if self.psf.auto:
            psf = {
                "auto": True,
                "na": self.psf.na,
                "wavelengths": self.psf.wavelengths,
                "immersion": self.psf.immersion,
            }
        else:
            psf = {"files": [_file_identity(p) for p in self.psf.files], "voxel_size": self.psf.voxel_size}
        out: dict[str, Any] = {
            "command": self.command,
            "dtype": self.dtype,
            "axes": self.axes,
            "voxel_size": self.voxel_size,
            "per_timepoint": self.per_timepoint,
        }
        if self.command == "deconvolve":
            out.update(configs=configs, psf=psf, max_timepoints=self.max_timepoints)
            if self.check:
                # Only when on, so that manifests written before the check existed still match.
                out["check"] = True
        else:
            out.update(
                models=[_file_identity(p) for p in self.models],
                tile_size=self.tile_size,
                tile_overlap=self.tile_overlap,
                normalization=self.normalization,
            )
        return json.loads(json.dumps(out, default=str))


def _file_identity(path: Path) -> dict[str, str]:
    return {"name": Path(path).name, "sha256": file_checksum(path)}


@dataclass
class FileResult:
    """The outcome for one input."""

    input: str
    output: str
    status: str  # "done", "skipped", "failed" or "not started"
    reason: str = ""
    seconds: float = 0.0
    output_bytes: int = 0


@dataclass
class RunSummary:
    """What a run did, file by file."""

    results: list[FileResult] = field(default_factory=list)
    stopped: str = ""

    def by_status(self, status: str) -> list[FileResult]:
        return [r for r in self.results if r.status == status]

    @property
    def done(self) -> list[FileResult]:
        return self.by_status("done")

    @property
    def skipped(self) -> list[FileResult]:
        return self.by_status("skipped")

    @property
    def failed(self) -> list[FileResult]:
        return self.by_status("failed")

    @property
    def ok(self) -> bool:
        return not self.failed and not self.stopped and not self.by_status("not started")

    def lines(self) -> list[str]:
        """A human-readable summary."""
        not_started = len(self.by_status("not started"))
        out = [
            f"{len(self.done)} done, {len(self.skipped)} skipped, {len(self.failed)} failed"
            + (f", {not_started} not started" if not_started else "")
        ]
        for r in self.failed:
            out.append(f"  failed: {r.input}: {r.reason}")
        if self.stopped:
            out.append(f"  stopped: {self.stopped}")
        return out


# -- inputs and outputs ------------------------------------------------------------------------------
def _is_input(p: Path) -> bool:
    from .zarr_io import is_zarr_path

    if p.name.startswith(".") or p.name == MANIFEST_NAME:
        return False
    if p.is_dir():
        return is_zarr_path(p)
    return stack_suffix(p) in STACK_READ_SUFFIXES and stack_suffix(p) != ".zarr"


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files named, the image files of folders named (not recursive), and the matches of glob patterns.

    An OME-Zarr folder counts as one file. Hidden files and siamdecon's manifest are left out;
    the order is that of the arguments, then sorted by name.
    """
    from .zarr_io import is_zarr_path

    found: list[Path] = []
    for item in inputs:
        text = str(item)
        p = Path(text)
        if any(ch in text for ch in "*?[") and not p.exists():
            matches = sorted(Path(m) for m in glob.glob(text))
            if not matches:
                raise InputError(f"no file matches '{text}'")
            found += [m for m in matches if _is_input(m)]
        elif p.is_dir() and not is_zarr_path(p):
            found += sorted(q for q in p.iterdir() if _is_input(q))
        elif not p.exists():
            raise InputError(f"input '{p}' does not exist")
        else:
            found.append(p)
    unique = list(dict.fromkeys(found))
    if not unique:
        raise InputError(
            f"no image files in {', '.join(map(str, inputs))} (looked for {', '.join(STACK_READ_SUFFIXES)})"
        )
    return unique


def _many(inputs: Sequence[str | os.PathLike[str]], files: list[Path]) -> bool:
    if len(files) > 1:
        return True
    text = str(inputs[0]) if len(inputs) == 1 else ""
    from .zarr_io import is_zarr_path

    return len(inputs) != 1 or any(ch in text for ch in "*?[") or (Path(text).is_dir() and not is_zarr_path(text))


def _output_name(p: Path) -> str:
    return p.stem + ".tif" if stack_suffix(p) in (".png", *(".czi", ".nd2", ".lif")) else p.name


def plan_outputs(
    inputs: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str]
) -> tuple[list[tuple[Path, Path]], bool]:
    """Pair every input with its output; ``True`` as second value when the output is a folder."""
    files = expand_inputs(inputs)
    out = Path(output)
    folder = _many(inputs, files)
    if not folder:
        if out.is_dir() and stack_suffix(out) != ".zarr":
            raise InputError(f"output '{out}' is a folder; give a file name for one input (a folder is for several)")
        return [(files[0], out)], False
    if out.exists() and not out.is_dir():
        raise InputError(f"output '{out}' is a file, but several inputs need an output folder")
    pairs = [(f, out / _output_name(f)) for f in files]
    names: dict[Path, Path] = {}
    for f, o in pairs:
        if o in names:
            raise InputError(f"inputs '{names[o]}' and '{f}' would both be written to '{o}'; give them different names")
        if o.resolve() == f.resolve():
            raise InputError(f"output folder '{out}' is the input's folder: '{f}' would be overwritten; choose another")
        names[o] = f
    return pairs, True


def _check_output_target(path: Path) -> None:
    from .io import check_writable

    suffix = stack_suffix(path)
    if suffix not in (".tif", ".tiff", ".npy", ".zarr"):
        raise InputError(f"output '{path}' has unsupported type '{path.suffix}'; use .tif, .tiff, .npy or .zarr")
    if suffix == ".zarr":
        if path.exists() and not path.is_dir():
            raise InputError(f"output '{path}' exists and is not a folder")
        check_writable(path.parent / ".siamdecon-zarr-check", "output")
        return
    check_writable(path, "output")


def _is_disk_full(exc: BaseException) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _clean_stale_parts(out: Path) -> None:
    """Remove temporary files a killed run left next to ``out`` (atomic writes that never finished)."""
    parent = out.parent
    if not parent.exists():
        return
    for q in parent.glob(f".{glob.escape(out.name)}.*.part*"):
        with contextlib.suppress(OSError):
            q.unlink()


def _differences(new: Any, old: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two settings trees differ, with the old and new values of leaves."""
    if isinstance(new, dict) and isinstance(old, dict):
        out: list[str] = []
        for k in sorted(set(new) | set(old)):
            out += _differences(new.get(k), old.get(k), f"{prefix}{k}.")
        return out
    if new == old:
        return []
    name = prefix.rstrip(".")
    if isinstance(new, dict | list) or isinstance(old, dict | list):
        return [name]
    return [f"{name} {old} -> {new}"]


# -- the manifest ------------------------------------------------------------------------------------
class Manifest:
    """The record of a folder run: its settings and every finished file (written atomically)."""

    def __init__(self, folder: Path, identity: dict[str, Any]) -> None:
        self.path = folder / MANIFEST_NAME
        self.identity = identity
        self.files: dict[str, dict[str, Any]] = {}
        self.runs: list[dict[str, Any]] = []

    @classmethod
    def open(cls, folder: Path, identity: dict[str, Any], overwrite: bool) -> Manifest:
        m = cls(folder, identity)
        if not m.path.exists():
            return m
        try:
            data = json.loads(m.path.read_text())
            assert data.get("format") == _MANIFEST_FORMAT
        except (OSError, ValueError, AssertionError):
            raise InputError(
                f"'{m.path}' is not a readable siamdecon manifest; remove it or choose another output folder"
            ) from None
        if data.get("settings") != identity:
            if not overwrite:
                changed = _differences(identity, data.get("settings", {}))
                raise ConfigError(
                    f"output folder '{folder}' was made with other settings (changed: {', '.join(changed)});"
                    " pass --overwrite to redo every file with the new ones, or choose another output folder"
                )
            m.runs = data.get("runs", [])
            return m
        m.files = data.get("files", {})
        m.runs = data.get("runs", [])
        return m

    def finished(self, out: Path) -> bool:
        entry = self.files.get(out.name)
        if not entry or entry.get("status") != "done" or not out.exists():
            return False
        return out.is_dir() or out.stat().st_size == entry.get("output_bytes")

    def record(self, result: FileResult, run: int) -> None:
        entry = asdict(result)
        entry["run"] = run
        entry["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.files[Path(result.output).name] = entry

    def save(self) -> None:
        from ._version import __version__
        from .io import atomic_path

        data = {
            "format": _MANIFEST_FORMAT,
            "version": 1,
            "siamdecon_version": __version__,
            "settings": self.identity,
            "files": self.files,
            "runs": self.runs,
        }
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(data, indent=1))


# -- PSFs --------------------------------------------------------------------------------------------
@dataclass
class Kernel:
    """One channel's PSF on the image's grid, and where it came from."""

    data: np.ndarray
    info: dict[str, Any]


def _odd_at_most(n: int) -> int:
    return n if n % 2 else n - 1


def _one_per_channel(
    items: list[Any],
    stack: Stack,
    log: Callable[[str], None],
    error: type[Exception],
    message: str,
    single: str,
) -> list[Any]:
    """``items`` given once per channel, or once for all (expanded, with a warning); else ``error(message)``."""
    n = stack.n_channels
    if len(items) not in (1, n):
        raise error(message)
    if len(items) == 1 and n > 1:
        log(f"warning: {single} for all {n} channels of {stack.describe()}")
        return items * n
    return items


def _auto_psfs(stack: Stack, opts: PSFOptions, log: Callable[[str], None]) -> list[Kernel]:
    from .psf import auto_psf_shape, widefield_psf

    spacing = stack.spacing
    if spacing is None:
        raise InputError(
            f"--psf auto needs the voxel size of {stack.describe()}, which its metadata do not give"
            f" ({stack.ndim}D, axes {stack.axes}); pass --voxel-size {'Z,Y,X' if stack.ndim == 3 else 'Y,X'}"
            " in micrometres"
        )
    if opts.na is None or not opts.wavelengths:
        raise ConfigError("--psf auto needs --na and --wavelength (emission, micrometres)")
    n = stack.n_channels
    waves = _one_per_channel(
        list(opts.wavelengths),
        stack,
        log,
        ConfigError,
        f"{len(opts.wavelengths)} wavelengths for the {n} channels of {stack.describe()}; give one per channel"
        " (comma-separated, in channel order) or one for all",
        f"one wavelength ({opts.wavelengths[0]} um)",
    )
    if opts.immersion not in IMMERSION_INDEX:
        raise ConfigError(f"--immersion must be one of {', '.join(IMMERSION_INDEX)}, got {opts.immersion!r}")
    index = IMMERSION_INDEX[opts.immersion]
    kernels: list[Kernel] = []
    cache: dict[float, Kernel] = {}
    for c, wave in enumerate(waves):
        if wave in cache:
            kernels.append(cache[wave])
            continue
        common = {
            "na": opts.na,
            "wavelength": wave,
            "pixel_size": spacing[-1],
            "z_step": spacing[0] if stack.ndim == 3 else None,
            "immersion_index": index,
        }
        try:
            if abs(spacing[-1] - spacing[-2]) > 1e-6 * spacing[-1]:
                raise ConfigError(
                    f"--psf auto needs square pixels; {stack.describe()} has Y {spacing[-2]} and X {spacing[-1]} um"
                )
            shape = list(auto_psf_shape(stack.ndim, **common))
            limits = [_odd_at_most(n_) for n_ in stack.spatial_shape]
            # Laterally the kernel must stay square: both sides get the smaller limit.
            lateral = min(limits[-1], limits[-2])
            limits[-1] = limits[-2] = lateral
            fitted = [min(s, lim) for s, lim in zip(shape, limits, strict=True)]
            kernel = widefield_psf(stack.ndim, shape=tuple(fitted), **common)
        except ValueError as exc:
            if isinstance(exc, SiamdeconError):
                raise
            raise ConfigError(f"--psf auto for {stack.describe()}: {exc}") from exc
        what = (
            f"generated PSF for channel {c} of {stack.describe()}: widefield vectorial Gibson-Lanni, NA {opts.na},"
            f" {wave} um, {opts.immersion} immersion (n={index}), voxel {' x '.join(f'{v:g}' for v in spacing)} um,"
            f" shape {' x '.join(map(str, fitted))}"
        )
        if fitted != shape:
            what += f" (the untruncated size {' x '.join(map(str, shape))} is cut to fit the image)"
        log(what)
        k = Kernel(
            kernel,
            {
                "source": "auto",
                "na": opts.na,
                "wavelength": wave,
                "immersion": opts.immersion,
                "shape": list(fitted),
                "truncated": fitted != shape,
                "sha256": hashlib.sha256(kernel.tobytes()).hexdigest(),
            },
        )
        cache[wave] = k
        kernels.append(k)
    return kernels


def _recentre(kernel: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    from scipy import ndimage

    peak = np.unravel_index(int(np.argmax(kernel)), kernel.shape)
    shift = tuple(int((n - 1) // 2 - p) for n, p in zip(kernel.shape, peak, strict=True))
    if not any(shift):
        return kernel, shift
    moved = ndimage.shift(kernel, shift, order=0, mode="constant", cval=0.0)
    return moved / moved.sum(), shift


def _file_psfs(stack: Stack, opts: PSFOptions, log: Callable[[str], None]) -> list[Kernel]:
    from .beads import resample_psf
    from .io import read_image
    from .psf import check_psf_fits, normalize_psf, validate_psf

    n = stack.n_channels
    files = _one_per_channel(
        list(opts.files),
        stack,
        log,
        InputError,
        f"{len(opts.files)} PSF files for the {n} channels of {stack.describe()} (axes {stack.axes}); give one"
        " --psf per channel, in channel order, or one for all channels",
        f"one PSF ({opts.files[0]})" if opts.files else "",
    )
    kernels: list[Kernel] = []
    cache: dict[Path, Kernel] = {}
    for c in range(n):
        path = Path(files[c])
        if path in cache:
            kernels.append(cache[path])
            continue
        if stack_suffix(path) not in (".tif", ".tiff", ".npy"):
            raise InputError(f"PSF '{path}' has unsupported type '{path.suffix}'; use .tif, .tiff or .npy.")
        img = read_image(path, "PSF")
        raw = img.data
        if raw.ndim != stack.ndim:
            raise InputError(
                f"PSF '{path}' is {raw.ndim}D (shape {raw.shape}) but the image is {stack.ndim}D ({stack.describe()},"
                f" spatial axes {stack.spatial}); give a {stack.ndim}D PSF"
                + (" (its in-focus plane, for 2D images)" if raw.ndim > stack.ndim else "")
            )
        kernel = normalize_psf(validate_psf(raw, source=f"PSF '{path}'", ndim=stack.ndim))
        psf_voxel = opts.voxel_size if opts.voxel_size is not None else img.spacing
        if psf_voxel is not None and len(psf_voxel) != stack.ndim:
            raise InputError(
                f"--psf-voxel-size has {len(psf_voxel)} values but PSF '{path}' is {stack.ndim}D"
                f" ({'Z,Y,X' if stack.ndim == 3 else 'Y,X'})"
            )
        image_voxel = stack.spacing
        info: dict[str, Any] = {"source": "file", "file": str(path), "sha256": file_checksum(path)}
        if psf_voxel is not None and image_voxel is not None:
            info["voxel_size"] = list(psf_voxel)
            if any(abs(a - b) > 1e-3 * b for a, b in zip(psf_voxel, image_voxel, strict=True)):
                before = kernel.shape
                kernel = resample_psf(kernel, psf_voxel, image_voxel)
                kernel, shift = _recentre(kernel)
                info.update(resampled_from=list(psf_voxel), resampled_to=list(image_voxel))
                log(
                    f"PSF '{path}' has voxel size {' x '.join(f'{v:g}' for v in psf_voxel)} um and {stack.describe()}"
                    f" {' x '.join(f'{v:g}' for v in image_voxel)} um: resampled it to the image's grid"
                    f" (shape {' x '.join(map(str, before))} -> {' x '.join(map(str, kernel.shape))})"
                    + (f", recentred by {shift} voxels" if any(shift) else ", centred")
                )
        elif psf_voxel is None and image_voxel is None:
            log(f"neither PSF '{path}' nor {stack.describe()} records a voxel size: assuming they share one grid")
        elif psf_voxel is None:
            log(
                f"PSF '{path}' records no voxel size (give --psf-voxel-size to resample it): assuming it is sampled"
                f" like {stack.describe()}"
            )
        else:
            log(
                f"{stack.describe()} records no voxel size (give --voxel-size): assuming it is sampled like"
                f" PSF '{path}'"
            )
        check_psf_fits(kernel.shape, stack.spatial_shape, f"PSF '{path}'")
        k = Kernel(np.asarray(kernel, dtype=np.float32), info)
        cache[path] = k
        kernels.append(k)
    return kernels


def channel_psfs(stack: Stack, opts: PSFOptions, log: Callable[[str], None] | None = None) -> list[Kernel]:
    """One PSF per channel of ``stack``, on its voxel grid (read, resampled or generated)."""
    log = log or _LOG.info
    if opts.auto:
        return _auto_psfs(stack, opts, log)
    if not opts.files:
        raise ConfigError("give a PSF: --psf FILE (one per channel) or --psf auto with --na and --wavelength")
    return _file_psfs(stack, opts, log)


# -- executors ---------------------------------------------------------------------------------------
class _Done:
    """A finished call, with the interface of a future."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        try:
            self._value = fn(*[a.result() if isinstance(a, _Done) else a for a in args])
        except Exception as exc:  # kept like a future's exception; interrupts propagate
            self._error = exc

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._value


class Serial:
    """Runs every job at once in this process (the default, without a cluster)."""

    threads: int | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> _Done:
        return _Done(fn, *args)

    def put(self, value: Any) -> Any:
        return value

    def as_completed(self, futures: Sequence[Any]) -> Iterator[Any]:
        yield from futures


# -- jobs (top-level functions, so that cluster workers can run them) --------------------------------
@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class StackRef:
    """How a worker reopens a stack (OME-Zarr inputs are not sent, only their path)."""

    path: Path
    axes: str | None
    voxel_size: tuple[float, ...] | None
    allow_missing_chunks: bool

    def open(self) -> Stack:
        from .zarr_io import read_ome_zarr

        # Jobs of one file run one after another in a worker: the store is opened (and its chunks
        # listed) once per process, not once per block.
        key = (str(self.path), self.axes, self.voxel_size, self.allow_missing_chunks)
        if _OPENED.get("key") != key:
            stack = read_ome_zarr(self.path, axes=self.axes, allow_missing_chunks=self.allow_missing_chunks)
            _OPENED.update(key=key, stack=stack.with_voxel_size(self.voxel_size))
        return _OPENED["stack"]


_OPENED: dict[str, Any] = {}


def _job_train(
    source: Any,
    times: list[int],
    channel: int,
    kernel: np.ndarray,
    config: Config,
    where: str,
    threads: int | None,
    pool_bytes: int,
    progress: bool = False,
    allow_interrupt: bool = False,
):
    """Train channel ``channel``'s model on time points ``times`` (arrays, or a StackRef to open)."""
    from .model import Deconvolver

    with _torch_threads(threads):
        if isinstance(source, StackRef):
            stack = source.open()
            arrays: list[Any] = [stack.volume(t, channel) for t in times]
        else:
            arrays = list(source)
        if len(arrays) == 1 and isinstance(arrays[0], np.ndarray):
            return Deconvolver.fit(arrays[0], kernel, config, progress=progress, allow_interrupt=allow_interrupt)
        return Deconvolver.fit(
            arrays,
            kernel,
            config,
            progress=progress,
            allow_interrupt=allow_interrupt,
            where=where,
            max_pool_bytes=pool_bytes,
        )


def _job_predict(
    model: Any, volume: np.ndarray, settings: RunSettings, threads: int | None, report: Any = None
) -> np.ndarray:
    """Predict one in-memory (t, c) volume (then the Lucy-Richardson steps, if the check chose them)."""
    with _torch_threads(threads):
        net = model.predict(
            np.asarray(volume),
            tile_size=settings.tile_size,
            tile_overlap=settings.tile_overlap,
            device=settings.device,
            normalization=settings.normalization,
        )
        if report is not None and report.lr_steps:
            from .device import resolve_device

            return report.output(np.asarray(volume), model.psf, net, device=resolve_device(settings.device or "auto"))
        return net


def _job_check(
    model: Any,
    volume: np.ndarray,
    device: str | None,
    threads: int | None,
    part_of: tuple[tuple[int, ...], tuple[slice, ...]] | None = None,
) -> Any:
    """Run the held-out check of one model on one of its volumes (or on the part of it the check
    computes on, ``part_of``: see :func:`siamdecon.holdout.check`)."""
    with _torch_threads(threads):
        return model.check(np.asarray(volume), device=device, part_of=part_of)


def _job_classical(report: Any, volume: np.ndarray, kernel: np.ndarray, device: str | None, threads: int | None):
    """The classical estimate the check chose, on one in-memory volume."""
    from .device import resolve_device

    with _torch_threads(threads):
        return report.estimate(np.asarray(volume), kernel, device=resolve_device(device or "auto"))


#: Margin, in PSF sizes per axis, around each block of a lazily read volume on which the classical
#: estimate of a check's fallback is computed: the block's values then follow the whole volume's
#: (Lucy-Richardson and Spitfire couple voxels further than one PSF, but weakly beyond two).
FALLBACK_MARGIN = 2
#: A fallback's blocks span at least this many margins per axis (the margins then cost at most
#: (1 + 2 / FALLBACK_BLOCK) ** ndim times the block's own work).
FALLBACK_BLOCK = 4


def _job_block(
    model: Any,
    ref: StackRef,
    t: int,
    c: int,
    region: tuple[slice, ...],
    settings: RunSettings,
    norm: Any,
    writer: Any,
    index: tuple[Any, ...] | None,
    scaling: tuple[float, float] | None,
    block: str,
    threads: int | None,
    refine: tuple[int, float] | None = None,
    fallback: tuple[Any, tuple[tuple[int, ...], tuple[float, float]]] | None = None,
) -> np.ndarray | None:
    """Predict one block of a lazily read volume; write it into the partial store (or return it).

    ``refine = (steps, offset)``: then run that many Lucy-Richardson steps from the network's
    estimate, computed on the block and a margin of the PSF's size per step, at most
    :data:`FALLBACK_MARGIN` of them: one or two steps then give the block the values of the steps on
    the whole volume, more of them values close to those (as for a classical fallback).
    ``fallback = (report, (shape, value_range))``: a check report that chose a classical method,
    and the whole volume's shape and range; the block gets that method's estimate instead, computed
    on the block and a margin of :data:`FALLBACK_MARGIN` PSF sizes as its part of the whole
    volume's problem.
    """
    from .stack import to_output_dtype

    with _torch_threads(threads):
        view = ref.open().volume(t, c)
        result = _block_estimate(model, view, region, settings, norm, refine, fallback)
    if writer is None:
        return result
    values, _ = to_output_dtype(result, settings.dtype, scaling)
    writer.array()[index] = values
    writer.mark_done(block)
    return None


def _fallback_block_shape(block: Sequence[int], psf_shape: Sequence[int], shape: Sequence[int]) -> tuple[int, ...]:
    """Blocks for a classical fallback: whole prediction blocks (so whole output chunks), at least
    :data:`FALLBACK_BLOCK` margins per axis, so that the margins add at most half a block per axis."""
    out = []
    for b, k, n in zip(block, psf_shape, shape, strict=True):
        want = FALLBACK_BLOCK * FALLBACK_MARGIN * (int(k) - 1)
        out.append(min(int(n), int(b) * max(1, -(-want // int(b)))))
    return tuple(out)


def _with_margin(region: tuple[slice, ...], margin: Sequence[int], shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(
        slice(max(0, r.start - m), min(int(n), r.stop + m)) for r, m, n in zip(region, margin, shape, strict=True)
    )


def _block_estimate(
    model: Any,
    view: Any,
    region: tuple[slice, ...],
    settings: RunSettings,
    norm: Any,
    refine: tuple[int, float] | None,
    fallback: tuple[Any, tuple[tuple[int, ...], tuple[float, float]]] | None,
) -> np.ndarray:
    """What :func:`_job_block` writes for ``region`` of ``view``."""
    from .device import resolve_device

    dev = resolve_device(settings.device or "auto")
    kernel = model.psf
    if fallback is not None:
        where = _with_margin(region, [FALLBACK_MARGIN * (k - 1) for k in kernel.shape], view.shape)
        report, part_of = fallback
        result = report.estimate(np.asarray(view[where], dtype=np.float32), kernel, device=dev, part_of=part_of)
    else:
        # A step at a voxel needs the reblurred estimate half a PSF around it, and that needs
        # the estimate another half PSF further out.
        reach = min(refine[0], FALLBACK_MARGIN) if refine is not None else 0
        where = _with_margin(region, [reach * (k - 1) for k in kernel.shape], view.shape) if reach else region
        result = model.predict_region(
            view,
            where,
            normalization=norm,
            tile_size=settings.tile_size,
            tile_overlap=settings.tile_overlap,
            device=settings.device,
        )
        if refine is None:
            return result
        from .classical import richardson_lucy_refine

        steps, offset = refine
        data = np.asarray(view[where], dtype=np.float32)
        result = richardson_lucy_refine(result, data, kernel, offset=offset, iterations=steps, device=dev)
    return result[tuple(slice(r.start - w.start, r.stop - w.start) for r, w in zip(region, where, strict=True))]


# -- one file ----------------------------------------------------------------------------------------
def _scaling(models: Sequence[Any]) -> tuple[float, float]:
    """uint16 mapping of one channel: its models' boundary range [low, high] onto 0-65535."""
    from .stack import UINT16_MAX

    low = min(float(m.normalization.low) for m in models)
    high = max(float(m.normalization.high) for m in models)
    return low, (high - low) / UINT16_MAX


def _open_stack(path: Path, settings: RunSettings) -> Stack:
    from .zarr_io import is_zarr_path, read_ome_zarr

    if is_zarr_path(path):
        stack = read_ome_zarr(path, axes=settings.axes, allow_missing_chunks=settings.allow_missing_chunks)
        return stack.with_voxel_size(settings.voxel_size)
    return read_stack(path, settings.axes, voxel_size=settings.voxel_size)


def _block_shape(stack: Stack, tile: int) -> tuple[int, ...]:
    """Blocks of whole chunks, at least a tile per axis, at most the volume."""
    chunks = dict(zip(stack.axes, stack.chunks or stack.shape, strict=True))
    out = []
    for a in stack.spatial:
        n = stack.sizes[a]
        c = max(1, min(int(chunks[a]), n))
        want = tile
        out.append(min(n, c * -(-want // c)))
    return tuple(out)


def _provenance(
    settings: RunSettings,
    stack: Stack,
    kernels: Sequence[Kernel] | None,
    models: dict[tuple[int, int | None], Any],
    scaling: list[tuple[float, float]] | None,
    trained_on: dict[int, list[int]],
) -> dict[str, Any]:
    from ._version import __version__

    prov: dict[str, Any] = {
        "siamdecon_version": __version__,
        "command": settings.command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "input": str(stack.path.name if stack.path else ""),
        "input_axes": stack.axes,
        "dtype": settings.dtype,
        "per_timepoint": settings.per_timepoint,
    }
    any_model = next(iter(models.values()))
    cfg = any_model.config
    prov.update(
        preset=cfg.preset,
        loss=cfg.loss.label,
        steps=cfg.training.steps,
        seed=cfg.training.seed,
    )
    for (c, t), m in sorted(models.items(), key=lambda kv: (kv[0][0], -1 if kv[0][1] is None else kv[0][1])):
        key = f"model.c{c}" + ("" if t is None else f".t{t}")
        prov[f"{key}.prior"] = m.prior or "none"
        prov[f"{key}.steps_run"] = len(m.history) if m.history else m.provenance.get("steps_run", 0)
        prov[f"{key}.fine_tune_steps"] = m.config.prior.fine_tune_steps if m.prior else 0
        if m.provenance.get("file"):
            prov[f"{key}.file"] = m.provenance["file"]
            prov[f"{key}.sha256"] = m.provenance.get("sha256", "")
    if kernels is not None:
        for c, k in enumerate(kernels):
            for name, value in k.info.items():
                prov[f"psf.c{c}.{name}"] = value
    for c, ts in trained_on.items():
        prov[f"trained_on.c{c}.timepoints"] = ts
    if scaling is not None:
        for c, (offset, scale) in enumerate(scaling):
            prov[f"uint16.c{c}.offset"] = offset
            prov[f"uint16.c{c}.scale"] = scale
        prov["uint16"] = "raw = stored * scale + offset (per channel)"
    return prov


def _save_models(base: Path, models: dict[tuple[int, int | None], Any], log: Callable[[str], None]) -> None:
    if len(models) == 1:
        next(iter(models.values())).save(base)
        log(f"wrote model {base}")
        return
    for (c, t), m in sorted(models.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        p = base.with_name(f"{base.stem}_c{c}" + ("" if t is None else f"_t{t}") + base.suffix)
        m.save(p)
        log(f"wrote model {p} (channel {c}{'' if t is None else f', time point {t}'})")


def _load_models(stack: Stack, settings: RunSettings, log: Callable[[str], None]) -> dict[tuple[int, int | None], Any]:
    from .model import Deconvolver

    files = settings.models
    n = stack.n_channels
    if len(files) not in (1, n):
        raise InputError(
            f"{len(files)} models for the {n} channels of {stack.describe()} (axes {stack.axes}); give one --model"
            " per channel, in channel order, or one for all channels"
        )
    if len(files) == 1 and n > 1:
        log(f"warning: one model ({files[0]}) for all {n} channels of {stack.describe()}")
    out: dict[tuple[int, int | None], Any] = {}
    cache: dict[Path, Any] = {}
    for c in range(n):
        p = Path(files[c if len(files) > 1 else 0])
        if p not in cache:
            m = Deconvolver.load(p)
            if m.config.ndim != stack.ndim:
                raise InputError(
                    f"model '{p}' was trained on {m.config.ndim}D data but the spatial axes of {stack.describe()} are"
                    f" {stack.spatial} ({stack.ndim}D)"
                )
            if m.axes and "".join(a for a in m.axes if a in "ZYX") != stack.spatial:
                raise InputError(
                    f"model '{p}' was trained for axes {m.axes} but {stack.describe()} has spatial axes {stack.spatial}"
                )
            m.provenance.setdefault("file", str(p))
            m.provenance["sha256"] = file_checksum(p)
            cache[p] = m
        out[(c, None)] = cache[p]
    return out


def describe_start(kernel: np.ndarray, config: Config) -> str:
    """How training will start for this PSF and config (a shipped prior, another PSF's, or from scratch).

    Resolving the prior here also makes a bad prior file fail before any training.
    """
    from .prior_choice import config_for_psf, resolve_prior
    from .psf import psf_widths

    config = config_for_psf(config, kernel)

    def widths(k: np.ndarray) -> str:
        return " x ".join(f"{w:.2f}" for w in psf_widths(k))

    start = config.training.start
    if start.kind == "generic":
        its = ", ".join(str(n) for n in start.iterations_run())
        begin = f"network on Lucy-Richardson estimates ({its} iterations, object extended) and the estimated noise; "
    elif start.kind == "lucy-richardson":
        begin = f"network correcting {start.iterations} Lucy-Richardson iteration(s); "
    else:
        begin = f"network start '{start.kind}'; "
    prior = resolve_prior(config.prior.source, kernel, config)
    if prior is None:
        what = begin + f"trained from scratch on the image: {config.loss.label} loss, {config.training.steps} steps"
        if config.prior.source == "auto":
            what += "; no shipped prior for this PSF or one of similar width ('siamdecon pretrain' makes one)"
        return what
    if prior.matches_psf(kernel):
        made_for = "pretrained for this PSF"
    elif prior.generic:
        made_for = "pretrained for any PSF and camera, given this PSF"
    else:
        made_for = (
            f"pretrained for another PSF, RMS widths {widths(prior.psf)} px against {widths(kernel)} px for this one"
        )
    steps = config.prior.fine_tune_steps
    how = f"fine-tuning {steps} steps with the {config.prior.fine_tune_loss} loss" if steps else "used as it is"
    grid = config.prior.hessian_grid
    if steps and len(grid) > 1:
        weights = ", ".join(f"{w:g}" for w in grid)
        how += f", once per Hessian weight ({weights}), keeping the one that predicts held-out pixels best"
    elif steps and grid[0]:
        how += f" and a Hessian term of weight {grid[0]:g}"
    return begin + f"starting from prior '{prior.name}' ({made_for}), {how}"


def process_file(
    inp: Path,
    out: Path,
    settings: RunSettings,
    executor: Any = None,
    *,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
    allow_interrupt: bool = False,
) -> FileResult:
    """Deconvolve (or predict) one file into ``out``: every channel and time point, written atomically.

    Raises the error of a bad file (the caller records it); with ``executor`` (a Dask client
    wrapper) the channel/time-point models and the blocks of an OME-Zarr run as cluster jobs.
    """
    from .stack import write_stack

    log = log or _LOG.info
    ex = executor or Serial()
    start = time.perf_counter()
    stack = _open_stack(inp, settings)
    where = stack.describe()
    kernels: list[Kernel] | None = None
    trained_on: dict[int, list[int]] = {}
    if settings.command == "deconvolve":
        config = settings.configs.get(stack.ndim)
        if config is None:
            raise ConfigError(f"no configuration for {stack.ndim}D data ({where})")
        kernels = channel_psfs(stack, settings.psf, log)
        if settings.per_timepoint:
            units = [(c, [t]) for c in range(stack.n_channels) for t in range(stack.n_times)]
        elif stack.is_lazy and stack.n_times > settings.max_timepoints:
            picks = sorted({int(round(v)) for v in np.linspace(0, stack.n_times - 1, settings.max_timepoints)})
            units = [(c, picks) for c in range(stack.n_channels)]
        else:
            units = [(c, list(range(stack.n_times))) for c in range(stack.n_channels)]
        ref = (
            StackRef(inp, settings.axes, settings.voxel_size, settings.allow_missing_chunks) if stack.is_lazy else None
        )
        serial = isinstance(ex, Serial)
        # Ctrl-C keeps the model trained so far only when there is one model to train.
        interruptible = allow_interrupt and serial and len(units) == 1
        futures = {}
        for c, ts in units:
            trained_on[c] = sorted(set(trained_on.get(c, [])) | set(ts))
            source: Any = ref if ref is not None else [ex.put(np.asarray(stack.volume(t, c))) for t in ts]
            label = f"{where}, channel {c}" + (f", time point {ts[0]}" if settings.per_timepoint else "")
            start_text = describe_start(kernels[c].data, config)
            if progress:
                log(
                    f"training on {label}: {len(ts)} time point(s) of {stack.spatial_shape} ({config.preset} preset,"
                    f" {start_text})"
                    + ("; Ctrl-C stops training early and keeps the current model" if interruptible else "")
                )
            futures[(c, ts[0] if settings.per_timepoint else None)] = ex.submit(
                _job_train,
                source,
                ts,
                c,
                kernels[c].data,
                config,
                label,
                ex.threads,
                settings.pool_bytes,
                progress and serial,
                interruptible,
            )
        models = {key: f.result() for key, f in futures.items()}
        for (c, t), m in models.items():
            m.axes = stack.axes
            m.provenance.update(
                {
                    "trained_on": where,
                    "channel": c,
                    "timepoints": [t] if t is not None else trained_on[c],
                    "psf": kernels[c].info,
                }
            )
            if m.interrupted:
                log(f"training of {where}, channel {c} stopped early after {len(m.history)} steps")
        if settings.save_model is not None:
            _save_models(settings.save_model, models, log)
    else:
        models = _load_models(stack, settings, log)

    def model_for(t: int, c: int) -> Any:
        return models.get((c, t)) or models[(c, None)]

    checks: dict[tuple[int, int | None], Any] = {}
    if settings.command == "deconvolve" and settings.check:
        checks = _run_checks(stack, models, trained_on, settings, ex, log, progress)

    scaling = None
    if settings.dtype == "uint16":
        scaling = [_scaling([m for (cc, _), m in models.items() if cc == c]) for c in range(stack.n_channels)]
    prov = _provenance(settings, stack, kernels, models, scaling, trained_on)
    for (c, t), report in checks.items():
        prov[f"check.c{c}" + ("" if t is None else f".t{t}")] = json.dumps(report.to_dict())
    if stack.is_lazy:
        _predict_lazy(stack, inp, out, settings, models, model_for, scaling, prov, ex, progress, checks)
    else:
        result = np.zeros(stack.shape, dtype=np.float32)
        vols = {}
        for t, c in stack.units():
            vol = ex.put(np.asarray(stack.volume(t, c)))
            report = _report_for(checks, t, c)
            if report is not None and report.fell_back:
                kernel = model_for(t, c).psf
                vols[(t, c)] = ex.submit(_job_classical, report, vol, kernel, settings.device, ex.threads)
            else:
                vols[(t, c)] = ex.submit(_job_predict, model_for(t, c), vol, settings, ex.threads, report)
        for (t, c), f in vols.items():
            result[stack.stored_index(t, c)] = stack.to_stored(f.result())
        write_stack(out, result, stack, provenance=prov, dtype=settings.dtype, scaling=scaling)
    size = _size(out)
    return FileResult(str(inp), str(out), "done", seconds=time.perf_counter() - start, output_bytes=size)


def _report_for(checks: dict[tuple[int, int | None], Any], t: int, c: int) -> Any:
    """The check that decides for volume (t, c): its time point's own, or its channel's."""
    return checks.get((c, t)) or checks.get((c, None))


def _run_checks(
    stack: Stack,
    models: dict[tuple[int, int | None], Any],
    trained_on: dict[int, list[int]],
    settings: RunSettings,
    ex: Any,
    log: Callable[[str], None],
    progress: bool,
) -> dict[tuple[int, int | None], Any]:
    """The held-out check of every model, on the first volume it was trained on (only the part the
    check computes on is read from a lazily read one); the verdict applies to all of that model's volumes."""
    from .holdout import check_regions

    where = stack.describe()
    futures = {}
    for (c, t), m in models.items():
        view = stack.volume(t if t is not None else trained_on[c][0], c)
        part_of = None
        if stack.is_lazy:
            shape = tuple(int(n) for n in view.shape)
            context, _ = check_regions(shape, m.psf.shape)
            volume = np.asarray(view[context])
            part_of = (shape, context)
        else:
            volume = np.asarray(view)
        futures[(c, t)] = ex.submit(_job_check, m, ex.put(volume), settings.device, ex.threads, part_of)
    reports = {key: f.result() for key, f in futures.items()}
    for (c, t), report in reports.items():
        label = f"{where}, channel {c}" + ("" if t is None else f", time point {t}")
        if report.fell_back and stack.is_lazy:
            log(
                f"{label}: {report.summary()}, block by block (each block's estimate computed with a margin of"
                f" {FALLBACK_MARGIN} PSF sizes)"
            )
        elif report.fell_back or progress:
            log(f"{label}: {report.summary()}")
    return reports


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(q.stat().st_size for q in path.rglob("*") if q.is_file())
    return path.stat().st_size


def _predict_lazy(
    stack: Stack,
    inp: Path,
    out: Path,
    settings: RunSettings,
    models: dict[tuple[int, int | None], Any],
    model_for: Callable[[int, int], Any],
    scaling: list[tuple[float, float]] | None,
    prov: dict[str, Any],
    ex: Any,
    progress: bool,
    checks: dict[tuple[int, int | None], Any] | None = None,
) -> None:
    """Predict an OME-Zarr input block by block: into a partial OME-Zarr, or into memory for TIFF/NPY
    (with the Lucy-Richardson steps, or the classical estimate, where the check chose them)."""
    from tqdm.auto import tqdm

    from .data import iter_blocks
    from .stack import canonical_order, output_axes, write_stack
    from .zarr_io import ZarrWriter

    ref = StackRef(inp, settings.axes, settings.voxel_size, settings.allow_missing_chunks)
    any_model = next(iter(models.values()))
    tile = settings.tile_size or any_model.config.inference.tile_size
    block = _block_shape(stack, tile)
    norms: dict[tuple[int, int], Any] = {}
    for t, c in stack.units():
        if settings.normalization == "image":
            from .data import array_statistics, normalization_from_statistics

            norms[(t, c)] = normalization_from_statistics(array_statistics([stack.volume(t, c)]))
        else:
            norms[(t, c)] = model_for(t, c).normalization
    to_zarr = stack_suffix(out) == ".zarr"
    writer = None
    out_axes = canonical_order(stack.axes)
    if to_zarr:
        out_axes = output_axes(stack, out)
        shape = tuple(stack.sizes[a] for a in out_axes)
        chunks = tuple(1 if a in "TC" else block[stack.spatial.index(a)] for a in out_axes)
        in_chunks = dict(zip(stack.axes, stack.chunks or stack.shape, strict=True))
        chunks = tuple(1 if a in "TC" else min(int(in_chunks[a]), b) for a, b in zip(out_axes, chunks, strict=True))
        key = hashlib.sha256(
            json.dumps(
                {
                    "settings": settings.identity(),
                    "input": str(inp.resolve()),
                    "shape": stack.shape,
                    "mtime": _mtime(inp),
                },
                sort_keys=True,
            ).encode()
        ).hexdigest()
        writer = ZarrWriter(out, shape, out_axes, settings.dtype, chunks, key, stack.ngff_version or "0.4")
        writer.open(resume=True)
        done = writer.done()
    else:
        done = set()
        result = np.zeros(stack.shape, dtype=np.float32)
    jobs = []
    for t, c in stack.units():
        model = ex.put(model_for(t, c))
        report = _report_for(checks or {}, t, c)
        refine = (report.lr_steps, float(report.noise.offset)) if report is not None and report.lr_steps else None
        fallback = None
        blocks, prefix = block, "b"
        if report is not None and report.fell_back:
            from .data import array_statistics

            stats = array_statistics([stack.volume(t, c)])
            fallback = (report, (tuple(stack.spatial_shape), (stats.minimum, stats.maximum)))
            blocks, prefix = _fallback_block_shape(block, model_for(t, c).psf.shape, stack.spatial_shape), "f"
        elif refine is not None and refine[0] > 1:
            # Several steps couple voxels further than one PSF: blocks large enough for their margin.
            blocks, prefix = _fallback_block_shape(block, model_for(t, c).psf.shape, stack.spatial_shape), "r"
        for i, region in enumerate(iter_blocks(stack.spatial_shape, blocks)):
            name = f"t{t}-c{c}-{prefix}{i}"
            if name in done:
                continue
            index = None
            if writer is not None:
                by_axis = dict(zip(stack.spatial, region, strict=True))
                index = tuple(t if a == "T" else c if a == "C" else by_axis[a] for a in out_axes)
            sc = scaling[c] if scaling is not None else None
            jobs.append(
                (
                    (t, c, region),
                    ex.submit(
                        _job_block,
                        model,
                        ref,
                        t,
                        c,
                        region,
                        settings,
                        norms[(t, c)],
                        writer,
                        index,
                        sc,
                        name,
                        ex.threads,
                        refine,
                        fallback,
                    ),
                )
            )
    bar = tqdm(total=len(jobs), desc="blocks", disable=not progress or len(jobs) < 2, leave=False)
    try:
        for (t, c, region), f in jobs:
            value = f.result()
            if writer is None:
                stored = [a for a in stack.axes if a in "ZYX"]
                by_axis = dict(zip(stack.spatial, region, strict=True))
                index = tuple(t if a == "T" else c if a == "C" else by_axis[a] for a in stack.axes)
                perm = [stack.spatial.index(a) for a in stored]
                result[index] = np.transpose(value, perm)
            bar.update(1)
    finally:
        bar.close()
    if writer is not None:
        writer.finalize(stack, prov, stack.channel_names)
    else:
        write_stack(out, result, stack, provenance=prov, dtype=settings.dtype, scaling=scaling)


def _mtime(path: Path) -> float:
    for name in ("zarr.json", ".zattrs", ".zarray"):
        q = path / name
        if q.exists():
            return q.stat().st_mtime
    return path.stat().st_mtime


# -- runs --------------------------------------------------------------------------------------------
def _job_file(inp: Path, out: Path, settings: RunSettings, threads: int | None) -> FileResult:
    """A whole file as one cluster job."""
    _clean_stale_parts(out)
    ex = Serial()
    ex.threads = threads
    return process_file(inp, out, settings, ex)


def _run(
    inputs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    settings: RunSettings,
    *,
    workers: int | None,
    scheduler: str | None,
    progress: bool,
    log: Callable[[str], None] | None,
) -> RunSummary:
    from tqdm.auto import tqdm

    from .cluster import open_executor

    log = log or _LOG.info
    if workers is not None and scheduler is not None:
        raise ConfigError("give --workers N (a local cluster) or --scheduler ADDRESS (an existing one), not both")
    pairs, folder = plan_outputs(inputs, output)
    if settings.save_model is not None and len(pairs) > 1:
        raise ConfigError("--save-model keeps the model(s) of one input; run one file at a time to keep them")
    if not folder:
        inp, out = pairs[0]
        _check_output_target(out)
        with open_executor(workers, scheduler, log) as ex:
            # One file: its channel/time-point models and, for OME-Zarr, its blocks are the jobs.
            result = process_file(inp, out, settings, ex, log=log, progress=progress, allow_interrupt=True)
        return RunSummary([result])
    out_dir = Path(output)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        from .io import check_writable

        check_writable(out_dir / ".siamdecon-check", "output folder")
    except InputError as exc:
        raise InputError(f"cannot write into output folder '{out_dir}': {exc}") from None
    manifest = Manifest.open(out_dir, settings.identity(), settings.overwrite)
    run_number = len(manifest.runs) + 1
    manifest.runs.append({"run": run_number, "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
    summary = RunSummary()
    todo: list[tuple[Path, Path]] = []
    for inp, out in pairs:
        _clean_stale_parts(out)
        if not settings.overwrite and manifest.finished(out):
            summary.results.append(FileResult(str(inp), str(out), "skipped", "already done with these settings"))
        elif out.exists() and not settings.overwrite and out.name not in manifest.files:
            summary.results.append(
                FileResult(
                    str(inp),
                    str(out),
                    "failed",
                    f"'{out}' exists and was not made by this run's settings; --overwrite replaces it",
                )
            )
        else:
            todo.append((inp, out))
    manifest.save()

    def finish(result: FileResult) -> None:
        manifest.record(result, run_number)
        try:
            manifest.save()
        except OSError:
            if result.status == "done":
                # An output the manifest does not record would be refused next time: take it back.
                with contextlib.suppress(OSError):
                    import shutil

                    p = Path(result.output)
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
            raise
        summary.results.append(result)

    def stop(result: FileResult) -> None:
        # The disk is full: record the failure if the manifest can still be written, and stop.
        manifest.record(result, run_number)
        with contextlib.suppress(OSError):
            manifest.save()
        summary.results.append(result)

    bar = tqdm(total=len(todo), desc="files", disable=not progress or len(todo) < 2)
    try:
        with open_executor(workers, scheduler, log) as ex:
            if isinstance(ex, Serial):
                for i, (inp, out) in enumerate(todo):
                    try:
                        result = process_file(inp, out, settings, None, log=log, progress=False)
                    except Exception as exc:
                        if _is_disk_full(exc):
                            summary.stopped = f"disk full while writing '{out}': {exc}"
                            stop(FileResult(str(inp), str(out), "failed", f"disk full: {exc}"))
                            summary.results += [FileResult(str(a), str(b), "not started") for a, b in todo[i + 1 :]]
                            break
                        result = FileResult(str(inp), str(out), "failed", _reason(exc))
                    finish(result)
                    bar.update(1)
            else:
                futures = {ex.submit(_job_file, inp, out, settings, ex.threads): (inp, out) for inp, out in todo}
                pending = dict(futures)
                for f in ex.as_completed(list(futures)):
                    inp, out = futures[f]
                    pending.pop(f, None)
                    try:
                        result = f.result()
                    except Exception as exc:
                        if _is_disk_full(exc):
                            summary.stopped = f"disk full while writing '{out}': {exc}"
                            stop(FileResult(str(inp), str(out), "failed", f"disk full: {exc}"))
                            for g, (a, b) in pending.items():
                                g.cancel()
                                summary.results.append(FileResult(str(a), str(b), "not started"))
                            break
                        result = FileResult(str(inp), str(out), "failed", _reason(exc))
                    finish(result)
                    bar.update(1)
    finally:
        bar.close()
        for _, out in pairs:
            _clean_stale_parts(out)
    manifest.runs[-1].update(
        finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
        done=len(summary.done),
        skipped=len(summary.skipped),
        failed=len(summary.failed),
    )
    with contextlib.suppress(OSError):
        manifest.save()
    return summary


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SiamdeconError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def deconvolve_files(
    inputs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    output: str | os.PathLike[str],
    psf: PSFOptions | Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    config: Config | dict[int, Config] | Callable[[int], Config] | None = None,
    axes: str | None = None,
    dtype: str = "float32",
    per_timepoint: bool = False,
    voxel_size: Sequence[float] | None = None,
    psf_voxel_size: Sequence[float] | None = None,
    overwrite: bool = False,
    allow_missing_chunks: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    save_model: str | os.PathLike[str] | None = None,
    device: str | None = None,
    check: bool | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    **options: Any,
) -> RunSummary:
    """Train on and deconvolve files, folders or glob patterns: every channel and time point.

    Parameters
    ----------
    inputs : path, pattern, or a sequence of them
        Files (TIFF/OME-TIFF/ImageJ, ``.npy``, PNG, OME-Zarr, vendor formats), folders or globs.
    output : path
        A file for one input, a folder for several (created; it gets a manifest).
    psf : PSFOptions, path or sequence of paths
        One PSF per channel in channel order, or one for all (with a warning); ``PSFOptions(auto=True,
        ...)`` generates them on each image's voxel grid.
    config : Config, dict, callable, optional
        Training settings: one Config (for inputs of its dimensionality), ``{2: cfg2d, 3: cfg3d}``,
        or a function of the dimensionality; default the ``fast`` preset.
    axes : str, optional
        Axes of inputs whose files do not name them (``"TCZYX"``...).
    dtype : {"float32", "uint16"}
        Output type; ``uint16`` maps each channel's boundary range onto 0-65535 and records the scale.
    per_timepoint : bool
        One model per time point (default: one per channel, trained across its time points).
    voxel_size, psf_voxel_size : sequence of float, optional
        Voxel size (Z,Y,X or Y,X, micrometres) of the images / of the PSF files, replacing their metadata.
    overwrite : bool
        Redo finished files (and replace outputs the manifest does not know).
    allow_missing_chunks : bool
        Accept OME-Zarr inputs with unwritten chunks.
    workers, scheduler : optional
        Run on a local Dask cluster of ``workers`` processes, or on the Dask scheduler at ``scheduler``.
    save_model : path, optional
        Keep the model(s) of a single input (``_c0``, ``_c1``... per channel).
    device : str, optional
        Training and prediction device (``auto``, ``cpu``, ``cuda``...).
    check : bool, optional
        Compare each network with Lucy-Richardson and Spitfire on held-out pixels and write the
        classical result where the network predicts the data worse (see :class:`RunSettings`).
        Default: on, except with the ``paper`` preset (the paper's protocol has no such step).
    progress : bool
        Progress bars and messages.
    log : callable, optional
        Receives the messages (default: the ``siamdecon`` logger).
    **options
        ``tile_size``, ``tile_overlap``, ``max_timepoints``, ``pool_bytes`` (see :class:`RunSettings`).

    Returns
    -------
    RunSummary
        Done, skipped and failed files with reasons.

    Examples
    --------
    >>> summary = deconvolve_files("raw/*.ome.tif", "deconvolved", ["psf488.tif", "psf561.tif"])  # doctest: +SKIP
    >>> print("\\n".join(summary.lines()))  # doctest: +SKIP
    """
    from .config import make_config

    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    if isinstance(psf, PSFOptions):
        opts = psf
    else:
        files = [psf] if isinstance(psf, str | os.PathLike) else list(psf)
        opts = PSFOptions(files=[Path(p) for p in files])
    if psf_voxel_size is not None:
        opts.voxel_size = tuple(float(v) for v in psf_voxel_size)
    for p in opts.files:
        if not Path(p).is_file():
            raise InputError(f"PSF file '{p}' does not exist.")
    configs: dict[int, Config] = {}
    for ndim in (2, 3):
        if isinstance(config, Config):
            configs[ndim] = config if config.ndim == ndim else None  # type: ignore[assignment]
        elif isinstance(config, dict):
            configs[ndim] = config.get(ndim)  # type: ignore[assignment]
        elif callable(config):
            configs[ndim] = config(ndim)
        else:
            configs[ndim] = make_config("fast", ndim)
        if configs[ndim] is not None and device is not None:
            configs[ndim] = configs[ndim].model_copy(
                update={"training": configs[ndim].training.model_copy(update={"device": device})}
            )
    configs = {k: v for k, v in configs.items() if v is not None}
    if check is None:
        check = not any(c.preset == "paper" for c in configs.values())
    settings = RunSettings(
        command="deconvolve",
        check=bool(check),
        configs=configs,
        psf=opts,
        axes=axes,
        dtype=_check_dtype(dtype),
        per_timepoint=per_timepoint,
        voxel_size=tuple(voxel_size) if voxel_size is not None else None,
        overwrite=overwrite,
        allow_missing_chunks=allow_missing_chunks,
        device=device,
        save_model=Path(save_model) if save_model is not None else None,
        **options,
    )
    return _run(inputs, output, settings, workers=workers, scheduler=scheduler, progress=progress, log=log)


def predict_files(
    inputs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    output: str | os.PathLike[str],
    models: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    axes: str | None = None,
    dtype: str = "float32",
    voxel_size: Sequence[float] | None = None,
    overwrite: bool = False,
    allow_missing_chunks: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    normalization: str = "model",
    device: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> RunSummary:
    """Deconvolve files, folders or globs with saved models: one per channel, or one for all.

    Parameters are those of :func:`deconvolve_files`, with ``models`` (files written by ``siamdecon
    train`` or ``--save-model``) instead of PSFs and training settings, and ``normalization``:
    ``"model"`` (the training data's statistics) or ``"image"`` (recomputed on each volume).
    """
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    files = [models] if isinstance(models, str | os.PathLike) else list(models)
    if normalization not in ("model", "image"):
        raise ConfigError(f"normalization must be 'model' or 'image', got {normalization!r}")
    for p in files:
        if not Path(p).is_file():
            raise InputError(f"model file '{p}' does not exist")
    settings = RunSettings(
        command="predict",
        models=[Path(p) for p in files],
        axes=axes,
        dtype=_check_dtype(dtype),
        voxel_size=tuple(voxel_size) if voxel_size is not None else None,
        overwrite=overwrite,
        allow_missing_chunks=allow_missing_chunks,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        normalization=normalization,
        device=device,
    )
    return _run(inputs, output, settings, workers=workers, scheduler=scheduler, progress=progress, log=log)


def _check_dtype(dtype: str) -> str:
    if dtype not in ("float32", "uint16"):
        raise ConfigError(f"--dtype must be float32 or uint16, got {dtype!r}")
    return dtype


def train_file(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    psf: PSFOptions | Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    config: Config | dict[int, Config] | Callable[[int], Config] | None = None,
    axes: str | None = None,
    per_timepoint: bool = False,
    voxel_size: Sequence[float] | None = None,
    psf_voxel_size: Sequence[float] | None = None,
    allow_missing_chunks: bool = False,
    device: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """Train the model(s) of one file and save them: ``output`` for one, ``output_c0``... per channel.

    Parameters are those of :func:`deconvolve_files`. Each saved model records the axes it was
    trained for and what it was trained on (channel, time points, PSF and its checksum).

    Returns
    -------
    list of Path
        The model files written.
    """
    from .config import make_config

    log = log or _LOG.info
    opts = (
        psf
        if isinstance(psf, PSFOptions)
        else PSFOptions(files=[Path(p) for p in ([psf] if isinstance(psf, str | os.PathLike) else psf)])
    )
    if psf_voxel_size is not None:
        opts.voxel_size = tuple(float(v) for v in psf_voxel_size)
    settings = RunSettings(
        command="deconvolve",
        psf=opts,
        axes=axes,
        per_timepoint=per_timepoint,
        voxel_size=tuple(voxel_size) if voxel_size is not None else None,
        allow_missing_chunks=allow_missing_chunks,
        device=device,
    )
    inp = Path(input)
    stack = _open_stack(inp, settings)
    if isinstance(config, Config):
        cfg = config
    elif isinstance(config, dict):
        cfg = config.get(stack.ndim)
    elif callable(config):
        cfg = config(stack.ndim)
    else:
        cfg = make_config("fast", stack.ndim)
    if cfg is None or cfg.ndim != stack.ndim:
        raise ConfigError(f"the config is not for {stack.ndim}D data ({stack.describe()})")
    if device is not None:
        cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"device": device})})
    settings.configs = {stack.ndim: cfg}
    kernels = channel_psfs(stack, opts, log)
    units = (
        [(c, [t]) for c in range(stack.n_channels) for t in range(stack.n_times)]
        if per_timepoint
        else [(c, list(range(stack.n_times))) for c in range(stack.n_channels)]
    )
    ref = StackRef(inp, axes, settings.voxel_size, allow_missing_chunks) if stack.is_lazy else None
    models: dict[tuple[int, int | None], Any] = {}
    for c, ts in units:
        where = f"{stack.describe()}, channel {c}" + (f", time point {ts[0]}" if per_timepoint else "")
        if progress:
            start_text = describe_start(kernels[c].data, cfg)
            log(f"training on {where}: {len(ts)} time point(s) of {stack.spatial_shape} ({start_text})")
        source: Any = ref if ref is not None else [np.asarray(stack.volume(t, c)) for t in ts]
        m = _job_train(source, ts, c, kernels[c].data, cfg, where, None, settings.pool_bytes, progress, len(units) == 1)
        m.axes = stack.axes
        m.provenance.update({"trained_on": stack.describe(), "channel": c, "timepoints": ts, "psf": kernels[c].info})
        if m.interrupted:
            log(f"training stopped early after {len(m.history)} steps")
        models[(c, ts[0] if per_timepoint else None)] = m
    out = Path(output)
    _save_models(out, models, log)
    if len(models) == 1:
        return [out]
    return sorted(out.parent.glob(f"{out.stem}_c*{out.suffix}"))
