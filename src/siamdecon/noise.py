"""The noise of one image: a camera's gain, offset and read noise, estimated from the image itself.

Fluorescence cameras record ``y = gain * (Poisson(photons) + read noise) + offset``, so the variance
of a pixel grows linearly with its mean: ``var(y) = gain * (E[y] - offset) + read_variance``. The
line is estimated as Foi et al. (IEEE TIP 17, 2008) do: a high-pass residual that the (blurred,
hence smooth) signal barely reaches gives the noise variance at every pixel, binned by the local
mean and fitted robustly. One image holds the line, but not where the offset lies on it: a camera's
read noise and a dim uniform background look the same. The offset is taken where the line's
variance would be that of a typical scientific CMOS camera's read noise (:data:`READ_NOISE_PRIOR`
photo-electrons), and never above the darkest part of the image. When the camera's offset is
known, give it instead (``estimate_noise(image, offset=...)``).

Data already scaled to [0, 1] with Gaussian-dominated noise (the paper's protocol) fit a line with
a tiny slope: the model then is Gaussian noise of nearly constant variance, and the offset is 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

__all__ = ["NoiseModel", "estimate_noise", "READ_NOISE_PRIOR"]

#: Read noise (photo-electrons rms) assumed when placing the offset on the variance line: scientific
#: CMOS cameras have 1-2 e- (EMCCDs below 1 after gain, CCDs 3-10).
READ_NOISE_PRIOR = 1.4

# The second-difference kernel's squared norm (per axis, [1, -2, 1] / sqrt(6) has unit norm): the
# residual then has the noise's variance where the signal is locally linear.
_LAPLACE_1D = np.array([1.0, -2.0, 1.0]) / np.sqrt(6.0)


@dataclass(frozen=True)
class NoiseModel:
    """``var(y) = gain * max(y - offset, 0) + read_variance``, in the image's units.

    Attributes
    ----------
    gain : float
        Counts per photo-electron (the slope of the variance against the mean).
    offset : float
        The level of zero light (counts).
    read_variance : float
        Variance at zero light (counts squared): read noise, dark current.
    """

    gain: float
    offset: float
    read_variance: float

    def variance(self, mean: np.ndarray | float) -> np.ndarray:
        """The noise variance of pixels of expected value ``mean``."""
        return self.gain * np.maximum(np.asarray(mean, dtype=np.float64) - self.offset, 0.0) + self.read_variance

    def photons(self, image: np.ndarray) -> np.ndarray:
        """``image`` in photo-electrons above the offset: ``(image - offset) / gain``."""
        return (np.asarray(image, dtype=np.float64) - self.offset) / self.gain

    @property
    def read_noise(self) -> float:
        """Read noise in photo-electrons."""
        return float(np.sqrt(self.read_variance)) / self.gain

    def to_dict(self) -> dict[str, float]:
        """Plain dictionary (for model files and reports)."""
        return {k: float(v) for k, v in asdict(self).items()}


def _squared_residuals(image: np.ndarray) -> np.ndarray:
    """Squared unit-norm second differences along each axis, ``(ndim, *shape)``: each is the noise
    variance times a chi-square(1) variable where the signal is locally linear along that axis."""
    return np.stack([ndimage.correlate1d(image, _LAPLACE_1D, axis=a, mode="reflect") ** 2 for a in range(image.ndim)])


def estimate_noise(
    image: np.ndarray, bins: int = 24, dark_percentile: float = 0.5, offset: float | None = None
) -> NoiseModel:
    """Estimate the Poisson-Gaussian noise of one image (camera counts, or any intensities).

    Parameters
    ----------
    image : np.ndarray
        2D or 3D raw image.
    bins : int
        Intensity bins the variance is measured in (equal numbers of pixels per bin).
    dark_percentile : float
        Percentile of the smoothed image taken as its darkest level, the most the offset can be.
    offset : float, optional
        The camera's offset when known (counts); the gain and read variance are then fitted to it.

    Returns
    -------
    NoiseModel
        Gain, offset and read variance; the slope is never below a small positive value, so the
        model stays usable on Gaussian-noise data.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> counts = 100 + 2.0 * rng.poisson(np.full((256, 256), 50.0))
    >>> m = estimate_noise(counts)
    >>> round(m.gain, 1), round(m.offset), round(m.read_variance)   # doctest: +SKIP
    (2.0, 100, 0)
    """
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim not in (2, 3) or min(arr.shape) < 5:
        raise ValueError(f"noise estimation needs a 2D or 3D image of at least 5 pixels per axis, got {arr.shape}")
    residual = _squared_residuals(arr)
    # The local mean at the same scale as the residual (a 3-pixel box), away from edges where the
    # signal bends most: the residual there is signal, not noise.
    mean = ndimage.uniform_filter(arr, 3, mode="reflect")
    slope = np.zeros_like(arr)
    for axis in range(arr.ndim):
        g = ndimage.correlate1d(mean, np.array([-0.5, 0.0, 0.5]), axis=axis, mode="reflect")
        slope += g * g
    flat = slope <= np.quantile(slope, 0.5)
    m, r = mean[flat], residual[:, flat]
    order = np.argsort(m)
    # Small images get fewer bins so that each still holds enough pixels for a variance.
    bins = max(1, min(bins, order.size // 100))
    edges = np.linspace(0, order.size, bins + 1).astype(int)
    centres, variances, weights = [], [], []
    for a, b in zip(edges[:-1], edges[1:]):
        if b - a < 20:
            continue
        sel = order[a:b]
        # The mean of the lowest 95 % of chi-square(1) values is 0.7588 times the full mean: robust to
        # the residual's largest values (edges of bright structures) and, unlike the median, not
        # biased by integer counts, whose squared differences take few distinct values.
        centres.append(float(np.mean(m[sel])))
        values = r[:, sel].ravel()
        cut = np.quantile(values, 0.95)
        variances.append(float(values[values <= cut].mean()) / 0.7588)
        weights.append(b - a)
    centres_a, var_a, w_a = np.array(centres), np.array(variances), np.array(weights, dtype=np.float64)
    if centres_a.size < 2 or np.ptp(centres_a) <= 0:
        gain, intercept = 1e-12, float(np.median(var_a)) if var_a.size else float(np.var(arr))
    else:
        # Weighted least squares, then one pass without the bins furthest from the line (edges of
        # bright structures, saturated plateaus).
        gain, intercept = np.polyfit(centres_a, var_a, 1, w=np.sqrt(w_a))
        fitted = gain * centres_a + intercept
        resid = np.abs(var_a - fitted) / np.maximum(fitted, 1e-12)
        keep = resid <= max(np.quantile(resid, 0.8), 0.05)
        if keep.sum() >= 2:
            gain, intercept = np.polyfit(centres_a[keep], var_a[keep], 1, w=np.sqrt(w_a[keep]))
    smooth = ndimage.gaussian_filter(arr, 2.0)
    dark = float(np.percentile(smooth, dark_percentile))
    floor = 1e-6 * max(float(np.var(arr)), 1e-12)
    if not var_a.size:
        # Too few flat pixels to bin: one variance for the whole image.
        var_a, centres_a, w_a = np.array([float(np.median(residual)) / 0.4549]), np.array([dark]), np.ones(1)
    if float(gain) <= floor / max(abs(dark), 1.0):
        # No measurable signal dependence: Gaussian noise of constant variance.
        gain = floor / max(abs(dark), 1.0)
        intercept = float(np.average(var_a, weights=w_a)) - gain * float(np.average(centres_a, weights=w_a))
    if offset is None:
        # Where the variance would be the assumed read noise alone, extrapolated from the darkest
        # bins (near the offset: a small error of the slope moves the line's far intercept a lot),
        # at most the darkest level (there is no light below it), and not below zero for data that
        # has no offset.
        read = gain**2 * READ_NOISE_PRIOR**2
        if centres_a.size:
            darkest = np.argsort(centres_a)[:3]
            at_read = float(np.median(centres_a[darkest] - (var_a[darkest] - read) / gain))
        else:
            at_read = (read - float(intercept)) / gain
        offset = min(max(at_read, min(0.0, dark)), dark)
    read_variance = max(float(intercept) + gain * float(offset), floor)
    return NoiseModel(gain=gain, offset=float(offset), read_variance=read_variance)
