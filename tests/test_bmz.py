"""BioImage Model Zoo export: bioimageio.core's own test_model passes, and the package predicts what siamdecon does."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("bioimageio.core")
pytest.importorskip("bioimageio.spec")

from siamdecon import Deconvolver, make_config  # noqa: E402
from siamdecon.bmz import bmz_network, export_bmz  # noqa: E402
from siamdecon.cli import app  # noqa: E402
from siamdecon.errors import InputError  # noqa: E402
from siamdecon.io import read_image, write_image  # noqa: E402
from siamdecon.simulate import degrade, fluorescence_2d, tubes_3d  # noqa: E402


def _image(psf: np.ndarray, size: int, seed: int) -> np.ndarray:
    clean = fluorescence_2d(size, seed=seed)
    return degrade(clean, psf, seed=seed)


@pytest.fixture(scope="module")
def model_2d(tmp_path_factory, psf2d_module):
    folder = tmp_path_factory.mktemp("bmz")
    image = _image(psf2d_module, 64, seed=1)
    # The fast preset with a Lucy-Richardson start and test-time augmentation, from scratch, two steps.
    config = make_config(
        "fast",
        ndim=2,
        steps=2,
        prior={"source": "none"},
        training={"start": {"kind": "lucy-richardson", "iterations": 1}},
    )
    model = Deconvolver.fit(image, psf2d_module, config, progress=False)
    path = model.save(folder / "model.pt")
    return path, image, folder


@pytest.fixture(scope="module")
def psf2d_module():
    from pathlib import Path

    return np.load(Path(__file__).parent / "data" / "paper_psf_2d.npy")


def test_cli_export_passes_bioimageio_test_model(model_2d):
    path, image, folder = model_2d
    write_image(folder / "train.tif", image)
    out = folder / "model.zip"
    r = CliRunner().invoke(app, ["export-bmz", str(path), "-o", str(out), "--test-image", str(folder / "train.tif")])
    assert r.exit_code == 0, r.output
    assert "bioimageio.core test_model: passed" in r.output
    names = set(zipfile.ZipFile(out).namelist())
    expected = {"rdf.yaml", "weights.pt", "siamdecon_network.py", "psf.npy", "siamdecon_config.json", "model.pt"}
    assert expected | {"test_input.npy", "test_output.npy", "cover.png", "README.md"} <= names
    rdf = zipfile.ZipFile(out).read("rdf.yaml").decode()
    assert "format_version: 0.5" in rdf and "pytorch_state_dict" in rdf and "2308.09426" in rdf and "MIT" in rdf


def test_package_predicts_like_siamdecon_predict(model_2d, psf2d_module):
    """bioimageio.core's prediction from the package on a new image equals `siamdecon predict`'s file."""
    from bioimageio.core import predict

    path, _, folder = model_2d
    out = folder / "model.zip"
    if not out.exists():
        export_bmz(path, out, run_test=False)
    other = _image(psf2d_module, 96, seed=7)
    write_image(folder / "other.tif", other)
    r = CliRunner().invoke(
        app, ["predict", str(folder / "other.tif"), "--model", str(path), "-o", str(folder / "p.tif")]
    )
    assert r.exit_code == 0, r.output
    expected = read_image(folder / "p.tif").data

    sample = predict(model=out, inputs={"raw": other[None, None]})
    got = sample.members["deconvolved"].data.to_numpy()[0, 0]
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4


def test_3d_model_exports_and_matches(tmp_path, psf3d):
    volume = degrade(tubes_3d((20, 40, 40), seed=3), psf3d, seed=3)
    config = make_config(
        "fast",
        ndim=3,
        steps=1,
        prior={"source": "none"},
        training={"start": {"kind": "lucy-richardson", "iterations": 1}},
    )
    model = Deconvolver.fit(volume, psf3d, config, progress=False)
    result = export_bmz(model, tmp_path / "m3d.zip", test_image=volume, run_test=False)
    assert result.max_difference <= 1e-4 * result.output_range
    # The stand-alone network on another shape than the test input.
    other = degrade(tubes_3d((17, 36, 44), seed=4), psf3d, seed=4)
    with torch.no_grad():
        got = bmz_network(model)(torch.from_numpy(other)[None, None])[0, 0].numpy()
    assert np.abs(got - model.predict(other)).max() <= 1e-4


def test_export_refusals(tmp_path, model_2d):
    path, image, _ = model_2d
    with pytest.raises(InputError, match=r"\.zip"):
        export_bmz(path, tmp_path / "model.tif")
    with pytest.raises(InputError, match="3D"):
        export_bmz(path, tmp_path / "m.zip", test_image=np.zeros((8, 8, 8), np.float32))
    assert not (tmp_path / "m.zip").exists()


def _skewed_psf(shape: tuple[int, ...]) -> np.ndarray:
    """A PSF without the plane's symmetries: a Gaussian with a brighter lobe to one side."""
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    psf = np.exp(-0.5 * sum(g**2 for g in grids) / 1.5**2)
    psf += 0.4 * np.exp(-0.5 * ((grids[-1] - 2) ** 2 + (grids[-2] - 1) ** 2) / 0.8**2)
    return (psf / psf.sum()).astype(np.float32)


def _camera_image(psf: np.ndarray, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Photon counts with a camera offset of 100 and read noise: what the generic start's camera model is for."""
    from siamdecon.operators import PSFConvolution

    rng = np.random.default_rng(seed)
    clean = fluorescence_2d(shape[-1], seed=seed) if len(shape) == 2 else tubes_3d(shape, seed=seed)
    blurred = PSFConvolution(psf).convolve_numpy(200.0 * clean / clean.max() + 5.0)
    return (100.0 + rng.poisson(np.clip(blurred, 0, None)) + rng.normal(0, 2.0, blurred.shape)).astype(np.float32)


def test_the_fast_defaults_generic_model_exports_and_predicts_as_siamdecon(tmp_path, psf2d_module):
    """The default model (shipped prior, generic start, TTA) passes test_model and predicts as siamdecon does."""
    image = _camera_image(psf2d_module, (96, 96), seed=2)
    model = Deconvolver.fit(image, psf2d_module, make_config("fast", ndim=2), progress=False)
    assert model.config.training.start.kind == "generic" and model.config.inference.tta
    result = export_bmz(model, tmp_path / "g.zip", test_image=image, run_test=True)
    assert result.test_passed, result.test_details
    assert result.max_difference <= 1e-4 * result.output_range
    readme = zipfile.ZipFile(tmp_path / "g.zip").read("README.md").decode()
    assert "camera model of the training image" in readme
    # Another image, and a PSF without the plane's symmetries (TTA rotates the channels, not the PSF).
    skewed = _skewed_psf((9, 9))
    config = make_config("fast", ndim=2, steps=2)
    other = Deconvolver.fit(_camera_image(skewed, (64, 64), 3), skewed, config, progress=False)
    new = _camera_image(skewed, (80, 72), 4)
    with torch.no_grad():
        got = bmz_network(other)(torch.from_numpy(new)[None, None])[0, 0].numpy()
    expected = other.predict(new)
    assert np.abs(got - expected).max() <= 1e-4 * float(np.ptp(expected))


def test_a_generic_3d_model_matches_on_another_shape():
    skewed = _skewed_psf((7, 9, 9))
    volume = _camera_image(skewed, (16, 32, 32), seed=5)
    config = make_config("fast", ndim=3, steps=1, prior={"source": "none"})
    model = Deconvolver.fit(volume, skewed, config, progress=False)
    assert model.config.training.start.kind == "generic"
    other = _camera_image(skewed, (13, 36, 28), seed=6)
    with torch.no_grad():
        got = bmz_network(model)(torch.from_numpy(other)[None, None])[0, 0].numpy()
    expected = model.predict(other)
    assert np.abs(got - expected).max() <= 1e-4 * float(np.ptp(expected))
