"""The loss terms of the Siamese deconvolution framework, their weights and presets.

Every term sees the same :class:`LossInputs`: the standardized input ``x``, the network outputs
``d = f(x)`` and ``d_J = f(x_J)`` (before the PSF), their reconvolutions ``y = P(d)`` and
``y_J = P(d_J)``, the mask ``J`` and the intensity scale needed to de-standardize. A new term is
one small function added to :data:`TERMS`.

With ``MSE_J(a, b) = sum(J (a - b)^2) / sum(J)``:

==================  ==================================================================
``bsp``             ``MSE_J(x, y_J)`` (blind-spot, Noise2Self / SSI)
``rec``             ``mean((y - x)^2)`` (reconstruction, Noise2Same)
``inv``             ``sqrt(MSE_J(y, y_J))`` (Siamese invariance after the PSF)
``inv_d``           ``sqrt(MSE_J(d, d_J))`` (Siamese invariance before the PSF)
``bound``           ``mean(relu(-z) + relu(z - 1))^2``, ``z`` = de-standardized ``y`` in [0, 1] units
``bound_d``         the same on ``d``
``hess``            ``mean(sum_ij |D_i D_j d|)``: second differences of ``d`` (a sparse-Hessian
                    prior as in Spitfire; not one of the paper's terms)
==================  ==================================================================

The six terms of the paper see only the data; ``hess`` is a regularizer on the estimate itself.
Fluorescence objects are piecewise smooth, and the frequencies the PSF removes are left to the
network's inductive bias by the data terms; the Hessian's L1 norm prefers, among estimates that
explain the data equally, the one with sparse curvature (lines and sheets stay sharp, noise
amplified beyond the PSF's band is penalized). Its weight is in standardized units of ``d``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "LossInputs",
    "LossWeights",
    "LossPreset",
    "LOSS_PRESETS",
    "loss_preset",
    "masked_mse",
    "hessian_l1",
    "compute_losses",
    "TERMS",
]

LossPreset = Literal["blind-spot", "siamese-reconvolved", "siamese-deconvolved"]

# sqrt(0) has an infinite derivative; this keeps the invariance gradients finite when both
# branches agree exactly (for example at the very first step of a residual model).
_SQRT_EPS = 1e-12


@dataclass
class LossInputs:
    """Everything a loss term may look at (all tensors ``(B, C, *spatial)``).

    Attributes
    ----------
    x : torch.Tensor
        Standardized noisy input (the target).
    d, d_masked : torch.Tensor
        Network outputs for the unmasked and masked input (before the PSF).
    y, y_masked : torch.Tensor
        The same after convolution with the PSF.
    mask : torch.Tensor
        One at masked pixels.
    mean, std : float
        Standardization statistics: ``raw = standardized * std + mean``.
    low, high : float
        The intensity range the boundary terms keep the output in (raw units).
    """

    x: torch.Tensor
    d: torch.Tensor
    d_masked: torch.Tensor
    y: torch.Tensor
    y_masked: torch.Tensor
    mask: torch.Tensor
    mean: float = 0.0
    std: float = 1.0
    low: float = 0.0
    high: float = 1.0

    def cropped(self, border: int) -> LossInputs:
        """The same inputs without a margin of ``border`` pixels on every spatial side.

        Near a patch edge the reconvolution sees the zero padding instead of the true
        neighbourhood, so the terms are more honest on the interior.
        """
        if border <= 0:
            return self
        ndim = self.x.ndim - 2
        index = (slice(None), slice(None)) + (slice(border, -border),) * ndim

        def c(t: torch.Tensor) -> torch.Tensor:
            return t[index]

        return LossInputs(
            c(self.x),
            c(self.d),
            c(self.d_masked),
            c(self.y),
            c(self.y_masked),
            c(self.mask),
            self.mean,
            self.std,
            self.low,
            self.high,
        )


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``sum(mask * (a - b)^2) / sum(mask)`` (zero when the mask is empty)."""
    return torch.sum(mask * (a - b) ** 2) / torch.clamp(mask.sum(), min=1.0)


def _to_unit_range(t: torch.Tensor, inp: LossInputs) -> torch.Tensor:
    return (t * inp.std + inp.mean - inp.low) / (inp.high - inp.low)


def _boundary(t: torch.Tensor, inp: LossInputs) -> torch.Tensor:
    z = _to_unit_range(t, inp)
    # Both sides are penalized: below 0 and above 1 of the [low, high] range.
    return torch.mean(torch.relu(-z) + torch.relu(z - 1.0)) ** 2


def loss_bsp(inp: LossInputs) -> torch.Tensor:
    """Blind-spot term ``MSE_J(x, y_J)``."""
    return masked_mse(inp.x, inp.y_masked, inp.mask)


def loss_rec(inp: LossInputs) -> torch.Tensor:
    """Reconstruction term ``mean((y - x)^2)``."""
    return torch.mean((inp.y - inp.x) ** 2)


def loss_inv(inp: LossInputs) -> torch.Tensor:
    """Reconvolved invariance ``sqrt(MSE_J(y, y_J))``."""
    return torch.sqrt(masked_mse(inp.y, inp.y_masked, inp.mask) + _SQRT_EPS)


def loss_inv_d(inp: LossInputs) -> torch.Tensor:
    """Deconvolved invariance ``sqrt(MSE_J(d, d_J))``."""
    return torch.sqrt(masked_mse(inp.d, inp.d_masked, inp.mask) + _SQRT_EPS)


def loss_bound(inp: LossInputs) -> torch.Tensor:
    """Boundary term on the reconvolved output ``y``."""
    return _boundary(inp.y, inp)


def loss_bound_d(inp: LossInputs) -> torch.Tensor:
    """Boundary term on the deconvolved output ``d``."""
    return _boundary(inp.d, inp)


def hessian_l1(t: torch.Tensor) -> torch.Tensor:
    """Mean over voxels of ``sum_ij |D_i D_j t|`` over the spatial axes of ``t`` (``(B, C, *spatial)``).

    Second differences are central (``t[i+1] - 2 t[i] + t[i-1]`` on the diagonal, the four-point
    mixed difference off it), on the voxels where all of them are defined; each mixed term counts
    twice, as ``D_i D_j`` and ``D_j D_i`` in the symmetric Hessian. Unit spacing along every axis.
    An axis shorter than 3 voxels (a patch of a thin stack, cropped) has no second differences: its
    terms are left out, and the others are taken over all of it.
    """
    axes = [a for a in range(2, t.ndim) if t.shape[a] >= 3]

    def part(x: torch.Tensor, axis: int, lo: int, hi: int) -> torch.Tensor:
        index = [slice(None)] * x.ndim
        index[axis] = slice(lo, x.shape[axis] - hi)
        return x[tuple(index)]

    def interior(x: torch.Tensor, skip: tuple[int, ...]) -> torch.Tensor:
        # Crop one voxel on both sides of every other axis with second differences, so that all
        # terms cover the same voxels.
        for a in axes:
            if a not in skip:
                x = part(x, a, 1, 1)
        return x

    total = t.new_zeros(())
    for n, i in enumerate(axes):
        dii = part(t, i, 2, 0) - 2 * part(t, i, 1, 1) + part(t, i, 0, 2)
        total = total + interior(dii, (i,)).abs().mean()
        for j in axes[n + 1 :]:
            # (t[i+1, j+1] - t[i+1, j-1] - t[i-1, j+1] + t[i-1, j-1]) / 4
            di = part(t, i, 2, 0) - part(t, i, 0, 2)
            dij = (part(di, j, 2, 0) - part(di, j, 0, 2)) / 4
            total = total + 2 * interior(dij, (i, j)).abs().mean()
    return total


def loss_hess(inp: LossInputs) -> torch.Tensor:
    """Sparse-Hessian regularizer on the deconvolved output ``d`` (:func:`hessian_l1`)."""
    return hessian_l1(inp.d)


TERMS: dict[str, Callable[[LossInputs], torch.Tensor]] = {
    "bsp": loss_bsp,
    "rec": loss_rec,
    "inv": loss_inv,
    "inv_d": loss_inv_d,
    "bound": loss_bound,
    "bound_d": loss_bound_d,
    "hess": loss_hess,
}


class LossWeights(BaseModel):
    """Weights of the terms: ``L = sum(weight * term)``."""

    model_config = ConfigDict(extra="forbid")

    bsp: float = Field(0.0, ge=0, description="blind-spot MSE_J(x, y_J)")
    rec: float = Field(0.0, ge=0, description="reconstruction mean((y - x)^2)")
    inv: float = Field(0.0, ge=0, description="invariance after the PSF")
    inv_d: float = Field(0.0, ge=0, description="invariance before the PSF")
    bound: float = Field(0.0, ge=0, description="boundary on the reconvolved output")
    bound_d: float = Field(0.0, ge=0, description="boundary on the deconvolved output")
    hess: float = Field(0.0, ge=0, description="sparse Hessian (L1 of second differences) of the deconvolved output")

    @model_validator(mode="after")
    def _some_term(self) -> LossWeights:
        data = self.model_dump()
        if not any(v > 0 for v in data.values()):
            raise ValueError("at least one loss weight must be positive")
        if not any(v > 0 for k, v in data.items() if k != "hess"):
            raise ValueError(
                "the Hessian term is a regularizer: it needs at least one data term with a positive weight"
            )
        return self

    def active(self) -> dict[str, float]:
        """The terms with a non-zero weight."""
        return {k: v for k, v in self.model_dump().items() if v != 0.0}

    @property
    def needs_masked_branch(self) -> bool:
        """Whether any active term looks at the masked branch."""
        return any(self.active().get(k, 0.0) for k in ("bsp", "inv", "inv_d"))

    @property
    def needs_unmasked_branch(self) -> bool:
        """Whether any active term needs the unmasked branch.

        The boundary and Hessian terms alone do not: without the unmasked branch they are computed
        on the masked one, which saves half of the work of the blind-spot preset.
        """
        active = self.active()
        if not self.needs_masked_branch:
            return True
        return any(active.get(k, 0.0) for k in ("rec", "inv", "inv_d"))


LOSS_PRESETS: dict[str, dict[str, float]] = {
    # Eq. 2: the SSI-like blind-spot baseline.
    "blind-spot": {"bsp": 1.0},
    # Eq. 3: Siamese invariance after the PSF (the paper's choice for 3D).
    "siamese-reconvolved": {"rec": 1.0, "inv": 2.0},
    # Eq. 4: Siamese invariance before the PSF (the paper's choice for 2D).
    "siamese-deconvolved": {"rec": 1.0, "inv_d": 2.0},
}


def loss_preset(name: str, boundary_weight: float = 0.0) -> LossWeights:
    """The weights of a named preset, with ``boundary_weight`` on both boundary terms.

    Parameters
    ----------
    name : {"blind-spot", "siamese-reconvolved", "siamese-deconvolved"}
        Eq. 2, Eq. 3 or Eq. 4 of the paper.
    boundary_weight : float
        Weight of ``bound`` and ``bound_d`` (the paper uses 0 or 0.1).

    Examples
    --------
    >>> loss_preset("siamese-deconvolved", 0.1).active()
    {'rec': 1.0, 'inv_d': 2.0, 'bound': 0.1, 'bound_d': 0.1}
    """
    if name not in LOSS_PRESETS:
        raise ValueError(f"unknown loss preset {name!r}; choose one of {', '.join(LOSS_PRESETS)}")
    if boundary_weight < 0:
        raise ValueError(f"boundary weight must be >= 0, got {boundary_weight}")
    return LossWeights(**LOSS_PRESETS[name], bound=boundary_weight, bound_d=boundary_weight)


def compute_losses(inp: LossInputs, weights: LossWeights, border: int = 0) -> dict[str, torch.Tensor]:
    """Evaluate the weighted loss.

    Parameters
    ----------
    inp : LossInputs
        Outputs of both branches.
    weights : LossWeights
        Term weights; terms with weight 0 are not computed.
    border : int
        Margin (pixels) excluded on every side before computing the terms.

    Returns
    -------
    dict of str to torch.Tensor
        ``"total"`` and every active term (unweighted), for logging.
    """
    inp = inp.cropped(border)
    out: dict[str, torch.Tensor] = {}
    total = inp.x.new_zeros(())
    for name, w in weights.active().items():
        value = TERMS[name](inp)
        out[name] = value
        total = total + w * value
    out["total"] = total
    return out
