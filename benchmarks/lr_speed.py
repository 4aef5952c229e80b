"""Lucy-Richardson: siamdecon's FFT operator against scikit-image, same output (issue #4, target 5).

    python benchmarks/lr_speed.py [--quick]

Prints JSON rows: case, iterations, seconds for both (fastest of three alternated runs), speed-up
ratio (from the same run) and the max absolute difference of the outputs (scikit-image's start 0.5
and clipping, float32 input). `fft_only_s` times the bare transforms the method cannot avoid (one for
the PSF, then per iteration a forward and an inverse real FFT for each of the two convolutions, at
the same padded size) in the same rounds; `fft_ceiling_speedup` is scikit-image's time over it, the
speed-up a zero-overhead implementation on these FFTs would reach.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from skimage.restoration import richardson_lucy as sk_rl

from siamdecon.classical import richardson_lucy
from siamdecon.operators import PSFConvolution


def _psf(ndim: int, size: int = 31) -> np.ndarray:
    grid = np.meshgrid(*[np.arange(size) - size // 2] * ndim, indexing="ij")
    r2 = sum(g.astype(np.float64) ** 2 for g in grid)
    k = np.exp(-r2 / (2 * 4.0**2))
    return (k / k.sum()).astype(np.float32)


def _bare_ffts(shape: tuple[int, ...], psf: np.ndarray, iterations: int):
    fshape = PSFConvolution(psf).fft_plan(shape, torch.device("cpu"), torch.float32)[0]
    dims = tuple(range(-len(fshape), 0))
    real = torch.rand(1, 1, *fshape)
    spectrum = torch.fft.rfftn(real, dim=dims)

    def run() -> None:
        torch.fft.rfftn(real, dim=dims)
        for _ in range(2 * iterations):
            torch.fft.rfftn(real, dim=dims)
            torch.fft.irfftn(spectrum, s=fshape, dim=dims)

    return run, fshape


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller volume, 10 iterations only")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    cases = [("2d 512x512", rng.random((512, 512)).astype(np.float32), _psf(2))]
    shape3 = (32, 128, 128) if args.quick else (64, 256, 256)
    cases.append((f"3d {'x'.join(map(str, shape3))}", rng.random(shape3).astype(np.float32), _psf(3)))
    rows = []
    for name, img, psf in cases:
        for n in (10,) if args.quick else (10, 50):
            # Alternate the two, three rounds each, and keep each one's fastest: single timings
            # of a 50 ms job vary by up to 1.5x on this shared machine.
            sk_times, our_times, fft_times = [], [], []
            bare, fshape = _bare_ffts(img.shape, psf, n)
            for _ in range(3):
                t = time.perf_counter()
                ref = sk_rl(img, psf, num_iter=n)
                sk_times.append(time.perf_counter() - t)
                t = time.perf_counter()
                ours = richardson_lucy(img, psf, n, init=0.5, clip=True)
                our_times.append(time.perf_counter() - t)
                t = time.perf_counter()
                bare()
                fft_times.append(time.perf_counter() - t)
            sk_s, our_s, fft_s = min(sk_times), min(our_times), min(fft_times)
            rows.append(
                {
                    "case": name,
                    "psf": f"31^{img.ndim}",
                    "iterations": n,
                    "skimage_s": sk_s,
                    "siamdecon_s": our_s,
                    "speedup": sk_s / our_s,
                    "fft_size": list(fshape),
                    "fft_only_s": fft_s,
                    "fft_ceiling_speedup": sk_s / fft_s,
                    "max_abs_diff": float(np.abs(ref - ours).max()),
                }
            )
            print(json.dumps(rows[-1]))


if __name__ == "__main__":
    main()
