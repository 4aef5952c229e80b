"""Reading and writing images, PSFs and volumes.

Supported inputs: TIFF (``.tif``/``.tiff``, ImageJ and OME voxel sizes are kept), NumPy ``.npy``
and, for 2D images only, PNG. Outputs are float32 TIFF or ``.npy`` written atomically: the data go
to a temporary file next to the target, which is renamed over the target only once it is complete,
so a failure or Ctrl-C never leaves a partial file behind.
"""

from __future__ import annotations

import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from .errors import InputError

__all__ = [
    "ImageData",
    "read_image",
    "write_image",
    "atomic_path",
    "check_output_path",
    "check_writable",
    "READ_SUFFIXES",
    "WRITE_SUFFIXES",
]

READ_SUFFIXES = (".tif", ".tiff", ".npy", ".png")
WRITE_SUFFIXES = (".tif", ".tiff", ".npy")


@dataclass
class ImageData:
    """An image or volume with the metadata needed to write the result back.

    Attributes
    ----------
    data : np.ndarray
        The pixels, 2D ``(y, x)`` or 3D ``(z, y, x)``, float32, leading singleton axes removed.
    path : Path or None
        Where the data came from (used in error messages).
    spacing : tuple of float or None
        Physical pixel size per axis of ``data`` (same order), or ``None`` when unknown.
    unit : str or None
        Unit of ``spacing`` (usually ``"um"``).
    original_shape : tuple of int
        Shape as stored in the file, so that outputs can be written with the same shape.
    original_dtype : str
        The stored dtype (informational).
    """

    data: np.ndarray
    path: Path | None = None
    spacing: tuple[float, ...] | None = None
    unit: str | None = None
    original_shape: tuple[int, ...] = field(default_factory=tuple)
    original_dtype: str = "float32"

    def __post_init__(self) -> None:
        if not self.original_shape:
            self.original_shape = tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return self.data.ndim

    def like(self, data: np.ndarray) -> ImageData:
        """Return a new :class:`ImageData` with ``data`` and this image's metadata."""
        if data.shape != self.data.shape:
            raise ValueError(f"shape {data.shape} differs from the image's shape {self.data.shape}")
        return ImageData(
            data=np.asarray(data, dtype=np.float32),
            path=None,
            spacing=self.spacing,
            unit=self.unit,
            original_shape=self.original_shape,
            original_dtype="float32",
        )


def _describe(path: Path | None, what: str) -> str:
    return f"{what} '{path}'" if path is not None else what


def _validate_array(arr: np.ndarray, path: Path | None, what: str) -> np.ndarray:
    """Check that ``arr`` is a finite, non-empty, single-channel 2D or 3D real array."""
    name = _describe(path, what)
    if arr.dtype.kind == "c":
        raise InputError(f"{name} holds complex numbers ({arr.dtype}); a real-valued image is needed.")
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{name} has dtype {arr.dtype}, which is not a numeric image type.")
    if arr.size == 0:
        raise InputError(f"{name} is empty (shape {arr.shape}).")
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and min(arr.shape[:2]) > 16:
        raise InputError(
            f"{name} has shape {arr.shape}, which looks like an RGB(A) image (last axis of"
            f" {arr.shape[-1]}); siamdecon needs single-channel data. Convert it to grey, or save a"
            " volume with its z axis first (z, y, x)."
        )
    squeezed = arr
    while squeezed.ndim > 2 and squeezed.shape[0] == 1:
        squeezed = squeezed[0]
    if squeezed.ndim not in (2, 3):
        hint = ""
        if squeezed.ndim > 3:
            hint = (
                " Multi-channel or time-lapse data must be split into one 2D image or 3D volume"
                " per file (for example one channel, one time point)."
            )
        raise InputError(
            f"{name} has shape {arr.shape} ({squeezed.ndim} dimensions); siamdecon needs a 2D image"
            f" (y, x) or a 3D volume (z, y, x) with a single channel.{hint}"
        )
    if min(squeezed.shape) < 2:
        raise InputError(f"{name} has shape {arr.shape}: every axis needs at least 2 pixels.")
    out = squeezed.astype(np.float32, copy=False)
    finite = np.isfinite(out)
    if not finite.all():
        bad = int(out.size - finite.sum())
        raise InputError(
            f"{name} contains {bad} NaN or infinite value(s); replace them (for example with the"
            " background level) before deconvolution."
        )
    return np.ascontiguousarray(out)


def _ome_spacing(xml: str) -> tuple[dict[str, float], str | None]:
    sizes: dict[str, float] = {}
    unit = None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return sizes, unit
    for elem in root.iter():
        if elem.tag.endswith("Pixels"):
            for ax in "XYZ":
                val = elem.get(f"PhysicalSize{ax}")
                if val is not None:
                    try:
                        sizes[ax] = float(val)
                    except ValueError:
                        pass
            unit = elem.get("PhysicalSizeXUnit", "um" if sizes else None)
            break
    if unit in ("µm", "\u00b5m", "micron", "microns"):
        unit = "um"
    return sizes, unit


def _tiff_spacing(tif: tifffile.TiffFile, ndim: int) -> tuple[tuple[float, ...] | None, str | None]:
    """Voxel size from OME or ImageJ metadata, in the order of the data's axes."""
    if tif.is_ome and tif.ome_metadata:
        sizes, unit = _ome_spacing(tif.ome_metadata)
        if "X" in sizes and "Y" in sizes:
            if ndim == 2:
                return (sizes["Y"], sizes["X"]), unit
            if "Z" in sizes:
                return (sizes["Z"], sizes["Y"], sizes["X"]), unit
    page = tif.pages[0]
    xres = page.tags.get("XResolution")
    yres = page.tags.get("YResolution")
    if xres is None or yres is None:
        return None, None
    try:
        x = xres.value[1] / xres.value[0]
        y = yres.value[1] / yres.value[0]
    except (TypeError, ZeroDivisionError, IndexError):
        return None, None
    ij = tif.imagej_metadata or {}
    unit = ij.get("unit")
    if unit in ("micron", "\\u00B5m", "µm", "\u00b5m", "microns"):
        unit = "um"
    if not ij:
        # Without ImageJ metadata only an explicit physical ResolutionUnit makes it a measurement
        # (1 = none, 2 = inch, 3 = centimetre); a bare 72 dpi is a display setting.
        res_unit = page.tags.get("ResolutionUnit")
        factor = {2: 25400.0, 3: 10000.0}.get(int(res_unit.value) if res_unit is not None else 2)
        if factor is None or (x == 1.0 and y == 1.0) or abs(1.0 / x - 72.0) < 1e-6:
            return None, None
        x, y, unit = x * factor, y * factor, "um"
    if ndim == 2:
        return (float(y), float(x)), unit
    z = ij.get("spacing")
    if z is None:
        return None, unit
    return (float(z), float(y), float(x)), unit


def read_grey_png(path: Path, what: str = "image") -> np.ndarray:
    """A single-channel PNG as an array; colour PNGs are refused (siamdecon does not guess a channel)."""
    from skimage import io as skio

    arr = skio.imread(path)
    if arr.ndim == 3:
        raise InputError(
            f"{what} '{path}' is a colour PNG (shape {arr.shape}); siamdecon needs a single-channel"
            " grey image. Convert it to grey first."
        )
    return arr


def read_image(path: str | os.PathLike[str], what: str = "image") -> ImageData:
    """Read a 2D image or 3D volume from TIFF, NPY or PNG.

    Parameters
    ----------
    path : str or path-like
        File to read (``.tif``, ``.tiff``, ``.npy``; ``.png`` for 2D grey images).
    what : str
        How the file is named in error messages (``"image"``, ``"PSF"``...).

    Returns
    -------
    ImageData
        Float32 data with leading singleton axes removed and the voxel size when the file has one.

    Raises
    ------
    InputError
        If the file is missing, unreadable, of an unsupported type, or its content is not a finite
        single-channel 2D or 3D array.

    Examples
    --------
    >>> img = read_image("stack.tif")  # doctest: +SKIP
    >>> img.data.shape, img.spacing    # doctest: +SKIP
    ((40, 512, 512), (0.3, 0.1, 0.1))
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} file '{p}' does not exist.")
    if p.is_dir():
        raise InputError(f"{what} path '{p}' is a folder; give a file.")
    suffix = p.suffix.lower()
    spacing: tuple[float, ...] | None = None
    unit: str | None = None
    try:
        if suffix in (".tif", ".tiff"):
            with tifffile.TiffFile(p) as tif:
                series = tif.series[0]
                axes = series.axes
                if "S" in axes or (series.pages[0] is not None and getattr(series.pages[0], "samplesperpixel", 1) > 1):
                    raise InputError(
                        f"{what} '{p}' is an RGB/multi-sample TIFF (axes '{axes}', shape {series.shape});"
                        " siamdecon needs single-channel data. Convert it to grey or split the channels."
                    )
                if "C" in axes and series.shape[axes.index("C")] > 1:
                    raise InputError(
                        f"{what} '{p}' has {series.shape[axes.index('C')]} channels (axes '{axes}');"
                        " save each channel as its own file."
                    )
                arr = series.asarray()
                nd = sum(1 for s in arr.shape if s > 1) if arr.ndim > 3 else arr.ndim
                spacing, unit = _tiff_spacing(tif, min(max(nd, 2), 3))
        elif suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        elif suffix == ".png":
            arr = read_grey_png(p, what)
        else:
            raise InputError(
                f"{what} '{p}' has unsupported file type '{p.suffix}'; use one of {', '.join(READ_SUFFIXES)}."
            )
    except InputError:
        raise
    except Exception as exc:  # corrupted or truncated files surface as many exception types
        raise InputError(f"could not read {what} '{p}': {exc}") from exc
    arr = np.asarray(arr)
    original_shape = tuple(arr.shape)
    original_dtype = str(arr.dtype)
    data = _validate_array(arr, p, what)
    if spacing is not None and len(spacing) != data.ndim:
        spacing = None
    return ImageData(
        data=data,
        path=p,
        spacing=spacing,
        unit=unit,
        original_shape=original_shape,
        original_dtype=original_dtype,
    )


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success.

    On any exception (including ``KeyboardInterrupt``) the temporary file is removed and the
    target is left untouched.
    """
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.exists():
        raise InputError(f"output folder '{parent}' does not exist; create it first.")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part" + target.suffix, dir=parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates the file private (0600); give it the permissions of a normal new file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_writable(path: str | os.PathLike[str], what: str = "output") -> None:
    """Raise :class:`InputError` unless a file can be created at ``path``.

    Called before long computations, so that an unwritable target fails at once instead of
    after training.
    """
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{what} '{p}' is a folder; give a file name.")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise InputError(f"{what} folder '{parent}' does not exist; create it first.")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".siamdecon-check-"):
            pass
    except OSError as exc:
        raise InputError(f"cannot write {what} into '{parent}': {exc.strerror or exc}") from None


def _check_suffix(p: Path) -> None:
    if p.suffix.lower() not in WRITE_SUFFIXES:
        raise InputError(
            f"output '{p}' has unsupported type '{p.suffix}'; results are float32, so use"
            f" one of {', '.join(WRITE_SUFFIXES)}."
        )


def check_output_path(path: str | os.PathLike[str]) -> None:
    """Raise :class:`InputError` unless ``path`` is a writable ``.tif``/``.tiff``/``.npy`` target."""
    p = Path(path)
    _check_suffix(p)
    check_writable(p, "output")


def write_image(
    path: str | os.PathLike[str],
    data: np.ndarray | ImageData,
    like: ImageData | None = None,
) -> Path:
    """Write float32 data to TIFF or NPY atomically.

    Parameters
    ----------
    path : str or path-like
        Target file (``.tif``, ``.tiff`` or ``.npy``).
    data : np.ndarray or ImageData
        The pixels to write.
    like : ImageData, optional
        The input the result was computed from: its original shape (with leading singleton axes)
        and voxel size are written along.

    Returns
    -------
    Path
        The written path.
    """
    p = Path(path)
    _check_suffix(p)
    if isinstance(data, ImageData):
        like = like or data
        arr = data.data
    else:
        arr = np.asarray(data)
    arr = np.asarray(arr, dtype=np.float32)
    spacing = like.spacing if like is not None else None
    unit = like.unit if like is not None else None
    if like is not None and like.original_shape and int(np.prod(like.original_shape)) == arr.size:
        arr = arr.reshape(like.original_shape)
    with atomic_path(p) as tmp:
        if p.suffix.lower() == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, arr)
        else:
            kwargs: dict = {}
            nd = sum(1 for s in arr.shape if s > 1)
            if spacing is not None:
                y, x = spacing[-2], spacing[-1]
                kwargs["resolution"] = (1.0 / x, 1.0 / y)
                meta: dict = {"unit": unit} if unit else {}
                if len(spacing) == 3:
                    meta["spacing"] = spacing[0]
                kwargs["metadata"] = meta
            imagej = arr.ndim <= 6 and nd <= 3
            if imagej:
                meta = kwargs.setdefault("metadata", {})
                meta["axes"] = "ZYX"[-arr.ndim :] if arr.ndim <= 3 else None
                if meta["axes"] is None:
                    del meta["axes"]
            tifffile.imwrite(tmp, arr, imagej=imagej, **kwargs)
    return p
