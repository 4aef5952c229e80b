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


def test_camera_counts_have_poisson_gaussian_mean_and_variance(psf2d):
    from siamdecon.simulate import Camera, camera_image

    cam = Camera(photons=200.0, gain=2.0, read_noise=3.0, offset=100.0)
    level = 0.4  # a flat truth: the blur leaves the interior at the same level
    counts = camera_image(np.full((300, 300), level, np.float32), psf2d, cam, margin=10, seed=1)
    assert counts.dtype == np.uint16 and counts.shape == (280, 280)
    electrons = cam.photons * level
    values = counts.astype(np.float64)
    assert values.mean() == pytest.approx(cam.gain * electrons + cam.offset, rel=0.005)
    # Poisson (gain^2 * electrons) + read noise (gain^2 * sigma^2) + rounding (1/12).
    expected_var = cam.gain**2 * (electrons + cam.read_noise**2) + 1 / 12
    assert values.var() == pytest.approx(expected_var, rel=0.03)


def test_camera_margin_keeps_the_object_beyond_the_border(psf2d):
    """A truth larger than the field of view leaves no dark rim: the border sees its neighbours."""
    from siamdecon.simulate import Camera, camera_image

    cam = Camera(photons=1e4, read_noise=0.0, offset=0.0)
    flat = np.ones((64, 64), np.float32)
    inside = camera_image(flat, psf2d, cam, margin=8, seed=0).astype(float)
    zero_boundary = camera_image(flat, psf2d, cam, margin=0, seed=0).astype(float)
    assert inside[0].mean() == pytest.approx(1e4, rel=0.02)
    assert zero_boundary[0].mean() < 0.8e4


def test_camera_clips_to_16_bits_and_maps_back_to_truth(psf2d):
    from siamdecon.simulate import Camera, camera_image, camera_to_truth

    cam = Camera(photons=1e6, gain=1.0, read_noise=0.0, offset=100.0)
    counts = camera_image(np.ones((32, 32), np.float32), psf2d, cam, margin=8, seed=0)
    assert counts.max() == 65535
    assert camera_to_truth(np.array([100.0, 100.0 + 1e6]), cam) == pytest.approx([0.0, 1.0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"photons": 0}, "photons"), ({"gain": -1}, "gain"), ({"offset": -5}, "offset"), ({"bits": 10}, "bits")],
)
def test_camera_refuses_bad_settings(kwargs, match):
    from siamdecon.simulate import Camera

    with pytest.raises(ValueError, match=match):
        Camera(**kwargs)
