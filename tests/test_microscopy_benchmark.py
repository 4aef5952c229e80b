"""The microscopy suite: case construction, scoring, a tiny run end to end, resume and re-runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from siamdecon.benchmark import write_report
from siamdecon.benchmark.microscopy import (
    GROUPS,
    PSFS,
    MicroscopySettings,
    case_keys,
    microscopy_cases,
    run_microscopy,
)
from siamdecon.benchmark.microscopy_report import summarize_microscopy
from siamdecon.cli import app
from siamdecon.errors import ConfigError
from siamdecon.metrics import psnr

TINY = {2: (48, 48), 3: (16, 32, 32)}
CASES = ("2d-widefield-na1.4/nuclei", "3d-confocal/membranes")


def _settings(**kw):
    base = dict(
        quick=True,
        patterns=CASES,
        shapes=TINY,
        steps=2,
        lr_iterations=8,
        spitfire_regs=(0.99,),
        methods=("input", "lucy-richardson-best", "lucy-richardson-20", "spitfire-best", "wiener", "default"),
    )
    base.update(kw)
    return MicroscopySettings(**base)


def test_every_group_names_known_psfs_and_noises():
    keys = case_keys(quick=False)
    assert len(keys) == len(set(keys)) and set(case_keys(quick=True)) <= set(keys)
    for g in GROUPS:
        assert g.psf in PSFS and set(g.quick) <= set(g.structures)
    assert {PSFS[g.psf].ndim for g in GROUPS} == {2, 3}


def test_camera_case_maps_counts_to_the_truth_scale():
    case = next(microscopy_cases(quick=True, patterns=["2d-widefield-na1.4/nuclei"], shapes=TINY))
    cam = case.camera
    assert case.noisy.dtype == np.float32 and np.array_equal(case.noisy, np.round(case.noisy))
    assert case.noisy.min() >= 0 and case.offset == cam.offset == 100
    perfect = case.clean * cam.gain * cam.photons + cam.offset
    assert np.allclose(case.to_truth(perfect), case.clean, atol=1e-5)
    # The recorded data is blurred and noisy: far from the truth, but on its scale.
    raw = case.to_truth(case.noisy)
    assert 10 < psnr(raw, case.clean) < 40
    assert abs(float(raw.mean()) - float(case.clean.mean())) < 0.05
    assert case.psf.shape[0] % 2 == 1 and case.psf.sum() == pytest.approx(1.0, abs=1e-5)


def test_cases_are_reproducible_and_seeded():
    a = next(microscopy_cases(quick=True, patterns=["3d-confocal/*"], shapes=TINY))
    b = next(microscopy_cases(quick=True, patterns=["3d-confocal/*"], shapes=TINY))
    c = next(microscopy_cases(quick=True, patterns=["3d-confocal/*"], shapes=TINY, seed=1))
    assert np.array_equal(a.noisy, b.noisy) and np.array_equal(a.clean, b.clean)
    assert not np.array_equal(a.noisy, c.noisy)


def test_measured_psf_differs_from_the_true_one_but_not_by_much():
    case = next(microscopy_cases(quick=False, patterns=["2d-measured-psf/filaments"], shapes={2: (64, 64)}))
    info = case.info["measured_psf"]
    assert info["beads_used"] >= 5
    assert 0.0 < info["max_error_of_peak"] < 0.2


def test_tiny_suite_end_to_end_resume_and_rerun(tmp_path):
    seen: list[str] = []
    results = run_microscopy(str(tmp_path), _settings(), progress=False, on_entry=lambda k, e: seen.append(k))
    entries = results["entries"]
    assert len(seen) == 2 * 6
    assert json.loads((tmp_path / "results.json").read_text())["entries"].keys() == entries.keys()
    two = entries["2d-widefield-na1.4/nuclei/input"]
    assert {"case", "group", "ndim", "psf", "noise", "structure", "method", "psnr", "ssim", "seconds"} <= set(two)
    case = next(microscopy_cases(quick=True, patterns=["2d-widefield-na1.4/nuclei"], shapes=TINY))
    assert two["psnr"] == pytest.approx(psnr(case.to_truth(case.noisy), case.clean))
    assert 1 <= entries["2d-widefield-na1.4/nuclei/lucy-richardson-best"]["iterations"] <= 8
    assert entries["2d-widefield-na1.4/nuclei/spitfire-best"]["reg"] == 0.99
    assert entries["3d-confocal/membranes/wiener"]["skipped"].startswith("unsupervised_wiener is 2D")
    assert entries["3d-confocal/membranes/default"]["steps"] == 2
    # The default runs the held-out check, as `deconvolve` does, and records its verdict.
    verdict = entries["3d-confocal/membranes/default"]["check"]
    assert verdict["winner"] and verdict["pixels"] > 0 and isinstance(verdict["fell_back"], bool)
    # The oracle is at least as good as the fixed count it includes.
    lr = {m: entries[f"2d-widefield-na1.4/nuclei/lucy-richardson-{m}"]["psnr"] for m in ("best", "20")}
    assert lr["best"] >= lr["20"] - 1e-9 or entries["2d-widefield-na1.4/nuclei/lucy-richardson-best"]["iterations"]

    seen.clear()
    run_microscopy(str(tmp_path), _settings(), progress=False, on_entry=lambda k, e: seen.append(k))
    assert seen == []
    run_microscopy(str(tmp_path), _settings(rerun=("default",)), progress=False, on_entry=lambda k, e: seen.append(k))
    assert sorted(seen) == sorted(f"{c}/default" for c in CASES)
    with pytest.raises(ConfigError, match="other settings"):
        run_microscopy(str(tmp_path), _settings(seed=3), progress=False)

    report = write_report(tmp_path).read_text()
    assert "| 2d-widefield-na1.4 |" in report and "default below best peer" in report
    assert "smoke test" in report  # steps were overridden: the report must not pass it off as the default
    assert (tmp_path / "figures" / "2d-widefield-na1.4.png").exists()
    assert (tmp_path / "figures" / "3d-confocal.png").exists()
    summary = summarize_microscopy(json.loads((tmp_path / "results.json").read_text()))
    assert summary["losses"]["3d-confocal"]["n"] == 1
    best = summary["cases"]["2d-widefield-na1.4/nuclei"]
    assert best["best_peer"] in ("lucy-richardson-best", "spitfire-best")


def test_settings_refuse_unknown_methods_and_patterns():
    with pytest.raises(ConfigError, match="unknown method"):
        MicroscopySettings(methods=("magic",))
    with pytest.raises(ConfigError, match="no case matches"):
        MicroscopySettings(patterns=("nothing-*",))
    with pytest.raises(ConfigError, match="shapes"):
        MicroscopySettings(shapes={2: (8, 8)})


def test_cli_refuses_paper_options_for_the_microscopy_suite(tmp_path):
    res = CliRunner().invoke(app, ["benchmark", "--suite", "microscopy", "-o", str(tmp_path), "--crop", "64"])
    assert res.exit_code == 2 and "--crop" in res.output and "--suite paper" in res.output
    res = CliRunner().invoke(app, ["benchmark", "-o", str(tmp_path), "--quick"])
    assert res.exit_code == 2 and "--suite microscopy" in res.output


def test_cli_runs_a_microscopy_case(tmp_path):
    res = CliRunner().invoke(
        app,
        [
            "benchmark",
            "--suite",
            "microscopy",
            "--quick",
            "--cases",
            "2d-paper/*",
            "--methods",
            "input,lucy-richardson-20,wiener",
            "-o",
            str(tmp_path),
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    text = (tmp_path / "report.md").read_text()
    assert "2d-paper/nuclei" in text and "wiener" in text
