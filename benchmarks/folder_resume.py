"""A folder run killed with SIGKILL part-way, then run again: every file is done exactly once.

    python benchmarks/folder_resume.py [--files 8] [--steps 30] [--out docs/io/folder_resume.json]

The first run is killed (kill -9) once its manifest records two finished files; the second run
must skip those, do the others, and leave no temporary file. Each file's manifest entry records
the run that made it, and the finished files' modification times are checked to be unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from _io_common import machine, make_folder, run_measured, save, siamdecon_cmd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--out", type=Path, default=Path("docs/io/folder_resume.json"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/siamdecon-resume"))
    args = ap.parse_args()
    work = make_folder(args.work, args.files, 256)
    out = work / "out"
    cmd = siamdecon_cmd("deconvolve", str(work / "raw"), "-o", str(out), "--psf", str(work / "psf.tif"),
                        "--steps", str(args.steps), "--prior", "none", "-q")  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / "siamdecon-manifest.json"
    done: set[str] = set()
    while proc.poll() is None:
        time.sleep(0.05)
        try:
            done = {k for k, v in json.loads(manifest.read_text())["files"].items() if v["status"] == "done"}
        except (OSError, ValueError, KeyError):
            continue
        if len(done) >= 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    killed_after = time.perf_counter() - start
    entries = json.loads(manifest.read_text())["files"]
    first = sorted(k for k, v in entries.items() if v["status"] == "done")
    left_by_kill = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    mtimes = {n: (out / n).stat().st_mtime_ns for n in first}
    rerun = run_measured(cmd)
    entries = json.loads(manifest.read_text())["files"]
    per_run = {n: v["run"] for n, v in sorted(entries.items())}
    result = {
        "files": args.files,
        "steps": args.steps,
        "killed_after_seconds": round(killed_after, 2),
        "done_before_the_kill": first,
        "temporary_files_left_by_the_kill": left_by_kill,
        "rerun": rerun,
        "run_that_made_each_file": per_run,
        "every_file_done_exactly_once": sorted(per_run) == [f"img{i}.tif" for i in range(args.files)]
        and all(per_run[n] == 1 for n in first)
        and all(per_run[n] == 2 for n in per_run if n not in first)
        and all((out / n).stat().st_mtime_ns == m for n, m in mtimes.items()),
        "temporary_files_after_the_rerun": sorted(p.name for p in out.iterdir() if p.name.startswith(".")),
        "machine": machine(),
    }
    save(args.out, result)


if __name__ == "__main__":
    main()
