"""A 2-channel x 5-time-point x 32x256x256 OME-TIFF deconvolved end to end by the CLI.

    python benchmarks/hyperstack.py [--out docs/io/hyperstack.json] [--work /tmp/siamdecon-hyperstack]

The stack is synthetic filaments (two channels, moving a little between time points), blurred with
the paper's 3D PSF and given Poisson-Gaussian camera noise, stored as uint16 OME-TIFF with voxel
sizes. `siamdecon deconvolve` then runs with its defaults (fast preset; one model per channel
trained across the 5 time points) in a child process whose wall time and peak resident memory are
measured.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from _io_common import machine, run_measured, save, siamdecon_cmd


def make_stack(work: Path) -> tuple[Path, Path]:
    import tifffile
    from scipy.signal import fftconvolve

    from siamdecon.psf import generate_psf
    from siamdecon.simulate import filament_phantom

    rng = np.random.default_rng(0)
    psf = generate_psf(ndim=3)
    tifffile.imwrite(work / "psf.tif", psf)
    stack = np.zeros((5, 2, 32, 256, 256), dtype=np.uint16)
    for c in range(2):
        truth = filament_phantom((32, 256, 256), seed=c)
        for t in range(5):
            moved = np.roll(truth, shift=(0, 3 * t, -2 * t), axis=(0, 1, 2))
            blurred = np.clip(fftconvolve(moved, psf, mode="same"), 0, None)
            counts = rng.poisson(blurred * 400 + 20) + rng.normal(100, 3, blurred.shape)
            stack[t, c] = np.clip(counts, 0, 65535).astype(np.uint16)
    meta = {"axes": "TCZYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1, "PhysicalSizeZ": 0.3}
    meta["Channel"] = {"Name": ["488", "561"]}
    tifffile.imwrite(work / "stack.ome.tif", stack, ome=True, metadata=meta)
    return work / "stack.ome.tif", work / "psf.tif"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("docs/io/hyperstack.json"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/siamdecon-hyperstack"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    stack, psf = make_stack(args.work)
    out = args.work / "out.ome.tif"
    run = run_measured(
        siamdecon_cmd("deconvolve", str(stack), "--psf", str(psf), "--psf", str(psf), "-o", str(out), "-q")
    )
    from siamdecon.stack import read_provenance, read_stack

    result = read_stack(out)
    prov = read_provenance(out)
    save(
        args.out,
        {
            "input": {
                "axes": "TCZYX",
                "shape": [5, 2, 32, 256, 256],
                "dtype": "uint16",
                "mb": stack.stat().st_size / 2**20,
            },
            "output": {
                "axes": result.axes,
                "shape": list(result.shape),
                "dtype": result.dtype,
                "voxel_size": result.spacing,
            },  # fmt: skip
            "provenance": {k: prov[k] for k in sorted(prov) if k.startswith(("model.", "preset", "loss", "steps"))},
            "run": run,
            "machine": machine(),
        },
    )


if __name__ == "__main__":
    main()
