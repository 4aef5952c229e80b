"""Point spread function (PSF) utilities for ``siamdecon``.

The generation part implements the scalar Gibson-Lanni model in its
Richards & Wolf limit (all refractive indices equal, so the only optical path
difference left is defocus).
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path

import numpy as np
from scipy import special

from .errors import InputError

__all__ = [
    "generate_psf",
    "load_psf",
    "validate_psf",
    "normalize_psf",
    "check_psf_fits",
    "psf_rms_radius",
    "psf_widths",
]

# --- generation ---
#
# Model
# -----
# For a point source at lateral distance ``r`` and defocus ``d`` the scalar
# amplitude is the pupil integral
#
#     A(r, d) = int_0^1 J0(k * NA_eff * r * rho) * exp(i * k * OPD(rho)) * rho drho
#     OPD(rho) = d * sqrt(n**2 - (NA * rho)**2)
#
# with ``k = 2 pi / wavelength`` and intensity ``|A|**2``.  ``NA_eff`` is
# ``NA * M / sqrt(M**2 + NA**2)`` (``M`` = magnification): the back focal
# plane aperture radius of the Gibson-Lanni geometry, as used by the
# Li et al. (2017) fast implementation, which produced the reference kernels.
#
# As in that implementation the intensity is evaluated on a radial grid with
# spacing ``pixel_size / 2`` starting at r = 0 and linearly interpolated onto
# the pixel centres; this (rather than point evaluation at the pixel centres)
# is what reproduces the reference kernels.  The pupil integral is computed
# with Gauss-Legendre quadrature instead of a Fourier-Bessel series fit.

_RADIAL_OVERSAMPLING = 2
_MIN_QUADRATURE_NODES = 64


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_finite_float(name: str, value: object) -> float:
    # ValueError (not TypeError) for every invalid argument, by design.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")  # noqa: TRY004
    out = float(value)
    if not np.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return out


def _check_positive_float(name: str, value: object) -> float:
    out = _check_finite_float(name, value)
    if out <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return out


def _check_positive_int(name: str, value: object) -> int:
    if not _is_int(value) or int(value) <= 0:  # type: ignore[call-overload]
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def _quadrature_nodes(
    na: float,
    na_eff: float,
    wavenumber: float,
    refractive_index: float,
    r_max: float,
    max_defocus: float,
) -> int:
    """Number of Gauss-Legendre nodes needed for the pupil integral.

    The integrand oscillates through the Bessel term (argument up to
    ``k * NA_eff * r_max``) and the defocus phase (total phase excursion over
    the pupil ``k * |d| * (n - sqrt(n**2 - NA**2))``).  Gauss-Legendre
    quadrature with more nodes than roughly half the number of radians of
    oscillation converges exponentially; a generous margin is added.
    """
    bessel_span = wavenumber * na_eff * r_max
    phase_span = wavenumber * max_defocus * (refractive_index - np.sqrt(refractive_index**2 - na**2))
    return int(_MIN_QUADRATURE_NODES + np.ceil(bessel_span + phase_span))


def _radial_intensity(
    radii: np.ndarray,
    defocus: np.ndarray,
    na: float,
    na_eff: float,
    wavelength: float,
    refractive_index: float,
) -> np.ndarray:
    """Scalar intensity ``|A(r, d)|**2``, shape ``(len(defocus), len(radii))``."""
    k = 2.0 * np.pi / wavelength
    n_nodes = _quadrature_nodes(
        na,
        na_eff,
        k,
        refractive_index,
        float(np.max(radii)),
        float(np.max(np.abs(defocus))),
    )
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    rho = 0.5 * (x + 1.0)  # map [-1, 1] -> [0, 1]
    weights = 0.5 * w * rho  # includes the rho Jacobian of the pupil integral

    optical_path = np.sqrt(refractive_index**2 - (na * rho) ** 2)
    phase = np.exp(1j * k * np.outer(defocus, optical_path))  # (nz, nq)
    bessel = special.j0(k * na_eff * np.outer(radii, rho))  # (nr, nq)
    amplitude = (phase * weights) @ bessel.T  # (nz, nr)
    return amplitude.real**2 + amplitude.imag**2


def _pixel_radii(size: int, pixel_size: float) -> np.ndarray:
    """Radial distance of each pixel centre from the central pixel."""
    coords = (np.arange(size) - (size - 1) / 2.0) * pixel_size
    return np.hypot(coords[:, None], coords[None, :])


def _psf_stack(
    size: int,
    num_z: int,
    na: float,
    wavelength: float,
    pixel_size: float,
    z_step: float,
    refractive_index: float,
    focal_offset: float,
    magnification: float,
) -> np.ndarray:
    """Unnormalised particle-scan PSF stack of shape ``(num_z, size, size)``."""
    na_eff = na * magnification / np.sqrt(magnification**2 + na**2)
    defocus = np.arange(num_z) * z_step + focal_offset

    pixel_r = _pixel_radii(size, pixel_size)
    step = pixel_size / _RADIAL_OVERSAMPLING
    n_radial = int(np.ceil(pixel_r.max() / step)) + 2
    radii = np.arange(n_radial) * step

    profile = _radial_intensity(radii, defocus, na, na_eff, wavelength, refractive_index)
    flat_r = pixel_r.ravel()
    stack = np.empty((num_z, size, size), dtype=np.float64)
    for iz in range(num_z):
        stack[iz] = np.interp(flat_r, radii, profile[iz]).reshape(size, size)
    return stack


def generate_psf(
    ndim: int = 3,
    size: int = 17,
    na: float = 0.8,
    wavelength: float = 0.6,
    pixel_size: float = 0.406,
    z_step: float = 0.406,
    refractive_index: float = 1.33,
    plane: int | None = None,
    focal_offset: float | None = None,
    num_z: int | None = None,
    *,
    magnification: float = 16.0,
) -> np.ndarray:
    """Generate a widefield fluorescence PSF (Gibson-Lanni, Richards & Wolf limit).

    The PSF is the scalar Gibson-Lanni model with all refractive indices
    equal (no index mismatch), so the optical path difference reduces to pure
    defocus, ``OPD(rho) = d * sqrt(n**2 - (NA * rho)**2)``.  The stack models
    a particle scan: plane ``j`` has defocus ``d_j = j * z_step +
    focal_offset``.  The defaults reproduce the kernels of the reference
    paper (16x / NA 0.8 water objective, 0.6 um emission, 0.406 um voxels,
    17 x 17 x 17 kernel).

    Parameters
    ----------
    ndim : int, default 3
        ``3`` returns the full stack, ``2`` a single plane.
    size : int, default 17
        Lateral kernel size in pixels (odd, so that the PSF is centred on a
        pixel).
    na : float, default 0.8
        Numerical aperture; must be smaller than ``refractive_index``.
    wavelength : float, default 0.6
        Emission wavelength in micrometres.
    pixel_size : float, default 0.406
        Lateral pixel size in micrometres (object space).
    z_step : float, default 0.406
        Axial step between planes in micrometres.
    refractive_index : float, default 1.33
        Refractive index of immersion medium and sample.
    plane : int or None, default None
        Plane of the stack returned when ``ndim == 2`` (``0 <= plane <
        num_z``).  ``None`` means plane 0, the out-of-focus plane
        (about 3 um of defocus with the defaults) used as the paper's 2D
        kernel.  Must be ``None`` when ``ndim == 3``.
    focal_offset : float or None, default None
        Offset ``zv`` (micrometres) added to the particle positions
        ``j * z_step``.  ``None`` uses ``-(num_z - 2) / 2 * z_step``, which
        puts focus half a step before the central plane (between planes 7
        and 8 for 17 planes, i.e. ``-3.045`` um with the defaults), as in the
        reference kernels.
    num_z : int or None, default None
        Number of planes in the stack; ``None`` means ``size``.
    magnification : float, default 16.0
        Objective magnification (keyword only).  It only enters through the
        effective aperture ``NA * M / sqrt(M**2 + NA**2)`` of the lateral
        Bessel term, a correction of about 0.1 % for the defaults.

    Returns
    -------
    numpy.ndarray
        ``float32`` array normalised to sum 1, of shape ``(num_z, size,
        size)`` (axes z, y, x) if ``ndim == 3`` or ``(size, size)`` if
        ``ndim == 2``.

    Raises
    ------
    ValueError
        If an argument is out of range (e.g. ``na >= refractive_index``,
        even or non-positive ``size``, ``plane`` outside the stack).

    Notes
    -----
    The radial intensity is evaluated by Gauss-Legendre quadrature of the
    pupil integral on a radial grid of spacing ``pixel_size / 2`` and
    linearly interpolated onto the pixel centres, mirroring the fast
    Fourier-Bessel method of Li, Xue & Blu, J. Opt. Soc. Am. A 34, 1029
    (2017), which was used to compute the reference kernels.

    Examples
    --------
    >>> psf = generate_psf()
    >>> psf.shape
    (17, 17, 17)
    >>> generate_psf(ndim=2).shape
    (17, 17)
    """
    if not _is_int(ndim) or int(ndim) not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    ndim = int(ndim)
    size = _check_positive_int("size", size)
    if size % 2 == 0:
        raise ValueError(f"size must be odd so the PSF is centred, got {size}")
    na = _check_positive_float("na", na)
    wavelength = _check_positive_float("wavelength", wavelength)
    pixel_size = _check_positive_float("pixel_size", pixel_size)
    z_step = _check_positive_float("z_step", z_step)
    refractive_index = _check_positive_float("refractive_index", refractive_index)
    magnification = _check_positive_float("magnification", magnification)
    if na >= refractive_index:
        raise ValueError(f"na ({na}) must be smaller than refractive_index ({refractive_index})")
    num_z = size if num_z is None else _check_positive_int("num_z", num_z)
    if focal_offset is None:
        focal_offset = -(num_z - 2) / 2.0 * z_step
    else:
        focal_offset = _check_finite_float("focal_offset", focal_offset)

    if ndim == 3:
        if plane is not None:
            raise ValueError("plane is only used with ndim=2; pass plane=None")
    else:
        plane = 0 if plane is None else plane
        if not _is_int(plane) or not 0 <= int(plane) < num_z:
            raise ValueError(f"plane must be an integer in [0, {num_z - 1}], got {plane!r}")
        plane = int(plane)

    stack = _psf_stack(
        size,
        num_z,
        na,
        wavelength,
        pixel_size,
        z_step,
        refractive_index,
        focal_offset,
        magnification,
    )
    psf = stack if ndim == 3 else stack[plane]
    total = psf.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("generated PSF has zero or non-finite total intensity")
    return (psf / total).astype(np.float32)


# --- loading and validation ---


def validate_psf(psf: np.ndarray, source: str = "PSF", ndim: int | None = None) -> np.ndarray:
    """Check that ``psf`` can be used as a convolution kernel and return it as float64.

    Parameters
    ----------
    psf : np.ndarray
        Candidate kernel.
    source : str
        How the PSF is named in error messages (for example ``"PSF 'psf.tif'"``).
    ndim : int, optional
        The number of dimensions the PSF must have (that of the image).

    Raises
    ------
    InputError
        If the PSF is not 2D/3D, not finite, has negative values (beyond float rounding),
        sums to zero, has an even size on some axis, or has the wrong number of dimensions.
    """
    arr = np.asarray(psf)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{source} has dtype {arr.dtype}; a real-valued kernel is needed.")
    arr = arr.astype(np.float64)
    while arr.ndim > 2 and arr.shape[0] == 1 and (ndim is None or arr.ndim > ndim):
        arr = arr[0]
    if arr.ndim not in (2, 3):
        raise InputError(f"{source} has shape {arr.shape}; a 2D (y, x) or 3D (z, y, x) kernel is needed.")
    if ndim is not None and arr.ndim != ndim:
        raise InputError(
            f"{source} is {arr.ndim}D (shape {arr.shape}) but the image is {ndim}D; use a"
            f" {ndim}D PSF (for a 2D image of one focal plane, take that plane of the 3D PSF)."
        )
    if not np.isfinite(arr).all():
        raise InputError(f"{source} contains NaN or infinite values.")
    peak = float(np.abs(arr).max())
    if peak == 0.0:
        raise InputError(f"{source} is all zeros; its sum must be positive.")
    most_negative = float(arr.min())
    if most_negative < -1e-6 * peak:
        raise InputError(
            f"{source} has negative values (minimum {most_negative:.3g}, peak {peak:.3g}); a PSF is an"
            " intensity and must be non-negative. Subtract the background and clip at zero first."
        )
    arr = np.clip(arr, 0.0, None)
    if arr.sum() <= 0:
        raise InputError(f"{source} sums to zero; its sum must be positive.")
    even = [i for i, s in enumerate(arr.shape) if s % 2 == 0]
    if even:
        raise InputError(
            f"{source} has shape {arr.shape} with an even size on axis {even}; siamdecon needs odd"
            " sizes so that the centre pixel is the optical axis. Crop or pad the PSF by one pixel"
            " on the side that puts its centre in the middle."
        )
    return arr


def normalize_psf(psf: np.ndarray) -> np.ndarray:
    """Return ``psf`` scaled to sum 1, as float32 (the forward operator then preserves flux)."""
    arr = np.asarray(psf, dtype=np.float64)
    return (arr / arr.sum()).astype(np.float32)


def psf_widths(psf: np.ndarray) -> tuple[float, ...]:
    """RMS width of the PSF along each axis, in pixels: the spread of its marginal about its centroid.

    Examples
    --------
    >>> psf_widths(np.array([[0.0, 0.5, 0.0], [0.0, 0.0, 0.0], [0.0, 0.5, 0.0]]))
    (1.0, 0.0)
    """
    arr = np.clip(np.asarray(psf, dtype=np.float64), 0.0, None)
    total = arr.sum()
    if not total > 0:
        raise ValueError("the PSF has no positive values")
    widths = []
    for axis in range(arr.ndim):
        marginal = arr.sum(axis=tuple(i for i in range(arr.ndim) if i != axis)) / total
        x = np.arange(marginal.size, dtype=np.float64)
        centre = (marginal * x).sum()
        widths.append(float(np.sqrt((marginal * (x - centre) ** 2).sum())))
    return tuple(widths)


def psf_rms_radius(psf: np.ndarray) -> float:
    """Root-mean-square distance of the PSF's intensity from its centroid, in pixels (all axes).

    A one-number width (the paper's 2D PSF: 3.67 px); ``sqrt(sum(psf_widths(psf)**2))``.

    Examples
    --------
    >>> round(psf_rms_radius(np.array([[0.0, 0.5, 0.0], [0.0, 0.0, 0.0], [0.0, 0.5, 0.0]])), 3)
    1.0
    """
    return float(np.sqrt(sum(w * w for w in psf_widths(psf))))


def check_psf_fits(psf_shape: tuple[int, ...], image_shape: tuple[int, ...], source: str = "PSF") -> None:
    """Raise :class:`InputError` if the PSF is larger than the image on some axis."""
    if len(psf_shape) != len(image_shape):
        raise InputError(f"{source} is {len(psf_shape)}D but the image is {len(image_shape)}D (shape {image_shape}).")
    too_big = [i for i, (k, n) in enumerate(zip(psf_shape, image_shape, strict=False)) if k > n]
    if too_big:
        raise InputError(
            f"{source} (shape {psf_shape}) is larger than the image (shape {image_shape}) on axis"
            f" {too_big}; crop the PSF to at most the image size."
        )


def load_psf(path: str | os.PathLike[str], ndim: int | None = None) -> np.ndarray:
    """Read a PSF from ``.tif``/``.tiff``/``.npy``, validate it and normalize it to sum 1.

    Parameters
    ----------
    path : str or path-like
        The PSF file.
    ndim : int, optional
        Required number of dimensions (that of the image to deconvolve).

    Returns
    -------
    np.ndarray
        Float32 kernel summing to 1.

    Examples
    --------
    >>> psf = load_psf("psf.tif", ndim=3)  # doctest: +SKIP
    """
    from .io import read_image

    p = Path(path)
    if p.suffix.lower() not in (".tif", ".tiff", ".npy"):
        raise InputError(f"PSF '{p}' has unsupported type '{p.suffix}'; use .tif, .tiff or .npy.")
    if not p.exists():
        raise InputError(f"PSF file '{p}' does not exist.")
    try:
        raw = np.load(p, allow_pickle=False) if p.suffix.lower() == ".npy" else read_image(p, "PSF").data
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"could not read PSF '{p}': {exc}") from exc
    return normalize_psf(validate_psf(raw, source=f"PSF '{p}'", ndim=ndim))
