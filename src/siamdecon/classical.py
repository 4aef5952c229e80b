"""Lucy-Richardson deconvolution on the same FFT operator as the networks.

``u <- u * P^T(x / (P u + b + eps))``, where ``P`` is convolution with the PSF ("same" size, zero
boundary), ``P^T`` its transpose and ``b`` a constant background (a camera offset, say: without it
Lucy-Richardson explains the offset as signal and its estimate is ruined). With ``init=0.5``,
``clip=True`` and no background it reproduces ``skimage.restoration.richardson_lucy``; the defaults
(start from the image mean, no clipping) suit raw microscope intensities that are not scaled to [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from .operators import Backend, PSFConvolution, inverse_fft_cropped

__all__ = [
    "richardson_lucy",
    "richardson_lucy_refine",
    "richardson_lucy_refine_series",
    "richardson_lucy_series",
    "richardson_lucy_tensors",
]

_EPS = 1e-12


def _initial(image: torch.Tensor, init: float | str | np.ndarray, background: float = 0.0) -> torch.Tensor:
    if isinstance(init, str):
        if init == "mean":
            # The flux left once the background is explained; a floor keeps the start positive.
            level = float(image.mean()) - background
            return torch.full_like(image, max(level, 1e-6 * max(abs(float(image.mean())), 1e-12)))
        if init == "image":
            return image.clone()
        raise ValueError(f"init must be 'mean', 'image', a number or an array, got {init!r}")
    if isinstance(init, (int, float)):
        return torch.full_like(image, float(init))
    arr = torch.as_tensor(np.asarray(init), dtype=image.dtype, device=image.device)
    if arr.shape != image.shape[-arr.ndim :]:
        raise ValueError(f"init shape {tuple(arr.shape)} differs from the image shape {tuple(image.shape)}")
    return arr.expand_as(image).clone()


def richardson_lucy_series(
    image: np.ndarray | torch.Tensor,
    psf: np.ndarray | PSFConvolution,
    iterations: Iterable[int],
    *,
    init: float | str | np.ndarray = "mean",
    clip: bool = False,
    background: float = 0.0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    backend: Backend = "auto",
    on_iteration: Callable[[int, torch.Tensor], None] | None = None,
    boundary: str = "zero",
    weights: np.ndarray | None = None,
) -> dict[int, np.ndarray]:
    """Run Lucy-Richardson once and keep the estimates after several iteration counts.

    Parameters
    ----------
    image : array
        2D or 3D image (or a ``(B, 1, *spatial)`` tensor).
    psf : np.ndarray or PSFConvolution
        The kernel (sum 1) or a ready operator.
    iterations : iterable of int
        Iteration counts to return, e.g. ``[1, 2, 3, 5, 10, 20]``.
    init : {"mean", "image"}, float or array
        Starting estimate (``0.5`` reproduces scikit-image).
    clip : bool
        Clip the result to [-1, 1] like scikit-image.
    background : float
        Constant added to the blurred estimate in the forward model (``P u + b``), in the image's
        units: a camera offset or a uniform background. It must be non-negative.
    device, dtype, backend
        Where and how to compute.
    on_iteration : callable, optional
        Called as ``on_iteration(n, u)`` after every iteration ``n`` with the current estimate
        (a tensor updated in place afterwards: copy what you keep). Lets a caller score or stop on
        every iteration without keeping them all.
    boundary : {"zero", "extend"}
        ``"zero"``: the object is zero outside the image (the forward model of the paper's
        protocol). ``"extend"``: the object continues beyond the image, as under a microscope; the
        estimate lives on the image extended by half the PSF on every side and only the image's
        pixels are data (Bertero & Boccacci, A&A 437, 369, 2005), which removes the bright rims
        and dark corners a zero boundary puts where light came from outside the field of view.
    weights : np.ndarray, optional
        Per-pixel weights of the data in [0, 1] (``boundary="extend"`` only): 0 makes a pixel
        missing data, which the estimate must predict without seeing (hold-out validation).

    Returns
    -------
    dict of int to np.ndarray
        The estimate after each requested number of iterations (shape of ``image``).
    """
    wanted = sorted({int(n) for n in iterations})
    if not wanted or wanted[0] < 0:
        raise ValueError(f"iterations must be non-negative integers, got {list(iterations)}")
    background = float(background)
    if not np.isfinite(background) or background < 0:
        raise ValueError(f"background must be a finite non-negative number, got {background}")
    op = psf if isinstance(psf, PSFConvolution) else PSFConvolution(psf, backend=backend)
    op = op.to(device)
    if isinstance(image, torch.Tensor):
        x = image.to(device=device, dtype=dtype)
        squeeze = False
    else:
        x = torch.as_tensor(np.asarray(image), device=device, dtype=dtype)[None, None]
        squeeze = True
    if x.ndim - 2 != op.ndim:
        raise ValueError(f"image is {x.ndim - 2}D but the PSF is {op.ndim}D")
    if boundary not in ("zero", "extend"):
        raise ValueError(f"boundary must be 'zero' or 'extend', got {boundary!r}")
    if weights is not None and boundary != "extend":
        raise ValueError("data weights need boundary='extend'")
    if boundary == "extend":
        return _extended_series(x, op, wanted, init, clip, background, on_iteration, squeeze, weights)
    out: dict[int, np.ndarray] = {}

    def keep(n: int, u: torch.Tensor) -> None:
        v = torch.clamp(u, -1.0, 1.0) if clip else u
        # A copy: the update runs in place, and on the CPU .numpy() would share u's memory.
        arr = v.detach().cpu().numpy().copy()
        out[n] = arr[0, 0] if squeeze else arr

    with torch.no_grad():
        u = _initial(x, init, background)
        shift = background + _EPS
        step = _fft_step(op, x, shift) if op.choose_backend(tuple(x.shape[2:])) == "fft" else None
        done = 0
        if wanted[0] == 0:
            keep(0, u)
        for n in wanted:
            while done < n:
                if step is None:
                    u = u * op.adjoint(x / (op(u) + shift))
                else:
                    step(u)
                done += 1
                if on_iteration is not None:
                    on_iteration(done, u)
            if n > 0:
                keep(n, u)
    return out


def _extended_iterates(
    x: torch.Tensor,
    op: PSFConvolution,
    start: torch.Tensor,
    background: float,
    weights: torch.Tensor | None = None,
) -> Iterator[torch.Tensor]:
    """Lucy-Richardson with the object estimated beyond the image: ``u`` on the image padded by half
    the PSF, ``u <- u * P^T(w x / (P u + b)) / P^T w`` with ``w`` one on the image (or the given
    data weights), zero outside. Yields the image part of ``u`` after every iteration (a view of a
    tensor the next iteration replaces)."""
    half = [k // 2 for k in op.kernel_shape]
    spatial = tuple(x.shape[2:])
    inner = (..., *(slice(h, h + n) for h, n in zip(half, spatial)))
    ext_shape = (*x.shape[:2], *(n + 2 * h for n, h in zip(spatial, half)))
    weight = x.new_zeros(ext_shape)
    weight[inner] = 1.0 if weights is None else weights
    # Where the padding sees little of the image, P^T w is small and the update would be noise:
    # those pixels keep their value (a factor of 1).
    norm = op.adjoint(weight)
    small = norm < 1e-3
    norm = torch.where(small, torch.ones_like(norm), norm)
    pad = []
    for h in reversed(half):
        pad += [h, h]
    u = torch.nn.functional.pad(start, pad, mode="replicate")
    ratio = x.new_zeros(ext_shape)
    shift = background + _EPS
    while True:
        ratio[inner] = weight[inner] * x / (op(u)[inner] + shift)
        factor = op.adjoint(ratio) / norm
        u = u * torch.where(small, torch.ones_like(factor), factor)
        yield u[inner]


def _extended_series(
    x: torch.Tensor,
    op: PSFConvolution,
    wanted: list[int],
    init: float | str | np.ndarray,
    clip: bool,
    background: float,
    on_iteration: Callable[[int, torch.Tensor], None] | None,
    squeeze: bool,
    weights: np.ndarray | None = None,
) -> dict[int, np.ndarray]:
    w = None
    if weights is not None:
        w = torch.as_tensor(np.asarray(weights), dtype=x.dtype, device=x.device)
        if tuple(w.shape) != tuple(x.shape[2:]):
            raise ValueError(f"weights shape {tuple(w.shape)} differs from the image shape {tuple(x.shape[2:])}")
    out: dict[int, np.ndarray] = {}

    def keep(n: int, v: torch.Tensor) -> None:
        v = torch.clamp(v, -1.0, 1.0) if clip else v
        arr = v.detach().cpu().numpy().copy()
        out[n] = arr[0, 0] if squeeze else arr

    with torch.no_grad():
        start = _initial(x, init, background)
        if wanted[0] == 0:
            keep(0, start)
        iterates = _extended_iterates(x, op, start, background, w)
        for done in range(1, wanted[-1] + 1):
            u = next(iterates)
            if on_iteration is not None:
                on_iteration(done, u)
            if done in wanted:
                keep(done, u)
    return out


def richardson_lucy_refine(
    estimate: np.ndarray,
    image: np.ndarray,
    psf: np.ndarray | PSFConvolution,
    *,
    offset: float = 0.0,
    iterations: int = 1,
    weights: np.ndarray | None = None,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Lucy-Richardson steps started from ``estimate``, the object extended beyond the image.

    A data-consistency step after another method (the network): each step rescales the estimate
    by how much light its reblurred version misses or adds at every pixel, which corrects a local
    over- or under-estimate of the intensity and, repeated, amplifies noise like any
    Lucy-Richardson iteration.

    Parameters
    ----------
    estimate, image : np.ndarray
        The starting estimate and the recorded image, same shape, both in recorded units (the
        camera ``offset`` included).
    psf : np.ndarray or PSFConvolution
        The PSF (sum 1).
    offset : float
        Subtracted from both (the image clipped at 0) and added back to the result.
    iterations : int
        Steps (at least 1).
    weights : np.ndarray, optional
        Per-pixel data weights in [0, 1]; 0 makes a pixel missing data (hold-out validation).
    device : str or torch.device
        Where to compute.

    Returns
    -------
    np.ndarray
        Float32, the image's shape, in recorded units.
    """
    n = int(iterations)
    return richardson_lucy_refine_series(estimate, image, psf, [n], offset=offset, weights=weights, device=device)[n]


def richardson_lucy_refine_series(
    estimate: np.ndarray,
    image: np.ndarray,
    psf: np.ndarray | PSFConvolution,
    iterations: Iterable[int],
    *,
    offset: float = 0.0,
    weights: np.ndarray | None = None,
    device: str | torch.device = "cpu",
) -> dict[int, np.ndarray]:
    """:func:`richardson_lucy_refine` after each of several step counts, from one run.

    Parameters
    ----------
    estimate, image, psf, offset, weights, device
        As for :func:`richardson_lucy_refine`.
    iterations : iterable of int
        Step counts to keep (each at least 1).

    Returns
    -------
    dict of int to np.ndarray
        The estimate after each step count (float32, recorded units).
    """
    estimate = np.asarray(estimate, np.float32)
    image = np.asarray(image, np.float32)
    if estimate.shape != image.shape:
        raise ValueError(f"estimate shape {estimate.shape} differs from the image shape {image.shape}")
    wanted = [int(n) for n in iterations]
    counts = sorted(set(wanted))
    if not counts or counts[0] < 1:
        raise ValueError(f"iterations must be positive integers, got {wanted!r}")
    start = np.clip(estimate - np.float32(offset), 0.0, None)
    # Lucy-Richardson is multiplicative: a pixel that starts at zero stays there.
    floor = 1e-3 * max(float(start.mean()), 1e-12)
    data = np.clip(image - np.float32(offset), 0.0, None)
    series = richardson_lucy_series(
        data, psf, counts, init=np.maximum(start, floor), boundary="extend", weights=weights, device=device
    )
    return {n: series[n] + np.float32(offset) for n in counts}


def richardson_lucy_tensors(
    x: torch.Tensor, op: PSFConvolution, iterations: Iterable[int], background: float = 0.0
) -> list[torch.Tensor]:
    """Lucy-Richardson estimates of a batch, object extended beyond the image, without leaving torch.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, *spatial)`` non-negative data (clip it first), on the operator's device.
    op : PSFConvolution
        The PSF.
    iterations : iterable of int
        Positive iteration counts; one estimate per count, in the given order.
    background : float
        Constant background in the forward model.

    Returns
    -------
    list of torch.Tensor
        Estimates of ``x``'s shape. Every sample starts from its own mean.
    """
    counts = [int(n) for n in iterations]
    if not counts or min(counts) < 1:
        raise ValueError(f"iterations must be positive integers, got {counts}")
    with torch.no_grad():
        dims = tuple(range(2, x.ndim))
        start = torch.clamp(x.mean(dim=dims, keepdim=True) - background, min=1e-6).expand_as(x).contiguous()
        kept: dict[int, torch.Tensor] = {}
        iterates = _extended_iterates(x, op, start, background)
        for done in range(1, max(counts) + 1):
            u = next(iterates)
            if done in counts:
                kept[done] = u.clone()
    return [kept[n] for n in counts]


def _fft_step(op: PSFConvolution, x: torch.Tensor, shift: float):
    """One in-place Lucy-Richardson update on cached transforms: four FFTs and no temporaries
    beyond the spectra (the operator's general path allocates and crops at every call)."""
    spatial = tuple(x.shape[2:])
    fshape, otf, otf_adj = op.fft_plan(spatial, x.device, x.dtype)
    dims = tuple(range(-op.ndim, 0))

    # One zero-padded buffer for both transforms: only its first N samples per axis are ever
    # written, so the padding stays zero and is not refilled at every FFT.
    buffer = x.new_zeros((*x.shape[:2], *fshape))
    inner = buffer[(..., *(slice(0, s) for s in spatial))]

    def step(u: torch.Tensor) -> None:
        inner.copy_(u)
        blurred = inverse_fft_cropped(torch.fft.rfftn(buffer, dim=dims).mul_(otf), fshape, spatial)
        torch.div(x, blurred.add_(shift), out=inner)
        u.mul_(inverse_fft_cropped(torch.fft.rfftn(buffer, dim=dims).mul_(otf_adj), fshape, spatial))

    return step


def richardson_lucy(
    image: np.ndarray,
    psf: np.ndarray | PSFConvolution,
    iterations: int = 10,
    *,
    init: float | str | np.ndarray = "mean",
    clip: bool = False,
    background: float = 0.0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    backend: Backend = "auto",
    boundary: str = "zero",
) -> np.ndarray:
    """Lucy-Richardson deconvolution.

    Parameters
    ----------
    image : np.ndarray
        2D or 3D image, non-negative intensities.
    psf : np.ndarray or PSFConvolution
        The kernel (normalized to sum 1) or a ready operator.
    iterations : int
        Number of iterations.
    init : {"mean", "image"}, float or array
        Starting estimate; ``0.5`` (with ``clip=True``) reproduces scikit-image.
    clip : bool
        Clip the result to [-1, 1] like scikit-image.
    background : float
        Constant background in the forward model ``P u + b`` (e.g. the camera offset), >= 0.
    device, dtype, backend
        Where and how to compute (float64 for reference comparisons).
    boundary : {"zero", "extend"}
        Whether the object is zero outside the image or continues beyond it (see
        :func:`richardson_lucy_series`).

    Returns
    -------
    np.ndarray
        The estimate, same shape as ``image``.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.random.default_rng(0).random((32, 32))
    >>> richardson_lucy(img, np.ones((3, 3)) / 9, 5).shape
    (32, 32)
    """
    return richardson_lucy_series(
        image,
        psf,
        [iterations],
        init=init,
        clip=clip,
        background=background,
        device=device,
        dtype=dtype,
        backend=backend,
        boundary=boundary,
    )[iterations]
