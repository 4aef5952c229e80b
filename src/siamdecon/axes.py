"""Axis names of microscopy arrays: which of T (time), C (channel), Z, Y, X an array holds.

siamdecon deconvolves every (time point, channel) volume of a stack on its own; the axes string says
where those are. ``Y`` and ``X`` are required, ``Z`` makes the volumes 3D, ``T`` and ``C`` are
optional and may have any size (including 1). ``S`` (RGB samples) and the other codes that
tifffile or OME-Zarr use (angle, phase, tile, lifetime, lambda...) are refused with a message.
"""

from __future__ import annotations

from .errors import InputError

__all__ = ["SUPPORTED_AXES", "parse_axes", "spatial_axes", "canonical_order", "parse_triplet"]

SUPPORTED_AXES = "TCZYX"

_OTHER = {
    "S": "RGB samples",
    "A": "angle",
    "P": "phase",
    "R": "tile",
    "H": "lifetime",
    "E": "lambda (spectral)",
    "Q": "unknown",
    "I": "unknown (image sequence)",
    "L": "exposure",
    "V": "event",
    "M": "mosaic",
}


def _rgb_message(source: str) -> str:
    return (
        f"{source} has an RGB/samples axis 'S'; siamdecon deconvolves single-channel fluorescence"
        " data. Save the channels as a C axis (for example an OME-TIFF with axes CYX), or convert to grey."
    )


def parse_axes(text: str, ndim: int | None = None, source: str = "--axes") -> str:
    """Validate an axes string such as ``"TCZYX"`` and return it in upper case.

    Parameters
    ----------
    text : str
        One letter per array axis, in array order, from ``T``, ``C``, ``Z``, ``Y``, ``X``.
    ndim : int, optional
        Number of dimensions of the array the axes describe; checked when given.
    source : str
        How the axes are named in error messages (the option, or the file they came from).

    Returns
    -------
    str
        The axes in upper case.

    Raises
    ------
    InputError
        For an unknown or repeated letter, ``S`` (RGB), missing ``Y``/``X``, or a length other than ``ndim``.

    Examples
    --------
    >>> parse_axes("tczyx")
    'TCZYX'
    """
    axes = str(text).strip().upper()
    if "S" in axes:
        raise InputError(_rgb_message(source))
    bad = [a for a in axes if a not in SUPPORTED_AXES]
    if bad:
        names = ", ".join(f"'{a}' ({_OTHER.get(a, 'not an axis name')})" for a in dict.fromkeys(bad))
        raise InputError(
            f"{source} '{text}' has axis {names}; siamdecon handles T (time), C (channel), Z, Y and X."
            " Give the axes with --axes, for example --axes TCZYX."
        )
    repeated = sorted({a for a in axes if axes.count(a) > 1})
    if repeated:
        raise InputError(f"{source} '{text}' names axis {', '.join(repeated)} more than once.")
    if "Y" not in axes or "X" not in axes:
        raise InputError(f"{source} '{text}' needs both Y and X (the image plane), for example 'ZYX' or 'TCYX'.")
    if ndim is not None and len(axes) != ndim:
        raise InputError(
            f"{source} '{text}' names {len(axes)} axes but the array has {ndim} dimensions; give one letter"
            " per dimension, in array order (for example --axes TCZYX for 5 dimensions)."
        )
    return axes


def spatial_axes(axes: str) -> str:
    """The spatial axes in canonical order: ``"ZYX"`` when ``axes`` has Z, else ``"YX"``."""
    return "ZYX" if "Z" in axes else "YX"


def canonical_order(axes: str) -> str:
    """``axes`` reordered as T, C, Z, Y, X (the order OME-Zarr and OME-TIFF planes use)."""
    return "".join(a for a in SUPPORTED_AXES if a in axes)


def parse_triplet(text: str | None, ndim: int | None, option: str) -> tuple[float, ...] | None:
    """Parse a voxel size such as ``"0.3,0.1,0.1"`` (Z,Y,X) or ``"0.1,0.1"`` (Y,X), in micrometres.

    One value means the same size on every axis of ``ndim`` (lateral only in 3D is ambiguous, so a
    single value is only accepted when ``ndim`` is 2 or None).
    """
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in str(text).replace(" ", "").split(",") if v)
    except ValueError:
        raise InputError(f"{option} must be numbers separated by commas (Z,Y,X or Y,X), got {text!r}") from None
    if not values or any(not v > 0 for v in values):
        raise InputError(f"{option} must be positive sizes in micrometres (Z,Y,X or Y,X), got {text!r}")
    if len(values) == 1 and ndim in (None, 2):
        values = values * 2
    if ndim is not None and len(values) != ndim:
        what = "Z,Y,X" if ndim == 3 else "Y,X"
        raise InputError(f"{option} has {len(values)} value(s) but the data are {ndim}D: give {what}, got {text!r}")
    if len(values) not in (2, 3):
        raise InputError(f"{option} needs 2 (Y,X) or 3 (Z,Y,X) values, got {text!r}")
    return values
