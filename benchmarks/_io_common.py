"""Helpers of the benchmarks: run a command and measure its wall time and peak memory; JSON-lines logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def run_measured(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 900) -> dict:
    """Run ``cmd``; return its wall time, exit code and the peak resident memory of its process tree.

    The tree is sampled every 50 ms with psutil (the workers of a local Dask cluster included).
    """
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, _ = proc.communicate(timeout=timeout)
    stop.set()
    thread.join()
    return {
        "command": " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd)),
        "seconds": round(time.perf_counter() - start, 2),
        "peak_rss_mb": round(peak / 2**20, 1),
        "returncode": proc.returncode,
        "output_tail": out.decode(errors="replace")[-600:],
    }


def siamdecon_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "siamdecon", *args]


def gaussian_psf(shape: tuple[int, ...], sigma: tuple[float, ...]) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    k = np.exp(-sum(g**2 / (2 * s**2) for g, s in zip(grids, sigma, strict=True)))
    return (k / k.sum()).astype(np.float32)


def machine() -> dict:
    import torch

    return {
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
    }


def save(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")


def emit(path: Path, row: dict) -> None:
    """Print ``row`` as one JSON line and append it to the JSON-lines file ``path``."""
    line = json.dumps(row)
    print(line, flush=True)
    with path.open("a") as f:
        f.write(line + "\n")


def make_folder(work: Path, files: int, side: int) -> Path:
    """A fresh ``work`` folder with ``files`` noisy 2D TIFFs of ``side``^2 in ``raw/`` and the paper's
    2D PSF as ``psf.tif``; returns ``work``."""
    import shutil

    import tifffile

    from siamdecon.psf import generate_psf

    shutil.rmtree(work, ignore_errors=True)
    (work / "raw").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(files):
        tifffile.imwrite(work / "raw" / f"img{i}.tif", (rng.poisson(50, (side, side)) + 100).astype(np.float32))
    tifffile.imwrite(work / "psf.tif", generate_psf(ndim=2))
    return work
