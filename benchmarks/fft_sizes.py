"""FFT sizes: the rule ``fast_fft_size`` uses against the usual 5-smooth rule (issue #4).

    python benchmarks/fft_sizes.py [--quick]

For padded lengths where the two rules differ, prints one JSON row with the time of an
``rfftn``/``irfftn`` round trip of a square (2D) or cubic (3D) array at each rule's size, the
fastest of four alternated runs each, and their ratio from the same run (> 1: the current rule
is faster).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch

from siamdecon.operators import fast_fft_size


def five_smooth(n: int) -> int:
    """The usual rule: smallest integer >= n with prime factors 2, 3 and 5 only."""
    m = n
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def _round_trip(shape: tuple[int, ...]) -> Callable[[], torch.Tensor]:
    x = torch.rand(1, 1, *shape)
    dims = tuple(range(-len(shape), 0))
    return lambda: torch.fft.irfftn(torch.fft.rfftn(x, dim=dims), s=shape, dim=dims)


def _ms(fn: Callable[[], torch.Tensor], repeat: int) -> float:
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    lengths = {
        2: [121, 130, 161, 222, 243, 271, 330, 370, 410, 450, 560, 610, 700],
        3: [55, 87, 110, 123, 135],
    }
    if args.quick:
        lengths = {2: [121, 222], 3: [55]}
    ratios = []
    for ndim, ns in lengths.items():
        for n in ns:
            old, new = five_smooth(n), fast_fft_size(n)
            if old == new:
                continue
            fns = {"five_smooth": _round_trip((old,) * ndim), "current": _round_trip((new,) * ndim)}
            repeat = max(1, int(3e7 / old**ndim))
            times: dict[str, list[float]] = {k: [] for k in fns}
            for f in fns.values():
                f()
            for _ in range(4):
                for k, f in fns.items():
                    times[k].append(_ms(f, repeat))
            best = {k: min(v) for k, v in times.items()}
            ratios.append(best["five_smooth"] / best["current"])
            row = {
                "ndim": ndim,
                "length": n,
                "five_smooth_size": old,
                "current_size": new,
                "five_smooth_ms": round(best["five_smooth"], 4),
                "current_ms": round(best["current"], 4),
                "speedup": round(ratios[-1], 3),
            }
            print(json.dumps(row), flush=True)
    geo = float(torch.tensor(ratios).log().mean().exp())
    print(json.dumps({"summary": "geometric mean speed-up", "value": round(geo, 3), "cases": len(ratios)}))


if __name__ == "__main__":
    main()
