"""The check's fallback on a volume read block by block (OME-Zarr) against the same volume in memory.

    python benchmarks/lazy_fallback.py [--case 3d-confocal/membranes] [--shape 24,192,192]
                                       [--chunks 16,48,48] [--method spitfire]
                                       [--out docs/performance/lazy_fallback.jsonl]

Writes one microscopy-suite case at ``--shape`` as an OME-Zarr store with small chunks and as a
TIFF, and runs ``deconvolve_files`` on both with the fast default and its held-out check, the check
made to choose its best ``--method`` candidate (the fallback is what is measured, not the verdict).
The store is read block by block: fallback blocks of at least four margins of two PSF sizes per
axis (``siamdecon.batch.FALLBACK_BLOCK``), each computed with its margin. Reports each output's
PSNR against the truth (as the microscopy benchmark scores it), their largest and mean difference
over the in-memory output's standard deviation, the candidate and the seconds. One JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from siamdecon import make_config
from siamdecon.batch import deconvolve_files
from siamdecon.benchmark.microscopy import microscopy_cases
from siamdecon.io import write_image
from siamdecon.metrics import evaluate
from siamdecon.stack import read_provenance, read_stack


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="3d-confocal/membranes")
    ap.add_argument("--shape", default="24,192,192")
    ap.add_argument("--chunks", default="16,48,48", help="the store's chunks (z,y,x)")
    ap.add_argument("--method", default="spitfire", choices=("spitfire", "lucy-richardson"))
    ap.add_argument("--out", default="docs/performance/lazy_fallback.jsonl")
    args = ap.parse_args()
    import zarr
    from ome_zarr.writer import write_image as write_ome

    from siamdecon import holdout
    from siamdecon.batch import FALLBACK_BLOCK, FALLBACK_MARGIN

    shape = tuple(int(n) for n in args.shape.split(","))
    case = next(iter(microscopy_cases(patterns=[args.case], shapes={len(shape): shape})))
    chunks = tuple(int(n) for n in args.chunks.split(","))
    config = make_config("fast", case.noisy.ndim)
    original = holdout.check
    chosen: list[str] = []

    def fall_back(*a, **kw):
        report = original(*a, **kw)
        winner = next(c for c in report.classical if c.name == args.method)
        chosen.append(winner.label)
        return dataclasses.replace(report, winner=winner)

    holdout.check = fall_back
    row: dict = {"case": case.key, "shape": list(case.noisy.shape), "psf": list(case.psf.shape)}
    row.update(chunks=list(chunks), fallback_block=FALLBACK_BLOCK, fallback_margin=FALLBACK_MARGIN)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        np.save(d / "psf.npy", case.psf)
        write_image(d / "vol.tif", case.noisy)
        group = zarr.open_group(str(d / "vol.zarr"), mode="w", zarr_format=2)
        write_ome(case.noisy, group, scale_factors=[], axes="zyx", storage_options={"chunks": chunks})
        outputs = {}
        for name, src, dst in (("memory", "vol.tif", "out.tif"), ("blocks", "vol.zarr", "out.zarr")):
            t = time.perf_counter()
            deconvolve_files(d / src, d / dst, str(d / "psf.npy"), config=config, progress=False, log=lambda _m: None)
            row[f"{name}_seconds"] = round(time.perf_counter() - t, 1)
            outputs[name] = np.asarray(read_stack(d / dst).data, dtype=np.float32)
            record = json.loads(read_provenance(d / dst)["check.c0"])
            assert record["fell_back"], record
            row[f"{name}_winner"] = record["winner"]
            row[f"{name}_psnr"] = round(evaluate(case.to_truth(outputs[name]), case.clean)["psnr"], 3)
    diff = np.abs(outputs["blocks"] - outputs["memory"])
    row["max_difference_over_std"] = round(float(diff.max() / outputs["memory"].std()), 4)
    row["mean_difference_over_std"] = round(float(diff.mean() / outputs["memory"].std()), 5)
    row["input_psnr"] = round(evaluate(case.to_truth(case.noisy), case.clean)["psnr"], 3)
    print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
