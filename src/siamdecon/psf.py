"""Point spread function (PSF) utilities for ``siamdecon``.

Generation follows the Gibson-Lanni model of a fluorescence objective (sample, coverslip and immersion
layers with their design values) in its scalar form and in the vectorial form of Aguet et al. (2009):

- :func:`generate_psf`: the paper's kernels (scalar, Richards & Wolf limit, particle scan);
- :func:`widefield_psf` and :func:`confocal_psf`: kernels of a given microscope and emitter depth,
  centred on best focus, with automatic sizes from :func:`auto_psf_shape`;
- :func:`best_focus_position`: the focal shift caused by index mismatch.
"""

from __future__ import annotations

import functools
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import interpolate, optimize, special

from .errors import InputError

__all__ = [
    "generate_psf",
    "widefield_psf",
    "confocal_psf",
    "auto_psf_shape",
    "best_focus_position",
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
# Pupil coordinate.  ``s = NA * rho`` (``rho`` the normalised pupil radius) is the lateral wavenumber, in
# units of ``k = 2 pi / wavelength``, of a plane wave leaving the emitter; by Snell's law ``s = n sin(theta)``
# in every layer.  With ``c_n(s) = sqrt(n**2 - s**2)`` (``= n cos(theta)`` in the layer of index ``n``) the
# Gibson-Lanni optical path difference of an emitter at depth ``pz`` above the coverslip, imaged with the
# stage at focal position ``f``, is
#
#     OPD(s) = pz c_ns + (ti0 - f) c_ni - ti0 c_ni0 + tg c_ng - tg0 c_ng0
#
# (Gibson & Lanni 1991 in the notation of Li, Xue & Blu, JOSA A 34, 1029 (2017), whose ``ti = ti0 + zv``
# is ``ti = ti0 - f`` here).  ``f`` is the stage displacement from the position that focuses on the
# coverslip surface in the design conditions, positive when the objective approaches the sample, so that
# the focal plane moves into the sample; a stack's z step is a step of ``f``.  A focal scan varies ``f``
# at fixed ``pz`` (what a z-stack of a sample or of a bead records); a particle scan varies ``pz`` at fixed
# ``f``.  With all indices equal, ``OPD = (pz - f) c_n``: pure defocus, the Richards & Wolf limit used by
# :func:`generate_psf`.
#
# Scalar model (Gibson-Lanni): uniform pupil,
#
#     A(r) = int J0(k s' r) exp(i k OPD(s)) s ds,        I = |A|**2,
#
# where ``s' = s * NA_eff / NA`` and ``NA_eff = NA * M / sqrt(M**2 + NA**2)`` (``M`` the magnification)
# is the effective aperture of the Li et al. implementation that produced the paper's kernels (``M``
# infinite, ``s' = s``, for :func:`widefield_psf`).
#
# Vectorial model (Aguet et al., Opt. Express 17, 6829 (2009); Torok et al.): a freely rotating dipole,
#
#     I_m(r) = int J_m(k s' r) exp(i k OPD(s)) P_m(s) s ds / sqrt(c_ni),   I = |I_0|**2 + 2 |I_1|**2 + |I_2|**2,
#     P_0 = t_s + t_p cos_s,   P_1 = t_p sin_s,   P_2 = t_s - t_p cos_s,
#
# with ``cos_s = c_ns / ns`` and ``sin_s = s / ns`` the polar angle of the ray in the sample.  The factor
# ``1 / sqrt(c_ni)`` is the aplanatic ``sqrt(cos(theta)) sin(theta) d(theta)`` of the immersion-side angle
# written in ``s`` (``sin(theta) d(theta) = s ds / (ni c_ni)``).  ``t_s, t_p`` are the products of the
# Fresnel amplitude transmission coefficients of the immersion/coverslip and coverslip/sample interfaces
# for light going from the immersion medium into the sample,
#
#     t_s = 4 c_ni c_ng / ((c_ni + c_ng) (c_ng + c_ns)),
#     t_p = 4 c_ni c_ng ni ng**2 ns / ((ng**2 c_ni + ni**2 c_ng) (ns**2 c_ng + ng**2 c_ns)).
#
# These, not the sample-to-immersion coefficients, give the emitter's far field in the immersion medium:
# the plane-wave (Weyl) spectrum of a dipole carries ``1 / c_ns`` and the far field in the immersion
# medium ``c_ni`` times the spectrum, and ``t(sample -> immersion) * c_ni / c_ns = t(immersion -> sample)``
# (reciprocity).  They stay finite at the critical angle.
#
# Aperture.  ``s`` runs up to ``min(NA, ns, ni, ni0, ng, ng0)`` (all waves propagating, as in Li et al.).
# With ``supercritical=True`` and ``ns < NA`` it runs up to ``min(NA, ni, ni0, ng, ng0)``: ``c_ns`` is then
# imaginary and ``exp(i k pz c_ns)`` the decay of the near field, the supercritical-angle emission of
# emitters within about a wavelength of the coverslip (psfmodels includes it).
#
# Quadrature.  On each interval ``[a, b]`` of ``s`` (split at ``s = ns`` when the aperture extends past
# it) the integral is taken in ``phi`` with ``s**2 = a**2 + (b**2 - a**2) sin(phi)**2``: this removes the
# square-root endpoint singularity of ``c_n`` at ``s = n`` (aperture limited by an index, critical angle),
# so Gauss-Legendre converges exponentially.  The node count follows the fastest oscillation of the
# integrand (phase and Bessel argument).
#
# Lateral sampling.  The intensity is rotationally symmetric and band-limited (lateral frequencies below
# ``2 s_max / wavelength``), so it is computed on a radial grid of 32 samples per period of its finest
# fringe and interpolated onto the pixels with a cubic spline (error about 1e-7 of the peak);
# ``oversample > 1`` averages ``oversample**2`` sub-pixel samples per pixel (pixel integration).
# :func:`generate_psf` keeps its coarser grid with linear interpolation, which reproduces the paper's
# kernels.

_RADIAL_OVERSAMPLING = 2
_MIN_QUADRATURE_NODES = 24
_PHASE_SAMPLES = 257
_RADIAL_SAMPLES_PER_PERIOD = 32
_PINHOLE_NODES_PER_PERIOD = 6
_FOCUS_SEARCH_POINTS = 4001
_MAX_PINHOLE_AU = 20.0
_MAX_OVERSAMPLE = 15
_RADIAL_BLOCK = 256
_MATRIX_ELEMENTS = 1 << 20
_MODELS = ("scalar", "vectorial")
_SCANS = ("focal", "particle")

#: Default caps of :func:`auto_psf_shape` (lateral pixels, planes): a 255**3 float32 kernel is 66 MB.
DEFAULT_MAX_SIZE = 255
DEFAULT_MAX_NUM_Z = 255


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


def _check_nonnegative_float(name: str, value: object) -> float:
    out = _check_finite_float(name, value)
    if out < 0:
        raise ValueError(f"{name} must be non-negative, got {value!r}")
    return out


def _check_positive_int(name: str, value: object) -> int:
    if not _is_int(value) or int(value) <= 0:  # type: ignore[call-overload]
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def _check_odd_int(name: str, value: object) -> int:
    out = _check_positive_int(name, value)
    if out % 2 == 0:
        raise ValueError(f"{name} must be odd so the PSF is centred, got {out}")
    return out


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        options = " or ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be {options}, got {value!r}")
    return value


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


@dataclass(frozen=True)
class _Optics:
    """Validated objective and sample parameters (indices, thicknesses in micrometres)."""

    na: float
    ni: float
    ni0: float
    ns: float
    ng: float
    ng0: float
    tg: float
    tg0: float
    ti0: float
    lateral_scale: float
    model: str
    supercritical: bool

    def segments(self) -> list[tuple[float, float]]:
        """Intervals of ``s`` integrated over, split at ``s = ns`` where the sample wave turns evanescent."""
        s_max = min(self.na, self.ni, self.ni0, self.ng, self.ng0)
        if self.ns >= s_max:
            return [(0.0, s_max)]
        if not self.supercritical:
            return [(0.0, self.ns)]
        return [(0.0, self.ns), (self.ns, s_max)]

    @property
    def s_max(self) -> float:
        return self.segments()[-1][1]

    @property
    def s_propagating(self) -> float:
        """Largest ``s`` of a wave that propagates in every layer (it focuses)."""
        return min(self.s_max, self.ns)

    def opd(self, s: np.ndarray, pz: np.ndarray, f: np.ndarray) -> np.ndarray:
        """Optical path difference (um), shape ``(len(pz), len(s))``; complex (decay) where ``s > ns``."""
        ci, ci0, cg, cg0 = (np.sqrt(np.maximum(n * n - s * s, 0.0)) for n in (self.ni, self.ni0, self.ng, self.ng0))
        cs = np.sqrt((self.ns**2 - s * s).astype(complex))
        # ti0 * (c_ni - c_ni0) rather than ti * c_ni - ti0 * c_ni0: no cancellation of two ~200 um paths.
        base = self.ti0 * (ci - ci0) + self.tg * cg - self.tg0 * cg0
        return base[None, :] + np.outer(pz, cs) - np.outer(f, ci)

    def pupil(self, s: np.ndarray) -> tuple[np.ndarray, ...]:
        """Pupil functions ``P_m / sqrt(c_ni)`` (vectorial) or ``(1,)`` (scalar) at the nodes ``s``."""
        if self.model == "scalar":
            return (np.ones_like(s),)
        ci = np.sqrt(self.ni**2 - s * s)
        cg = np.sqrt(np.maximum(self.ng**2 - s * s, 0.0))
        cs = np.sqrt((self.ns**2 - s * s).astype(complex))
        ni, ng, ns = self.ni, self.ng, self.ns
        t_s = 4.0 * ci * cg / ((ci + cg) * (cg + cs))
        t_p = 4.0 * ci * cg * ni * ng**2 * ns / ((ng**2 * ci + ni**2 * cg) * (ns**2 * cg + ng**2 * cs))
        apodization = 1.0 / np.sqrt(ci)
        cos_s, sin_s = cs / ns, s / ns
        return (
            apodization * (t_s + t_p * cos_s),
            apodization * t_p * sin_s,
            apodization * (t_s - t_p * cos_s),
        )


@functools.lru_cache(maxsize=64)
def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    # scipy's roots_legendre is O(n) (numpy's leggauss solves an eigenproblem, seconds for n ~ 1000).
    x, w = special.roots_legendre(n)
    x.flags.writeable = False
    w.flags.writeable = False
    return x, w


def _pupil_nodes(
    optics: _Optics, wavenumber: float, r_max: float, pz: np.ndarray, f: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes ``s`` and weights (including the ``s ds`` Jacobian) for all planes ``(pz, f)``."""
    phi_dense = np.linspace(0.0, np.pi / 2, _PHASE_SAMPLES)
    dphi = phi_dense[1] - phi_dense[0]
    nodes, weights = [], []
    for a, b in optics.segments():
        span = b * b - a * a
        s_dense = np.sqrt(a * a + span * np.sin(phi_dense) ** 2)
        # Gauss-Legendre integrates an oscillation of N radians with about N / 2 nodes once the integrand
        # is analytic (it is, in phi); N from the fastest phase and Bessel-argument rate over the interval
        # and a floor of nodes keep the error below 1e-9 of the peak.
        phase_rate = np.abs(np.diff(optics.opd(s_dense, pz, f).real, axis=1)).max() / dphi
        bessel_rate = optics.lateral_scale * r_max * np.abs(np.diff(s_dense)).max() / dphi
        span_rad = wavenumber * (phase_rate + bessel_rate) * (np.pi / 2)
        n = _MIN_QUADRATURE_NODES + 8 * int(np.ceil(0.5 * span_rad / 8))  # multiples of 8 reuse the cache
        x, w = _gauss_legendre(n)
        phi = np.pi / 4 * (x + 1.0)
        nodes.append(np.sqrt(a * a + span * np.sin(phi) ** 2))
        weights.append(span * np.sin(phi) * np.cos(phi) * (np.pi / 4) * w)
    return np.concatenate(nodes), np.concatenate(weights)


def _bessel(order: int, x: np.ndarray) -> np.ndarray:
    if order == 0:
        return special.j0(x)
    if order == 1:
        return special.j1(x)
    # J2 = 2 J1(x) / x - J0(x): exact to rounding (absolute), much faster than special.jv.
    safe = np.where(x == 0.0, 1.0, x)
    return np.where(x == 0.0, 0.0, 2.0 * special.j1(x) / safe - special.j0(x))


def _intensity(optics: _Optics, wavelength: float, radii: np.ndarray, pz: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Unnormalised intensity at ``radii`` (um) of the planes ``(pz[j], f[j])``: shape ``(len(pz), len(radii))``."""
    k = 2.0 * np.pi / wavelength
    radii = np.asarray(radii, dtype=np.float64)
    pz = np.asarray(pz, dtype=np.float64)
    f = np.asarray(f, dtype=np.float64)
    s, w = _pupil_nodes(optics, k, float(radii.max(initial=0.0)), pz, f)
    pupil = [w * p for p in optics.pupil(s)]
    multiplicity = (1.0, 2.0, 1.0)
    out = np.zeros((pz.size, radii.size))
    # Blocks of radii and planes bound the memory of the (radii x nodes) and (planes x nodes) matrices.
    block = max(1, _MATRIX_ELEMENTS // s.size)
    for r0 in range(0, radii.size, block):
        rows = slice(r0, r0 + block)
        x = k * optics.lateral_scale * np.outer(radii[rows], s)  # (nr, nq)
        bessel = [_bessel(order, x).T for order in range(len(pupil))]
        for z0 in range(0, pz.size, block):
            planes = slice(z0, z0 + block)
            phase = np.exp(1j * k * optics.opd(s, pz[planes], f[planes]))  # (nz, nq)
            for order, p in enumerate(pupil):
                amplitude = (phase * p) @ bessel[order]
                out[planes, rows] += multiplicity[order] * (amplitude.real**2 + amplitude.imag**2)
    return out


def _spline(radii: np.ndarray, profile: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Cubic spline through ``profile`` (planes x radii); the returned function gives planes x points."""
    # Zero slope at r = 0: the intensity is an even function of r.
    spline = interpolate.CubicSpline(radii, profile.T, axis=0, bc_type=((1, np.zeros(profile.shape[0])), "not-a-knot"))
    return lambda r: spline(r).T


def _radial_grid(r_max: float, period: float) -> np.ndarray:
    step = period / _RADIAL_SAMPLES_PER_PERIOD
    return np.arange(int(np.ceil(r_max / step)) + 4) * step


@dataclass(frozen=True)
class _System:
    """A widefield (``excitation is None``) or confocal microscope and the emitter's depth."""

    optics: _Optics
    emission: float
    excitation: float | None
    pinhole_radius: float
    depth: float
    scan: str

    @property
    def period(self) -> float:
        """Period (um) of the finest lateral fringe of the intensity."""
        s = self.optics.s_max * self.optics.lateral_scale
        frequency = 2.0 * s / self.emission + (0.0 if self.excitation is None else 2.0 * s / self.excitation)
        return 1.0 / frequency

    @property
    def axial_unit(self) -> float:
        """Axial extent (um) of the central lobe of the scanned variable, for search ranges and first sizes."""
        n = self.optics.ni if self.scan == "focal" else self.optics.ns
        s = self.optics.s_propagating
        return self.emission / (n - np.sqrt(max(n * n - s * s, 0.0)))

    def _pinhole_nodes(self, r_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Radii ``t[r, q]`` and weights ``w[r, q]``: ``sum_q w[r, q] I(t[r, q])`` is ``I`` integrated over the pinhole.

        For a disc of radius ``R`` centred at distance ``r`` from the axis, ``D(r) = int I(t) t theta(t) dt``
        with ``theta`` the angle of the circle of radius ``t`` inside the disc: ``2 pi`` for ``t < R - r``,
        ``2 arccos((r**2 + t**2 - R**2) / (2 r t))`` for ``|R - r| < t < R + r``.  The second interval uses
        ``t = c - h cos(u)``, which removes the square-root behaviour of ``theta`` at both ends.
        """
        big_r = self.pinhole_radius
        n_in = 8 + int(np.ceil(_PINHOLE_NODES_PER_PERIOD * big_r / self.period))
        n_ring = 8 + int(np.ceil(2 * _PINHOLE_NODES_PER_PERIOD * big_r / self.period))
        x_in, w_in = _gauss_legendre(n_in)
        x_ring, w_ring = _gauss_legendre(n_ring)
        r = r_out[:, None]
        inner = np.maximum(big_r - r, 0.0)  # (nr, 1)
        t_in = 0.5 * inner * (x_in + 1.0)
        wt_in = 0.5 * inner * w_in * t_in * 2.0 * np.pi
        lo, hi = np.abs(big_r - r), big_r + r
        centre, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
        u = 0.5 * np.pi * (x_ring + 1.0)
        t_ring = centre - half * np.cos(u)
        r_safe = np.where(r == 0.0, 1.0, r)
        cos_arg = np.clip((r * r + t_ring * t_ring - big_r**2) / (2.0 * r_safe * np.maximum(t_ring, 1e-300)), -1, 1)
        theta = 2.0 * np.arccos(cos_arg)
        wt_ring = np.where(r == 0.0, 0.0, half * np.sin(u) * 0.5 * np.pi * w_ring * t_ring * theta)
        return np.concatenate([t_in, t_ring], axis=1), np.concatenate([wt_in, wt_ring], axis=1)

    def _detection(self, radii: np.ndarray, pz: np.ndarray, f: np.ndarray) -> np.ndarray:
        if self.pinhole_radius == 0.0:
            return _intensity(self.optics, self.emission, radii, pz, f)
        inner = _radial_grid(float(radii.max(initial=0.0)) + self.pinhole_radius, self.period)
        spline = _spline(inner, _intensity(self.optics, self.emission, inner, pz, f))
        out = np.empty((pz.size, radii.size))
        for start in range(0, radii.size, _RADIAL_BLOCK):
            block = slice(start, start + _RADIAL_BLOCK)
            where, weight = self._pinhole_nodes(radii[block])
            values = spline(where.ravel()).reshape(pz.size, *where.shape)
            out[:, block] = np.einsum("zrq,rq->zr", values, weight)
        return out

    def profile(self, radii: np.ndarray, pz: np.ndarray, f: np.ndarray) -> np.ndarray:
        """Unnormalised system intensity at ``radii`` for the planes ``(pz, f)``."""
        detection = self._detection(radii, pz, f)
        if self.excitation is None:
            return detection
        return detection * _intensity(self.optics, self.excitation, radii, pz, f)

    def on_axis(self, pz: np.ndarray, f: np.ndarray) -> np.ndarray:
        """Unnormalised intensity on the optical axis, shape ``(len(pz),)``."""
        if self.pinhole_radius == 0.0:
            detection = _intensity(self.optics, self.emission, np.zeros(1), pz, f)[:, 0]
        else:
            where, weight = self._pinhole_nodes(np.zeros(1))
            detection = _intensity(self.optics, self.emission, where[0], pz, f) @ weight[0]
        if self.excitation is None:
            return detection
        return detection * _intensity(self.optics, self.excitation, np.zeros(1), pz, f)[:, 0]


def _ray_foci(optics: _Optics, pz: float | None, f: float | None) -> np.ndarray:
    """Geometrical focus of the rays, where ``d OPD / ds = 0``: ``f`` for a given ``pz`` or ``pz`` for a given ``f``."""
    s = np.linspace(0.0, 0.98, 64) * optics.s_propagating
    ci, ci0, cg, cg0, cs = (np.sqrt(n * n - s * s) for n in (optics.ni, optics.ni0, optics.ng, optics.ng0, optics.ns))
    rest = optics.ti0 / ci0 - optics.tg / cg + optics.tg0 / cg0
    if pz is not None:
        return optics.ti0 - ci * (rest - pz / cs)
    return cs * (rest - (optics.ti0 - float(f)) / ci)  # type: ignore[arg-type]


def _argmax_on_axis(
    system: _System, values_of: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], lo: float, hi: float
) -> float:
    """Maximise the on-axis intensity over one scan variable in ``[lo, hi]``."""
    spacing = max(system.axial_unit / 16.0, (hi - lo) / (_FOCUS_SEARCH_POINTS - 1))
    grid = np.linspace(lo, hi, int(np.ceil((hi - lo) / spacing)) + 1)
    best = int(np.argmax(system.on_axis(*values_of(grid))))
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    result = optimize.minimize_scalar(
        lambda x: -float(system.on_axis(*values_of(np.array([x])))[0]),
        bounds=(a, b),
        method="bounded",
        options={"xatol": 1e-6 * system.axial_unit},
    )
    return float(result.x)


def _best_focus(system: _System) -> tuple[float, float]:
    """``(pz, f)`` of the kernel's central plane: the maximum of the on-axis intensity.

    Focal scan: the emitter stays at ``depth`` and ``f`` maximises the on-axis intensity (best focus).
    Particle scan: the stage stays at that best focus and the emitter position maximises it.
    """
    optics, margin = system.optics, 3.0 * system.axial_unit
    foci = _ray_foci(optics, system.depth, None)
    if foci.min() >= optics.ti0:
        raise ValueError(
            f"an emitter at depth {system.depth:g} um is focused beyond the working distance"
            f" ({optics.ti0:g} um); reduce depth or increase working_distance"
        )
    # The steepest rays can focus beyond the working distance; the stage cannot.
    f_best = _argmax_on_axis(
        system,
        lambda f: (np.full(f.shape, system.depth), f),
        float(foci.min()) - margin,
        min(float(foci.max()) + margin, optics.ti0 * (1.0 - 1e-9)),
    )
    if system.scan == "focal":
        return system.depth, f_best
    foci = _ray_foci(optics, None, f_best)
    pz_best = _argmax_on_axis(
        system,
        lambda pz: (pz, np.full(pz.shape, f_best)),
        max(float(foci.min()) - margin, 0.0),
        float(foci.max()) + margin,
    )
    return pz_best, f_best


def _scan_planes(system: _System, focus: tuple[float, float], offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(pz, f)`` of the planes at ``offsets`` (um, + = focal plane deeper than the emitter) from the centre."""
    pz0, f0 = focus
    offsets = np.asarray(offsets, dtype=np.float64)
    if system.scan == "focal":
        pz, f = np.full(offsets.shape, pz0), f0 + offsets
    else:
        pz, f = pz0 - offsets, np.full(offsets.shape, f0)
    optics = system.optics
    lowest = -optics.tg if optics.ns == optics.ng else 0.0
    if pz.min() < lowest:
        raise ValueError(
            f"the particle scan moves the emitter to {pz.min():.3g} um, below the coverslip; increase depth"
            " (the emitter must stay in the sample) or use scan='focal'"
        )
    if f.max() >= optics.ti0:
        raise ValueError(
            f"the focal positions reach {f.max():.4g} um, beyond the working distance ({optics.ti0:g} um);"
            " reduce depth or increase working_distance"
        )
    return pz, f


@dataclass(frozen=True)
class _Sampling:
    ndim: int
    pixel_size: float
    z_step: float
    defocus: float
    oversample: int

    def offsets(self, half_planes: int) -> np.ndarray:
        if self.ndim == 2:
            return np.array([self.defocus])
        return self.defocus + np.arange(-half_planes, half_planes + 1) * self.z_step


def _first_below(values: np.ndarray, limit: float) -> int | None:
    """Smallest index ``i`` with ``values[j] < limit`` for all ``j >= i`` (None if the last one is not)."""
    tail = np.maximum.accumulate(values[::-1])[::-1]
    below = np.flatnonzero(tail < limit)
    return int(below[0]) if below.size else None


def _auto_shape(
    system: _System,
    sampling: _Sampling,
    focus: tuple[float, float],
    threshold: float,
    max_size: int,
    max_num_z: int,
    fixed: tuple[int | None, ...],
) -> tuple[int, ...]:
    """Smallest odd shape whose outer faces (and everything beyond) are below ``threshold`` x peak.

    The lateral and the axial condition are independent (a point outside the box is beyond a lateral or
    an axial face), so each half-size is the smallest one past which the intensity, computed on a range
    that is doubled until it extends 1.5 times past the answer (or reaches 1.5 times the cap), stays
    below the limit.  ``fixed`` holds the sizes given by the caller (None where automatic).
    """
    dx = sampling.pixel_size
    h_cap, j_cap = (max_size - 1) // 2, (max_num_z - 1) // 2
    r_limit = 1.5 * h_cap * dx * np.sqrt(2.0)
    j_limit = j_cap + max(2, j_cap // 2)
    want_r = fixed[-1] is None
    want_z = sampling.ndim == 3 and fixed[0] is None
    r_range = min(max(16.0 * system.period, 4.0 * dx), r_limit)
    if sampling.ndim == 2:
        j_range = 0
    elif want_z:
        j_range = min(max(int(np.ceil(4.0 * system.axial_unit / sampling.z_step)), 2), j_limit)
    else:
        j_range = (int(fixed[0]) - 1) // 2  # type: ignore[arg-type]
    while True:
        radii = _radial_grid(r_range, system.period)
        profile = system.profile(radii, *_scan_planes(system, focus, sampling.offsets(j_range)))
        limit = threshold * profile.max()
        grew = False
        if want_z:
            plane_max = profile.max(axis=1)
            hz = _first_below(np.maximum(plane_max[j_range:], plane_max[j_range::-1]), limit)
            if (hz is None or 1.5 * hz > j_range) and j_range < j_limit:
                j_range, grew = min(2 * j_range, j_limit), True
        if want_r:
            i0 = _first_below(profile.max(axis=0), limit)
            if (i0 is None or 1.5 * radii[i0] > r_range) and r_range < r_limit:
                r_range, grew = min(2.0 * r_range, r_limit), True
        if not grew:
            break

    def too_big(name: str, cap: int, what: str) -> ValueError:
        return ValueError(
            f"the PSF does not fall below threshold={threshold:g} of its peak within {name}={cap} {what};"
            f" raise threshold, raise {name}, or pass shape explicitly (the kernel is then truncated)"
        )

    out = list(fixed)
    if want_r:
        h = None if i0 is None else max(int(np.ceil(radii[i0] / dx - 1e-9)), 1)
        if h is None or h > h_cap:
            raise too_big("max_size", max_size, "pixels")
        out[-1] = out[-2] = 2 * h + 1
    if want_z:
        if hz is None or hz > j_cap:
            raise too_big("max_num_z", max_num_z, "planes")
        out[0] = 2 * max(hz, 1) + 1
    return tuple(int(n) for n in out)  # type: ignore[arg-type]


def _render(system: _System, sampling: _Sampling, focus: tuple[float, float], shape: tuple[int, ...]) -> np.ndarray:
    """Kernel of ``shape`` normalised to sum 1 (float32)."""
    ny, nx = shape[-2:]
    half_planes = (shape[0] - 1) // 2 if sampling.ndim == 3 else 0
    pz, f = _scan_planes(system, focus, sampling.offsets(half_planes))
    os_ = sampling.oversample
    sub = (np.arange(os_) - (os_ - 1) / 2.0) / os_
    y = ((np.arange(ny) - ny // 2)[:, None] + sub[None, :]).ravel() * sampling.pixel_size
    x = ((np.arange(nx) - nx // 2)[:, None] + sub[None, :]).ravel() * sampling.pixel_size
    r = np.hypot(y[:, None], x[None, :])
    unique_r, inverse = np.unique(r, return_inverse=True)
    radii = _radial_grid(float(unique_r[-1]), system.period)
    values = np.maximum(_spline(radii, system.profile(radii, pz, f))(unique_r), 0.0)
    inverse = inverse.ravel()
    stack = np.empty((pz.size, ny, nx))
    block = max(1, 4 * _MATRIX_ELEMENTS // inverse.size)  # planes per block: bounds the sub-pixel array
    for z0 in range(0, pz.size, block):
        planes = slice(z0, z0 + block)
        sub_pixels = values[planes][:, inverse].reshape(-1, ny, os_, nx, os_)
        stack[planes] = sub_pixels.mean(axis=(2, 4))
    total = stack.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("generated PSF has zero or non-finite total intensity")
    out = (stack / total).astype(np.float32)
    return out if sampling.ndim == 3 else out[0]


def _make_optics(
    *,
    na: object,
    immersion_index: object,
    sample_index: object,
    design_immersion_index: object,
    coverslip_index: object,
    design_coverslip_index: object,
    coverslip_thickness: object,
    design_coverslip_thickness: object,
    working_distance: object,
    magnification: object,
    model: object,
    supercritical: object,
) -> _Optics:
    na_ = _check_positive_float("na", na)
    ni = _check_positive_float("immersion_index", immersion_index)
    if na_ >= ni:
        raise ValueError(f"na ({na_:g}) must be smaller than immersion_index ({ni:g})")
    ns = ni if sample_index is None else _check_positive_float("sample_index", sample_index)
    ni0 = (
        ni
        if design_immersion_index is None
        else _check_positive_float("design_immersion_index", design_immersion_index)
    )
    ng = _check_positive_float("coverslip_index", coverslip_index)
    ng0 = (
        ng
        if design_coverslip_index is None
        else _check_positive_float("design_coverslip_index", design_coverslip_index)
    )
    tg = _check_nonnegative_float("coverslip_thickness", coverslip_thickness)
    tg0 = (
        tg
        if design_coverslip_thickness is None
        else _check_nonnegative_float("design_coverslip_thickness", design_coverslip_thickness)
    )
    ti0 = _check_positive_float("working_distance", working_distance)
    if magnification is None:
        scale = 1.0
    else:
        m = _check_positive_float("magnification", magnification)
        scale = m / np.sqrt(m * m + na_ * na_)
    return _Optics(
        na=na_,
        ni=ni,
        ni0=ni0,
        ns=ns,
        ng=ng,
        ng0=ng0,
        tg=tg,
        tg0=tg0,
        ti0=ti0,
        lateral_scale=scale,
        model=_check_choice("model", model, _MODELS),
        supercritical=_check_bool("supercritical", supercritical),
    )


def _check_shape(shape: object, ndim: int) -> tuple[int | None, ...]:
    if shape is None:
        return (None,) * ndim
    if not isinstance(shape, (tuple, list)) or len(shape) != ndim:
        raise ValueError(f"shape must be None or a tuple of {ndim} sizes (None for automatic), got {shape!r}")
    out = tuple(None if n is None else _check_odd_int("shape", n) for n in shape)
    if out[-1] != out[-2]:
        raise ValueError(f"shape must have equal lateral sizes (the PSF is rotationally symmetric), got {shape!r}")
    return out


def _prepare(
    ndim: object,
    *,
    optics: _Optics,
    emission: object,
    excitation: object,
    pinhole_au: object,
    pixel_size: object,
    z_step: object,
    shape: object,
    depth: object,
    defocus: object,
    scan: object,
    oversample: object,
    threshold: object,
    max_size: object,
    max_num_z: object,
    emission_name: str,
) -> tuple[_System, _Sampling, tuple[float, float], tuple[int, ...]]:
    """Validate the common arguments; return the system, sampling, best focus and the kernel shape."""
    if not _is_int(ndim) or int(ndim) not in (2, 3):  # type: ignore[call-overload]
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    ndim_ = int(ndim)  # type: ignore[call-overload]
    emission_ = _check_positive_float(emission_name, emission)
    excitation_ = None if excitation is None else _check_positive_float("excitation_wavelength", excitation)
    if pinhole_au is None:
        pinhole_radius = 0.0
    else:
        au = _check_nonnegative_float("pinhole_au", pinhole_au)
        if au > _MAX_PINHOLE_AU:
            raise ValueError(
                f"pinhole_au must be at most {_MAX_PINHOLE_AU:g} (beyond, the pinhole no longer limits detection"
                f" near focus), got {pinhole_au!r}"
            )
        # 1 Airy unit = the Airy disc diameter 1.22 wavelength / NA, back-projected to the sample.
        pinhole_radius = 0.5 * au * 1.22 * emission_ / optics.na
    dx = _check_positive_float("pixel_size", pixel_size)
    dz = dx if z_step is None else _check_positive_float("z_step", z_step)
    sampling = _Sampling(
        ndim=ndim_,
        pixel_size=dx,
        z_step=dz,
        defocus=_check_finite_float("defocus", defocus),
        oversample=_check_positive_int("oversample", oversample),
    )
    if sampling.oversample > _MAX_OVERSAMPLE:
        raise ValueError(f"oversample must be at most {_MAX_OVERSAMPLE}, got {oversample!r}")
    system = _System(
        optics=optics,
        emission=emission_,
        excitation=excitation_,
        pinhole_radius=pinhole_radius,
        depth=_check_nonnegative_float("depth", depth),
        scan=_check_choice("scan", scan, _SCANS),
    )
    threshold_ = _check_positive_float("threshold", threshold)
    if threshold_ >= 1:
        raise ValueError(f"threshold must be between 0 and 1 (a fraction of the peak), got {threshold!r}")
    max_size_ = _check_odd_int("max_size", max_size)
    max_num_z_ = _check_odd_int("max_num_z", max_num_z)
    fixed = _check_shape(shape, ndim_)
    focus = _best_focus(system)
    if all(n is not None for n in fixed):
        kernel_shape = tuple(int(n) for n in fixed)  # type: ignore[arg-type]
    else:
        kernel_shape = _auto_shape(system, sampling, focus, threshold_, max_size_, max_num_z_, fixed)
    return system, sampling, focus, kernel_shape


def _setup(
    ndim: object,
    *,
    emission: object,
    emission_name: str,
    excitation: object,
    pinhole_au: object,
    pixel_size: object,
    z_step: object,
    shape: object,
    immersion_index: object,
    sample_index: object,
    design_immersion_index: object,
    coverslip_index: object,
    design_coverslip_index: object,
    coverslip_thickness: object,
    design_coverslip_thickness: object,
    working_distance: object,
    depth: object,
    defocus: object,
    model: object,
    scan: object,
    magnification: object,
    oversample: object,
    supercritical: object,
    threshold: object,
    max_size: object,
    max_num_z: object,
    na: object,
) -> tuple[_System, _Sampling, tuple[float, float], tuple[int, ...]]:
    optics = _make_optics(
        na=na,
        immersion_index=immersion_index,
        sample_index=sample_index,
        design_immersion_index=design_immersion_index,
        coverslip_index=coverslip_index,
        design_coverslip_index=design_coverslip_index,
        coverslip_thickness=coverslip_thickness,
        design_coverslip_thickness=design_coverslip_thickness,
        working_distance=working_distance,
        magnification=magnification,
        model=model,
        supercritical=supercritical,
    )
    return _prepare(
        ndim,
        optics=optics,
        emission=emission,
        excitation=excitation,
        pinhole_au=pinhole_au,
        pixel_size=pixel_size,
        z_step=z_step,
        shape=shape,
        depth=depth,
        defocus=defocus,
        scan=scan,
        oversample=oversample,
        threshold=threshold,
        max_size=max_size,
        max_num_z=max_num_z,
        emission_name=emission_name,
    )


def widefield_psf(
    ndim: int,
    *,
    na: float,
    wavelength: float,
    pixel_size: float,
    z_step: float | None = None,
    shape: tuple[int | None, ...] | None = None,
    immersion_index: float = 1.515,
    sample_index: float | None = None,
    design_immersion_index: float | None = None,
    coverslip_index: float = 1.515,
    design_coverslip_index: float | None = None,
    coverslip_thickness: float = 170.0,
    design_coverslip_thickness: float | None = None,
    working_distance: float = 150.0,
    depth: float = 0.0,
    defocus: float = 0.0,
    model: str = "vectorial",
    scan: str = "focal",
    magnification: float | None = None,
    oversample: int = 1,
    supercritical: bool = False,
    threshold: float = 1e-3,
    max_size: int = DEFAULT_MAX_SIZE,
    max_num_z: int = DEFAULT_MAX_NUM_Z,
) -> np.ndarray:
    """Widefield fluorescence PSF (Gibson-Lanni geometry, vectorial or scalar), centred on best focus.

    Parameters
    ----------
    ndim : {2, 3}
        ``3``: a stack of planes ``z_step`` apart; ``2``: the single plane at ``defocus``.
    na : float
        Numerical aperture.
    wavelength : float
        Emission wavelength in micrometres (vacuum).
    pixel_size : float
        Lateral pixel size in micrometres (sample space).
    z_step : float or None, default None
        Axial step in micrometres, a step of the stage (focal scan) or of the emitter (particle scan);
        None means ``pixel_size``.  Unused for 2D.
    shape : tuple or None, default None
        Kernel shape ``(nz, ny, nx)`` or ``(ny, nx)``: odd sizes, ``ny == nx``.  None, or None entries,
        are chosen as in :func:`auto_psf_shape` (no truncation above ``threshold``).
    immersion_index : float, default 1.515
        Refractive index of the immersion medium (``ni``); ``na`` must be smaller.
    sample_index : float or None, default None
        Refractive index of the sample (``ns``); None means ``immersion_index`` (no mismatch).
    design_immersion_index : float or None, default None
        Immersion index the objective is designed for (``ni0``); None means ``immersion_index``.
    coverslip_index : float, default 1.515
        Refractive index of the coverslip (``ng``).
    design_coverslip_index : float or None, default None
        Design coverslip index (``ng0``); None means ``coverslip_index``.
    coverslip_thickness : float, default 170.0
        Coverslip thickness in micrometres (``tg``; 0 for a dipping objective without coverslip).
    design_coverslip_thickness : float or None, default None
        Design coverslip thickness in micrometres (``tg0``); None means ``coverslip_thickness``.
    working_distance : float, default 150.0
        Design thickness of the immersion layer in micrometres (``ti0``).
    depth : float, default 0.0
        Depth of the emitter above the coverslip in micrometres (``pz``, at least 0).
    defocus : float, default 0.0
        Offset of the central (2D: the only) plane from best focus in micrometres; positive moves the
        focal plane deeper into the sample than the emitter.
    model : {"vectorial", "scalar"}, default "vectorial"
        ``"vectorial"``: freely rotating dipole (Aguet et al. 2009) with Fresnel transmission and
        aplanatic apodization; ``"scalar"``: the scalar Gibson-Lanni model (uniform pupil).
    scan : {"focal", "particle"}, default "focal"
        ``"focal"``: the stage moves through an emitter at ``depth`` (a z-stack of a sample or bead);
        ``"particle"``: the stage stays at the best focus of an emitter at ``depth`` and the emitter
        moves (it must stay in the sample).  The same without index mismatch.
    magnification : float or None, default None
        Objective magnification ``M``; it only scales the lateral Bessel argument by
        ``M / sqrt(M**2 + NA**2)`` (Li et al. 2017).  None: infinite, no correction (as psfmodels).
    oversample : int, default 1
        Sub-pixel samples per pixel side averaged into each pixel (at most 15); 1 samples the pixel
        centres, 3 approximates integration over camera pixels (psfmodels' default).
    supercritical : bool, default False
        Include the near-field (evanescent) emission beyond the critical angle when
        ``sample_index < na``; it matters for emitters within about a wavelength of the coverslip
        (psfmodels includes it).  False integrates up to ``min(na, ns, ni, ni0, ng, ng0)`` (Li et al.).
    threshold : float, default 1e-3
        For automatic sizes: the intensity on and beyond the kernel's outer faces must be below this
        fraction of the peak.
    max_size, max_num_z : int, default 255
        Caps (odd) on the automatic lateral size and number of planes: a PSF that needs more raises
        ValueError rather than growing without bound (255**3 float32 is 66 MB).

    Returns
    -------
    numpy.ndarray
        float32 kernel summing to 1, shape ``(nz, ny, nx)`` or ``(ny, nx)``.

    Raises
    ------
    ValueError
        For an invalid argument (named in the message) or an automatic size beyond the caps.

    Notes
    -----
    Axis 0 of a 3D kernel is the focal position, increasing as the focal plane moves deeper into the
    sample (the objective approaches it), the direction of psfmodels' ``z``; flip it (``psf[::-1]``) for
    a stack recorded the other way.  The central plane is the maximum of the on-axis intensity (best
    focus, which index mismatch shifts from the nominal focus, see :func:`best_focus_position`), so the
    kernel is centred on the emitter's image; the central pixel is the optical axis.

    Examples
    --------
    >>> psf = widefield_psf(3, na=1.4, wavelength=0.52, pixel_size=0.1, z_step=0.25, shape=(33, 65, 65))
    >>> psf.shape
    (33, 65, 65)
    >>> water = widefield_psf(2, na=1.4, wavelength=0.52, pixel_size=0.1, sample_index=1.33, depth=5.0)
    >>> water.shape[0] % 2
    1
    """
    system, sampling, focus, kernel_shape = _setup(
        ndim,
        emission=wavelength,
        emission_name="wavelength",
        excitation=None,
        pinhole_au=None,
        pixel_size=pixel_size,
        z_step=z_step,
        shape=shape,
        immersion_index=immersion_index,
        sample_index=sample_index,
        design_immersion_index=design_immersion_index,
        coverslip_index=coverslip_index,
        design_coverslip_index=design_coverslip_index,
        coverslip_thickness=coverslip_thickness,
        design_coverslip_thickness=design_coverslip_thickness,
        working_distance=working_distance,
        depth=depth,
        defocus=defocus,
        model=model,
        scan=scan,
        magnification=magnification,
        oversample=oversample,
        supercritical=supercritical,
        threshold=threshold,
        max_size=max_size,
        max_num_z=max_num_z,
        na=na,
    )
    return _render(system, sampling, focus, kernel_shape)


def confocal_psf(
    ndim: int,
    *,
    na: float,
    excitation_wavelength: float,
    emission_wavelength: float,
    pixel_size: float,
    pinhole_au: float | None = 1.0,
    z_step: float | None = None,
    shape: tuple[int | None, ...] | None = None,
    immersion_index: float = 1.515,
    sample_index: float | None = None,
    design_immersion_index: float | None = None,
    coverslip_index: float = 1.515,
    design_coverslip_index: float | None = None,
    coverslip_thickness: float = 170.0,
    design_coverslip_thickness: float | None = None,
    working_distance: float = 150.0,
    depth: float = 0.0,
    defocus: float = 0.0,
    model: str = "vectorial",
    scan: str = "focal",
    magnification: float | None = None,
    oversample: int = 1,
    supercritical: bool = False,
    threshold: float = 1e-3,
    max_size: int = DEFAULT_MAX_SIZE,
    max_num_z: int = DEFAULT_MAX_NUM_Z,
) -> np.ndarray:
    """Point-scanning confocal PSF: excitation PSF x (emission PSF convolved with the pinhole).

    The excitation PSF is the model's PSF at ``excitation_wavelength`` (the same pupil integrals: by
    reciprocity, an unpolarised or circularly polarised beam filling the pupil, absorbed by a freely
    rotating dipole).  The detection PSF is the emission PSF at ``emission_wavelength`` integrated over
    the pinhole: a disc of diameter ``pinhole_au`` Airy units back-projected to the sample (1 AU =
    ``1.22 * emission_wavelength / na``), integrated exactly on the radial profile.  Both move with the
    stage; the kernel is centred on the maximum of their on-axis product.

    Parameters
    ----------
    ndim : {2, 3}
        ``3``: a stack of planes ``z_step`` apart; ``2``: the single plane at ``defocus``.
    na : float
        Numerical aperture.
    excitation_wavelength, emission_wavelength : float
        Vacuum wavelengths in micrometres.
    pixel_size : float
        Lateral scan step (pixel size) in micrometres.
    pinhole_au : float or None, default 1.0
        Pinhole diameter in Airy units (at most 20); 0 or None: an ideal point pinhole, the product of the
        excitation and emission PSFs.
    z_step : float or None, default None
        Axial step in micrometres; None means ``pixel_size``.

    Other Parameters
    ----------------
    shape, immersion_index, sample_index, design_immersion_index, coverslip_index, \
design_coverslip_index, coverslip_thickness, design_coverslip_thickness, working_distance, depth, \
defocus, model, scan, magnification, oversample, supercritical, threshold, max_size, max_num_z
        As for :func:`widefield_psf`.  A point-scanning confocal samples the scan positions rather than
        integrating over pixels, hence the default ``oversample=1``.

    Returns
    -------
    numpy.ndarray
        float32 kernel summing to 1, shape ``(nz, ny, nx)`` or ``(ny, nx)``, with the conventions of
        :func:`widefield_psf`.

    Raises
    ------
    ValueError
        For an invalid argument (named in the message) or an automatic size beyond the caps.

    Examples
    --------
    >>> psf = confocal_psf(
    ...     3, na=1.4, excitation_wavelength=0.488, emission_wavelength=0.52, pixel_size=0.05, z_step=0.1,
    ...     shape=(31, 41, 41),
    ... )
    >>> psf.shape
    (31, 41, 41)
    """
    system, sampling, focus, kernel_shape = _setup(
        ndim,
        emission=emission_wavelength,
        emission_name="emission_wavelength",
        excitation=excitation_wavelength,
        pinhole_au=pinhole_au,
        pixel_size=pixel_size,
        z_step=z_step,
        shape=shape,
        immersion_index=immersion_index,
        sample_index=sample_index,
        design_immersion_index=design_immersion_index,
        coverslip_index=coverslip_index,
        design_coverslip_index=design_coverslip_index,
        coverslip_thickness=coverslip_thickness,
        design_coverslip_thickness=design_coverslip_thickness,
        working_distance=working_distance,
        depth=depth,
        defocus=defocus,
        model=model,
        scan=scan,
        magnification=magnification,
        oversample=oversample,
        supercritical=supercritical,
        threshold=threshold,
        max_size=max_size,
        max_num_z=max_num_z,
        na=na,
    )
    return _render(system, sampling, focus, kernel_shape)


def auto_psf_shape(
    ndim: int,
    *,
    na: float,
    wavelength: float,
    pixel_size: float,
    z_step: float | None = None,
    excitation_wavelength: float | None = None,
    pinhole_au: float | None = 1.0,
    shape: tuple[int | None, ...] | None = None,
    immersion_index: float = 1.515,
    sample_index: float | None = None,
    design_immersion_index: float | None = None,
    coverslip_index: float = 1.515,
    design_coverslip_index: float | None = None,
    coverslip_thickness: float = 170.0,
    design_coverslip_thickness: float | None = None,
    working_distance: float = 150.0,
    depth: float = 0.0,
    defocus: float = 0.0,
    model: str = "vectorial",
    scan: str = "focal",
    magnification: float | None = None,
    supercritical: bool = False,
    threshold: float = 1e-3,
    max_size: int = DEFAULT_MAX_SIZE,
    max_num_z: int = DEFAULT_MAX_NUM_Z,
) -> tuple[int, ...]:
    """Smallest odd kernel shape that does not truncate the PSF above ``threshold`` of its peak.

    The lateral half-size ``h`` is the smallest with the intensity below ``threshold * peak`` at every
    radius ``>= h * pixel_size`` in every plane (so on and beyond the lateral faces), the axial
    half-size ``hz`` the smallest with every plane at ``|offset| >= hz * z_step`` below it everywhere;
    the two conditions are independent, so the result is the smallest box outside which the PSF stays
    below the threshold.  The PSF is evaluated on ranges doubled until they extend 1.5 times past the
    answer.  An energy criterion is not used: a widefield PSF carries the same energy in every plane
    (it only spreads), so no number of planes holds all but a small fraction of it.

    Parameters
    ----------
    ndim : {2, 3}
        Kernel dimensionality.
    na, wavelength, pixel_size, z_step
        As for :func:`widefield_psf` (``wavelength`` is the emission wavelength, um).
    excitation_wavelength : float or None, default None
        None: a widefield PSF; otherwise a confocal one (see :func:`confocal_psf`) with ``pinhole_au``.
    pinhole_au : float or None, default 1.0
        Confocal pinhole diameter in Airy units (ignored for widefield).
    shape : tuple or None, default None
        Sizes to keep (None entries are chosen), e.g. ``(None, 65, 65)`` chooses only ``nz``.
    threshold : float, default 1e-3
        Fraction of the peak intensity allowed on and beyond the faces.
    max_size, max_num_z : int, default 255
        Caps (odd): a PSF that needs a larger kernel raises ValueError naming the cap.

    Other Parameters
    ----------------
    immersion_index, sample_index, design_immersion_index, coverslip_index, design_coverslip_index, \
coverslip_thickness, design_coverslip_thickness, working_distance, depth, defocus, model, scan, \
magnification, supercritical
        As for :func:`widefield_psf`.

    Returns
    -------
    tuple of int
        ``(nz, n, n)`` or ``(n, n)``, odd sizes.

    Raises
    ------
    ValueError
        For an invalid argument, or when the PSF needs more than ``max_size`` pixels or ``max_num_z``
        planes.

    Examples
    --------
    >>> auto_psf_shape(2, na=0.8, wavelength=0.6, pixel_size=0.2, immersion_index=1.33)
    (17, 17)
    """
    confocal = excitation_wavelength is not None
    _, sampling, _, kernel_shape = _setup(
        ndim,
        emission=wavelength,
        emission_name="wavelength",
        excitation=excitation_wavelength,
        pinhole_au=pinhole_au if confocal else None,
        pixel_size=pixel_size,
        z_step=z_step,
        shape=shape,
        immersion_index=immersion_index,
        sample_index=sample_index,
        design_immersion_index=design_immersion_index,
        coverslip_index=coverslip_index,
        design_coverslip_index=design_coverslip_index,
        coverslip_thickness=coverslip_thickness,
        design_coverslip_thickness=design_coverslip_thickness,
        working_distance=working_distance,
        depth=depth,
        defocus=defocus,
        model=model,
        scan=scan,
        magnification=magnification,
        oversample=1,
        supercritical=supercritical,
        threshold=threshold,
        max_size=max_size,
        max_num_z=max_num_z,
        na=na,
    )
    return kernel_shape


def best_focus_position(
    *,
    na: float,
    wavelength: float,
    immersion_index: float = 1.515,
    sample_index: float | None = None,
    design_immersion_index: float | None = None,
    coverslip_index: float = 1.515,
    design_coverslip_index: float | None = None,
    coverslip_thickness: float = 170.0,
    design_coverslip_thickness: float | None = None,
    working_distance: float = 150.0,
    depth: float = 0.0,
    model: str = "vectorial",
    supercritical: bool = False,
) -> float:
    """Stage position of best focus on an emitter at ``depth``, in micrometres.

    The position is the displacement ``f`` of the stage from the one that focuses on the coverslip
    surface in the design conditions (immersion thickness ``working_distance - f``), positive towards
    the sample; best focus is the maximum of the on-axis intensity.  Without index mismatch it equals
    ``depth``; imaging into a lower-index sample it exceeds it (``depth / f`` is the axial scaling of
    the stack).  Arguments as for :func:`widefield_psf`.

    Returns
    -------
    float
        ``f`` in micrometres.

    Examples
    --------
    >>> round(best_focus_position(na=1.4, wavelength=0.52, depth=2.0), 6)
    2.0
    """
    optics = _make_optics(
        na=na,
        immersion_index=immersion_index,
        sample_index=sample_index,
        design_immersion_index=design_immersion_index,
        coverslip_index=coverslip_index,
        design_coverslip_index=design_coverslip_index,
        coverslip_thickness=coverslip_thickness,
        design_coverslip_thickness=design_coverslip_thickness,
        working_distance=working_distance,
        magnification=None,
        model=model,
        supercritical=supercritical,
    )
    system = _System(
        optics=optics,
        emission=_check_positive_float("wavelength", wavelength),
        excitation=None,
        pinhole_radius=0.0,
        depth=_check_nonnegative_float("depth", depth),
        scan="focal",
    )
    return _best_focus(system)[1]


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
    model: str,
) -> np.ndarray:
    """Unnormalised particle-scan PSF stack of shape ``(num_z, size, size)``."""
    n = refractive_index
    # All indices equal: OPD = (pz - f) * c_n, so the particle positions pz = defocus at f = 0 give the
    # Richards & Wolf defocus (ti0 and the coverslip drop out).
    optics = _Optics(
        na=na,
        ni=n,
        ni0=n,
        ns=n,
        ng=n,
        ng0=n,
        tg=0.0,
        tg0=0.0,
        ti0=1.0,
        lateral_scale=magnification / np.sqrt(magnification**2 + na**2),
        model=model,
        supercritical=False,
    )
    defocus = np.arange(num_z) * z_step + focal_offset

    pixel_r = _pixel_radii(size, pixel_size)
    step = pixel_size / _RADIAL_OVERSAMPLING
    n_radial = int(np.ceil(pixel_r.max() / step)) + 2
    radii = np.arange(n_radial) * step

    profile = _intensity(optics, wavelength, radii, defocus, np.zeros_like(defocus))
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
    model: str = "scalar",
) -> np.ndarray:
    """Generate a widefield fluorescence PSF (Gibson-Lanni, Richards & Wolf limit): the paper's kernels.

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
    model : {"scalar", "vectorial"}, default "scalar"
        Keyword only.  ``"scalar"`` is the paper's model; ``"vectorial"`` the freely rotating dipole
        model of :func:`widefield_psf` in the same geometry (no interfaces, so no Fresnel factors).

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
    (2017), which was used to compute the reference kernels.  For kernels of
    other microscopes (index mismatch, depth, confocal, automatic size) use
    :func:`widefield_psf` or :func:`confocal_psf`, which are focal scans
    centred on best focus.

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
    model = _check_choice("model", model, _MODELS)
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
        model,
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
