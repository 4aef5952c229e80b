"""CLI: ``siamdecon psf --from-beads`` on simulated bead images, and ``siamdecon export-bmz``'s refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from siamdecon.beads import psf_fwhm, resample_psf, simulate_bead_image
from siamdecon.cli import app
from siamdecon.io import ImageData, read_image, write_image
from siamdecon.psf import generate_psf
from siamdecon.simulate import Camera, camera_image

CAMERA = Camera(photons=1000.0, offset=100.0)


def _run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def _error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Max abs difference on the common central crop, both normalized to sum 1, over the truth's peak."""
    a = np.asarray(estimate, dtype=np.float64)
    b = np.asarray(truth, dtype=np.float64)
    a, b = a / a.sum(), b / b.sum()
    half = np.minimum(np.array(a.shape) // 2, np.array(b.shape) // 2)

    def crop(x: np.ndarray) -> np.ndarray:
        return x[tuple(slice(s // 2 - h, s // 2 + h + 1) for s, h in zip(x.shape, half))]

    return float(np.abs(crop(a) - crop(b)).max() / b.max())


def _taper(psf: np.ndarray) -> np.ndarray:
    """Window the PSF to 0 beyond its box, so that a sub-pixel shifted bead is still the truth."""
    out = np.asarray(psf, dtype=np.float64)
    for axis, n in enumerate(out.shape):
        x = np.arange(n) - n // 2
        window = np.cos(np.pi * x / (2 * (n // 2 + 1))) ** 2
        out = out * window.reshape([-1 if i == axis else 1 for i in range(out.ndim)])
    return (out / out.sum()).astype(np.float32)


def _write_counts(path: Path, counts: np.ndarray, voxel: tuple[float, ...] | None) -> Path:
    """A raw-count TIFF as a microscope writes it: ImageJ metadata with the voxel size in micrometres."""
    kwargs: dict = {"imagej": True}
    if voxel is not None:
        kwargs["resolution"] = (1.0 / voxel[-1], 1.0 / voxel[-2])
        kwargs["metadata"] = {"unit": "um", **({"spacing": voxel[0], "axes": "ZYX"} if counts.ndim == 3 else {})}
    tifffile.imwrite(path, counts, **kwargs)
    return path


@pytest.fixture(scope="module")
def truth2d() -> np.ndarray:
    # In focus, Nyquist-sampled at 0.1 um pixels (FWHM about 3.9 pixels).
    return generate_psf(ndim=2, size=21, pixel_size=0.1, z_step=0.1, num_z=21, plane=10, focal_offset=-1.0)


@pytest.fixture(scope="module")
def beads2d(tmp_path_factory, truth2d) -> Path:
    counts, _ = simulate_bead_image(truth2d, (160, 160), n_beads=15, camera=CAMERA, touching=2, saturated=2, seed=1)
    return _write_counts(tmp_path_factory.mktemp("beads") / "beads2d.tif", counts, (0.1, 0.1))


def test_2d_beads_give_the_psf_within_5_percent_and_a_report(tmp_path, beads2d, truth2d):
    out = tmp_path / "psf.tif"
    r = _run("psf", "--from-beads", beads2d, "-o", out)
    assert r.exit_code == 0, r.output
    psf = read_image(out, "PSF")
    assert _error(psf.data, truth2d) < 0.05
    assert psf.spacing == pytest.approx((0.1, 0.1))  # the PSF file carries its voxel size
    assert all(s % 2 == 1 for s in psf.data.shape) and psf.data.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.unravel_index(int(np.argmax(psf.data)), psf.data.shape) == tuple(s // 2 for s in psf.data.shape)
    text = r.output
    assert "voxel 0.1, 0.1 um" in text
    assert "from 15 of 21 beads found" in text  # the 4 touching and 2 saturated ones rejected
    assert "rejected: 4 touching, 2 saturated" in text
    assert "background 100." in text  # the camera offset
    assert "FWHM y" in text and "+/-" in text and " um" in text
    assert np.allclose(psf_fwhm(psf.data), psf_fwhm(truth2d), rtol=0.05)


def test_2d_resampled_like_an_image_with_a_fixed_size(tmp_path, beads2d, truth2d):
    like = write_image(tmp_path / "data.tif", ImageData(np.ones((80, 80), np.float32), spacing=(0.05, 0.05), unit="um"))
    out = tmp_path / "psf.tif"
    r = _run("psf", "--from-beads", beads2d, "-o", out, "--like", like, "--size", "35")
    assert r.exit_code == 0, r.output
    psf = read_image(out, "PSF")
    assert psf.data.shape == (35, 35)
    assert psf.spacing == pytest.approx((0.05, 0.05))
    assert _error(psf.data, resample_psf(truth2d, 0.1, 0.05, shape=35)) < 0.05
    assert "resampled to voxel 0.05, 0.05 um (--like" in r.output
    # The same with the voxel size given, and a PSF larger than the --like image is refused.
    r = _run("psf", "--from-beads", beads2d, "-o", tmp_path / "b.tif", "--voxel-size", "0.05", "--size", "35,35")
    assert r.exit_code == 0, r.output
    assert np.allclose(read_image(tmp_path / "b.tif").data, psf.data, atol=1e-7)
    small = write_image(tmp_path / "small.tif", ImageData(np.ones((20, 20), np.float32), spacing=(0.05, 0.05)))
    r = _run("psf", "--from-beads", beads2d, "-o", tmp_path / "c.tif", "--like", small)
    assert r.exit_code == 2 and "larger than the --like image" in r.output and "--size" in r.output


def test_3d_anisotropic_beads_resampled_to_the_data_voxel(tmp_path):
    voxel, target = (0.3, 0.15, 0.15), (0.2, 0.1, 0.1)
    truth = _taper(generate_psf(ndim=3, size=15, num_z=15, pixel_size=0.15, z_step=0.3, focal_offset=-7 * 0.3))
    counts, _ = simulate_bead_image(truth, (32, 96, 96), n_beads=10, camera=CAMERA, touching=1, saturated=1, seed=2)
    beads = _write_counts(tmp_path / "beads3d.tif", counts, voxel)
    like = write_image(tmp_path / "data.tif", ImageData(np.ones((40, 64, 64), np.float32), spacing=target, unit="um"))
    out = tmp_path / "psf.tif"
    r = _run("psf", "--from-beads", beads, "-o", out, "--like", like, "--size", "21,21,21")
    assert r.exit_code == 0, r.output
    psf = read_image(out, "PSF")
    assert psf.data.shape == (21, 21, 21)
    assert psf.spacing == pytest.approx(target)
    assert _error(psf.data, resample_psf(truth, voxel, target, shape=21)) < 0.05
    assert np.allclose(psf_fwhm(psf.data, target), psf_fwhm(truth, voxel), rtol=0.05)
    assert "from 10 of 13 beads found" in r.output and "FWHM z" in r.output


def test_bead_size_is_divided_out_and_voxel_from_the_command_line(tmp_path, truth2d):
    counts, _ = simulate_bead_image(
        truth2d, (160, 160), n_beads=15, camera=Camera(photons=3000.0), bead_diameter=0.3, voxel=0.1, seed=8
    )
    beads = _write_counts(tmp_path / "beads.tif", counts, None)  # no voxel size in the file
    r = _run("psf", "--from-beads", beads, "-o", tmp_path / "p.tif", "--bead-size", "0.3")
    assert r.exit_code == 2 and "no voxel size" in r.output and "--pixel-size" in r.output
    r = _run("psf", "--from-beads", beads, "-o", tmp_path / "p.tif", "--bead-size", "0.3", "--pixel-size", "0.1")
    assert r.exit_code == 0, r.output
    assert "corrected for the bead diameter of 0.3 um" in r.output and "(from the command line)" in r.output
    assert _error(read_image(tmp_path / "p.tif").data, truth2d) < 0.05
    r = _run("psf", "--from-beads", beads, "-o", tmp_path / "q.tif", "--pixel-size", "0.1")
    assert r.exit_code == 0
    assert _error(read_image(tmp_path / "q.tif").data, truth2d) > 0.1  # without it the bead widens the PSF


def test_unusable_bead_images_and_options_are_refused(tmp_path, beads2d, truth2d):
    empty = camera_image(np.zeros((96, 96), np.float32), truth2d, CAMERA, seed=5)
    background = _write_counts(tmp_path / "empty.tif", empty, (0.1, 0.1))
    r = _run("psf", "--from-beads", background, "-o", tmp_path / "p.tif")
    assert r.exit_code == 2 and r.output.startswith("error: no bead found") and "background only" in r.output
    crowded, _ = simulate_bead_image(truth2d, (128, 128), n_beads=0, camera=CAMERA, touching=2, saturated=1, seed=6)
    r = _run("psf", "--from-beads", _write_counts(tmp_path / "c.tif", crowded, None), "-o", tmp_path / "p.tif")
    assert r.exit_code == 2 and "no usable bead" in r.output and "4 touching, 1 saturated" in r.output
    cases = {
        ("--na", "1.2"): "--na: options of the computed PSF model",
        ("--confocal",): "--confocal",
        ("--ndim", "3"): "is 2D",
        ("--size", "14"): "odd",
        ("--size", "15,15,15"): "odd integer or 2",
        ("--voxel-size", "0.1,0.1,0.1"): "--voxel-size must be",
        ("--like", beads2d, "--voxel-size", "0.1"): "not both",
        ("--bead-size", "-1"): "positive",
        ("--z-step", "0.2"): "2D",
    }
    for extra, message in cases.items():
        r = _run("psf", "--from-beads", beads2d, "-o", tmp_path / "p.tif", *extra)
        assert r.exit_code == 2 and message in r.output, (extra, r.output)
    no_voxel = write_image(tmp_path / "novoxel.tif", np.ones((64, 64), np.float32))
    r = _run("psf", "--from-beads", beads2d, "-o", tmp_path / "p.tif", "--like", no_voxel)
    assert r.exit_code == 2 and "no voxel size" in r.output and "--voxel-size" in r.output
    for extra in (("--like", no_voxel), ("--bead-size", "0.1"), ("--voxel-size", "0.1")):
        r = _run("psf", "-o", tmp_path / "p.tif", *extra)
        assert r.exit_code == 2 and "only with --from-beads" in r.output
    assert not (tmp_path / "p.tif").exists()
    # The computed PSF is unchanged.
    r = _run("psf", "-o", tmp_path / "gen.tif", "--ndim", "2")
    assert r.exit_code == 0 and read_image(tmp_path / "gen.tif").data.shape == (17, 17)


def test_export_bmz_refuses_bad_paths_clearly(tmp_path):
    r = _run("export-bmz", tmp_path / "missing.pt", "-o", tmp_path / "m.zip")
    assert r.exit_code == 2 and "does not exist" in r.output
    not_a_model = tmp_path / "x.pt"
    not_a_model.write_bytes(b"not a model")
    r = _run("export-bmz", not_a_model, "-o", tmp_path / "m.zip")
    assert r.exit_code == 2 and "error:" in r.output
    r = _run("export-bmz", not_a_model, "-o", tmp_path / "m.tif")
    assert r.exit_code == 2 and ".zip" in r.output
    assert not (tmp_path / "m.zip").exists()
