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


def _skew_psf() -> np.ndarray:
    skew = np.zeros((5, 5), np.float32)
    skew[2, 2], skew[2, 3], skew[1, 2] = 0.6, 0.3, 0.1
    return skew


def test_asymmetric_psf_disables_rotation_augmentation_and_the_tta_of_a_network_that_blurs_its_tile(scene):
    from siamdecon.data import psf_is_dihedral

    _, noisy, psf = scene
    assert psf_is_dihedral(psf)
    skew = _skew_psf()
    assert not psf_is_dihedral(skew)
    cfg = _tiny(steps=2, start={"kind": "lucy-richardson", "iterations": 2})
    with pytest.warns(UserWarning, match="not symmetric"):
        model = Deconvolver.fit(noisy, skew, cfg, progress=False)
    with pytest.warns(UserWarning, match="test-time augmentation skipped"):
        with_tta = model.predict(noisy, tta=True)
    assert np.array_equal(with_tta, model.predict(noisy, tta=False))


def test_tta_of_the_generic_network_is_valid_for_an_asymmetric_psf(scene):
    """Rotating the image and the PSF together rotates the averaged prediction, exactly; one
    network pass alone is not equivariant."""
    from siamdecon.training import build_network

    _, noisy, _ = scene
    skew = _skew_psf()
    with pytest.warns(UserWarning, match="not symmetric"):
        model = Deconvolver.fit(noisy, skew, _tiny(steps=5), progress=False)
    assert model.network.start == "generic"
    turned_psf = np.rot90(skew).copy()
    net = build_network(model.config, turned_psf, model.normalization)
    net.unet.load_state_dict(model.network.unet.state_dict())
    turned = Deconvolver(net, model.config, turned_psf, model.normalization)
    image = noisy[:64, :64]
    spread = float(np.std(model.predict(image, tta=True)))
    averaged = np.rot90(model.predict(image, tta=True))
    np.testing.assert_allclose(turned.predict(np.rot90(image).copy(), tta=True), averaged, atol=1e-4 * spread)
    single = np.abs(turned.predict(np.rot90(image).copy(), tta=False) - np.rot90(model.predict(image, tta=False)))
    assert float(single.max()) > 1e-2 * spread


def test_tta_of_the_generic_network_runs_lucy_richardson_once_and_matches_rotating_the_tile(scene, monkeypatch):
    import siamdecon.classical as classical

    _, noisy, psf = scene
    model = Deconvolver.fit(noisy, psf, _tiny(steps=5), progress=False)
    image = noisy[:64, :64]
    calls = []
    original = classical.richardson_lucy_tensors

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(classical, "richardson_lucy_tensors", counted)
    fast = model.predict(image, tta=True)
    assert len(calls) == 1
    from siamdecon.inference import predict_tiled, with_augmentation

    n = model.normalization
    per_rotation = with_augmentation(lambda x: model.network(x, n.mean, n.std, n.gain, n.offset, n.read_variance))
    inf = model.config.inference
    slow = n.invert(predict_tiled(per_rotation, n.apply(image)[None], 64, inf.tile_overlap, margin=inf.context)[0])
    np.testing.assert_allclose(fast, slow, atol=1e-4 * float(np.std(fast)))
    assert float(np.abs(fast - model.predict(image, tta=False)).max()) > 1e-3 * float(np.std(fast))


def test_constant_image_is_refused(scene):
    _, _, psf = scene
    with pytest.raises(InputError, match="constant"):
        Deconvolver.fit(np.ones((64, 64), np.float32), psf, progress=False)
