from __future__ import annotations

import math

import pytest
import torch

from siamdecon.losses import LossInputs, LossWeights, compute_losses, loss_preset, masked_mse


def _t(values):
    return torch.tensor(values, dtype=torch.float64).reshape(1, 1, 2, 2)


@pytest.fixture
def case():
    # x, d, d_J, y, y_J and mask on a 2x2 image, values chosen by hand.
    return LossInputs(
        x=_t([1.0, 2.0, 3.0, 4.0]),
        d=_t([0.0, 1.0, 2.0, 3.0]),
        d_masked=_t([0.0, 3.0, 2.0, 0.0]),
        y=_t([1.0, 1.0, 1.0, 1.0]),
        y_masked=_t([2.0, 2.0, 0.0, 4.0]),
        mask=_t([0.0, 1.0, 0.0, 1.0]),
    )


def test_masked_mse_by_hand():
    a, b, m = _t([1, 2, 3, 4]), _t([0, 0, 0, 0]), _t([1, 0, 0, 1])
    assert masked_mse(a, b, m).item() == pytest.approx((1 + 16) / 2)


def test_each_term_on_a_hand_computed_case(case):
    terms = compute_losses(case, LossWeights(bsp=1, rec=1, inv=1, inv_d=1))
    # bsp: masked pixels 1 and 3: (2-2)^2 and (4-4)^2 -> 0
    assert terms["bsp"].item() == pytest.approx(0.0)
    # rec: mean((1-1)^2, (1-2)^2, (1-3)^2, (1-4)^2) = (0+1+4+9)/4
    assert terms["rec"].item() == pytest.approx(14 / 4)
    # inv: masked pixels: (1-2)^2, (1-4)^2 -> sqrt((1+9)/2)
    assert terms["inv"].item() == pytest.approx(math.sqrt(5.0), abs=1e-9)
    # inv_d: (1-3)^2, (3-0)^2 -> sqrt((4+9)/2)
    assert terms["inv_d"].item() == pytest.approx(math.sqrt(6.5), abs=1e-9)
    total = 0 + 14 / 4 + math.sqrt(5) + math.sqrt(6.5)
    assert terms["total"].item() == pytest.approx(total, abs=1e-9)


def test_weights_multiply_terms(case):
    terms = compute_losses(case, LossWeights(rec=1, inv_d=2))
    assert set(terms) == {"rec", "inv_d", "total"}
    assert terms["total"].item() == pytest.approx(14 / 4 + 2 * math.sqrt(6.5), abs=1e-9)


def test_boundary_penalizes_both_sides():
    base = dict(x=_t([0, 0, 0, 0]), y=_t([0, 0, 0, 0]), y_masked=_t([0, 0, 0, 0]), mask=_t([1, 0, 0, 0]))
    inside = LossInputs(d=_t([0.0, 0.5, 1.0, 0.2]), d_masked=_t([0, 0, 0, 0]), **base)
    assert compute_losses(inside, LossWeights(bound_d=1))["bound_d"].item() == 0.0
    # -0.5 below and 1.5 above (0.5 over): mean(relu(-z) + relu(z-1)) = (0.5 + 0.5) / 4, squared.
    outside = LossInputs(d=_t([-0.5, 1.5, 0.5, 0.5]), d_masked=_t([0, 0, 0, 0]), **base)
    assert compute_losses(outside, LossWeights(bound_d=1))["bound_d"].item() == pytest.approx(0.25**2)
    # Only the upper side violated: the reference code's divide-by-max would hide this.
    above = LossInputs(d=_t([2.0, 2.0, 2.0, 2.0]), d_masked=_t([0, 0, 0, 0]), **base)
    assert compute_losses(above, LossWeights(bound_d=1))["bound_d"].item() == pytest.approx(1.0)


def test_boundary_works_in_raw_units_after_destandardizing():
    # Standardized 0 with mean 10, std 5 -> raw 10; range [0, 20] -> z = 0.5, inside.
    z = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    inp = LossInputs(z, z, z, z + 3.0, z, z, mean=10.0, std=5.0, low=0.0, high=20.0)
    terms = compute_losses(inp, LossWeights(bound=1, bound_d=1))
    assert terms["bound_d"].item() == 0.0
    # y = 3 standardized -> raw 25 -> z = 1.25 -> 0.25 over, squared
    assert terms["bound"].item() == pytest.approx(0.0625)


def test_border_crops_every_tensor():
    x = torch.zeros(1, 1, 6, 6)
    y = torch.zeros(1, 1, 6, 6)
    y[..., 0, :] = 10.0  # only in the border
    inp = LossInputs(x, x, x, y, y, torch.ones_like(x))
    assert compute_losses(inp, LossWeights(rec=1))["rec"].item() > 0
    assert compute_losses(inp, LossWeights(rec=1), border=1)["rec"].item() == 0.0


def test_presets_match_the_paper():
    assert loss_preset("blind-spot").active() == {"bsp": 1.0}
    assert loss_preset("siamese-reconvolved").active() == {"rec": 1.0, "inv": 2.0}
    assert loss_preset("siamese-deconvolved", 0.1).active() == {"rec": 1.0, "inv_d": 2.0, "bound": 0.1, "bound_d": 0.1}
    with pytest.raises(ValueError, match="unknown loss preset"):
        loss_preset("nope")


def test_invariance_gradient_is_finite_when_branches_agree():
    d = torch.zeros(1, 1, 4, 4, requires_grad=True)
    inp = LossInputs(d.detach(), d, d * 1.0, d, d * 1.0, torch.ones(1, 1, 4, 4))
    compute_losses(inp, LossWeights(inv=1, inv_d=1))["total"].backward()
    assert torch.isfinite(d.grad).all()


def test_hessian_term_on_quadratics_by_hand():
    from siamdecon.losses import hessian_l1

    # t = 1.5 x^2 - 0.5 y^2 + 0.25 xy: |Hxx| + |Hyy| + 2 |Hxy| = 3 + 1 + 0.5 at every voxel.
    y, x = torch.meshgrid(torch.arange(7.0), torch.arange(9.0), indexing="ij")
    assert hessian_l1((1.5 * x**2 - 0.5 * y**2 + 0.25 * x * y)[None, None]).item() == pytest.approx(4.5)
    z, y, x = torch.meshgrid(torch.arange(5.0), torch.arange(6.0), torch.arange(7.0), indexing="ij")
    # 3D: Hxz = 1 (twice), Hyy = 4, Hzz = -2.
    assert hessian_l1((x * z + 2 * y**2 - z**2)[None, None]).item() == pytest.approx(8.0)
    # Planes cost nothing: the term penalizes curvature, not slopes or offsets.
    assert hessian_l1((3 * x - 2 * y + z + 5)[None, None]).item() == pytest.approx(0.0, abs=1e-9)
    # One bright voxel: |-2| on each of the 3 axes at the voxel, |1| twice per axis beside it,
    # no mixed terms at the voxel's own position (averaged over the 3x4x5 interior voxels).
    spike = torch.zeros(1, 1, 5, 6, 7, dtype=torch.float64)
    spike[0, 0, 2, 3, 3] = 1.0
    diag = (3 * 2 + 3 * 2 * 1) / 60
    mixed = 2 * 3 * 4 * 0.25 / 60  # each of the 3 pairs: 4 corners at 1/4, counted twice
    assert hessian_l1(spike).item() == pytest.approx(diag + mixed)
    # A thin stack (2 planes): the in-plane Hessian of each plane, averaged over both.
    thin = torch.stack([1.5 * x[0] ** 2, -(x[0] ** 2)])[None, None]  # (1, 1, 2, 6, 7), planes y x
    plane = [hessian_l1(thin[:, :, k]).item() for k in range(2)]
    assert plane == pytest.approx([3.0, 2.0])
    assert hessian_l1(thin).item() == pytest.approx(2.5)
    assert hessian_l1(torch.ones(1, 1, 2, 2)).item() == 0.0


def test_hessian_weight_needs_a_data_term_and_is_computed_on_d():
    with pytest.raises(ValueError, match="regularizer"):
        LossWeights(hess=1.0)
    w = LossWeights(bsp=1.0, hess=0.5)
    assert not w.needs_unmasked_branch  # computed on the masked branch's output, as bound_d is
    y, x = torch.meshgrid(torch.arange(6.0), torch.arange(6.0), indexing="ij")
    d = (x**2)[None, None]
    inp = LossInputs(x=d, d=d, d_masked=d, y=d, y_masked=d, mask=torch.ones_like(d))
    terms = compute_losses(inp, w)
    assert terms["hess"].item() == pytest.approx(2.0)
    assert terms["total"].item() == pytest.approx(0.5 * 2.0)


def test_hessian_gradient_pushes_towards_a_flatter_estimate():
    from siamdecon.losses import hessian_l1

    d = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    d[0, 0, 4, 4] = 1.0
    d.requires_grad_(True)
    hessian_l1(d).backward()
    # Lowering the spike and raising its neighbours both reduce its curvature.
    assert d.grad[0, 0, 4, 4] > 0 and d.grad[0, 0, 4, 5] < 0 and d.grad[0, 0, 3, 4] < 0
