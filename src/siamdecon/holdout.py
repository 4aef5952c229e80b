"""Choices and checks without ground truth: predicting pixels that were held out.

An estimate ``d`` of the object explains the recorded image through the forward model,
``y ~ P d`` (the PSF applied, the camera offset kept in ``d``). If ``d`` was computed without
seeing a set ``J`` of pixels, how well ``P d`` predicts them measures how good ``d`` is on *new*
noise: the noise at ``J`` is independent of everything ``d`` saw, so the expected error is the
error of ``P d`` against the noise-free blurred object plus a constant that is the same for every
candidate (cross-validation over pixels, as in Noise2Self, Batson & Royer 2019). The candidates
here are

* the trained network, run on the image with each pixel of ``J`` replaced by the mean of its
  unmasked neighbours (so its prediction at ``J`` cannot see ``y_J``), one pass per fold of
  held-out pixels as sparse as its blind-spot training mask. (Replacing them by noise around the
  image mean, as training does, biases the reconvolution towards the mean around every hole:
  on bright structures the network then looks worse than it is.) Its estimate is scored as is
  and after 1, 2, 4, 8 and 16 Lucy-Richardson steps from it (:data:`REFINE_STEPS`; ``J`` missing
  data there too). The first step stands for the network, and is written, only when it predicts
  them better at significantly more held-out pixels (the sign test below) and on average by more
  than :data:`STEP_MARGIN`; each longer series then stands when it beats, in the same way, the
  one standing so far;
* Lucy-Richardson with the object extended beyond the field, the held-out pixels given zero
  weight as data, at every iteration count of a grid (one run keeps them all);
* Spitfire (sparse Hessian) with the held-out pixels given zero weight in its data term, at every
  ``reg`` of a grid.

Errors are squared residuals divided by the noise variance the camera model gives for the pixel
(the same weights for every candidate), averaged over the held-out pixels. The network is
compared with the best classical candidate pixel by pixel (a sign test: at how many held-out
pixels is it the worse of the two), and it is replaced only when it is behind at significantly
more pixels and by a clear margin on average.

Images larger than :data:`MAX_VOXELS` are checked on a central box, the held-out pixels drawn
from its interior so that every estimate there had the data around it (:func:`check_regions`),
and Spitfire runs there as it would on the whole image (``adam_eps`` scaled, the whole image's
range).

The same held-out pixels rank networks against each other (:func:`score_networks`): the 3D default
fine-tunes its prior with and without a sparse-Hessian term and keeps the network that predicts
them better. Between two networks trained on the same patches the comparison is paired and the
criterion's biases are nearly the same for both, so differences far below the check's margin
still ranked them right on the microscopy suite (``docs/holdout.md``).

The criterion lives in the blurred domain: it ranks what each estimate predicts of the data, not
its distance to the object, which no ground-truth-free criterion can see in the frequencies the
PSF removes. ``docs/holdout.md`` measures how often it picks right on the microscopy suite.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from .classical import richardson_lucy_refine, richardson_lucy_refine_series, richardson_lucy_series
from .masking import stratified_mask
from .noise import NoiseModel, estimate_noise
from .operators import PSFConvolution
from .variational import SPITFIRE_ADAM_EPS, SPITFIRE_PAD, spitfire

__all__ = [
    "REFINE_STEPS",
    "Candidate",
    "CheckReport",
    "check",
    "check_regions",
    "holdout_folds",
    "reconvolve",
    "score_networks",
    "steps_phrase",
    "LR_ITERATIONS",
    "MAX_VOXELS",
    "MIN_HELD_OUT",
    "SPITFIRE_REGS",
    "STEP_MARGIN",
]

#: Lucy-Richardson iteration counts tried (one run keeps them all).
LR_ITERATIONS: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 100)
#: Spitfire's ``reg`` values tried: the part of the microscopy suite's oracle grid (0.9-0.999) that
#: the check chose from on the suite (docs/holdout.md); each value is one Spitfire run.
SPITFIRE_REGS: tuple[float, ...] = (0.95, 0.98, 0.99, 0.995)
#: How much lower (as a fraction) the held-out error after one Lucy-Richardson step from the
#: network's estimate must be for the step to be written. What the step gains is small (0.04-0.27 dB
#: on the microscopy suite, with held-out errors 0.35-7.7 % lower) and what it can cost on noisy
#: images is large (1.6 dB with an error 0.5 % lower, on the paper's 2D noise): docs/holdout.md.
STEP_MARGIN = 0.01
#: Lucy-Richardson step counts from the network's estimate that the check scores (one run keeps
#: them all). Where one step helps, more of them helped further on dense bright 3D structures
#: (nuclei under a widefield or measured PSF), and the held-out error ranked the counts as the
#: true PSNR did (docs/holdout.md).
REFINE_STEPS: tuple[int, ...] = (1, 2, 4, 8, 16)
#: Held-out pixels the default number of folds aims at (each fold costs one network pass).
MIN_HELD_OUT = 4000
#: Largest part of an image the check computes on, per dimensionality: larger images are checked
#: on their central part (its context; the held-out pixels lie in its interior).
MAX_VOXELS: dict[int, int] = {2: 2**18, 3: 2**18}


@dataclass
class Candidate:
    """One estimate's held-out score.

    Attributes
    ----------
    name : str
        ``"network"``, ``"lucy-richardson"`` or ``"spitfire"``.
    params : dict
        Its setting (``{"iterations": 8}``, ``{"reg": 0.99}``, ``{}``).
    error : float
        Mean noise-normalized squared error of its prediction at the held-out pixels (about 1 for
        an estimate that predicts the data to within its noise).
    errors : np.ndarray
        The per-pixel errors behind ``error`` (held-out pixels in a fixed order), for paired
        comparisons.
    predictions : np.ndarray or None
        What the estimate predicts at those pixels (``P d`` there, recorded units, same order).
    """

    name: str
    params: dict[str, Any]
    error: float
    errors: np.ndarray = field(repr=False)
    predictions: np.ndarray | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """``"spitfire (reg 0.99)"``, ``"lucy-richardson (8 it.)"``, ``"network"``,
        ``"network + 1 Lucy-Richardson step"``."""
        if "lr_steps" in self.params:
            n = int(self.params["lr_steps"])
            return f"{self.name} + {n} Lucy-Richardson step{'s' if n > 1 else ''}"
        if "reg" in self.params:
            return f"{self.name} (reg {self.params['reg']:g})"
        if "iterations" in self.params:
            return f"{self.name} ({self.params['iterations']} it.)"
        return self.name


@dataclass
class CheckReport:
    """What :func:`check` found.

    Attributes
    ----------
    network : Candidate
        The network's score: its estimate as is, or after the Lucy-Richardson steps from it that
        :func:`check` chose (every series scored is in ``networks``).
    classical : list of Candidate
        Every classical candidate's score, best first.
    winner : Candidate
        The network, unless the best classical candidate predicts the held-out pixels clearly
        better (see :func:`check`'s ``z_threshold`` and ``margin``).
    z : float
        Sign test over the held-out pixels of "the network's error is larger than the best classical
        candidate's", as a z-score (positive: the network is behind at most pixels).
    pixels : int
        Held-out pixels scored.
    region : tuple of slice
        Where the held-out pixels were drawn (all of the image unless it was larger than the
        check's ``max_voxels``).
    seconds : float
        Time the check took.
    noise : NoiseModel
        The camera model that weighed the errors.
    context : tuple of slice
        The part of the image every estimate was computed on: ``region`` and, where ``region``
        does not reach the image's border, a margin of a quarter of the PSF.
    networks : list of Candidate
        The network as is and, when steps were scored, after each series of Lucy-Richardson steps
        (fewest first).
    step_z : float
        Sign test over the held-out pixels of "the estimate as is has the larger error than after
        the first step", as a z-score (positive: the step predicts most pixels better); 0 when no
        step was scored.
    observed : np.ndarray or None
        The recorded values at the held-out pixels (the order of every candidate's ``errors``).
    observed_weights : np.ndarray or None
        The inverse noise variances that weigh the errors there.
    """

    network: Candidate
    classical: list[Candidate]
    winner: Candidate
    z: float
    pixels: int
    region: tuple[slice, ...]
    seconds: float
    noise: NoiseModel
    context: tuple[slice, ...] = ()
    networks: list[Candidate] = field(default_factory=list)
    step_z: float = 0.0
    observed: np.ndarray | None = field(default=None, repr=False)
    observed_weights: np.ndarray | None = field(default=None, repr=False)

    @property
    def fell_back(self) -> bool:
        """Whether a classical estimate won."""
        return self.winner.name != "network"

    @property
    def lr_steps(self) -> int:
        """Lucy-Richardson steps to run from the network's estimate before writing it (0: none)."""
        return 0 if self.fell_back else int(self.winner.params.get("lr_steps", 0))

    def verdict(self) -> str:
        """Who predicts the held-out pixels better, and by how much."""
        best = self.classical[0]
        gap = 100.0 * (self.network.error - best.error) / max(best.error, 1e-12)
        scores = f"{self.network.label} {self.network.error:.4f}, best classical {best.label} {best.error:.4f}"
        if self.fell_back:
            return (
                f"check on {self.pixels} held-out pixels: the network predicts them worse than {best.label}"
                f" ({scores}: {gap:+.1f} %, z={self.z:.1f})"
            )
        if gap <= 0:
            return f"check on {self.pixels} held-out pixels: {scores}; the network predicts them better ({gap:.1f} %)"
        return (
            f"check on {self.pixels} held-out pixels: {scores}; the network is behind by {gap:.1f} % (z={self.z:.1f}),"
            " within what the check can tell apart"
        )

    def summary(self) -> str:
        """One line for the user: the verdict and what is written."""
        if self.fell_back:
            return self.verdict() + f"; writing {self.winner.label}'s result instead"
        if self.lr_steps:
            return self.verdict() + f"; writing the network's result after {steps_phrase(self.lr_steps)} from it"
        return self.verdict() + "; writing the network's result"

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary for provenance records and reports."""
        return {
            "winner": self.winner.label,
            "fell_back": self.fell_back,
            "z": round(float(self.z), 3),
            "pixels": int(self.pixels),
            "region": [[s.start, s.stop] for s in self.region],
            "context": [[s.start, s.stop] for s in self.context],
            "seconds": round(float(self.seconds), 2),
            "network": round(float(self.network.error), 6),
            "networks": {c.label: round(float(c.error), 6) for c in self.networks},
            "step_z": round(float(self.step_z), 3),
            "classical": {c.label: round(float(c.error), 6) for c in self.classical},
            "noise": self.noise.to_dict(),
        }

    def estimate(
        self,
        image: np.ndarray,
        psf: np.ndarray,
        device: str | torch.device = "cpu",
        part_of: tuple[tuple[int, ...], tuple[float, float]] | None = None,
    ) -> np.ndarray:
        """The winning classical method run on all of ``image`` (all pixels as data).

        ``part_of = (shape, (minimum, maximum))``: ``image`` is a block of a larger image (see
        :func:`classical_estimate`).

        Raises
        ------
        ValueError
            If the network won (its result comes from the model, not from here).
        """
        if not self.fell_back:
            raise ValueError("the network won the check: use the model's prediction")
        return classical_estimate(self.winner, image, psf, self.noise.offset, device=device, part_of=part_of)

    def output(
        self,
        image: np.ndarray,
        psf: np.ndarray,
        network: np.ndarray | None,
        device: str | torch.device = "cpu",
    ) -> np.ndarray:
        """What to write for ``image``: the winner's result on all of it.

        Parameters
        ----------
        image : np.ndarray
            The recorded image the check ran on (all of it).
        psf : np.ndarray
            The PSF.
        network : np.ndarray or None
            The network's prediction of ``image`` (``model.predict(image)``); not needed (``None``)
            when the check fell back.
        device : str or torch.device
            Where the classical method or the Lucy-Richardson steps run.

        Returns
        -------
        np.ndarray
            The network's prediction as is, after :attr:`lr_steps` Lucy-Richardson steps from it,
            or the winning classical method's estimate.
        """
        if self.fell_back:
            return self.estimate(image, psf, device=device)
        if network is None:
            raise ValueError("the network won the check: pass its prediction of the image")
        if self.lr_steps:
            return richardson_lucy_refine(
                network, image, psf, offset=self.noise.offset, iterations=self.lr_steps, device=device
            )
        return np.asarray(network, np.float32)


def steps_phrase(n: int) -> str:
    """``"one Lucy-Richardson step"``, ``"16 Lucy-Richardson steps"``."""
    return "one Lucy-Richardson step" if int(n) == 1 else f"{int(n)} Lucy-Richardson steps"


def holdout_folds(shape: tuple[int, ...], folds: int, fraction: float, seed: int = 0) -> np.ndarray:
    """``folds`` stratified masks (as the network's blind-spot training draws them), ``(folds, *shape)`` bool."""
    gen = torch.Generator().manual_seed(int(seed))
    masks = stratified_mask((folds, 1, *shape), fraction, generator=gen)[:, 0].numpy() > 0.5
    return masks


def reconvolve(estimate: np.ndarray, psf: np.ndarray | PSFConvolution) -> np.ndarray:
    """``P d`` on the image's grid, the object continued beyond the field by reflection.

    Every candidate gets the same treatment at the border, so light from outside the field is
    neither missing nor estimated differently for one of them.
    """
    op = psf if isinstance(psf, PSFConvolution) else PSFConvolution(np.asarray(psf, np.float32))
    half = [k // 2 for k in op.kernel_shape]
    padded = np.pad(np.asarray(estimate, np.float32), [(h, h) for h in half], mode="reflect")
    out = op.convolve_numpy(padded)
    return out[tuple(slice(h, h + n) for h, n in zip(half, estimate.shape, strict=True))]


def _central_region(shape: tuple[int, ...], max_voxels: int, psf_shape: tuple[int, ...]) -> tuple[slice, ...]:
    """The central box of ``shape`` with at most ``max_voxels`` voxels, shrunk evenly but never
    below the PSF's size on an axis."""
    total = math.prod(shape)
    if total <= max_voxels:
        return tuple(slice(0, n) for n in shape)
    factor = (max_voxels / total) ** (1.0 / len(shape))
    sizes = [min(n, max(int(n * factor), k + 1)) for n, k in zip(shape, psf_shape, strict=True)]
    return tuple(slice((n - s) // 2, (n - s) // 2 + s) for n, s in zip(shape, sizes, strict=True))


def _scored_region(shape: tuple[int, ...], context: tuple[slice, ...], psf_shape: tuple[int, ...]) -> tuple[slice, ...]:
    """``context`` less a quarter of the PSF on every side that is not the image's own border.

    The estimates near a cut are computed without the data beyond it; a quarter of the PSF of
    context made the network's and Spitfire's results in the interior match their whole-image
    results on a widefield volume (``docs/holdout.md``), where half the PSF would make the
    context several times larger for a few held-out pixels more.
    """
    out = []
    for n, c, k in zip(shape, context, psf_shape, strict=True):
        m = k // 4
        lo = c.start + (m if c.start > 0 else 0)
        hi = c.stop - (m if c.stop < n else 0)
        out.append(slice(lo, hi) if hi > lo else slice(c.start, c.stop))
    return tuple(out)


def check_regions(
    shape: tuple[int, ...], psf_shape: tuple[int, ...], max_voxels: int | None = None
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Where :func:`check` computes on an image of ``shape``, and where it holds pixels out.

    Returns
    -------
    context, scored : tuple of slice
        ``context``: the central box of at most ``max_voxels`` voxels (default
        :data:`MAX_VOXELS`; never smaller than the PSF on an axis), all of the image when it is
        small enough. ``scored``: its interior, a quarter of the PSF in from every cut side.
    """
    context = _central_region(tuple(shape), max_voxels or MAX_VOXELS[len(shape)], tuple(psf_shape))
    return context, _scored_region(tuple(shape), context, tuple(psf_shape))


def _spitfire_pad(shape: tuple[int, ...]) -> int:
    """Spitfire's padding for an image of ``shape``: sdeconv's 13, less on a thinner image (a stack of
    a few planes), whose reflection padding must stay inside it."""
    return max(0, min(SPITFIRE_PAD, min(shape) - 1))


def _padded_voxels(shape: tuple[int, ...]) -> int:
    pad = _spitfire_pad(shape)
    return math.prod(n + 2 * pad for n in shape)


def _spitfire_as_part(
    shape: tuple[int, ...], whole_shape: tuple[int, ...], value_range: tuple[float, float] | None, offset: float
) -> dict[str, Any]:
    """Spitfire's arguments that make it solve an image of ``shape`` as its part of an image of
    ``whole_shape`` and raw ``value_range`` (``None``: its own), on offset-subtracted data: Adam's
    epsilon scaled by the padded voxel counts, and the whole image's range as its normalization."""
    extra: dict[str, Any] = {"adam_eps": SPITFIRE_ADAM_EPS * _padded_voxels(tuple(whole_shape)) / _padded_voxels(shape)}
    if value_range is not None and value_range[1] > value_range[0]:
        extra["value_range"] = (float(value_range[0]) - offset, float(value_range[1]) - offset)
    return extra


def _lr_data(image: np.ndarray, offset: float) -> np.ndarray:
    return np.clip(np.asarray(image, np.float32) - offset, 0.0, None)


def classical_estimate(
    candidate: Candidate,
    image: np.ndarray,
    psf: np.ndarray,
    offset: float,
    device: str | torch.device = "cpu",
    part_of: tuple[tuple[int, ...], tuple[float, float]] | None = None,
) -> np.ndarray:
    """Run ``candidate``'s method on all of ``image``; the result in recorded units (offset added back).

    ``part_of = (shape, (minimum, maximum))``: ``image`` is a block of a larger image of that shape
    and value range; Spitfire then solves the block as its part of the whole image's problem (the
    whole image's normalization and Adam's steps, as the check runs it on a crop).
    """
    if candidate.name == "lucy-richardson":
        n = int(candidate.params["iterations"])
        est = richardson_lucy_series(_lr_data(image, offset), psf, [n], boundary="extend", device=device)[n]
        return est + np.float32(offset)
    if candidate.name == "spitfire":
        data = np.asarray(image, np.float32) - np.float32(offset)
        reg = float(candidate.params["reg"])
        extra = _spitfire_as_part(data.shape, *part_of, float(offset)) if part_of is not None else {}
        est = spitfire(data, psf, reg=reg, pad=_spitfire_pad(data.shape), device=device, **extra)
        return est + np.float32(offset)
    raise ValueError(f"not a classical candidate: {candidate.name!r}")


@dataclass
class _HeldOut:
    """Where and what :func:`check` holds out, shared with :func:`score_networks`."""

    image: np.ndarray  # the region computed on (the context)
    image_out: np.ndarray  # the same with every held-out pixel replaced by its neighbours' mean
    whole_shape: tuple[int, ...]
    context: tuple[slice, ...]
    scored: tuple[slice, ...]
    spitfire_range: tuple[float, float] | None
    masks: np.ndarray  # (folds, *image.shape)
    held: np.ndarray
    noise: NoiseModel
    weights: np.ndarray  # 1 / the camera model's variance, per pixel
    op: PSFConvolution


def _held_out(
    image: np.ndarray,
    psf: np.ndarray,
    noise: NoiseModel | None,
    mask_fraction: float,
    folds: int | None,
    max_voxels: int | None,
    part_of: tuple[tuple[int, ...], tuple[slice, ...]] | None,
    seed: int,
) -> _HeldOut:
    full = np.asarray(image, np.float32)
    psf = np.asarray(psf, np.float32)
    if part_of is None:
        whole_shape = full.shape
        context, scored = check_regions(full.shape, psf.shape, max_voxels)
        y = np.ascontiguousarray(full[context])
        # A crop is normalized as its whole image would be; the whole image as Spitfire does it.
        spitfire_range = (float(full.min()), float(full.max())) if y.shape != full.shape else None
    else:
        whole_shape, context = tuple(int(n) for n in part_of[0]), tuple(part_of[1])
        sizes = tuple(len(range(*c.indices(n))) for c, n in zip(context, whole_shape, strict=True))
        if sizes != full.shape:
            raise ValueError(
                f"part_of: the context {context} of an image of shape {whole_shape} has shape {sizes},"
                f" but the image given has shape {full.shape}"
            )
        scored = _scored_region(whole_shape, context, psf.shape)
        y = full
        spitfire_range = None
    inner = tuple(slice(s.start - c.start, s.stop - c.start) for s, c in zip(scored, context, strict=True))
    inner_shape = tuple(s.stop - s.start for s in inner)
    noise = noise or estimate_noise(y)
    if folds is None:
        per_fold = max(1.0, math.prod(inner_shape) * mask_fraction)
        folds = int(min(8, max(2, math.ceil(MIN_HELD_OUT / per_fold))))
    masks = np.zeros((folds, *y.shape), dtype=bool)
    masks[(slice(None), *inner)] = holdout_folds(inner_shape, folds, mask_fraction, seed)
    held = masks.any(axis=0)
    # The held-out pixels get zero weight as data; their values are replaced too, so that nothing
    # else (Spitfire's start and range, Lucy-Richardson's starting level) sees them either.
    y_out = replace_by_neighbours(y, held)
    # Method-independent weights: the camera model's variance at the lightly smoothed image.
    smooth = ndimage.gaussian_filter(y_out.astype(np.float64), 1.0)
    weights = (1.0 / np.maximum(noise.variance(smooth), 1e-12)).astype(np.float32)
    return _HeldOut(
        y, y_out, tuple(whole_shape), context, scored, spitfire_range, masks, held, noise, weights, PSFConvolution(psf)
    )


def score_networks(
    predicts: Sequence[Callable[[np.ndarray], np.ndarray]],
    image: np.ndarray,
    psf: np.ndarray,
    *,
    noise: NoiseModel | None = None,
    mask_fraction: float = 0.005,
    folds: int | None = None,
    max_voxels: int | None = None,
    part_of: tuple[tuple[int, ...], tuple[slice, ...]] | None = None,
    seed: int = 0,
) -> list[Candidate]:
    """The held-out error of several networks, on the pixels and folds :func:`check` holds out.

    Each ``predicts[i](masked_image)`` gives network ``i``'s estimate (recorded units) of a copy of
    ``image`` whose held-out pixels were replaced by the mean of their neighbours. Every network
    sees the same copies, and its error is the one :func:`check` would give it with the same
    arguments (its ``networks[0]``): errors of one call compare across networks. Arguments as for
    :func:`check`.

    Returns
    -------
    list of Candidate
        One per network, in the order given (name ``"network"``, ``params`` ``{"index": i}``).
    """
    ho = _held_out(image, psf, noise, mask_fraction, folds, max_voxels, part_of, seed)
    out = []
    for i, predict in enumerate(predicts):
        pred = np.zeros_like(ho.image)
        for mask in ho.masks:
            pred[mask] = reconvolve(predict(replace_by_neighbours(ho.image, mask)), ho.op)[mask]
        out.append(_candidate("network", {"index": i}, pred, ho.image, ho.held, ho.weights))
    return out


def _candidate(
    name: str, params: dict[str, Any], prediction: np.ndarray, image: np.ndarray, where: np.ndarray, weights: np.ndarray
) -> Candidate:
    at = prediction[where].astype(np.float32)
    errors = ((at - image[where]) ** 2 * weights[where]).astype(np.float64)
    return Candidate(name, params, float(errors.mean()), errors, at)


def _paired_z(a: np.ndarray, b: np.ndarray) -> float:
    """Sign test of ``a > b`` over paired pixels, as a z-score (positive: ``a`` is larger more often).

    A sign test rather than a t-test on the mean difference: squared residuals are heavy-tailed,
    and a few huge errors of a grossly wrong estimate would inflate the standard error enough to
    hide that it is worse almost everywhere.
    """
    diff = a - b
    diff = diff[diff != 0]
    n = diff.size
    if n == 0:
        return 0.0
    return float((np.count_nonzero(diff > 0) - 0.5 * n) / math.sqrt(0.25 * n))


def _choose_steps(networks: Sequence[Candidate], z_threshold: float, step_margin: float) -> tuple[Candidate, float]:
    """The series of steps that stands for the network (``networks``: as is, then fewest steps
    first), and the first step's sign-test z against the estimate as is (0 without steps)."""
    network = networks[0]
    if len(networks) < 2:
        return network, 0.0
    step_z = _paired_z(networks[0].errors, networks[1].errors)
    for i, longer in enumerate(networks[1:]):
        # As for a classical candidate: better at significantly more held-out pixels, and by a
        # margin on average. The mean alone is led by the largest errors, which a step towards the
        # data shrinks where the data are far from any smooth estimate (impulse noise, a dark
        # background under strong read noise) while it makes most pixels worse.
        z = step_z if i == 0 else _paired_z(network.errors, longer.errors)
        if z > z_threshold and longer.error < (1.0 - step_margin) * network.error:
            network = longer
        elif i == 0:
            break
    return network, step_z


def check(
    predict_masked: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    psf: np.ndarray,
    *,
    noise: NoiseModel | None = None,
    mask_fraction: float = 0.005,
    replace: Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray] | None = None,
    folds: int | None = None,
    lr_iterations: Sequence[int] = LR_ITERATIONS,
    spitfire_regs: Sequence[float] = SPITFIRE_REGS,
    z_threshold: float = 2.0,
    margin: float = 0.05,
    max_voxels: int | None = None,
    part_of: tuple[tuple[int, ...], tuple[slice, ...]] | None = None,
    refine: bool = True,
    refine_steps: Sequence[int] = REFINE_STEPS,
    step_margin: float = STEP_MARGIN,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: Callable[[str], None] | None = None,
) -> CheckReport:
    """Compare the network with Lucy-Richardson and Spitfire on held-out pixels of ``image``.

    Parameters
    ----------
    predict_masked : callable
        ``predict_masked(masked_image)`` -> the network's estimate (recorded units) of an image
        whose held-out pixels were replaced by ``replace``.
    image : np.ndarray
        The recorded 2D/3D image (camera counts with their offset, or any intensities).
    psf : np.ndarray
        The PSF (sum 1).
    noise : NoiseModel, optional
        The camera model (default estimated from ``image``): its offset is subtracted for the
        classical methods and its variance weighs the errors.
    mask_fraction : float
        Held-out fraction per fold: the network's training mask fraction, so that its masked
        prediction is what it learned to make.
    replace : callable, optional
        ``replace(image, mask, rng)`` -> the image with ``mask``'s pixels replaced by values that
        do not depend on them (default: the mean of their unmasked neighbours).
    folds : int, optional
        Independent masks; the network runs once per fold, the classical methods once with all
        folds held out together (a few per cent of the pixels). Default: enough for about
        :data:`MIN_HELD_OUT` held-out pixels, between 2 and 8 folds.
    lr_iterations, spitfire_regs
        The classical candidates' grids; an empty grid leaves that method out.
    z_threshold, margin : float
        The network is replaced only when the best classical candidate's error is lower at
        significantly more held-out pixels (a sign test's z-score above ``z_threshold``) *and* its
        mean error is lower by more than ``margin`` of its value. The margin
        is there because the criterion does not rank small differences reliably: the network's
        masked prediction sees neighbour means in place of the held-out pixels (the classical
        methods simply lack them), and the blurred domain hides what the PSF removes. On the
        microscopy suite, gaps of 2-5 % went either way in object-domain PSNR; the gross failures
        it exists for were gaps of 50 % (``docs/holdout.md``).
    max_voxels : int, optional
        Larger images are checked on their central region of about this many voxels (default
        :data:`MAX_VOXELS`: 512² in 2D, 2^18 voxels in 3D), the held-out pixels drawn from its
        interior (:func:`check_regions`): every estimate there is computed with the data around
        it, as on the whole image. Spitfire on that crop runs with Adam's epsilon scaled by the
        ratio of the voxel counts, so that it takes the steps it would take on the whole image
        (see :func:`siamdecon.variational.spitfire`'s ``adam_eps``), and with the whole image's
        range as its normalization.
    part_of : (shape, context), optional
        ``image`` is only the ``context`` crop (from :func:`check_regions`) of an image of
        ``shape`` that is not in memory: the check then runs as it would on that image (the
        crop's own range normalizes Spitfire).
    refine : bool
        Also score the network's estimate after each count of ``refine_steps`` Lucy-Richardson
        steps from it (the held-out pixels missing data there too). The fewest steps stand for the
        network when they predict the held-out pixels better than the estimate as is at
        significantly more of them (a sign test's z-score above ``z_threshold``) and on average by
        more than ``step_margin``; then each longer series, fewest first, stands when it beats
        the series standing so far in the same way. Without the first, no longer series is
        considered: each step adds the noise that a first step that does not help already adds.
        :meth:`CheckReport.output` writes what stands. A step corrects local errors of
        intensity that the blurred domain sees; where the image is noisy it also adds noise, which
        the blurred domain hides, and a lower mean error alone does not show that it helps: on
        the paper's 2D noise it was lower by 1-3 % on images the step made 0.2-3.3 dB worse, and
        on the worst of them the step was better at far fewer than half of the pixels
        (``docs/holdout.md``).
    refine_steps : sequence of int
        The step counts scored (default :data:`REFINE_STEPS`; each at least 1, one run keeps
        them all).
    step_margin : float
        A series of steps stands for the network only when its mean held-out error is also lower
        than what stood before by more than this fraction (default :data:`STEP_MARGIN`).
    seed : int
        Seed of the masks and of the replacement noise.
    device : str or torch.device
        Where the classical methods run.
    progress : callable, optional
        Called with a short message before each stage.

    Returns
    -------
    CheckReport
    """
    if not lr_iterations and not spitfire_regs:
        raise ValueError("the check needs at least one classical candidate (lr_iterations or spitfire_regs)")
    if not 0.0 <= step_margin < 1.0:
        raise ValueError(f"step_margin must be in [0, 1), got {step_margin}")
    steps = sorted({int(k) for k in refine_steps}) if refine else []
    if steps and steps[0] < 1:
        raise ValueError(f"refine_steps must be positive step counts, got {list(refine_steps)!r}")
    t0 = time.perf_counter()
    say = progress or (lambda _msg: None)
    ho = _held_out(image, psf, noise, mask_fraction, folds, max_voxels, part_of, seed)
    y, held, noise, weights, op = ho.image, ho.held, ho.noise, ho.weights, ho.op
    psf = np.asarray(psf, np.float32)
    rng = np.random.default_rng(seed)
    replace = replace or replace_by_neighbours

    say(f"check: network on {len(ho.masks)} masked copies")
    net_pred = np.zeros_like(y)
    refined_pred = {k: np.zeros_like(y) for k in steps}
    for mask in ho.masks:
        masked = replace(y, mask, rng)
        d = predict_masked(masked)
        net_pred[mask] = reconvolve(d, op)[mask]
        if steps:
            series = richardson_lucy_refine_series(
                d, masked, op, steps, offset=noise.offset, weights=(~mask).astype(np.float32), device=device
            )
            for k in steps:
                refined_pred[k][mask] = reconvolve(series[k], op)[mask]

    classical: list[Candidate] = []
    data_weights = (~held).astype(np.float32)
    y_out = ho.image_out
    if lr_iterations:
        say("check: Lucy-Richardson")
        counts = sorted({int(n) for n in lr_iterations})
        series = richardson_lucy_series(
            _lr_data(y_out, noise.offset), op, counts, boundary="extend", weights=data_weights, device=device
        )
        for n in counts:
            pred = reconvolve(series[n] + np.float32(noise.offset), op)
            classical.append(_candidate("lucy-richardson", {"iterations": n}, pred, y, held, weights))
    if spitfire_regs:
        data = y_out - np.float32(noise.offset)
        as_part = _spitfire_as_part(y.shape, ho.whole_shape, ho.spitfire_range, float(noise.offset))
        for reg in spitfire_regs:
            say(f"check: Spitfire reg {reg:g}")
            est = spitfire(
                data,
                psf,
                reg=float(reg),
                pad=_spitfire_pad(data.shape),
                weights=data_weights,
                **as_part,
                device=device,
            )
            pred = reconvolve(est + np.float32(noise.offset), op)
            classical.append(_candidate("spitfire", {"reg": float(reg)}, pred, y, held, weights))
    networks = [_candidate("network", {}, net_pred, y, held, weights)]
    networks += [_candidate("network", {"lr_steps": k}, refined_pred[k], y, held, weights) for k in steps]
    network, step_z = _choose_steps(networks, z_threshold, step_margin)
    classical.sort(key=lambda c: c.error)
    best = classical[0]
    z = _paired_z(network.errors, best.errors)
    behind = z > z_threshold and network.error > (1.0 + margin) * best.error
    winner = best if behind else network
    return CheckReport(
        network,
        classical,
        winner,
        z,
        int(held.sum()),
        ho.scored,
        time.perf_counter() - t0,
        noise,
        context=ho.context,
        networks=networks,
        step_z=step_z,
        observed=y[held],
        observed_weights=weights[held],
    )


def replace_by_neighbours(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """``image`` with every pixel of ``mask`` replaced by the mean of its unmasked neighbours (3^d box)."""
    keep = (~mask).astype(np.float32)
    box = np.ones((3,) * image.ndim, np.float32)
    total = ndimage.correlate(np.asarray(image, np.float32) * keep, box, mode="reflect")
    count = ndimage.correlate(keep, box, mode="reflect")
    out = np.array(image, dtype=np.float32, copy=True)
    out[mask] = (total / np.maximum(count, 1.0))[mask]
    return out
