"""Spitfire variational deconvolution (Prigent et al., Sci Rep 2023), computed as ``sdeconv`` 1.0.4 does.

Spitfire minimizes ``reg * data(u) + (1 - reg) * HV(u)`` over the image ``u`` with Adam, where
``HV`` is the mean of ``sqrt(weight^2 |Hessian u|^2 + (1 - weight)^2 u^2)`` (sparse Hessian
variation). :func:`spitfire` reproduces ``sdeconv.deconv.spitfire`` (the BSD-3 reference) step by
step: the same normalization, padding, data term, regularizer, optimizer, learning-rate schedule,
stopping rules and cropping. Only the arithmetic differs:

* the 2D data term is an FFT correlation (:class:`siamdecon.operators.PSFConvolution`) instead of
  sdeconv's direct ``nn.Conv2d``, whose cost grows with the PSF area and dominates its run time;
  the 3D one uses real FFTs where sdeconv uses complex ones;
* the regularizer's gradient is written out (:class:`_SparseHessian`) instead of autograd through
  a dozen slices; the value is computed by the same float32 operations;
* where the regularizer's magnitude is exactly 0 (``u = 0`` on a flat patch, which happens when
  the image's minimum is so large that ``min + 1e-5`` rounds to ``min``) sqrt has no derivative:
  sdeconv's autograd returns NaN there and its whole image turns NaN; here the gradient is 0.

The float32 rounding differences are ~1e-7 relative per step; two things amplify them. The
regularizer is not smooth where its magnitude is near 0 (dark flat areas near the image minimum):
its gradient there acts like a sign, and Adam, which moves every pixel by about the learning rate
whatever the gradient's size, follows it, so a few such pixels can differ by a few 1e-4 of the range
mid-run. And the stopping rule is a hard threshold on float32 loss differences, so the stopping
iteration can move by a few (as it can for either implementation with another thread count or FFT
library); the images then differ by about ``|iteration difference| * learning rate`` of the range.
Otherwise the two agree to about 1e-6 of the range.

The conventions of sdeconv 1.0.4, all reproduced:

* Normalization: ``mini = min(image) + 1e-5``, ``maxi = max(image)``, ``u0 = (image - mini) /
  (maxi - mini)``; the result is mapped back by ``(maxi - mini) * u + mini``.
* Padding: reflection (no edge repeat) by ``pad`` pixels on every side of every axis, then the
  padding is cropped off at the end. ``pad=0`` means no padding.
* 2D data term: ``mean((y - corr(u, psf))^2)`` over the padded image, where ``corr`` is the
  ``"same"`` zero-boundary *correlation* with the sum-normalized PSF (``nn.Conv2d`` does not flip
  its kernel), centre pixel ``(k - 1) / 2``. sdeconv needs a square PSF of odd size; here any odd
  size works.
* 3D data term: the same mean squared error with a *circular convolution* over the padded volume
  (FFT product, PSF not flipped), the PSF index ``K // 2`` on each axis being the origin. sdeconv
  zero-pads the PSF by ``pad`` like the image, so it needs a PSF of the image's shape; a smaller
  PSF is accepted here and is equivalent to sdeconv's run with the PSF embedded in an image-sized
  array, index ``K // 2`` at ``S // 2`` (see :func:`embed_psf`). sdeconv's hand-written backward
  pass returns ``H^T (H u - y) / N``, half the gradient of the mean squared error; so does this one.
* Regularizer: centred second differences along each axis and forward mixed differences
  (``u[i+1, j+1] - u[i+1, j] - u[i, j+1] + u[i, j]``), evaluated on the interior pixels of the
  padded image. In 3D the ``z`` second difference is scaled by ``delta^2`` and the two mixed
  differences involving ``z`` by ``delta``.
* Optimizer: Adam (torch defaults) on ``u`` initialized to the normalized padded image, learning
  rate ``gradient_step``, halved every 100 steps (``StepLR``), at most 2500 iterations.
* Stopping: the loss is computed first; the run stops *before* stepping when ``|loss - previous|
  < precision`` for the 6th time in a row, where ``previous`` is only replaced when the change is
  at least ``precision`` (so the loss is compared with the last one that moved, not the last one).
  In 3D the run also stops when the loss exceeds ``previous``. The iteration count includes the
  iteration that stopped.

Everything is float32, as in sdeconv for float32 inputs.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import types
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, overload

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError
from .operators import PSFConvolution

__all__ = ["SpitfireResult", "spitfire", "embed_psf", "load_sdeconv_spitfire", "run_sdeconv_spitfire"]

# sdeconv's initial "previous loss", larger than any normalized loss.
_FIRST_PREVIOUS_LOSS = 9e12
# sdeconv stops when the loss has been flat more than this many times in a row.
_FLAT_COUNT = 5
#: Spitfire's reflection padding and Adam's epsilon (sdeconv's values), defaults of :func:`spitfire`.
SPITFIRE_PAD = 13
SPITFIRE_ADAM_EPS = 1e-8
_LR_STEP = 100
_LR_GAMMA = 0.5

StopReason = Literal["converged", "loss_increased", "max_iterations"]


@dataclass(frozen=True)
class SpitfireResult:
    """Outcome of one Spitfire run.

    Attributes
    ----------
    image : np.ndarray
        The deconvolved image, float32, the shape of the input.
    iterations : int
        Loss evaluations, as sdeconv's ``niter_`` counts them (the stopping one included).
    loss : float
        The last loss computed (on the normalized, padded image).
    stop_reason : str or None
        ``"converged"``, ``"loss_increased"`` (3D only) or ``"max_iterations"``; None when unknown
        (the sdeconv reference does not say).
    """

    image: np.ndarray
    iterations: int
    loss: float
    stop_reason: StopReason | None


# -- the two terms ------------------------------------------------------------------------------------


def _sparse_hessian_2d(u: torch.Tensor, weight: float) -> torch.Tensor:
    """sdeconv's ``hv_loss`` on the last two axes of ``u``: mean over the interior pixels.

    The definition, differentiated by autograd; the solver uses :class:`_SparseHessian`, which
    computes the same value with a hand-written gradient.
    """
    c = u[..., 1:-1, 1:-1]
    d_rows = -u[..., 2:, 1:-1] + 2 * c - u[..., :-2, 1:-1]
    d_cols = -u[..., 1:-1, 2:] + 2 * c - u[..., 1:-1, :-2]
    d_mixed = u[..., 2:, 2:] - u[..., 2:, 1:-1] - u[..., 1:-1, 2:] + c
    return torch.mean(_hessian_magnitude_2d(c, d_rows, d_cols, d_mixed, weight))


def _hessian_magnitude_2d(
    c: torch.Tensor, d_rows: torch.Tensor, d_cols: torch.Tensor, d_mixed: torch.Tensor, weight: float
) -> torch.Tensor:
    # Same grouping of the weights as sdeconv, so that float32 rounding matches too.
    return torch.sqrt(
        weight * weight * (torch.square(d_rows) + torch.square(d_cols) + 2 * torch.square(d_mixed))
        + (1 - weight) * (1 - weight) * torch.square(c)
    )


def _sparse_hessian_3d(u: torch.Tensor, weight: float, delta: float) -> torch.Tensor:
    """sdeconv's ``hv_loss_3d`` on the last three axes (z, y, x) of ``u`` (the autograd definition)."""
    c = u[..., 1:-1, 1:-1, 1:-1]
    d_xx = -u[..., 1:-1, 1:-1, 2:] + 2 * c - u[..., 1:-1, 1:-1, :-2]
    d_yy = -u[..., 1:-1, 2:, 1:-1] + 2 * c - u[..., 1:-1, :-2, 1:-1]
    d_zz = delta * delta * (-u[..., 2:, 1:-1, 1:-1] + 2 * c - u[..., :-2, 1:-1, 1:-1])
    d_yx = u[..., 1:-1, 2:, 2:] - u[..., 1:-1, 1:-1, 2:] - u[..., 1:-1, 2:, 1:-1] + c
    d_zx = delta * (u[..., 2:, 1:-1, 2:] - u[..., 1:-1, 1:-1, 2:] - u[..., 2:, 1:-1, 1:-1] + c)
    d_zy = delta * (u[..., 2:, 2:, 1:-1] - u[..., 1:-1, 2:, 1:-1] - u[..., 2:, 1:-1, 1:-1] + c)
    return torch.mean(_hessian_magnitude_3d(c, d_xx, d_yy, d_zz, d_yx, d_zx, d_zy, weight))


def _hessian_magnitude_3d(
    c: torch.Tensor,
    d_xx: torch.Tensor,
    d_yy: torch.Tensor,
    d_zz: torch.Tensor,
    d_yx: torch.Tensor,
    d_zx: torch.Tensor,
    d_zy: torch.Tensor,
    weight: float,
) -> torch.Tensor:
    return torch.sqrt(
        torch.square(weight * d_xx)
        + torch.square(weight * d_yy)
        + torch.square(weight * d_zz)
        + 2 * torch.square(weight * d_yx)
        + 2 * torch.square(weight * d_zx)
        + 2 * torch.square(weight * d_zy)
        + torch.square((1 - weight) * c)
    )


# A difference is a list of (window, sign): the window selects u shifted by an offset from the
# interior pixels (offset +1 is ``2:``, 0 is ``1:-1``, -1 is ``:-2``).
_Stencil = tuple[tuple[tuple, float], ...]


def _window(offset: tuple[int, ...]) -> tuple:
    return (..., *(slice(1 + o, -1 + o if o < 1 else None) for o in offset))


def _second(axis: int, ndim: int) -> _Stencil:
    plus = tuple(1 if a == axis else 0 for a in range(ndim))
    minus = tuple(-1 if a == axis else 0 for a in range(ndim))
    return ((_window(plus), -1.0), (_window((0,) * ndim), 2.0), (_window(minus), -1.0))


def _mixed(first: int, second: int, ndim: int) -> _Stencil:
    both = tuple(1 if a in (first, second) else 0 for a in range(ndim))
    one = tuple(1 if a == first else 0 for a in range(ndim))
    two = tuple(1 if a == second else 0 for a in range(ndim))
    return ((_window(both), 1.0), (_window(one), -1.0), (_window(two), -1.0), (_window((0,) * ndim), 1.0))


@lru_cache(maxsize=16)
def _hessian_terms(ndim: int, weight: float, delta: float) -> tuple[tuple[_Stencil, float, float], ...]:
    """(stencil, scale, kappa) per term of the magnitude, ``q = sum kappa (scale * stencil u)^2``.

    The order is the argument order of ``_hessian_magnitude_{2,3}d``.
    """
    w2, c2 = weight * weight, (1 - weight) * (1 - weight)
    centre: _Stencil = ((_window((0,) * ndim), 1.0),)
    if ndim == 2:
        return ((centre, 1.0, c2), (_second(0, 2), 1.0, w2), (_second(1, 2), 1.0, w2), (_mixed(0, 1, 2), 1.0, 2 * w2))
    return (
        (centre, 1.0, c2),
        (_second(2, 3), 1.0, w2),
        (_second(1, 3), 1.0, w2),
        (_second(0, 3), delta * delta, w2),
        (_mixed(1, 2, 3), 1.0, 2 * w2),
        (_mixed(0, 2, 3), delta, 2 * w2),
        (_mixed(0, 1, 3), delta, 2 * w2),
    )


class _SparseHessian(torch.autograd.Function):
    """The sparse Hessian regularizer with a hand-written gradient.

    Autograd through a dozen slices materializes a full-size gradient per slice; accumulating the
    adjoint stencils in place into one tensor is what makes the regularizer cheap next to the FFTs.
    The value is the same float32 computation as :func:`_sparse_hessian_2d` / ``_3d``.
    """

    @staticmethod
    def forward(ctx, u, weight, delta):  # type: ignore[override]
        ndim = 2 if u.ndim == 4 else 3
        terms = _hessian_terms(ndim, weight, delta)
        values = []
        for stencil, scale, _ in terms:
            acc = None
            for window, sign in stencil:
                part = u[window]
                part = part if sign == 1.0 else sign * part
                acc = part if acc is None else acc + part
            values.append(acc if scale == 1.0 else scale * acc)
        magnitude = _hessian_magnitude_2d(*values, weight) if ndim == 2 else _hessian_magnitude_3d(*values, weight)
        ctx.save_for_backward(magnitude, *values)
        ctx.terms, ctx.shape = terms, u.shape
        return torch.mean(magnitude)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        magnitude, *values = ctx.saved_tensors
        # d mean(sqrt(q)) / d t = kappa t / (n sqrt(q)), t = scale * (stencil u).
        # Where the magnitude is 0 (u = 0 with a flat neighbourhood) sqrt has no derivative;
        # autograd (and so sdeconv) returns NaN there and the whole image turns NaN a step later.
        # 0 is a subgradient, so take that instead.
        inv = torch.where(magnitude > 0, (grad / magnitude.numel()) / magnitude, 0.0)
        out = torch.zeros(ctx.shape, dtype=magnitude.dtype, device=magnitude.device)
        for (stencil, scale, kappa), value in zip(ctx.terms, values):
            coef = value * inv
            coef.mul_(kappa * scale)
            for window, sign in stencil:
                out[window].add_(coef, alpha=sign)
        return out, None, None


def _data_term_2d(
    estimate: torch.Tensor, blurry: torch.Tensor, op: PSFConvolution, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """``mean(w * (blurry - corr(estimate, psf))^2)``, inputs of shape ``(1, 1, H, W)`` (``w`` = 1 by default)."""
    # PSFConvolution.adjoint is the "same" zero-boundary correlation, i.e. what nn.Conv2d computes.
    squared = torch.square(blurry - op.adjoint(estimate))
    return torch.mean(squared if weights is None else weights * squared)


def _circular_otf(psf: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """rfftn of ``psf`` zero-padded to ``shape`` with its index ``K // 2`` moved to the origin.

    For a PSF of the image's shape this is sdeconv's ``otf_3d`` of its zero-padded PSF: padding by
    ``p`` and rolling by ``-(S + 2p) // 2`` moves PSF index ``j`` to ``j - S // 2``.
    """
    if any(k > s for k, s in zip(psf.shape, shape)):
        raise InputError(f"the PSF {tuple(psf.shape)} is larger than the padded image {shape}")
    pad: list[int] = []
    for k, s in zip(reversed(psf.shape), reversed(shape)):
        pad += [0, s - k]
    kernel = torch.roll(F.pad(psf, pad), [-(k // 2) for k in psf.shape], tuple(range(psf.ndim)))
    return torch.fft.rfftn(kernel)


class _CircularDataTerm(torch.autograd.Function):
    """``mean((y - h * u)^2)`` by circular FFT convolution, with sdeconv's 3D backward pass.

    sdeconv's ``DataTermDeconv3D.backward`` returns ``H^T (H u - y) / N`` (its adjoint OTF is
    exactly the conjugate OTF), not the ``2 / N`` of the true gradient; this keeps that factor.
    """

    @staticmethod
    def forward(ctx, estimate, blurry, blurry_spectrum, otf):  # type: ignore[override]
        spectrum = torch.fft.rfftn(estimate).mul_(otf)
        ctx.save_for_backward(spectrum, blurry_spectrum, otf)
        ctx.shape = tuple(estimate.shape)
        return torch.mean(torch.square(blurry - torch.fft.irfftn(spectrum, s=ctx.shape)))

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        spectrum, blurry_spectrum, otf = ctx.saved_tensors
        residual = (spectrum - blurry_spectrum).mul_(otf.conj())
        n = float(np.prod(ctx.shape))
        return torch.fft.irfftn(residual, s=ctx.shape).mul_(grad / n), None, None, None


class _WeightedCircularDataTerm(torch.autograd.Function):
    """``mean(w * (y - h * u)^2)`` with the same factor convention as :class:`_CircularDataTerm`:
    the backward pass returns ``H^T (w (H u - y)) / N``."""

    @staticmethod
    def forward(ctx, estimate, blurry, weights, otf):  # type: ignore[override]
        shape = tuple(estimate.shape)
        residual = torch.fft.irfftn(torch.fft.rfftn(estimate).mul_(otf), s=shape).sub_(blurry)
        weighted = residual * weights
        ctx.save_for_backward(weighted, otf)
        ctx.shape = shape
        return torch.mean(weighted * residual)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        weighted, otf = ctx.saved_tensors
        n = float(np.prod(ctx.shape))
        back = torch.fft.irfftn(torch.fft.rfftn(weighted).mul_(otf.conj()), s=ctx.shape)
        return back.mul_(grad / n), None, None, None


# -- checks -------------------------------------------------------------------------------------------


def _check_unit(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return value


def _as_image(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    data = image.detach().cpu() if isinstance(image, torch.Tensor) else torch.from_numpy(np.asarray(image))
    if data.ndim not in (2, 3):
        raise InputError(f"Spitfire needs a 2D or 3D image, got shape {tuple(data.shape)}")
    if data.is_complex() or data.dtype == torch.bool:
        raise InputError(f"the image must be real numbers, got dtype {data.dtype}")
    data = data.to(torch.float32)
    if not bool(torch.isfinite(data).all()):
        raise InputError("the image contains NaN or infinite values")
    return data


def _as_psf(psf: np.ndarray | torch.Tensor, ndim: int) -> torch.Tensor:
    kernel = psf.detach().cpu() if isinstance(psf, torch.Tensor) else torch.from_numpy(np.asarray(psf))
    if kernel.ndim != ndim:
        raise InputError(f"the PSF must be {ndim}D like the image, got shape {tuple(kernel.shape)}")
    kernel = kernel.to(torch.float32)
    total = float(kernel.sum())
    if not bool(torch.isfinite(kernel).all()) or not np.isfinite(total) or total <= 0:
        raise InputError("the PSF must be finite with a positive sum")
    if ndim == 2 and any(k % 2 == 0 for k in kernel.shape):
        # sdeconv's Conv2d uses padding (k - 1) / 2, whose output only has the input's size for odd k.
        raise InputError(f"a 2D PSF must have odd sizes (its centre pixel is the origin), got {tuple(kernel.shape)}")
    return kernel / torch.sum(kernel)


# -- the algorithm ------------------------------------------------------------------------------------


@overload
def spitfire(
    image: np.ndarray | torch.Tensor,
    psf: np.ndarray | torch.Tensor,
    *,
    reg: float = ...,
    weight: float = ...,
    delta: float = ...,
    pad: int = ...,
    gradient_step: float = ...,
    precision: float = ...,
    max_iterations: int = ...,
    device: str | torch.device = ...,
    weights: np.ndarray | None = ...,
    value_range: tuple[float, float] | None = ...,
    adam_eps: float = ...,
    return_info: Literal[False] = ...,
) -> np.ndarray: ...


@overload
def spitfire(
    image: np.ndarray | torch.Tensor,
    psf: np.ndarray | torch.Tensor,
    *,
    reg: float = ...,
    weight: float = ...,
    delta: float = ...,
    pad: int = ...,
    gradient_step: float = ...,
    precision: float = ...,
    max_iterations: int = ...,
    device: str | torch.device = ...,
    weights: np.ndarray | None = ...,
    value_range: tuple[float, float] | None = ...,
    adam_eps: float = ...,
    return_info: Literal[True],
) -> SpitfireResult: ...


def spitfire(
    image: np.ndarray | torch.Tensor,
    psf: np.ndarray | torch.Tensor,
    *,
    reg: float = 0.995,
    weight: float = 0.6,
    delta: float = 1.0,
    pad: int = SPITFIRE_PAD,
    gradient_step: float = 0.01,
    precision: float = 1e-7,
    max_iterations: int = 2500,
    device: str | torch.device = "cpu",
    weights: np.ndarray | None = None,
    value_range: tuple[float, float] | None = None,
    adam_eps: float = SPITFIRE_ADAM_EPS,
    return_info: bool = False,
) -> np.ndarray | SpitfireResult:
    """Spitfire deconvolution, the same computation as ``sdeconv.deconv.spitfire`` (1.0.4).

    Parameters
    ----------
    image : array or tensor
        2D ``(Y, X)`` or 3D ``(Z, Y, X)`` image, any real dtype and range (it is normalized to
        about [0, 1] and mapped back). Computed in float32.
    psf : array or tensor
        The PSF, same dimensionality as the image, any positive scale (it is divided by its sum).
        In 2D its sizes must be odd; in 3D it may be as large as the padded image (see the module
        notes for how this relates to sdeconv, which needs a PSF of the image's shape).
    reg : float
        Weight of the data term in [0, 1]; ``1 - reg`` weighs the regularizer. 1 is plain
        least-squares deconvolution.
    weight : float
        In [0, 1]: the Hessian's share of the regularizer, ``1 - weight`` the intensity's (sparsity).
    delta : float
        3D only: the ratio of the z step to the lateral pixel size, scaling the z differences.
    pad : int
        Reflection padding on every side of every axis, cropped off at the end; it must be smaller
        than every image size.
    gradient_step : float
        Adam's initial learning rate (halved every 100 iterations).
    precision : float
        Stop once the loss moved less than this 6 times in a row.
    max_iterations : int
        Iteration cap (sdeconv's fixed ``max_iter_`` is 2500).
    device : str or torch.device
        Where to compute.
    weights : np.ndarray, optional
        Per-pixel weights of the data term, the image's shape, in [0, 1] (padded by reflection like
        the image): 0 makes a pixel missing data, which the estimate must predict without seeing
        (hold-out validation, :mod:`siamdecon.holdout`). Not part of sdeconv.
    value_range : (float, float), optional
        Normalize by this ``(min, max)`` instead of the image's own. The balance of the data term
        and the regularizer, and Adam's step, depend on the normalization, so a crop normalized by
        its whole image's range solves the crop's part of the whole image's problem, where its own
        range would set another ``reg`` in effect (:mod:`siamdecon.holdout`). Not part of sdeconv.
    adam_eps : float
        Adam's epsilon (sdeconv keeps PyTorch's 1e-8). The objective is a mean over the padded
        voxels, so its gradient per voxel shrinks as ``1 / N`` and the epsilon damps the steps of
        a large image more than a small one's: in the same iterations, Spitfire moves a
        64x256x256 volume less far from its start (the blurred image) than a crop of it. A crop
        run with ``adam_eps`` times ``N_whole / N_crop`` (padded voxel counts) takes the whole
        image's steps: this is how :mod:`siamdecon.holdout` checks Spitfire on a crop as it
        would run on the whole image.
    return_info : bool
        Return a :class:`SpitfireResult` (image, iteration count, last loss, stop reason) instead of
        the image alone.

    Returns
    -------
    np.ndarray or SpitfireResult
        The deconvolved float32 image, the input's shape.

    Raises
    ------
    InputError
        (a ``ValueError``) for an image that is not 2D/3D, not finite, or whose range is not above
        sdeconv's 1e-5 offset (a constant image, say); a PSF of another dimensionality, with even
        2D sizes, or without a positive sum.
    ValueError
        For parameters out of range.
    """
    data = _as_image(image)
    ndim = data.ndim
    kernel = _as_psf(psf, ndim)
    reg = _check_unit("reg", reg)
    weight = _check_unit("weight", weight)
    delta = float(delta)
    if not np.isfinite(delta) or delta <= 0:
        raise ValueError(f"delta must be positive, got {delta!r}")
    if isinstance(pad, bool) or not isinstance(pad, (int, np.integer)) or pad < 0:
        raise ValueError(f"pad must be a non-negative integer, got {pad!r}")
    pad = int(pad)
    if pad >= min(data.shape):
        raise InputError(f"pad={pad} must be smaller than every image size {tuple(data.shape)} (reflection padding)")
    if not (np.isfinite(adam_eps) and adam_eps > 0):
        raise ValueError(f"adam_eps must be positive, got {adam_eps!r}")
    if value_range is not None and not (np.all(np.isfinite(value_range)) and value_range[1] > value_range[0]):
        raise ValueError(f"value_range must be a finite (min, max) with max > min, got {value_range!r}")
    if not gradient_step > 0:
        raise ValueError(f"gradient_step must be positive, got {gradient_step!r}")
    if not precision >= 0:
        raise ValueError(f"precision must be non-negative, got {precision!r}")
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, (int, np.integer)) or max_iterations < 1:
        raise ValueError(f"max_iterations must be a positive integer, got {max_iterations!r}")

    device = torch.device(device)
    data = data.to(device)
    kernel = kernel.to(device)

    # sdeconv's normalization: the 1e-5 is absolute, so the range must exceed it.
    if value_range is None:
        mini = torch.min(data) + 1e-5
        maxi = torch.max(data)
    else:
        mini = torch.tensor(float(value_range[0]) + 1e-5, device=device)
        maxi = torch.tensor(float(value_range[1]), device=device)
    scale = maxi - mini
    if not float(scale) > 0:
        raise InputError(
            f"the image range ({float(torch.max(data) - torch.min(data)):.3g}) must exceed 1e-5: Spitfire normalizes"
            " by (max - min - 1e-5), so a constant or nearly constant image cannot be deconvolved"
        )
    normalized = (data - mini) / scale

    blurry = normalized[None, None]
    if pad > 0:
        blurry = F.pad(blurry, [pad] * (2 * ndim), mode="reflect")
    padded_shape = tuple(blurry.shape[2:])
    w = None
    if weights is not None:
        w = torch.as_tensor(np.asarray(weights, dtype=np.float32), device=device)
        if tuple(w.shape) != tuple(data.shape):
            raise InputError(f"weights shape {tuple(w.shape)} differs from the image shape {tuple(data.shape)}")
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
            raise InputError("weights must be finite and non-negative")
        w = w[None, None]
        if pad > 0:
            # The padding repeats pixels by reflection: a held-out pixel stays held out in its copies.
            w = F.pad(w, [pad] * (2 * ndim), mode="reflect")

    if ndim == 2:
        op = PSFConvolution(kernel.cpu()).to(device)

        def data_term(u: torch.Tensor) -> torch.Tensor:
            return _data_term_2d(u, blurry, op, w)
    elif w is None:
        otf = _circular_otf(kernel, padded_shape)
        blurry_3d = blurry[0, 0]
        blurry_spectrum = torch.fft.rfftn(blurry_3d)

        def data_term(u: torch.Tensor) -> torch.Tensor:
            return _CircularDataTerm.apply(u[0, 0], blurry_3d, blurry_spectrum, otf)
    else:
        otf = _circular_otf(kernel, padded_shape)
        blurry_3d, w_3d = blurry[0, 0], w[0, 0]

        def data_term(u: torch.Tensor) -> torch.Tensor:
            return _WeightedCircularDataTerm.apply(u[0, 0], blurry_3d, w_3d, otf)

    def objective(u: torch.Tensor) -> torch.Tensor:
        # A term with weight 0 adds exactly 0.0 to the loss and its gradient: skipping it is exact.
        if reg == 1.0:
            return reg * data_term(u)
        if reg == 0.0:
            return (1 - reg) * _SparseHessian.apply(u, weight, delta)
        return reg * data_term(u) + (1 - reg) * _SparseHessian.apply(u, weight, delta)

    estimate = blurry.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([estimate], lr=gradient_step, eps=float(adam_eps))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=_LR_STEP, gamma=_LR_GAMMA)
    # Compared as float32 tensors, as sdeconv compares its loss tensors.
    previous = torch.tensor(_FIRST_PREVIOUS_LOSS, dtype=torch.float32, device=device)
    flat = 0
    iterations = 0
    stop_reason: StopReason = "max_iterations"
    loss_value = previous
    for _ in range(max_iterations):
        iterations += 1
        optimizer.zero_grad()
        loss = objective(estimate)
        loss_value = loss.detach()
        if ndim == 3 and bool(loss_value > previous):
            stop_reason = "loss_increased"
            break
        if bool(torch.abs(loss_value - previous) < precision):
            flat += 1
        else:
            previous = loss_value
            flat = 0
        if flat > _FLAT_COUNT:
            stop_reason = "converged"
            break
        loss.backward()
        optimizer.step()
        scheduler.step()

    with torch.no_grad():
        out = scale * estimate[0, 0] + mini
        if pad > 0:
            out = out[tuple(slice(pad, -pad) for _ in range(ndim))]
        result = out.cpu().numpy().astype(np.float32, copy=False)
    if return_info:
        return SpitfireResult(result, iterations, float(loss_value), stop_reason)
    return result


# -- the sdeconv reference ----------------------------------------------------------------------------


def embed_psf(psf: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-embed ``psf`` in an array of ``shape``, its index ``K // 2`` at ``S // 2`` on each axis.

    sdeconv's 3D Spitfire needs a PSF of the image's shape; this builds one from a smaller PSF
    such that sdeconv computes what :func:`spitfire` computes with the small PSF.
    """
    psf = np.asarray(psf)
    if psf.ndim != len(shape) or any(k > s for k, s in zip(psf.shape, shape)):
        raise ValueError(f"cannot embed a PSF of shape {psf.shape} in {tuple(shape)}")
    out = np.zeros(shape, dtype=psf.dtype)
    out[tuple(slice(s // 2 - k // 2, s // 2 - k // 2 + k) for k, s in zip(psf.shape, shape))] = psf
    return out


def _is_sdeconv_module(name: str) -> bool:
    return name == "sdeconv" or name.startswith("sdeconv.")


def _restore_sdeconv_modules(before: dict[str, types.ModuleType], attributes: dict[str, set[str]]) -> None:
    for name in [name for name in sys.modules if _is_sdeconv_module(name) and name not in before]:
        del sys.modules[name]
    sys.modules.update(before)
    # Importing a submodule also sets it as an attribute of its (already imported) parent.
    for name, module in before.items():
        for attr in set(vars(module)) - attributes[name]:
            if isinstance(getattr(module, attr), types.ModuleType):
                delattr(module, attr)


@lru_cache(maxsize=1)
def load_sdeconv_spitfire() -> tuple[type | None, str]:
    """The reference implementation, sdeconv's ``Spitfire`` class, or None and the reason.

    ``sdeconv.deconv/__init__.py`` imports sdeconv's neural-network deconvolution modules, which
    import torchvision; where torchvision is missing or broken (as next to a CPU-only torch build)
    ``import sdeconv.deconv.spitfire`` fails although Spitfire needs only torch. Then this loads
    ``sdeconv/deconv/spitfire.py`` (and its relative imports ``interface`` and ``_utils``) under a
    temporary stand-in for the ``sdeconv.deconv`` package that does not run its ``__init__.py``,
    and afterwards removes from ``sys.modules`` every sdeconv module it added, so the process is
    left as it was; the returned class keeps working through its own module's globals.

    Returns
    -------
    (type or None, str)
        The class (call it as ``Spitfire(psf, weight, delta, reg, gradient_step, precision,
        pad)(image)`` with float32 tensors) and how it was loaded, or None and why not.
    """
    if importlib.util.find_spec("sdeconv") is None:
        return None, "sdeconv is not installed"
    before = {name: module for name, module in sys.modules.items() if _is_sdeconv_module(name)}
    attributes = {name: set(vars(module)) for name, module in before.items()}
    try:
        from sdeconv.deconv.spitfire import Spitfire  # type: ignore[import-not-found]

        return Spitfire, "imported sdeconv.deconv.spitfire"
    except Exception as exc:  # noqa: BLE001 - a broken torchvision raises more than ImportError
        first_error = f"{type(exc).__name__}: {exc}"
    _restore_sdeconv_modules(before, attributes)
    try:
        import sdeconv  # type: ignore[import-not-found]

        package_dir = Path(sdeconv.__file__).parent / "deconv"
        if not (package_dir / "spitfire.py").is_file():
            return None, f"sdeconv has no deconv/spitfire.py ({first_error})"
        stand_in = types.ModuleType("sdeconv.deconv", "stand-in that skips sdeconv/deconv/__init__.py")
        stand_in.__path__ = [str(package_dir)]
        stand_in.__package__ = "sdeconv.deconv"
        sys.modules["sdeconv.deconv"] = stand_in
        module = importlib.import_module("sdeconv.deconv.spitfire")
        return module.Spitfire, f"loaded sdeconv/deconv/spitfire.py alone (import sdeconv.deconv failed: {first_error})"
    except Exception as exc:  # noqa: BLE001
        return None, f"cannot load sdeconv's Spitfire: {type(exc).__name__}: {exc} (first: {first_error})"
    finally:
        _restore_sdeconv_modules(before, attributes)


def run_sdeconv_spitfire(
    image: np.ndarray,
    psf: np.ndarray,
    *,
    reg: float = 0.995,
    weight: float = 0.6,
    delta: float = 1.0,
    pad: int = 13,
    gradient_step: float = 0.01,
    precision: float = 1e-7,
    max_iterations: int = 2500,
) -> SpitfireResult:
    """Run sdeconv's Spitfire (the reference) on float32 copies of ``image`` and ``psf``.

    The same arguments as :func:`spitfire`. A 3D PSF smaller than the image is embedded with
    :func:`embed_psf` first (sdeconv needs the image's shape); sdeconv's per-iteration printing in
    3D is discarded. ``stop_reason`` is None: sdeconv does not record it.

    Raises
    ------
    RuntimeError
        When sdeconv cannot be loaded (see :func:`load_sdeconv_spitfire`).
    """
    cls, reason = load_sdeconv_spitfire()
    if cls is None:
        raise RuntimeError(reason)
    image = np.asarray(image, dtype=np.float32)
    psf = np.asarray(psf, dtype=np.float32)
    if image.ndim == 3 and psf.shape != image.shape:
        psf = embed_psf(psf, image.shape)
    solver = cls(torch.from_numpy(psf), weight, delta, reg, gradient_step, precision, pad)
    solver.max_iter_ = max_iterations
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        out = solver(torch.from_numpy(image).to(solver.psf.device))
    loss = float(torch.as_tensor(solver.loss_).detach())
    return SpitfireResult(out.detach().cpu().numpy().astype(np.float32), int(solver.niter_), loss, None)
