"""Ground-truth structures for the microscopy benchmark, sized in physical units.

Every generator takes ``shape`` and ``voxel`` (micrometres per pixel: ``(dy, dx)`` in 2D,
``(dz, dy, dx)`` in 3D, anisotropic allowed) and returns a float32 image in [0, 1] with maximum
exactly 1. The geometry (positions, sizes, curves) is drawn in micrometres and the smooth random
fields (textures, wobbly boundaries, backgrounds) are defined on lattices in physical space, so
the pixel grid only samples them: with the same seed and field of view, 65 nm and 0.4 um pixels
show the same specimen (only texture finer than about half a pixel, which the pixels average
away, is drawn anew). Objects are rendered as pixel averages of their physical profile (a
25 nm filament is a one-pixel line at 65 nm and a dimmer one at 0.4 um, with the same integrated
intensity), never by marking pixels and blurring. A field with nothing in it and no background
is all zeros.

The generators are separate from :mod:`siamdecon.simulate`, whose images pretrain the priors and
whose :func:`~siamdecon.simulate.filament_phantom` is the paper suite's ground truth, so that the
benchmark measures generalization: there, curves are random walks of the direction or sums of
sinusoids, drawn by marking voxels and blurring in pixel units, and backgrounds are blurred
white noise; here, curves integrate a spline curvature, sizes are physical, rendering is
analytic pixel integration, and fields are B-spline lattices in micrometres.

>>> img = make_structure("nuclei", (256, 256), (0.1, 0.1), seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline
from scipy.spatial import cKDTree
from scipy.special import ndtr

__all__ = [
    "SKIMAGE_IMAGES",
    "STRUCTURES",
    "filaments",
    "make_structure",
    "membranes",
    "nuclei",
    "puncta",
    "skimage_image",
    "tissue",
]

Seed = int | np.random.Generator

_SQRT_2PI = float(np.sqrt(2.0 * np.pi))
# Variance of a unit-variance lattice noise after cubic B-spline interpolation, per axis (int B^2).
_BSPLINE_VAR = 151.0 / 315.0
# Narrowest kernel, in pixels, used to spread a point over pixels: keeps lines unbeaded when the
# physical width is far below the pixel.
_MIN_KERNEL_PX = 0.2
# Voxels per chunk for the per-voxel Voronoi queries (bounds memory in 3D).
_CHUNK = 1 << 18


# --- shared machinery -------------------------------------------------------------------------


def _grid(shape: Sequence[int], voxel: float | Sequence[float]) -> tuple[tuple[int, ...], np.ndarray]:
    """Validate ``shape`` and ``voxel``; return the shape and the voxel size per axis (um)."""
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"shape must be 2D (y, x) or 3D (z, y, x) with positive sizes, got {shape}")
    v = np.asarray(voxel, dtype=np.float64)
    if v.ndim == 0:
        v = np.full(len(shape), float(v))
    if v.shape != (len(shape),):
        raise ValueError(f"voxel must give one size per axis of the {len(shape)}D shape, got {voxel!r}")
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(f"voxel sizes must be positive micrometres, got {voxel!r}")
    return shape, v


def _streams(seed: Seed, n: int) -> list[np.random.Generator]:
    """Independent generators, so that a field whose lattice depends on the pixel size does not
    shift the draws of the geometry or of the other fields."""
    if isinstance(seed, np.random.Generator):
        sequence = np.random.SeedSequence(seed.integers(0, 2**63, size=4).tolist())
    else:
        sequence = np.random.SeedSequence(int(seed))
    return [np.random.default_rng(s) for s in sequence.spawn(n)]


def _extent(shape: tuple[int, ...], v: np.ndarray) -> np.ndarray:
    # Rounded so that (256, 0.1) and (128, 0.2) give the same lattices.
    return np.round(np.asarray(shape) * v, 9)


def _centres(shape: tuple[int, ...], v: np.ndarray) -> list[np.ndarray]:
    """Pixel-centre coordinates (um) per axis."""
    return [(np.arange(n) + 0.5) * d for n, d in zip(shape, v)]


def _bspline3(t: np.ndarray) -> np.ndarray:
    t = np.abs(t)
    return np.where(t < 1.0, 2.0 / 3.0 - t * t + 0.5 * t**3, np.where(t < 2.0, (2.0 - t) ** 3 / 6.0, 0.0))


class _Field:
    """A smooth Gaussian random field in physical space: lattice noise under a cubic B-spline.

    ``corr`` (um) is the standard deviation of the smoothing kernel (the grain size). Point values
    have unit variance; :meth:`grid` returns pixel averages, so grain finer than the pixels is
    attenuated as a camera would average it. Where the grain is below about half a pixel the
    lattice is coarsened to the pixel (memory) and rescaled to the variance the pixel averages of
    the requested field would have.
    """

    def __init__(self, extent: np.ndarray, corr: float, rng: np.random.Generator, voxel: np.ndarray):
        corr = float(corr)
        self.h = np.maximum(np.sqrt(3.0) * corr, voxel)
        coarse = self.h / np.sqrt(3.0)
        ratio = (corr / np.sqrt(corr**2 + voxel**2 / 12)) / (coarse / np.sqrt(coarse**2 + voxel**2 / 12))
        nodes = tuple(int(n) for n in np.ceil(np.round(extent / self.h, 9)).astype(int) + 5)
        scale = _BSPLINE_VAR ** (-len(nodes) / 2) * float(np.sqrt(np.prod(ratio)))
        self.lattice = (rng.standard_normal(nodes) * scale).astype(np.float32)

    def _matrix(self, axis: int, n: int, v: float) -> np.ndarray:
        h, nodes = self.h[axis], self.lattice.shape[axis]
        sub = max(1, int(np.ceil(3.0 * v / h)))
        u = (np.arange(n)[:, None] + (np.arange(sub) + 0.5) / sub) * v
        return _bspline3(u[..., None] / h + 2.0 - np.arange(nodes)).mean(axis=1).astype(np.float32)

    def grid(self, shape: tuple[int, ...], voxel: np.ndarray, rows: slice | None = None) -> np.ndarray:
        """Pixel averages of the field on the grid, or on its ``rows`` along the first axis."""
        mats = [self._matrix(a, n, v) for a, (n, v) in enumerate(zip(shape, voxel))]
        if rows is not None:
            mats[0] = mats[0][rows]
            shape = (mats[0].shape[0],) + tuple(shape[1:])

        def cost(order: tuple[int, ...]) -> float:
            dims, total = list(self.lattice.shape), 0.0
            for a in order:
                total += np.prod(dims) * shape[a]
                dims[a] = shape[a]
            return total

        out = self.lattice
        for a in min(itertools.permutations(range(len(shape))), key=cost):
            out = np.moveaxis(np.tensordot(mats[a], out, axes=([1], [a])), 0, a)
        return np.ascontiguousarray(out, dtype=np.float32)

    def at(self, points: np.ndarray) -> np.ndarray:
        """Point values at ``points`` (N, ndim) in um."""
        t = np.asarray(points, dtype=np.float64) / self.h + 2.0
        first = np.floor(t).astype(np.int64) - 1
        top = np.asarray(self.lattice.shape) - 1
        out = np.zeros(len(t))
        for offsets in itertools.product(range(4), repeat=t.shape[1]):
            idx = first + np.asarray(offsets)
            weight = np.prod(_bspline3(t - idx), axis=1)
            out += weight * self.lattice[tuple(np.clip(idx, 0, top).T)]
        return out


def _psi(x: np.ndarray) -> np.ndarray:
    """Antiderivative of the normal CDF."""
    return x * ndtr(x) + np.exp(-0.5 * x * x) / _SQRT_2PI


def _step(d: np.ndarray, w: np.ndarray | float, s: np.ndarray | float) -> np.ndarray:
    """Pixel average of a smooth step that is 1 where ``d`` > 0 (d: signed distance, um).

    The step has a Gaussian edge of std ``s`` (um) and the pixel is a box of width ``w`` (um)
    along the normal, so the result is the exact fraction of a pixel a sharp-edged object covers
    when ``s`` is small. Evaluated only in the band where it is neither 0 nor 1.
    """
    d = np.asarray(d)
    w = np.broadcast_to(np.asarray(w, dtype=np.float64), d.shape)
    s = np.broadcast_to(np.asarray(s, dtype=np.float64), d.shape)
    out = (d > 0).astype(np.float32)
    band = np.abs(d) < 0.5 * w + 6.0 * s
    db, wb, sb = d[band].astype(np.float64), w[band], s[band]
    out[band] = (sb / wb) * (_psi((db + 0.5 * wb) / sb) - _psi((db - 0.5 * wb) / sb))
    return out


def _slab(d: np.ndarray, t: np.ndarray | float, w: np.ndarray | float, s: np.ndarray | float) -> np.ndarray:
    """Pixel average of a sheet of thickness ``t`` (um) centred at ``d`` = 0."""
    return _step(d + 0.5 * t, w, s) - _step(d - 0.5 * t, w, s)


def _normal_width(normal: Sequence[np.ndarray], v: np.ndarray) -> np.ndarray:
    """Width (um) of a box with the variance of the pixel's projection on the unit ``normal``."""
    return np.sqrt(sum((n * d) ** 2 for n, d in zip(normal, v)))


def _splat(
    shape: tuple[int, ...], v: np.ndarray, points: np.ndarray, mass: np.ndarray, sigma: np.ndarray
) -> np.ndarray:
    """Sum of Gaussians of std ``sigma`` (N, ndim; um) and integral ``mass`` at ``points`` (um),
    each integrated over the pixels (erf differences), divided by the pixel volume: the image is
    the pixel-averaged concentration and the total intensity does not depend on the pixel size."""
    ndim = len(shape)
    out = np.zeros(int(np.prod(shape)), dtype=np.float64)
    if len(points) == 0:
        return out.reshape(shape)
    sk = np.maximum(np.asarray(sigma) / v, _MIN_KERNEL_PX)
    radius = np.ceil(0.5 + 4.0 * sk).astype(np.int64)
    pix = np.asarray(points) / v - 0.5
    base = np.rint(pix).astype(np.int64)
    frac = pix - base
    strides = np.array([int(np.prod(shape[a + 1 :])) for a in range(ndim)])
    groups, inverse = np.unique(radius, axis=0, return_inverse=True)
    for g, rad in enumerate(groups):
        members = np.flatnonzero(inverse.ravel() == g)
        kernel = int(np.prod(2 * rad + 1))
        for chunk in np.array_split(members, max(1, len(members) * kernel // 2_000_000 + 1)):
            flat = np.zeros((len(chunk),) + (1,) * ndim, dtype=np.int64)
            weight = mass[chunk].reshape((-1,) + (1,) * ndim).astype(np.float64)
            valid = np.ones_like(flat, dtype=bool)
            for a in range(ndim):
                k = np.arange(-rad[a], rad[a] + 1)
                f, s = frac[chunk, a][:, None], sk[chunk, a][:, None]
                w1 = ndtr((k + 0.5 - f) / s) - ndtr((k - 0.5 - f) / s)
                idx = base[chunk, a][:, None] + k
                view = [len(chunk)] + [1] * ndim
                view[a + 1] = len(k)
                weight = weight * w1.reshape(view)
                flat = flat + (idx * strides[a]).reshape(view)
                valid = valid & ((idx >= 0) & (idx < shape[a])).reshape(view)
            flat, weight = np.broadcast_arrays(flat, weight)
            valid = np.broadcast_to(valid, flat.shape)
            out += np.bincount(flat[valid], weights=weight[valid], minlength=out.size)
    return out.reshape(shape) / np.prod(v)


def _finish(
    image: np.ndarray, background: float, rng: np.random.Generator, shape: tuple[int, ...], v: np.ndarray
) -> np.ndarray:
    """Scale to peak 1, add the smooth background, rescale to [0, 1] with maximum exactly 1."""
    if not 0.0 <= background < 1.0:
        raise ValueError(f"background is a fraction of the peak in [0, 1), got {background}")
    image = np.asarray(image, dtype=np.float64)
    peak = image.max()
    if peak > 0:
        image = image / peak
    if background > 0:
        # Log-normal so that it stays positive; varies about +-40 % over ~10 um (illumination,
        # out-of-focus haze), mean ``background``.
        field = _Field(_extent(shape, v), 8.0, rng, v).grid(shape, v)
        image = image + background * np.exp(0.4 * field - 0.08)
    peak = image.max()
    if peak <= 0:
        return np.zeros(shape, dtype=np.float32)
    return np.clip(image / peak, 0.0, 1.0).astype(np.float32)


def _rotation(rng: np.random.Generator, ndim: int, tilt: float = 0.15) -> np.ndarray:
    """A rotation whose columns are the body axes: any angle in the xy plane and, in 3D, a small
    tilt (radians, std) out of it, since cells and nuclei lie flat on the coverslip."""
    phi = rng.uniform(0.0, 2.0 * np.pi)
    c, s = np.cos(phi), np.sin(phi)
    if ndim == 2:
        return np.array([[c, -s], [s, c]])
    in_plane = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    a, b = rng.normal(0.0, tilt, 2)
    tilt_y = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    tilt_x = np.array([[np.cos(b), 0.0, -np.sin(b)], [0.0, 1.0, 0.0], [np.sin(b), 0.0, np.cos(b)]])
    return tilt_y @ tilt_x @ in_plane


def _body_box(
    centre: np.ndarray, rot: np.ndarray, semi: np.ndarray, grow: float, shape: tuple[int, ...], v: np.ndarray
) -> tuple[slice, ...] | None:
    """The pixel box holding an ellipsoid grown by the factor ``grow``, or None outside the field."""
    half = np.sqrt(((rot * semi[None, :]) ** 2).sum(axis=1)) * grow + 2.0 * v
    lo = np.maximum(np.floor((centre - half) / v).astype(int), 0)
    hi = np.minimum(np.ceil((centre + half) / v).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return None
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def _ellipsoid(
    axes: list[np.ndarray],
    box: tuple[slice, ...],
    centre: np.ndarray,
    rot: np.ndarray,
    semi: np.ndarray,
    edge: np.ndarray | float,
    v: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance (um, > 0 inside) to the boundary ``rho = edge`` of an ellipsoid in a box,
    to first order, and the pixel width along the boundary normal."""
    ndim = len(axes)
    x = []
    for a in range(ndim):
        view = [1] * ndim
        view[a] = -1
        x.append((axes[a][box[a]] - centre[a]).reshape(view))
    u = [sum(rot[a, b] * x[a] for a in range(ndim)) / semi[b] for b in range(ndim)]
    rho = np.sqrt(sum(ub * ub for ub in u)) + 1e-12
    grad_u = [u[b] / semi[b] / rho for b in range(ndim)]
    grad = [sum(rot[a, b] * grad_u[b] for b in range(ndim)) for a in range(ndim)]
    norm = np.sqrt(sum(g * g for g in grad)) + 1e-12
    width = _normal_width([g / norm for g in grad], v)
    return (edge - rho) / norm, width


def _curvature_curves(
    rng: np.random.Generator,
    starts: np.ndarray,
    lengths: np.ndarray,
    kappa_std: float,
    kappa_corr: float,
    step: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plane curves of given lengths whose curvature is a cubic spline through random knots.

    Returns arc length ``s`` (M,), positions (M, n, 2) in (y, x) um and the unit normals (M, n, 2);
    the heading is the exact integral of the curvature and the position its trapezoidal integral.
    """
    n = len(lengths)
    s = np.arange(0.0, lengths.max() + step, step)
    knots = np.arange(0.0, lengths.max() + 2.0 * kappa_corr, kappa_corr)
    bias = rng.normal(0.0, kappa_std / 3.0, n)
    curvature = CubicSpline(knots, rng.normal(0.0, kappa_std, (knots.size, n)) + bias, axis=0)
    heading = rng.uniform(0.0, 2.0 * np.pi, n) + curvature.antiderivative()(s)
    tangent = np.stack([np.sin(heading), np.cos(heading)], axis=-1)
    steps = 0.5 * (tangent[1:] + tangent[:-1]) * step
    pos = starts[None] + np.concatenate([np.zeros((1, n, 2)), np.cumsum(steps, axis=0)])
    normal = np.stack([np.cos(heading), -np.sin(heading)], axis=-1)
    return s, pos, normal


def _random_1d(rng: np.random.Generator, s: np.ndarray, n: int, spacing: float) -> np.ndarray:
    """``n`` smooth unit-scale random functions of arc length, sampled at ``s``: (M, n)."""
    knots = np.arange(0.0, s[-1] + 2.0 * spacing, spacing)
    return CubicSpline(knots, rng.standard_normal((knots.size, n)), axis=0)(s)


def _render_strands(
    shape: tuple[int, ...],
    v: np.ndarray,
    s: np.ndarray,
    pos: np.ndarray,
    lengths: np.ndarray,
    brightness: np.ndarray,
    sigma: np.ndarray,
    keep: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Render tubes along sampled curves: pos (M, n, ndim) um, sampled at ``s`` (uniform step),
    ``brightness`` (M, n) the peak concentration and ``sigma`` (n,) the Gaussian cross-section std
    (um). The curves are resampled finely enough for the kernel to leave no beads."""
    ndim = len(shape)
    step = s[1] - s[0]
    sk = np.maximum(sigma[:, None] / v, _MIN_KERNEL_PX)
    ds = np.min(v * np.maximum(0.3, 0.6 * sk), axis=1)
    count = np.maximum(np.ceil(lengths / ds).astype(np.int64), 1)
    strand = np.repeat(np.arange(len(lengths)), count)
    local = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    arc = (local + 0.5) * ds[strand]
    g = np.minimum(arc / step, len(s) - 1.000001)
    i0 = np.floor(g).astype(np.int64)
    t = (g - i0)[:, None]
    points = (1.0 - t) * pos[i0, strand] + t * pos[i0 + 1, strand]
    bright = (1.0 - t[:, 0]) * brightness[i0, strand] + t[:, 0] * brightness[i0 + 1, strand]
    # Cross-section integral of a Gaussian tube of peak 1: sqrt(2 pi) sigma per transverse axis.
    mass = bright * ds[strand] * (_SQRT_2PI * sigma[strand]) ** (ndim - 1)
    extent = np.asarray(shape) * v
    margin = 5.0 * np.max(v)
    inside = np.all((points > -margin) & (points < extent + margin), axis=1)
    if keep is not None:
        inside[inside] = keep(points[inside])
    sig = np.repeat(sigma[strand][inside, None], ndim, axis=1)
    return _splat(shape, v, points[inside], mass[inside], sig)


def _in_field_length(s: np.ndarray, pos: np.ndarray, lengths: np.ndarray, extent_yx: np.ndarray) -> np.ndarray:
    step = s[1] - s[0]
    inside = np.all((pos >= 0) & (pos < extent_yx), axis=-1) & (s[:, None] <= lengths[None])
    return inside.sum(axis=0) * step


def _dart_throw(rng: np.random.Generator, low: np.ndarray, high: np.ndarray, spacing: float, count: int) -> np.ndarray:
    """Random points at least ``spacing`` apart in a box (random sequential addition)."""
    ndim = len(low)
    accepted = np.empty((0, ndim))
    candidates = rng.uniform(low, high, (8 * count + 16, ndim))
    for p in candidates:
        if len(accepted) >= count:
            break
        if len(accepted) == 0 or np.min(np.sum((accepted - p) ** 2, axis=1)) >= spacing**2:
            accepted = np.vstack([accepted, p])
    return accepted


class _PowerCells:
    """A power (weighted Voronoi) tessellation of warped physical space: a packed tissue.

    Cells are about ``cell_size`` um across; boundaries wobble by ~8 % of it (the warp), and the
    weights make neighbouring cells unequal.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        warp_rngs: list[np.random.Generator],
        extent: np.ndarray,
        voxel: np.ndarray,
        cell_size: float,
    ):
        ndim = len(extent)
        low, high = -0.75 * cell_size * np.ones(ndim), extent + 0.75 * cell_size
        cell_volume = cell_size**ndim * (np.sqrt(3) / 2 if ndim == 2 else 1 / np.sqrt(2))
        count = int(np.ceil(np.prod(high - low) / cell_volume)) + 2
        self.seeds = _dart_throw(rng, low, high, 0.8 * cell_size, count)
        if len(self.seeds) < 2:  # a field far smaller than a cell: one face needs two cells
            self.seeds = np.vstack([self.seeds, high + cell_size])
        self.weights = rng.uniform(-0.08, 0.08, len(self.seeds)) * cell_size**2
        lift = np.sqrt(self.weights.max() - self.weights + 1e-9)
        self.tree = cKDTree(np.column_stack([self.seeds, lift]))
        self.warp = [_Field(extent, 0.3 * cell_size, r, voxel) for r in warp_rngs[:ndim]]
        self.amplitude = 0.08 * cell_size

    def on_grid(self, shape: tuple[int, ...], v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per voxel: nearest and second-nearest cell, distance (um) to their common face (>= 0)
        and the pixel width along the face normal."""
        axes = _centres(shape, v)
        first = np.empty(shape, np.int32)
        second = np.empty(shape, np.int32)
        dist = np.empty(shape, np.float32)
        width = np.empty(shape, np.float32)
        rows = max(1, _CHUNK // int(np.prod(shape[1:])))
        for r0 in range(0, shape[0], rows):
            sl = slice(r0, min(r0 + rows, shape[0]))
            mesh = np.meshgrid(axes[0][sl], *axes[1:], indexing="ij")
            warp = [f.grid(shape, v, rows=sl) for f in self.warp]
            x = np.column_stack([(m + self.amplitude * w).ravel() for m, w in zip(mesh, warp)])
            # Power distance = squared distance in the lifted space, so a KD-tree finds it.
            _, idx = self.tree.query(np.column_stack([x, np.zeros(len(x))]), k=2)
            i1, i2 = idx[:, 0], idx[:, 1]
            p1, p2 = self.seeds[i1], self.seeds[i2]
            power1 = np.sum((x - p1) ** 2, axis=1) - self.weights[i1]
            power2 = np.sum((x - p2) ** 2, axis=1) - self.weights[i2]
            gap = np.linalg.norm(p2 - p1, axis=1) + 1e-12
            normal = ((p2 - p1) / gap[:, None]).T
            sub = (sl.stop - sl.start,) + shape[1:]
            first[sl] = i1.reshape(sub)
            second[sl] = i2.reshape(sub)
            dist[sl] = (np.maximum(power2 - power1, 0.0) / (2.0 * gap)).reshape(sub)
            width[sl] = _normal_width(list(normal), v).reshape(sub)
        return first, second, dist, width


# --- structures ---------------------------------------------------------------------------------


def filaments(
    shape: Sequence[int],
    voxel: float | Sequence[float],
    seed: Seed = 0,
    *,
    density: float = 0.8,
    width: tuple[float, float] = (0.025, 0.05),
    length: float = 15.0,
    bundle_fraction: float = 0.2,
    layer: float = 4.0,
    background: float = 0.02,
) -> np.ndarray:
    """Microtubule- or actin-like network of smooth thin filaments.

    Each filament's curvature is a cubic spline through random knots 3 um apart (std 0.12 /um,
    radius of curvature ~8 um, plus a per-filament bias); lengths are log-normal around
    ``length`` (3-60 um), so ends fall inside the field. Filaments are 25-50 nm wide tubes with a
    Gaussian cross-section of std width/4, integrated over the pixels; brightness varies between
    filaments (log-normal, 35 %) and along them (labelling density, 30 % over ~0.8 um). Crossings
    come from the random placement; a fraction are bundles of 2-4 filaments 0-120 nm apart that
    wander and, for half of them, splay apart past a random point. In 3D the filaments lie in the
    xy plane within a centred slab of thickness ``layer`` with a slight tilt and ~0.4 um smooth z
    excursions (a cell spread on a coverslip).

    Parameters
    ----------
    shape : sequence of int
        ``(y, x)`` or ``(z, y, x)``.
    voxel : float or sequence of float
        Pixel size in um per axis.
    seed : int or numpy Generator
        Randomness.
    density : float
        Filament length per area of the xy field (um / um^2).
    width : (float, float)
        Range of filament diameters (um).
    length : float
        Median filament length (um).
    bundle_fraction : float
        Fraction of the (parent) filaments that are bundles.
    layer : float
        3D only: thickness (um) of the slab holding the filaments' mean heights.
    background : float
        Mean level of the smooth background, as a fraction of the peak (default 2 %).

    Returns
    -------
    np.ndarray
        Float32 image in [0, 1] with maximum 1.
    """
    shape, v = _grid(shape, voxel)
    ndim = len(shape)
    extent = _extent(shape, v)
    geo, bg_rng = _streams(seed, 2)
    target = density * float(np.prod(extent[-2:]))
    step = 0.1
    batches, total = [], 0.0
    while total < target and len(batches) < 64:
        n = max(8, int(np.ceil((target - total) / (0.5 * length))))
        lengths = np.clip(length * np.exp(geo.normal(0.0, 0.5, n)), 3.0, 60.0)
        margin = 0.5 * length
        starts = geo.uniform(-margin, extent[-2:] + margin, (n, 2))
        s, pos, normal = _curvature_curves(geo, starts, lengths, 0.12, 3.0, step)
        bundle = geo.random(n) < bundle_fraction
        strands = np.where(bundle, geo.integers(2, 5, n), 1)
        parent = np.repeat(np.arange(n), strands)
        m = len(parent)
        in_bundle = bundle[parent]
        lateral = in_bundle * (geo.uniform(-0.06, 0.06, m) + 0.02 * _random_1d(geo, s, m, 3.0))
        splits = geo.random(n) < 0.5
        split_at = geo.uniform(0.0, 1.0, n) * lengths
        rate = np.where(splits, geo.uniform(0.05, 0.2, n), 0.0)[parent] * geo.choice([-1.0, 1.0], m)
        lateral = lateral + in_bundle * rate * np.clip(s[:, None] - split_at[parent], 0.0, 10.0)
        strand_pos = pos[:, parent] + lateral[..., None] * normal[:, parent]
        if ndim == 3:
            z0 = extent[0] / 2 + geo.uniform(-layer / 2, layer / 2, n)
            tilt = geo.normal(0.0, 0.03, n)
            z = z0 + tilt * (s[:, None] - lengths / 2) + 0.4 * _random_1d(geo, s, n, 4.0)
            z = z[:, parent] + in_bundle * geo.uniform(-0.05, 0.05, m)
            strand_pos = np.concatenate([z[..., None], strand_pos], axis=-1)
        bright = geo.lognormal(0.0, 0.35, m) * np.exp(0.3 * _random_1d(geo, s, m, 0.8) - 0.045)
        sigma = geo.uniform(width[0], width[1], m) / 4.0
        inside = _in_field_length(s, pos, lengths, extent[-2:])[parent]
        batches.append((s, strand_pos, lengths[parent], bright, sigma, inside))
        total += float(inside.sum())
    image = np.zeros(shape, np.float64)
    total = 0.0
    for s, strand_pos, lens, bright, sigma, inside in batches:
        # Keep the strands in order until the target length is reached.
        keep = np.cumsum(inside) + total <= target + inside
        total += float(inside[keep].sum())
        if keep.any():
            image += _render_strands(shape, v, s, strand_pos[:, keep], lens[keep], bright[:, keep], sigma[keep])
    return _finish(image, background, bg_rng, shape, v)


def nuclei(
    shape: Sequence[int],
    voxel: float | Sequence[float],
    seed: Seed = 0,
    *,
    diameter: tuple[float, float] = (5.0, 12.0),
    fill: float | None = None,
    nucleoli: str = "dark",
    irregularity: float = 0.06,
    periphery: float = 0.3,
    background: float = 0.02,
) -> np.ndarray:
    """Textured cell nuclei (a DNA stain) with nucleoli.

    Ellipses / flattened ellipsoids of mean lateral diameter 5-12 um (in-plane aspect 0.65-1, 3D
    height 0.35-0.6 of the diameter, tilted ~9 degrees), whose boundary wobbles by ``irregularity``
    of the radius over ~2 um (lobes) and a third of that over ~0.6 um (blebs), with a 50 nm soft
    nuclear edge integrated over the pixels. Chromatin is log-normal band-limited texture (grain
    0.2 um and 0.8 um) with a brighter rim (``periphery``, decaying over 0.5 um inside the
    envelope); each nucleus has its own brightness (25 %) and 1-4 nucleoli of 1-2 um diameter,
    darker (60 % less DNA) or brighter. Nuclei are placed at random, overlapping by up to 15 % of
    their radii, so some touch; placement stops at the ``fill`` fraction of the field.

    Parameters
    ----------
    shape, voxel, seed
        As for :func:`filaments`.
    diameter : (float, float)
        Range of mean lateral diameters (um).
    fill : float, optional
        Area (2D) or volume (3D) fraction to fill; default 0.35 in 2D and 0.25 in 3D.
    nucleoli : {"dark", "bright", "mixed"}
        Nucleoli darker than the chromatin (DNA stain), brighter (a nucleolar protein), or either
        per nucleus.
    irregularity : float
        Relative amplitude of the boundary's wobble.
    periphery : float
        Extra brightness of the peripheral heterochromatin, relative to the interior.
    background : float
        Mean level of the smooth background, as a fraction of the peak (default 2 %).

    Returns
    -------
    np.ndarray
        Float32 image in [0, 1] with maximum 1.
    """
    shape, v = _grid(shape, voxel)
    if nucleoli not in ("dark", "bright", "mixed"):
        raise ValueError(f"nucleoli must be 'dark', 'bright' or 'mixed', got {nucleoli!r}")
    ndim = len(shape)
    extent = _extent(shape, v)
    fill = (0.35 if ndim == 2 else 0.25) if fill is None else fill
    geo, r_lobe, r_bleb, r_fine, r_mid, bg_rng = _streams(seed, 6)
    bodies = _place_nuclei(geo, extent, diameter, fill, nucleoli)
    grains = ((2.0, r_lobe), (0.6, r_bleb), (0.2, r_fine), (0.8, r_mid))
    lobe, bleb, fine, mid = (_Field(extent, c, r, v).grid(shape, v) for c, r in grains)
    wobble = irregularity * (lobe + bleb / 3.0)
    chromatin = np.exp(0.3 * fine + 0.2 * mid)
    axes = _centres(shape, v)
    image = np.zeros(shape, np.float32)
    for body in bodies:
        box = _body_box(body["centre"], body["rot"], body["semi"], 1.0 + 4.0 * irregularity, shape, v)
        if box is None:
            continue
        sd, w = _ellipsoid(axes, box, body["centre"], body["rot"], body["semi"], 1.0 + wobble[box], v)
        inside = _step(sd, w, np.sqrt(0.05**2 + (0.1 * w) ** 2))
        if not np.any(inside > 1e-3):
            continue
        value = body["brightness"] * chromatin[box] * (1.0 + periphery * np.exp(-np.maximum(sd, 0.0) / 0.5))
        for centre, rot, semi in body["nucleoli"]:
            sub = _body_box(centre, rot, semi, 1.3, shape, v)
            if sub is None:
                continue
            # The nucleolus' box, relative to the nucleus' box (nucleoli lie inside their nucleus).
            rel = tuple(slice(max(a.start, b.start) - b.start, min(a.stop, b.stop) - b.start) for a, b in zip(sub, box))
            if any(r.stop <= r.start for r in rel):
                continue
            glob = tuple(slice(r.start + b.start, r.stop + b.start) for r, b in zip(rel, box))
            nsd, nw = _ellipsoid(axes, glob, centre, rot, semi, 1.0 + 0.08 * bleb[glob], v)
            nucleolus = _step(nsd, nw, np.sqrt(0.08**2 + (0.1 * nw) ** 2))
            if body["dark"]:
                value[rel] = value[rel] * (1.0 - 0.6 * nucleolus)
            else:
                value[rel] = value[rel] + 1.2 * body["brightness"] * nucleolus * np.exp(0.15 * fine[glob])
        image[box] = np.maximum(image[box], inside * value)
    return _finish(image, background, bg_rng, shape, v)


def _place_nuclei(
    geo: np.random.Generator, extent: np.ndarray, diameter: tuple[float, float], fill: float, nucleoli: str
) -> list[dict]:
    """Random sequential placement of nuclei and their nucleoli (all in um)."""
    ndim = len(extent)
    target = fill * float(np.prod(extent))
    bodies: list[dict] = []
    volume = 0.0
    mean_d = 0.5 * (diameter[0] + diameter[1])
    mean_volume = np.pi * (mean_d / 2) ** 2 if ndim == 2 else 4 / 3 * np.pi * (mean_d / 2) ** 3 * 0.47
    attempts = int(60 * target / mean_volume) + 60
    for _ in range(attempts):
        if volume >= target:
            break
        d = geo.uniform(*diameter)
        aspect = geo.uniform(0.65, 1.0)
        semi_xy = np.array([d / 2 / np.sqrt(aspect), d / 2 * np.sqrt(aspect)])
        semi = semi_xy if ndim == 2 else np.concatenate([[d / 2 * geo.uniform(0.35, 0.6)], semi_xy])
        rot = _rotation(geo, ndim)
        lateral = geo.uniform(-0.25 * d, extent[-2:] + 0.25 * d)
        if ndim == 3:
            zr = semi[0]
            z = geo.uniform(0.6 * zr, extent[0] - 0.6 * zr) if extent[0] > 1.2 * zr else extent[0] / 2
            centre = np.concatenate([[z], lateral])
        else:
            centre = lateral
        r_xy, r_z = d / 2, semi[0] if ndim == 3 else 0.0
        clash = False
        for other in bodies:
            gap_xy = np.linalg.norm(other["centre"][-2:] - centre[-2:])
            if gap_xy < 0.85 * (r_xy + other["r_xy"]):
                if ndim == 2 or abs(other["centre"][0] - centre[0]) < 0.85 * (r_z + other["r_z"]):
                    clash = True
                    break
        if clash:
            continue
        low, high = np.maximum(centre - semi.max(), 0.0), np.minimum(centre + semi.max(), extent)
        covered = float(np.prod(np.clip(high - low, 0.0, None) / (2 * semi.max())))
        volume += covered * (np.pi * np.prod(semi) if ndim == 2 else 4 / 3 * np.pi * np.prod(semi))
        dark = nucleoli == "dark" or (nucleoli == "mixed" and geo.random() < 0.5)
        spots = []
        for _ in range(int(geo.integers(1, 5))):
            r = geo.uniform(0.5, 1.0)
            direction = geo.normal(size=ndim)
            direction /= np.linalg.norm(direction) + 1e-12
            local = direction * geo.uniform(0.0, 0.5) * semi
            if ndim == 3:
                local[0] *= 0.5
            spots.append((centre + rot @ local, _rotation(geo, ndim, 0.5), r * geo.uniform(0.8, 1.2, ndim)))
        bodies.append(
            dict(
                centre=centre,
                semi=semi,
                rot=rot,
                r_xy=r_xy,
                r_z=r_z,
                dark=dark,
                brightness=geo.lognormal(0.0, 0.25),
                nucleoli=spots,
            )
        )
    return bodies


def membranes(
    shape: Sequence[int],
    voxel: float | Sequence[float],
    seed: Seed = 0,
    *,
    layout: str = "tissue",
    cell_size: float | None = None,
    thickness: tuple[float, float] = (0.05, 0.1),
    background: float = 0.02,
) -> np.ndarray:
    """Plasma membranes: thin closed shells around cells.

    ``layout="tissue"``: an epithelium-like packing, the faces of a power (weighted Voronoi)
    tessellation of seeds at least 0.8 ``cell_size`` apart (default 12 um), in a smoothly warped
    space so that faces bend (~1 um over ~4 um). ``layout="isolated"``: separate irregular cells
    (ellipses / flattened ellipsoids 0.7-1.3 ``cell_size`` across, default 15 um, with lobes and
    ruffles). Membranes are sheets 50-100 nm thick (varying smoothly over ~2 um), integrated over
    the pixels; their labelling varies per cell (35 %) and along the membrane (log-normal, 35 %
    over ~0.7 um). In 3D they are closed shells (the faces between 3D cells, or ellipsoid shells).

    Parameters
    ----------
    shape, voxel, seed
        As for :func:`filaments`.
    layout : {"tissue", "isolated"}
        Packed cells or isolated ones.
    cell_size : float, optional
        Typical cell diameter (um).
    thickness : (float, float)
        Range of membrane thickness (um).
    background : float
        Mean level of the smooth background, as a fraction of the peak (default 2 %).

    Returns
    -------
    np.ndarray
        Float32 image in [0, 1] with maximum 1.
    """
    shape, v = _grid(shape, voxel)
    if layout not in ("tissue", "isolated"):
        raise ValueError(f"layout must be 'tissue' or 'isolated', got {layout!r}")
    extent = _extent(shape, v)
    geo, r_thick, r_label, r_lobe, r_ruffle, bg_rng, *warp_rngs = _streams(seed, 9)
    cell_size = (12.0 if layout == "tissue" else 15.0) if cell_size is None else float(cell_size)
    t = thickness[0] + (thickness[1] - thickness[0]) * ndtr(_Field(extent, 2.0, r_thick, v).grid(shape, v))
    label = np.exp(0.35 * _Field(extent, 0.7, r_label, v).grid(shape, v) - 0.06)
    if layout == "tissue":
        cells = _PowerCells(geo, warp_rngs, extent, v, cell_size)
        brightness = geo.lognormal(0.0, 0.35, len(cells.seeds))
        first, second, dist, width = cells.on_grid(shape, v)
        sharp = np.sqrt(0.005**2 + (0.1 * width) ** 2)
        near = dist < 0.5 * t + width + 6.0 * sharp
        image = np.zeros(shape, np.float32)
        pair = 0.5 * (brightness[first[near]] + brightness[second[near]])
        image[near] = pair * _slab(dist[near], t[near], width[near], sharp[near]) * label[near]
        return _finish(image, background, bg_rng, shape, v)
    bodies = _place_cells(geo, extent, cell_size)
    lobe = 0.06 * _Field(extent, 0.25 * cell_size, r_lobe, v).grid(shape, v)
    lobe += 0.015 * _Field(extent, 1.0, r_ruffle, v).grid(shape, v)
    axes = _centres(shape, v)
    image = np.zeros(shape, np.float32)
    for centre, rot, semi, bright in bodies:
        box = _body_box(centre, rot, semi, 1.3, shape, v)
        if box is None:
            continue
        sd, w = _ellipsoid(axes, box, centre, rot, semi, 1.0 + lobe[box], v)
        sharp = np.sqrt(0.005**2 + (0.1 * w) ** 2)
        shell = _slab(sd, t[box], w, sharp)
        image[box] = np.maximum(image[box], bright * shell * label[box])
    return _finish(image, background, bg_rng, shape, v)


def _place_cells(geo: np.random.Generator, extent: np.ndarray, cell_size: float) -> list[tuple]:
    """Isolated cells, clear of each other, filling about 45 % of the field."""
    ndim = len(extent)
    cells: list[tuple] = []
    target = 0.45 * float(np.prod(extent[-2:]))
    area = 0.0
    for _ in range(int(40 * target / cell_size**2) + 40):
        if area >= target:
            break
        d = cell_size * geo.uniform(0.7, 1.3)
        aspect = geo.uniform(0.55, 1.0)
        semi = np.array([d / 2 / np.sqrt(aspect), d / 2 * np.sqrt(aspect)])
        if ndim == 3:
            semi = np.concatenate([[min(d / 2 * geo.uniform(0.5, 0.8), 0.45 * extent[0])], semi])
        rot = _rotation(geo, ndim, 0.05)
        lateral = geo.uniform(-0.3 * d, extent[-2:] + 0.3 * d)
        centre = lateral if ndim == 2 else np.concatenate([[extent[0] / 2], lateral])
        if any(np.linalg.norm(c[-2:] - centre[-2:]) < 1.08 * (semi[-2:].max() + s[-2:].max()) for c, _, s, _ in cells):
            continue
        area += np.pi * semi[-1] * semi[-2]
        cells.append((centre, rot, semi, geo.lognormal(0.0, 0.35)))
    return cells


def puncta(
    shape: Sequence[int],
    voxel: float | Sequence[float],
    seed: Seed = 0,
    *,
    density: float | None = None,
    radius: tuple[float, float] = (0.04, 0.3),
    cluster_fraction: float = 0.5,
    brightness_spread: float = 0.8,
    cytoplasm: float = 0.1,
    background: float = 0.02,
) -> np.ndarray:
    """Vesicles and spots (endosomes, lysosomes, synaptic vesicle clusters, mRNA granules).

    Spots of radius 40-300 nm (log-uniform, so most are below the resolution), rendered as
    Gaussians with the second moment of a ball (3D) or disc (2D) of that radius, integrated over
    the pixels. Their concentration is log-normal (``brightness_spread`` = 0.8: a 25-fold range
    over 95 % of them, clipped there). Half of them (``cluster_fraction``) are in Thomas clusters of ~12 spots
    spread over 0.15-0.6 um, the rest isolated; all lie in cytoplasm: a dim diffuse signal
    (``cytoplasm`` times the median spot concentration, log-normal texture of grain 0.5 um)
    filling irregular cell regions (~65 % of the field, ~3 um grain, soft edges).

    Parameters
    ----------
    shape, voxel, seed
        As for :func:`filaments`.
    density : float, optional
        Spots per um^2 (2D, default 1) or um^3 (3D, default 0.15) of field.
    radius : (float, float)
        Range of spot radii (um).
    cluster_fraction : float
        Fraction of the spots in clusters.
    brightness_spread : float
        Std of the log of the spot concentration.
    cytoplasm : float
        Diffuse cytoplasm level relative to the median spot concentration.
    background : float
        Mean level of the smooth background, as a fraction of the peak (default 2 %).

    Returns
    -------
    np.ndarray
        Float32 image in [0, 1] with maximum 1.
    """
    shape, v = _grid(shape, voxel)
    ndim = len(shape)
    extent = _extent(shape, v)
    geo, r_cells, r_tex, bg_rng = _streams(seed, 4)
    density = (1.0 if ndim == 2 else 0.15) if density is None else density
    cells = _Field(extent, 3.0, r_cells, v)

    def occupancy(x: np.ndarray) -> np.ndarray:
        return ndtr((cells.at(x) + 0.4) / 0.3)

    def in_cytoplasm(n: int) -> np.ndarray:
        picked = np.empty((0, ndim))
        for _ in range(100):  # a field with almost no cytoplasm takes what it found
            if len(picked) >= n:
                break
            x = geo.uniform(0.0, extent, (2 * n + 16, ndim))
            picked = np.vstack([picked, x[geo.random(len(x)) < occupancy(x)]])
        return picked[:n]

    total = geo.poisson(density * float(np.prod(extent)))
    n_clusters = geo.poisson(cluster_fraction * total / 12.0)
    isolated = in_cytoplasm(max(0, int(round((1 - cluster_fraction) * total))))
    parents = in_cytoplasm(n_clusters)
    sizes = np.maximum(geo.poisson(12.0, n_clusters), 1)
    spread = np.repeat(geo.uniform(0.15, 0.6, n_clusters), sizes)[:, None]
    children = np.repeat(parents, sizes, axis=0) + spread * geo.standard_normal((int(sizes.sum()), ndim))
    points = np.vstack([isolated, children])
    r = np.exp(geo.uniform(np.log(radius[0]), np.log(radius[1]), len(points)))
    # Clipped at 2 std so that a rare outlier does not set the peak (and dim everything else).
    conc = np.exp(brightness_spread * np.clip(geo.standard_normal(len(points)), -2.0, 2.0))
    sigma = r / (2.0 if ndim == 2 else np.sqrt(5.0))
    mass = conc * (_SQRT_2PI * sigma) ** ndim
    image = _splat(shape, v, points, mass, np.repeat(sigma[:, None], ndim, axis=1))
    # Pixel averages of the ~3 um cell field, not the point values the spots were placed by:
    # the two differ little at any microscope's pixel size.
    occ = ndtr((cells.grid(shape, v) + 0.4) / 0.3)
    texture = np.exp(0.3 * _Field(extent, 0.5, r_tex, v).grid(shape, v) - 0.045)
    image += cytoplasm * occ * texture
    return _finish(image, background, bg_rng, shape, v)


def tissue(
    shape: Sequence[int],
    voxel: float | Sequence[float],
    seed: Seed = 0,
    *,
    cell_size: float = 12.0,
    nuclei: str = "dark",
    ecm_fraction: float = 0.25,
    fibre_density: float | None = None,
    background: float = 0.02,
) -> np.ndarray:
    """Dense tissue: packed cells, nuclei and fibrous extracellular matrix (a stromal section).

    Cells tile the field (the power tessellation of :func:`membranes`, ~``cell_size`` um) with
    cytoplasm of per-cell brightness 0.35-1 and granular log-normal texture (grain 0.3 um and
    1.5 um), separated by 0.3 um darker intercellular clefts. Each cell holds a nucleus of
    0.35-0.5 ``cell_size`` near its centre, dark (a cytoplasmic label: 25 % of the cytoplasm) or
    bright (a nuclear label, with chromatin texture). A fraction ``ecm_fraction`` of the cells,
    clustered (chosen by a ~18 um smooth field), is extracellular matrix instead: dim ground
    substance (20 % of the peak cytoplasm) crossed by collagen-like fibres 0.15-0.6 um thick,
    long (median 40 um), mostly aligned, gently curved and crimped (0.2-0.5 um waves, 3-8 um
    period). Nearly every pixel is non-zero, the hardest case for sparsity priors.

    Parameters
    ----------
    shape, voxel, seed
        As for :func:`filaments`.
    cell_size : float
        Typical cell diameter (um).
    nuclei : {"dark", "bright"}
        Nuclei as holes in a cytoplasmic label, or bright under a nuclear one.
    ecm_fraction : float
        Fraction of the cells replaced by extracellular matrix.
    fibre_density : float, optional
        Fibre length per area (2D, default 2 um/um^2) or volume (3D, default 0.4 um/um^3) of the
        field (drawn only where the matrix is).
    background : float
        Mean level of the smooth background, as a fraction of the peak (default 2 %).

    Returns
    -------
    np.ndarray
        Float32 image in [0, 1] with maximum 1.
    """
    shape, v = _grid(shape, voxel)
    if nuclei not in ("dark", "bright"):
        raise ValueError(f"nuclei must be 'dark' or 'bright', got {nuclei!r}")
    ndim = len(shape)
    extent = _extent(shape, v)
    geo, fib, r_ecm, r_gran, r_mid, r_wobble, bg_rng, *warp_rngs = _streams(seed, 10)
    cells = _PowerCells(geo, warp_rngs, extent, v, cell_size)
    n_cells = len(cells.seeds)
    ecm_score = _Field(extent + 1.5 * cell_size, 1.5 * cell_size, r_ecm, v).at(cells.seeds + 0.75 * cell_size)
    is_ecm = ecm_score > np.quantile(ecm_score, 1.0 - ecm_fraction) if ecm_fraction > 0 else np.zeros(n_cells, bool)
    brightness = geo.uniform(0.35, 1.0, n_cells).astype(np.float32)
    offsets = geo.normal(0.0, 0.05 * cell_size, (n_cells, ndim))
    nucleus_d = geo.uniform(0.35, 0.5, n_cells) * cell_size
    aspects = geo.uniform(0.7, 1.0, n_cells)
    rotations = [_rotation(geo, ndim) for _ in range(n_cells)]
    heights = geo.uniform(0.6, 0.9, n_cells)
    nucleus_bright = geo.uniform(1.2, 1.6, n_cells)

    first, second, dist, width = cells.on_grid(shape, v)
    sharp = np.sqrt(0.02**2 + (0.1 * width) ** 2)
    # Fraction of each pixel in its nearest cell; the rest is in the second-nearest.
    own = _step(dist, width, sharp)
    cyto = brightness[first] * own + brightness[second] * (1.0 - own)
    ecm = is_ecm[first] * own + is_ecm[second] * (1.0 - own)
    # Clefts only between cells, not between matrix "cells".
    cyto *= 1.0 - 0.45 * (~(is_ecm[first] & is_ecm[second])) * _slab(dist, 0.3, width, sharp)
    del second, dist, width, sharp
    gran = _Field(extent, 0.3, r_gran, v).grid(shape, v)
    mid = _Field(extent, 1.5, r_mid, v).grid(shape, v)
    cyto *= np.exp(0.25 * gran + 0.15 * mid - 0.04)

    wobble = 0.05 * _Field(extent, 1.0, r_wobble, v).grid(shape, v)
    axes = _centres(shape, v)
    for i in np.flatnonzero(~is_ecm):
        centre = cells.seeds[i] + offsets[i]
        d = nucleus_d[i]
        semi = np.array([d / 2 / np.sqrt(aspects[i]), d / 2 * np.sqrt(aspects[i])])
        if ndim == 3:
            semi = np.concatenate([[d / 2 * heights[i]], semi])
        box = _body_box(centre, rotations[i], semi, 1.25, shape, v)
        if box is None:
            continue
        sd, w = _ellipsoid(axes, box, centre, rotations[i], semi, 1.0 + wobble[box], v)
        m = _step(sd, w, np.sqrt(0.05**2 + (0.1 * w) ** 2)) * (first[box] == i) * own[box]
        if nuclei == "dark":
            cyto[box] = cyto[box] * (1.0 - 0.75 * m)
        else:
            chromatin = nucleus_bright[i] * np.exp(0.3 * gran[box] - 0.045)
            cyto[box] = cyto[box] * (1.0 - m) + m * chromatin

    ground = 0.2 * np.exp(0.3 * mid - 0.045)
    fibres = _tissue_fibres(fib, shape, v, extent, ecm, fibre_density)
    image = (1.0 - ecm) * cyto + ecm * (ground + fibres)
    return _finish(image, background, bg_rng, shape, v)


def _tissue_fibres(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    v: np.ndarray,
    extent: np.ndarray,
    ecm: np.ndarray,
    density: float | None,
) -> np.ndarray:
    """Collagen-like fibres, rendered only near the matrix (``ecm``: its pixel fraction)."""
    ndim = len(shape)
    if not np.any(ecm > 0):
        return np.zeros(shape, np.float32)
    density = (2.0 if ndim == 2 else 0.4) if density is None else density
    field = float(np.prod(extent))
    # Drawn everywhere, kept in the matrix: the count is set by the whole field.
    n = max(1, int(round(density * field / (0.6 * 40.0))))
    lengths = np.clip(40.0 * np.exp(rng.normal(0.0, 0.4, n)), 10.0, 120.0)
    starts = rng.uniform(-20.0, extent[-2:] + 20.0, (n, 2))
    s, pos, normal = _curvature_curves(rng, starts, lengths, 0.03, 5.0, 0.2)
    # Mostly aligned: rotate 70 % of the fibres onto one direction (the curves start at random).
    main = rng.uniform(0.0, np.pi)
    aligned = rng.random(n) < 0.7
    start_heading = np.arctan2(pos[1, :, 0] - pos[0, :, 0], pos[1, :, 1] - pos[0, :, 1])
    turn = np.where(aligned, main + rng.normal(0.0, 0.15, n) - start_heading, 0.0)
    c, sn = np.cos(turn), np.sin(turn)
    rel = pos - pos[:1]
    pos = pos[:1] + np.stack([c * rel[..., 0] + sn * rel[..., 1], -sn * rel[..., 0] + c * rel[..., 1]], axis=-1)
    normal = np.stack([c * normal[..., 0] + sn * normal[..., 1], -sn * normal[..., 0] + c * normal[..., 1]], axis=-1)
    amplitude, period, phase = rng.uniform(0.2, 0.5, n), rng.uniform(3.0, 8.0, n), rng.uniform(0.0, 2 * np.pi, n)
    crimp = amplitude * np.sin(2 * np.pi * s[:, None] / period + phase)
    pos = pos + crimp[..., None] * normal
    if ndim == 3:
        z = rng.uniform(0.0, extent[0], n) + rng.normal(0.0, 0.15, n) * (s[:, None] - lengths / 2)
        pos = np.concatenate([z[..., None], pos], axis=-1)
    bright = np.repeat(0.8 * rng.lognormal(0.0, 0.4, n)[None], len(s), axis=0)
    sigma = rng.uniform(0.15, 0.6, n) / 4.0

    # Fibres are masked by the matrix afterwards; this only skips the points that cannot show.
    reach = np.ceil(4.0 * 0.15 / v).astype(int) + 1
    near = ndimage.maximum_filter(ecm > 0, size=tuple(2 * reach + 1))

    def keep(points: np.ndarray) -> np.ndarray:
        idx = np.clip((points / v).astype(np.int64), 0, np.asarray(shape) - 1)
        return near[tuple(idx.T)]

    return _render_strands(shape, v, s, pos, lengths, bright, sigma, keep=keep).astype(np.float32)


STRUCTURES: dict[str, Callable[..., np.ndarray]] = {
    "filaments": filaments,
    "nuclei": nuclei,
    "membranes": membranes,
    "puncta": puncta,
    "tissue": tissue,
}


def make_structure(
    name: str, shape: Sequence[int], voxel: float | Sequence[float], seed: Seed = 0, **kwargs
) -> np.ndarray:
    """Generate the structure ``name`` of :data:`STRUCTURES`; keyword arguments go to its generator."""
    try:
        generator = STRUCTURES[name]
    except KeyError:
        raise ValueError(f"unknown structure {name!r}; choose from {', '.join(STRUCTURES)}") from None
    return generator(shape, voxel, seed, **kwargs)


# --- images shipped with scikit-image -----------------------------------------------------------

# Microscopy images that scikit-image ships in its wheel (no pooch download). ``human_mitosis``,
# ``kidney``, ``cells3d``, ``lily``, ``skin``, ``protein_transport`` and ``nickel_solidification``
# are fetched over the network on first use, so they are not offered.
SKIMAGE_IMAGES = ("cell", "immunohistochemistry")


def skimage_image(name: str, shape: Sequence[int] | None = None) -> np.ndarray:
    """A microscopy image shipped with scikit-image, grey, in [0, 1] with maximum 1.

    ``cell``: a cell in saline, 660x550 (its grey levels). ``immunohistochemistry``: a
    DAB-stained tissue section, 512x512, as the haematoxylin (nuclear stain) concentration from
    colour deconvolution, which reads like a fluorescence nuclear channel.

    Parameters
    ----------
    name : str
        One of :data:`SKIMAGE_IMAGES`.
    shape : sequence of int, optional
        ``(y, x)``: centre-crop, or mirror-tile where the image is smaller; ``None`` keeps it whole.

    Returns
    -------
    np.ndarray
        Float32 image.
    """
    from skimage import color, data

    if name not in SKIMAGE_IMAGES:
        raise ValueError(f"unknown scikit-image image {name!r}; choose from {', '.join(SKIMAGE_IMAGES)}")
    if name == "immunohistochemistry":
        image = color.rgb2hed(data.immunohistochemistry())[..., 0]
    else:
        image = np.asarray(getattr(data, name)(), dtype=np.float64)
    if shape is not None:
        shape = tuple(int(n) for n in shape)
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"shape must be 2D (y, x), got {shape}")
        pad = [(max(0, (n - m + 1) // 2), max(0, (n - m + 1) // 2)) for n, m in zip(shape, image.shape)]
        image = np.pad(image, pad, mode="symmetric")
        start = [(m - n) // 2 for n, m in zip(shape, image.shape)]
        image = image[start[0] : start[0] + shape[0], start[1] : start[1] + shape[1]]
    lo, hi = float(image.min()), float(image.max())
    if hi <= lo:
        raise ValueError(f"the {name!r} crop is constant")
    return ((image - lo) / (hi - lo)).astype(np.float32)
