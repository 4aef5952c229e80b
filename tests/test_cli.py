from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from siamdecon.cli import app
from siamdecon.io import read_image, write_image
from siamdecon.simulate import rescale01

runner = CliRunner()

TINY = ["--steps", "3", "--quiet"]


@pytest.fixture
def files(tmp_path, psf2d):
    from skimage import data

    clean = rescale01(data.camera()[100:196, 100:196])
    write_image(tmp_path / "clean.tif", clean)
    np.save(tmp_path / "psf.npy", psf2d)
    return tmp_path


def _deconvolve_clean(d):
    """`deconvolve` of the fixture's clean.tif with psf.npy into o.tif; callers add options."""
    return ["deconvolve", str(d / "clean.tif"), "--psf", str(d / "psf.npy"), "-o", str(d / "o.tif"), "--no-check"]


def _ok(result):
    assert result.exit_code == 0, result.output
    return result


def test_psf_command_reproduces_the_paper_kernel(tmp_path, psf2d, psf3d):
    _ok(runner.invoke(app, ["psf", "-o", str(tmp_path / "p3.tif")]))
    assert np.abs(read_image(tmp_path / "p3.tif").data - psf3d).max() <= 0.01 * psf3d.max()
    _ok(runner.invoke(app, ["psf", "--ndim", "2", "-o", str(tmp_path / "p2.npy")]))
    assert np.abs(np.load(tmp_path / "p2.npy") - psf2d).max() <= 0.01 * psf2d.max()


def test_simulate_deconvolve_predict_evaluate_pipeline(files):
    d = files
    _ok(runner.invoke(app, ["simulate", str(d / "clean.tif"), "--psf", str(d / "psf.npy"), "-o", str(d / "noisy.tif")]))
    noisy = read_image(d / "noisy.tif").data
    assert noisy.shape == (96, 96)
    _ok(
        runner.invoke(
            app,
            [
                "deconvolve",
                str(d / "noisy.tif"),
                "--psf",
                str(d / "psf.npy"),
                "-o",
                str(d / "out.tif"),
                "--save-model",
                str(d / "m.pt"),
                "--loss",
                "blind-spot",
                "--boundary-weight",
                "0.1",
                "--seed",
                "2",
                "--no-check",
                *TINY,
            ],
        )
    )
    out = read_image(d / "out.tif").data
    assert out.shape == noisy.shape and out.dtype == np.float32
    _ok(
        runner.invoke(
            app, ["predict", str(d / "noisy.tif"), "--model", str(d / "m.pt"), "-o", str(d / "again.tif"), "-q"]
        )
    )
    assert np.allclose(read_image(d / "again.tif").data, out, atol=1e-5)
    res = _ok(runner.invoke(app, ["evaluate", str(d / "out.tif"), "--truth", str(d / "clean.tif"), "--json"]))
    scores = json.loads(res.stdout)
    assert set(scores) == {"psnr", "ssim", "rmse", "mi", "smi"}
    _ok(
        runner.invoke(
            app,
            ["lucy-richardson", str(d / "noisy.tif"), "--psf", str(d / "psf.npy"), "-o", str(d / "lr.tif"), "-n", "3"],
        )
    )
    assert read_image(d / "lr.tif").data.shape == (96, 96)


def test_train_then_predict_with_tiles(files):
    d = files
    _ok(runner.invoke(app, ["simulate", str(d / "clean.tif"), "--psf", str(d / "psf.npy"), "-o", str(d / "noisy.npy")]))
    _ok(runner.invoke(app, ["train", str(d / "noisy.npy"), "--psf", str(d / "psf.npy"), "-o", str(d / "m.pt"), *TINY]))
    _ok(
        runner.invoke(
            app,
            [
                "predict",
                str(d / "noisy.npy"),
                "--model",
                str(d / "m.pt"),
                "-o",
                str(d / "o.npy"),
                "--tile-size",
                "48",
                "--tile-overlap",
                "16",
                "-q",
            ],
        )
    )
    assert np.load(d / "o.npy").shape == (96, 96)


def test_config_file_round_trip_through_the_cli(files):
    d = files
    _ok(runner.invoke(app, ["config", "-o", str(d / "c.yaml")]))
    text = (d / "c.yaml").read_text()
    assert "source: auto" in text  # the fast preset starts from the shipped prior for this PSF
    text = re.sub(r"fine_tune_steps: \d+", "fine_tune_steps: 2", text.replace("steps: 800", "steps: 2"))
    (d / "c.yaml").write_text(text)
    _ok(runner.invoke(app, [*_deconvolve_clean(d), "--config", str(d / "c.yaml"), "-q"]))


def test_mask_fraction_option_overrides_only_that_field_of_a_config_file(files):
    from siamdecon.model import Deconvolver

    d = files
    _ok(runner.invoke(app, ["config", "-o", str(d / "c.yaml")]))
    (d / "c.yaml").write_text((d / "c.yaml").read_text().replace("noise_std: 0.2", "noise_std: 0.3"))
    args = ["train", str(d / "clean.tif"), "--psf", str(d / "psf.npy"), *TINY]
    _ok(runner.invoke(app, [*args, "-o", str(d / "m.pt"), "--config", str(d / "c.yaml"), "--mask-fraction", "0.02"]))
    cfg = Deconvolver.load(d / "m.pt").config
    assert cfg.mask.fraction == 0.02 and cfg.mask.noise_std == 0.3
    _ok(runner.invoke(app, [*args, "-o", str(d / "m2.pt"), "--mask-fraction", "0.05"]))
    assert Deconvolver.load(d / "m2.pt").config.mask.fraction == 0.05
    bad = runner.invoke(app, [*args, "-o", str(d / "m3.pt"), "--mask-fraction", "0"])
    assert bad.exit_code != 0 and not (d / "m3.pt").exists()


@pytest.mark.parametrize(
    "make,args,message",
    [
        (
            lambda d: np.save(d / "img.npy", np.zeros((2, 3, 40, 40))),
            ["deconvolve", "{d}/img.npy", "--psf", "{d}/psf.npy", "-o", "{d}/o.tif"],
            "4 dimensions",
        ),
        (
            lambda d: np.save(d / "img.npy", np.full((40, 40), np.nan)),
            ["deconvolve", "{d}/img.npy", "--psf", "{d}/psf.npy", "-o", "{d}/o.tif"],
            "NaN",
        ),
        (
            lambda d: np.save(d / "img.npy", np.ones((10, 40))),
            ["deconvolve", "{d}/img.npy", "--psf", "{d}/psf.npy", "-o", "{d}/o.tif"],
            "larger than the image",
        ),
        (
            lambda d: np.save(d / "img.npy", np.ones((10, 40, 40))),
            ["deconvolve", "{d}/img.npy", "--psf", "{d}/psf.npy", "-o", "{d}/o.tif"],
            "2D .* but the image is 3D",
        ),
        (
            lambda d: None,
            ["deconvolve", "{d}/clean.tif", "--psf", "{d}/psf.npy", "-o", "{d}/o.png"],
            "unsupported type",
        ),
        (
            lambda d: None,
            ["deconvolve", "{d}/clean.tif", "--psf", "{d}/missing.npy", "-o", "{d}/o.tif"],
            "does not exist",
        ),
        (
            lambda d: None,
            ["predict", "{d}/clean.tif", "--model", "{d}/psf.npy", "-o", "{d}/o.tif"],
            "not a readable siamdecon model",
        ),
        (
            lambda d: write_image(d / "big.tif", np.full((40, 40), 3.0)),
            ["simulate", "{d}/big.tif", "--psf", "{d}/psf.npy", "-o", "{d}/o.tif"],
            "--rescale",
        ),
        (
            lambda d: None,
            ["deconvolve", "{d}/clean.tif", "--psf", "{d}/psf.npy", "-o", "{d}/o.tif", "--device", "gpu"],
            "device",
        ),
        (
            lambda d: np.save(d / "flat.npy", np.ones((40, 40))),
            ["deconvolve", "{d}/flat.npy", "--psf", "{d}/psf.npy", "-o", "{d}/o.tif"],
            "constant",
        ),
        (
            lambda d: (d / "dir.tif").mkdir(),
            ["deconvolve", "{d}/clean.tif", "--psf", "{d}/psf.npy", "-o", "{d}/dir.tif"],
            "is a folder",
        ),
        (
            lambda d: write_image(d / "raw.tif", np.full((96, 96), 7.0)),
            ["evaluate", "{d}/clean.tif", "--truth", "{d}/raw.tif"],
            r"\[0, 1\]",
        ),
    ],
)
def test_bad_input_gives_one_clear_error_and_no_output(files, make, args, message):
    d = files
    make(d)
    before = set(p.name for p in d.iterdir())
    result = runner.invoke(app, [a.format(d=d) for a in args])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output
    assert __import__("re").search(message, result.output), result.output
    assert "Traceback" not in result.output
    assert set(p.name for p in d.iterdir()) == before


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_is_one_clear_error(files):
    d = files
    res = runner.invoke(app, [*_deconvolve_clean(d), "--device", "cuda", "-q"])
    assert res.exit_code == 2 and "CUDA is not available" in res.output and "Traceback" not in res.output
    assert not (d / "o.tif").exists()


def test_demo_runs_on_a_small_crop(tmp_path):
    res = _ok(runner.invoke(app, ["demo", "-o", str(tmp_path / "demo"), "--steps", "2", "--size", "96", "-q"]))
    assert "Lucy-Richardson" in res.output and "siamdecon" in res.output
    for name in ("clean.tif", "noisy.tif", "lucy_richardson.tif", "siamdecon.tif", "comparison.png", "results.json"):
        assert (tmp_path / "demo" / name).exists()
    rows = json.loads((tmp_path / "demo" / "results.json").read_text())["rows"]
    assert len(rows) == 3
    # It says which prior ran and how many steps fine-tuned it, in a table whose columns line up.
    assert rows[2]["method"].startswith("siamdecon (prior fast-2d-generic-paper-psf.pt + 2 fine-tuning steps")
    lines = res.output.splitlines()
    table = lines[lines.index(next(x for x in lines if x.startswith("method"))) :][:5]
    assert len({len(x) for x in table}) == 1, table
    # The demo runs the held-out check as `deconvolve` does and says what it decided.
    assert "held-out pixels" in rows[2]["check"] and "held-out pixels" in res.output


def test_lucy_richardson_subtracts_a_camera_offset(tmp_path, psf2d):
    from siamdecon.classical import richardson_lucy
    from siamdecon.io import write_image

    rng = np.random.default_rng(0)
    counts = (100 + rng.poisson(20.0, (40, 40))).astype(np.float32)
    write_image(tmp_path / "raw.tif", counts)
    np.save(tmp_path / "psf.npy", psf2d)
    _ok(
        runner.invoke(
            app,
            [
                "lucy-richardson",
                str(tmp_path / "raw.tif"),
                "--psf",
                str(tmp_path / "psf.npy"),
                "-o",
                str(tmp_path / "lr.tif"),
                "-n",
                "4",
                "--offset",
                "100",
            ],
        )
    )
    out = read_image(tmp_path / "lr.tif").data
    expected = richardson_lucy(np.clip(counts - 100, 0, None), psf2d / psf2d.sum(), 4)
    assert np.allclose(out, expected, atol=1e-4)
    assert abs(float(out.mean()) - 20.0) < 2.0  # the signal above the offset, not offset + signal


def test_hessian_option_reaches_the_fine_tuning_or_is_refused(files):
    from siamdecon.cli import _hessian_weights
    from siamdecon.errors import ConfigError
    from siamdecon.model import Deconvolver

    assert _hessian_weights("0,0.03") == [0.0, 0.03] and _hessian_weights("0.1") == 0.1
    with pytest.raises(ConfigError, match="--hessian must be one weight or several"):
        _hessian_weights("a,b")
    d = files
    args = ["train", str(d / "clean.tif"), "--psf", str(d / "psf.npy"), *TINY]
    _ok(runner.invoke(app, [*args, "-o", str(d / "m.pt"), "--hessian", "0.5"]))
    assert Deconvolver.load(d / "m.pt").config.prior.fine_tune_hessian == 0.5
    bad = runner.invoke(app, [*args, "-o", str(d / "m2.pt"), "--hessian", "-1"])
    assert bad.exit_code != 0 and ">= 0" in bad.output and not (d / "m2.pt").exists()
