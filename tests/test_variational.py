"""Spitfire (siamdecon.variational) against sdeconv 1.0.4, its reference, and on its own."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
from scipy import signal

from siamdecon import variational
from siamdecon.operators import PSFConvolution
from siamdecon.simulate import fluorescence_2d, tubes_3d
from siamdecon.variational import (
    SpitfireResult,
    embed_psf,
    load_sdeconv_spitfire,
    run_sdeconv_spitfire,
    spitfire,
)

# Ours and sdeconv differ only in float32 rounding (FFT vs direct correlation, summation order of
# the gradient), which can move the stopping iteration by a few; late iterations barely change the
# image because the learning rate has been halved many times by then. Measured: about 1e-6 of the
# range in 2D, up to about 1.4e-4 in 3D where a run stopped 2 iterations apart.
_TOLERANCE = 1e-3  # of the image range


def _gaussian_psf(shape: tuple[int, ...], sigma: tuple[float, ...], shift: tuple[float, ...]) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    arg = sum(((g - s) / w) ** 2 for g, s, w in zip(grids, shift, sigma))
    return np.exp(-0.5 * arg).astype(np.float32)


def _asymmetric_2d() -> np.ndarray:
    psf = _gaussian_psf((9, 9), (1.2, 2.0), (0.8, -1.1))
    psf[0, 7] += 0.4  # an off-centre tap no flip or transpose maps onto itself
    return psf


def _asymmetric_3d() -> np.ndarray:
    psf = _gaussian_psf((5, 7, 7), (1.2, 1.0, 1.6), (0.6, -0.7, 0.9))
    psf[0, 1, 6] += 0.3
    return psf


def _blurred_2d(psf: np.ndarray, size: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    truth = fluorescence_2d(size, seed=seed)
    blurred = signal.convolve(truth, psf / psf.sum(), mode="same")
    return (blurred + 0.01 * rng.standard_normal(blurred.shape)).astype(np.float32)


def _blurred_3d(psf: np.ndarray, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    truth = tubes_3d(shape, seed=seed)
    blurred = signal.convolve(truth, psf / psf.sum(), mode="same")
    return (blurred + 0.01 * rng.standard_normal(blurred.shape)).astype(np.float32)


@pytest.fixture(scope="module")
def sdeconv_spitfire():
    cls, reason = load_sdeconv_spitfire()
    if cls is None:
        pytest.skip(f"the sdeconv reference is unavailable: {reason}")
    return cls


# -- against sdeconv ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "psf_kind,reg,pad", [("symmetric", 0.995, 13), ("asymmetric", 0.995, 13), ("asymmetric", 0.95, 0)]
)
def test_matches_sdeconv_2d(sdeconv_spitfire, psf_kind, reg, pad):
    psf = _gaussian_psf((9, 9), (1.5, 1.5), (0.0, 0.0)) if psf_kind == "symmetric" else _asymmetric_2d()
    image = 3.0 * _blurred_2d(psf) + 0.5
    ours = spitfire(image, psf, reg=reg, pad=pad, return_info=True)
    ref = run_sdeconv_spitfire(image, psf, reg=reg, pad=pad)
    assert ours.image.shape == ref.image.shape == image.shape
    span = float(np.ptp(image))
    assert np.abs(ours.image - ref.image).max() <= _TOLERANCE * span
    assert abs(ours.iterations - ref.iterations) <= max(10, 0.05 * ref.iterations)
    assert ours.loss == pytest.approx(ref.loss, rel=1e-4)


def test_flip_matters_2d(sdeconv_spitfire):
    # The comparison above would catch a flipped or transposed PSF: it changes the result by far more.
    psf = _asymmetric_2d()
    image = _blurred_2d(psf)
    ref = run_sdeconv_spitfire(image, psf, max_iterations=200)
    span = float(np.ptp(image))
    for wrong in (psf[::-1, ::-1], psf.T):
        other = spitfire(np.asarray(image), np.ascontiguousarray(wrong), max_iterations=200)
        assert np.abs(other - ref.image).max() > 20 * _TOLERANCE * span


@pytest.mark.parametrize("reg,delta", [(0.995, 1.0), (0.98, 0.5)])
def test_matches_sdeconv_3d(sdeconv_spitfire, reg, delta):
    psf = _asymmetric_3d()
    image = 2.0 * _blurred_3d(psf, (12, 24, 24)) + 1.0
    ours = spitfire(image, psf, reg=reg, delta=delta, pad=4, return_info=True)
    ref = run_sdeconv_spitfire(image, psf, reg=reg, delta=delta, pad=4)
    assert ours.image.shape == ref.image.shape == image.shape
    assert np.abs(ours.image - ref.image).max() <= _TOLERANCE * float(np.ptp(image))
    assert abs(ours.iterations - ref.iterations) <= max(10, 0.05 * ref.iterations)


def test_regularizers_match_sdeconv(sdeconv_spitfire, rng):
    namespace = sdeconv_spitfire.run_2d.__globals__
    u2 = torch.from_numpy(rng.random((1, 1, 11, 13)).astype(np.float32))
    u3 = torch.from_numpy(rng.random((1, 1, 6, 9, 8)).astype(np.float32))
    for weight in (0.6, 0.1, 1.0):
        ref2 = namespace["hv_loss"](u2, weight)
        assert variational._sparse_hessian_2d(u2, weight) == ref2
        assert variational._SparseHessian.apply(u2, weight, 1.0) == ref2
        ref3 = namespace["hv_loss_3d"](u3, 0.7, weight)
        assert variational._sparse_hessian_3d(u3, weight, 0.7) == ref3
        assert variational._SparseHessian.apply(u3, weight, 0.7) == ref3


def test_data_terms_match_sdeconv(sdeconv_spitfire, rng):
    namespace = sdeconv_spitfire.run_2d.__globals__
    psf = torch.from_numpy(_asymmetric_2d() / _asymmetric_2d().sum())
    x = torch.from_numpy(rng.random((1, 1, 30, 27)).astype(np.float32))
    y = torch.from_numpy(rng.random((1, 1, 30, 27)).astype(np.float32))
    ref = namespace["dataterm_deconv"](y, x, psf[None, None])
    ours = variational._data_term_2d(x, y, PSFConvolution(psf, backend="fft"))
    assert float(ours) == pytest.approx(float(ref.detach()), rel=1e-5)

    # 3D: sdeconv's OTF of its padded PSF and its backward pass.
    image_shape, pad = (6, 10, 9), 3
    small = torch.from_numpy(_asymmetric_3d()[:, 1:-1, 1:])  # even and odd sizes
    small = small / small.sum()
    big = torch.from_numpy(embed_psf(small.numpy(), image_shape))
    padded = torch.nn.functional.pad(big, [pad] * 6)
    shape = tuple(padded.shape)
    otf = variational._circular_otf(small, shape)
    np.testing.assert_allclose(
        torch.fft.fftn(torch.fft.irfftn(otf, s=shape)).numpy(), sdeconv_spitfire.otf_3d(padded).numpy(), atol=1e-6
    )
    u = torch.from_numpy(rng.random(shape).astype(np.float32))
    blurry = torch.from_numpy(rng.random(shape).astype(np.float32))
    u_ref = u[None, None].clone().requires_grad_(True)
    f_otf, a_otf = sdeconv_spitfire.otf_3d(padded), sdeconv_spitfire.adjoint_otf(padded)
    loss_ref = namespace["DataTermDeconv3D"].apply(u_ref, blurry[None, None], torch.fft.fftn(blurry), f_otf, a_otf)
    loss_ref.backward()
    u_ours = u.clone().requires_grad_(True)
    loss = variational._CircularDataTerm.apply(u_ours, blurry, torch.fft.rfftn(blurry), otf)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(float(loss_ref.detach()), rel=1e-5)
    np.testing.assert_allclose(u_ours.grad.numpy(), u_ref.grad[0, 0].numpy(), rtol=1e-4, atol=1e-9)


def test_loader_leaves_sys_modules_as_it_was():
    before = {name for name in sys.modules if name.split(".")[0] == "sdeconv"}
    cls, reason = load_sdeconv_spitfire.__wrapped__()
    if cls is None:
        pytest.skip(reason)
    after = {name for name in sys.modules if name.split(".")[0] == "sdeconv"}
    if reason.startswith("imported"):
        assert "sdeconv.deconv.spitfire" in after  # a normal import, kept as Python keeps it
    else:
        assert after == before
    assert cls.__name__ == "Spitfire"


def test_loader_without_sdeconv(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sdeconv" else real(name, *a))
    cls, reason = load_sdeconv_spitfire.__wrapped__()
    assert cls is None and "not installed" in reason


# -- on its own ---------------------------------------------------------------------------------------


def test_regularizer_hand_computed_2d():
    u = torch.tensor([[0.0, 1.0, 2.0], [3.0, 5.0, 4.0], [1.0, 0.0, 2.0]])
    # One interior pixel, c = 5: rows -0 + 10 - 1 = 9, columns -4 + 10 - 3 = 3, mixed 2 - 0 - 4 + 5 = 3.
    expected = np.sqrt(0.36 * (81 + 9 + 2 * 9) + 0.16 * 25)
    assert float(variational._sparse_hessian_2d(u, 0.6)) == pytest.approx(expected, rel=1e-6)
    assert float(variational._SparseHessian.apply(u[None, None], 0.6, 1.0)) == pytest.approx(expected, rel=1e-6)
    # The mean runs over interior pixels only: padding u with a ring of its edge values adds 8 terms.
    big = torch.nn.functional.pad(u[None, None], [1, 1, 1, 1], mode="replicate")[0, 0]
    assert variational._sparse_hessian_2d(big, 0.6).item() != pytest.approx(expected)


def test_regularizer_hand_computed_3d():
    u = torch.zeros(3, 3, 3)
    u[1, 1, 1], u[1, 1, 2], u[2, 1, 1], u[2, 2, 1] = 1.0, 2.0, 3.0, 4.0
    delta, w = 0.5, 0.6
    # xx: -2 + 2 - 0 = 0; yy: 2; zz: delta^2 (-3 + 2) ; yx: 0 - 2 - 0 + 1 = -1;
    # zx: delta (0 - 2 - 3 + 1) = -4 delta; zy: delta (4 - 0 - 3 + 1) = 2 delta.
    q = w**2 * (0 + 4 + delta**4 + 2 * 1 + 2 * 16 * delta**2 + 2 * 4 * delta**2) + (1 - w) ** 2 * 1
    expected = np.sqrt(q)
    assert float(variational._sparse_hessian_3d(u, w, delta)) == pytest.approx(expected, rel=1e-6)
    assert float(variational._SparseHessian.apply(u[None, None], w, delta)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("shape", [(1, 1, 17, 14), (1, 1, 5, 8, 7)])
def test_hand_written_gradient_matches_autograd(shape, rng):
    u = torch.from_numpy(rng.random(shape)).requires_grad_(True)  # float64: compare the formulas
    if len(shape) == 4:
        ref = variational._sparse_hessian_2d(u, 0.6)
    else:
        ref = variational._sparse_hessian_3d(u, 0.6, 0.4)
    (g_ref,) = torch.autograd.grad(ref, u)
    (g,) = torch.autograd.grad(variational._SparseHessian.apply(u, 0.6, 0.4), u)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-14)


def test_regularizer_gradient_is_finite_where_sqrt_has_none():
    # u = 0 on a flat patch: autograd (and sdeconv) give NaN there, the hand-written gradient 0.
    u = torch.zeros(1, 1, 6, 6)
    u[..., 0, 0] = 1.0
    u.requires_grad_(True)
    variational._SparseHessian.apply(u, 0.6, 1.0).backward()
    assert torch.isfinite(u.grad).all()
    image = np.full((32, 32), 1000.0, np.float32)  # min + 1e-5 == min in float32: normalized 0
    image[20:, 20:] = 1100.0
    out = spitfire(image, _gaussian_psf((5, 5), (1.0, 1.0), (0, 0)), pad=4, max_iterations=30)
    assert np.isfinite(out).all()


def test_data_term_of_exact_deconvolution_is_zero(rng):
    psf = _asymmetric_2d() / _asymmetric_2d().sum()
    x = rng.random((1, 1, 40, 37)).astype(np.float32)
    # sdeconv's Conv2d correlates: the data term vanishes for the correlation, not the convolution.
    correlated = signal.correlate(x[0, 0].astype(np.float64), psf.astype(np.float64), mode="same")
    convolved = signal.convolve(x[0, 0].astype(np.float64), psf.astype(np.float64), mode="same")
    op = PSFConvolution(psf)
    exact = variational._data_term_2d(torch.from_numpy(x), torch.from_numpy(correlated[None, None]).float(), op)
    wrong = variational._data_term_2d(torch.from_numpy(x), torch.from_numpy(convolved[None, None]).float(), op)
    assert float(exact) < 1e-12
    assert float(wrong) > 1e-4

    # 3D: circular convolution (not correlation) with the PSF index K // 2 at the origin.
    psf3 = _asymmetric_3d() / _asymmetric_3d().sum()
    u = rng.random((9, 12, 11))
    blurry = np.zeros_like(u)
    centre = [k // 2 for k in psf3.shape]
    for index in np.ndindex(psf3.shape):
        shift = tuple(i - c for i, c in zip(index, centre))
        blurry += psf3[index] * np.roll(u, shift, axis=(0, 1, 2))
    blurry_t = torch.from_numpy(blurry).float()
    otf = variational._circular_otf(torch.from_numpy(psf3), u.shape)
    value = variational._CircularDataTerm.apply(torch.from_numpy(u).float(), blurry_t, torch.fft.rfftn(blurry_t), otf)
    assert float(value) < 1e-12


def test_circular_data_term_gradient_is_half_the_true_one(rng):
    # sdeconv's hand-written 3D backward omits the 2 of d/du mean(r^2); kept for fidelity.
    shape = (6, 8, 7)
    otf = variational._circular_otf(torch.from_numpy(_asymmetric_3d()[:, :, 1:]), shape)
    blurry = torch.from_numpy(rng.random(shape))
    u = torch.from_numpy(rng.random(shape)).requires_grad_(True)
    variational._CircularDataTerm.apply(u, blurry, torch.fft.rfftn(blurry), otf).backward()
    v = u.detach().clone().requires_grad_(True)
    torch.mean((blurry - torch.fft.irfftn(torch.fft.rfftn(v) * otf, s=shape)) ** 2).backward()
    torch.testing.assert_close(u.grad, 0.5 * v.grad)


def test_embedded_psf_gives_the_same_result_3d():
    psf = _asymmetric_3d()
    image = _blurred_3d(psf, (8, 16, 15))
    a = spitfire(image, psf, pad=3, max_iterations=40)
    b = spitfire(image, embed_psf(psf, image.shape), pad=3, max_iterations=40)
    np.testing.assert_allclose(a, b, atol=1e-5 * float(np.ptp(image)))


def test_deconvolution_gets_closer_to_the_truth():
    psf = _gaussian_psf((11, 11), (1.8, 1.8), (0, 0))
    truth = fluorescence_2d(64, seed=3)
    blurred = signal.convolve(truth, psf / psf.sum(), mode="same").astype(np.float32)
    blurred += 0.005 * np.random.default_rng(3).standard_normal(blurred.shape).astype(np.float32)
    out = spitfire(blurred, psf, reg=0.999)
    assert np.mean((out - truth) ** 2) < 0.8 * np.mean((blurred - truth) ** 2)


def test_reg_one_fits_the_data_reg_small_smooths():
    psf = _gaussian_psf((9, 9), (1.5, 1.5), (0, 0))
    image = _blurred_2d(psf, size=40, seed=5)
    op = PSFConvolution(psf / psf.sum())
    # Without padding the data term is the zero-boundary misfit of the normalized image itself.
    mini, maxi = np.float32(image.min() + 1e-5), image.max()

    def misfit(u: np.ndarray) -> float:
        u_n, y_n = (u - mini) / (maxi - mini), (image - mini) / (maxi - mini)
        return float(np.mean((op.adjoint(torch.from_numpy(u_n)[None, None])[0, 0].numpy() - y_n) ** 2))

    def roughness(u: np.ndarray) -> float:
        return float(np.mean(np.abs(np.diff(u, 2, axis=0))) + np.mean(np.abs(np.diff(u, 2, axis=1))))

    fit = spitfire(image, psf, reg=1.0, pad=0, max_iterations=300)
    smooth = spitfire(image, psf, reg=0.05, pad=0, max_iterations=300)
    assert misfit(fit) < 0.5 * misfit(image)  # least squares: it fits the data better than the input
    assert misfit(fit) < misfit(smooth)
    assert roughness(smooth) < roughness(image) < roughness(fit)  # no prior: noise gets amplified


def test_shapes_dtypes_and_ranges():
    psf = _gaussian_psf((7, 7), (1.3, 1.3), (0, 0))
    image = _blurred_2d(psf, size=32, seed=1)
    base = spitfire(image, psf, pad=5, max_iterations=200, return_info=True)
    assert isinstance(base, SpitfireResult)
    assert base.image.shape == image.shape and base.image.dtype == np.float32
    assert base.iterations == 200 and base.stop_reason == "max_iterations"
    # Normalization and back: an affine change of the input range carries over to the output
    # (up to the absolute 1e-5 in sdeconv's normalization, 1e-5 of a unit range here).
    scaled = spitfire((4000.0 * image + 300.0).astype(np.float64), psf, pad=5, max_iterations=200)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled, 4000.0 * base.image + 300.0, atol=1e-3 * 4000.0)
    counts = np.round(1000 * (image - image.min())).astype(np.uint16)
    assert spitfire(counts, psf, pad=5, max_iterations=5).dtype == np.float32
    assert spitfire(torch.from_numpy(image), torch.from_numpy(psf), pad=5, max_iterations=5).shape == image.shape
    psf3 = _gaussian_psf((3, 5, 5), (1.0, 1.0, 1.0), (0, 0, 0))
    vol = np.random.default_rng(0).random((6, 10, 12)).astype(np.float32)
    out3 = spitfire(vol, psf3, pad=2, max_iterations=5, return_info=True)
    assert out3.image.shape == vol.shape and out3.image.dtype == np.float32


def test_invalid_inputs_are_refused():
    psf = _gaussian_psf((5, 5), (1.0, 1.0), (0, 0))
    image = np.random.default_rng(0).random((20, 20)).astype(np.float32)
    with pytest.raises(ValueError, match="constant"):
        spitfire(np.full((20, 20), 3.0), psf)
    with pytest.raises(ValueError, match="2D like the image"):
        spitfire(image, np.ones((3, 3, 3)))
    with pytest.raises(ValueError, match="3D like the image"):
        spitfire(np.stack([image] * 4), psf)
    with pytest.raises(ValueError, match="odd"):
        spitfire(image, np.ones((4, 4)))
    with pytest.raises(ValueError, match="pad"):
        spitfire(image, psf, pad=20)
    with pytest.raises(ValueError, match="reg"):
        spitfire(image, psf, reg=1.5)
    with pytest.raises(ValueError, match="2D or 3D"):
        spitfire(image[0], psf[0])
    with pytest.raises(ValueError, match="NaN"):
        spitfire(np.where(image > 0.5, np.nan, image), psf)
    with pytest.raises(ValueError, match="positive sum"):
        spitfire(image, np.zeros((5, 5)))
