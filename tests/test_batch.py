"""Real microscopy files from the command line: channels, time points, PSFs, OME-Zarr, folders and faults."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from siamdecon import batch as batch_module
from siamdecon import make_config
from siamdecon.cli import app
from siamdecon.stack import read_provenance, read_stack

runner = CliRunner()
FAST = ["--steps", "1", "--prior", "none", "--no-check", "-q"]


def gaussian(shape, sigma):
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    k = np.exp(-sum(g**2 / (2 * s**2) for g, s in zip(grids, sigma, strict=True)))
    return (k / k.sum()).astype(np.float32)


@pytest.fixture
def timelapse(tmp_path, rng):
    """A 2-channel, 3-time-point, 2D OME-TIFF with voxel sizes, and one PSF per channel."""
    data = (rng.random((2, 2, 32, 36)) * 100).astype(np.uint16)
    meta = {"axes": "TCYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1, "Channel": {"Name": ["a", "b"]}}
    tifffile.imwrite(tmp_path / "cells.ome.tif", data, ome=True, metadata=meta)
    np.save(tmp_path / "p0.npy", gaussian((5, 5), (0.8, 0.8)))
    np.save(tmp_path / "p1.npy", gaussian((7, 7), (1.2, 1.2)))
    return tmp_path


def _ok(result):
    assert result.exit_code == 0, result.output
    return result


def _err(result, pattern):
    import re

    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "Traceback" not in result.output
    assert re.search(pattern, result.output), result.output


def test_multichannel_timelapse_one_model_per_channel_and_metadata(timelapse):
    d = timelapse
    args = ["deconvolve", str(d / "cells.ome.tif"), "--psf", str(d / "p0.npy"), "--psf", str(d / "p1.npy")]
    _ok(runner.invoke(app, [*args, "-o", str(d / "out.ome.tif"), "--save-model", str(d / "m.pt"), *FAST]))
    out = read_stack(d / "out.ome.tif")
    assert out.axes == "TCYX" and out.shape == (2, 2, 32, 36) and out.dtype == "float32"
    assert out.spacing == pytest.approx((0.1, 0.1)) and out.channel_names == ["a", "b"]
    prov = read_provenance(d / "out.ome.tif")
    for key in ("siamdecon_version", "preset", "loss", "steps", "seed", "psf.c0.file", "psf.c1.sha256"):
        assert key in prov
    assert prov["psf.c1.file"].endswith("p1.npy") and prov["trained_on.c0.timepoints"] == "0,1"
    from siamdecon import Deconvolver

    models = [Deconvolver.load(d / f"m_c{c}.pt") for c in (0, 1)]
    assert [m.axes for m in models] == ["TCYX", "TCYX"]
    assert models[0].provenance["timepoints"] == [0, 1] and models[1].provenance["channel"] == 1
    assert models[0].normalization != models[1].normalization  # each channel its own statistics
    # The saved models reproduce the result through `predict`, one per channel.
    _ok(
        runner.invoke(
            app,
            ["predict", str(d / "cells.ome.tif"), "--model", str(d / "m_c0.pt"), "--model", str(d / "m_c1.pt")]
            + ["-o", str(d / "again.ome.tif"), "-q"],
        )
    )
    assert np.allclose(read_stack(d / "again.ome.tif").data, out.data, atol=1e-5)


def test_per_timepoint_models_and_uint16_output(timelapse):
    d = timelapse
    args = ["deconvolve", str(d / "cells.ome.tif"), "--psf", str(d / "p0.npy"), "--psf", str(d / "p1.npy")]
    _ok(runner.invoke(app, [*args, "-o", str(d / "u.tif"), "--per-timepoint", "--dtype", "uint16"]
                      + ["--save-model", str(d / "m.pt"), *FAST]))  # fmt: skip
    assert sorted(p.name for p in d.glob("m_c*_t*.pt")) == [f"m_c{c}_t{t}.pt" for c in (0, 1) for t in (0, 1)]
    out = read_stack(d / "u.tif")
    assert out.dtype == "uint16" and out.shape == (2, 2, 32, 36)
    prov = read_provenance(d / "u.tif")
    assert float(prov["uint16.c1.scale"]) > 0 and "uint16.c0.offset" in prov and prov["per_timepoint"] == "True"


def test_psf_count_mismatch_and_wrong_dimensions_are_clear_errors(timelapse):
    d = timelapse
    three = ["--psf", str(d / "p0.npy")] * 3
    before = set(p.name for p in d.iterdir())
    _err(runner.invoke(app, ["deconvolve", str(d / "cells.ome.tif"), *three, "-o", str(d / "o.tif"), *FAST]),
         r"3 PSF files for the 2 channels")  # fmt: skip
    np.save(d / "p3d.npy", gaussian((5, 7, 7), (1, 1, 1)))
    _err(runner.invoke(app, ["deconvolve", str(d / "cells.ome.tif"), "--psf", str(d / "p3d.npy"), "-o",
                             str(d / "o.tif"), *FAST]), r"PSF .* is 3D .* but the image is 2D")  # fmt: skip
    assert set(p.name for p in d.iterdir()) == before | {"p3d.npy"}
    res = _ok(runner.invoke(app, ["deconvolve", str(d / "cells.ome.tif"), "--psf", str(d / "p0.npy"), "-o",
                                  str(d / "one.tif"), *FAST]))  # fmt: skip
    assert "one PSF" in res.output and "for all 2 channels" in res.output


def test_psf_voxel_size_is_resampled_or_assumed_equal(tmp_path, rng):
    img = (rng.random((48, 48)) * 50).astype(np.float32)
    tifffile.imwrite(tmp_path / "img.ome.tif", img, ome=True, metadata={"axes": "YX", "PhysicalSizeX": 0.1,
                     "PhysicalSizeY": 0.1})  # fmt: skip
    np.save(tmp_path / "img.npy", img)
    np.save(tmp_path / "psf.npy", gaussian((9, 9), (1.2, 1.2)))
    base = ["deconvolve", "--psf", str(tmp_path / "psf.npy"), *FAST[:-1]]
    res = _ok(runner.invoke(app, [*base, str(tmp_path / "img.ome.tif"), "-o", str(tmp_path / "a.tif"),
                                  "--psf-voxel-size", "0.05,0.05"]))  # fmt: skip
    assert "resampled it to the image's grid" in res.output and "9 x 9 -> 5 x 5" in res.output
    assert read_provenance(tmp_path / "a.tif")["psf.c0.resampled_from"] == "0.05,0.05"
    res = _ok(runner.invoke(app, [*base, str(tmp_path / "img.npy"), "-o", str(tmp_path / "b.tif")]))
    assert "assuming they share one grid" in res.output


def test_psf_auto_uses_the_image_grid_or_refuses_without_one(tmp_path, rng):
    vol = (rng.random((12, 40, 40)) * 50).astype(np.float32)
    tifffile.imwrite(tmp_path / "v.ome.tif", vol, ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": 0.2,
                     "PhysicalSizeY": 0.2, "PhysicalSizeZ": 0.5})  # fmt: skip
    auto = ["--psf", "auto", "--na", "0.8", "--wavelength", "0.52", "--immersion", "water"]
    res = _ok(runner.invoke(app, ["deconvolve", str(tmp_path / "v.ome.tif"), *auto, "-o", str(tmp_path / "o.tif"),
                                  *FAST[:-1]]))  # fmt: skip
    assert "generated PSF for channel 0" in res.output and "water immersion (n=1.333)" in res.output
    assert "cut to fit the image" in res.output  # 12 planes cannot hold the whole axial extent
    prov = read_provenance(tmp_path / "o.tif")
    assert prov["psf.c0.source"] == "auto" and prov["psf.c0.wavelength"] == "0.52"
    np.save(tmp_path / "v.npy", vol)
    _err(runner.invoke(app, ["deconvolve", str(tmp_path / "v.npy"), *auto, "-o", str(tmp_path / "n.tif"), *FAST]),
         r"--psf auto needs the voxel size .* --voxel-size Z,Y,X")  # fmt: skip
    _ok(runner.invoke(app, ["deconvolve", str(tmp_path / "v.npy"), *auto, "-o", str(tmp_path / "n.tif"),
                            "--voxel-size", "0.5,0.2,0.2", *FAST]))  # fmt: skip
    _err(runner.invoke(app, ["deconvolve", str(tmp_path / "v.npy"), "--psf", str(tmp_path / "v.npy"), "--na", "1.4",
                             "-o", str(tmp_path / "x.tif")]), r"--na: only with --psf auto")  # fmt: skip


@pytest.fixture
def zarr_volume(tmp_path, rng):
    zarr = pytest.importorskip("zarr")
    from ome_zarr.writer import write_image

    data = (rng.random((2, 1, 12, 64, 48)) * 100).astype(np.float32)
    group = zarr.open_group(str(tmp_path / "vol.zarr"), mode="w", zarr_format=2)
    write_image(data, group, scale_factors=[], axes="tczyx", storage_options={"chunks": (1, 1, 6, 32, 32)},
                coordinate_transformations=[[{"type": "scale", "scale": [1, 1, 0.5, 0.2, 0.2]}]])  # fmt: skip
    np.save(tmp_path / "psf3.npy", gaussian((5, 7, 7), (1.0, 1.2, 1.2)))
    return tmp_path


def test_ome_zarr_in_and_out_block_by_block(zarr_volume):
    d = zarr_volume
    args = ["deconvolve", str(d / "vol.zarr"), "--psf", str(d / "psf3.npy"), "--save-model", str(d / "m.pt"), *FAST]
    _ok(runner.invoke(app, [*args, "-o", str(d / "out.zarr")]))
    out = read_stack(d / "out.zarr")
    assert out.axes == "TCZYX" and out.shape == (2, 1, 12, 64, 48) and out.spacing == pytest.approx((0.5, 0.2, 0.2))
    assert read_provenance(d / "out.zarr")["psf.c0.file"].endswith("psf3.npy")
    assert [p.name for p in d.iterdir() if p.name.startswith(".")] == []  # the partial store was renamed
    # Block by block gives what the whole volume in memory gives, to well within the result's noise.
    from siamdecon import Deconvolver

    model = Deconvolver.load(d / "m.pt")
    whole = model.predict(np.asarray(read_stack(d / "vol.zarr").data[1, 0]))
    assert np.abs(np.asarray(out.data[1, 0]) - whole).max() < 0.02 * whole.std()


def _prefer_steps(monkeypatch, steps: int) -> None:
    """Make the held-out check prefer the network after ``steps`` Lucy-Richardson steps.

    Its classical candidates are Lucy-Richardson's alone: Spitfire's runs (most of a 3D check's
    time) cannot change a verdict that is forced anyway."""
    import dataclasses

    from siamdecon import holdout

    original = holdout.check

    def prefer(*args, **kwargs):
        kwargs.setdefault("spitfire_regs", ())
        report = original(*args, **kwargs)
        refined = next(c for c in report.networks if c.params.get("lr_steps") == steps)
        return dataclasses.replace(report, network=refined, winner=refined)

    monkeypatch.setattr(holdout, "check", prefer)


@pytest.fixture
def check_prefers_the_step(monkeypatch):
    """The held-out check, made to prefer the network after one Lucy-Richardson step."""
    _prefer_steps(monkeypatch, 1)


@pytest.fixture
def check_prefers_sixteen_steps(monkeypatch):
    """The held-out check, made to prefer the network after 16 Lucy-Richardson steps."""
    _prefer_steps(monkeypatch, 16)


def test_block_by_block_output_gets_the_lucy_richardson_step_the_check_chose(zarr_volume, check_prefers_the_step):
    """An OME-Zarr volume predicted block by block gets the step as the whole volume would: each
    block's step runs on the block and a PSF-sized margin."""
    from siamdecon import Deconvolver
    from siamdecon.classical import richardson_lucy_refine

    d = zarr_volume
    args = ["deconvolve", str(d / "vol.zarr"), "--psf", str(d / "psf3.npy"), "--save-model", str(d / "m.pt")]
    args += ["--steps", "1", "--prior", "none", "--check", "-q", "-o", str(d / "out.zarr")]
    _ok(runner.invoke(app, args))
    record = json.loads(read_provenance(d / "out.zarr")["check.c0"])
    assert record["winner"] == "network + 1 Lucy-Richardson step"
    model = Deconvolver.load(d / "m.pt")
    volume = np.asarray(read_stack(d / "vol.zarr").data[1, 0], dtype=np.float32)
    plain = model.predict(volume)
    whole = richardson_lucy_refine(plain, volume, model.psf, offset=record["noise"]["offset"])
    out = np.asarray(read_stack(d / "out.zarr").data[1, 0])
    assert np.abs(out - whole).max() < 0.02 * whole.std()
    assert np.abs(whole - plain).max() > 0.1 * whole.std()  # the step is larger than the tolerance


def test_block_by_block_output_gets_several_steps_close_to_the_whole_volumes(zarr_volume, check_prefers_sixteen_steps):
    """Sixteen steps couple voxels 16 PSFs apart: each block's steps run on the block and a margin
    of two PSFs (blocks at least eight PSFs wide), which keeps them close to the whole volume's."""
    from siamdecon import Deconvolver
    from siamdecon.classical import richardson_lucy_refine

    d = zarr_volume
    # A small PSF, so that the blocks (chunks, at least 8 PSF sizes per axis) do not span the volume.
    np.save(d / "psf_small.npy", gaussian((3, 3, 3), (0.7, 0.7, 0.7)))
    args = ["deconvolve", str(d / "vol.zarr"), "--psf", str(d / "psf_small.npy"), "--save-model", str(d / "m.pt")]
    args += ["--steps", "1", "--prior", "none", "--check", "-q", "-o", str(d / "out.zarr")]
    _ok(runner.invoke(app, args))
    record = json.loads(read_provenance(d / "out.zarr")["check.c0"])
    assert record["winner"] == "network + 16 Lucy-Richardson steps"
    model = Deconvolver.load(d / "m.pt")
    volume = np.asarray(read_stack(d / "vol.zarr").data[1, 0], dtype=np.float32)
    plain = model.predict(volume)
    whole = richardson_lucy_refine(plain, volume, model.psf, offset=record["noise"]["offset"], iterations=16)
    out = np.asarray(read_stack(d / "out.zarr").data[1, 0])
    assert np.abs(out - whole).max() < 0.02 * whole.std()
    assert np.abs(whole - plain).max() > 0.1 * whole.std()  # the steps are larger than the tolerance
    blocks = batch_module._fallback_block_shape((6, 32, 32), (3, 3, 3), volume.shape)
    assert blocks[1] < volume.shape[1] and blocks[2] < volume.shape[2]  # there were seams to get right


def test_block_by_block_output_gets_the_classical_estimate_the_check_fell_back_to(zarr_volume, monkeypatch):
    """An OME-Zarr volume read block by block gets the classical estimate the check chose, each
    block's computed with a margin: close to that method's estimate on the whole volume (Spitfire's
    blocks: tests/test_holdout.py)."""
    import dataclasses

    from siamdecon import batch, holdout
    from siamdecon.psf import normalize_psf

    original = holdout.check
    reports = []

    def choose(*args, **kwargs):
        # One candidate, the one to fall back to (a shorter check).
        kwargs.update(lr_iterations=(10,), spitfire_regs=())
        report = original(*args, **kwargs)
        reports.append(dataclasses.replace(report, winner=report.classical[0]))
        return reports[-1]

    monkeypatch.setattr(holdout, "check", choose)
    # Fallback blocks of one margin (a PSF size twice) rather than four: four blocks of 12x32x32
    # with their margins cover this small volume, rather than one.
    monkeypatch.setattr(batch, "FALLBACK_BLOCK", 1)
    assert batch._fallback_block_shape((12, 32, 32), (5, 7, 7), (12, 64, 48)) == (12, 32, 32)
    d = zarr_volume
    # Tiles of 32: prediction blocks of 12x32x32.
    make_config("fast", 3, tile_size=32, tile_overlap=8, context=8).save(d / "c.yaml")
    args = ["deconvolve", str(d / "vol.zarr"), "--psf", str(d / "psf3.npy"), "--steps", "1", "--prior", "none"]
    args += ["--check", "--config", str(d / "c.yaml"), "--save-model", str(d / "m.pt"), "-o", str(d / "out.zarr")]
    result = _ok(runner.invoke(app, args))
    assert "block by block" in result.output and "instead" in result.output, result.output
    record = json.loads(read_provenance(d / "out.zarr")["check.c0"])
    assert record["fell_back"] is True and record["winner"] == reports[0].winner.label
    assert reports[0].winner.name == "lucy-richardson"
    volume = np.asarray(read_stack(d / "vol.zarr").data[1, 0], dtype=np.float32)
    whole = reports[0].estimate(volume, normalize_psf(np.load(d / "psf3.npy")))
    out = np.asarray(read_stack(d / "out.zarr").data[1, 0])
    assert np.abs(out - whole).max() < 0.02 * whole.std()
    # The blocks' estimate is the classical method's, not the network's.
    from siamdecon import Deconvolver

    network = Deconvolver.load(d / "m.pt").predict(volume)
    assert np.abs(out - network).max() > 0.1 * whole.std()


def test_fallback_blocks_are_whole_prediction_blocks_of_at_least_four_margins():
    from siamdecon.batch import FALLBACK_BLOCK, FALLBACK_MARGIN, _fallback_block_shape

    assert FALLBACK_BLOCK == 4 and FALLBACK_MARGIN == 2
    # A widefield PSF 23x49x49: margins 44x96x96 voxels; blocks of 96 grow to 4 margins (384), in
    # whole blocks, and stop at the volume.
    assert _fallback_block_shape((64, 96, 96), (23, 49, 49), (64, 1000, 300)) == (64, 384, 300)
    assert _fallback_block_shape((512, 512), (9, 9), (4096, 4096)) == (512, 512)


def test_zarr_missing_chunks_gives_an_error_and_no_output(zarr_volume):
    d = zarr_volume
    chunk = next(p for p in (d / "vol.zarr").rglob("*") if p.is_file() and p.name[0].isdigit())
    chunk.unlink()
    _err(runner.invoke(app, ["deconvolve", str(d / "vol.zarr"), "--psf", str(d / "psf3.npy"), "-o",
                             str(d / "out.zarr"), *FAST]), r"missing 1 of its \d+ chunks")  # fmt: skip
    assert not (d / "out.zarr").exists() and not list(d.glob(".out.zarr*"))


@pytest.fixture
def folder(tmp_path, rng):
    src = tmp_path / "raw"
    src.mkdir()
    for i in range(3):
        tifffile.imwrite(src / f"img{i}.tif", (rng.random((32, 32)) * 100).astype(np.float32))
    np.save(tmp_path / "psf.npy", gaussian((7, 7), (1.0, 1.0)))
    return tmp_path


def _manifest(path):
    return json.loads((path / "siamdecon-manifest.json").read_text())


def test_folder_run_skips_done_files_refuses_changed_settings_and_survives_a_bad_file(folder):
    d = folder
    (d / "raw" / "broken.tif").write_bytes(b"II*\x00" + b"\x00" * 20)
    args = ["deconvolve", str(d / "raw"), "--psf", str(d / "psf.npy"), "-o", str(d / "out")]
    res = runner.invoke(app, [*args, *FAST])
    assert res.exit_code == 1 and "3 done, 0 skipped, 1 failed" in res.output
    assert "broken.tif" in res.output and not (d / "out" / "broken.tif").exists()
    assert sorted(p.name for p in (d / "out").iterdir()) == [f"img{i}.tif" for i in range(3)] + [
        "siamdecon-manifest.json"
    ]
    (d / "raw" / "broken.tif").unlink()
    mtimes = {p.name: p.stat().st_mtime_ns for p in (d / "out").glob("img*.tif")}
    res = _ok(runner.invoke(app, [*args, *FAST]))
    assert "0 done, 3 skipped, 0 failed" in res.output
    assert {p.name: p.stat().st_mtime_ns for p in (d / "out").glob("img*.tif")} == mtimes
    res = runner.invoke(app, [*args, "--steps", "2", "--prior", "none", "-q"])
    _err(res, r"other settings \(changed: .*training.steps 1 -> 2")
    res = _ok(runner.invoke(app, [*args, "--steps", "2", "--prior", "none", "-q", "--overwrite"]))
    assert "3 done, 0 skipped" in res.output
    # A glob gives the same files.
    res = _ok(runner.invoke(app, ["deconvolve", str(d / "raw" / "img*.tif"), "--psf", str(d / "psf.npy"),
                                  "-o", str(d / "out"), "--steps", "2", "--prior", "none", "-q"]))  # fmt: skip
    assert "0 done, 3 skipped" in res.output


def test_unwritable_output_folder_is_refused_before_any_work(folder):
    d = folder
    target = "/proc/siamdecon-no-such-folder" if os.geteuid() == 0 else str(d / "locked" / "out")
    if os.geteuid() != 0:
        (d / "locked").mkdir(mode=0o500)
    res = runner.invoke(app, ["deconvolve", str(d / "raw"), "--psf", str(d / "psf.npy"), "-o", target, *FAST])
    assert res.exit_code == 2 and "error:" in res.output and "Traceback" not in res.output, res.output


def test_full_disk_stops_the_run_and_keeps_what_it_finished(folder, monkeypatch):
    import siamdecon.stack as stack_module
    from siamdecon.batch import deconvolve_files
    from siamdecon.config import make_config

    real = tifffile.imwrite
    calls = {"n": 0}

    def imwrite(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", imwrite)
    assert stack_module is not None
    cfg = {2: make_config("fast", 2, steps=1, prior={"source": "none"})}
    summary = deconvolve_files(str(folder / "raw"), folder / "out", folder / "psf.npy", config=cfg, progress=False)
    assert "disk full" in summary.stopped
    assert [r.status for r in summary.results] == ["done", "failed", "not started"]
    names = sorted(p.name for p in (folder / "out").iterdir())
    assert names == ["img0.tif", "siamdecon-manifest.json"]  # no partial file
    assert sorted(_manifest(folder / "out")["files"]) == ["img0.tif", "img1.tif"]
    assert _manifest(folder / "out")["files"]["img1.tif"]["status"] == "failed"


def test_kill_minus_9_in_a_folder_run_then_resume_does_every_file_once(folder):
    d = folder
    for i in range(3, 6):
        tifffile.imwrite(d / "raw" / f"img{i}.tif", np.random.default_rng(i).random((32, 32)).astype(np.float32))
    cmd = [sys.executable, "-m", "siamdecon", "deconvolve", str(d / "raw"), "--psf", str(d / "psf.npy"), "-o",
           str(d / "out"), "--steps", "6", "--prior", "none", "-q"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    done_first: set[str] = set()
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
            try:
                files = _manifest(d / "out")["files"]
            except (OSError, ValueError):
                continue
            done_first = {k for k, v in files.items() if v["status"] == "done"}
            if len(done_first) >= 2:
                break
        assert proc.poll() is None, "the run finished before it could be killed; give it more work"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    done_first = {k for k, v in _manifest(d / "out")["files"].items() if v["status"] == "done"}
    assert 2 <= len(done_first) < 6
    mtimes = {n: (d / "out" / n).stat().st_mtime_ns for n in done_first}
    res = subprocess.run(cmd[:-1], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"{6 - len(done_first)} done, {len(done_first)} skipped, 0 failed" in res.stderr
    manifest = _manifest(d / "out")
    assert sorted(manifest["files"]) == [f"img{i}.tif" for i in range(6)]
    assert {n for n, v in manifest["files"].items() if v["run"] == 1} == done_first
    assert {n: (d / "out" / n).stat().st_mtime_ns for n in done_first} == mtimes  # not redone
    leftovers = [p.name for p in (d / "out").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the killed run's temporary file was removed


def _camera_image(tmp_path, seed):
    """A blurred 2D object in photon counts (offset 100, Poisson noise) as img.tif, its PSF as psf.npy."""
    from scipy import signal as sps

    from siamdecon.simulate import fluorescence_2d

    rng = np.random.default_rng(seed)
    psf = gaussian((9, 9), (1.6, 1.6))
    truth = 100.0 + 400.0 * fluorescence_2d(64, seed=seed)
    blurred = sps.fftconvolve(np.pad(truth, 4, mode="reflect"), psf, mode="valid")
    noisy = (100 + rng.poisson(np.clip(blurred - 100, 0, None))).astype(np.uint16)
    tifffile.imwrite(tmp_path / "img.tif", noisy)
    np.save(tmp_path / "psf.npy", psf)
    return truth, noisy, psf


def test_check_falls_back_to_the_classical_estimate_and_says_so(tmp_path):
    """A network trained for one step from scratch (the paper preset's, with no Lucy-Richardson start)
    is no deconvolution: the held-out check, asked for, sees it, writes the classical result (or, where
    Lucy-Richardson steps from the network's output predict the held-out pixels better than any
    classical estimate, those steps), logs the verdict and records it in the file's provenance."""
    truth, _, _ = _camera_image(tmp_path, seed=0)
    base = ["deconvolve", str(tmp_path / "img.tif"), "--psf", str(tmp_path / "psf.npy"), "--steps", "1"]
    base += ["--preset", "paper"]
    result = _ok(runner.invoke(app, [*base, "--check", "-o", str(tmp_path / "checked.tif")]))
    assert "held-out pixels" in result.output
    record = json.loads(read_provenance(tmp_path / "checked.tif")["check.c0"])
    assert record["winner"] != "network"
    if record["fell_back"]:
        assert "instead" in result.output
    else:
        assert "Lucy-Richardson steps from it" in result.output
    checked = read_stack(tmp_path / "checked.tif").data
    _ok(runner.invoke(app, [*base, "-q", "-o", str(tmp_path / "plain.tif")]))  # the paper preset: no check
    assert "check.c0" not in read_provenance(tmp_path / "plain.tif")
    plain = read_stack(tmp_path / "plain.tif").data
    # The fallback is closer to the object than the untrained network's output.
    assert np.mean((checked - truth) ** 2) < np.mean((plain - truth) ** 2)


def test_the_lucy_richardson_step_the_check_chose_is_what_gets_written(tmp_path, check_prefers_the_step):
    """When the check prefers the network after one Lucy-Richardson step, the file holds that:
    the plain run's output (--no-check) with the step applied, and the provenance says so."""
    from siamdecon.classical import richardson_lucy_refine

    _, noisy, psf = _camera_image(tmp_path, seed=1)
    base = ["deconvolve", str(tmp_path / "img.tif"), "--psf", str(tmp_path / "psf.npy"), "-q"]
    _ok(runner.invoke(app, [*base, "-o", str(tmp_path / "checked.tif")]))
    _ok(runner.invoke(app, [*base, "--no-check", "-o", str(tmp_path / "plain.tif")]))
    record = json.loads(read_provenance(tmp_path / "checked.tif")["check.c0"])
    assert record["winner"] == "network + 1 Lucy-Richardson step" and record["fell_back"] is False
    plain = read_stack(tmp_path / "plain.tif").data.astype(np.float32)
    checked = read_stack(tmp_path / "checked.tif").data.astype(np.float32)
    expected = richardson_lucy_refine(plain, noisy.astype(np.float32), psf, offset=record["noise"]["offset"])
    np.testing.assert_allclose(checked, expected, rtol=1e-4, atol=1e-3 * float(np.abs(expected).max()))
    assert np.abs(checked - plain).max() > 1e-3 * float(np.abs(plain).max())  # the step did something
