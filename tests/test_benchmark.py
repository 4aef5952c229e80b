from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from siamdecon.benchmark import BenchmarkSettings, fft_speed_table, run_benchmark, summarize, write_report
from siamdecon.cli import app
from siamdecon.errors import ConfigError


def _settings(**kw):
    base = dict(
        images_2d=["camera", "coins"],
        crop=48,
        volumes_3d=1,
        shape_3d=(18, 32, 32),
        steps=2,
        methods=["blind-spot", "siamese-deconvolved"],
        figures=1,
    )
    base.update(kw)
    return BenchmarkSettings(**base)


def test_tiny_benchmark_end_to_end_and_resume(tmp_path):
    seen = []
    results = run_benchmark(tmp_path, _settings(), progress=False, on_entry=lambda k, e: seen.append(k))
    data = json.loads((tmp_path / "results.json").read_text())
    assert data == json.loads(json.dumps(results, default=float))
    entries = data["entries"]
    for case in ("2d/camera", "2d/coins", "3d/filaments0"):
        for method in ("input", "lr-1", "lr-20", "blind-spot", "siamese-deconvolved"):
            e = entries[f"{case}/{method}"]
            assert 0 < e["psnr"] < 60 and 0 <= e["ssim"] <= 1 and e["rmse"] > 0
    assert entries["2d/camera/input"]["smi"] > 0 and entries["3d/filaments0/input"]["smi"] is None
    assert entries["2d/camera/blind-spot"]["train_seconds"] > 0
    assert len(entries["2d/camera/blind-spot"]["history"]) == 2
    summary = summarize(data)
    assert summary["2d"]["lr-best"]["n"] == 2 and summary["3d"]["siamese-deconvolved"]["n"] == 1
    # Resume: nothing is run again.
    seen.clear()
    run_benchmark(tmp_path, _settings(), progress=False, on_entry=lambda k, e: seen.append(k))
    assert seen == []
    # A report from results.json alone, with figures for the first 2D image and the volume.
    report = write_report(
        tmp_path,
        [{"ndim": 2, "kernel": "5^2", "image": "1x32^2", "fft_ms": 1.0, "direct_ms": 2.0, "ratio": 2.0, "auto": "fft"}],
    )
    text = report.read_text()
    assert "| lr-best" in text and "siamese-deconvolved" in text and "22.8" in text and "2.0x" in text
    assert (tmp_path / "figures" / "2d_camera.png").exists()
    assert not (tmp_path / "figures" / "2d_coins.png").exists()
    assert (tmp_path / "figures" / "3d_filaments0.png").exists()
    assert (tmp_path / "figures" / "training_curve.png").exists()
    # Without the kept arrays (removed to keep a report folder small) the figures made stay listed.
    import shutil

    shutil.rmtree(tmp_path / "outputs")
    again = write_report(tmp_path).read_text()
    assert "figures/2d_camera.png" in again and "figures/3d_filaments0.png" in again


def test_resume_refuses_other_settings(tmp_path):
    run_benchmark(tmp_path, _settings(volumes_3d=0, images_2d=["camera"], methods=["blind-spot"]), progress=False)
    with pytest.raises(ConfigError, match="other settings"):
        run_benchmark(
            tmp_path, _settings(volumes_3d=0, images_2d=["camera"], methods=["blind-spot"], steps=3), progress=False
        )


def test_unknown_images_and_methods_are_rejected():
    with pytest.raises(ConfigError, match="unknown 2D image"):
        BenchmarkSettings(images_2d=["lena"])
    with pytest.raises(ConfigError, match="unknown method"):
        BenchmarkSettings(methods=["magic"])


def test_fft_speed_table_rows(tmp_path):
    rows = fft_speed_table(
        kernels_2d=(3, 9), kernels_3d=(3,), size_2d=32, size_3d=12, batch_2d=1, batch_3d=1, out=tmp_path / "fft.json"
    )
    assert [r["kernel"] for r in rows] == ["3^2", "9^2", "3^3"]
    assert all(r["fft_ms"] > 0 and r["direct_ms"] > 0 and r["auto"] in ("fft", "direct") for r in rows)
    assert json.loads((tmp_path / "fft.json").read_text()) == rows


def test_benchmark_command(tmp_path):
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "benchmark",
            "-o",
            str(tmp_path),
            "--images",
            "text",
            "--crop",
            "40",
            "--volumes",
            "0",
            "--methods",
            "siamese-deconvolved",
            "--steps",
            "1",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "report.md").exists()
    res = runner.invoke(app, ["benchmark", "-o", str(tmp_path), "--report-only", "-q"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["benchmark", "-o", str(tmp_path / "x"), "--shape-3d", "1,2", "-q"])
    assert res.exit_code == 2 and "shape-3d" in res.output


def test_default_is_scored_as_deconvolve_writes_it(tmp_path):
    settings = _settings(images_2d=["camera"], crop=64, volumes_3d=0, methods=["default"])
    run_benchmark(tmp_path, settings, progress=False)
    entries = json.loads((tmp_path / "results.json").read_text())["entries"]
    checked, network = entries["2d/camera/default"], entries["2d/camera/default-network"]
    assert checked["check_winner"] and checked["check"]
    assert network["method"] == "default-network" and "check" not in network
    if checked["check_winner"] == "network":
        assert checked["psnr"] == network["psnr"]
    else:
        assert checked["psnr"] != network["psnr"]
    text = write_report(tmp_path).read_text()
    assert "| default-network |" in text and "before the check" in text and "| check s |" in text
    row = next(line for line in text.splitlines() if line.startswith("| default |"))
    assert row.rstrip(" |").split("|")[-1].strip() == f"{checked['check_seconds']:.1f}"
    # An entry from before the check was part of `default` is computed again on resume.
    data = json.loads((tmp_path / "results.json").read_text())
    del data["entries"]["2d/camera/default"]["check"]
    (tmp_path / "results.json").write_text(json.dumps(data))
    seen = []
    run_benchmark(tmp_path, settings, progress=False, on_entry=lambda k, e: seen.append(k))
    assert seen == ["2d/camera/default"]


def test_the_paper_presets_default_is_not_checked_as_deconvolve_does_not_check_it(tmp_path):
    settings = _settings(images_2d=["camera"], crop=48, volumes_3d=0, methods=["default"], preset="paper", steps=1)
    run_benchmark(tmp_path, settings, progress=False)
    entries = json.loads((tmp_path / "results.json").read_text())["entries"]
    assert "check" not in entries["2d/camera/default"] and "2d/camera/default-network" not in entries
    seen = []
    run_benchmark(tmp_path, settings, progress=False, on_entry=lambda k, e: seen.append(k))
    assert seen == []
