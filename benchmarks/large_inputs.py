"""Tiled inference on large inputs: time and peak memory at three sizes (issue #4, target 6).

    python benchmarks/large_inputs.py [--quick]

Each size runs in its own process so that its peak resident memory (ru_maxrss) is its own. The model
is an untrained `fast` model (inference cost does not depend on the weights). Prints JSON rows with
seconds per megapixel, to check that time grows linearly with the number of pixels.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _child(shape: list[int]) -> None:
    import numpy as np

    from siamdecon import Deconvolver, make_config
    from siamdecon.data import standardize
    from siamdecon.psf import generate_psf
    from siamdecon.training import build_network

    ndim = len(shape)
    cfg = make_config("fast", ndim)
    psf = generate_psf(ndim=ndim)
    img = np.random.default_rng(0).random(shape, dtype=np.float32)
    norm = standardize(img[tuple(slice(0, 64) for _ in shape)])[1]
    model = Deconvolver(build_network(cfg, psf, norm), cfg, psf, norm)
    t = time.perf_counter()
    out = model.predict(img)
    seconds = time.perf_counter() - t
    assert out.shape == img.shape
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "shape": shape,
                "megapixels": img.size / 1e6,
                "seconds": seconds,
                "seconds_per_megapixel": seconds / (img.size / 1e6),
                "peak_rss_mb": peak_mb,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", nargs="+", type=int)
    args = ap.parse_args()
    if args.child:
        _child(args.child)
        return
    # 512^2 is a single tile; from 1024^2 up the image is tiled, which is where linearity matters.
    sizes = [[512, 512], [1024, 1024], [1448, 1448], [2048, 2048], [64, 256, 256], [64, 512, 512], [64, 1024, 1024]]
    if args.quick:
        sizes = [[256, 256], [512, 512], [1024, 1024], [32, 128, 128], [32, 256, 256]]
    for shape in sizes:
        res = subprocess.run(
            [sys.executable, __file__, "--child", *map(str, shape)], capture_output=True, text=True, check=True
        )
        print(res.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
