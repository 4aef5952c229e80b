"""Tests for the Gibson-Lanni (Richards & Wolf limit) PSF generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from siamdecon.psf import generate_psf

DATA_DIR = Path(__file__).parent / "data"


def _rel_max_error(result: np.ndarray, reference: np.ndarray) -> float:
    result = result.astype(np.float64) / result.sum()
    reference = reference.astype(np.float64) / reference.sum()
    return float(np.max(np.abs(result - reference)) / reference.max())


@pytest.fixture(scope="module")
def psf3d() -> np.ndarray:
    return generate_psf()


def test_reproduces_paper_psf_3d(psf3d: np.ndarray) -> None:
    reference = np.load(DATA_DIR / "paper_psf_3d.npy")
    assert psf3d.shape == reference.shape == (17, 17, 17)
    assert _rel_max_error(psf3d, reference) <= 0.01


def test_reproduces_paper_psf_2d() -> None:
    reference = np.load(DATA_DIR / "paper_psf_2d.npy")
    psf = generate_psf(ndim=2)
    assert psf.shape == reference.shape == (17, 17)
    assert _rel_max_error(psf, reference) <= 0.01


def test_explicit_paper_parameters_match_defaults(psf3d: np.ndarray) -> None:
    psf = generate_psf(
        ndim=3,
        size=17,
        na=0.8,
        wavelength=0.6,
        pixel_size=0.406,
        z_step=0.406,
        refractive_index=1.33,
        focal_offset=-3.045,
        num_z=17,
    )
    np.testing.assert_allclose(psf, psf3d, rtol=0, atol=1e-6 * psf3d.max())


@pytest.mark.parametrize("ndim", [2, 3])
def test_dtype_and_unit_sum(ndim: int) -> None:
    psf = generate_psf(ndim=ndim)
    assert psf.dtype == np.float32
    assert psf.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.all(psf >= 0)


def test_lateral_symmetry(psf3d: np.ndarray) -> None:
    atol = 1e-6 * psf3d.max()
    np.testing.assert_allclose(psf3d, psf3d[:, ::-1, :], atol=atol)
    np.testing.assert_allclose(psf3d, psf3d[:, :, ::-1], atol=atol)
    np.testing.assert_allclose(psf3d, np.swapaxes(psf3d, 1, 2), atol=atol)
    peak_z, peak_y, peak_x = np.unravel_index(np.argmax(psf3d), psf3d.shape)
    assert (peak_y, peak_x) == (8, 8)
    assert peak_z in (7, 8)


def test_axial_symmetry_about_focus(psf3d: np.ndarray) -> None:
    # Focus lies between planes 7 and 8: plane k mirrors plane 15 - k.
    np.testing.assert_allclose(psf3d[:16], psf3d[15::-1], rtol=0, atol=1e-6 * psf3d.max())


def test_plane_selection_matches_stack(psf3d: np.ndarray) -> None:
    for plane in (0, 7, 16):
        psf2d = generate_psf(ndim=2, plane=plane)
        expected = psf3d[plane] / psf3d[plane].sum()
        np.testing.assert_allclose(psf2d, expected, rtol=1e-5, atol=1e-8)


def test_num_z_and_focal_offset() -> None:
    psf = generate_psf(size=9, num_z=5)
    assert psf.shape == (5, 9, 9)
    centred = generate_psf(size=9, num_z=5, focal_offset=-2 * 0.406)
    # Focus on the central plane: symmetric about plane 2.
    np.testing.assert_allclose(centred, centred[::-1], atol=1e-6 * centred.max())
    assert np.argmax(centred.sum(axis=(1, 2))) == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ndim": 1}, "ndim"),
        ({"ndim": 4}, "ndim"),
        ({"size": 16}, "odd"),
        ({"size": 0}, "size"),
        ({"size": -3}, "size"),
        ({"size": 17.0}, "size"),
        ({"na": 1.4}, "na"),
        ({"na": 1.33}, "na"),
        ({"na": 0.0}, "na"),
        ({"wavelength": -0.6}, "wavelength"),
        ({"pixel_size": 0.0}, "pixel_size"),
        ({"z_step": -1.0}, "z_step"),
        ({"refractive_index": 0.0}, "refractive_index"),
        ({"num_z": 0}, "num_z"),
        ({"focal_offset": float("nan")}, "focal_offset"),
        ({"ndim": 2, "plane": 17}, "plane"),
        ({"ndim": 2, "plane": -1}, "plane"),
        ({"ndim": 2, "num_z": 5, "plane": 5}, "plane"),
        ({"ndim": 3, "plane": 0}, "plane"),
    ],
)
def test_invalid_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        generate_psf(**kwargs)
