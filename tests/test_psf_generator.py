"""Tests for the PSF generator: the paper's kernels, the full Gibson-Lanni model (scalar and vectorial,
widefield and confocal, checked against psfmodels), automatic sizes, arguments and the ``psf`` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from siamdecon.psf import auto_psf_shape, best_focus_position, confocal_psf, generate_psf, widefield_psf

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


# --- full Gibson-Lanni model: widefield_psf, confocal_psf, auto_psf_shape ---
#
# psfmodels (GPL-3, Aguet's C++ code; only used here as an independent reference) conventions, found by
# comparing with it:
# - ``make_psf(z, nx, ...)`` with a sequence ``z`` returns one plane per entry of ``z`` ("zv"); psfmodels'
#   zv is a stage coordinate with immersion thickness ``ti = ti0 - zv + pz * (1 - ni / ns)`` (default
#   coverslip).  Increasing zv moves the focal plane deeper into the sample, the direction of our axis 0
#   and of our positive ``defocus``; zv = pz is the paraxial focus on the emitter, not the best focus.
#   Our focal position f (``best_focus_position``) has ``ti = ti0 - f``, so zv = f + pz * (1 - ni / ns).
# - Its lateral argument is ``k r NA rho`` (no magnification): ``magnification=None`` here.
# - It evaluates the radial profile at multiples of ``dxy / oversample_factor`` and interpolates linearly;
#   with ``oversample_factor=3`` it averages 3 x 3 sub-pixel samples at offsets (-1/3, 0, 1/3) pixel, as
#   our ``oversample=3``.  With ``oversample_factor=1`` the diagonal pixels carry that linear-interpolation
#   error (2.4 % of the peak at NA 1.4, 0.065 um pixels) while the pixels on the axes, at exact radii,
#   agree to 1e-5 (test below); the comparisons therefore use oversample 3 on both sides.
# - Its scalar model is Gibson-Lanni's uniform pupil; its vectorial one uses the immersion-to-sample
#   Fresnel coefficients (our t_s, t_p) and includes the evanescent (supercritical) emission when
#   ns < NA (our ``supercritical=True``); the two agree to the default truncation for emitters deeper
#   than about a wavelength.
# - Where the pupil contains the critical angle (ns < NA) and pz > 0, psfmodels deviates from the
#   converged integral by up to about 1 % of the stack's peak (2.7 % of a defocused plane's own peak):
#   the phase pz * sqrt(ns**2 - s**2) has an infinite slope there, which a fixed-step quadrature resolves
#   poorly.  Evidence: the same geometry with ns = 1.41 > NA agrees to 1e-4, so does pz = 0 with ns < NA;
#   our integral is converged (doubling the nodes changes nothing) and matches a 4e5-point midpoint rule;
#   no physical variant (truncation, other decay) brings psfmodels closer.
#
# Normalisation: both kernels are divided by their maximum; deviations are in % of that peak (2 %).

TOLERANCE = 0.02
OIL = {"na": 1.4, "ni": 1.515, "ns": 1.515, "wavelength": 0.52}


def _peak_dev(ours: np.ndarray, reference: np.ndarray) -> float:
    ours = ours.astype(np.float64) / ours.max()
    reference = np.asarray(reference, dtype=np.float64) / np.max(reference)
    return float(np.abs(ours - reference).max())


def _psfmodels():
    return pytest.importorskip("psfmodels")


# (name, our keyword arguments, psfmodels keyword arguments, 3D shape (nz, n), z step)
CASES = {
    "oil_in_focus": (
        {"na": 1.4, "wavelength": 0.52, "pixel_size": 0.065},
        {"NA": 1.4, "wvl": 0.52, "dxy": 0.065, "ns": 1.515, "ni": 1.515, "ni0": 1.515, "pz": 0.0},
        (21, 33),
        0.1,
    ),
    "oil_into_water_5um": (
        {"na": 1.4, "wavelength": 0.52, "pixel_size": 0.1, "sample_index": 1.33, "depth": 5.0},
        {"NA": 1.4, "wvl": 0.52, "dxy": 0.1, "ns": 1.33, "ni": 1.515, "ni0": 1.515, "pz": 5.0},
        (33, 65),
        0.25,
    ),
    "water_na08": (
        {"na": 0.8, "wavelength": 0.6, "pixel_size": 0.2, "immersion_index": 1.33, "coverslip_index": 1.33},
        {"NA": 0.8, "wvl": 0.6, "dxy": 0.2, "ns": 1.33, "ni": 1.33, "ni0": 1.33, "ng": 1.33, "ng0": 1.33, "pz": 0.0},
        (17, 33),
        0.4,
    ),
}


def _zv(ours: dict, theirs: dict, model: str, offsets: np.ndarray) -> np.ndarray:
    """psfmodels' zv of the planes at ``offsets`` (um) from our best focus."""
    focus = best_focus_position(
        na=ours["na"],
        wavelength=ours["wavelength"],
        immersion_index=ours.get("immersion_index", 1.515),
        sample_index=ours.get("sample_index"),
        coverslip_index=ours.get("coverslip_index", 1.515),
        depth=ours.get("depth", 0.0),
        model=model,
    )
    return focus + offsets + theirs["pz"] * (1.0 - theirs["ni"] / theirs["ns"])


@pytest.mark.parametrize("model", ["scalar", "vectorial"])
@pytest.mark.parametrize("case", list(CASES))
def test_3d_focal_scan_matches_psfmodels(case: str, model: str) -> None:
    pm = _psfmodels()
    ours_kw, theirs_kw, (nz, n), dz = CASES[case]
    ours = widefield_psf(3, z_step=dz, shape=(nz, n, n), model=model, oversample=3, **ours_kw)
    zv = _zv(ours_kw, theirs_kw, model, (np.arange(nz) - nz // 2) * dz)
    reference = pm.make_psf(zv, n, oversample_factor=3, model=model, **theirs_kw)
    # Measured: 0.40/0.33 % (oil), 0.73/0.89 % (water, 5 um), 0.77/0.72 % (NA 0.8) scalar/vectorial.
    assert _peak_dev(ours, reference) <= TOLERANCE


@pytest.mark.parametrize("model", ["scalar", "vectorial"])
@pytest.mark.parametrize("case", list(CASES))
def test_2d_in_focus_plane_matches_psfmodels(case: str, model: str) -> None:
    pm = _psfmodels()
    ours_kw, theirs_kw, (_, n), _ = CASES[case]
    ours = widefield_psf(2, shape=(n, n), model=model, oversample=3, **ours_kw)
    reference = pm.make_psf(
        _zv(ours_kw, theirs_kw, model, np.zeros(1)), n, oversample_factor=3, model=model, **theirs_kw
    )
    assert ours.shape == (n, n)
    assert _peak_dev(ours, reference[0]) <= TOLERANCE


@pytest.mark.parametrize("model", ["scalar", "vectorial"])
@pytest.mark.parametrize("defocus", [1.0, -1.0])
def test_defocused_plane_matches_psfmodels(defocus: float, model: str) -> None:
    pm = _psfmodels()
    ours_kw, theirs_kw, _, _ = CASES["oil_in_focus"]
    ours = widefield_psf(2, shape=(65, 65), defocus=defocus, model=model, oversample=3, **ours_kw)
    reference = pm.make_psf([defocus], 65, oversample_factor=3, model=model, **theirs_kw)[0]
    # Measured: 0.26 % (scalar), 0.25 % (vectorial); the defocused plane is normalised by its own peak.
    assert _peak_dev(ours, reference) <= TOLERANCE


@pytest.mark.parametrize("model", ["scalar", "vectorial"])
def test_sign_of_defocus_matches_psfmodels(model: str) -> None:
    # With index mismatch the PSF is not symmetric about focus, which fixes the sign: positive defocus
    # (focal plane deeper than the emitter) is psfmodels' larger zv.  Normalised by the plane's own peak,
    # with psfmodels' critical-angle quadrature error (see above) the deviation is up to 2.6 %, so 3.5 %
    # is allowed here; the opposite sign is 40-57 % off.
    pm = _psfmodels()
    ours_kw, theirs_kw, _, _ = CASES["oil_into_water_5um"]
    for defocus in (1.0, -1.0):
        ours = widefield_psf(2, shape=(65, 65), defocus=defocus, model=model, oversample=3, **ours_kw)
        same, flipped = (
            pm.make_psf(
                _zv(ours_kw, theirs_kw, model, np.array([d])), 65, oversample_factor=3, model=model, **theirs_kw
            )[0]
            for d in (defocus, -defocus)
        )
        assert _peak_dev(ours, same) <= 0.035
        assert _peak_dev(ours, flipped) >= 0.2


@pytest.mark.parametrize("model", ["scalar", "vectorial"])
def test_psfmodels_agrees_exactly_without_critical_angle(model: str) -> None:
    # Same geometry as the water case but ns = 1.41 > NA: no critical angle in the pupil, and psfmodels'
    # pixels on the axes (exact radii, no interpolation) agree to 1e-4 of the peak, 5 um deep and 1 um
    # out of focus; the ~1 % of the ns = 1.33 case is therefore psfmodels' quadrature at the critical angle.
    pm = _psfmodels()
    ours_kw = {"na": 1.4, "wavelength": 0.52, "pixel_size": 0.1, "sample_index": 1.41, "depth": 5.0}
    theirs_kw = {"NA": 1.4, "wvl": 0.52, "dxy": 0.1, "ns": 1.41, "ni": 1.515, "ni0": 1.515, "pz": 5.0}
    ours = widefield_psf(2, shape=(33, 33), defocus=-1.0, model=model, **ours_kw)
    reference = pm.make_psf(
        _zv(ours_kw, theirs_kw, model, np.array([-1.0])), 33, oversample_factor=1, model=model, **theirs_kw
    )[0]
    ours, reference = ours / ours.max(), reference / reference.max()
    assert np.abs(ours[16] - reference[16]).max() <= 1e-3
    assert np.abs(ours[:, 16] - reference[:, 16]).max() <= 1e-3


def test_psfmodels_point_sampling_is_linear_radial_interpolation() -> None:
    # oversample_factor=1: exact on the axes; the diagonal is psfmodels' linear interpolation between the
    # radii n * dxy, which our point sampling does not do (2.4 % of the peak here).
    pm = _psfmodels()
    ours = widefield_psf(2, na=1.4, wavelength=0.52, pixel_size=0.065, shape=(33, 33))
    reference = pm.make_psf([0.0], 33, dxy=0.065, NA=1.4, wvl=0.52, ns=1.515, ni=1.515, ni0=1.515, oversample_factor=1)[
        0
    ]
    ours, reference = ours / ours.max(), reference / reference.max()
    assert np.abs(ours[16] - reference[16]).max() <= 1e-4
    # Diagonal pixels 0..11 lie within the radii of the axis pixels 0..16.
    diagonal = np.interp(np.arange(12) * 0.065 * np.sqrt(2), np.arange(17) * 0.065, ours[16, 16:])
    np.testing.assert_allclose(np.diagonal(reference)[16:28], diagonal, atol=1e-4)
    assert np.abs(ours - reference).max() > 0.02


@pytest.mark.parametrize("model", ["scalar", "vectorial"])
def test_supercritical_emission_at_the_coverslip_matches_psfmodels(model: str) -> None:
    # An emitter on the coverslip in water (NA 1.4 > ns): psfmodels includes the near-field emission
    # beyond the critical angle, as supercritical=True does; the default (propagating waves only, NA
    # effectively 1.33 here) is much wider.  At pz = 0 the complex Fresnel factors move best focus
    # slightly (13 nm, vectorial), hence zv = focus + offsets.
    pm = _psfmodels()
    focus = best_focus_position(na=1.4, wavelength=0.52, sample_index=1.33, supercritical=True, model=model)
    common = {"na": 1.4, "wavelength": 0.52, "pixel_size": 0.05, "sample_index": 1.33, "shape": (7, 33, 33)}
    zv = focus + (np.arange(7) - 3) * 0.2
    reference = pm.make_psf(zv, 33, dxy=0.05, NA=1.4, wvl=0.52, ns=1.33, oversample_factor=3, model=model)
    ours = widefield_psf(3, z_step=0.2, supercritical=True, oversample=3, model=model, **common)
    assert _peak_dev(ours, reference) <= TOLERANCE
    truncated = widefield_psf(3, z_step=0.2, oversample=3, model=model, **common)
    assert _peak_dev(truncated, reference) >= 0.1


@pytest.mark.parametrize("pinhole_au", [0.0, 1.0, 2.0])
def test_confocal_matches_psfmodels(pinhole_au: float) -> None:
    # psfmodels.confocal_psf: excitation x (emission convolved with a pixelated disc of radius
    # pinhole_au * 0.61 * em_wvl / NA), each at oversample_factor=3, in a focal scan centred on zv = 0
    # (best focus without mismatch).  Our pinhole is the exact disc on the radial profile and the pixel
    # integration applies to the product; with 0.03 um pixels both differences stay small.
    pm = _psfmodels()
    ours = confocal_psf(
        3,
        na=1.4,
        excitation_wavelength=0.488,
        emission_wavelength=0.52,
        pixel_size=0.03,
        z_step=0.1,
        shape=(15, 61, 61),
        pinhole_au=pinhole_au,
        oversample=3,
    )
    reference = pm.confocal_psf(
        (np.arange(15) - 7) * 0.1,
        61,
        pinhole_au=pinhole_au,
        dxy=0.03,
        NA=1.4,
        ex_wvl=0.488,
        em_wvl=0.52,
        ns=1.515,
        oversample_factor=3,
    )
    # Measured: 0.30 % (point pinhole), 0.20 % (1 AU), 0.08 % (2 AU).
    assert _peak_dev(ours, reference) <= TOLERANCE


def _fwhm(profile: np.ndarray, pixel_size: float) -> float:
    """Full width at half maximum (um) of a centred symmetric profile, linearly interpolated."""
    half = profile / profile.max() - 0.5
    c = profile.size // 2
    i = c + int(np.argmax(half[c:] < 0))
    x = (i - 1) + half[i - 1] / (half[i - 1] - half[i])
    return 2.0 * (x - c) * pixel_size


def test_point_pinhole_confocal_is_sqrt2_narrower_than_widefield() -> None:
    common = {"na": 1.2, "pixel_size": 0.02, "shape": (61, 61), "immersion_index": 1.33}
    widefield = widefield_psf(2, wavelength=0.5, **common)
    confocal = confocal_psf(2, excitation_wavelength=0.5, emission_wavelength=0.5, pinhole_au=0, **common)
    ratio = _fwhm(confocal[30], 0.02) / _fwhm(widefield[30], 0.02)
    assert ratio == pytest.approx(1 / np.sqrt(2), abs=0.03)  # Airy**2 vs Airy: 0.72
    # The point pinhole is exactly the product of the two widefield PSFs.
    product = widefield * widefield
    np.testing.assert_allclose(confocal, product / product.sum(), atol=1e-6 * confocal.max())
    none = confocal_psf(2, excitation_wavelength=0.5, emission_wavelength=0.5, pinhole_au=None, **common)
    np.testing.assert_array_equal(none, confocal)


def test_confocal_widens_towards_widefield_as_the_pinhole_opens() -> None:
    common = {"na": 1.2, "pixel_size": 0.04, "z_step": 0.2, "shape": (11, 41, 41), "immersion_index": 1.33}
    excitation = widefield_psf(3, wavelength=0.488, **common)
    widths = []
    for au in (0.0, 0.5, 1.0, 2.0, 20.0):
        psf = confocal_psf(3, excitation_wavelength=0.488, emission_wavelength=0.52, pinhole_au=au, **common)
        widths.append(_fwhm(psf[5, 20], 0.04))
    assert np.all(np.diff(widths) > 0)
    # With a 20 AU pinhole detection is uniform near focus: the excitation PSF alone (widefield-like).
    assert _peak_dev(psf, excitation) <= 0.02


def test_confocal_sections_optically() -> None:
    # Widefield: every plane carries the same energy; confocal (1 AU): the out-of-focus planes are dimmer.
    common = {"na": 1.2, "pixel_size": 0.1, "z_step": 0.5, "shape": (9, 101, 101), "immersion_index": 1.33}
    confocal = confocal_psf(3, excitation_wavelength=0.488, emission_wavelength=0.52, **common).sum(axis=(1, 2))
    assert confocal[0] < 0.2 * confocal[4] and confocal[8] < 0.2 * confocal[4]
    widefield = widefield_psf(3, wavelength=0.52, **common).sum(axis=(1, 2))
    np.testing.assert_allclose(widefield, widefield[4], rtol=0.02)


# --- conventions: centring, anisotropic steps, scans ---


@pytest.mark.parametrize("model", ["scalar", "vectorial"])
def test_mismatched_stack_is_centred_on_best_focus(model: str) -> None:
    psf = widefield_psf(
        3,
        na=1.4,
        wavelength=0.52,
        pixel_size=0.1,
        z_step=0.2,
        shape=(21, 31, 31),
        sample_index=1.33,
        depth=10.0,
        model=model,
    )
    assert np.unravel_index(np.argmax(psf), psf.shape) == (10, 15, 15)
    # Asymmetric about focus (spherical aberration), but the central plane is the on-axis maximum.
    axis = psf[:, 15, 15]
    assert axis[10] > axis[9] and axis[10] > axis[11]
    assert not np.allclose(axis, axis[::-1], rtol=0.05)
    # Focal shift into water: the stage moves further than the emitter's depth.
    focus = best_focus_position(na=1.4, wavelength=0.52, sample_index=1.33, depth=10.0, model=model)
    assert 10.0 * 1.515 / 1.33 * 0.95 < focus < 10.0 / 0.7


def test_stage_position_of_matched_focus_is_the_depth() -> None:
    for model in ("scalar", "vectorial"):
        assert best_focus_position(na=1.4, wavelength=0.52, depth=3.0, model=model) == pytest.approx(3.0, abs=1e-4)


def test_anisotropic_z_step() -> None:
    common = {"na": 1.0, "wavelength": 0.6, "pixel_size": 0.1, "immersion_index": 1.33, "sample_index": 1.33}
    fine = widefield_psf(3, z_step=0.2, shape=(17, 25, 25), **common)
    coarse = widefield_psf(3, z_step=0.4, shape=(9, 25, 25), **common)
    fine = fine / fine.sum(axis=(1, 2), keepdims=True)
    coarse = coarse / coarse.sum(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(coarse, fine[::2], atol=1e-6 * fine.max())
    np.testing.assert_allclose(fine, fine[::-1], atol=1e-6 * fine.max())  # matched: symmetric about focus
    default = widefield_psf(3, shape=(9, 25, 25), **common)  # z_step None: the pixel size
    np.testing.assert_array_equal(default, widefield_psf(3, z_step=0.1, shape=(9, 25, 25), **common))


def test_2d_plane_is_the_plane_of_the_stack() -> None:
    common = {"na": 1.4, "wavelength": 0.52, "pixel_size": 0.1, "sample_index": 1.33, "depth": 3.0}
    stack = widefield_psf(3, z_step=0.5, shape=(5, 21, 21), **common)
    for j, defocus in enumerate((-1.0, -0.5, 0.0, 0.5, 1.0)):
        plane = widefield_psf(2, shape=(21, 21), defocus=defocus, **common)
        np.testing.assert_allclose(plane, stack[j] / stack[j].sum(), rtol=1e-4, atol=1e-7)
    shifted = widefield_psf(3, z_step=0.5, shape=(5, 21, 21), defocus=0.5, **common)
    np.testing.assert_allclose(shifted[:4] / shifted[:4].sum(), stack[1:] / stack[1:].sum(), rtol=1e-4, atol=1e-7)


def test_particle_scan() -> None:
    common = {"na": 1.2, "wavelength": 0.52, "pixel_size": 0.1, "z_step": 0.3, "shape": (11, 21, 21)}
    water = {"immersion_index": 1.33, "depth": 2.0}
    np.testing.assert_allclose(
        widefield_psf(3, scan="particle", **common, **water), widefield_psf(3, **common, **water), atol=1e-6
    )
    mismatch = {"immersion_index": 1.515, "sample_index": 1.33, "depth": 8.0}
    particle = widefield_psf(3, scan="particle", **common, **mismatch)
    focal = widefield_psf(3, **common, **mismatch)
    assert np.unravel_index(np.argmax(particle), particle.shape) == (5, 10, 10)
    assert np.abs(particle - focal).max() > 0.01 * focal.max()
    with pytest.raises(ValueError, match="below the coverslip"):
        widefield_psf(3, scan="particle", **common, immersion_index=1.515, sample_index=1.33, depth=0.5)


def test_pixel_integration() -> None:
    common = {"na": 1.4, "wavelength": 0.52, "pixel_size": 0.1, "shape": (21, 21)}
    point, box = widefield_psf(2, **common), widefield_psf(2, oversample=3, **common)
    fine = widefield_psf(2, **{**common, "pixel_size": 0.1 / 3, "shape": (63, 63)})
    binned = fine.reshape(21, 3, 21, 3).sum(axis=(1, 3))
    np.testing.assert_allclose(box, binned / binned.sum(), atol=1e-6)
    assert box.max() < point.max()  # integration lowers the peak pixel


@pytest.mark.parametrize("model", ["scalar", "vectorial"])
def test_plane_energy_is_conserved(model: str) -> None:
    # Parseval: without mismatch every plane carries the pupil's energy (the intensity only spreads).
    from siamdecon.psf import _intensity, _Optics

    optics = _Optics(1.3, 1.515, 1.515, 1.515, 1.515, 1.515, 170.0, 170.0, 150.0, 1.0, model, False)
    r = np.linspace(0.0, 8.0, 2001)
    intensity = _intensity(optics, 0.5, r, np.zeros(3), np.array([0.0, 0.7, 1.5]))
    energy = (intensity * r).sum(axis=1)
    np.testing.assert_allclose(energy, energy[0], rtol=3e-3)


def test_speed_of_a_large_vectorial_stack() -> None:
    import time

    start = time.perf_counter()
    psf = widefield_psf(
        3, na=1.4, wavelength=0.52, pixel_size=0.1, z_step=0.2, shape=(33, 65, 65), sample_index=1.33, depth=5.0
    )
    # About 0.3 s on two cores; a per-pixel evaluation would take minutes.
    assert time.perf_counter() - start < 10.0
    assert psf.shape == (33, 65, 65) and psf.dtype == np.float32


@pytest.mark.parametrize("model", ["scalar", "vectorial"])
def test_generate_psf_model_keyword(model: str, psf3d: np.ndarray) -> None:
    psf = generate_psf(model=model)
    assert psf.shape == (17, 17, 17) and psf.dtype == np.float32
    assert psf.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(psf, psf[:, ::-1, :], atol=1e-6 * psf.max())
    deviation = _rel_max_error(psf, psf3d)
    assert deviation <= 1e-6 if model == "scalar" else 0.02 < deviation < 0.2  # NA 0.8: vectorial effects


# --- automatic size ---


def _faces_max(psf: np.ndarray) -> float:
    """Largest value on the outer faces, relative to the peak."""
    faces = [psf[..., 0, :], psf[..., -1, :], psf[..., :, 0], psf[..., :, -1]]
    if psf.ndim == 3:
        faces += [psf[0], psf[-1]]
    return max(float(f.max()) for f in faces) / float(psf.max())


@pytest.mark.parametrize(
    ("ndim", "kwargs"),
    [
        (2, {"na": 1.4, "wavelength": 0.52, "pixel_size": 0.065}),
        (2, {"na": 1.4, "wavelength": 0.52, "pixel_size": 0.1, "sample_index": 1.33, "depth": 5.0, "defocus": 1.0}),
        (
            3,
            {
                "na": 0.8,
                "wavelength": 0.6,
                "pixel_size": 0.2,
                "z_step": 0.4,
                "immersion_index": 1.33,
                "threshold": 1e-2,
            },
        ),
        (
            3,
            {
                "na": 1.2,
                "wavelength": 0.6,
                "pixel_size": 0.15,
                "z_step": 0.5,
                "immersion_index": 1.33,
                "threshold": 1e-2,
            },
        ),
    ],
)
def test_automatic_size_does_not_truncate(ndim: int, kwargs: dict) -> None:
    threshold = kwargs.get("threshold", 1e-3)
    shape = auto_psf_shape(ndim, **kwargs)
    psf = widefield_psf(ndim, **kwargs)
    assert psf.shape == shape and all(n % 2 == 1 for n in shape)
    assert _faces_max(psf) < threshold
    # Smallest: one pixel (plane) less on every side puts a face at or above the threshold.
    inner = psf[(slice(1, -1),) * ndim]
    assert _faces_max(inner) * inner.max() >= threshold * psf.max()


def test_automatic_size_of_one_axis_and_confocal() -> None:
    common = {"na": 1.2, "wavelength": 0.52, "pixel_size": 0.1, "z_step": 0.3, "immersion_index": 1.33}
    nz, n, _ = auto_psf_shape(3, threshold=1e-2, **common)
    assert auto_psf_shape(3, threshold=1e-2, shape=(None, 11, 11), **common) == (nz, 11, 11)
    assert auto_psf_shape(3, threshold=1e-2, shape=(7, None, None), **common) == (7, n, n)
    confocal = auto_psf_shape(3, threshold=1e-2, excitation_wavelength=0.488, **common)
    assert confocal[0] < nz and confocal[1] <= n  # the confocal PSF is more compact
    psf = confocal_psf(
        3,
        excitation_wavelength=0.488,
        emission_wavelength=0.52,
        threshold=1e-2,
        **{k: v for k, v in common.items() if k != "wavelength"},
    )
    assert psf.shape == confocal and _faces_max(psf) < 1e-2


def test_automatic_size_caps() -> None:
    common = {"na": 1.4, "wavelength": 0.52, "pixel_size": 0.05, "z_step": 0.1}
    with pytest.raises(ValueError, match="max_size=9"):
        auto_psf_shape(2, max_size=9, **common)
    with pytest.raises(ValueError, match="max_num_z=11"):
        auto_psf_shape(3, max_num_z=11, **common)


# --- argument errors ---


WIDEFIELD = {"na": 1.4, "wavelength": 0.52, "pixel_size": 0.1, "shape": (9, 9)}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ndim": 1}, "ndim"),
        ({"na": 1.6}, "na"),
        ({"na": 1.4, "immersion_index": 1.33}, "immersion_index"),
        ({"na": -1.0}, "na"),
        ({"wavelength": 0.0}, "wavelength"),
        ({"wavelength": "0.5"}, "wavelength"),
        ({"pixel_size": float("inf")}, "pixel_size"),
        ({"z_step": 0.0, "ndim": 3, "shape": (3, 9, 9)}, "z_step"),
        ({"shape": (8, 8)}, "shape"),
        ({"shape": (9, 11)}, "shape"),
        ({"shape": (9,)}, "shape"),
        ({"shape": 9}, "shape"),
        ({"sample_index": 0.0}, "sample_index"),
        ({"design_immersion_index": -1.5}, "design_immersion_index"),
        ({"coverslip_index": float("nan")}, "coverslip_index"),
        ({"design_coverslip_index": 0}, "design_coverslip_index"),
        ({"coverslip_thickness": -1.0}, "coverslip_thickness"),
        ({"design_coverslip_thickness": -170.0}, "design_coverslip_thickness"),
        ({"working_distance": 0.0}, "working_distance"),
        ({"depth": -1.0}, "depth"),
        ({"depth": 200.0, "sample_index": 1.33}, "working distance"),
        ({"defocus": float("nan")}, "defocus"),
        ({"model": "gaussian"}, "model"),
        ({"scan": "stage"}, "scan"),
        ({"magnification": 0.0}, "magnification"),
        ({"oversample": 0}, "oversample"),
        ({"oversample": 2.0}, "oversample"),
        ({"oversample": 16}, "oversample"),
        ({"supercritical": "yes"}, "supercritical"),
        ({"threshold": 1.0, "shape": None}, "threshold"),
        ({"threshold": 0.0}, "threshold"),
        ({"max_size": 10}, "max_size"),
        ({"max_num_z": 0}, "max_num_z"),
    ],
)
def test_widefield_invalid_arguments(kwargs: dict, match: str) -> None:
    args = {**WIDEFIELD, **kwargs}
    ndim = args.pop("ndim", 2)
    with pytest.raises(ValueError, match=match):
        widefield_psf(ndim, **args)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"excitation_wavelength": 0.0}, "excitation_wavelength"),
        ({"emission_wavelength": -0.5}, "emission_wavelength"),
        ({"pinhole_au": -1.0}, "pinhole_au"),
        ({"pinhole_au": 25.0}, "pinhole_au"),
        ({"pinhole_au": "1"}, "pinhole_au"),
    ],
)
def test_confocal_invalid_arguments(kwargs: dict, match: str) -> None:
    args = {"na": 1.4, "excitation_wavelength": 0.488, "emission_wavelength": 0.52, "pixel_size": 0.1}
    with pytest.raises(ValueError, match=match):
        confocal_psf(2, shape=(9, 9), **{**args, **kwargs})


def test_generate_psf_invalid_model() -> None:
    with pytest.raises(ValueError, match="model"):
        generate_psf(model="gibson")


# --- command line ---


def _cli(args: list[str]):
    from typer.testing import CliRunner

    from siamdecon.cli import app

    return CliRunner().invoke(app, ["psf", *args])


def test_cli_paper_defaults_unchanged(tmp_path: Path, psf3d: np.ndarray) -> None:
    result = _cli(["-o", str(tmp_path / "p.npy")])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), generate_psf())
    result = _cli(["-o", str(tmp_path / "v.npy"), "--model", "vectorial", "--ndim", "2", "--plane", "8"])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), generate_psf(ndim=2, plane=8, model="vectorial"))


def test_cli_widefield_and_confocal(tmp_path: Path) -> None:
    args = [
        "--na",
        "1.4",
        "--wavelength",
        "0.52",
        "--pixel-size",
        "0.1",
        "--z-step",
        "0.25",
        "--immersion-index",
        "1.515",
    ]
    result = _cli(
        [
            "-o",
            str(tmp_path / "w.npy"),
            *args,
            "--sample-index",
            "1.33",
            "--depth",
            "5",
            "--size",
            "33",
            "--num-z",
            "11",
        ]
    )
    assert result.exit_code == 0, result.output
    expected = widefield_psf(
        3, na=1.4, wavelength=0.52, pixel_size=0.1, z_step=0.25, sample_index=1.33, depth=5.0, shape=(11, 33, 33)
    )
    np.testing.assert_array_equal(np.load(tmp_path / "w.npy"), expected)
    result = _cli(
        ["-o", str(tmp_path / "s.npy"), *args, "--ndim", "2", "--defocus", "1", "--model", "scalar", "--size", "auto"]
    )
    assert result.exit_code == 0, result.output
    expected = widefield_psf(2, na=1.4, wavelength=0.52, pixel_size=0.1, defocus=1.0, model="scalar")
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), expected)
    result = _cli(
        [
            "-o",
            str(tmp_path / "c.npy"),
            *args,
            "--confocal",
            "--excitation-wavelength",
            "0.488",
            "--pinhole",
            "0.8",
            "--size",
            "21",
            "--num-z",
            "9",
        ]
    )
    assert result.exit_code == 0, result.output
    expected = confocal_psf(
        3,
        na=1.4,
        excitation_wavelength=0.488,
        emission_wavelength=0.52,
        pixel_size=0.1,
        z_step=0.25,
        pinhole_au=0.8,
        shape=(9, 21, 21),
    )
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy"), expected)


def test_cli_focal_scan_with_paper_indices(tmp_path: Path) -> None:
    # --scan focal alone: the paper's microscope (NA 0.8, index 1.33 for immersion and sample) as a focal
    # scan centred on focus.
    result = _cli(["-o", str(tmp_path / "f.npy"), "--scan", "focal", "--num-z", "9"])
    assert result.exit_code == 0, result.output
    expected = widefield_psf(
        3, na=0.8, wavelength=0.6, pixel_size=0.406, z_step=0.406, immersion_index=1.33, shape=(9, 17, 17)
    )
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy"), expected)
    # --num-z defaults to --size.
    result = _cli(["-o", str(tmp_path / "p.npy"), "--scan", "particle", "--size", "9", "--depth", "2"])
    assert result.exit_code == 0, result.output
    expected = widefield_psf(
        3,
        na=0.8,
        wavelength=0.6,
        pixel_size=0.406,
        immersion_index=1.33,
        shape=(9, 9, 9),
        depth=2.0,
        scan="particle",
    )
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), expected)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--model", "gaussian"], "--model"),
        (["--scan", "stage"], "--scan"),
        (["--size", "big"], "--size"),
        (["--size", "16"], "odd"),
        (["--num-z", "auto", "--scan", "paper"], "--scan paper"),
        (["--depth", "2", "--scan", "paper"], "--scan paper"),
        (["--depth", "2", "--plane", "3", "--ndim", "2"], "--plane"),
        (["--depth", "-2"], "depth"),
        (["--confocal"], "--excitation-wavelength"),
        (["--excitation-wavelength", "0.488"], "--confocal"),
        (["--depth", "1", "--immersion-index", "1.515", "--refractive-index", "1.4"], "--refractive-index"),
        (["--na", "1.4", "--depth", "1"], "immersion_index"),
        (["--size", "auto", "--threshold", "2"], "threshold"),
    ],
)
def test_cli_errors(tmp_path: Path, args: list[str], match: str) -> None:
    result = _cli(["-o", str(tmp_path / "x.npy"), *args])
    assert result.exit_code == 2
    assert "error:" in result.output and match in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x.npy").exists()
