from __future__ import annotations

import numpy as np
import pytest

from siamdecon.beads import estimate_psf, psf_fwhm, resample_psf, simulate_bead_image
from siamdecon.errors import InputError
from siamdecon.psf import generate_psf
from siamdecon.simulate import Camera, camera_image

CAMERA = Camera(photons=1000.0, offset=100.0)


def _taper(psf: np.ndarray) -> np.ndarray:
    """The PSF times a cos^2 window reaching 0 just beyond its edges, renormalized.

    A truncated kernel (light cut at its edges) cannot be shifted by a sub-pixel amount without
    spreading light outside its box, so a simulated bead would not be the truth itself.
    """
    out = np.asarray(psf, dtype=np.float64)
    for axis, n in enumerate(out.shape):
        x = np.arange(n) - n // 2
        window = np.cos(np.pi * x / (2 * (n // 2 + 1))) ** 2
        out = out * window.reshape([-1 if i == axis else 1 for i in range(out.ndim)])
    return (out / out.sum()).astype(np.float32)


def _gaussian(shape: tuple[int, ...], sigma: tuple[float, ...]) -> np.ndarray:
    out = np.ones(shape)
    for axis, (n, s) in enumerate(zip(shape, sigma)):
        x = np.arange(n) - n // 2
        out = out * np.exp(-(x**2) / (2 * s * s)).reshape([-1 if i == axis else 1 for i in range(len(shape))])
    return (out / out.sum()).astype(np.float32)


def _error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Max abs difference on the common central crop, both normalized to sum 1, over the truth's peak."""
    a = np.asarray(estimate, dtype=np.float64)
    b = np.asarray(truth, dtype=np.float64)
    a, b = a / a.sum(), b / b.sum()
    half = np.minimum(np.array(a.shape) // 2, np.array(b.shape) // 2)

    def crop(x: np.ndarray) -> np.ndarray:
        return x[tuple(slice(s // 2 - h, s // 2 + h + 1) for s, h in zip(x.shape, half))]

    return float(np.abs(crop(a) - crop(b)).max() / b.max())


def _nearest(beads, point) -> tuple[float, object]:
    distances = [np.linalg.norm(np.subtract(b.position, point)) for b in beads]
    i = int(np.argmin(distances))
    return distances[i], beads[i]


def _check_well_formed(psf: np.ndarray) -> None:
    assert psf.dtype == np.float32
    assert all(s % 2 == 1 for s in psf.shape)
    assert psf.sum() == pytest.approx(1.0, abs=1e-5)
    assert psf.min() >= 0
    assert np.unravel_index(int(np.argmax(psf)), psf.shape) == tuple(s // 2 for s in psf.shape)


def _check_classification(result, truth, precision: float = 0.1) -> None:
    """Touching and saturated beads are rejected for that reason; every isolated bead is used."""
    for i, point in enumerate(truth.positions):
        distance, bead = _nearest(result.beads, point)
        assert distance < 1.5
        if truth.touching[i]:
            assert bead.status == "touching"
        elif truth.saturated[i]:
            assert bead.status == "saturated"
        else:
            assert bead.status == "used"
            assert distance < precision  # sub-pixel registration
    counts = result.rejected_counts
    assert counts["touching"] == truth.touching.sum()
    assert counts["saturated"] == truth.saturated.sum()


@pytest.fixture(scope="module")
def psf2d() -> np.ndarray:
    # In focus, Nyquist-sampled (FWHM about 3.9 pixels of 0.1 um).
    return generate_psf(ndim=2, size=21, pixel_size=0.1, z_step=0.1, num_z=21, plane=10, focal_offset=-1.0)


@pytest.fixture(scope="module")
def psf3d() -> np.ndarray:
    # Focus on the central plane; lateral FWHM about 2.5 pixels, axial about 5 planes.
    return _taper(generate_psf(ndim=3, size=15, num_z=15, pixel_size=0.15, z_step=0.3, focal_offset=-7 * 0.3))


def test_2d_psf_is_recovered_and_bad_beads_rejected(psf2d):
    counts, truth = simulate_bead_image(psf2d, (160, 160), n_beads=15, camera=CAMERA, touching=2, saturated=2, seed=1)
    assert counts.dtype == np.uint16 and counts.max() == 65535  # the saturated beads clip
    result = estimate_psf(counts)
    _check_well_formed(result.psf)
    assert _error(result.psf, psf2d) < 0.05
    _check_classification(result, truth)
    assert result.background == pytest.approx(100.0, abs=0.5)
    assert np.allclose(result.fwhm_px, psf_fwhm(psf2d), rtol=0.05)
    assert all(0 < s < 0.5 for s in result.fwhm_px_std)
    assert result.fwhm_um is None


def test_3d_psf_is_recovered_and_bad_beads_rejected(psf3d):
    counts, truth = simulate_bead_image(psf3d, (32, 96, 96), n_beads=10, camera=CAMERA, touching=1, saturated=1, seed=2)
    result = estimate_psf(counts, voxel=(0.3, 0.15, 0.15))
    _check_well_formed(result.psf)
    assert _error(result.psf, psf3d) < 0.05
    _check_classification(result, truth, precision=0.2)  # the axial FWHM is 5 planes
    assert np.allclose(result.fwhm_px, psf_fwhm(psf3d), rtol=0.05)
    assert np.allclose(result.fwhm_um, psf_fwhm(psf3d, voxel=(0.3, 0.15, 0.15)), rtol=0.05)


def test_anisotropic_voxels_give_fwhm_in_micrometres():
    voxel = (0.25, 0.1, 0.1)
    truth_psf = _gaussian((13, 17, 17), (1.2, 1.6, 1.6))  # 0.3 um axial, 0.16 um lateral sigma
    counts, truth = simulate_bead_image(truth_psf, (32, 96, 96), n_beads=10, camera=CAMERA, seed=3)
    result = estimate_psf(counts, voxel=voxel)
    assert _error(result.psf, truth_psf) < 0.05
    expected = psf_fwhm(truth_psf, voxel=voxel)
    assert expected[0] == pytest.approx(2.355 * 0.3, rel=0.05)
    assert np.allclose(result.fwhm_um, expected, rtol=0.05)
    assert len(result.used) == len(truth)


def test_given_offset_and_extra_constant_background(psf2d):
    counts, _ = simulate_bead_image(psf2d, (128, 128), n_beads=8, camera=CAMERA, seed=4)
    given = estimate_psf(counts, offset=100.0)
    assert given.background == 100.0
    assert _error(given.psf, psf2d) < 0.05
    # A constant (autofluorescence, stray light) on top of the offset is estimated and removed.
    brighter = (counts.astype(np.int64) + 25).astype(np.uint16)
    estimated = estimate_psf(brighter)
    assert estimated.background == pytest.approx(125.0, abs=0.5)
    assert _error(estimated.psf, psf2d) < 0.05


def test_background_only_image_is_refused_clearly():
    counts = camera_image(np.zeros((96, 96), np.float32), _gaussian((9, 9), (1.5, 1.5)), CAMERA, seed=5)
    with pytest.raises(InputError, match="no bead found.*background only"):
        estimate_psf(counts)
    with pytest.raises(InputError, match="constant"):
        estimate_psf(np.full((64, 64), 100, np.uint16))


def test_no_usable_bead_says_why(psf2d):
    counts, _ = simulate_bead_image(psf2d, (128, 128), n_beads=0, camera=CAMERA, touching=2, saturated=1, seed=6)
    with pytest.raises(InputError, match=r"no usable bead: 5 bead candidates.*4 touching, 1 saturated.*Try"):
        estimate_psf(counts)


def test_fixed_odd_shape_and_max_beads(psf2d):
    counts, _ = simulate_bead_image(psf2d, (160, 160), n_beads=12, camera=CAMERA, seed=7)
    result = estimate_psf(counts, shape=15, max_beads=5)
    assert result.psf.shape == (15, 15)
    _check_well_formed(result.psf)
    assert len(result.used) == 5
    assert sum(b.status == "spare" for b in result.beads) == 7
    # The five used are the brightest.
    assert min(b.peak for b in result.used) >= max(b.peak for b in result.beads if b.status == "spare")
    with pytest.raises(InputError, match="odd"):
        estimate_psf(counts, shape=(14, 15))


def test_bead_size_is_divided_out(psf2d):
    voxel, diameter = (0.1, 0.1), 0.3
    counts, _ = simulate_bead_image(
        psf2d, (160, 160), n_beads=15, camera=Camera(photons=3000.0), bead_diameter=diameter, voxel=voxel, seed=8
    )
    plain = estimate_psf(counts, voxel=voxel)
    corrected = estimate_psf(counts, voxel=voxel, bead_diameter=diameter)
    assert _error(plain.psf, psf2d) > 0.1  # a 0.3 um bead visibly widens a 0.37 um PSF
    assert _error(corrected.psf, psf2d) < 0.05
    assert np.allclose(corrected.fwhm_um, psf_fwhm(psf2d, voxel=voxel), rtol=0.04)
    assert any("bead diameter" in line for line in corrected.summary())
    with pytest.raises(InputError, match="voxel"):
        estimate_psf(counts, bead_diameter=diameter)


def test_summary_reports_counts_and_fwhm(psf2d):
    counts, _ = simulate_bead_image(psf2d, (160, 160), n_beads=8, camera=CAMERA, touching=1, saturated=1, seed=9)
    lines = estimate_psf(counts, voxel=0.1).summary()
    text = "\n".join(lines)
    assert "from 8 of 11 beads found" in text
    assert "2 touching, 1 saturated" in text
    assert "FWHM y" in text and "um" in text


def test_undersampled_psf_is_flagged():
    psf = generate_psf(ndim=2, size=15, plane=8)  # 0.406 um pixels: FWHM about one pixel
    counts, truth = simulate_bead_image(psf, (128, 128), n_beads=10, camera=CAMERA, touching=1, saturated=1, seed=10)
    result = estimate_psf(counts)
    assert any("undersampled" in line for line in result.summary())
    assert result.rejected_counts["touching"] == 2 and result.rejected_counts["saturated"] == 1


def test_resample_round_trip_keeps_centre_and_odd_sizes(psf2d, psf3d):
    finer = resample_psf(psf2d, 0.1, 0.05)
    assert finer.shape == (41, 41)
    _check_well_formed(finer)
    back = resample_psf(finer, 0.05, 0.1)
    assert back.shape == psf2d.shape
    assert _error(back, psf2d) < 0.01
    # Non-integer anisotropic ratio in 3D.
    voxel = (0.3, 0.15, 0.15)
    iso = resample_psf(psf3d, voxel, 0.1)
    _check_well_formed(iso)
    assert np.allclose(psf_fwhm(iso, 0.1), psf_fwhm(psf3d, voxel), rtol=0.05)
    assert _error(resample_psf(iso, 0.1, voxel, shape=psf3d.shape), psf3d) < 0.02
    for axis in range(3):  # centred: the marginal centroid is the central pixel
        marginal = iso.sum(axis=tuple(i for i in range(3) if i != axis))
        assert (marginal * np.arange(marginal.size)).sum() == pytest.approx(marginal.size // 2, abs=1e-3)


def test_resample_matches_the_generator_at_another_pixel_size(psf2d):
    coarse = resample_psf(psf2d, 0.1, 0.2)
    direct = generate_psf(ndim=2, size=11, pixel_size=0.2, z_step=0.1, num_z=21, plane=10, focal_offset=-1.0)
    assert coarse.shape == direct.shape
    assert _error(coarse, direct) < 0.03
    with pytest.raises(InputError, match="odd"):
        resample_psf(psf2d, 0.1, 0.2, shape=10)


def test_float_image_saturation_level_and_min_separation(psf2d):
    counts, truth = simulate_bead_image(psf2d, (160, 160), n_beads=10, camera=CAMERA, touching=1, saturated=1, seed=11)
    image = counts.astype(np.float64)
    result = estimate_psf(image, saturation=65535.0)
    _check_classification(result, truth, precision=0.15)
    # A small min_separation lets the pair through the neighbour test; the light of each one in
    # the other's crop still makes them outliers, not part of the average.
    loose = estimate_psf(image, saturation=65535.0, min_separation=2.0)
    assert loose.rejected_counts["touching"] == 0
    for point in truth.positions[truth.touching]:
        assert _nearest(loose.beads, point)[1].status == "outlier"
    assert _error(loose.psf, psf2d) < 0.05


def test_12_bit_camera_saturation_is_detected(psf2d):
    camera = Camera(photons=500.0, offset=100.0, bits=12)
    counts, truth = simulate_bead_image(psf2d, (128, 128), n_beads=8, camera=camera, saturated=1, seed=12)
    assert counts.dtype == np.uint16 and counts.max() == 4095
    result = estimate_psf(counts)
    assert result.rejected_counts["saturated"] == 1
    assert _nearest(result.beads, truth.positions[truth.saturated][0])[1].status == "saturated"
