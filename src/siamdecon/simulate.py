"""The benchmark degradation of the paper, a camera's noise, and synthetic phantoms.

Protocol (both papers): ground truth in [0, 1]; blur with the PSF ("same" size, zero boundary);
Poisson-Gaussian noise ``y + sqrt(alpha * y + sigma^2) * N(0, 1)``; in 2D, salt-and-pepper
(a fraction of pixels replaced by ``U(0, 1)``); quantization ``round(2^bits * y) / 2^bits``
clipped to [0, 1].

A microscope's camera (:func:`camera_image`) instead counts photons: the blurred truth scaled to
expected photo-electrons, Poisson noise, Gaussian read noise, a gain to counts, an offset, rounding
to integers and clipping to the 16-bit range; :func:`camera_to_truth` maps counts back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .operators import PSFConvolution

__all__ = [
    "rescale01",
    "degrade",
    "Camera",
    "camera_image",
    "camera_to_truth",
    "filament_phantom",
    "dead_leaves",
    "fluorescence_2d",
    "tubes_3d",
]


def rescale01(image: np.ndarray) -> np.ndarray:
    """Linearly rescale to [0, 1] (float32)."""
    arr = np.asarray(image, dtype=np.float64)
    lo, hi = arr.min(), arr.max()
    if hi <= lo:
        raise ValueError("cannot rescale a constant image")
    return ((arr - lo) / (hi - lo)).astype(np.float32)


def degrade(
    clean: np.ndarray,
    psf: np.ndarray,
    *,
    poisson: float = 0.001,
    gaussian: float = 0.1,
    salt_pepper: float | None = None,
    bits: int | None = 10,
    seed: int = 0,
) -> np.ndarray:
    """Blur and add noise as in the paper's benchmark.

    Parameters
    ----------
    clean : np.ndarray
        Ground truth, 2D or 3D, expected in [0, 1].
    psf : np.ndarray
        Kernel summing to 1, same number of dimensions.
    poisson : float
        ``alpha``: signal-dependent variance factor (0.001).
    gaussian : float
        ``sigma``: signal-independent noise std (0.1).
    salt_pepper : float, optional
        Fraction of pixels replaced by ``U(0, 1)``; default 0.01 for 2D and 0 for 3D.
    bits : int or None
        Quantization depth (10); ``None`` skips quantization and clipping.
    seed : int
        Seed of the noise.

    Returns
    -------
    np.ndarray
        The degraded image (float32).
    """
    clean = np.asarray(clean, dtype=np.float32)
    if clean.ndim != np.ndim(psf):
        raise ValueError(f"image is {clean.ndim}D but the PSF is {np.ndim(psf)}D")
    if salt_pepper is None:
        salt_pepper = 0.01 if clean.ndim == 2 else 0.0
    rng = np.random.default_rng(seed)
    op = PSFConvolution(psf, backend="fft")
    blurred = op.convolve_numpy(clean).astype(np.float64)
    var = np.clip(poisson * blurred + gaussian**2, 0.0, None)
    noisy = blurred + np.sqrt(var) * rng.standard_normal(blurred.shape)
    if salt_pepper > 0:
        hit = rng.random(noisy.shape) < salt_pepper
        noisy[hit] = rng.random(int(hit.sum()))
    if bits is not None:
        noisy = np.clip(np.round(noisy * 2**bits) / 2**bits, 0.0, 1.0)
    return noisy.astype(np.float32)


@dataclass(frozen=True)
class Camera:
    """How a camera turns expected photons into stored counts.

    Attributes
    ----------
    photons : float
        Expected photo-electrons at a ground-truth intensity of 1 (the truth's brightest pixel),
        before the blur spreads them.
    gain : float
        Counts (ADU) per photo-electron.
    read_noise : float
        Standard deviation of the Gaussian read noise, in photo-electrons.
    offset : float
        Constant added by the camera (counts); commonly about 100.
    bits : int
        Bit depth of the stored integers (16: values clipped to [0, 65535]).
    """

    photons: float = 300.0
    gain: float = 1.0
    read_noise: float = 1.5
    offset: float = 100.0
    bits: int = 16

    def __post_init__(self) -> None:
        for name in ("photons", "gain"):
            if not getattr(self, name) > 0:
                raise ValueError(f"camera {name} must be positive, got {getattr(self, name)}")
        for name in ("read_noise", "offset"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"camera {name} must be a finite non-negative number, got {value}")
        if self.bits not in (8, 12, 16):
            raise ValueError(f"camera bits must be 8, 12 or 16, got {self.bits}")

    @property
    def scale(self) -> float:
        """Counts per unit of ground-truth intensity (``gain * photons``)."""
        return self.gain * self.photons


def camera_image(
    clean: np.ndarray,
    psf: np.ndarray,
    camera: Camera | None = None,
    *,
    margin: int | tuple[int, ...] = 0,
    seed: int = 0,
) -> np.ndarray:
    """Blur a ground truth and record it as a camera would: photon and read noise, gain, offset.

    ``counts = round(gain * (Poisson(photons * (P clean)) + N(0, read_noise^2)) + offset)``, clipped to
    the camera's integer range. A dim background belongs in the truth (it is part of the object).

    Parameters
    ----------
    clean : np.ndarray
        Ground truth in [0, 1], 2D or 3D, including ``margin`` pixels on every side.
    psf : np.ndarray
        Kernel summing to 1, with the truth's number of dimensions.
    camera : Camera, optional
        Photons, gain, read noise, offset and bit depth (default ``Camera()``).
    margin : int or tuple of int
        Pixels cropped from each side of every axis after the blur (one value or one per axis).
        A truth larger than the field of view makes the object continue beyond the image border,
        as it does in a microscope, instead of the zero boundary of :func:`degrade`.
    seed : int
        Seed of the noise.

    Returns
    -------
    np.ndarray
        ``uint16`` (or ``uint8`` for 8 bits) counts, the truth's shape less the margins.
    """
    camera = camera or Camera()
    clean = np.asarray(clean, dtype=np.float32)
    if clean.ndim != np.ndim(psf):
        raise ValueError(f"image is {clean.ndim}D but the PSF is {np.ndim(psf)}D")
    margins = (margin,) * clean.ndim if np.isscalar(margin) else tuple(margin)  # type: ignore[arg-type]
    if len(margins) != clean.ndim or any(int(m) < 0 or 2 * int(m) >= n for m, n in zip(margins, clean.shape)):
        raise ValueError(f"margin {margin} does not fit an image of shape {clean.shape}")
    blurred = PSFConvolution(psf, backend="fft").convolve_numpy(clean).astype(np.float64)
    blurred = blurred[tuple(slice(int(m), n - int(m)) for m, n in zip(margins, clean.shape))]
    rng = np.random.default_rng(seed)
    electrons = rng.poisson(np.clip(camera.photons * blurred, 0.0, None)).astype(np.float64)
    if camera.read_noise > 0:
        electrons += camera.read_noise * rng.standard_normal(electrons.shape)
    counts = np.round(camera.gain * electrons + camera.offset)
    dtype = np.uint8 if camera.bits == 8 else np.uint16
    return np.clip(counts, 0, 2**camera.bits - 1).astype(dtype)


def camera_to_truth(counts: np.ndarray, camera: Camera) -> np.ndarray:
    """Map camera counts (or an estimate in counts) to the ground truth's scale.

    ``(counts - offset) / (gain * photons)``: the same map for every method, so that scores in the
    truth's [0, 1] units compare methods fairly.
    """
    return ((np.asarray(counts, dtype=np.float64) - camera.offset) / camera.scale).astype(np.float32)


def filament_phantom(
    shape: tuple[int, int, int] = (64, 128, 128),
    n_filaments: int = 40,
    thickness: float = 0.8,
    seed: int = 0,
) -> np.ndarray:
    """Microtubule-like volume: random smooth thin filaments, scaled to [0, 1].

    Each filament is a random walk with slowly turning direction (a smooth curve), drawn by
    marking the voxels it passes and blurring slightly with a Gaussian of ``thickness`` voxels.

    Parameters
    ----------
    shape : tuple of int
        Volume shape ``(z, y, x)``.
    n_filaments : int
        Number of filaments (density).
    thickness : float
        Gaussian sigma of the filament cross-section, in voxels.
    seed : int
        Random seed.
    """
    rng = np.random.default_rng(seed)
    vol = np.zeros(shape, dtype=np.float32)
    size = np.array(shape, dtype=np.float64)
    length = int(2 * size.max())
    for _ in range(n_filaments):
        pos = rng.random(3) * size
        direction = rng.normal(size=3)
        direction[0] *= 0.3  # microtubules lie mostly in the xy plane
        direction /= np.linalg.norm(direction)
        brightness = rng.uniform(0.5, 1.0)
        for _ in range(length * 2):
            turn = rng.normal(scale=0.08, size=3)
            turn[0] *= 0.3
            direction = direction + turn
            direction /= np.linalg.norm(direction)
            pos = pos + 0.5 * direction
            idx = np.round(pos).astype(int)
            if np.any(idx < 0) or np.any(idx >= size):
                break
            vol[tuple(idx)] = max(vol[tuple(idx)], brightness)
    if thickness > 0:
        vol = ndimage.gaussian_filter(vol, thickness)
    return rescale01(vol) if vol.max() > 0 else vol


def dead_leaves(size: int = 256, seed: int | np.random.Generator = 0) -> np.ndarray:
    """A dead-leaves image: occluding discs and rectangles with power-law sizes, in [0, 1].

    Dead leaves share the scale invariance and sharp occluding edges of natural images, which
    makes them a known stand-in for natural images when training restoration networks without
    real data (Achddou et al., 2021). A third of the leaves carry a shading gradient, half of
    those a sinusoidal texture.

    Parameters
    ----------
    size : int
        Side of the square image.
    seed : int or numpy Generator
        Randomness.

    Returns
    -------
    np.ndarray
        Float32 image rescaled to [0, 1].
    """
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size), np.float32)
    covered = np.zeros((size, size), bool)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # Radius density ~ r^-3 between rmin and rmax (scale invariance), sampled by inverting its CDF.
    rmin, rmax = rng.uniform(2.0, 5.0), size / 2
    for _ in range(30000):
        r = (rmin**-2 - rng.random() * (rmin**-2 - rmax**-2)) ** -0.5
        cy, cx = rng.random(2) * (size + 2 * r) - r
        y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 2, size)
        x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 2, size)
        if y0 >= y1 or x0 >= x1:
            continue
        sy, sx = yy[y0:y1, x0:x1], xx[y0:y1, x0:x1]
        if rng.random() < 0.2:
            inside = (np.abs(sy - cy) < r) & (np.abs(sx - cx) < r * rng.uniform(0.2, 1.0))
        else:
            inside = (sy - cy) ** 2 + (sx - cx) ** 2 < r * r
        free = inside & ~covered[y0:y1, x0:x1]
        if not free.any():
            continue
        value = np.full(sy.shape, rng.random(), np.float32)
        if rng.random() < 0.3:
            g = rng.normal(size=2) * 0.5 / max(r, 1.0)
            value = value + g[0] * (sy - cy) + g[1] * (sx - cx)
            if rng.random() < 0.5:
                freq, angle = rng.uniform(0.2, 1.2), rng.random() * np.pi
                value = value + rng.uniform(0.05, 0.3) * np.sin(freq * (np.cos(angle) * sy + np.sin(angle) * sx))
        img[y0:y1, x0:x1][free] = value[free]
        covered[y0:y1, x0:x1] |= free
        if covered.mean() > 0.998:
            break
    return rescale01(img)


def fluorescence_2d(size: int = 256, seed: int | np.random.Generator = 0) -> np.ndarray:
    """A fluorescence-like 2D image: curved filaments and spots on a smooth dim background, in [0, 1].

    Parameters
    ----------
    size : int
        Side of the square image.
    seed : int or numpy Generator
        Randomness.

    Returns
    -------
    np.ndarray
        Float32 image rescaled to [0, 1].
    """
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(3, 30))):
        pos = rng.random(2) * size
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction)
        brightness = rng.uniform(0.3, 1.0)
        for _ in range(4 * size):
            direction = direction + rng.normal(scale=0.1, size=2)
            direction /= np.linalg.norm(direction)
            pos = pos + 0.5 * direction
            idx = np.round(pos).astype(int)
            if np.any(idx < 0) or np.any(idx >= size):
                break
            img[idx[0], idx[1]] = max(img[idx[0], idx[1]], brightness)
    n_spots = int(rng.integers(0, 200))
    spots = (rng.random((n_spots, 2)) * size).astype(int)
    np.add.at(img, (spots[:, 0], spots[:, 1]), rng.uniform(1.0, 3.0, n_spots).astype(np.float32))
    img = ndimage.gaussian_filter(img, rng.uniform(0.5, 1.5))
    img /= max(float(img.max()), 1e-6)
    background = ndimage.gaussian_filter(rng.random((size, size)).astype(np.float32), rng.uniform(8.0, 30.0))
    background = (background - background.min()) / (np.ptp(background) + 1e-6)
    return rescale01(img + rng.uniform(0.0, 0.3) * background)


def tubes_3d(shape: tuple[int, int, int] = (48, 128, 128), seed: int | np.random.Generator = 0) -> np.ndarray:
    """A fluorescence-like volume for pretraining: smooth tubes, spots and a dim background, in [0, 1].

    Deliberately not :func:`filament_phantom` (the 3D benchmark's ground truth): tubes are smooth
    sums of random sinusoids rather than random walks, of random thickness and tilt, mixed with
    spots of several sizes, so that a prior pretrained on them is not fitted to the benchmark's
    generator.

    Parameters
    ----------
    shape : tuple of int
        Volume shape ``(z, y, x)``.
    seed : int or numpy Generator
        Randomness.

    Returns
    -------
    np.ndarray
        Float32 volume rescaled to [0, 1].
    """
    rng = np.random.default_rng(seed)
    size = np.array(shape, dtype=np.float64)
    tubes = np.zeros(shape, np.float32)
    t = np.linspace(0.0, 1.0, int(24 * size.max()))[:, None]  # dense enough for unbroken tubes
    for _ in range(int(rng.integers(5, 40))):
        centre = rng.random(3) * size
        amplitude = rng.uniform(0.2, 1.0, (3, 3)) * size  # 3 harmonics per axis
        amplitude[:, 0] *= rng.uniform(0.1, 1.0)  # tilt: from lying in xy to crossing z
        freq = rng.uniform(0.2, 1.2, (3, 3))
        phase = rng.uniform(0, 2 * np.pi, (3, 3))
        curve = centre + sum(amplitude[k] * np.sin(2 * np.pi * freq[k] * t + phase[k]) / 3 for k in range(3))
        idx = np.round(curve).astype(int)
        idx = idx[np.all((idx >= 0) & (idx < size.astype(int)), axis=1)]
        tubes[tuple(idx.T)] = np.maximum(tubes[tuple(idx.T)], rng.uniform(0.3, 1.0))
    tubes = ndimage.gaussian_filter(tubes, rng.uniform(0.5, 1.5))
    tubes /= max(float(tubes.max()), 1e-6)
    spots = np.zeros(shape, np.float32)
    n_spots = int(rng.integers(0, 150))
    points = (rng.random((n_spots, 3)) * size).astype(int)
    np.add.at(spots, tuple(points.T), rng.uniform(0.5, 1.0, n_spots).astype(np.float32))
    spots = ndimage.gaussian_filter(spots, rng.uniform(0.7, 2.5))
    spots /= max(float(spots.max()), 1e-6)
    background = ndimage.gaussian_filter(rng.random(shape).astype(np.float32), rng.uniform(6.0, 20.0))
    background = (background - background.min()) / (np.ptp(background) + 1e-6)
    vol = tubes + rng.uniform(0.0, 1.0) * spots + rng.uniform(0.0, 0.2) * background
    return rescale01(vol)
