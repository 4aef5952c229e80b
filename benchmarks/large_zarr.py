"""An OME-Zarr volume larger than the memory the run uses: peak memory and time per voxel at three sizes.

    python benchmarks/large_zarr.py [--depths 48,144,448] [--out docs/io/large_zarr.json]

Each volume is (depth, 1024, 1024) float32 in chunks of 32x128x128, written chunk by chunk (never
whole in memory). `siamdecon deconvolve in.zarr -o out.zarr` then runs in a child process whose peak
resident memory (the whole process tree, sampled every 50 ms) and wall time are measured; the
largest volume's float32 size is compared with that peak.

The network is deliberately tiny (1 feature, 1 level, no Lucy-Richardson start, 20 training
steps, tiles of 128 with batch 1): this measures the streaming I/O (statistics chunk by chunk,
patches from a bounded pool, prediction block by block into the output store), not the method's
quality. The default 3D network costs far more per voxel on this CPU (about 0.3-1 M voxels/s instead
of about 1-4 M); its memory stays bounded the same way, by tile and block size.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from _io_common import gaussian_psf, machine, run_measured, save, siamdecon_cmd


def make_volume(path: Path, depth: int, side: int = 1024) -> None:
    import zarr
    from ome_zarr.writer import write_multiscales_metadata

    if path.exists():
        shutil.rmtree(path)
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    arr = group.create_array("0", shape=(1, 1, depth, side, side), chunks=(1, 1, 32, 128, 128), dtype="float32")
    rng = np.random.default_rng(depth)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    pattern = 40 + 30 * np.sin(yy / 23.0) * np.cos(xx / 17.0)
    for z in range(0, depth, 32):
        n = min(32, depth - z)
        # A smooth pattern varying with depth, plus noise: cheap to make, and not a constant.
        slab = pattern[None] * (1 + 0.2 * np.sin((z + np.arange(n, dtype=np.float32))[:, None, None] / 9.0))
        arr[0, 0, z : z + n] = slab + rng.normal(0, 2, slab.shape).astype(np.float32)
    write_multiscales_metadata(
        group,
        [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 0.3, 0.1, 0.1]}]}],
        axes=[{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}]
        + [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"],
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--depths", default="48,144,448")
    ap.add_argument("--out", type=Path, default=Path("docs/io/large_zarr.json"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/siamdecon-large-zarr"))
    ap.add_argument("--append", action="store_true", help="add the rows to those already in --out")
    args = ap.parse_args()
    from siamdecon import make_config

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    np.save(work / "psf.npy", gaussian_psf((9, 9, 9), (1.5, 1.0, 1.0)))
    cfg = make_config(
        "fast",
        3,
        prior={"source": "none"},
        network={"width": 1, "levels": 1, "skip": "add", "norm": "none"},
        training={"steps": 20, "batch_size": 2, "patch_size": 48, "start": "none"},
        inference={"tile_size": 128, "tile_overlap": 8, "context": 4, "batch_size": 1},
    )
    cfg.save(work / "tiny.yaml")
    rows = []
    for depth in [int(v) for v in args.depths.split(",")]:
        src, dst = work / f"in{depth}.zarr", work / f"out{depth}.zarr"
        make_volume(src, depth)
        shutil.rmtree(dst, ignore_errors=True)
        cmd = siamdecon_cmd("deconvolve", str(src), "--psf", str(work / "psf.npy"), "-o", str(dst),
                            "--config", str(work / "tiny.yaml"), "-q")  # fmt: skip
        run = run_measured(cmd, timeout=3600)
        voxels = depth * 1024 * 1024
        row = {
            "shape": [1, 1, depth, 1024, 1024],
            "voxels": voxels,
            "float32_gib": round(voxels * 4 / 2**30, 3),
            **run,
            "us_per_voxel": round(run["seconds"] / voxels * 1e6, 4),
            "volume_over_peak_rss": round(voxels * 4 / 2**20 / run["peak_rss_mb"], 2),
        }
        print(row)
        rows.append(row)
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(dst, ignore_errors=True)
    if args.append and args.out.exists():
        import json

        rows = json.loads(args.out.read_text())["rows"] + rows
    save(args.out, {"rows": rows, "config": cfg.model_dump(mode="json"), "machine": machine()})


if __name__ == "__main__":
    main()
