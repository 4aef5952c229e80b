from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import signal

from siamdecon.operators import PSFConvolution, fast_fft_size


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("backend", ["fft", "direct"])
@pytest.mark.parametrize(
    "shape,kshape",
    [((37, 50), (17, 17)), ((16, 16), (5, 3)), ((64, 31), (1, 7)), ((8, 5), (31, 17)), ((3, 40), (9, 25))],
)
def test_matches_scipy_same_convolution_2d(backend, shape, kshape, rng):
    x = rng.random(shape)
    k = rng.random(kshape)
    ref = signal.convolve(x, k, mode="same")
    op = PSFConvolution(k, backend=backend).double()
    out = op(torch.from_numpy(x)[None, None])[0, 0].numpy()
    assert out.shape == x.shape
    assert _rel_err(out, ref) <= 1e-5


@pytest.mark.parametrize("backend", ["fft", "direct"])
def test_matches_scipy_same_convolution_3d(backend, psf3d, rng):
    x = rng.random((19, 24, 21))
    ref = signal.convolve(x, psf3d.astype(np.float64), mode="same")
    op = PSFConvolution(psf3d, backend=backend).double()
    out = op(torch.from_numpy(x)[None, None])[0, 0].numpy()
    assert _rel_err(out, ref) <= 1e-5


@pytest.mark.parametrize("shape", [(19, 24, 21), (4, 30, 6)])
def test_fft_adjoint_matches_scipy_correlation_3d(shape, psf3d, rng):
    # The FFT size only pads by half a kernel; a kernel wider than the input must still not wrap.
    x = rng.random(shape)
    ref = signal.correlate(x, psf3d.astype(np.float64), mode="same")
    op = PSFConvolution(psf3d, backend="fft").double()
    out = op.adjoint(torch.from_numpy(x)[None, None])[0, 0].numpy()
    assert _rel_err(out, ref) <= 1e-5


def test_float32_fft_matches_scipy(psf2d, rng):
    x = rng.random((128, 96)).astype(np.float32)
    ref = signal.convolve(x.astype(np.float64), psf2d.astype(np.float64), mode="same")
    out = PSFConvolution(psf2d, backend="fft").convolve_numpy(x)
    assert _rel_err(out, ref) <= 1e-5


def test_fft_and_direct_agree_on_batches_and_channels(psf2d, rng):
    x = torch.from_numpy(rng.random((3, 2, 40, 33)).astype(np.float32))
    a = PSFConvolution(psf2d, backend="fft")(x)
    b = PSFConvolution(psf2d, backend="direct")(x)
    assert torch.allclose(a, b, atol=1e-5)


def test_convolution_is_linear_not_circular():
    # A single bright pixel at the corner must not wrap around to the opposite corner.
    x = torch.zeros(1, 1, 20, 20, dtype=torch.float64)
    x[0, 0, 0, 0] = 1.0
    k = np.ones((5, 5))
    out = PSFConvolution(k, backend="fft").double()(x)[0, 0]
    assert out[-3:, -3:].abs().max() < 1e-12
    assert out[:3, :3].min() > 0.99


@pytest.mark.parametrize("backend", ["fft", "direct"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_gradients_are_correct(backend, ndim, rng):
    k = rng.random((3,) * ndim)
    op = PSFConvolution(k, backend=backend).double()
    x = torch.from_numpy(rng.random((2, 1) + (6,) * ndim)).requires_grad_(True)
    assert torch.autograd.gradcheck(op, (x,), eps=1e-6, atol=1e-6)
    assert torch.autograd.gradgradcheck(op, (x,), eps=1e-6, atol=1e-6)


def test_fft_gradient_of_an_asymmetric_kernel_is_its_adjoint(rng):
    k = rng.random((5, 3))
    op = PSFConvolution(k, backend="fft").double()
    x = torch.from_numpy(rng.random((1, 2, 7, 9))).requires_grad_(True)
    assert torch.autograd.gradcheck(op, (x,), eps=1e-6, atol=1e-6)
    g = torch.from_numpy(rng.random((1, 2, 7, 9)))
    (grad,) = torch.autograd.grad(op(x), x, g)
    assert torch.allclose(grad, op.adjoint(g), atol=1e-12)


@pytest.mark.parametrize("backend", ["fft", "direct"])
def test_adjoint_is_the_transpose(backend, rng):
    k = rng.random((5, 7))
    op = PSFConvolution(k, backend=backend).double()
    x = torch.from_numpy(rng.random((1, 1, 23, 19)))
    y = torch.from_numpy(rng.random((1, 1, 23, 19)))
    lhs = (op(x) * y).sum()
    rhs = (x * op.adjoint(y)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-10)


def test_psf_transform_is_cached_per_shape(psf2d):
    op = PSFConvolution(psf2d, backend="fft")
    op(torch.zeros(2, 1, 32, 32))
    op(torch.zeros(4, 1, 32, 32))
    op.adjoint(torch.zeros(4, 1, 32, 32))
    # One forward and one adjoint transform per FFT size, whatever the batch.
    assert len(op._otf_cache) == 2
    op(torch.zeros(1, 1, 48, 32))
    assert len(op._otf_cache) == 3
    op(torch.zeros(1, 1, 48, 32, requires_grad=True)).sum().backward()  # the gradient needs the adjoint
    assert len(op._otf_cache) == 4
    op.double()
    assert len(op._otf_cache) == 0


def test_auto_prefers_fft_for_large_kernels_and_direct_for_tiny(psf2d):
    assert PSFConvolution(psf2d).choose_backend((256, 256)) == "fft"
    assert PSFConvolution(np.ones((1, 1))).choose_backend((256, 256)) == "direct"


def test_fast_fft_size():
    assert fast_fft_size(1) == 4
    assert fast_fft_size(97) == 100
    assert fast_fft_size(128) == 128
    assert fast_fft_size(129) == 140  # 135 is odd, which MKL transforms slowly
    assert fast_fft_size(271) == 280  # 7 allowed: smaller than 288
    for n in range(1, 600):
        m = fast_fft_size(n)
        assert m >= n and m % 4 == 0
        assert _smooth7(m)
        assert not any(c % 4 == 0 and _smooth7(c) for c in range(n, m))  # the smallest such size


def _smooth7(c: int) -> bool:
    for p in (2, 3, 5, 7):
        while c % p == 0:
            c //= p
    return c == 1


def test_rejects_even_psf_and_wrong_input_rank():
    with pytest.raises(ValueError, match="odd"):
        PSFConvolution(np.ones((4, 5)))
    op = PSFConvolution(np.ones((3, 3)))
    with pytest.raises(ValueError, match="shape"):
        op(torch.zeros(8, 8))
