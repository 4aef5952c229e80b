"""The forward operator: convolution with a fixed PSF, as a differentiable ``torch.nn.Module``.

Two backends give the same result as ``scipy.signal.convolve(x, psf, mode="same")`` with a zero
boundary. ``"fft"`` is linear, not circular: the kernel is centred on the origin and the input
zero-padded to at least ``N + (K - 1) / 2`` per axis, rounded up to a size with only small prime
factors; the PSF transform is computed once per shape, device and dtype and cached. ``"direct"``
is ``conv2d``/``conv3d`` with the flipped kernel.
``"auto"`` picks by a cost model: direct convolution costs ``N^d K^d`` multiply-adds, FFT
convolution a few times ``M^d log M^d``; direct wins only for very small kernels.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PSFConvolution", "fast_fft_size", "inverse_fft_cropped", "Backend"]

Backend = Literal["auto", "fft", "direct"]


def fast_fft_size(n: int) -> int:
    """Smallest multiple of 4 >= ``n`` whose prime factors are only 2, 3, 5 and 7.

    Measured on MKL (``benchmarks/fft_sizes.py``): odd lengths are slow (125, 135, 225, 243, 375
    and 625 took 1.2-1.9x as long as the size chosen here) and a factor 7 costs little (280
    instead of 288 for 64x256x256 volumes made Lucy-Richardson about 1.2x faster). Over the 18
    lengths measured where this rule and the usual 5-smooth one differ, it is 1.17x faster on
    average and slower at two (450 -> 480 in 2D, 90 -> 96 in 3D). pocketfft and cuFFT handle 7
    natively too.
    """
    m = max(int(n), 1)
    m += -m % 4
    while True:
        r = m
        for p in (2, 3, 5, 7):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 4


def inverse_fft_cropped(spectrum: torch.Tensor, fshape: tuple[int, ...], spatial: tuple[int, ...]) -> torch.Tensor:
    """``irfftn(spectrum, s=fshape)`` cropped to its first ``spatial`` samples per axis.

    Cropping after each axis' inverse transform means the later axes transform fewer lines
    (measured 1.4x faster than ``irfftn`` then crop for a 64x256x256 volume, 1.2x for 2x64^3).
    """
    nd = len(fshape)
    if nd < 3:
        # In 2D the per-axis calls cost more than they save (measured on 72^2 to 540^2).
        return torch.fft.irfftn(spectrum, s=fshape, dim=(-2, -1))[(..., *(slice(0, s) for s in spatial))]
    for axis in range(nd - 1):
        spectrum = torch.fft.ifft(spectrum, dim=axis - nd).narrow(axis - nd, 0, spatial[axis])
    return torch.fft.irfft(spectrum, n=fshape[-1], dim=-1)[..., : spatial[-1]]


def _fft_apply(x: torch.Tensor, otf: torch.Tensor, fshape: tuple[int, ...], spatial: tuple[int, ...]) -> torch.Tensor:
    dims = tuple(range(-len(fshape), 0))
    # In place: the spectrum is a fresh tensor, and autograd does not record inside a Function.
    return inverse_fft_cropped(torch.fft.rfftn(x, s=fshape, dim=dims).mul_(otf), fshape, spatial)


class _FFTConvolve(torch.autograd.Function):
    """FFT convolution whose gradient is the adjoint convolution, run the same way.

    Autograd through pad, FFTs and crops costs up to 1.7x more than this in 3D (measured by
    benchmarks/fft_overhead.py), because it materializes the padded gradients.
    """

    @staticmethod
    def forward(ctx, x, otf, otf_adj, fshape, spatial):  # type: ignore[override]
        ctx.otf, ctx.otf_adj, ctx.fshape, ctx.spatial = otf, otf_adj, fshape, spatial
        return _fft_apply(x, otf, fshape, spatial)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        # Calling apply again (not _fft_apply) keeps the gradient itself differentiable.
        return _FFTConvolve.apply(grad, ctx.otf_adj, ctx.otf, ctx.fshape, ctx.spatial), None, None, None, None


class PSFConvolution(nn.Module):
    """Convolution with a fixed PSF, ``"same"`` output size, zero boundary.

    Parameters
    ----------
    psf : array-like
        The kernel, 2D or 3D, odd size on every axis (its centre pixel is the origin).
        It is used as given (normalize it first, e.g. with :func:`siamdecon.psf.normalize_psf`).
    backend : {"auto", "fft", "direct"}
        How to convolve. ``"auto"`` chooses per input shape.

    Notes
    -----
    Inputs are tensors of shape ``(B, C, *spatial)`` with ``len(spatial) == psf.ndim``; every
    channel is convolved with the same kernel. :meth:`adjoint` applies the transpose operator
    (correlation with the PSF), which Lucy-Richardson needs.

    Examples
    --------
    >>> import numpy as np, torch
    >>> op = PSFConvolution(np.ones((3, 3)) / 9)
    >>> op(torch.ones(1, 1, 8, 8)).shape
    torch.Size([1, 1, 8, 8])
    """

    def __init__(self, psf: np.ndarray | torch.Tensor, backend: Backend = "auto") -> None:
        super().__init__()
        kernel = torch.as_tensor(np.asarray(psf, dtype=np.float64) if not isinstance(psf, torch.Tensor) else psf)
        if kernel.ndim not in (2, 3):
            raise ValueError(f"PSF must be 2D or 3D, got shape {tuple(kernel.shape)}")
        if any(s % 2 == 0 for s in kernel.shape):
            raise ValueError(f"PSF sizes must be odd so that its centre is a pixel, got {tuple(kernel.shape)}")
        if backend not in ("auto", "fft", "direct"):
            raise ValueError(f"backend must be 'auto', 'fft' or 'direct', got {backend!r}")
        self.backend = backend
        self.ndim = kernel.ndim
        self.register_buffer("psf", kernel.to(torch.float32).contiguous(), persistent=False)
        self._otf_cache: dict[tuple, torch.Tensor] = {}
        self._shape_cache: dict[tuple[int, ...], tuple[int, ...]] = {}

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        """Spatial shape of the PSF."""
        return tuple(self.psf.shape)

    def extra_repr(self) -> str:
        return f"kernel_shape={self.kernel_shape}, backend={self.backend!r}"

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        # Moving the module (.to, .double, .cuda) invalidates cached transforms.
        self._otf_cache = {}
        return super()._apply(fn, recurse)

    # -- choosing ---------------------------------------------------------------------------------
    def choose_backend(self, spatial: tuple[int, ...]) -> Literal["fft", "direct"]:
        """The backend used for inputs of spatial shape ``spatial``."""
        if self.backend != "auto":
            return self.backend  # type: ignore[return-value]
        n = math.prod(spatial)
        k = math.prod(self.kernel_shape)
        m = math.prod(self._fft_shape(tuple(spatial)))
        # Calibrated on a 2-core CPU (benchmarks/fft_speed.py): FFT forward + backward was already
        # 2.8x faster than direct at 5x5 and 3x3x3 kernels, so direct only wins for a handful of taps.
        direct_cost = n * k
        fft_cost = 0.4 * m * max(math.log2(m), 1.0)
        return "direct" if direct_cost < fft_cost else "fft"

    # -- FFT ----------------------------------------------------------------------------------------
    def _fft_shape(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        fshape = self._shape_cache.get(spatial)
        if fshape is None:
            # With the kernel's centre at index 0, circular wrap-around stays outside the kept
            # N samples as soon as M >= N + (K - 1) / 2 (and M >= K, so the kernel fits): about
            # half the padding of the usual N + K - 1.
            fshape = tuple(
                fast_fft_size(max(s + (k - 1) // 2, k)) for s, k in zip(spatial, self.kernel_shape, strict=False)
            )
            self._shape_cache[spatial] = fshape
        return fshape

    def _otf(self, fshape: tuple[int, ...], device: torch.device, dtype: torch.dtype, flipped: bool) -> torch.Tensor:
        key = (fshape, device, dtype, flipped)
        otf = self._otf_cache.get(key)
        if otf is None and flipped:
            # The flipped kernel, centred at the origin, is the centred kernel reversed modulo
            # the FFT size, whose transform is the conjugate: no second FFT of the kernel.
            otf = self._otf(fshape, device, dtype, False).conj().resolve_conj()
        elif otf is None:
            kernel = self.psf.to(device=device, dtype=dtype)
            dims = tuple(range(-self.ndim, 0))
            # Zero-pad to the FFT size, then move the kernel's centre to the origin.
            pad: list[int] = []
            for k, m in zip(reversed(self.kernel_shape), reversed(fshape), strict=False):
                pad += [0, m - k]
            centred = torch.roll(F.pad(kernel, pad), [-((k - 1) // 2) for k in self.kernel_shape], dims)
            otf = torch.fft.rfftn(centred, dim=dims)
        self._otf_cache[key] = otf
        return otf

    def fft_plan(
        self, spatial: tuple[int, ...], device: torch.device | str, dtype: torch.dtype
    ) -> tuple[tuple[int, ...], torch.Tensor, torch.Tensor]:
        """FFT size and cached transforms (forward, adjoint) for inputs of shape ``spatial``.

        Lets iterative solvers (Lucy-Richardson) run the FFT convolution in place without the
        per-call bookkeeping of :meth:`forward`.
        """
        fshape = self._fft_shape(tuple(spatial))
        device = torch.device(device)
        return fshape, self._otf(fshape, device, dtype, False), self._otf(fshape, device, dtype, True)

    def _fft_conv(self, x: torch.Tensor, flipped: bool) -> torch.Tensor:
        spatial = tuple(x.shape[-self.ndim :])
        fshape = self._fft_shape(spatial)
        otf = self._otf(fshape, x.device, x.dtype, flipped)
        if not (x.requires_grad and torch.is_grad_enabled()):
            return _fft_apply(x, otf, fshape, spatial)
        otf_adj = self._otf(fshape, x.device, x.dtype, not flipped)
        return _FFTConvolve.apply(x, otf, otf_adj, fshape, spatial)

    # -- direct ---------------------------------------------------------------------------------------
    def _direct_conv(self, x: torch.Tensor, flipped: bool) -> torch.Tensor:
        kernel = self.psf.to(device=x.device, dtype=x.dtype)
        if not flipped:
            # conv{2,3}d computes a correlation; convolution needs the flipped kernel.
            kernel = torch.flip(kernel, dims=tuple(range(self.ndim)))
        shape = x.shape
        flat = x.reshape(-1, 1, *shape[-self.ndim :])
        pad: list[int] = []
        for k in reversed(self.kernel_shape):
            pad += [(k - 1) // 2, (k - 1) // 2]
        flat = F.pad(flat, pad)
        conv = F.conv2d if self.ndim == 2 else F.conv3d
        out = conv(flat, kernel[None, None])
        return out.reshape(shape)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != self.ndim + 2:
            raise ValueError(
                f"expected a tensor of shape (B, C, {'D, ' if self.ndim == 3 else ''}H, W) for a"
                f" {self.ndim}D PSF, got shape {tuple(x.shape)}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve ``x`` with the PSF (``"same"`` size, zero boundary)."""
        self._check(x)
        if self.choose_backend(tuple(x.shape[-self.ndim :])) == "fft":
            return self._fft_conv(x, flipped=False)
        return self._direct_conv(x, flipped=False)

    def adjoint(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the transpose of :meth:`forward`: correlation with the PSF, ``"same"`` size."""
        self._check(x)
        if self.choose_backend(tuple(x.shape[-self.ndim :])) == "fft":
            return self._fft_conv(x, flipped=True)
        return self._direct_conv(x, flipped=True)

    def convolve_numpy(self, image: np.ndarray) -> np.ndarray:
        """Convenience: convolve a single numpy image (no batch/channel axes)."""
        with torch.no_grad():
            t = torch.as_tensor(np.asarray(image, dtype=np.float32), device=self.psf.device)[None, None]
            return self.forward(t)[0, 0].cpu().numpy()
