"""Synthetic training data for priors that take any PSF and any camera: structures, PSFs, noise.

A prior pretrained for one PSF, one noise model and one kind of image helps little elsewhere
(README "On microscope-like data"). These samplers draw the variety a microscopist's data has:

- structures (:func:`random_structure`): curvilinear networks, blobs with texture and holes, thin
  closed contours, spots of many sizes and brightnesses, dense textures and dead leaves, mixed at
  random scales. Built from random fields and random walks here, deliberately not from
  :mod:`siamdecon.benchmark.structures` (the benchmark's truths), so that the benchmark measures
  how a prior generalizes;
- PSFs (:func:`random_psf`): widefield (vectorial Gibson-Lanni) in and out of focus, with and
  without index mismatch, confocal, Gaussian, and the paper's ring-shaped particle-scan planes, at
  sampling from oversampled to undersampled;
- cameras (:func:`random_camera`): photons from 10 to 3,000, gain, read noise, offset; or the
  paper's Poisson-Gaussian protocol in [0, 1] (with salt-and-pepper in 2D).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy import ndimage
from tqdm.auto import tqdm

from .data import psf_is_dihedral
from .noise import estimate_noise
from .operators import PSFConvolution
from .psf import confocal_psf, generate_psf, widefield_psf
from .simulate import Camera, dead_leaves, degrade, fluorescence_2d, tubes_3d

if TYPE_CHECKING:
    from .prior import PretrainConfig

__all__ = [
    "random_structure",
    "random_psf",
    "random_camera",
    "PaperNoise",
    "Batch",
    "GenericBatches",
    "synthetic_pairs",
    "FixedPSFBatches",
]


def _field(shape: tuple[int, ...], sigma: float | tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    """A smooth Gaussian random field, zero mean and unit variance."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return (f - f.mean()) / max(float(f.std()), 1e-6)


def _scale(ndim: int, rng: np.random.Generator, lo: float, hi: float) -> tuple[float, ...]:
    s = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    if ndim == 2:
        return (s, s)
    # Voxels are often longer in z: the same object spans fewer planes.
    return (s / rng.uniform(1.0, 3.0), s, s)


def _blobs(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Nuclei-like regions: a level set of a smooth field, textured inside, with holes or bright dots."""
    sigma = _scale(len(shape), rng, 4.0, 40.0)
    region = _field(shape, sigma, rng) > rng.uniform(0.0, 1.2)
    edge = rng.uniform(0.3, 1.5)
    body = ndimage.gaussian_filter(region.astype(np.float32), edge)
    texture = np.exp(rng.uniform(0.1, 0.6) * _field(shape, tuple(s * rng.uniform(0.05, 0.3) for s in sigma), rng))
    holes = _field(shape, tuple(s * rng.uniform(0.1, 0.3) for s in sigma), rng) > rng.uniform(1.5, 2.5)
    inner = texture * np.where(holes, rng.uniform(0.2, 2.0), 1.0)
    return body * inner


def _contours(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Membrane-like thin closed lines (2D) or sheets (3D): where a smooth field crosses a level."""
    f = _field(shape, _scale(len(shape), rng, 6.0, 40.0), rng)
    grad = np.sqrt(sum(g * g for g in np.gradient(f)))
    width = rng.uniform(0.4, 1.5)
    dist = np.abs(f - rng.uniform(-0.5, 0.5)) / np.maximum(grad, 1e-3)
    lines = np.exp(-0.5 * (dist / width) ** 2)
    along = np.exp(rng.uniform(0.1, 0.5) * _field(shape, _scale(len(shape), rng, 3.0, 20.0), rng))
    return lines * along


def _spots(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Puncta: points of log-normal brightness, some in clusters, blurred to sizes of 0.5-3 pixels."""
    out = np.zeros(shape, np.float32)
    n = int(np.prod(shape) * rng.uniform(2e-4, 3e-3))
    centres = rng.random((max(n, 1), len(shape))) * np.array(shape)
    if rng.random() < 0.5:
        # Clusters: every spot near one of a few seeds.
        seeds = rng.random((max(n // 10, 1), len(shape))) * np.array(shape)
        centres = seeds[rng.integers(0, len(seeds), len(centres))] + rng.normal(0, rng.uniform(1, 6), centres.shape)
    idx = np.clip(np.round(centres).astype(int), 0, np.array(shape) - 1)
    np.add.at(out, tuple(idx.T), rng.lognormal(0.0, rng.uniform(0.3, 1.0), len(idx)).astype(np.float32))
    return ndimage.gaussian_filter(out, rng.uniform(0.4, 2.5))


def _texture(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Dense tissue-like intensity: products of fields at two scales, with dark clefts."""
    a = np.exp(rng.uniform(0.2, 0.8) * _field(shape, _scale(len(shape), rng, 8.0, 40.0), rng))
    b = np.exp(rng.uniform(0.1, 0.5) * _field(shape, _scale(len(shape), rng, 1.0, 5.0), rng))
    clefts = _contours(shape, rng)
    return a * b * (1.0 - rng.uniform(0.3, 0.9) * clefts / max(float(clefts.max()), 1e-6))


def _curves(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if len(shape) == 2:
        assert shape[0] == shape[1]
        return fluorescence_2d(shape[0], rng)
    return tubes_3d(shape, rng)


_KINDS_2D = ("curves", "blobs", "contours", "spots", "texture", "leaves")
_KINDS_3D = ("curves", "blobs", "contours", "spots", "texture")
_MAKERS = {"curves": _curves, "blobs": _blobs, "contours": _contours, "spots": _spots, "texture": _texture}


def random_structure(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A random fluorescence-like image or volume in [0, 1] (one or two kinds mixed, dim background).

    Parameters
    ----------
    shape : tuple of int
        ``(y, x)`` with equal sides, or ``(z, y, x)``.
    rng : numpy Generator
        Randomness.
    """
    kinds = _KINDS_2D if len(shape) == 2 else _KINDS_3D
    chosen = rng.choice(kinds, size=1 + int(rng.random() < 0.4), replace=False)
    out = np.zeros(shape, np.float32)
    for kind in chosen:
        if kind == "leaves":
            part = dead_leaves(shape[0], rng)
        else:
            part = _MAKERS[kind](shape, rng)
        part = part / max(float(part.max()), 1e-6)
        out += rng.uniform(0.3, 1.0) * part.astype(np.float32)
    if rng.random() < 0.5:
        out = ndimage.gaussian_filter(out, rng.uniform(0.3, 1.0))
    background = (_field(shape, _scale(len(shape), rng, 10.0, 60.0), rng) * 0.3 + 1.0).clip(0.2, None)
    out = out / max(float(out.max()), 1e-6) + rng.uniform(0.0, 0.08) * background
    return (out / max(float(out.max()), 1e-6)).astype(np.float32)


_IMMERSIONS = ((1.0, 0.95), (1.33, 1.27), (1.406, 1.35), (1.515, 1.46))


def random_psf(ndim: int, rng: np.random.Generator, max_size: int = 63, max_num_z: int = 33) -> np.ndarray:
    """A random microscope PSF (sum 1, odd sizes at most ``max_size`` laterally, ``max_num_z`` planes).

    Parameters
    ----------
    ndim : {2, 3}
        2: one plane; 3: a stack.
    rng : numpy Generator
        Randomness.
    max_size, max_num_z : int
        The largest kernel drawn (larger PSFs are cut to these sizes).
    """
    kind = rng.choice(["widefield", "confocal", "gaussian", "paper"], p=[0.6, 0.15, 0.1, 0.15])
    if kind == "gaussian":
        sig = rng.uniform(0.5, 4.0)
        sz = rng.uniform(1.0, 4.0) * sig
        half = min(int(np.ceil(3.5 * sig)), max_size // 2)
        zhalf = min(int(np.ceil(3.5 * sz)), max_num_z // 2)
        grids = np.meshgrid(
            *([np.arange(-zhalf, zhalf + 1) / sz] if ndim == 3 else []),
            np.arange(-half, half + 1) / sig,
            np.arange(-half, half + 1) / sig,
            indexing="ij",
        )
        psf = np.exp(-0.5 * sum(g * g for g in grids))
    elif kind == "paper":
        z_step = rng.uniform(0.3, 0.8)
        psf = generate_psf(
            ndim=ndim,
            size=17,
            na=rng.uniform(0.5, 1.0),
            wavelength=rng.uniform(0.45, 0.7),
            pixel_size=rng.uniform(0.2, 0.6),
            z_step=z_step,
            plane=int(rng.integers(0, 17)) if ndim == 2 else None,
        )
    else:
        ni, na_max = _IMMERSIONS[int(rng.integers(len(_IMMERSIONS)))]
        na = rng.uniform(0.3, na_max)
        wavelength = rng.uniform(0.45, 0.7)
        # Pixels from 0.3x to 1.2x the Nyquist period lambda / (4 NA) of the optical cutoff.
        pixel = wavelength / (4 * na) * float(np.exp(rng.uniform(np.log(0.6), np.log(2.2))))
        z_step = pixel * rng.uniform(1.0, 4.0)
        mismatch = rng.random() < 0.3 and ni > 1.33
        kw = {
            "na": na,
            "pixel_size": pixel,
            "z_step": z_step,
            "immersion_index": ni,
            "sample_index": 1.33 if mismatch else None,
            "depth": rng.uniform(0.0, 15.0) if mismatch else 0.0,
            "threshold": 3e-3,
            "max_size": 999,
            "max_num_z": 999,
        }
        dof = wavelength * ni / na**2
        if ndim == 2 and rng.random() < 0.4:
            kw["defocus"] = rng.uniform(-1.5, 1.5) * dof
        if ndim == 3:
            # An automatic depth grows until the PSF fades, which for a low NA and coarse z steps puts
            # focal planes beyond the objective's working distance: search within the planes kept.
            kw["max_num_z"] = max_num_z
        confocal = (
            {
                "excitation_wavelength": wavelength * rng.uniform(0.85, 0.97),
                "emission_wavelength": wavelength,
                "pinhole_au": rng.uniform(0.5, 2.0),
            }
            if kind == "confocal"
            else {}
        )

        def make(**extra: object) -> np.ndarray:
            if kind == "confocal":
                return confocal_psf(ndim, **confocal, **kw, **extra)
            return widefield_psf(ndim, wavelength=wavelength, **kw, **extra)

        try:
            psf = make()
        except ValueError as exc:
            if ndim != 3 or "max_num_z" not in str(exc):
                raise
            psf = make(shape=(max_num_z, None, None))  # deeper than kept: the central planes
    psf = np.asarray(psf, dtype=np.float64)
    caps = (max_num_z, max_size, max_size) if ndim == 3 else (max_size, max_size)
    cut = tuple(slice((n - min(n, c)) // 2, (n - min(n, c)) // 2 + min(n, c)) for n, c in zip(psf.shape, caps))
    psf = psf[cut]
    return (psf / psf.sum()).astype(np.float32)


@dataclass(frozen=True)
class PaperNoise:
    """The paper's protocol noise on data in [0, 1] (see :func:`siamdecon.simulate.degrade`)."""

    poisson: float
    gaussian: float
    salt_pepper: float


def random_camera(ndim: int, rng: np.random.Generator) -> Camera | PaperNoise:
    """A random camera (photons 10-3,000, gain, read noise, offset) or, in 15 % of draws, the paper's noise."""
    if rng.random() < 0.15:
        return PaperNoise(
            poisson=rng.uniform(0.0, 0.003),
            gaussian=rng.uniform(0.02, 0.15),
            salt_pepper=0.01 if (ndim == 2 and rng.random() < 0.5) else 0.0,
        )
    return Camera(
        photons=float(np.exp(rng.uniform(np.log(10.0), np.log(3000.0)))),
        gain=float(np.exp(rng.uniform(np.log(0.3), np.log(4.0)))),
        read_noise=rng.uniform(0.0, 3.0),
        offset=float(rng.choice([0.0, 100.0, rng.uniform(0, 500)])),
    )


@dataclass
class Batch:
    """One pretraining batch: standardized inputs and targets, their statistics, and the PSF.

    ``stats`` holds ``mean``, ``std``, ``gain``, ``offset`` and ``read_variance`` as ``(B, 1, 1, ...)``
    tensors, each sample's own (what :meth:`siamdecon.network.DeconvolutionNetwork.generic_inputs`
    takes); ``op`` is the PSF of the whole batch (``None``: the network's own).
    """

    x: torch.Tensor
    target: torch.Tensor
    stats: dict[str, torch.Tensor]
    op: PSFConvolution | None = None


def _record(
    blurred: np.ndarray, noise: Camera | PaperNoise, rng: np.random.Generator
) -> tuple[np.ndarray, float, float]:
    """Noisy data of a blurred truth in [0, 1], and the scale and offset of the truth in its units."""
    if isinstance(noise, PaperNoise):
        var = np.clip(noise.poisson * blurred + noise.gaussian**2, 0, None)
        y = blurred + np.sqrt(var) * rng.standard_normal(blurred.shape)
        if noise.salt_pepper:
            hit = rng.random(y.shape) < noise.salt_pepper
            y[hit] = rng.random(int(hit.sum()))
        return np.clip(np.round(y * 1024) / 1024, 0, 1), 1.0, 0.0
    electrons = rng.poisson(np.clip(noise.photons * blurred, 0, None)) + noise.read_noise * rng.standard_normal(
        blurred.shape
    )
    y = np.clip(np.round(noise.gain * electrons + noise.offset), 0, 2**noise.bits - 1)
    return y, noise.scale, noise.offset


class GenericBatches:
    """Batches for a prior that takes any PSF and any camera (:func:`siamdecon.prior.pretrain`).

    At every call: one PSF drawn from a bank of :func:`random_psf`, a batch of random crops of a pool
    of :func:`random_structure` images (rotated and flipped before the blur, which any PSF allows),
    each blurred beyond its crop (the object continues past the border, as under a microscope) and
    recorded by its own :func:`random_camera`. The noise model given to the network is estimated from
    each crop (:func:`siamdecon.noise.estimate_noise`), as it is from an image at use; the target is
    the truth in the recorded units, standardized like the input.

    Parameters
    ----------
    ndim : {2, 3}
        Dimensionality.
    patch : int
        Input side (lateral; in 3D the depth is ``max(patch // 2, 16)``).
    batch_size : int
        Samples per batch.
    images : int
        Structures in the pool.
    image_size, depth : int
        Pool image side and (3D) depth.
    psfs : int
        PSFs in the bank.
    seed : int
        Randomness.
    progress : bool
        Show progress while the pool and the bank are made.
    """

    def __init__(
        self,
        ndim: int,
        patch: int,
        batch_size: int,
        images: int,
        image_size: int,
        depth: int,
        psfs: int,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        from tqdm.auto import tqdm

        self.ndim, self.batch_size = ndim, batch_size
        self.rng = np.random.default_rng(seed)
        self.patch = (max(patch // 2, 16), patch, patch) if ndim == 3 else (patch, patch)
        max_size = 63 if ndim == 2 else 41
        max_z = 25
        shape = (depth, image_size, image_size) if ndim == 3 else (image_size, image_size)
        need = [p + 2 * (c // 2) for p, c in zip(self.patch, ((max_z,) if ndim == 3 else ()) + (max_size, max_size))]
        if any(s < n for s, n in zip(shape, need)):
            raise ValueError(f"pool images of shape {shape} are too small for patches {self.patch} and PSFs: {need}")
        self.pool = [
            random_structure(shape, self.rng)
            for _ in tqdm(range(images), desc="synthetic structures", disable=not progress, leave=False)
        ]
        self.bank = [
            random_psf(ndim, self.rng, max_size=max_size, max_num_z=max_z)
            for _ in tqdm(range(psfs), desc="synthetic PSFs", disable=not progress, leave=False)
        ]
        self._ops: dict[int, PSFConvolution] = {}

    def __call__(self) -> Batch:
        from .noise import estimate_noise

        rng = self.rng
        i = int(rng.integers(len(self.bank)))
        psf = self.bank[i]
        op = self._ops.setdefault(i, PSFConvolution(psf))
        half = [k // 2 for k in psf.shape]
        big = [p + 2 * h for p, h in zip(self.patch, half)]
        crops = []
        for _ in range(self.batch_size):
            img = self.pool[int(rng.integers(len(self.pool)))]
            start = [int(rng.integers(0, n - b + 1)) for n, b in zip(img.shape, big)]
            crop = img[tuple(slice(a, a + b) for a, b in zip(start, big))]
            crop = np.rot90(crop, int(rng.integers(4)), axes=(-2, -1)) if big[-1] == big[-2] else crop
            if rng.integers(2):
                crop = crop[..., ::-1]
            crops.append(np.ascontiguousarray(crop, dtype=np.float32))
        truths = torch.from_numpy(np.stack(crops))[:, None]
        inner = (..., *(slice(h, h + p) for h, p in zip(half, self.patch)))
        with torch.no_grad():
            blurred = op(truths)[inner][:, 0].numpy().astype(np.float64)
        truth = truths[inner][:, 0].numpy()
        xs, targets, rows = [], [], []
        for b in range(self.batch_size):
            y, scale, offset = _record(blurred[b], random_camera(self.ndim, rng), rng)
            model = estimate_noise(y)
            m, s = float(y.mean()), max(float(y.std()), 1e-6)
            xs.append((y - m) / s)
            targets.append((truth[b] * scale + offset - m) / s)
            rows.append((m, s, model.gain, model.offset, model.read_variance))
        shape = (self.batch_size, 1) + (1,) * self.ndim
        columns = torch.tensor(rows, dtype=torch.float32).T
        stats = {k: columns[j].view(shape) for j, k in enumerate(("mean", "std", "gain", "offset", "read_variance"))}
        x = torch.from_numpy(np.stack(xs).astype(np.float32))[:, None]
        target = torch.from_numpy(np.stack(targets).astype(np.float32))[:, None]
        return Batch(x, target, stats, op)


# --- one PSF, the paper's noise (a prior for one microscope) ---------------------------------------


def synthetic_pairs(
    psf: np.ndarray, settings: PretrainConfig, progress: bool = False
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Synthetic ``(clean, degraded)`` training pairs for ``psf`` (2D or 3D).

    2D images are dead leaves or fluorescence-like, 3D volumes tubes and spots
    (:func:`siamdecon.simulate.tubes_3d`); some are smoothed, then all are degraded by the paper's
    protocol (:func:`siamdecon.simulate.degrade`) with noise levels drawn from the settings' ranges.
    """
    ndim = np.ndim(psf)
    if ndim not in (2, 3):
        raise ValueError(f"the PSF must be 2D or 3D, got {ndim}D")
    rng = np.random.default_rng(settings.seed)
    pairs = []
    for _ in tqdm(range(settings.images), desc="synthetic images", disable=not progress, leave=False):
        if ndim == 3:
            clean = tubes_3d((settings.depth, settings.image_size, settings.image_size), rng)
        elif rng.random() < settings.fluorescence_fraction:
            clean = fluorescence_2d(settings.image_size, rng)
        else:
            clean = dead_leaves(settings.image_size, rng)
        if rng.random() < settings.blur_probability:
            # Natural and microscope images are rarely sharp to the pixel.
            clean = ndimage.gaussian_filter(clean, rng.uniform(0.3, 1.0))
            clean = (clean - clean.min()) / max(float(np.ptp(clean)), 1e-6)
        noisy = degrade(
            clean,
            psf,
            poisson=rng.uniform(*settings.poisson),
            gaussian=rng.uniform(*settings.gaussian),
            salt_pepper=settings.salt_pepper if rng.random() < 0.5 else 0.0,
            seed=int(rng.integers(2**31)),
        )
        pairs.append((clean.astype(np.float32), noisy))
    return pairs


class FixedPSFBatches:
    """Batches of random patches of synthetic pairs degraded with one PSF (the paper's protocol)."""

    def __init__(self, psf: np.ndarray, settings: PretrainConfig, noise_model: bool, progress: bool) -> None:
        self.pairs = synthetic_pairs(psf, settings, progress)
        self.ndim = np.ndim(psf)
        self.batch_size = settings.batch_size
        # Standardized by each whole image's statistics (and its estimated noise), as at use.
        self.stats = []
        for _, noisy in self.pairs:
            model = estimate_noise(noisy) if noise_model else None
            self.stats.append(
                (
                    float(noisy.mean()),
                    float(noisy.std()),
                    model.gain if model else 1.0,
                    model.offset if model else 0.0,
                    model.read_variance if model else 0.0,
                )
            )
        self.rng = np.random.default_rng(settings.seed + 1)
        self.augment = psf_is_dihedral(psf)
        self.spatial = self.pairs[0][0].shape
        self.patch = tuple(min(settings.patch_size, n) for n in self.spatial)

    def __call__(self):
        rng = self.rng
        raws, cleans, rows = [], [], []
        for _ in range(self.batch_size):
            k = int(rng.integers(len(self.pairs)))
            window = tuple(
                slice(a, a + p)
                for a, p in ((int(rng.integers(0, n - p + 1)), p) for n, p in zip(self.spatial, self.patch))
            )
            clean, noisy = (a[window] for a in self.pairs[k])
            if self.augment:  # rotations and flips in the (y, x) plane, which the PSF allows
                r = int(rng.integers(4))
                clean, noisy = np.rot90(clean, r, axes=(-2, -1)), np.rot90(noisy, r, axes=(-2, -1))
                if rng.integers(2):
                    clean, noisy = clean[..., ::-1], noisy[..., ::-1]
            raws.append(np.ascontiguousarray(noisy))
            cleans.append(np.ascontiguousarray(clean))
            rows.append(self.stats[k])
        shape = (self.batch_size, 1) + (1,) * self.ndim
        columns = torch.tensor(rows, dtype=torch.float32).T
        stats = {k: columns[j].view(shape) for j, k in enumerate(("mean", "std", "gain", "offset", "read_variance"))}
        x = (torch.from_numpy(np.stack(raws))[:, None] - stats["mean"]) / stats["std"]
        target = (torch.from_numpy(np.stack(cleans))[:, None] - stats["mean"]) / stats["std"]
        return Batch(x, target, stats)
