"""Estimating a camera's gain, offset and read noise from one image."""

from __future__ import annotations

import numpy as np
import pytest

from siamdecon.noise import NoiseModel, estimate_noise


def _camera(lam: np.ndarray, gain: float, offset: float, read: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(gain * (rng.poisson(lam) + read * rng.standard_normal(lam.shape)) + offset)


@pytest.mark.parametrize(("gain", "offset", "scale"), [(1.0, 100.0, 5.0), (2.0, 100.0, 50.0), (0.5, 300.0, 200.0)])
def test_gain_and_offset_of_a_smooth_image(gain, offset, scale):
    """A smooth ramp of light (what a blurred image looks like at the pixel scale), eight noise draws.

    One 256^2 image gives the gain to about 4 % (one standard deviation, up to 11 % off on these
    draws), so a single seed says little: the mean over the draws must be unbiased, each draw
    within its spread, and the variance where the data lies (what the losses weight by) close on
    every draw.
    """
    lam = scale * (1 + 3 * np.linspace(0, 1, 256))[None, :] * np.ones((256, 1))
    models = [estimate_noise(_camera(lam, gain, offset, 1.4, seed=s)) for s in range(8)]
    gains = np.array([m.gain for m in models])
    offsets = np.array([m.offset for m in models])
    assert gains.mean() == pytest.approx(gain, rel=0.03)
    assert np.all(np.abs(gains / gain - 1) < 0.15)
    tolerance = 0.05 * scale * gain + 1.0
    assert offsets.mean() == pytest.approx(offset, abs=tolerance)
    assert np.all(np.abs(offsets - offset) < 2.5 * tolerance)
    # The read noise alone is only an extrapolation of the line; the variance at the data is not.
    level = 2 * scale
    for m in models:
        assert m.variance(offset + gain * level) == pytest.approx(gain**2 * (level + 1.4**2), rel=0.1)


def test_known_offset_is_kept():
    lam = 20 * (1 + np.linspace(0, 1, 128))[None, :] * np.ones((128, 1))
    m = estimate_noise(_camera(lam, 1.0, 100.0, 1.4), offset=100.0)
    assert m.offset == 100.0
    assert m.variance(130.0) == pytest.approx(30 + 1.4**2, rel=0.1)


def test_gaussian_noise_in_unit_range_has_no_offset():
    rng = np.random.default_rng(1)
    img = np.clip(0.5 + 0.1 * rng.standard_normal((128, 128)), 0, 1)
    m = estimate_noise(img)
    assert m.offset == pytest.approx(0.0, abs=0.05)
    assert m.variance(0.5) == pytest.approx(0.01, rel=0.15)


def test_model_maps_to_photons_and_round_trips():
    m = NoiseModel(gain=2.0, offset=100.0, read_variance=9.0)
    assert m.photons(np.array([100.0, 120.0])) == pytest.approx([0.0, 10.0])
    assert m.read_noise == pytest.approx(1.5)
    assert NoiseModel(**m.to_dict()) == m


def test_too_small_an_image_is_refused():
    with pytest.raises(ValueError, match="at least 5 pixels"):
        estimate_noise(np.ones((3, 40)))


@pytest.mark.parametrize("size", [8, 24, 48])
def test_small_images_still_give_their_variance(size):
    # Too few pixels for the default 24 bins: fewer bins (or one) instead of an error.
    rng = np.random.default_rng(size)
    img = 0.5 + 0.1 * rng.standard_normal((size, size))
    m = estimate_noise(img)
    assert m.variance(0.5) == pytest.approx(0.01, rel=0.5 if size < 24 else 0.25)
