"""PSF convolution forward + backward: FFT against direct, 2D kernels 5-63 and 3D kernels 3-31.

    python benchmarks/fft_speed.py [--quick]

Prints one JSON row per size with both times and their ratio from the same run, and whether the
`auto` backend picked the faster one (the paper reports 2.3x in 3D with 17^3 and 14x with a larger
PSF, on a GPU).
"""

from __future__ import annotations

import argparse
import json

from siamdecon.benchmark.speed import fft_speed_table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        rows = fft_speed_table(kernels_2d=(5, 17), kernels_3d=(3, 9), size_2d=128, size_3d=32)
    else:
        rows = fft_speed_table()
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
