from __future__ import annotations

import numpy as np
import pytest
import torch

from siamdecon.inference import predict_tiled, pyramid_weights, tile_layout


@pytest.mark.parametrize("n", [10, 64, 100, 257, 1024, 2048, 4099])
@pytest.mark.parametrize("tile,overlap", [(32, 8), (512, 32), (96, 16), (16, 0)])
def test_tile_layout_covers_evenly_with_the_overlap(n, tile, overlap):
    length, starts = tile_layout(n, tile, overlap)
    assert length <= tile and starts[0] == 0 and starts[-1] + length == n
    gaps = np.diff(starts)
    assert (length - gaps >= overlap).all()  # neighbours overlap by at least `overlap`
    assert len(starts) == 1 or gaps.max() - gaps.min() <= 1  # spread evenly
    # No more tiles than fixed-size tiles of `tile` would need.
    assert len(starts) == 1 if tile >= n else len(starts) == -(-(n - overlap) // (tile - overlap))


def test_tile_layout_refuses_an_overlap_as_large_as_the_tile():
    with pytest.raises(ValueError, match="overlap"):
        tile_layout(100, 16, 16)


def test_tile_layout_keeps_the_work_per_pixel_nearly_constant():
    # Pixels processed (tiles plus a 32-pixel context on each side) per image pixel, 2D.
    def work(n: int) -> float:
        length, starts = tile_layout(n, 512, 32)
        return (len(starts) * min(length + 64, n)) ** 2 / n**2

    assert work(1024) < 1.8 and work(2048) < 1.8 and work(4096) < 1.8


def test_pyramid_weights_peak_in_the_centre():
    w = pyramid_weights((7, 9))
    assert w.shape == (7, 9)
    assert w[3, 4] == w.max()
    assert w[0, 0] == w.min() > 0


@pytest.mark.parametrize("shape", [(100, 77), (30, 50, 41)])
def test_tiled_identity_reproduces_the_input_exactly(shape, rng):
    img = rng.random((1, *shape)).astype(np.float32)
    out = predict_tiled(lambda t: t, img, tile_size=24, overlap=8)
    assert out.shape == img.shape
    assert np.allclose(out, img, atol=1e-6)


def test_tiled_with_context_margin_equals_untiled_no_seams(rng):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 1, 5, padding=2)
    img = rng.random((1, 150, 130)).astype(np.float32)
    whole = predict_tiled(conv, img, tile_size=256, overlap=0)
    with torch.no_grad():
        tiled = predict_tiled(conv, img, tile_size=48, overlap=16)
        with_context = predict_tiled(conv, img, tile_size=48, overlap=16, margin=2)
    # With a context margin as large as the receptive field, tiling is exact.
    assert np.allclose(with_context, whole, atol=1e-5)
    # Without it, the pyramid weights keep the zero-padded tile borders nearly irrelevant.
    diff = np.abs(whole - tiled)
    assert diff.mean() < 0.03 * np.abs(whole).mean()


def test_overlap_must_be_smaller_than_tile():
    with pytest.raises(ValueError, match="overlap"):
        predict_tiled(lambda t: t, np.zeros((1, 10, 10), np.float32), 8, 8)
