"""Image quality metrics of the benchmark protocol.

All metrics compare an estimate with the ground truth after clipping the estimate to [0, 1]
(the truth is in [0, 1]); PSNR and SSIM come from scikit-image with ``data_range=1`` stated
explicitly. MI is the mutual information of a 256-bin joint histogram normalized by the joint
entropy; SMI is the same on the 2D DCT-II of each image divided by its L2 norm.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

__all__ = ["rmse", "psnr", "ssim", "mutual_information", "spectral_mutual_information", "evaluate"]


def _prep(estimate: np.ndarray, truth: np.ndarray, clip: bool = True) -> tuple[np.ndarray, np.ndarray]:
    est = np.asarray(estimate, dtype=np.float64)
    ref = np.asarray(truth, dtype=np.float64)
    if est.shape != ref.shape:
        raise ValueError(f"estimate shape {est.shape} differs from ground truth shape {ref.shape}")
    if clip:
        est = np.clip(est, 0.0, 1.0)
    return est, ref


def rmse(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Root mean squared error (estimate clipped to [0, 1])."""
    est, ref = _prep(estimate, truth)
    return float(np.sqrt(mean_squared_error(ref, est)))


def psnr(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB with ``data_range=1``."""
    est, ref = _prep(estimate, truth)
    return float(peak_signal_noise_ratio(ref, est, data_range=1.0))


def ssim(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Structural similarity with ``data_range=1`` (scikit-image defaults otherwise)."""
    est, ref = _prep(estimate, truth)
    return float(structural_similarity(ref, est, data_range=1.0))


def _normalized_mi(a: np.ndarray, b: np.ndarray, bins: int = 256) -> float:
    hist, _, _ = np.histogram2d(a.ravel(), b.ravel(), bins=bins)
    p = hist / hist.sum()
    px = p.sum(axis=1)
    py = p.sum(axis=0)
    nz = p > 0
    h_xy = -np.sum(p[nz] * np.log(p[nz]))
    h_x = -np.sum(px[px > 0] * np.log(px[px > 0]))
    h_y = -np.sum(py[py > 0] * np.log(py[py > 0]))
    if h_xy <= 0:
        return 1.0
    return float((h_x + h_y - h_xy) / h_xy)


def mutual_information(estimate: np.ndarray, truth: np.ndarray, bins: int = 256) -> float:
    """Mutual information (256-bin joint histogram) divided by the joint entropy."""
    est, ref = _prep(estimate, truth)
    return _normalized_mi(est, ref, bins)


def spectral_mutual_information(estimate: np.ndarray, truth: np.ndarray, bins: int = 256) -> float:
    """Normalized mutual information of the L2-normalized 2D DCT-II spectra (2D images only)."""
    est, ref = _prep(estimate, truth)
    if est.ndim != 2:
        raise ValueError("spectral mutual information is defined for 2D images")

    def spec(a: np.ndarray) -> np.ndarray:
        s = sfft.dctn(a, type=2)
        n = np.linalg.norm(s)
        return s / n if n > 0 else s

    return _normalized_mi(spec(est), spec(ref), bins)


def evaluate(estimate: np.ndarray, truth: np.ndarray) -> dict[str, float | None]:
    """All metrics: ``psnr``, ``ssim``, ``rmse``, ``mi`` and ``smi`` (``None`` for 3D data).

    SSIM of a volume needs at least 7 pixels per axis (scikit-image's window).
    """
    if min(np.shape(truth)) < 7:
        raise ValueError(f"SSIM needs at least 7 pixels on every axis, got shape {np.shape(truth)}")
    out: dict[str, float | None] = {
        "psnr": psnr(estimate, truth),
        "ssim": ssim(estimate, truth),
        "rmse": rmse(estimate, truth),
        "mi": mutual_information(estimate, truth),
    }
    out["smi"] = spectral_mutual_information(estimate, truth) if np.ndim(truth) == 2 else None
    return out
