"""Measure a PSF from images of sub-resolution fluorescent beads, and resample PSFs between voxel grids.

Most labs measure their PSF by imaging beads of 100-200 nm. :func:`estimate_psf` turns such an
image (2D or 3D, anisotropic voxels allowed) into a kernel ready for deconvolution: it finds the
beads, rejects those that would corrupt the average (touching, saturated, cut by the border,
outliers), subtracts the background, registers the beads to sub-pixel precision, averages them,
crops the result to an odd size centred on its peak, clips the noise floor and normalizes to
sum 1, optionally dividing out the bead's own size. It guards against the four usual failures
of a measured PSF: off-centre, with camera background left in, at another voxel size than the
data (:func:`resample_psf`) and as large as the image.

:func:`simulate_bead_image` makes bead images with known PSF, positions and defects, through the
project's camera model (:func:`siamdecon.simulate.camera_image`).

Positions are in pixels along the array axes ((y, x) or (z, y, x)); voxel sizes and bead
diameters in micrometres.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .errors import InputError
from .psf import normalize_psf, validate_psf
from .simulate import Camera, camera_image

__all__ = [
    "Bead",
    "BeadPSF",
    "SimulatedBeads",
    "estimate_psf",
    "psf_fwhm",
    "resample_psf",
    "simulate_bead_image",
]

# Detection: smoothing of the image before looking for maxima (pixels), and the default
# threshold in noise standard deviations of the smoothed image. At 6 sigma a 64x256x256 stack of
# Gaussian noise has far less than one false maximum.
_SMOOTHING_SIGMA = 1.0
_DEFAULT_THRESHOLD = 6.0
# A maximum near a brighter bead (within its window, and at least 4 FWHM) and fainter than this
# fraction of it is taken for part of that bead's image (a side lobe, a ring, a noise bump on
# its tail), not a bead; a fainter real neighbour would bias the average by less than this
# fraction divided by the number of beads.
_NEIGHBOUR_FRACTION = 0.1
# Only the brightest this many maxima are kept (the pairwise tests are quadratic in their number).
_MAX_CANDIDATES = 3000
# Extent of the PSF: the marginal along an axis is significant above this many standard
# deviations of its noise (4 sigma: a false detection among ~100 samples is unlikely), or above
# this fraction of the marginal's maximum (so that nearly noise-free data still give a crop).
_EXTENT_SIGMAS = 4.0
_EXTENT_RELATIVE = 2e-3
# The averaged PSF is set to 0 where a smoothed copy is below this many standard deviations of
# its residual noise (see _clip_floor).
_FLOOR_SIGMAS = 3.0
# Registration: Gauss-Newton iterations and the relative signal level defining the bead core
# over which shifts and amplitudes are fitted.
_REGISTRATION_ITERATIONS = 6
_CORE_LEVEL = 0.02
# A bead whose registered position moves further than this from its detected maximum (pixels)
# did not register (too faint or not a bead) and is treated as an outlier.
_MAX_REGISTRATION_SHIFT = 1.5
# Outliers: residual energy after subtracting the scaled mean, relative to the noise expected,
# more than this many robust standard deviations above the median (and at least twice it).
_OUTLIER_SIGMAS = 5.0
_OUTLIER_MIN_RATIO = 2.0
# Automatic crop: at most this many rounds of growing the analysis window, by this factor.
_GROWTH_ROUNDS = 6
_GROWTH_FACTOR = 1.6
# Wiener regularization floor of the bead-size correction.
_MIN_REGULARIZATION = 1e-3

_REASONS = ("touching", "saturated", "border", "outlier")


# --- small helpers ---


def _per_axis(value: object, ndim: int, name: str, *, positive: bool = True) -> tuple[float, ...]:
    """One float per axis from a scalar or a sequence, checked finite (and positive)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        values = (float(value),) * ndim
    else:
        try:
            values = tuple(float(v) for v in value)  # type: ignore[union-attr]
        except TypeError:
            raise InputError(f"{name} must be a number or {ndim} numbers (one per axis), got {value!r}.") from None
    if len(values) != ndim:
        raise InputError(f"{name} has {len(values)} values but the image is {ndim}D; give one value or {ndim}.")
    if not all(math.isfinite(v) for v in values) or (positive and not all(v > 0 for v in values)):
        raise InputError(f"{name} must be {'positive ' if positive else ''}finite numbers, got {value!r}.")
    return values


def _odd_shape(shape: object, ndim: int, name: str = "shape") -> tuple[int, ...]:
    values = _per_axis(shape, ndim, name)
    if not all(float(v).is_integer() for v in values):
        raise InputError(f"{name} must be integers, got {shape!r}.")
    out = tuple(int(v) for v in values)
    even = [i for i, s in enumerate(out) if s % 2 == 0]
    if even:
        raise InputError(
            f"{name} {out} is even on axis {even}; a PSF needs odd sizes so that its centre is a pixel"
            f" (e.g. {tuple(s + 1 if s % 2 == 0 else s for s in out)})."
        )
    return out


def _sample(values: np.ndarray, limit: int = 400_000) -> np.ndarray:
    """A regular subsample of a large array, so that medians stay fast on big stacks."""
    flat = values.ravel()
    return flat[:: max(1, flat.size // limit)]


def _robust_std(values: np.ndarray) -> float:
    """Standard deviation from the median absolute deviation (Gaussian consistent)."""
    if values.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _frequency_grids(shape: Sequence[int]) -> list[np.ndarray]:
    """Broadcastable DFT frequencies (cycles per pixel) for each axis of ``shape``."""
    nd = len(shape)
    return [np.fft.fftfreq(n).reshape([-1 if i == a else 1 for i in range(nd)]) for a, n in enumerate(shape)]


def _shift_phase(shape: Sequence[int], shifts: np.ndarray) -> np.ndarray:
    """``exp(-2 pi i f.s)`` for each row of ``shifts``: multiplying a spectrum by it moves the content by +s."""
    grids = _frequency_grids(shape)
    phase = np.zeros((shifts.shape[0], *shape), dtype=np.float64)
    for axis, grid in enumerate(grids):
        phase = phase + shifts[:, axis].reshape((-1,) + (1,) * len(shape)) * grid[None]
    return np.exp(-2j * np.pi * phase)


def _sphere_transform(shape: Sequence[int], voxel: Sequence[float], diameter: float) -> np.ndarray:
    """DFT (on the grid of ``shape``) of a uniform sphere of unit integral and the given diameter.

    ``3 (sin u - u cos u) / u^3`` with ``u = 2 pi |f| R`` and ``f`` in cycles per micrometre. In 2D
    this is the transform of the sphere's projection (projection-slice theorem): the image of a
    bead in one plane is modelled as that of its column density.
    """
    radius = diameter / 2.0
    grids = _frequency_grids(shape)
    f2 = sum((g / v) ** 2 for g, v in zip(grids, voxel))
    u = 2.0 * np.pi * np.sqrt(f2) * radius
    small = u < 1e-3
    us = np.where(small, 1.0, u)
    return np.where(small, 1.0 - u**2 / 10.0, 3.0 * (np.sin(us) - us * np.cos(us)) / us**3)


def _line_fwhm(lines: np.ndarray, centre: int) -> tuple[np.ndarray, np.ndarray]:
    """FWHM of 1D profiles (rows of ``lines``) around index ``centre``, by linear interpolation.

    Returns the widths and whether both half-maximum crossings were inside the profile (else the
    width is a lower bound).
    """
    lines = np.asarray(lines, dtype=np.float64)
    half = lines[:, centre] / 2.0
    width = np.zeros(lines.shape[0])
    inside = np.ones(lines.shape[0], dtype=bool)
    for side in (lines[:, centre:], lines[:, centre::-1]):
        below = side < half[:, None]
        found = below.any(axis=1)
        j = np.where(found, np.argmax(below, axis=1), side.shape[1] - 1)
        j = np.maximum(j, 1)
        rows = np.arange(side.shape[0])
        hi, lo = side[rows, j - 1], side[rows, j]
        frac = np.where(hi > lo, (hi - half) / np.where(hi > lo, hi - lo, 1.0), 0.0)
        width += np.where(found, j - 1 + np.clip(frac, 0.0, 1.0), side.shape[1] - 1)
        inside &= found
    return width, inside


def psf_fwhm(psf: np.ndarray, voxel: float | Sequence[float] | None = None) -> tuple[float, ...]:
    """Full width at half maximum of a PSF along each axis, through its brightest pixel.

    Parameters
    ----------
    psf : np.ndarray
        2D or 3D kernel.
    voxel : float or sequence of float, optional
        Voxel size per axis (micrometres); the widths are then in micrometres instead of pixels.

    Returns
    -------
    tuple of float
        One width per axis. The half-maximum crossings are found by linear interpolation between
        pixels; where the profile does not fall to half its maximum the width is that of the array.

    Examples
    --------
    >>> line = np.array([0.0, 0.25, 1.0, 0.25, 0.0])
    >>> tuple(round(w, 3) for w in psf_fwhm(np.outer(line, line)))
    (1.333, 1.333)
    """
    arr = np.asarray(psf, dtype=np.float64)
    peak = np.unravel_index(int(np.argmax(arr)), arr.shape)
    widths = []
    for axis in range(arr.ndim):
        index = list(peak)
        index[axis] = slice(None)  # type: ignore[call-overload]
        width, _ = _line_fwhm(arr[tuple(index)][None], int(peak[axis]))
        widths.append(float(width[0]))
    if voxel is not None:
        widths = [w * v for w, v in zip(widths, _per_axis(voxel, arr.ndim, "voxel"))]
    return tuple(widths)


# --- simulation ---


@dataclass(frozen=True)
class SimulatedBeads:
    """The ground truth of a simulated bead image.

    Attributes
    ----------
    positions : np.ndarray
        ``(n, ndim)`` bead centres in pixels (sub-pixel), the point on which the PSF's central
        pixel lands.
    brightness : np.ndarray
        Peak of each bead's blurred image in units of ``camera.photons`` (before clipping).
    touching : np.ndarray
        ``True`` for the beads of the touching pairs.
    saturated : np.ndarray
        ``True`` for the beads bright enough to clip at the camera's maximum.
    """

    positions: np.ndarray
    brightness: np.ndarray
    touching: np.ndarray
    saturated: np.ndarray

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    @property
    def isolated(self) -> np.ndarray:
        """``True`` for the beads that are neither touching nor saturated."""
        return ~(self.touching | self.saturated)


def simulate_bead_image(
    psf: np.ndarray,
    shape: Sequence[int],
    *,
    n_beads: int = 20,
    camera: Camera | None = None,
    bead_diameter: float | None = None,
    voxel: float | Sequence[float] | None = None,
    touching: int = 0,
    saturated: int = 0,
    seed: int = 0,
) -> tuple[np.ndarray, SimulatedBeads]:
    """Simulate a camera image of fluorescent beads imaged through ``psf``.

    Beads sit at random sub-pixel positions, at least the PSF's half-size plus two pixels from
    the border, with isolated beads further apart than the PSF's size along some axis (so that
    their images do not overlap). Each bead is a point, or a sphere of ``bead_diameter`` sampled
    band-limited on the pixel grid (its transform, so that a sphere smaller than a pixel keeps
    its true size), moved to its sub-pixel position by cubic-spline interpolation: the offset is
    real, and unlike a Fourier shift the interpolation does not ring across the image when the
    PSF is undersampled. The object is blurred with ``psf`` and recorded by
    :func:`siamdecon.simulate.camera_image`.

    Parameters
    ----------
    psf : np.ndarray
        Kernel (2D or 3D, odd sizes); normalized to sum 1 here.
    shape : sequence of int
        Image shape, with the PSF's number of dimensions.
    n_beads : int
        Number of isolated, unsaturated beads.
    camera : Camera, optional
        Camera model (default ``Camera()``). ``camera.photons`` is the expected number of
        photo-electrons at the peak of a bead of brightness 1; beads have brightness 0.7-1.
    bead_diameter : float, optional
        Physical bead diameter in micrometres (needs ``voxel``); ``None`` renders points.
    voxel : float or sequence of float, optional
        Voxel size per axis in micrometres.
    touching : int
        Extra pairs of beads 2 to 2.5 FWHM apart (in FWHM units per axis; at least 3 pixels):
        resolved as two maxima, but each inside the other's PSF crop.
    saturated : int
        Extra isolated beads about three times brighter than the camera's range.
    seed : int
        Seed of the positions, brightnesses and noise.

    Returns
    -------
    counts : np.ndarray
        The camera image (``uint16``, or ``uint8`` for an 8-bit camera).
    beads : SimulatedBeads
        True positions (pixels), brightness and which beads are touching or saturated.

    Raises
    ------
    InputError
        If the arguments are invalid or the beads do not fit in the image.
    """
    kernel = normalize_psf(validate_psf(psf, source="PSF")).astype(np.float64)
    ndim = kernel.ndim
    shape = tuple(int(s) for s in shape)
    if len(shape) != ndim:
        raise InputError(f"shape {shape} has {len(shape)} axes but the PSF is {ndim}D.")
    for name, value in (("n_beads", n_beads), ("touching", touching), ("saturated", saturated)):
        if not isinstance(value, numbers.Integral) or value < 0:
            raise InputError(f"{name} must be a non-negative integer, got {value!r}.")
    if bead_diameter is not None and voxel is None:
        raise InputError("bead_diameter needs voxel (the voxel size in micrometres) to convert it to pixels.")
    if bead_diameter is not None and not (isinstance(bead_diameter, numbers.Real) and bead_diameter > 0):
        raise InputError(f"bead_diameter must be a positive number of micrometres, got {bead_diameter!r}.")
    camera = camera or Camera()
    voxel_t = _per_axis(voxel, ndim, "voxel") if voxel is not None else None
    rng = np.random.default_rng(seed)

    half = np.array(kernel.shape) // 2
    low = half + 2.0
    high = np.array(shape) - 1.0 - low
    if np.any(high < low):
        raise InputError(f"image shape {shape} is too small for beads imaged with a PSF of shape {kernel.shape}.")
    spacing = 2.0 * half + 2.0  # isolated beads: PSF supports apart by at least one pixel
    fwhm = np.maximum(np.array(psf_fwhm(kernel)), 1.0)

    positions: list[np.ndarray] = []

    def isolated(points: list[np.ndarray]) -> bool:
        if not positions:
            return True
        existing = np.array(positions)
        return all(bool(np.all(np.max(np.abs(existing - p) / spacing, axis=1) >= 1.0)) for p in points)

    def place(make_group) -> list[np.ndarray]:
        for _ in range(2000):
            group = make_group()
            inside = all(np.all(p >= low) and np.all(p <= high) for p in group)
            if inside and isolated(group):
                positions.extend(group)
                return group
        raise InputError(
            f"could not place {n_beads + 2 * touching + saturated} beads in an image of shape {shape} with a"
            f" PSF of shape {kernel.shape} without overlaps; use a larger image or fewer beads."
        )

    def single() -> list[np.ndarray]:
        return [low + rng.random(ndim) * (high - low)]

    def pair() -> list[np.ndarray]:
        first = single()[0]
        direction = rng.normal(size=ndim)
        # A random direction in FWHM units, so that the pair is as close along z as along x.
        offset = direction / np.linalg.norm(direction) * fwhm * rng.uniform(2.0, 2.5)
        offset *= max(1.0, 3.0 / float(np.linalg.norm(offset)))
        return [first, first + offset]

    kinds: list[tuple[str, int]] = []
    for _ in range(saturated):
        place(single)
        kinds.append(("saturated", 1))
    for _ in range(touching):
        place(pair)
        kinds.append(("touching", 2))
    for _ in range(n_beads):
        place(single)
        kinds.append(("isolated", 1))
    labels = [k for k, n in kinds for _ in range(n)]
    pos = np.array(positions, dtype=np.float64).reshape(-1, ndim)
    is_touching = np.array([k == "touching" for k in labels], dtype=bool)
    is_saturated = np.array([k == "saturated" for k in labels], dtype=bool)

    brightness = rng.uniform(0.7, 1.0, len(labels))
    full_scale = (2**camera.bits - 1 - camera.offset) / camera.scale
    brightness[is_saturated] = 3.0 * full_scale

    # Flux per unit brightness: the peak of the blurred bead (centred) is then its brightness.
    pad = [(s, s) for s in kernel.shape]
    padded = np.pad(kernel, pad)
    bead_ft = (
        _sphere_transform(padded.shape, voxel_t, bead_diameter)  # type: ignore[arg-type]
        if bead_diameter is not None
        else 1.0
    )
    blurred_bead = np.fft.ifftn(np.fft.fftn(np.fft.ifftshift(padded)) * bead_ft).real
    flux = brightness / float(blurred_bead.max())

    clean = _render_points(shape, pos, flux, voxel_t, bead_diameter)
    counts = camera_image(clean, kernel.astype(np.float32), camera, seed=int(rng.integers(2**31)))
    return counts, SimulatedBeads(pos, brightness, is_touching, is_saturated)


def _render_points(
    shape: tuple[int, ...],
    positions: np.ndarray,
    flux: np.ndarray,
    voxel: tuple[float, ...] | None,
    diameter: float | None,
) -> np.ndarray:
    """Image of points (or spheres) of the given flux at sub-pixel positions.

    A bead is a band-limited sphere (the inverse DFT of its transform, centred on a pixel), or a
    single pixel for a point, moved to its sub-pixel position by cubic-spline interpolation.
    Blurred with the PSF this gives the PSF spline-interpolated at the offset: the kernel decays
    within a few pixels (unlike a Fourier shift's sinc), so no ringing spreads over the image
    even when the PSF is undersampled.
    """
    ndim = len(shape)
    reach = 8 + (0 if diameter is None else int(np.ceil(max(diameter / v for v in voxel))))  # type: ignore[union-attr]
    size = (2 * reach + 1,) * ndim
    bead = np.zeros(size)
    bead[(reach,) * ndim] = 1.0
    if diameter is not None:
        sphere = _sphere_transform(size, voxel, diameter)  # type: ignore[arg-type]
        bead = np.fft.fftshift(np.fft.ifftn(sphere).real)
    clean = np.zeros(shape, dtype=np.float64)
    upper = np.array(shape)
    for p, f in zip(positions, flux):
        centre = np.round(p).astype(int)
        patch = ndimage.shift(bead, p - centre, order=3, mode="constant") * f
        lo = centre - reach
        src = tuple(slice(max(-a, 0), n - max(a + n - u, 0)) for a, n, u in zip(lo, size, upper))
        dst = tuple(slice(max(a, 0), min(a + n, u)) for a, n, u in zip(lo, size, upper))
        clean[dst] += patch[src]
    return clean.astype(np.float32)


# --- estimation ---


@dataclass
class Bead:
    """A bead candidate found in the image.

    Attributes
    ----------
    position : tuple of float
        Centre in pixels: sub-pixel (registered) for the beads that were averaged, the detected
        maximum otherwise.
    peak : float
        Height of the smoothed image's maximum above the background (counts).
    status : str
        ``"used"``, ``"spare"`` (usable but beyond ``max_beads``) or the reason it was rejected:
        ``"touching"`` (another bead within its window), ``"saturated"`` (a pixel at the camera's
        maximum), ``"border"`` (its window leaves the image) or ``"outlier"`` (its image differs
        from the others' more than noise explains, or it did not register).
    flux : float or None
        Total counts above background (used beads only).
    """

    position: tuple[float, ...]
    peak: float
    status: str
    flux: float | None = None


@dataclass
class BeadPSF:
    """A PSF measured from beads, with how it was obtained.

    Attributes
    ----------
    psf : np.ndarray
        Float32 kernel, odd sizes, peak on the central pixel, sum 1.
    beads : list of Bead
        Every bead candidate, with its status.
    background : float
        Level subtracted from the image (counts): camera offset and any constant background.
    noise : float
        Standard deviation of the background (counts).
    threshold : float
        Detection level above the background (counts, in the smoothed image).
    fwhm_px : tuple of float
        FWHM of ``psf`` along each axis (pixels).
    fwhm_px_std : tuple of float
        Spread (standard deviation) of the FWHM over the beads used (pixels; NaN with one bead).
    voxel : tuple of float or None
        Voxel size per axis (micrometres) when given.
    bead_diameter : float or None
        The bead diameter divided out of the PSF, if any.
    side_lobes : int
        Maxima taken for part of a brighter bead's image rather than beads.
    notes : list of str
        Warnings (for example a PSF that may be truncated).
    """

    psf: np.ndarray
    beads: list[Bead]
    background: float
    noise: float
    threshold: float
    fwhm_px: tuple[float, ...]
    fwhm_px_std: tuple[float, ...]
    voxel: tuple[float, ...] | None = None
    bead_diameter: float | None = None
    side_lobes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def used(self) -> list[Bead]:
        """The beads averaged into the PSF."""
        return [b for b in self.beads if b.status == "used"]

    @property
    def rejected(self) -> list[Bead]:
        """The beads rejected, each with its reason in ``status``."""
        return [b for b in self.beads if b.status in _REASONS]

    @property
    def rejected_counts(self) -> dict[str, int]:
        """Number of rejected beads per reason."""
        return {r: sum(b.status == r for b in self.beads) for r in _REASONS}

    @property
    def fwhm_um(self) -> tuple[float, ...] | None:
        """FWHM along each axis in micrometres (``None`` without ``voxel``)."""
        return None if self.voxel is None else tuple(w * v for w, v in zip(self.fwhm_px, self.voxel))

    @property
    def fwhm_um_std(self) -> tuple[float, ...] | None:
        """Spread of the FWHM over the beads in micrometres (``None`` without ``voxel``)."""
        return None if self.voxel is None else tuple(w * v for w, v in zip(self.fwhm_px_std, self.voxel))

    def summary(self) -> list[str]:
        """Human-readable lines describing the measurement."""
        axes = "zyx"[-self.psf.ndim :]
        counts = self.rejected_counts
        rejected = ", ".join(f"{n} {r}" for r, n in counts.items() if n) or "none"
        spare = sum(b.status == "spare" for b in self.beads)
        lines = [
            f"PSF {'x'.join(str(s) for s in self.psf.shape)} ({','.join(axes)}) from {len(self.used)} of"
            f" {len(self.beads)} beads found" + (f" ({spare} spare beyond max_beads)" if spare else ""),
            f"rejected: {rejected}",
            f"background {self.background:.2f} counts subtracted, noise {self.noise:.2f} counts,"
            f" detection threshold {self.threshold:.2f} counts above background",
        ]
        fwhm = ", ".join(f"{a} {w:.2f} +/- {s:.2f} px" for a, w, s in zip(axes, self.fwhm_px, self.fwhm_px_std))
        lines.append(f"FWHM {fwhm}")
        if self.voxel is not None:
            um = ", ".join(
                f"{a} {w:.3f} +/- {s:.3f} um"
                for a, w, s in zip(axes, self.fwhm_um, self.fwhm_um_std)  # type: ignore[arg-type]
            )
            lines.append(f"FWHM {um} (voxel {', '.join(f'{v:g}' for v in self.voxel)} um)")
        if self.bead_diameter is not None:
            lines.append(f"corrected for the bead diameter of {self.bead_diameter:g} um")
        if self.side_lobes:
            lines.append(f"{self.side_lobes} faint maxima next to brighter beads taken for part of their image")
        lines.extend(self.notes)
        return lines


@dataclass
class _Candidates:
    """Local maxima of the smoothed image: integer positions, heights and whether they clip."""

    positions: np.ndarray  # (m, ndim) int
    peaks: np.ndarray  # (m,)
    saturated: np.ndarray  # (m,) bool


@dataclass
class _Average:
    """The result of one averaging pass."""

    psf: np.ndarray  # averaged, centred, sum 1 over the window
    sigma: float  # noise standard deviation of psf per pixel
    used: np.ndarray  # candidate indices averaged
    positions: np.ndarray  # (len(used), ndim) sub-pixel positions
    flux: np.ndarray  # (len(used),)
    fwhm: np.ndarray  # (len(used), ndim) per-bead FWHM
    status: np.ndarray  # status of every candidate (object array of str)
    side_lobes: int


def _find_maxima(smoothed: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions and values of the local maxima (3^ndim neighbourhood) of ``smoothed`` above ``level``."""
    above = smoothed > level
    if not above.any():
        return np.zeros((0, smoothed.ndim), dtype=np.int64), np.zeros(0)
    local = ndimage.maximum_filter(smoothed, size=3, mode="nearest")
    peaks = np.argwhere(above & (smoothed >= local))
    return peaks, smoothed[tuple(peaks.T)]


def _window_max(image: np.ndarray, positions: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Maximum of ``image`` in the box of half-size ``half`` around each position (clipped to the image)."""
    out = np.empty(len(positions))
    upper = np.array(image.shape)
    for i, p in enumerate(positions):
        lo = np.maximum(p - half, 0)
        hi = np.minimum(p + half + 1, upper)
        out[i] = image[tuple(slice(a, b) for a, b in zip(lo, hi))].max()
    return out


def _initial_fwhm(image: np.ndarray, cands: _Candidates, background: float) -> np.ndarray:
    """Median FWHM (pixels, per axis) of line profiles through the brightest unsaturated maxima.

    Only maxima at least a quarter as bright as the brightest are measured: fainter ones may be
    noise or rings in a bright bead's tail, whose widths mean nothing.
    """
    ndim = image.ndim
    order = [i for i in np.argsort(-cands.peaks) if not cands.saturated[i]] or list(np.argsort(-cands.peaks))
    order = [i for i in order if cands.peaks[i] >= 0.25 * cands.peaks[order[0]]][:10]
    reach = 32
    widths = np.zeros((len(order), ndim))
    for axis in range(ndim):
        lines = np.zeros((len(order), 2 * reach + 1))
        for row, i in enumerate(order):
            p = cands.positions[i]
            idx = np.clip(p[axis] + np.arange(-reach, reach + 1), 0, image.shape[axis] - 1)
            index = list(p)
            index[axis] = idx  # type: ignore[call-overload]
            lines[row] = image[tuple(index)] - background
        widths[:, axis], _ = _line_fwhm(lines, reach)
    return np.maximum(np.median(widths, axis=0), 1.0)


def _saturation_level(image: np.ndarray) -> float:
    """Default saturation level: the dtype's maximum, or a camera's full scale stored in a wider type.

    A 10-, 12- or 14-bit camera stored as ``uint16`` clips at ``2**bits - 1``; if the image's
    maximum is such a value and at least two pixels reach it, that is taken as saturation.
    Floating-point images have no default (pass ``saturation``).
    """
    if image.dtype.kind not in "iu":
        return math.inf
    top = int(image.max())
    if top in (2**10 - 1, 2**12 - 1, 2**14 - 1) and int((image == top).sum()) >= 2:
        return float(top)
    return float(np.iinfo(image.dtype).max)


def _classify(
    cands: _Candidates,
    shape: tuple[int, ...],
    window: np.ndarray,
    separation: np.ndarray,
    core: np.ndarray,
    reach: np.ndarray,
) -> tuple[np.ndarray, int]:
    """Status of each maximum: usable (``"ok"``), a reason to reject it, or ``"lobe"`` (not a bead).

    Brightest first, each maximum absorbs the fainter ones within its core (the same bead: a
    saturated plateau, noise on a broad peak) and, closer than ``reach`` or ``separation``, those
    fainter than ``_NEIGHBOUR_FRACTION`` of it or next to a saturated bead (its rings and tail).
    Of the beads left, one with another bead closer than ``separation`` along every axis is
    touching.
    """
    m = len(cands.peaks)
    status = np.full(m, "ok", dtype=object)
    if m == 0:
        return status, 0
    order = np.argsort(-cands.peaks, kind="stable")
    rank = np.empty(m, dtype=np.int64)
    rank[order] = np.arange(m)
    pos = cands.positions
    alive = np.ones(m, dtype=bool)
    for i in order:
        if not alive[i]:
            continue
        d = np.abs(pos - pos[i])
        fainter = rank > rank[i]
        near = np.all(d < np.maximum(separation, reach), axis=1)
        same = np.all(d <= core, axis=1)
        lobe = near & (cands.saturated[i] | (cands.peaks < _NEIGHBOUR_FRACTION * cands.peaks[i]))
        alive[alive & fainter & (same | lobe)] = False
    status[~alive] = "lobe"
    idx = np.flatnonzero(alive)
    if len(idx) > 1:
        d = np.abs(pos[idx][:, None, :] - pos[idx][None, :, :])
        close = np.all(d < separation, axis=2)
        np.fill_diagonal(close, False)
        status[idx[close.any(axis=1)]] = "touching"
    out = np.any((pos - window < 0) | (pos + window > np.array(shape) - 1), axis=1)
    status[alive & out] = "border"
    status[alive & cands.saturated] = "saturated"
    return status, int((~alive).sum())


def _extract(image: np.ndarray, centres: np.ndarray, window: np.ndarray, background: float) -> np.ndarray:
    """Stack of background-subtracted boxes of half-size ``window`` around integer ``centres``."""
    offsets = np.meshgrid(*[np.arange(-w, w + 1) for w in window], indexing="ij")
    index = tuple(centres[:, a].reshape((-1,) + (1,) * len(window)) + offsets[a][None] for a in range(len(window)))
    return image[index].astype(np.float64) - background


def _shifted(spectra: np.ndarray, shape: tuple[int, ...], delta: np.ndarray) -> np.ndarray:
    """Crops whose spectra are ``spectra`` moved by ``-delta`` (the bead at ``delta`` goes to the centre)."""
    axes = tuple(range(1, len(shape) + 1))
    return np.fft.ifftn(spectra * _shift_phase(shape, -delta), axes=axes).real


def _register(
    spectra: np.ndarray, shape: tuple[int, ...], delta: np.ndarray, include: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Refine sub-pixel offsets by Gauss-Newton fits of each crop to the running flux-weighted mean.

    Each crop ``c_k`` is modelled near the mean ``R`` as ``a_k R(x - e_k) ~ a_k R - a_k e_k . grad R``,
    linear in ``(a_k, a_k e_k)``; the fit is over the bead core (where ``R`` exceeds a few % of its
    peak). Gradients are spectral, so that the model is consistent with the Fourier shift.

    ``include`` selects the crops that make the mean (default: those with positive flux); all
    crops are registered. Returns the offsets, amplitudes, registered crops and the mean.
    """
    grids = _frequency_grids(shape)
    for _ in range(_REGISTRATION_ITERATIONS):
        crops = _shifted(spectra, shape, delta)
        flux = crops.reshape(len(crops), -1).sum(axis=1)
        use = flux > 0 if include is None else include
        if not use.any():
            use = np.ones(len(crops), dtype=bool)
        mean = crops[use].sum(axis=0)
        mean /= mean.sum() if mean.sum() > 0 else 1.0
        mean_ft = np.fft.fftn(mean)
        grads = [np.fft.ifftn(2j * np.pi * g * mean_ft).real for g in grids]
        core = ndimage.binary_dilation(mean > _CORE_LEVEL * mean.max())
        basis = np.stack([mean[core]] + [-g[core] for g in grads])  # (nd + 1, m)
        gram = basis @ basis.T
        rhs = crops[:, core] @ basis.T  # (n, nd + 1)
        coef = np.linalg.lstsq(gram, rhs.T, rcond=None)[0].T
        amp = coef[:, 0]
        step = coef[:, 1:] / np.where(np.abs(amp) > 0, amp, 1.0)[:, None]
        step = np.clip(np.where(amp[:, None] > 0, step, 0.0), -0.5, 0.5)
        delta = delta + step
        if np.abs(step).max() < 1e-3:
            break
    crops = _shifted(spectra, shape, delta)
    return delta, amp, crops, mean


def _fourier_peak(arr: np.ndarray) -> np.ndarray:
    """Sub-pixel position of the maximum of the band-limited interpolant of ``arr`` (Newton steps)."""
    shape = arr.shape
    spectrum = np.fft.fftn(arr) / arr.size
    grids = [np.broadcast_to(g, shape) for g in _frequency_grids(shape)]
    start = np.array(np.unravel_index(int(np.argmax(arr)), shape), dtype=np.float64)
    x = start.copy()
    for _ in range(10):
        phase = spectrum * np.exp(2j * np.pi * sum(g * xi for g, xi in zip(grids, x)))
        grad = np.array([(2j * np.pi * g * phase).sum().real for g in grids])
        hess = np.array([[((2j * np.pi) ** 2 * gi * gj * phase).sum().real for gj in grids] for gi in grids])
        if np.any(np.linalg.eigvalsh(hess) >= 0):
            break
        step = -np.linalg.solve(hess, grad)
        step = np.clip(step, -0.5, 0.5)
        x = x + step
        if np.abs(step).max() < 1e-4:
            break
    if np.any(np.abs(x - start) > 1.0):
        return start
    return x


def _crop_centre(arr: np.ndarray, half: np.ndarray) -> np.ndarray:
    centre = np.array(arr.shape) // 2
    return arr[tuple(slice(c - h, c + h + 1) for c, h in zip(centre, half))]


def _average(
    image: np.ndarray,
    cands: _Candidates,
    status: np.ndarray,
    window: np.ndarray,
    background: float,
    noise: float,
    fwhm0: np.ndarray,
    max_beads: int | None,
) -> tuple[_Average | None, np.ndarray]:
    """Register and average the usable beads in windows of half-size ``window``.

    Returns the average (``None`` if no bead is usable) and the status of every candidate.
    """
    status = status.copy()
    usable = np.flatnonzero(status == "ok")
    usable = usable[np.argsort(-cands.peaks[usable], kind="stable")]
    if max_beads is not None and len(usable) > max_beads:
        status[usable[max_beads:]] = "spare"
        usable = usable[:max_beads]
    if len(usable) == 0:
        return None, status
    shape = tuple(int(2 * w + 1) for w in window)
    nd = len(shape)
    crops = _extract(image, cands.positions[usable], window, background)
    # Start from the centroid of the positive signal in the core: robust, and close enough for
    # the Gauss-Newton refinement to converge.
    core = np.maximum(np.round(fwhm0).astype(int), 1)
    offsets = np.meshgrid(*[np.arange(-w, w + 1) for w in window], indexing="ij")
    in_core = np.all([np.abs(o) <= c for o, c in zip(offsets, core)], axis=0)
    weights = np.clip(crops, 0.0, None) * in_core
    total = weights.reshape(len(crops), -1).sum(axis=1)
    total = np.where(total > 0, total, 1.0)
    delta = np.stack([(weights * o).reshape(len(crops), -1).sum(axis=1) / total for o in offsets], axis=1)
    delta = np.clip(delta, -0.5, 0.5)

    spectra = np.fft.fftn(crops, axes=tuple(range(1, nd + 1)))
    delta, amp, registered, mean = _register(spectra, shape, delta)
    inlier = (amp > 0) & np.all(np.abs(delta) <= _MAX_REGISTRATION_SHIFT, axis=1)
    n_pixels = int(np.prod(shape))
    # Residual energy against the noise expected from the background and the bead's own shot
    # noise (a gain estimated from all beads); beads far above the rest are outliers.
    for _ in range(2):
        if inlier.sum() < 3:
            break
        resid = registered - amp.reshape((-1,) + (1,) * nd) * mean
        energy = (resid**2).reshape(len(crops), -1).sum(axis=1)
        base = n_pixels * noise**2
        gain = np.median(np.clip(energy[inlier] - base, 0.0, None) / np.maximum(amp[inlier], 1e-12))
        ratio = energy / (base + gain * np.clip(amp, 0.0, None) + 1e-12)
        med = np.median(ratio[inlier])
        spread = _robust_std(ratio[inlier])
        new = inlier & (ratio <= max(med + _OUTLIER_SIGMAS * spread, _OUTLIER_MIN_RATIO * med))
        if new.sum() == inlier.sum() or not new.any():
            break
        inlier = new
        delta, amp, registered, mean = _register(spectra, shape, delta, include=inlier)
    if not inlier.any():
        status[usable] = "outlier"
        return None, status
    status[usable[~inlier]] = "outlier"
    status[usable[inlier]] = "used"
    delta, amp = delta[inlier], amp[inlier]
    spectra = spectra[inlier]

    # Centre on the peak of the mean: move every bead by the mean's sub-pixel peak offset.
    mean = _shifted(spectra, shape, delta).sum(axis=0)
    peak = _fourier_peak(mean) - np.array(shape) // 2
    delta = delta + peak
    registered = _shifted(spectra, shape, delta)
    flux_each = registered.reshape(len(registered), -1).sum(axis=1)
    total_flux = float(registered.sum())
    mean = registered.sum(axis=0) / total_flux
    # Each crop's background pixels have standard deviation ``noise`` (the Fourier shift is
    # unitary); the sum of n crops divided by the total flux has sqrt(n) noise / flux.
    sigma = noise * math.sqrt(len(registered)) / total_flux
    centre = np.array(shape) // 2
    fwhm = np.zeros((len(registered), nd))
    for axis in range(nd):
        index: list[object] = [slice(None)] + [int(c) for c in centre]
        index[axis + 1] = slice(None)
        fwhm[:, axis], _ = _line_fwhm(registered[tuple(index)], int(centre[axis]))
    positions = cands.positions[usable[inlier]] + delta
    return _Average(mean, sigma, usable[inlier], positions, flux_each, fwhm, status, 0), status


def _extent(mean: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Half-size per axis at which the marginals of ``mean`` first fall to the noise floor.

    Walking out from the centre on both sides, the PSF ends at the first sample of the marginal
    below the floor (that sample is kept as a margin). The floor is ``_EXTENT_SIGMAS`` noise
    standard deviations of the marginal, or ``_EXTENT_RELATIVE`` of its maximum when the data are
    almost noise-free. The first crossing (not the last significant sample) keeps light from
    neighbours at the window's edge from passing for PSF. Also returns, per axis, whether the
    marginal never reached the floor inside the window (the PSF may be truncated).
    """
    nd = mean.ndim
    centre = np.array(mean.shape) // 2
    out = np.zeros(nd, dtype=np.int64)
    truncated = np.zeros(nd, dtype=bool)
    for axis in range(nd):
        marginal = mean.sum(axis=tuple(i for i in range(nd) if i != axis))
        noise = sigma * math.sqrt(mean.size / mean.shape[axis])
        floor = max(_EXTENT_SIGMAS * noise, _EXTENT_RELATIVE * float(marginal.max()))
        c = int(centre[axis])
        for side in (marginal[c:], marginal[c::-1]):
            below = np.flatnonzero(side < floor)
            if below.size == 0:
                truncated[axis] = True
                out[axis] = max(out[axis], c)
            else:
                out[axis] = max(out[axis], int(below[0]))
    return out, truncated


def _clip_floor(psf: np.ndarray, sigma: float) -> np.ndarray:
    """Set the noise floor of ``psf`` to 0: negatives, and pixels where a smoothed copy is within noise.

    Testing the smoothed copy (a Gaussian of one pixel, whose noise is ``sigma * sqrt(sum g^2)``)
    keeps faint but extended structure such as rings, which is real flux, while zeroing the
    isolated noise pixels of the tails.
    """
    kernel = np.zeros((9,) * psf.ndim)
    kernel[(4,) * psf.ndim] = 1.0
    gain = float(np.sqrt((ndimage.gaussian_filter(kernel, 1.0) ** 2).sum()))
    smooth = ndimage.gaussian_filter(psf, 1.0, mode="constant")
    return np.where((smooth < _FLOOR_SIGMAS * sigma * gain) | (psf < 0), 0.0, psf)


def _bead_correction(
    psf: np.ndarray, sigma: float, voxel: tuple[float, ...], diameter: float
) -> tuple[np.ndarray, float]:
    """Divide the bead's sphere transform out of ``psf`` (Wiener-regularized); new noise level too."""
    sphere = _sphere_transform(psf.shape, voxel, diameter)
    otf = np.fft.fftn(np.fft.ifftshift(psf))
    noise_power = psf.size * sigma**2
    signal_power = np.maximum(np.abs(otf) ** 2 - noise_power, 1e-30)
    reg = np.maximum(noise_power / signal_power, _MIN_REGULARIZATION)
    filt = sphere / (sphere**2 + reg)
    out = np.fft.fftshift(np.fft.ifftn(otf * filt).real)
    return out, sigma * float(np.sqrt(np.mean(filt**2)))


def estimate_psf(
    image: np.ndarray,
    *,
    shape: int | Sequence[int] | None = None,
    voxel: float | Sequence[float] | None = None,
    bead_diameter: float | None = None,
    offset: float | None = None,
    min_separation: float | Sequence[float] | None = None,
    threshold: float | None = None,
    saturation: float | None = None,
    max_beads: int | None = None,
) -> BeadPSF:
    """Estimate the PSF from an image of sub-resolution beads (2D or 3D).

    1. Candidates are the local maxima of the image smoothed by a Gaussian of one pixel, higher
       than ``threshold`` noise standard deviations above the background.
    2. A maximum within the core of a brighter one, or faint next to it (its rings or tail), is
       part of that bead. A bead is rejected as *saturated* when a pixel of its window reaches
       the dtype's maximum (integer images) or ``saturation``, as *border* when its window leaves
       the image, and as *touching* when another bead is closer than ``min_separation`` along
       every axis.
    3. The background (camera offset and any constant) is the sigma-clipped mean of the pixels
       away from all maxima, or ``offset``; it is subtracted.
    4. Each bead is registered to sub-pixel precision (a centroid, then Gauss-Newton fits to the
       running mean with Fourier shifts). Beads whose residual from the scaled mean is far above
       what noise explains are rejected as *outliers*: a neighbour too faint to be detected or
       closer than the resolution (a merged pair), a hot pixel, a cosmic ray. The crops are
       summed (a flux-weighted mean) and centred on the peak of the band-limited interpolant.
    5. With ``shape=None`` the window grows until the mean's marginals fall to the noise along
       every axis; the PSF is then cropped there (plus one pixel) so that it is neither truncated
       nor as large as the image.
    6. Optionally the bead's size is divided out (``bead_diameter`` and ``voxel``); values below
       twice the residual noise are set to 0 and the PSF is normalized to sum 1.

    Parameters
    ----------
    image : np.ndarray
        Bead image, 2D ``(y, x)`` or 3D ``(z, y, x)``, raw camera counts preferably.
    shape : int or sequence of int, optional
        Odd size of the PSF; default automatic.
    voxel : float or sequence of float, optional
        Voxel size per axis in micrometres (e.g. ``(0.25, 0.1, 0.1)``): FWHM are then also
        reported in micrometres, and it is needed for the bead-size correction.
    bead_diameter : float, optional
        Bead diameter in micrometres; with ``voxel``, the bead's size is divided out of the PSF.
    offset : float, optional
        Background to subtract (e.g. the camera offset); estimated from the image by default.
    min_separation : float or sequence of float, optional
        Distance (pixels, one value or one per axis) below which, along every axis, two beads
        count as touching. Default: the PSF's half-size plus one FWHM, so that no other bead's
        centre lies in a bead's crop.
    threshold : float, optional
        Detection level in noise standard deviations of the smoothed image (default 6).
    saturation : float, optional
        Level from which a pixel counts as saturated (default: the dtype's maximum for integer
        images; none for floating-point images).
    max_beads : int, optional
        Average at most this many beads (the brightest usable ones).

    Returns
    -------
    BeadPSF
        The PSF and the record of the measurement (see :meth:`BeadPSF.summary`).

    Raises
    ------
    InputError
        If the image is not 2D/3D, the arguments are invalid, or no usable bead is found (with
        the number of candidates and why each was rejected).
    """
    arr = np.asarray(image)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"bead image has dtype {arr.dtype}; real-valued counts are needed.")
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim not in (2, 3):
        raise InputError(f"bead image has shape {arr.shape}; a 2D (y, x) or 3D (z, y, x) image is needed.")
    nd = arr.ndim
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError("bead image contains NaN or infinite values.")
    voxel_t = _per_axis(voxel, nd, "voxel") if voxel is not None else None
    if bead_diameter is not None:
        if voxel_t is None:
            raise InputError("bead_diameter needs voxel (the voxel size in micrometres) to correct for the bead size.")
        if not (isinstance(bead_diameter, numbers.Real) and bead_diameter > 0):
            raise InputError(f"bead_diameter must be a positive number of micrometres, got {bead_diameter!r}.")
    fixed_shape = _odd_shape(shape, nd) if shape is not None else None
    if fixed_shape is not None and any(s > n for s, n in zip(fixed_shape, arr.shape)):
        raise InputError(f"shape {fixed_shape} is larger than the image {arr.shape}; choose a smaller PSF size.")
    k = _DEFAULT_THRESHOLD if threshold is None else float(threshold)
    if not (math.isfinite(k) and k > 0):
        raise InputError(f"threshold must be a positive number of noise standard deviations, got {threshold!r}.")
    if max_beads is not None and (not isinstance(max_beads, numbers.Integral) or max_beads < 1):
        raise InputError(f"max_beads must be a positive integer, got {max_beads!r}.")
    if saturation is None:
        sat_level = _saturation_level(arr)
    else:
        sat_level = float(saturation)

    data = arr.astype(np.float32)
    lo, hi = float(data.min()), float(data.max())
    if hi <= lo:
        raise InputError(f"bead image is constant ({lo:g}); there is no bead to measure.")

    # Preliminary background and noise from medians (beads cover a small fraction of the image),
    # enough to find the maxima; then refined away from them.
    sample = _sample(data)
    median = float(np.median(sample))
    smoothed = ndimage.gaussian_filter(data, _SMOOTHING_SIGMA, mode="nearest")
    s_sample = _sample(smoothed)
    s_median = float(np.median(s_sample))
    s_noise = _robust_std(s_sample) or 1e-3 * (float(smoothed.max()) - s_median)
    positions, peaks = _find_maxima(smoothed, s_median + 0.5 * k * s_noise)
    if len(peaks) > _MAX_CANDIDATES:
        keep = np.argsort(-peaks)[:_MAX_CANDIDATES]
        positions, peaks = positions[keep], peaks[keep]

    # Refined background: clipped mean of the pixels outside boxes around the maxima. A mean,
    # not a median, because low counts are integers and their median is biased.
    # Only maxima above the full threshold are masked: masking around the many noise maxima
    # between half and full threshold would leave the negative fluctuations, biasing it low.
    far = np.ones(data.shape, dtype=bool)
    strong = peaks > s_median + k * s_noise
    if strong.any():
        pre = _Candidates(positions[strong], peaks[strong] - s_median, np.zeros(int(strong.sum()), dtype=bool))
        box = np.ceil(4.0 * _initial_fwhm(data, pre, median)).astype(int) + 2
        for p in pre.positions[np.argsort(-pre.peaks)[:500]]:
            far[tuple(slice(max(c - b, 0), c + b + 1) for c, b in zip(p, box))] = False
    if far.sum() < 100:
        far[:] = True
    # A noise-free (simulated) image still needs a positive noise scale for the floors below.
    tiny = 1e-6 * (hi - lo)
    raw_noise = _robust_std(_sample(data[far])) or float(data[far].std()) or tiny
    clip = np.abs(data[far] - median) < 5.0 * raw_noise
    bg_pixels = data[far][clip] if clip.any() else data[far]
    estimated = float(bg_pixels.mean())
    noise = float(bg_pixels.std()) or tiny
    background = estimated if offset is None else float(offset)
    s_bg = smoothed[far][clip]
    s_level = float(s_bg.mean()) - estimated + background
    s_noise = float(s_bg.std()) or s_noise
    level = s_level + k * s_noise
    # Smoothing averages fewer independent pixels at the image's faces, so its noise is higher
    # there: maxima on the outer frame must clear twice the threshold.
    frame = np.any((positions < 2) | (positions > np.array(data.shape) - 3), axis=1)
    keep = peaks > np.where(frame, s_level + 2.0 * k * s_noise, level)
    positions, peaks = positions[keep], peaks[keep]
    if len(peaks) == 0:
        raise InputError(
            f"no bead found: no local maximum rises more than {k:g} noise standard deviations ({k * s_noise:.3g}"
            f" counts) above the background ({background:.4g} counts, noise {noise:.3g}); the image looks like"
            " background only. Check that this is the bead image, that the background (offset="
            f"{offset!r}) is right, or lower threshold= (now {k:g})."
        )
    saturated = _window_max(arr, positions, np.ones(nd, dtype=int)) >= sat_level
    cands = _Candidates(positions, peaks - s_level, saturated)
    fwhm0 = _initial_fwhm(data, cands, background)
    core = np.maximum(np.floor(fwhm0), 1.0)
    min_sep = None if min_separation is None else np.array(_per_axis(min_separation, nd, "min_separation"))
    max_window = (np.array(arr.shape) - 1) // 2

    def attempt(window: np.ndarray) -> tuple[_Average | None, np.ndarray]:
        # By default no other bead's centre may lie in the crop, nor within one FWHM of it.
        separation = window + np.ceil(fwhm0) if min_sep is None else min_sep
        cands.saturated = _window_max(arr, positions, window) >= sat_level
        # Rings and tails reach beyond a small starting window: look for them at least 4 FWHM out.
        status, lobes = _classify(cands, arr.shape, window, separation, core, np.maximum(window, 4.0 * fwhm0))
        result, status = _average(data, cands, status, window, background, noise, fwhm0, max_beads)
        if result is not None:
            result.side_lobes = lobes
        return result, status

    notes: list[str] = []
    if fixed_shape is not None:
        window = np.array(fixed_shape) // 2
        result, status = attempt(window)
    else:
        # Start small and grow the window until the PSF falls to the noise inside it.
        window = np.minimum(np.maximum(np.ceil(1.5 * fwhm0).astype(int), 2), max_window)
        result, status = attempt(window)
        for _ in range(_GROWTH_ROUNDS):
            if result is None:
                break
            _, truncated = _extent(result.psf, result.sigma)
            if not truncated.any():
                break
            grown = np.where(truncated, np.ceil(_GROWTH_FACTOR * window).astype(int), window)
            grown = np.minimum(grown, max_window)
            if np.array_equal(grown, window):
                notes.append(
                    "warning: the PSF reaches the largest window the image allows along axis"
                    f" {list(np.flatnonzero(truncated))}; it may be truncated (use a larger image)."
                )
                break
            trial, trial_status = attempt(grown)
            if trial is None:
                notes.append(
                    f"warning: the PSF may be truncated along axis {list(np.flatnonzero(truncated))}: a larger"
                    " window leaves no usable bead (beads too dense or too close to the border)."
                )
                break
            window, result, status = grown, trial, trial_status
        if result is not None:
            # Crop where the PSF ends; the crop's smaller windows may admit more beads.
            final = np.minimum(_extent(result.psf, result.sigma)[0], window)
            final = np.maximum(final, np.ceil(fwhm0).astype(int))
            final = np.minimum(final, max_window)
            if not np.array_equal(final, window):
                trial, trial_status = attempt(final)
                if trial is not None:
                    window, result, status = final, trial, trial_status
                else:
                    result = _Average(
                        _crop_centre(result.psf, final), result.sigma, result.used, result.positions,
                        result.flux, result.fwhm, result.status, result.side_lobes,
                    )  # fmt: skip

    if result is None:
        counts = {r: int((status == r).sum()) for r in (*_REASONS, "spare")}
        n_beads = int((status != "lobe").sum())
        reasons = ", ".join(f"{n} {r}" for r, n in counts.items() if n)
        advice = []
        if counts["touching"]:
            advice.append("image sparser beads or give a smaller min_separation= or shape=")
        if counts["saturated"]:
            advice.append("lower the exposure or laser power so that no bead saturates (or set saturation=)")
        if counts["border"]:
            advice.append("image a larger field or give a smaller shape=")
        if counts["outlier"]:
            advice.append("check that the maxima are beads (raise threshold=)")
        raise InputError(
            f"no usable bead: {n_beads} bead candidates above the threshold ({level - s_level:.3g} counts above"
            f" a background of {background:.4g}), rejected as {reasons}. Try to " + "; ".join(advice) + "."
        )

    psf = result.psf
    sigma = result.sigma
    if bead_diameter is not None:
        psf, sigma = _bead_correction(psf, sigma, voxel_t, float(bead_diameter))  # type: ignore[arg-type]
    psf = _clip_floor(psf, sigma)
    if not psf.sum() > 0:
        raise InputError("the averaged beads are below the noise floor; image brighter beads or more of them.")
    psf = normalize_psf(psf)

    fwhm_px = psf_fwhm(psf)
    spread = result.fwhm.std(axis=0, ddof=1) if len(result.fwhm) > 1 else np.full(nd, np.nan)
    used_set = {int(i): j for j, i in enumerate(result.used)}
    beads = []
    for i, st in enumerate(result.status):
        if st == "lobe":
            continue
        if i in used_set:
            j = used_set[i]
            beads.append(Bead(tuple(float(v) for v in result.positions[j]), float(cands.peaks[i]), "used",
                              float(result.flux[j])))  # fmt: skip
        else:
            beads.append(Bead(tuple(float(v) for v in positions[i]), float(cands.peaks[i]), str(st)))
    coarse = [i for i, w in enumerate(fwhm_px) if w < 2.0]
    if coarse:
        notes.append(
            f"warning: the PSF is undersampled along axis {coarse} (FWHM below 2 pixels): sub-pixel registration"
            " cannot be exact and the PSF comes out too wide; image the beads at a finer voxel size (Nyquist)."
        )
    if len(result.used) < 3:
        notes.append(f"only {len(result.used)} bead(s) averaged: the PSF is noisy and the spread is unreliable.")
    return BeadPSF(
        psf=psf,
        beads=beads,
        background=background,
        noise=noise,
        threshold=float(level - s_level),
        fwhm_px=fwhm_px,
        fwhm_px_std=tuple(float(s) for s in spread),
        voxel=voxel_t,
        bead_diameter=float(bead_diameter) if bead_diameter is not None else None,
        side_lobes=result.side_lobes,
        notes=notes,
    )


# --- resampling ---


def resample_psf(
    psf: np.ndarray,
    from_voxel: float | Sequence[float],
    to_voxel: float | Sequence[float],
    shape: int | Sequence[int] | None = None,
) -> np.ndarray:
    """Resample a PSF measured at one voxel size onto another voxel grid.

    The samples are interpolated by a cubic spline and evaluated at the new pixel centres, with the
    central pixel mapped onto the central pixel, so that the PSF stays centred. Like
    :func:`siamdecon.psf.generate_psf`, the PSF is treated as point samples of a smooth function.
    Negative spline overshoots are clipped and the result is normalized to sum 1.

    Parameters
    ----------
    psf : np.ndarray
        2D or 3D kernel with odd sizes.
    from_voxel : float or sequence of float
        Voxel size of ``psf`` per axis (micrometres).
    to_voxel : float or sequence of float
        Voxel size wanted per axis (that of the data to deconvolve).
    shape : int or sequence of int, optional
        Odd output shape; default the same physical extent as ``psf``.

    Returns
    -------
    np.ndarray
        Float32 kernel of odd sizes, summing to 1.

    Examples
    --------
    >>> from siamdecon.psf import generate_psf
    >>> resample_psf(generate_psf(ndim=2, size=15), 0.406, 0.203).shape
    (29, 29)
    """
    arr = validate_psf(psf, source="PSF")
    nd = arr.ndim
    src = np.array(_per_axis(from_voxel, nd, "from_voxel"))
    dst = np.array(_per_axis(to_voxel, nd, "to_voxel"))
    ratio = dst / src  # output pixel in input pixels
    half_in = (np.array(arr.shape) - 1) / 2.0
    if shape is None:
        out_shape = tuple(int(2 * round(h / r) + 1) for h, r in zip(half_in, ratio))
    else:
        out_shape = _odd_shape(shape, nd)
    coords = [half_in[a] + (np.arange(n) - (n - 1) / 2.0) * ratio[a] for a, n in enumerate(out_shape)]
    grid = np.meshgrid(*coords, indexing="ij")
    out = ndimage.map_coordinates(arr, grid, order=3, mode="grid-constant", cval=0.0, prefilter=True)
    out = np.clip(out, 0.0, None)
    if not out.sum() > 0:
        raise InputError(
            f"resampling the PSF from voxel {tuple(src)} to {tuple(dst)} with shape {out_shape} leaves nothing;"
            " check the voxel sizes (micrometres, one per axis in array order)."
        )
    return normalize_psf(out)
