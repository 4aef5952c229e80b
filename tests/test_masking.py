from __future__ import annotations

import pytest
import torch

from siamdecon.masking import apply_mask, box_size, stratified_mask


def test_box_sizes_match_the_paper():
    assert box_size(0.005, 2) == 14
    assert box_size(0.005, 3) == 6


def test_one_masked_pixel_per_box_2d():
    g = torch.Generator().manual_seed(0)
    m = stratified_mask((3, 1, 56, 70), 0.005, g)
    assert m.shape == (3, 1, 56, 70)
    boxes = m.reshape(3, 1, 4, 14, 5, 14).sum(dim=(3, 5))
    assert torch.all(boxes == 1)
    assert abs(m.mean().item() - 1 / 196) < 1e-9


def test_partial_boxes_at_the_edge_never_overflow():
    m = stratified_mask((50, 1, 15, 20), 0.005, torch.Generator().manual_seed(1))
    assert m.shape == (50, 1, 15, 20)
    # Full boxes have exactly one pixel; partial ones at most one.
    assert torch.all(m[:, :, :14, :14].sum(dim=(2, 3)) == 1)
    assert m.sum(dim=(2, 3)).max() <= 4


def test_3d_mask_fraction():
    m = stratified_mask((2, 1, 12, 18, 24), 0.005, torch.Generator().manual_seed(0))
    assert m.sum().item() == 2 * 2 * 3 * 4


def test_masks_are_reproducible_and_differ_between_items():
    a = stratified_mask((4, 1, 28, 28), generator=torch.Generator().manual_seed(7))
    b = stratified_mask((4, 1, 28, 28), generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert not torch.equal(a[0], a[1])


def test_apply_mask_replaces_only_masked_pixels_with_scaled_noise():
    x = torch.full((8, 1, 140, 140), 5.0)
    m = stratified_mask(tuple(x.shape), generator=torch.Generator().manual_seed(0))
    xm = apply_mask(x, m, noise_std=0.2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(xm[m == 0], x[m == 0])
    vals = xm[m == 1]
    assert abs(vals.mean().item()) < 0.03
    assert abs(vals.std().item() - 0.2) < 0.02


def test_invalid_fraction():
    with pytest.raises(ValueError, match="fraction"):
        box_size(0.0, 2)
