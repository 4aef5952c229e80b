from __future__ import annotations

import numpy as np
import pytest
import tifffile

from siamdecon.errors import InputError
from siamdecon.psf import check_psf_fits, load_psf, validate_psf


def test_load_normalizes_to_sum_one(tmp_path, psf3d):
    tifffile.imwrite(tmp_path / "p.tif", (psf3d * 1000).astype(np.float32))
    p = load_psf(tmp_path / "p.tif", ndim=3)
    assert p.dtype == np.float32
    assert p.sum() == pytest.approx(1.0, abs=1e-6)
    assert np.allclose(p, psf3d, atol=1e-7)


@pytest.mark.parametrize(
    "psf,message",
    [
        (-np.ones((3, 3)), "negative"),
        (np.zeros((3, 3)), "all zeros"),
        (np.ones((4, 5)), "even size"),
        (np.full((3, 3), np.nan), "NaN"),
        (np.ones(5), "2D"),
    ],
)
def test_invalid_psfs_are_rejected_with_reasons(psf, message):
    with pytest.raises(InputError, match=message):
        validate_psf(psf, source="PSF 'x.npy'")


def test_tiny_negative_rounding_is_clipped():
    psf = np.ones((3, 3))
    psf[0, 0] = -1e-9
    assert validate_psf(psf).min() == 0.0


def test_ndim_mismatch_and_too_large(tmp_path, psf3d):
    np.save(tmp_path / "p.npy", psf3d)
    with pytest.raises(InputError, match="3D .* but the image is 2D"):
        load_psf(tmp_path / "p.npy", ndim=2)
    with pytest.raises(InputError, match="larger than the image"):
        check_psf_fits((17, 17), (10, 40))


def test_load_reports_missing_and_wrong_type(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_psf(tmp_path / "p.tif")
    with pytest.raises(InputError, match="unsupported"):
        load_psf(tmp_path / "p.png")
