"""Running on Dask: a LocalCluster, a `dask scheduler` with `dask worker` processes, and a killed worker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tifffile

distributed = pytest.importorskip("distributed")
pytest.importorskip("zarr")

from siamdecon.batch import deconvolve_files as _deconvolve_files  # noqa: E402
from siamdecon.config import make_config  # noqa: E402
from siamdecon.stack import read_stack  # noqa: E402


def deconvolve_files(*args, **kwargs):
    # The held-out check is tested in test_holdout/test_batch; here it would only add time.
    return _deconvolve_files(*args, check=False, **kwargs)


CONFIGS = {
    2: make_config("fast", 2, steps=1, prior={"source": "none"}),
    3: make_config("fast", 3, steps=1, prior={"source": "none"}),
}


def _gaussian(shape, sigma):
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    k = np.exp(-sum(g**2 / (2 * sigma**2) for g in grids))
    return (k / k.sum()).astype(np.float32)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Three 2D files, a 3D OME-Zarr, their PSFs, and their single-process results."""
    import zarr
    from ome_zarr.writer import write_image

    d = tmp_path_factory.mktemp("cluster")
    rng = np.random.default_rng(5)
    (d / "raw").mkdir()
    for i in range(3):
        tifffile.imwrite(d / "raw" / f"f{i}.tif", (rng.random((32, 32)) * 100).astype(np.float32))
    np.save(d / "psf.npy", _gaussian((5, 5), 0.9))
    np.save(d / "psf3.npy", _gaussian((5, 5, 5), 0.9))
    group = zarr.open_group(str(d / "vol.zarr"), mode="w", zarr_format=2)
    write_image((rng.random((1, 1, 8, 48, 48)) * 100).astype(np.float32), group, scale_factors=[], axes="tczyx",
                storage_options={"chunks": (1, 1, 8, 24, 24)})  # fmt: skip
    deconvolve_files(str(d / "raw"), d / "serial", d / "psf.npy", config=CONFIGS, progress=False)
    deconvolve_files(str(d / "vol.zarr"), d / "serial.zarr", d / "psf3.npy", config=CONFIGS, progress=False,
                     tile_size=24)  # fmt: skip
    return d


def _same(a, b):
    # Workers run torch with one thread, this process with several: sums in another order.
    return np.allclose(np.asarray(read_stack(a).data), np.asarray(read_stack(b).data), atol=1e-5, rtol=1e-5)


def test_local_cluster_with_two_workers_gives_the_single_process_outputs(work):
    d = work
    summary = deconvolve_files(str(d / "raw"), d / "local", d / "psf.npy", config=CONFIGS, workers=2, progress=False)
    assert summary.ok and len(summary.done) == 3
    for i in range(3):
        assert _same(d / "local" / f"f{i}.tif", d / "serial" / f"f{i}.tif")
    # One OME-Zarr: its blocks are the jobs, written by the workers into one store.
    summary = deconvolve_files(str(d / "vol.zarr"), d / "local.zarr", d / "psf3.npy", config=CONFIGS, workers=2,
                               progress=False, tile_size=24)  # fmt: skip
    assert summary.ok and _same(d / "local.zarr", d / "serial.zarr")


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """`dask scheduler` and two `dask worker` processes on localhost."""
    d = tmp_path_factory.mktemp("dask")
    dask = shutil.which("dask", path=os.path.dirname(sys.executable)) or shutil.which("dask")
    if dask is None:
        pytest.skip("the dask command is not installed")
    info = d / "scheduler.json"
    common = ["--no-dashboard"]
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file",
                               str(info), *common], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]  # fmt: skip
    try:
        deadline = time.time() + 60
        while not info.exists() and time.time() < deadline:
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        for _ in range(2):
            procs.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--nworkers", "1",
                                           "--host", "127.0.0.1", *common],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        with distributed.Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def test_existing_scheduler_with_two_worker_processes_gives_the_same_outputs(work, dask_cluster):
    d = work
    summary = deconvolve_files(
        str(d / "raw"), d / "remote", d / "psf.npy", config=CONFIGS, scheduler=dask_cluster, progress=False
    )
    assert summary.ok and len(summary.done) == 3
    for i in range(3):
        assert _same(d / "remote" / f"f{i}.tif", d / "serial" / f"f{i}.tif")


def test_a_worker_killed_during_a_run_has_its_job_retried_elsewhere(work, dask_cluster):
    d = work
    result: dict = {}

    def run():
        result["summary"] = deconvolve_files(
            str(d / "raw"), d / "killed", d / "psf.npy", config=CONFIGS, scheduler=dask_cluster, progress=False
        )

    with distributed.Client(dask_cluster) as client:
        pids = client.run(os.getpid)
        thread = threading.Thread(target=run)
        thread.start()
        victim = None
        deadline = time.time() + 60
        while victim is None and time.time() < deadline and thread.is_alive():
            busy = [w for w, keys in client.processing().items() if keys]
            if busy:
                victim = busy[0]
            else:
                time.sleep(0.02)
        assert victim is not None, "no job was seen running"
        os.kill(pids[victim], signal.SIGKILL)
        thread.join(timeout=240)
        assert not thread.is_alive()
    summary = result["summary"]
    assert summary.ok and len(summary.done) == 3
    for i in range(3):
        assert _same(d / "killed" / f"f{i}.tif", d / "serial" / f"f{i}.tif")
    assert [p.name for p in (d / "killed").iterdir() if p.name.startswith(".")] == []
