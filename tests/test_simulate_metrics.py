from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from siamdecon.metrics import evaluate, mutual_information, psnr, rmse, ssim
from siamdecon.simulate import degrade, filament_phantom, rescale01


def test_degrade_is_seeded_quantized_and_in_range(psf2d, rng):
    clean = rng.random((64, 64)).astype(np.float32)
    a = degrade(clean, psf2d, seed=3)
    assert np.array_equal(a, degrade(clean, psf2d, seed=3))
    assert not np.array_equal(a, degrade(clean, psf2d, seed=4))
    assert a.min() >= 0 and a.max() <= 1
    assert np.allclose(a * 1024, np.round(a * 1024))


def test_degrade_noise_level_matches_the_protocol(psf2d):
    clean = np.full((256, 256), 0.5, dtype=np.float32)
    noisy = degrade(clean, psf2d, salt_pepper=0.0, bits=None, seed=0)
    interior = noisy[20:-20, 20:-20]
    assert interior.mean() == pytest.approx(0.5, abs=0.005)
    assert interior.std() == pytest.approx(np.sqrt(0.001 * 0.5 + 0.01), rel=0.03)


def test_salt_and_pepper_only_in_2d_by_default(psf2d, psf3d):
    clean = np.zeros((64, 64), np.float32)
    sp = degrade(clean, psf2d, gaussian=0.0, poisson=0.0, seed=0)
    assert 0.005 < (sp > 0).mean() < 0.015
    vol = np.zeros((20, 20, 20), np.float32)
    assert degrade(vol, psf3d, gaussian=0.0, poisson=0.0, seed=0).max() == 0


def test_phantom_is_seeded_thin_and_normalized():
    a = filament_phantom((16, 48, 48), n_filaments=10, seed=1)
    assert a.shape == (16, 48, 48)
    assert a.max() == pytest.approx(1.0)
    assert np.array_equal(a, filament_phantom((16, 48, 48), n_filaments=10, seed=1))
    assert (a > 0.2).mean() < 0.2


def test_metrics_match_scikit_image_with_explicit_range(rng):
    t = rng.random((40, 40))
    e = np.clip(t + 0.05 * rng.standard_normal(t.shape), 0, 1)
    assert psnr(e, t) == pytest.approx(peak_signal_noise_ratio(t, e, data_range=1.0))
    assert ssim(e, t) == pytest.approx(structural_similarity(t, e, data_range=1.0))
    assert rmse(e, t) == pytest.approx(np.sqrt(np.mean((e - t) ** 2)))


def test_estimates_are_clipped_before_scoring(rng):
    t = rng.random((32, 32))
    assert psnr(t + 5.0, t) == psnr(np.ones_like(t), t)


def test_mutual_information_is_one_for_identical_and_low_for_independent(rng):
    t = rng.random((128, 128))
    assert mutual_information(t, t) == pytest.approx(1.0)
    assert mutual_information(rng.random((128, 128)), t) < 0.3
    scores = evaluate(t, t)
    assert set(scores) == {"psnr", "ssim", "rmse", "mi", "smi"}
    assert scores["smi"] == pytest.approx(1.0)
    assert evaluate(rng.random((8, 16, 16)), rng.random((8, 16, 16)))["smi"] is None
    with pytest.raises(ValueError, match="7 pixels"):
        evaluate(rng.random((4, 16, 16)), rng.random((4, 16, 16)))


def test_rescale01():
    assert rescale01(np.array([[2.0, 4.0], [3.0, 6.0]])).tolist() == [[0.0, 0.5], [0.25, 1.0]]
    with pytest.raises(ValueError):
        rescale01(np.ones((3, 3)))
