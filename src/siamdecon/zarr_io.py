"""OME-Zarr (NGFF 0.4 and 0.5) images in and out, read and written chunk by chunk.

Reading opens the first (full-resolution) dataset of the image's ``multiscales`` lazily: nothing
is loaded until a region is indexed. The metadata (axes, scale transformations, units) are parsed
by ``ome-zarr``; the pixels are read by ``zarr``. A store whose chunks are not all present is
refused, because Zarr would silently read the missing ones as the fill value.

Writing goes to a hidden partial store next to the target (``.NAME.zarr.partial``), which records
the settings it was made with and one marker per finished block: an interrupted run resumes where
it stopped, and the store is renamed onto the target only when complete, with its NGFF metadata
and siamdecon's provenance. Both need the ``zarr`` extra (``pip install 'siamdecon[zarr]'``).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "is_zarr_path",
    "read_ome_zarr",
    "write_ome_zarr",
    "ZarrWriter",
    "read_zarr_provenance",
    "check_chunks_present",
    "DEFAULT_NGFF_VERSION",
]

DEFAULT_NGFF_VERSION = "0.4"
_AXIS = {"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}
_UNITS = {"micrometer": "um", "micron": "um", "um": "um", "µm": "um", "nanometer": "nm", "millimeter": "mm"}
_NGFF_UNIT = {"um": "micrometer", "nm": "nanometer", "mm": "millimeter"}


def _require_zarr(what: str = "OME-Zarr") -> Any:
    try:
        import zarr
    except ImportError:
        raise InputError(f"{what} needs the zarr extra: pip install 'siamdecon[zarr]' (zarr and ome-zarr)") from None
    return zarr


def is_zarr_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a Zarr store (a ``.zarr`` name, or a folder with Zarr metadata)."""
    p = Path(path)
    if p.suffix.lower() == ".zarr":
        return True
    return p.is_dir() and any((p / name).exists() for name in ("zarr.json", ".zgroup", ".zarray"))


def _multiscales(attrs: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, str | None]:
    if "ome" in attrs and isinstance(attrs["ome"], dict):
        ome = attrs["ome"]
        return ome.get("multiscales"), str(ome.get("version", "0.5"))
    if "multiscales" in attrs:
        ms = attrs["multiscales"]
        version = ms[0].get("version") if ms and isinstance(ms[0], dict) else None
        return ms, str(version) if version else "0.4"
    return None, None


def check_chunks_present(array: Any, where: str) -> None:
    """Raise :class:`InputError` when some chunks of a Zarr array are not stored.

    Zarr reads a missing chunk as the fill value, so an incompletely copied store would be
    deconvolved as if it had blank regions.
    """
    try:
        have, need = int(array.nchunks_initialized), int(array.nchunks)
    except Exception:  # stores that cannot list their keys: nothing to check against
        return
    if have < need:
        raise InputError(
            f"{where} is missing {need - have} of its {need} chunks (an incomplete copy, or chunks deleted);"
            " Zarr would read them as blank. Copy the store again, or pass --allow-missing-chunks if those"
            " chunks are empty on purpose."
        )


def read_ome_zarr(
    path: str | os.PathLike[str],
    axes: str | None = None,
    *,
    what: str = "image",
    allow_missing_chunks: bool = False,
) -> Any:
    """Open an OME-Zarr image (NGFF 0.4/0.5) lazily as a :class:`~siamdecon.stack.Stack`.

    Parameters
    ----------
    path : str or path-like
        The image's group (the folder holding ``zarr.json`` or ``.zattrs``), or a bare Zarr array
        (then ``axes`` is required).
    axes : str, optional
        Replaces the axes the metadata record (one letter per dimension).
    what : str
        How it is named in messages.
    allow_missing_chunks : bool
        Accept a store with unwritten chunks (read as the fill value).

    Returns
    -------
    Stack
        ``data`` is the full-resolution ``zarr.Array``; voxel sizes come from its scale transformation.
    """
    import warnings

    from .axes import parse_axes
    from .stack import Stack

    zarr = _require_zarr()
    p = Path(path)
    where = f"{what} '{p}'"
    if not p.exists():
        raise InputError(f"{what} file '{p}' does not exist.")
    try:
        node = zarr.open(str(p), mode="r")
    except Exception as exc:
        raise InputError(f"could not read {where} as Zarr: {exc}") from exc
    voxel: dict[str, float] = {}
    unit = None
    version = None
    channel_names = None
    if isinstance(node, zarr.Array):
        if axes is None:
            raise InputError(f"{where} is a bare Zarr array without OME metadata; give its axes with --axes")
        array = node
        names = parse_axes(axes, array.ndim, source="--axes")
    else:
        attrs = dict(node.attrs)
        multiscales, version = _multiscales(attrs)
        if not multiscales:
            raise InputError(
                f"{where} is a Zarr group without OME-Zarr 'multiscales' metadata; siamdecon reads OME-Zarr images"
                " (NGFF 0.4 or 0.5). For a plate or a collection, give the path of one image inside it."
            )
        from ome_zarr.format import format_from_version
        from ome_zarr.io import parse_url
        from ome_zarr.reader import Multiscales, Reader

        try:
            format_from_version(version)
        except Exception as exc:
            raise InputError(f"{where} has OME-Zarr version {version!r}, which ome-zarr cannot read: {exc}") from exc
        try:
            loc = parse_url(str(p), fmt=format_from_version(version))
            image = next(n for n in Reader(loc)() if n.load(Multiscales) is not None)
            meta = image.metadata
        except Exception as exc:
            raise InputError(f"could not read the OME-Zarr metadata of {where}: {exc}") from exc
        first = multiscales[0]["datasets"][0]["path"]
        try:
            array = node[first]
        except Exception as exc:
            raise InputError(f"{where}: its first dataset '{first}' cannot be opened: {exc}") from exc
        axis_meta = meta.get("axes") or [{"name": n} for n in "tczyx"[-array.ndim :]]
        found = ""
        for ax in axis_meta:
            name = ax["name"] if isinstance(ax, dict) else str(ax)
            found += _AXIS.get(name.lower(), name.upper()[:1] if name else "?")
        names = parse_axes(axes, array.ndim, source="--axes") if axes else parse_axes(found, array.ndim, where)
        if axes is not None and names != found:
            warnings.warn(f"--axes {names} replaces the axes '{found}' recorded in '{p}'", UserWarning, stacklevel=2)
        scale = [1.0] * array.ndim
        transforms = meta.get("coordinateTransformations") or []
        for t in transforms[0] if transforms else []:
            if t.get("type") == "scale":
                scale = [a * b for a, b in zip(scale, t["scale"], strict=True)]
        for t in multiscales[0].get("coordinateTransformations", []) or []:
            if t.get("type") == "scale":
                scale = [a * b for a, b in zip(scale, t["scale"], strict=True)]
        units = {}
        for letter, ax in zip(found, axis_meta, strict=True):
            if isinstance(ax, dict) and ax.get("unit"):
                units[letter] = _UNITS.get(str(ax["unit"]).lower(), str(ax["unit"]))
        spatial_units = {units.get(a) for a in names if a in "ZYX"}
        spatial_scale = [s for a, s in zip(names, scale, strict=True) if a in "ZYX"]
        if spatial_units - {None}:
            unit = next(iter(spatial_units - {None}))
            voxel = {a: float(s) for a, s in zip(names, scale, strict=True) if a in "ZYX" and units.get(a)}
        elif any(s != 1.0 for s in spatial_scale):
            # NGFF asks for a unit but many writers leave it out; a scale other than 1 is then
            # taken as micrometres, the unit of microscopy.
            unit = "um"
            voxel = {a: float(s) for a, s in zip(names, scale, strict=True) if a in "ZYX"}
        omero = attrs.get("omero") or (attrs.get("ome") or {}).get("omero") or {}
        labels = [c.get("label") for c in omero.get("channels", []) if isinstance(c, dict)]
        if labels and all(labels) and "C" in names and len(labels) == array.shape[names.index("C")]:
            channel_names = [str(x) for x in labels]
    if not allow_missing_chunks:
        check_chunks_present(array, where)
    return Stack(
        data=array,
        axes=names,
        path=p,
        voxel_size=voxel,
        unit=unit,
        channel_names=channel_names,
        kind="ome-zarr",
        ngff_version=version,
        chunks=tuple(int(c) for c in array.chunks),
        dtype=str(array.dtype),
    )


def read_zarr_provenance(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``siamdecon`` attribute written into an OME-Zarr group (empty when there is none)."""
    zarr = _require_zarr()
    node = zarr.open_group(str(path), mode="r")
    attrs = dict(node.attrs)
    return dict(attrs.get("siamdecon") or (attrs.get("ome") or {}).get("siamdecon") or {})


def _fmt(version: str) -> Any:
    from ome_zarr.format import format_from_version

    return format_from_version(version)


class ZarrWriter:
    """A result OME-Zarr written block by block into a partial store, then renamed onto the target.

    Parameters
    ----------
    target : Path
        The ``.zarr`` image to produce.
    shape, axes : tuple of int, str
        Output shape and axes (T, C, Z, Y, X order, as NGFF requires).
    dtype : str
        ``"float32"`` or ``"uint16"``.
    chunks : sequence of int
        Chunk shape (blocks written by different processes must cover whole chunks).
    key : str
        What the result depends on (settings, inputs); a partial store made with another key is
        discarded instead of resumed.
    ngff_version : str
        ``"0.4"`` (Zarr v2) or ``"0.5"`` (Zarr v3).
    """

    def __init__(
        self,
        target: str | os.PathLike[str],
        shape: Sequence[int],
        axes: str,
        dtype: str,
        chunks: Sequence[int],
        key: str,
        ngff_version: str = DEFAULT_NGFF_VERSION,
    ) -> None:
        self.target = Path(target)
        self.partial = self.target.parent / f".{self.target.name}.partial"
        self.shape = tuple(int(n) for n in shape)
        self.axes = axes
        self.dtype = dtype
        self.chunks = tuple(int(min(c, n)) for c, n in zip(chunks, self.shape, strict=True))
        self.key = key
        self.ngff_version = ngff_version if ngff_version in ("0.4", "0.5") else DEFAULT_NGFF_VERSION
        self._markers = self.partial / ".siamdecon-blocks"
        self._info = self.partial / ".siamdecon-partial.json"

    def open(self, resume: bool = True) -> Any:
        """Create the partial store (or reopen a matching one when ``resume``); return its array."""
        zarr = _require_zarr()
        if self.partial.exists():
            same = False
            if resume and self._info.exists():
                try:
                    same = json.loads(self._info.read_text()).get("key") == self.key
                except (OSError, ValueError):
                    same = False
            if same:
                return zarr.open_array(str(self.partial / "0"), mode="r+")
            shutil.rmtree(self.partial)
        if not self.target.parent.exists():
            raise InputError(f"output folder '{self.target.parent}' does not exist; create it first.")
        group = zarr.open_group(str(self.partial), mode="w", zarr_format=2 if self.ngff_version == "0.4" else 3)
        array = group.create_array(
            "0",
            shape=self.shape,
            chunks=self.chunks,
            dtype=self.dtype,
            fill_value=0,
            # A chunk of zeros is still written, so that a finished store has every chunk
            # (check_chunks_present then tells a complete store from an incomplete one).
            config={"write_empty_chunks": True},
        )
        self._markers.mkdir()
        self._info.write_text(json.dumps({"key": self.key}))
        return array

    def array(self) -> Any:
        """The partial store's array, opened for writing (in a worker process)."""
        zarr = _require_zarr()
        return zarr.open_array(str(self.partial / "0"), mode="r+")

    def done(self) -> set[str]:
        """Names of the blocks already written."""
        if not self._markers.exists():
            return set()
        return {p.name for p in self._markers.iterdir()}

    def mark_done(self, block: str) -> None:
        """Record that ``block`` is completely written (after its chunks are)."""
        (self._markers / block).touch()

    def finalize(
        self,
        like: Any,
        provenance: dict[str, Any] | None = None,
        channel_names: list[str] | None = None,
    ) -> Path:
        """Write the NGFF metadata and provenance, then rename the store onto the target."""
        zarr = _require_zarr()
        from ome_zarr.writer import write_multiscales_metadata

        group = zarr.open_group(str(self.partial), mode="r+")
        scale = [float(like.voxel_size.get(a, 1.0)) if a in "ZYX" else 1.0 for a in self.axes]
        if "T" in self.axes and like.time_increment:
            scale[self.axes.index("T")] = float(like.time_increment)
        axes_meta = []
        for a in self.axes:
            entry: dict[str, str] = {"name": a.lower(), "type": {"T": "time", "C": "channel"}.get(a, "space")}
            if a in "ZYX" and a in like.voxel_size:
                entry["unit"] = _NGFF_UNIT.get(like.unit or "um", "micrometer")
            if a == "T" and like.time_increment:
                entry["unit"] = "second"
            axes_meta.append(entry)
        datasets = [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}]
        name = like.path.name if getattr(like, "path", None) is not None else "siamdecon"
        write_multiscales_metadata(group, datasets, fmt=_fmt(self.ngff_version), axes=axes_meta, name=name)
        names = channel_names or getattr(like, "channel_names", None)
        extra: dict[str, Any] = {}
        if names and "C" in self.axes:
            extra["omero"] = {"channels": [{"label": str(n), "active": True} for n in names]}
        if provenance:
            extra["siamdecon"] = json.loads(json.dumps(provenance, default=str))
        if extra:
            if self.ngff_version == "0.5":
                ome = dict(group.attrs.get("ome", {}))
                ome.update({k: v for k, v in extra.items() if k == "omero"})
                group.attrs["ome"] = ome
                if "siamdecon" in extra:
                    group.attrs["siamdecon"] = extra["siamdecon"]
            else:
                group.attrs.update(extra)
        shutil.rmtree(self._markers, ignore_errors=True)
        self._info.unlink(missing_ok=True)
        self._replace()
        return self.target

    def _replace(self) -> None:
        old = None
        if self.target.exists():
            old = self.target.parent / f".{self.target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.target, old)
        os.replace(self.partial, self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        """Remove the partial store."""
        shutil.rmtree(self.partial, ignore_errors=True)


def default_chunks(shape: Sequence[int], axes: str, spatial: Sequence[int] = (32, 256, 256)) -> tuple[int, ...]:
    """Chunks of one T and one C, and up to ``spatial`` (Z, Y, X) voxels."""
    lateral = {"Z": spatial[0], "Y": spatial[1], "X": spatial[2]}
    return tuple(1 if a in "TC" else min(int(n), lateral[a]) for a, n in zip(axes, shape, strict=True))


def write_ome_zarr(
    path: str | os.PathLike[str],
    data: np.ndarray,
    like: Any,
    *,
    axes: str,
    provenance: dict[str, Any] | None = None,
    channel_names: list[str] | None = None,
    chunks: Sequence[int] | None = None,
    ngff_version: str | None = None,
) -> Path:
    """Write an in-memory array (in ``axes`` order) as an OME-Zarr image, atomically."""
    writer = ZarrWriter(
        path,
        data.shape,
        axes,
        str(data.dtype),
        chunks or default_chunks(data.shape, axes),
        key=uuid.uuid4().hex,
        ngff_version=ngff_version or getattr(like, "ngff_version", None) or DEFAULT_NGFF_VERSION,
    )
    try:
        array = writer.open(resume=False)
        array[...] = data
        return writer.finalize(like, provenance, channel_names)
    except BaseException:
        writer.abort()
        raise
