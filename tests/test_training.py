from __future__ import annotations

import numpy as np
import pytest
import torch

from siamdecon import Deconvolver, degrade, evaluate, make_config
from siamdecon.errors import InputError
from siamdecon.simulate import rescale01


def _tiny(**kw):
    base = dict(steps=60, patch_size=48, width=8, lr=3e-3, tile_size=64, tile_overlap=16, context=16)
    base.update(kw)
    return make_config("fast", ndim=2, training={"batch_size": 4}, **base)


@pytest.fixture(scope="module")
def scene():
    from skimage import data

    psf = np.load(__import__("pathlib").Path(__file__).parent / "data" / "paper_psf_2d.npy")
    clean = rescale01(data.camera()[200:328, 200:328])
    return clean, degrade(clean, psf, seed=0), psf


def test_end_to_end_training_beats_the_input(scene):
    clean, noisy, psf = scene
    model = Deconvolver.fit(noisy, psf, _tiny(), progress=False)
    out = model.predict(noisy)
    assert out.shape == noisy.shape and out.dtype == np.float32
    before, after = evaluate(noisy, clean), evaluate(out, clean)
    assert after["psnr"] > before["psnr"] + 1.0
    assert after["ssim"] > before["ssim"]
    assert len(model.history) == 60
    assert np.isfinite([h["total"] for h in model.history]).all()


@pytest.mark.parametrize("loss", ["blind-spot", "siamese-reconvolved", "siamese-deconvolved"])
def test_paper_style_network_learns_from_scratch(scene, loss):
    # No start estimate: the plain U-Net of the paper, a few steps, loss must go down.
    clean, noisy, psf = scene
    cfg = _tiny(start="none", steps=40, loss=loss, norm="batch", schedule="constant")
    model = Deconvolver.fit(noisy, psf, cfg, progress=False)
    first = np.mean([h["total"] for h in model.history[:5]])
    last = np.mean([h["total"] for h in model.history[-5:]])
    assert last < first


def test_training_is_reproducible_with_a_seed(scene):
    _, noisy, psf = scene
    cfg = _tiny(steps=5)
    a = Deconvolver.fit(noisy, psf, cfg, progress=False).predict(noisy)
    b = Deconvolver.fit(noisy, psf, cfg, progress=False).predict(noisy)
    c = Deconvolver.fit(noisy, psf, _tiny(steps=5, seed=1), progress=False).predict(noisy)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_saved_model_reloads_and_predicts_identically(scene, tmp_path):
    _, noisy, psf = scene
    model = Deconvolver.fit(noisy, psf, _tiny(steps=5, norm="batch"), progress=False)
    model.save(tmp_path / "m.pt")
    loaded = Deconvolver.load(tmp_path / "m.pt")
    assert loaded.config == model.config
    assert np.array_equal(loaded.psf, model.psf)
    assert loaded.normalization == model.normalization
    assert np.allclose(loaded.predict(noisy), model.predict(noisy), atol=1e-6)


def test_tiled_prediction_matches_single_pass(scene):
    _, noisy, psf = scene
    model = Deconvolver.fit(noisy, psf, _tiny(steps=10), progress=False)
    whole = model.predict(noisy, tile_size=128)
    tiled = model.predict(noisy, tile_size=48, tile_overlap=16)
    assert tiled.shape == whole.shape
    assert np.abs(whole - tiled).mean() < 0.02 * noisy.std()


def test_batchnorm_statistics_are_recalibrated_on_unmasked_inputs(scene):
    _, noisy, psf = scene
    model = Deconvolver.fit(noisy, psf, _tiny(steps=3, norm="batch", start="none"), progress=False)
    bns = [m for m in model.network.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.momentum is None and m.num_batches_tracked.item() == 8 for m in bns)


def test_3d_training_runs_and_keeps_shape(psf3d):
    from siamdecon.simulate import filament_phantom

    clean = filament_phantom((20, 40, 40), n_filaments=8, seed=0)
    noisy = degrade(clean, psf3d, seed=0)
    cfg = make_config("fast", ndim=3, steps=4, patch_size=24, width=4, tile_size=32, tile_overlap=8, context=4)
    model = Deconvolver.fit(noisy, psf3d, cfg, progress=False)
    assert model.config.loss.name == "siamese-reconvolved"
    assert model.predict(noisy).shape == noisy.shape


def test_ctrl_c_stops_training_early_and_keeps_the_model(scene):
    _, noisy, psf = scene

    def interrupt(step, logs, network):
        if step == 3:
            raise KeyboardInterrupt

    model = Deconvolver.fit(noisy, psf, _tiny(steps=50), progress=False, callback=interrupt)
    assert model.interrupted and len(model.history) == 3
    with pytest.raises(KeyboardInterrupt):
        Deconvolver.fit(noisy, psf, _tiny(steps=50), progress=False, callback=interrupt, allow_interrupt=False)


def test_api_errors(scene, psf3d, tmp_path):
    _, noisy, psf = scene
    with pytest.raises(InputError, match="3D"):
        Deconvolver.fit(noisy, psf3d, progress=False)
    with pytest.raises(InputError, match="larger than the image"):
        Deconvolver.fit(noisy[:10, :10], psf, progress=False)
    model = Deconvolver.fit(noisy, psf, _tiny(steps=1), progress=False)
    with pytest.raises(InputError, match="trained on 2D"):
        model.predict(np.zeros((4, 32, 32), np.float32))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(InputError, match="not a readable siamdecon model"):
        Deconvolver.load(tmp_path / "junk.pt")


def test_default_boundary_range_is_unit_for_unit_data_and_has_headroom_otherwise():
    from siamdecon.data import default_intensity_range

    assert default_intensity_range(np.array([0.1, 0.7])) == (0.0, 1.0)
    assert default_intensity_range(np.array([100.0, 300.0])) == (0.0, 600.0)
    assert default_intensity_range(np.array([-5.0, 10.0])) == (-5.0, 25.0)


def test_asymmetric_psf_disables_rotation_augmentation_and_tta(scene):
    from siamdecon.data import psf_is_dihedral

    _, noisy, psf = scene
    assert psf_is_dihedral(psf)
    skew = np.zeros((5, 5), np.float32)
    skew[2, 2], skew[2, 3] = 0.7, 0.3
    assert not psf_is_dihedral(skew)
    with pytest.warns(UserWarning, match="not symmetric"):
        model = Deconvolver.fit(noisy, skew, _tiny(steps=2), progress=False)
    assert np.array_equal(model.predict(noisy, tta=True), model.predict(noisy, tta=False))


def test_constant_image_is_refused(scene):
    _, _, psf = scene
    with pytest.raises(InputError, match="constant"):
        Deconvolver.fit(np.ones((64, 64), np.float32), psf, progress=False)
