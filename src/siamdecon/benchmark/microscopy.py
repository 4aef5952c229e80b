"""The microscopy suite: microscope PSFs, camera noise and biological structures, with the peers.

Every quality figure of the paper's protocol comes from one PSF, Gaussian-dominated noise on data in
[0, 1] and filaments. This suite measures what a microscopist's data looks like instead:

- **PSFs**: widefield (vectorial Gibson-Lanni model) at several NA / pixel sizes, in focus and
  defocused, in 3D with and without a refractive-index mismatch, confocal, the paper's two, and a
  "measured" PSF estimated from a simulated bead image (so the PSF the methods get is not the one
  that blurred the data, as in real life);
- **noise** as a camera makes it (:class:`siamdecon.simulate.Camera`: photons, Poisson, read noise,
  gain, offset, 16-bit integers), and the paper's protocol;
- **structures** from :mod:`siamdecon.benchmark.structures` (filaments, nuclei, membranes, puncta,
  tissue), generators separate from the priors' training data, and scikit-image's bundled images.
  The truth is generated larger than the field of view and blurred before cropping, so the object
  continues beyond the image border as it does under a microscope.

Every method gets the recorded counts (as ``siamdecon deconvolve`` reads a ``uint16`` file) and the
PSF; every estimate is mapped back to the truth's scale the same way, ``(estimate - offset) /
(gain * photons)`` (:func:`siamdecon.simulate.camera_to_truth`), clipped to [0, 1] and scored with
PSNR and SSIM (data range 1).
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..classical import richardson_lucy_series
from ..config import make_config
from ..errors import ConfigError
from ..metrics import evaluate, psnr
from ..model import Deconvolver
from ..psf import generate_psf, psf_widths
from ..simulate import Camera, camera_image, camera_to_truth, degrade, rescale01
from .store import ResultStore
from .structures import make_structure, skimage_image
from .suites import Case, image_seed

__all__ = [
    "GROUPS",
    "MICROSCOPY_METHODS",
    "DEFAULT_METHODS",
    "PEERS",
    "MicroscopyCase",
    "MicroscopySettings",
    "microscopy_cases",
    "run_microscopy",
]

#: Version of the case definitions; stored with the results, so that a folder made with other
#: definitions is not resumed into.
SUITE_VERSION = 1

SHAPES: dict[str, dict[int, tuple[int, ...]]] = {
    "full": {2: (256, 256), 3: (40, 128, 128)},
    "quick": {2: (128, 128), 3: (24, 64, 64)},
}


# --- PSFs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Optics:
    """A PSF of the suite: how to compute it and the voxel size it is sampled at (um)."""

    name: str
    ndim: int
    voxel: tuple[float, ...]
    about: str
    make: Callable[[], np.ndarray] = field(compare=False, repr=False)
    #: The methods get a PSF estimated from a simulated bead image instead of this one.
    measured: bool = False


def _widefield(ndim: int, voxel: tuple[float, ...], **kw: Any) -> Callable[[], np.ndarray]:
    from ..psf import widefield_psf

    def make() -> np.ndarray:
        z_step = voxel[0] if ndim == 3 else None
        return widefield_psf(ndim, pixel_size=voxel[-1], z_step=z_step, **kw)

    return make


def _confocal(voxel: tuple[float, ...], **kw: Any) -> Callable[[], np.ndarray]:
    from ..psf import confocal_psf

    def make() -> np.ndarray:
        return confocal_psf(3, pixel_size=voxel[-1], z_step=voxel[0], **kw)

    return make


_OIL = {"na": 1.4, "immersion_index": 1.515}
PSFS: dict[str, Optics] = {
    o.name: o
    for o in (
        Optics(
            "wf-na1.4-65nm",
            2,
            (0.065, 0.065),
            "widefield, 100x/1.4 oil, 65 nm pixels, 520 nm emission, in focus (vectorial)",
            _widefield(2, (0.065, 0.065), wavelength=0.52, **_OIL),
        ),
        Optics(
            "wf-na0.95-160nm",
            2,
            (0.1625, 0.1625),
            "widefield, 40x/0.95 air, 162.5 nm pixels, 600 nm emission, in focus",
            _widefield(2, (0.1625, 0.1625), na=0.95, immersion_index=1.0, wavelength=0.6),
        ),
        Optics(
            "wf-na0.8-200nm",
            2,
            (0.2, 0.2),
            "widefield, 0.8 water, 200 nm pixels, 520 nm emission, in focus",
            _widefield(2, (0.2, 0.2), na=0.8, immersion_index=1.33, wavelength=0.52),
        ),
        Optics(
            "wf-na1.4-65nm-defocus0.6",
            2,
            (0.065, 0.065),
            "widefield, 100x/1.4 oil, 65 nm pixels, 0.6 um out of focus",
            _widefield(2, (0.065, 0.065), wavelength=0.52, defocus=0.6, shape=(63, 63), **_OIL),
        ),
        Optics(
            "measured-wf-na1.4-65nm",
            2,
            (0.065, 0.065),
            "widefield 1.4 oil at 65 nm; the methods get the PSF estimated from a simulated bead image",
            _widefield(2, (0.065, 0.065), wavelength=0.52, **_OIL),
            measured=True,
        ),
        Optics(
            "paper-2d",
            2,
            (0.406, 0.406),
            "the paper's 2D PSF (16x/0.8 water, 3 um out of focus: a ring)",
            lambda: generate_psf(ndim=2),
        ),
        Optics(
            "wf-na1.4-oil-100nm",
            3,
            (0.25, 0.1, 0.1),
            "widefield 3D, 1.4 oil into an oil-matched sample, 0.1 um pixels, 0.25 um steps",
            _widefield(3, (0.25, 0.1, 0.1), wavelength=0.52, shape=(33, 49, 49), **_OIL),
        ),
        Optics(
            "wf-na1.4-oil-into-water-5um",
            3,
            (0.25, 0.1, 0.1),
            "widefield 3D, 1.4 oil objective imaging 5 um deep into water (index mismatch)",
            _widefield(3, (0.25, 0.1, 0.1), wavelength=0.52, sample_index=1.33, depth=5.0, shape=(33, 49, 49), **_OIL),
        ),
        Optics(
            "confocal-na1.4-1au",
            3,
            (0.25, 0.1, 0.1),
            "confocal 3D, 1.4 oil, 488 nm excitation, 520 nm emission, 1 Airy unit pinhole",
            _confocal((0.25, 0.1, 0.1), excitation_wavelength=0.488, emission_wavelength=0.52, pinhole_au=1.0, **_OIL),
        ),
        Optics(
            "measured-wf-na1.4-oil-100nm",
            3,
            (0.25, 0.1, 0.1),
            "widefield 3D 1.4 oil; the methods get the PSF estimated from a simulated bead stack",
            _widefield(3, (0.25, 0.1, 0.1), wavelength=0.52, shape=(33, 49, 49), **_OIL),
            measured=True,
        ),
        Optics(
            "paper-3d",
            3,
            (0.406, 0.406, 0.406),
            "the paper's 3D PSF (16x/0.8 water, 17^3)",
            lambda: generate_psf(ndim=3),
        ),
    )
}


# --- noise -----------------------------------------------------------------------------------------

#: ``None`` is the paper's protocol (Poisson-Gaussian in [0, 1], salt-and-pepper in 2D, 10 bits).
NOISES: dict[str, Camera | None] = {
    "camera-300": Camera(photons=300, gain=1.0, read_noise=1.5, offset=100),
    "camera-100": Camera(photons=100, gain=2.0, read_noise=1.5, offset=100),
    "camera-1000": Camera(photons=1000, gain=0.5, read_noise=1.5, offset=100),
    "camera-20": Camera(photons=20, gain=1.0, read_noise=1.5, offset=100),
    "paper": None,
}


# --- groups ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """Cases sharing a PSF and a noise; ``quick`` is the subset ``--quick`` runs."""

    name: str
    psf: str
    noise: str
    structures: tuple[str, ...]
    quick: tuple[str, ...]

    @property
    def ndim(self) -> int:
        return PSFS[self.psf].ndim


GROUPS: tuple[Group, ...] = (
    Group(
        "2d-widefield-na1.4",
        "wf-na1.4-65nm",
        "camera-300",
        ("filaments", "nuclei", "membranes", "puncta", "tissue", "skimage:immunohistochemistry"),
        ("filaments", "nuclei"),
    ),
    Group(
        "2d-widefield-na0.95", "wf-na0.95-160nm", "camera-100", ("filaments", "nuclei", "puncta", "tissue"), ("tissue",)
    ),
    Group("2d-widefield-na0.8", "wf-na0.8-200nm", "camera-1000", ("nuclei", "membranes", "tissue"), ("membranes",)),
    Group("2d-defocus", "wf-na1.4-65nm-defocus0.6", "camera-300", ("filaments", "puncta", "nuclei"), ("puncta",)),
    Group("2d-low-light", "wf-na1.4-65nm", "camera-20", ("filaments", "nuclei", "puncta"), ("nuclei",)),
    Group(
        "2d-measured-psf", "measured-wf-na1.4-65nm", "camera-300", ("filaments", "membranes", "tissue"), ("filaments",)
    ),
    Group("2d-paper", "paper-2d", "paper", ("filaments", "nuclei", "skimage:cell"), ("nuclei",)),
    Group(
        "3d-widefield", "wf-na1.4-oil-100nm", "camera-300", ("filaments", "nuclei", "membranes", "puncta"), ("nuclei",)
    ),
    Group(
        "3d-widefield-mismatch", "wf-na1.4-oil-into-water-5um", "camera-300", ("filaments", "puncta"), ("filaments",)
    ),
    Group("3d-confocal", "confocal-na1.4-1au", "camera-100", ("nuclei", "membranes"), ("membranes",)),
    Group("3d-measured-psf", "measured-wf-na1.4-oil-100nm", "camera-300", ("puncta", "nuclei"), ()),
    Group("3d-paper", "paper-3d", "paper", ("filaments", "nuclei"), ("filaments",)),
)


# --- cases -----------------------------------------------------------------------------------------


@dataclass
class MicroscopyCase(Case):
    """One case: truth, recorded data, the PSF the methods get, and how counts map to the truth.

    ``noisy`` holds the recorded data as float32 (camera counts, or the paper's [0, 1] values) and
    ``psf`` the PSF the methods are given (estimated from beads in the "measured" groups).
    """

    group: str = ""
    psf_name: str = ""
    noise_name: str = ""
    structure: str = ""
    camera: Camera | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def offset(self) -> float:
        """Camera offset in counts (0 for the paper's protocol)."""
        return self.camera.offset if self.camera is not None else 0.0

    def to_truth(self, estimate: np.ndarray) -> np.ndarray:
        """An estimate in recorded units, mapped to the truth's scale."""
        return camera_to_truth(estimate, self.camera) if self.camera is not None else np.asarray(estimate, np.float32)

    def row(self) -> dict[str, Any]:
        """The case's columns of a results row."""
        return {
            "case": self.key,
            "group": self.group,
            "ndim": self.clean.ndim,
            "psf": self.psf_name,
            "noise": self.noise_name,
            "structure": self.structure,
        }


_PSF_CACHE: dict[str, np.ndarray] = {}


def _true_psf(name: str) -> np.ndarray:
    if name not in _PSF_CACHE:
        _PSF_CACHE[name] = np.asarray(PSFS[name].make(), dtype=np.float32)
    return _PSF_CACHE[name]


def _measured_psf(psf: np.ndarray, optics: Optics, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The PSF a user would estimate from a bead image taken with ``psf``."""
    from ..beads import estimate_psf, psf_fwhm, simulate_bead_image

    ndim = psf.ndim
    # A typical bead slide: a dozen or so usable beads, modest signal, a diffuse background on
    # top of the camera offset, touching and saturated beads among them.
    shape = tuple(max(s, 3 * k) for s, k in zip((64, 320, 320) if ndim == 3 else (384, 384), psf.shape))
    camera = Camera(photons=800, gain=1.0, read_noise=1.5, offset=100)
    counts, _ = simulate_bead_image(
        psf,
        shape,
        n_beads=12 if ndim == 3 else 15,
        camera=camera,
        bead_diameter=0.1,
        voxel=optics.voxel,
        touching=2,
        saturated=1,
        seed=seed,
    )
    rng = np.random.default_rng(seed + 1)
    counts = np.clip(counts + rng.poisson(10.0, counts.shape), 0, 65535).astype(np.uint16)
    found = estimate_psf(counts, shape=psf.shape, voxel=optics.voxel, bead_diameter=0.1)
    est = found.psf
    error = float(np.abs(est - psf).max() / psf.max()) if est.shape == psf.shape else None
    info = {
        "beads_used": len(found.used),
        "beads_found": len(found.beads),
        "max_error_of_peak": error,
        "fwhm_px": [round(float(v), 3) for v in found.fwhm_px],
        "true_fwhm_px": [round(float(v), 3) for v in psf_fwhm(psf)],
    }
    return est.astype(np.float32), info


def _structure(name: str, shape: tuple[int, ...], voxel: tuple[float, ...], seed: int) -> np.ndarray:
    if name.startswith("skimage:"):
        return skimage_image(name.split(":", 1)[1], shape)
    return make_structure(name, shape, voxel, seed)


def _fit(psf: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The central part of ``psf`` that fits an image of ``shape`` (odd sizes), renormalized.

    A PSF file a user has is never larger than the stack it deconvolves; the small quick shapes
    need the suite's larger kernels cut to fit, for the blur and for the methods alike.
    """
    cut = []
    for k, n in zip(psf.shape, shape):
        keep = min(k, n - 1 if n % 2 == 0 else n)
        cut.append(slice((k - keep) // 2, (k - keep) // 2 + keep))
    out = psf[tuple(cut)]
    return (out / out.sum()).astype(np.float32)


def _build(group: Group, structure: str, shape: tuple[int, ...], seed: int) -> MicroscopyCase:
    optics = PSFS[group.psf]
    camera = NOISES[group.noise]
    psf = _fit(_true_psf(group.psf), shape)
    case_seed = image_seed(f"{group.name}/{structure}", seed)
    info: dict[str, Any] = {"psf_shape": list(psf.shape), "psf_widths_px": [round(w, 3) for w in psf_widths(psf)]}
    if camera is None:
        # The paper's protocol, exactly: truth rescaled to [0, 1], zero boundary.
        clean = rescale01(_structure(structure, shape, optics.voxel, case_seed))
        noisy = degrade(clean, psf, seed=case_seed + 1)
    else:
        margin = tuple(k // 2 for k in psf.shape)
        big = tuple(s + 2 * m for s, m in zip(shape, margin))
        truth = _structure(structure, big, optics.voxel, case_seed)
        clean = truth[tuple(slice(m, m + s) for m, s in zip(margin, shape))].astype(np.float32)
        noisy = camera_image(truth, psf, camera, margin=margin, seed=case_seed + 1).astype(np.float32)
        info["peak_counts"] = float(noisy.max())
    model_psf = psf
    if optics.measured:
        model_psf, bead_info = _measured_psf(psf, optics, case_seed + 2)
        info["measured_psf"] = bead_info
    return MicroscopyCase(
        suite=group.name,
        name=structure.replace(":", "-"),
        clean=clean,
        noisy=noisy,
        psf=model_psf,
        group=group.name,
        psf_name=group.psf,
        noise_name=group.noise,
        structure=structure,
        camera=camera,
        info=info,
    )


def case_keys(quick: bool = False) -> list[str]:
    """Keys (``group/structure``) of the suite's cases, in run order."""
    return [f"{g.name}/{s.replace(':', '-')}" for g in GROUPS for s in (g.quick if quick else g.structures)]


def _selected(key: str, patterns: tuple[str, ...]) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(key, p) for p in patterns)


def microscopy_cases(
    quick: bool = False,
    patterns: tuple[str, ...] | list[str] = (),
    seed: int = 0,
    shapes: dict[int, tuple[int, ...]] | None = None,
) -> Iterator[MicroscopyCase]:
    """Generate the suite's cases (lazily, one at a time: a 3D case holds a few volumes).

    Parameters
    ----------
    quick : bool
        The small subset at small sizes (``SHAPES["quick"]``) instead of the whole suite.
    patterns : sequence of str
        Shell-style patterns on the case keys (``2d-*``, ``*/nuclei``); empty: all.
    seed : int
        Base seed of structures and noise (each case derives its own from its key).
    shapes : dict, optional
        Shapes per dimensionality instead of :data:`SHAPES`.
    """
    patterns = tuple(patterns)
    sizes = {**SHAPES["quick" if quick else "full"], **(shapes or {})}
    for group in GROUPS:
        for structure in group.quick if quick else group.structures:
            key = f"{group.name}/{structure.replace(':', '-')}"
            if _selected(key, patterns):
                yield _build(group, structure, tuple(sizes[group.ndim]), seed)


# --- methods ---------------------------------------------------------------------------------------


@dataclass
class MethodResult:
    """What a method returns: its estimate in recorded units, the time it took and what it chose."""

    estimate: np.ndarray
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MicroscopySettings:
    """What a microscopy benchmark run covers.

    ``quick``, ``seed`` and the suite version decide the cases' data and are stored in
    ``results.json``: a folder is only resumed with the same ones. The methods and case patterns
    of a run may change between runs of one folder (entries already there are kept);
    ``rerun`` names methods whose entries are computed again (after a change of the default, say).
    """

    quick: bool = False
    seed: int = 0
    methods: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    rerun: tuple[str, ...] = ()
    device: str | None = None
    #: Shapes per dimensionality instead of :data:`SHAPES` (``{2: (y, x), 3: (z, y, x)}``).
    shapes: dict[int, tuple[int, ...]] | None = None
    #: Training or fine-tuning steps of siamdecon's methods instead of the preset's (smoke tests only:
    #: then ``default`` is no longer the default, and the report says so).
    steps: int | None = None
    lr_iterations: int = 100
    spitfire_regs: tuple[float, ...] = (0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)
    #: ``default`` runs the held-out check and its fallback, as ``deconvolve`` does; False gives
    #: the network's result alone (``scratch`` always does).
    check: bool = True

    def __post_init__(self) -> None:
        methods = self.methods or DEFAULT_METHODS
        unknown = [m for m in (*methods, *self.rerun) if m not in MICROSCOPY_METHODS]
        if unknown:
            raise ConfigError(f"unknown method(s) {unknown}; choose from {', '.join(MICROSCOPY_METHODS)}")
        object.__setattr__(self, "methods", tuple(dict.fromkeys(methods)))
        if self.shapes is not None:
            bad = {k: v for k, v in self.shapes.items() if k not in (2, 3) or len(v) != k or min(v) < 16}
            if bad:
                raise ConfigError(f"shapes must map 2 and 3 to 2 and 3 sides of at least 16 pixels, got {bad}")
        if self.patterns and not any(_selected(k, self.patterns) for k in case_keys(self.quick)):
            raise ConfigError(f"no case matches {list(self.patterns)}; cases are: {', '.join(case_keys(self.quick))}")

    def stored(self) -> dict[str, Any]:
        """The settings that results depend on."""
        return {
            "suite": "microscopy",
            "version": SUITE_VERSION,
            "quick": self.quick,
            "seed": self.seed,
            "shapes": {str(k): list(v) for k, v in (self.shapes or {}).items()},
            "steps": self.steps,
            "lr_iterations": self.lr_iterations,
            "spitfire_regs": list(self.spitfire_regs),
        }


#: ``method(case, settings, done)``: ``done`` maps the case's finished methods to their entries.
Method = Callable[[MicroscopyCase, "MicroscopySettings", dict[str, Any]], MethodResult]


def _timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _input(case: MicroscopyCase, s: MicroscopySettings, done: dict[str, Any]) -> MethodResult:
    return MethodResult(case.noisy, 0.0)


def _lr_data(case: MicroscopyCase) -> np.ndarray:
    # The offset subtracted and negative counts clipped, as users run Lucy-Richardson. On the
    # suite this beat keeping the offset as a background term in the model (which converges very
    # slowly when the offset dominates the signal) at every iteration count tried.
    return np.clip(case.noisy - case.offset, 0.0, None)


def _lr_best(case: MicroscopyCase, s: MicroscopySettings, done: dict[str, Any], boundary: str = "zero") -> MethodResult:
    """Lucy-Richardson on offset-subtracted data, best iteration count of 1..N (oracle)."""
    best: dict[str, Any] = {"psnr": -np.inf}
    clock = {"t": time.perf_counter(), "spent": 0.0}

    def score(n: int, u: Any) -> None:
        clock["spent"] += time.perf_counter() - clock["t"]
        # Lucy-Richardson estimates the object above the offset: back to recorded units.
        est = u[0, 0].cpu().numpy() + case.offset
        value = psnr(case.to_truth(est), case.clean)
        if value > best["psnr"]:
            best.update(psnr=value, n=n, estimate=est.copy(), seconds=clock["spent"])
        clock["t"] = time.perf_counter()

    t = time.perf_counter()
    richardson_lucy_series(_lr_data(case), case.psf, [s.lr_iterations], on_iteration=score, boundary=boundary)
    search = time.perf_counter() - t
    return MethodResult(best["estimate"], best["seconds"], {"iterations": best["n"], "search_seconds": search})


def _lr_fixed(n: int) -> Method:
    def run(case: MicroscopyCase, s: MicroscopySettings, done: dict[str, Any]) -> MethodResult:
        est, sec = _timed(lambda: richardson_lucy_series(_lr_data(case), case.psf, [n])[n])
        est = est + case.offset
        return MethodResult(est, sec, {"iterations": n})

    run.__doc__ = f"Lucy-Richardson, {n} iterations on offset-subtracted data (as a user would run it)."
    return run


def _spitfire_best(case: MicroscopyCase, s: MicroscopySettings, done: dict[str, Any]) -> MethodResult:
    """Spitfire (sparse Hessian), best ``reg`` of the settings' grid (oracle)."""
    from ..variational import spitfire

    data = case.noisy - case.offset
    best: dict[str, Any] = {"psnr": -np.inf}
    tried = {}
    t0 = time.perf_counter()
    for reg in s.spitfire_regs:
        est, sec = _timed(lambda reg=reg: spitfire(data, case.psf, reg=reg) + case.offset)
        value = psnr(case.to_truth(est), case.clean)
        tried[str(reg)] = round(value, 3)
        if value > best["psnr"]:
            best.update(psnr=value, reg=reg, estimate=est, seconds=sec)
    return MethodResult(
        best["estimate"],
        best["seconds"],
        {"reg": best["reg"], "psnr_by_reg": tried, "search_seconds": time.perf_counter() - t0},
    )


def _spitfire_sdeconv(case: MicroscopyCase, s: MicroscopySettings, done: dict[str, Any]) -> MethodResult:
    """sdeconv's own Spitfire at the ``reg`` chosen by ``spitfire-best`` (a check of our implementation)."""
    from ..variational import load_sdeconv_spitfire, run_sdeconv_spitfire

    chosen = done.get("spitfire-best", {}).get("reg")
    if chosen is None:
        raise _Skip("spitfire-sdeconv runs at the reg that spitfire-best chose: run spitfire-best first")
    spitfire_class, reason = load_sdeconv_spitfire()
    if spitfire_class is None:
        raise _Skip(f"sdeconv is not available ({reason}); install siamdecon[peers]")
    reg = float(chosen)
    t = time.perf_counter()
    ref = run_sdeconv_spitfire(case.noisy - case.offset, case.psf, reg=reg)
    sec = time.perf_counter() - t
    return MethodResult(ref.image + case.offset, sec, {"reg": reg, "iterations": int(ref.iterations)})


def _wiener(case: MicroscopyCase, s: MicroscopySettings, done: dict[str, Any]) -> MethodResult:
    """scikit-image's unsupervised Wiener-Hunt (2D; its own Gibbs estimate of noise and prior)."""
    if case.clean.ndim != 2:
        raise _Skip("unsupervised_wiener is 2D only")
    from skimage.restoration import unsupervised_wiener

    scale = case.camera.scale if case.camera is not None else 1.0
    data = (case.noisy - case.offset) / scale

    def run() -> np.ndarray:
        out, _ = unsupervised_wiener(data.astype(np.float64), case.psf.astype(np.float64), rng=0)
        return (out * scale + case.offset).astype(np.float32)

    est, sec = _timed(run)
    return MethodResult(est, sec)


# A run from scratch whose settings equal the default's (the default found no prior for the case):
# the same seeded training, so its result is reused instead of computed twice.
_SCRATCH_RUNS: dict[tuple[str, str], MethodResult] = {}


def _scratch_key(case: MicroscopyCase, cfg: Any) -> tuple[str, str]:
    return case.key, cfg.model_copy(update={"prior": cfg.prior.model_copy(update={"source": "none"})}).model_dump_json()


def _siamdecon(prior: str | None) -> Method:
    def run(case: MicroscopyCase, s: MicroscopySettings, done: dict[str, Any]) -> MethodResult:
        ndim = case.clean.ndim
        cfg = make_config(
            "fast",
            ndim,
            prior=None if prior is None else {"source": prior},
            steps=s.steps,
            fine_tune_steps=s.steps,
            device=s.device,
        )
        same = _SCRATCH_RUNS.get(_scratch_key(case, cfg)) if prior == "none" else None
        if same is not None:
            return MethodResult(same.estimate, same.seconds, {**same.info, "same_run_as": "default"})
        t = time.perf_counter()
        model = Deconvolver.fit(case.noisy, case.psf, cfg, progress=False, allow_interrupt=False)
        train_s = time.perf_counter() - t
        t = time.perf_counter()
        est = model.predict(case.noisy)
        infer_s = time.perf_counter() - t
        steps = len(model.history)
        result = MethodResult(
            est,
            train_s + infer_s,
            {
                "prior": model.prior,
                "start": model.config.training.start.kind,
                "steps": steps,
                "loss": cfg.prior.fine_tune_loss
                if model.prior and steps
                else (None if model.prior else cfg.loss.label),
                "train_seconds": train_s,
                "inference_seconds": infer_s,
                **(
                    {"hessian_choice": model.provenance["hessian_choice"]}
                    if "hessian_choice" in model.provenance
                    else {}
                ),
            },
        )
        if prior is None and model.prior is None:
            _SCRATCH_RUNS.clear()  # one case at a time: keep only the latest
            _SCRATCH_RUNS[_scratch_key(case, model.config)] = result
        if prior is None and s.check:
            # As `deconvolve` runs it: the held-out check, and its fallback when the network is behind.
            t = time.perf_counter()
            report = model.check(case.noisy, device=s.device)
            est = report.output(case.noisy, model.psf, est)
            check_s = time.perf_counter() - t
            info = {**result.info, "check": report.to_dict(), "check_seconds": check_s}
            result = MethodResult(est, result.seconds + check_s, info)
        return result

    run.__doc__ = (
        "siamdecon as `deconvolve` runs it (fast preset)" if prior is None else "siamdecon trained from scratch"
    )
    return run


class _Skip(Exception):
    """A method that does not apply to a case (recorded as skipped with the reason)."""


MICROSCOPY_METHODS: dict[str, Method] = {
    "input": _input,
    "lucy-richardson-best": _lr_best,
    "lucy-richardson-20": _lr_fixed(20),
    # siamdecon's own Lucy-Richardson, with the object estimated beyond the image's border
    # (boundary="extend"): not a peer, it shows how much the boundary alone is worth.
    "lr-extended-best": lambda case, s, done: _lr_best(case, s, done, boundary="extend"),
    "spitfire-best": _spitfire_best,
    "wiener": _wiener,
    "default": _siamdecon(None),
    "scratch": _siamdecon("none"),
    "spitfire-sdeconv": _spitfire_sdeconv,
}
#: What a run computes unless ``methods`` says otherwise (``spitfire-sdeconv`` is a slow check).
DEFAULT_METHODS: tuple[str, ...] = (
    "input",
    "lucy-richardson-best",
    "lucy-richardson-20",
    "lr-extended-best",
    "spitfire-best",
    "wiener",
    "default",
    "scratch",
)
#: The oracle-tuned classical methods siamdecon's default is compared with.
PEERS: tuple[str, ...] = ("lucy-richardson-best", "spitfire-best")


def run_microscopy(
    out_dir: str,
    settings: MicroscopySettings | None = None,
    *,
    progress: bool = True,
    on_entry: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the microscopy suite into ``out_dir`` (``results.json``, outputs for the figures).

    Entries already in the folder are kept and skipped (an interrupted run resumes), except the
    methods in ``settings.rerun``. Each entry is one row: the case's columns (case, group, ndim,
    psf, noise, structure), the method, PSNR, SSIM, RMSE, seconds and what the method chose.

    Parameters
    ----------
    out_dir : str
        Report folder (created if needed).
    settings : MicroscopySettings, optional
        Cases, methods and oracle grids (default: the whole suite, default methods).
    progress : bool
        Show a progress bar.
    on_entry : callable, optional
        Called with ``(key, entry)`` after each finished entry.
    """
    from tqdm.auto import tqdm

    settings = settings or MicroscopySettings()
    store = ResultStore(out_dir, settings.stored(), on_entry)
    rerun = set(settings.rerun)
    if rerun:
        store.discard(
            lambda k: not (k.rsplit("/", 1)[1] in rerun and _selected(k.rsplit("/", 1)[0], settings.patterns))
        )
    keys = [k for k in case_keys(settings.quick) if _selected(k, settings.patterns)]
    figure_cases = {
        next(k for k in keys if k.startswith(g.name + "/"))
        for g in GROUPS
        if any(k.startswith(g.name + "/") for k in keys)
    }
    todo = [(k, m) for k in keys for m in settings.methods]
    bar = tqdm(total=len(todo), desc="microscopy", disable=not progress, dynamic_ncols=True)
    try:
        for case in microscopy_cases(settings.quick, settings.patterns, settings.seed, settings.shapes):
            for method in settings.methods:
                key = f"{case.key}/{method}"
                bar.set_postfix_str(key, refresh=False)
                if key in store.entries:
                    bar.update(1)
                    continue
                row = {**case.row(), "method": method}
                done = {
                    m: store.entries[f"{case.key}/{m}"]
                    for m in MICROSCOPY_METHODS
                    if f"{case.key}/{m}" in store.entries
                }
                try:
                    result = MICROSCOPY_METHODS[method](case, settings, done)
                except _Skip as why:
                    store.record(key, {**row, "skipped": str(why)})
                    bar.update(1)
                    continue
                truth_scale = case.to_truth(result.estimate)
                scores = evaluate(truth_scale, case.clean)
                if case.key in figure_cases:
                    if method == settings.methods[0] or not store.output_path(case.key, "truth").exists():
                        store.keep_array(case.key, "truth", case.clean)
                    store.keep_array(case.key, method, truth_scale)
                store.record(
                    key,
                    {
                        **row,
                        "psnr": scores["psnr"],
                        "ssim": scores["ssim"],
                        "rmse": scores["rmse"],
                        "seconds": result.seconds,
                        **result.info,
                        "case_info": case.info,
                    },
                )
                bar.update(1)
    finally:
        bar.close()
    return store.results
