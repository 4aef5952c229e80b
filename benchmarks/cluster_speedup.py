"""Eight files on one process, on a LocalCluster of 1 worker and of 2 workers: wall time and speed-up.

    python benchmarks/cluster_speedup.py [--files 8] [--steps 10] [--out docs/io/cluster_speedup.json]

Eight 192x192 float32 images (synthetic, camera noise) are deconvolved with the fast 2D preset
trained from scratch for --steps steps (small, to keep the run short; the work per file is then
training plus an 8-fold test-time-augmented prediction). Each configuration writes its own output
folder; the outputs of the three are compared. On a machine with N cores the ideal speed-up of 2
workers over 1 is min(2, N / threads per job): the local cluster gives each worker cores / workers
torch threads, so 1 worker gets all cores and 2 workers one core each on a 2-core machine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from _io_common import machine, make_folder, run_measured, save, siamdecon_cmd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path("docs/io/cluster_speedup.json"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/siamdecon-cluster"))
    args = ap.parse_args()
    from siamdecon.stack import read_stack

    work = make_folder(args.work, args.files, 192)
    common = ["--psf", str(work / "psf.tif"), "--steps", str(args.steps), "--prior", "none", "-q"]
    rows = []
    for name, extra in (("single process", []), ("1 worker", ["--workers", "1"]), ("2 workers", ["--workers", "2"])):
        out = work / name.replace(" ", "_")
        run = run_measured(siamdecon_cmd("deconvolve", str(work / "raw"), "-o", str(out), *common, *extra))
        rows.append({"configuration": name, **run})
        print(rows[-1]["configuration"], rows[-1]["seconds"], "s")
    ref = work / "single_process"
    for row in rows[1:]:
        out = work / row["configuration"].replace(" ", "_")
        row["max_abs_difference_to_single_process"] = float(
            max(np.abs(read_stack(out / f.name).data - read_stack(f).data).max() for f in sorted(ref.glob("*.tif")))
        )
    one = next(r for r in rows if r["configuration"] == "1 worker")["seconds"]
    two = next(r for r in rows if r["configuration"] == "2 workers")["seconds"]
    save(
        args.out,
        {
            "files": args.files,
            "steps": args.steps,
            "rows": rows,
            "speedup_2_over_1": round(one / two, 2),
            "machine": machine(),
        },  # fmt: skip
    )


if __name__ == "__main__":
    main()
