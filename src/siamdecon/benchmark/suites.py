"""Benchmark suites: ground truths anyone can regenerate offline, degraded by the paper's protocol."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..psf import generate_psf
from ..simulate import degrade, filament_phantom, rescale01

__all__ = ["IMAGES_2D", "QUICK_2D", "Case", "suite_2d", "suite_3d", "image_seed"]

# Single-channel (or grey versions of) images that scikit-image ships without a download.
IMAGES_2D = (
    "camera",
    "moon",
    "coins",
    "cell",
    "text",
    "page",
    "brick",
    "grass",
    "gravel",
    "microaneurysms",
    "astronaut",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
)
QUICK_2D = ("camera", "coins", "cell")


@dataclass
class Case:
    """One benchmark entry: a ground truth, its degraded version and the PSF."""

    suite: str
    name: str
    clean: np.ndarray
    noisy: np.ndarray
    psf: np.ndarray

    @property
    def key(self) -> str:
        return f"{self.suite}/{self.name}"


def image_seed(name: str, base: int = 0) -> int:
    """A stable per-image seed (independent of the order images are run in)."""
    return (zlib.crc32(name.encode()) + base) % (2**31)


def _load_skimage(name: str) -> np.ndarray:
    from skimage import color, data

    if name not in IMAGES_2D:
        raise ValueError(f"unknown 2D benchmark image {name!r}; choose from {', '.join(IMAGES_2D)}")
    img = getattr(data, name)()
    if img.ndim == 3:
        img = color.rgb2gray(img[..., :3])
    return np.asarray(img, dtype=np.float64)


def _centre_crop(img: np.ndarray, size: int | None) -> np.ndarray:
    if size is None:
        return img
    out = img
    for axis, n in enumerate(img.shape):
        if n > size:
            a = (n - size) // 2
            out = np.take(out, range(a, a + size), axis=axis)
    return out


def suite_2d(
    names: tuple[str, ...] | list[str] = IMAGES_2D,
    crop: int | None = 512,
    seed: int = 0,
    psf: np.ndarray | None = None,
) -> Iterator[Case]:
    """The 2D suite: each image rescaled to [0, 1], blurred with the paper's 2D PSF, noised.

    Parameters
    ----------
    names : sequence of str
        Images of :data:`IMAGES_2D` to include.
    crop : int or None
        Centre crop to at most ``crop`` pixels per axis (``None``: whole images).
    seed : int
        Base seed; each image's noise seed is derived from its name.
    psf : np.ndarray, optional
        Another normalized 2D PSF instead of the paper's.
    """
    psf = generate_psf(ndim=2) if psf is None else psf
    for name in names:
        clean = rescale01(_centre_crop(_load_skimage(name), crop))
        yield Case("2d", name, clean, degrade(clean, psf, seed=image_seed(name, seed)), psf)


def suite_3d(
    shape: tuple[int, int, int] = (64, 128, 128),
    n_filaments: int | None = None,
    count: int = 1,
    seed: int = 0,
    psf: np.ndarray | None = None,
) -> Iterator[Case]:
    """The 3D suite: microtubule-like filament phantoms blurred with the paper's 3D PSF, noised.

    Parameters
    ----------
    shape : tuple of int
        Volume shape ``(z, y, x)``.
    n_filaments : int, optional
        Density. The default (320 for 64x256x256, scaled by volume over the longest side, since
        filaments run until they leave the volume) gives an input near the paper's 21.2 dB PSNR:
        21.4 dB at 64x256x256.
    count : int
        Number of volumes.
    seed : int
        Base seed.
    psf : np.ndarray, optional
        Another normalized 3D PSF instead of the paper's.
    """
    psf = generate_psf(ndim=3) if psf is None else psf
    if n_filaments is None:
        n_filaments = max(4, round(320 * np.prod(shape) / (64 * 256 * 256) * 256 / max(shape)))
    for i in range(count):
        name = f"filaments{i}"
        clean = filament_phantom(shape, n_filaments=n_filaments, seed=image_seed(name, seed))
        yield Case("3d", name, clean, degrade(clean, psf, seed=image_seed(name, seed) + 1), psf)
