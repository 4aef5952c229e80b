"""Multi-dimensional microscopy stacks: axes, channels, time points and their metadata.

A :class:`Stack` is an array in the order it is stored (any of T, C, Z, Y, X) with what is needed
to write a result the same way: axes, voxel size, channel names, time increment. It comes from

- TIFF: OME-TIFF and ImageJ hyperstacks with their axes and voxel sizes (tifffile); a plain TIFF of
  three dimensions is a Z stack, one of more dimensions needs ``axes``;
- NumPy ``.npy``: 2D is YX, 3D is ZYX, anything else needs ``axes`` (for example ``"TCZYX"``);
- PNG: 2D grey images;
- OME-Zarr (NGFF 0.4 and 0.5, :mod:`siamdecon.zarr_io`): read lazily, chunk by chunk;
- CZI, ND2, LIF and the other formats bioio reads, with the ``vendor`` extra.

Results are written by :func:`write_stack` as OME-TIFF (axes, voxel size, channel names and
siamdecon's provenance in a ``MapAnnotation``), ``.npy`` (the array only) or OME-Zarr, always
atomically.
"""

from __future__ import annotations

import hashlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .axes import canonical_order, parse_axes, spatial_axes
from .errors import InputError

__all__ = [
    "Stack",
    "VolumeView",
    "read_stack",
    "write_stack",
    "stack_suffix",
    "file_checksum",
    "STACK_READ_SUFFIXES",
    "STACK_WRITE_SUFFIXES",
    "VENDOR_SUFFIXES",
    "UINT16_MAX",
]

VENDOR_SUFFIXES = (".czi", ".nd2", ".lif")
STACK_READ_SUFFIXES = (".tif", ".tiff", ".npy", ".png", ".zarr", *VENDOR_SUFFIXES)
STACK_WRITE_SUFFIXES = (".tif", ".tiff", ".npy", ".zarr")
UINT16_MAX = 65535


def stack_suffix(path: str | os.PathLike[str]) -> str:
    """The lower-case type suffix of ``path``: ``.ome.tif`` counts as ``.tif``, ``.ome.zarr`` as ``.zarr``."""
    return Path(path).suffix.lower()


def file_checksum(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file (or of every file of a folder such as a Zarr store, in sorted order)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    for q in files:
        if p.is_dir():
            h.update(str(q.relative_to(p)).encode())
        with open(q, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


class VolumeView:
    """One (time point, channel) volume of a stack, in canonical ``(Z,) Y, X`` order, read on demand.

    Indexing with slices reads only that region (from a Zarr store, only the chunks it touches) and
    returns float32; ``np.asarray(view)`` reads the whole volume.
    """

    def __init__(self, stack: Stack, t: int = 0, c: int = 0) -> None:
        self.stack = stack
        self.t, self.c = int(t), int(c)
        self.shape = stack.spatial_shape
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32)
        # Stored positions of the canonical spatial axes, and the order they come out in.
        self._stored_spatial = [a for a in stack.axes if a in "ZYX"]
        self._perm = [self._stored_spatial.index(a) for a in stack.spatial]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def chunks(self) -> tuple[int, ...] | None:
        """Storage chunks of the spatial axes in canonical order (None in memory): reads aligned
        with them decode each chunk once."""
        if self.stack.chunks is None:
            return None
        by_axis = dict(zip(self.stack.axes, self.stack.chunks, strict=True))
        return tuple(int(by_axis[a]) for a in self.stack.spatial)

    def __getitem__(self, region: tuple[slice, ...] | slice) -> np.ndarray:
        if not isinstance(region, tuple):
            region = (region,)
        region = tuple(region) + (slice(None),) * (self.ndim - len(region))
        by_axis = dict(zip(self.stack.spatial, region, strict=True))
        index: list[Any] = []
        for a in self.stack.axes:
            if a == "T":
                index.append(self.t)
            elif a == "C":
                index.append(self.c)
            else:
                index.append(by_axis[a])
        try:
            block = np.asarray(self.stack.data[tuple(index)])
        except Exception as exc:  # a damaged chunk surfaces as many exception types
            raise InputError(
                f"could not read {self.stack.describe()} at t={self.t}, c={self.c}, region {_fmt_region(region)}: {exc}"
            ) from exc
        if self._perm != list(range(self.ndim)):
            block = np.transpose(block, self._perm)
        return block.astype(np.float32, copy=False)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[tuple(slice(None) for _ in self.shape)]
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"VolumeView({self.stack.describe()}, t={self.t}, c={self.c}, shape={self.shape})"


def _fmt_region(region: Sequence[slice]) -> str:
    return "[" + ", ".join(f"{s.start or 0}:{'' if s.stop is None else s.stop}" for s in region) + "]"


@dataclass
class Stack:
    """A microscopy array with its axes and metadata.

    Attributes
    ----------
    data : array-like
        The pixels in stored order: a NumPy array, or a lazily read Zarr array.
    axes : str
        One letter per axis of ``data`` from T, C, Z, Y, X.
    path : Path or None
        Where it came from (named in messages).
    voxel_size : dict
        Physical size of the spatial axes that have one (``"Z"``, ``"Y"``, ``"X"``), in ``unit``.
    unit : str or None
        Unit of ``voxel_size`` (``"um"``).
    channel_names : list of str or None
        One name per channel, when the file has them.
    time_increment : float or None
        Seconds between time points, when known.
    kind : str
        ``"ome-tiff"``, ``"imagej-tiff"``, ``"tiff"``, ``"npy"``, ``"png"``, ``"ome-zarr"`` or ``"bioio"``.
    ngff_version : str or None
        The OME-Zarr version read (``"0.4"``, ``"0.5"``).
    chunks : tuple of int or None
        Storage chunks in stored order (Zarr).
    dtype : str
        The stored data type.
    """

    data: Any
    axes: str
    path: Path | None = None
    voxel_size: dict[str, float] = field(default_factory=dict)
    unit: str | None = None
    channel_names: list[str] | None = None
    time_increment: float | None = None
    kind: str = "array"
    ngff_version: str | None = None
    chunks: tuple[int, ...] | None = None
    dtype: str = "float32"

    def __post_init__(self) -> None:
        self.axes = parse_axes(self.axes, len(self.data.shape), source=self.describe("axes of"))

    # -- shape ---------------------------------------------------------------------------------------
    def describe(self, what: str = "image") -> str:
        return f"{what} '{self.path}'" if self.path is not None else what

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.data.shape)

    @property
    def sizes(self) -> dict[str, int]:
        """Size per axis letter (T and C are 1 when absent)."""
        out = {"T": 1, "C": 1}
        out.update(dict(zip(self.axes, self.shape, strict=True)))
        return out

    @property
    def n_times(self) -> int:
        return self.sizes["T"]

    @property
    def n_channels(self) -> int:
        return self.sizes["C"]

    @property
    def spatial(self) -> str:
        """Spatial axes in canonical order, ``"ZYX"`` or ``"YX"``."""
        return spatial_axes(self.axes)

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return len(self.spatial)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.sizes[a] for a in self.spatial)

    @property
    def spacing(self) -> tuple[float, ...] | None:
        """Voxel size of the spatial axes in canonical order, or None unless every one is known."""
        if all(a in self.voxel_size for a in self.spatial):
            return tuple(float(self.voxel_size[a]) for a in self.spatial)
        return None

    @property
    def is_lazy(self) -> bool:
        """Whether the pixels stay on disk until read (Zarr) rather than in memory."""
        return not isinstance(self.data, np.ndarray)

    @property
    def nbytes_float32(self) -> int:
        return 4 * int(np.prod(self.shape))

    def volume(self, t: int = 0, c: int = 0) -> VolumeView:
        """The (time point, channel) volume in canonical order, as a lazily read view."""
        if not (0 <= t < self.n_times and 0 <= c < self.n_channels):
            raise IndexError(f"t={t}, c={c} outside {self.n_times} time point(s) x {self.n_channels} channel(s)")
        return VolumeView(self, t, c)

    def units(self) -> Iterator[tuple[int, int]]:
        """Every (t, c) pair, time-major."""
        for t in range(self.n_times):
            for c in range(self.n_channels):
                yield t, c

    def with_voxel_size(self, spacing: Sequence[float] | None) -> Stack:
        """A copy whose spatial voxel size (canonical order, micrometres) is ``spacing``."""
        if spacing is None:
            return self
        if len(spacing) != self.ndim:
            raise InputError(
                f"--voxel-size has {len(spacing)} value(s) but {self.describe()} is {self.ndim}D ({self.spatial})"
            )
        return replace(self, voxel_size=dict(zip(self.spatial, map(float, spacing), strict=True)), unit="um")

    def stored_index(self, t: int, c: int) -> tuple[Any, ...]:
        """Index into ``data`` that selects the (t, c) volume (stored spatial order)."""
        return tuple(t if a == "T" else c if a == "C" else slice(None) for a in self.axes)

    def to_stored(self, volume: np.ndarray) -> np.ndarray:
        """A canonical-order volume transposed to this stack's stored spatial order."""
        stored = [a for a in self.axes if a in "ZYX"]
        perm = [self.spatial.index(a) for a in stored]
        return volume if perm == list(range(len(perm))) else np.transpose(volume, perm)

    def check_finite(self) -> None:
        """Raise :class:`InputError` when an in-memory stack holds NaN or infinite values."""
        if self.is_lazy:
            return
        finite = np.isfinite(self.data)
        if not finite.all():
            bad = int(finite.size - finite.sum())
            raise InputError(
                f"{self.describe()} contains {bad} NaN or infinite value(s); replace them (for example with"
                " the background level) before deconvolution."
            )


# -- reading -----------------------------------------------------------------------------------------
def _ome_details(xml: str) -> tuple[dict[str, float], str | None, list[str] | None, float | None]:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return {}, None, None, None
    sizes: dict[str, float] = {}
    unit = None
    names: list[str] | None = None
    increment = None
    for elem in root.iter():
        if elem.tag.endswith("}Pixels") or elem.tag == "Pixels":
            for ax in "XYZ":
                val = elem.get(f"PhysicalSize{ax}")
                if val is not None:
                    try:
                        sizes[ax] = float(val)
                    except ValueError:
                        pass
            unit = _unit(elem.get("PhysicalSizeXUnit", "µm")) if sizes else None
            if elem.get("TimeIncrement"):
                try:
                    increment = float(elem.get("TimeIncrement"))
                except ValueError:
                    increment = None
            channels = [c for c in elem if c.tag.endswith("Channel")]
            if channels and all(c.get("Name") for c in channels):
                names = [c.get("Name") for c in channels]
            break
    return sizes, unit, names, increment


def _unit(unit: str | None) -> str | None:
    if unit in ("µm", "\u00b5m", "micron", "microns", "micrometer", "micrometre", "\\u00B5m", "um"):
        return "um"
    return unit


def _tiff_axes(series_axes: str, shape: tuple[int, ...], axes: str | None, p: Path, what: str) -> str:
    if axes is not None:
        return parse_axes(axes, len(shape), source="--axes")
    if "S" in series_axes:
        raise InputError(
            f"{what} '{p}' is an RGB/multi-sample TIFF (axes '{series_axes}', shape {shape}); siamdecon needs"
            " single-channel data per channel. Convert it to grey or store the channels as a C axis."
        )
    unknown = [a for a in series_axes if a in "QI"]
    if unknown:
        if len(unknown) == 1 and "Z" not in series_axes and len(shape) == 3:
            # A plain 3D TIFF is a z-stack, as it always was for siamdecon.
            return series_axes.replace(unknown[0], "Z")
        raise InputError(
            f"{what} '{p}' has shape {shape} ({len(shape)} dimensions) and no axis names in its metadata"
            f" (tifffile reads '{series_axes}'); give them with --axes, for example --axes"
            f" {'TCZYX'[-len(shape) :] if len(shape) <= 5 else 'TCZYX'}."
        )
    return parse_axes(series_axes, len(shape), source=f"{what} '{p}' (axes '{series_axes}')")


def _read_tiff(p: Path, axes: str | None, what: str) -> Stack:
    import tifffile

    from .io import _tiff_spacing

    with tifffile.TiffFile(p) as tif:
        series = tif.series[0]
        # tifffile's axes leave out singleton axes (OME-TIFF and ImageJ record every one of T, C, Z).
        series_axes, shape = series.axes, tuple(series.shape)
        if getattr(series.pages[0], "samplesperpixel", 1) > 1 and axes is None:
            raise InputError(
                f"{what} '{p}' is an RGB/multi-sample TIFF (axes '{series.axes}', shape {shape}); siamdecon"
                " needs single-channel data. Convert it to grey or store the channels as a C axis."
            )
        names = _tiff_axes(series_axes, shape, axes, p, what)
        if axes is not None and series_axes != names and not set(series_axes) & set("QI"):
            import warnings

            warnings.warn(
                f"--axes {names} replaces the axes '{series_axes}' recorded in '{p}'", UserWarning, stacklevel=3
            )
        voxel: dict[str, float] = {}
        unit = None
        channel_names = None
        increment = None
        kind = "tiff"
        if tif.is_ome and tif.ome_metadata:
            kind = "ome-tiff"
            voxel, unit, channel_names, increment = _ome_details(tif.ome_metadata)
            voxel = {a: v for a, v in voxel.items() if a in names}
        else:
            if tif.is_imagej:
                kind = "imagej-tiff"
                ij = tif.imagej_metadata or {}
                if ij.get("finterval"):
                    increment = float(ij["finterval"])
            spacing, unit = _tiff_spacing(tif, 3 if "Z" in names else 2)
            if spacing is not None:
                voxel = dict(zip("ZYX"[-len(spacing) :], spacing, strict=True))
            elif "Z" in names:
                yx, unit = _tiff_spacing(tif, 2)
                if yx is not None:
                    voxel = {"Y": yx[0], "X": yx[1]}
        data = series.asarray().reshape(shape)
    if channel_names is not None and "C" in names and len(channel_names) != shape[names.index("C")]:
        channel_names = None
    return Stack(
        data=data,
        axes=names,
        path=p,
        voxel_size=voxel,
        unit=_unit(unit),
        channel_names=channel_names,
        time_increment=increment,
        kind=kind,
        dtype=str(data.dtype),
    )


def _default_axes(shape: tuple[int, ...], p: Path, what: str) -> str:
    # Leading singleton axes are kept (and written back) under names that mean nothing to the result.
    core = list(shape)
    lead = 0
    while len(core) > 2 and core[0] == 1:
        core.pop(0)
        lead += 1
    if len(core) == 3 and core[-1] in (3, 4) and min(core[:2]) > 16:
        raise InputError(
            f"{what} '{p}' has shape {shape}, which looks like an RGB(A) image (last axis of {core[-1]});"
            " siamdecon needs single-channel data. Convert it to grey, or give the axes with --axes."
        )
    if len(core) not in (2, 3):
        raise InputError(
            f"{what} '{p}' has shape {shape} ({len(shape)} dimensions) and a .npy file has no axis names;"
            " give them with --axes, for example --axes CZYX, TZYX or TCZYX (one letter per dimension)."
        )
    spatial = "ZYX"[-len(core) :]
    free = [a for a in "TCZ" if a not in spatial]
    if lead > len(free):
        raise InputError(f"{what} '{p}' has shape {shape}: give its axes with --axes.")
    return "".join(free[len(free) - lead :]) + spatial


def _check_numeric(arr: np.ndarray, p: Path, what: str) -> None:
    if arr.dtype.kind == "c":
        raise InputError(f"{what} '{p}' holds complex numbers ({arr.dtype}); a real-valued image is needed.")
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{what} '{p}' has dtype {arr.dtype}, which is not a numeric image type.")
    if arr.size == 0:
        raise InputError(f"{what} '{p}' is empty (shape {arr.shape}).")


def _read_bioio(p: Path, axes: str | None, what: str) -> Stack:
    try:
        from bioio import BioImage
    except ImportError:
        raise InputError(
            f"{what} '{p}' is a {p.suffix} file, which needs the vendor extra: pip install 'siamdecon[vendor]'"
            " (bioio with its CZI, ND2 and LIF readers)."
        ) from None
    try:
        img = BioImage(p)
        # bioio always answers TCZYX (plus S for RGB data); keep that order.
        order = "TCZYXS" if "S" in img.dims.order else "TCZYX"
        data = np.asarray(img.get_image_data(order))
        sizes = img.physical_pixel_sizes
        names = list(img.channel_names) if img.channel_names else None
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"could not read {what} '{p}' with bioio: {exc}") from exc
    if order.endswith("S"):
        if data.shape[-1] > 1:
            raise InputError(f"{what} '{p}' holds RGB samples; siamdecon needs single-channel data per channel.")
        data = data[..., 0]
    voxel = {a: float(v) for a, v in zip("ZYX", (sizes.Z, sizes.Y, sizes.X), strict=True) if v}
    # Singleton Z in a 2D acquisition is dropped so that the volumes are 2D.
    axes_found = "TCZYX"
    if data.shape[2] == 1:
        data = data[:, :, 0]
        axes_found = "TCYX"
        voxel.pop("Z", None)
    if axes is not None:
        axes_found = parse_axes(axes, data.ndim, source="--axes")
    return Stack(
        data=data,
        axes=axes_found,
        path=p,
        voxel_size=voxel,
        unit="um" if voxel else None,
        channel_names=names if names and len(names) == data.shape[axes_found.index("C")] else None,
        kind="bioio",
        dtype=str(data.dtype),
    )


def read_stack(
    path: str | os.PathLike[str],
    axes: str | None = None,
    *,
    what: str = "image",
    voxel_size: Sequence[float] | None = None,
    reader: str | None = None,
) -> Stack:
    """Read a TIFF/OME-TIFF/ImageJ hyperstack, ``.npy``, PNG, OME-Zarr or (vendor extra) CZI/ND2/LIF file.

    Parameters
    ----------
    path : str or path-like
        The file, or the ``.zarr`` folder of an OME-Zarr image.
    axes : str, optional
        Axis letters in array order (``"TCZYX"``, ``"CYX"``...): needed for ``.npy`` files of more
        than 3 dimensions and TIFFs without axis metadata; replaces the axes a file records.
    what : str
        How the file is named in messages.
    voxel_size : sequence of float, optional
        Spatial voxel size (Z,Y,X or Y,X, micrometres), replacing what the file records.
    reader : {"bioio"}, optional
        Read with bioio whatever the suffix (the vendor extra).

    Returns
    -------
    Stack
        In-memory for TIFF, NPY, PNG and vendor files; lazily read for OME-Zarr.

    Raises
    ------
    InputError
        For a missing, unreadable, truncated or unsupported file, RGB data, axes that cannot be
        determined, NaN/Inf values, or axes of fewer than 2 pixels.

    Examples
    --------
    >>> stack = read_stack("cells.ome.tif")        # doctest: +SKIP
    >>> stack.axes, stack.n_channels, stack.spacing  # doctest: +SKIP
    ('TCZYX', 2, (0.3, 0.1, 0.1))
    """
    from .zarr_io import is_zarr_path, read_ome_zarr

    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} file '{p}' does not exist.")
    suffix = stack_suffix(p)
    if is_zarr_path(p):
        stack = read_ome_zarr(p, axes=axes, what=what)
    elif p.is_dir():
        raise InputError(f"{what} path '{p}' is a folder but not an OME-Zarr image; give a file.")
    else:
        try:
            if reader == "bioio" or suffix in VENDOR_SUFFIXES:
                stack = _read_bioio(p, axes, what)
            elif suffix in (".tif", ".tiff"):
                stack = _read_tiff(p, axes, what)
            elif suffix == ".npy":
                arr = np.load(p, allow_pickle=False)
                _check_numeric(arr, p, what)
                names = parse_axes(axes, arr.ndim, source="--axes") if axes else _default_axes(arr.shape, p, what)
                stack = Stack(data=arr, axes=names, path=p, kind="npy", dtype=str(arr.dtype))
            elif suffix == ".png":
                from .io import read_grey_png

                arr = read_grey_png(p, what)
                stack = Stack(data=arr, axes=axes.upper() if axes else "YX", path=p, kind="png", dtype=str(arr.dtype))
            else:
                raise InputError(
                    f"{what} '{p}' has unsupported file type '{p.suffix}'; use one of"
                    f" {', '.join(STACK_READ_SUFFIXES)} (CZI, ND2 and LIF with the vendor extra)."
                )
        except InputError:
            raise
        except Exception as exc:  # corrupted or truncated files surface as many exception types
            raise InputError(f"could not read {what} '{p}': {exc}") from exc
    if not stack.is_lazy:
        _check_numeric(np.asarray(stack.data), p, what)
        stack.check_finite()
    small = [a for a in stack.spatial if stack.sizes[a] < 2]
    if small:
        raise InputError(
            f"{what} '{p}' has shape {stack.shape} (axes {stack.axes}): spatial axis {', '.join(small)} has fewer"
            " than 2 pixels."
        )
    if voxel_size is not None:
        stack = stack.with_voxel_size(voxel_size)
    return stack


# -- writing -----------------------------------------------------------------------------------------
def _ome_metadata(
    like: Stack, axes: str, provenance: dict[str, Any] | None, channel_names: list[str] | None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"axes": axes}
    for a in "ZYX":
        if a in like.voxel_size and a in axes:
            meta[f"PhysicalSize{a}"] = float(like.voxel_size[a])
            meta[f"PhysicalSize{a}Unit"] = "µm" if (like.unit or "um") == "um" else like.unit
    if like.time_increment and "T" in axes:
        meta["TimeIncrement"] = float(like.time_increment)
        meta["TimeIncrementUnit"] = "s"
    names = channel_names or like.channel_names
    if names and "C" in axes:
        meta["Channel"] = {"Name": list(names)}
    if provenance:
        meta["MapAnnotation"] = {
            "Namespace": "siamdecon",
            "Value": {str(k): str(v) for k, v in _flatten(provenance).items()},
        }
    return meta


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, list | tuple):
            out[key] = ",".join(str(x) for x in v)
        else:
            out[key] = v
    return out


def to_output_dtype(volume: np.ndarray, dtype: str, scaling: tuple[float, float] | None) -> tuple[np.ndarray, int]:
    """Convert a float32 result to ``dtype``; for ``uint16``, ``raw = stored * scale + offset``.

    Returns the converted array and how many voxels fell outside the uint16 range (clipped).
    """
    if dtype == "float32":
        return np.asarray(volume, dtype=np.float32), 0
    if dtype != "uint16":
        raise InputError(f"--dtype must be float32 or uint16, got {dtype!r}")
    if scaling is None:
        raise ValueError("uint16 output needs a (offset, scale) per channel")
    offset, scale = scaling
    q = np.rint((np.asarray(volume, dtype=np.float64) - offset) / scale)
    clipped = int(np.count_nonzero((q < 0) | (q > UINT16_MAX)))
    return np.clip(q, 0, UINT16_MAX).astype(np.uint16), clipped


def output_axes(like: Stack, path: Path) -> str:
    """The axes an output of ``like`` is written with: its own order, or T,C,Z,Y,X for formats that need it."""
    if stack_suffix(path) == ".npy":
        return like.axes
    if stack_suffix(path) == ".zarr" or not like.axes.endswith("YX"):
        return canonical_order(like.axes)
    return like.axes


def write_stack(
    path: str | os.PathLike[str],
    data: np.ndarray,
    like: Stack,
    *,
    provenance: dict[str, Any] | None = None,
    dtype: str = "float32",
    scaling: Sequence[tuple[float, float]] | None = None,
    channel_names: list[str] | None = None,
    chunks: Sequence[int] | None = None,
) -> Path:
    """Write a result with the axes, shape and voxel size of ``like``, atomically.

    Parameters
    ----------
    path : str or path-like
        ``.tif``/``.tiff`` (OME-TIFF), ``.npy`` or ``.zarr`` (OME-Zarr).
    data : np.ndarray
        Float32 result in ``like``'s stored axes order and shape.
    like : Stack
        The input: axes, voxel size, channel names and time increment are written along.
    provenance : dict, optional
        What made the result (siamdecon version, settings, PSF checksums...): an OME ``MapAnnotation``
        in TIFF, the ``siamdecon`` attribute of an OME-Zarr group; ``.npy`` has no room for it.
    dtype : {"float32", "uint16"}
        Stored type; ``uint16`` needs ``scaling``.
    scaling : sequence of (offset, scale), optional
        Per channel: ``raw = stored * scale + offset`` (recorded in the provenance).
    channel_names : list of str, optional
        Names written for the channels (default those of ``like``).
    chunks : sequence of int, optional
        OME-Zarr chunks in the output's axes order.

    Returns
    -------
    Path
        The written path.
    """
    from .io import atomic_path

    p = Path(path)
    suffix = stack_suffix(p)
    if suffix not in STACK_WRITE_SUFFIXES:
        raise InputError(
            f"output '{p}' has unsupported type '{p.suffix}'; use one of {', '.join(STACK_WRITE_SUFFIXES)}."
        )
    if tuple(data.shape) != like.shape:
        raise ValueError(f"result shape {data.shape} differs from the input's {like.shape}")
    if dtype == "uint16" and suffix == ".npy":
        raise InputError(
            f"output '{p}': a .npy file cannot record the uint16 scale; write .tif or .zarr, or use --dtype float32"
        )
    axes = output_axes(like, p)
    arr = data
    if axes != like.axes:
        arr = np.transpose(arr, [like.axes.index(a) for a in axes])
    if dtype == "uint16":
        assert scaling is not None
        out = np.empty(arr.shape, dtype=np.uint16)
        for c in range(like.n_channels):
            sel = tuple(c if a == "C" else slice(None) for a in axes)
            out[sel], _ = to_output_dtype(arr[sel], "uint16", scaling[c])
        arr = out
    else:
        arr = np.asarray(arr, dtype=np.float32)
    if suffix == ".zarr":
        from .zarr_io import write_ome_zarr

        return write_ome_zarr(
            p, arr, like, axes=axes, provenance=provenance, channel_names=channel_names, chunks=chunks
        )
    with atomic_path(p) as tmp:
        if suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, arr)
        else:
            import tifffile

            meta = _ome_metadata(like, axes, provenance, channel_names)
            tifffile.imwrite(tmp, arr, ome=True, metadata=meta, photometric="minisblack")
    return p


def read_provenance(path: str | os.PathLike[str]) -> dict[str, str]:
    """The provenance siamdecon wrote into an OME-TIFF (``MapAnnotation``) or OME-Zarr (``siamdecon``)."""
    from .zarr_io import is_zarr_path, read_zarr_provenance

    p = Path(path)
    if is_zarr_path(p):
        return read_zarr_provenance(p)
    import tifffile

    with tifffile.TiffFile(p) as tif:
        xml = tif.ome_metadata or ""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return {}
    out: dict[str, str] = {}
    for elem in root.iter():
        if elem.tag.endswith("MapAnnotation") and elem.get("Namespace") == "siamdecon":
            for m in elem.iter():
                if m.tag.endswith("}M") or m.tag == "M":
                    out[m.get("K")] = m.text or ""
    return out
