"""FFT operator overhead against a bare rfftn/irfftn round trip of the same padded size (issue #4, target 4).

    python benchmarks/fft_overhead.py [--quick]

For each case, times `PSFConvolution(psf, backend="fft")` and a bare
`irfftn(rfftn(x, s=M), s=M)` at the operator's own FFT size `M`, both forward only and forward +
backward, in the same run (lower quartile of 20-100 repeats, the two
called alternately). Also times the direct backend and reports
whether `auto` picked the faster of the two. Prints one JSON row per case.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from siamdecon.operators import PSFConvolution
from siamdecon.psf import generate_psf


def _paired_times(fn_a, fn_b, repeats: int) -> tuple[float, float]:
    """Lower-quartile times of two functions, called alternately so that both see the same
    machine state (on a shared 2-core machine the upper tail is other processes' noise)."""
    fn_a(), fn_b()
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return statistics.quantiles(times_a, n=4)[0], statistics.quantiles(times_b, n=4)[0]


def _case(name: str, shape: tuple[int, ...], psf, repeats: int, with_direct: bool) -> dict:
    op = PSFConvolution(psf, backend="fft")
    nd = op.ndim
    dims = tuple(range(-nd, 0))
    spatial = shape[2:]
    fshape = op._fft_shape(spatial)
    x = torch.rand(shape)

    def bare(t: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfftn(torch.fft.rfftn(t, s=fshape, dim=dims), s=fshape, dim=dims)

    def fwd_bwd(fn):
        def run() -> None:
            xg = x.clone().requires_grad_(True)
            fn(xg).sum().backward()

        return run

    with torch.no_grad():
        op_fwd, bare_fwd = _paired_times(lambda: op(x), lambda: bare(x), repeats)
    op_fb, bare_fb = _paired_times(fwd_bwd(op), fwd_bwd(bare), repeats)
    row = {
        "case": name,
        "input": list(shape),
        "psf": list(op.kernel_shape),
        "fft_size": list(fshape),
        "operator_forward_s": op_fwd,
        "bare_roundtrip_forward_s": bare_fwd,
        "overhead_forward": op_fwd / bare_fwd,
        "operator_fwd_bwd_s": op_fb,
        "bare_roundtrip_fwd_bwd_s": bare_fb,
        "overhead_fwd_bwd": op_fb / bare_fb,
    }
    if with_direct:
        direct = PSFConvolution(psf, backend="direct")
        fft_fb, direct_fb = _paired_times(fwd_bwd(op), fwd_bwd(direct), max(4, repeats // 10))
        faster = "fft" if fft_fb <= direct_fb else "direct"
        row.update(
            {
                "direct_fwd_bwd_s": direct_fb,
                "auto_picks": PSFConvolution(psf).choose_backend(spatial),
                "faster": faster,
            }
        )
        row["auto_is_faster"] = row["auto_picks"] == faster
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    psf2, psf3 = generate_psf(ndim=2), generate_psf(ndim=3)
    cases = [
        ("2d training batch", (8, 1, 64, 64), psf2),
        ("2d 512 image", (1, 1, 512, 512), psf2),
        ("3d training batch", (4, 1, 48, 48, 48), psf3),
        ("3d 64x256x256 volume", (1, 1, 64, 256, 256), psf3),
    ]
    if args.quick:
        cases = cases[:1] + [("3d training batch", (2, 1, 32, 32, 32), psf3)]
    for name, shape, psf in cases:
        repeats = 20 if len(shape) == 5 and shape[-1] >= 256 else 100
        print(json.dumps(_case(name, shape, psf, repeats, with_direct=shape[-1] <= 64)), flush=True)


if __name__ == "__main__":
    main()
