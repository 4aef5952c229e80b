from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.restoration import richardson_lucy as sk_rl

from siamdecon.classical import richardson_lucy, richardson_lucy_series


def test_matches_scikit_image_2d(psf2d, rng):
    img = rng.random((48, 40))
    ref = sk_rl(img, psf2d.astype(np.float64), num_iter=10)
    out = richardson_lucy(img, psf2d, 10, init=0.5, clip=True, dtype=torch.float64)
    assert np.abs(out - ref).max() <= 1e-4


def test_matches_scikit_image_3d(psf3d, rng):
    img = rng.random((20, 24, 22))
    ref = sk_rl(img, psf3d.astype(np.float64), num_iter=5)
    out = richardson_lucy(img, psf3d, 5, init=0.5, clip=True, dtype=torch.float64)
    assert np.abs(out - ref).max() <= 1e-4


def test_float32_also_matches_to_1e4(psf2d, rng):
    img = rng.random((64, 64)).astype(np.float32)
    ref = sk_rl(img.astype(np.float64), psf2d.astype(np.float64), num_iter=20)
    out = richardson_lucy(img, psf2d, 20, init=0.5, clip=True)
    assert np.abs(out - ref).max() <= 1e-4


def test_series_equals_separate_runs(psf2d, rng):
    img = rng.random((32, 32))
    series = richardson_lucy_series(img, psf2d, [1, 3, 5], dtype=torch.float64)
    for n in (1, 3, 5):
        assert np.allclose(series[n], richardson_lucy(img, psf2d, n, dtype=torch.float64))


def test_lr_sharpens_a_blurred_point(psf2d):
    from siamdecon.operators import PSFConvolution

    x = np.zeros((33, 33), dtype=np.float32)
    x[16, 16] = 1.0
    blurred = PSFConvolution(psf2d).convolve_numpy(x) + 1e-4
    out = richardson_lucy(blurred, psf2d, 50)
    assert out[16, 16] > 10 * blurred.max()
    assert out.argmax() == 16 * 33 + 16


def test_bad_arguments(psf2d):
    with pytest.raises(ValueError):
        richardson_lucy_series(np.ones((20, 20)), psf2d, [-1])
    with pytest.raises(ValueError, match="init"):
        richardson_lucy(np.ones((20, 20)), psf2d, 1, init="nonsense")


def test_background_zero_is_the_plain_update(psf2d, rng):
    img = rng.random((32, 32)) + 0.1
    plain = richardson_lucy(img, psf2d, 7, dtype=torch.float64)
    assert np.array_equal(plain, richardson_lucy(img, psf2d, 7, background=0.0, dtype=torch.float64))


def test_background_term_explains_a_camera_offset(psf2d):
    """With the offset in the model, LR recovers the object; without it the offset is deconvolved as signal."""
    from siamdecon.operators import PSFConvolution

    truth = np.zeros((48, 48))
    truth[20:28, 14:34] = 50.0
    truth[10, 10] = 400.0
    offset = 100.0
    data = PSFConvolution(psf2d).convolve_numpy(truth.astype(np.float32)) + offset
    with_bg = richardson_lucy(data, psf2d, 200, background=offset, dtype=torch.float64)
    without = richardson_lucy(data, psf2d, 200, dtype=torch.float64) - offset
    inner = (slice(8, -8), slice(8, -8))
    err_bg = np.abs(with_bg - truth)[inner].mean()
    err_plain = np.abs(without - truth)[inner].mean()
    assert err_bg < 0.5 * err_plain
    # The estimate is an object (near zero off the structure), not object + offset.
    assert abs(float(np.median(with_bg))) < 2.0


def test_on_iteration_sees_every_iterate(psf2d, rng):
    img = rng.random((24, 24)) + 0.5
    seen = []
    series = richardson_lucy_series(img, psf2d, [2, 5], on_iteration=lambda n, u: seen.append((n, u.clone())))
    assert [n for n, _ in seen] == [1, 2, 3, 4, 5]
    assert np.allclose(seen[1][1][0, 0].numpy(), series[2]) and np.allclose(seen[4][1][0, 0].numpy(), series[5])


def test_negative_background_is_refused(psf2d):
    with pytest.raises(ValueError, match="background"):
        richardson_lucy(np.ones((20, 20)), psf2d, 1, background=-1.0)


def test_extended_boundary_removes_the_rim_of_an_object_beyond_the_field(psf2d):
    """An object that continues past the image: the zero boundary darkens or brightens the border,
    estimating the object on the image plus half the PSF does not."""
    from siamdecon.operators import PSFConvolution

    rng = np.random.default_rng(3)
    big = 0.5 + 0.5 * rng.random((96, 96))
    h = psf2d.shape[0] // 2
    blurred = PSFConvolution(psf2d).convolve_numpy(big.astype(np.float32))[h:-h, h:-h]
    truth = big[h:-h, h:-h]
    errors = {}
    for boundary in ("zero", "extend"):
        est = richardson_lucy(blurred, psf2d, 30, boundary=boundary, dtype=torch.float64)
        assert est.shape == blurred.shape
        rim = np.ones_like(truth, bool)
        rim[h:-h, h:-h] = False
        errors[boundary] = float(np.abs(est - truth)[rim].mean())
    assert errors["extend"] < 0.5 * errors["zero"]


def test_extended_boundary_series_matches_single_runs_and_calls_back(psf3d, rng):
    img = rng.random((20, 24, 24)) + 0.2
    seen = []
    series = richardson_lucy_series(img, psf3d, [2, 4], boundary="extend", on_iteration=lambda n, u: seen.append(n))
    assert seen == [1, 2, 3, 4]
    assert np.allclose(series[4], richardson_lucy(img, psf3d, 4, boundary="extend"), atol=1e-6)
    with pytest.raises(ValueError, match="boundary"):
        richardson_lucy(img, psf3d, 1, boundary="mirror")
