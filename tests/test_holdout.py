"""The ground-truth-free check (siamdecon.holdout): held-out data stays held out, the criterion
ranks a good estimate above a bad one, and the weighted Spitfire data term is right."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import signal

from siamdecon import holdout, variational
from siamdecon.classical import richardson_lucy_series
from siamdecon.holdout import check, holdout_folds, reconvolve, replace_by_neighbours
from siamdecon.noise import NoiseModel
from siamdecon.simulate import fluorescence_2d, tubes_3d
from siamdecon.variational import spitfire


def _gaussian(shape: tuple[int, ...], sigma: float) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    psf = np.exp(-0.5 * sum(g**2 for g in grids) / sigma**2)
    return (psf / psf.sum()).astype(np.float32)


def _camera_case(seed: int = 0, size: int = 96):
    """A blurred 2D object in photon counts with Poisson noise and a camera offset of 100."""
    rng = np.random.default_rng(seed)
    truth = 100.0 + 400.0 * fluorescence_2d(size, seed=seed)
    psf = _gaussian((13, 13), 2.0)
    blurred = signal.fftconvolve(np.pad(truth, 6, mode="reflect"), psf, mode="valid")
    noisy = 100.0 + rng.poisson(np.clip(blurred - 100.0, 0, None)).astype(np.float32)
    return truth.astype(np.float32), noisy.astype(np.float32), psf, NoiseModel(1.0, 100.0, 1e-3)


def test_folds_are_as_sparse_as_the_training_mask_and_seeded():
    a = holdout_folds((64, 64), 4, 0.01, seed=3)
    b = holdout_folds((64, 64), 4, 0.01, seed=3)
    assert a.shape == (4, 64, 64) and a.dtype == bool
    np.testing.assert_array_equal(a, b)
    # One pixel per 10x10 box: 7x7 boxes, the last row/column of boxes partly outside.
    assert 36 <= int(a[0].sum()) <= 49
    assert not np.array_equal(a[0], a[1])


def test_replace_by_neighbours_uses_only_unmasked_neighbours():
    img = np.arange(25, dtype=np.float32).reshape(5, 5)
    mask = np.zeros((5, 5), bool)
    mask[2, 2] = mask[2, 3] = True
    out = replace_by_neighbours(img, mask)
    ring = [img[1, 1], img[1, 2], img[1, 3], img[2, 1], img[3, 1], img[3, 2], img[3, 3]]
    assert out[2, 2] == pytest.approx(np.mean(ring))
    np.testing.assert_array_equal(out[~mask], img[~mask])


def test_reconvolve_continues_the_object_by_reflection():
    psf = _gaussian((7, 7), 1.5)
    flat = np.full((20, 20), 3.0, np.float32)
    # A constant object blurs to itself everywhere, the border included (no missing light).
    np.testing.assert_allclose(reconvolve(flat, psf), flat, rtol=1e-5)
    img = np.random.default_rng(0).random((20, 20)).astype(np.float32)
    direct = signal.convolve(np.pad(img, 3, mode="reflect"), psf, mode="valid")
    np.testing.assert_allclose(reconvolve(img, psf), direct, atol=1e-5)


@pytest.mark.parametrize("ndim", [2, 3])
def test_weighted_spitfire_with_unit_weights_is_spitfire(ndim):
    rng = np.random.default_rng(1)
    if ndim == 2:
        psf = _gaussian((7, 7), 1.3)
        img = signal.convolve(fluorescence_2d(40, seed=1), psf, mode="same")
    else:
        psf = _gaussian((5, 7, 7), 1.2)
        img = signal.convolve(tubes_3d((12, 24, 24), seed=1), psf, mode="same")
    img = (img + 0.01 * rng.standard_normal(img.shape)).astype(np.float32)
    plain = spitfire(img, psf, reg=0.99, pad=4, max_iterations=60)
    weighted = spitfire(img, psf, reg=0.99, pad=4, max_iterations=60, weights=np.ones_like(img))
    np.testing.assert_allclose(weighted, plain, atol=1e-4 * float(np.ptp(img)))


def test_weighted_circular_data_term_gradient_follows_the_sdeconv_convention():
    rng = np.random.default_rng(2)
    shape = (6, 8, 10)
    psf = torch.from_numpy(_gaussian((3, 5, 5), 1.0))
    otf = variational._circular_otf(psf, shape)
    u = torch.from_numpy(rng.random(shape).astype(np.float32)).requires_grad_(True)
    y = torch.from_numpy(rng.random(shape).astype(np.float32))
    w = torch.from_numpy((rng.random(shape) > 0.3).astype(np.float32))
    loss = variational._WeightedCircularDataTerm.apply(u, y, w, otf)
    loss.backward()
    v = u.detach().clone().requires_grad_(True)
    blurred = torch.fft.irfftn(torch.fft.rfftn(v) * otf, s=shape)
    reference = torch.mean(w * (blurred - y) ** 2)
    reference.backward()
    assert float(loss.detach()) == pytest.approx(float(reference.detach()), rel=1e-5)
    # As sdeconv's unweighted term: half the true gradient.
    np.testing.assert_allclose(u.grad.numpy(), 0.5 * v.grad.numpy(), rtol=1e-4, atol=1e-8)


def test_zero_weight_pixels_do_not_influence_the_classical_estimates():
    _, noisy, psf, _ = _camera_case(size=48)
    held = holdout_folds(noisy.shape, 2, 0.02, seed=0).any(axis=0)
    other = noisy.copy()
    other[held] += 500.0  # very different data at the held-out pixels only
    w = (~held).astype(np.float32)
    a, b = (replace_by_neighbours(x, held) for x in (noisy, other))
    np.testing.assert_array_equal(a, b)
    lr_a = richardson_lucy_series(a - 100, psf, [5], boundary="extend", weights=w)[5]
    lr_b = richardson_lucy_series(b - 100, psf, [5], boundary="extend", weights=w)[5]
    np.testing.assert_array_equal(lr_a, lr_b)
    # And the weights themselves matter: without them the held-out values are data.
    lr_c = richardson_lucy_series(np.clip(other - 100, 0, None), psf, [5], boundary="extend")[5]
    assert np.abs(lr_c - lr_a).max() > 1.0
    sp_a = spitfire(a - 100, psf, reg=0.99, pad=4, max_iterations=40, weights=w)
    # Without the replacement the held-out values would leak through Spitfire's start and range.
    sp_c = spitfire(other - 100, psf, reg=0.99, pad=4, max_iterations=40, weights=w)
    assert np.abs(sp_c - sp_a).max() > 0
    sp_b = spitfire(b - 100, psf, reg=0.99, pad=4, max_iterations=40, weights=w)
    np.testing.assert_array_equal(sp_a, sp_b)


def test_check_keeps_a_network_that_knows_the_object():
    truth, noisy, psf, noise = _camera_case()
    report = check(lambda masked: truth, noisy, psf, noise=noise, folds=4, mask_fraction=0.02, spitfire_regs=(0.99,))
    assert not report.fell_back
    assert report.network.error < report.classical[0].error
    assert report.z < 0
    # The truth predicts the data to within the noise: a normalized error of about 1.
    assert report.network.error == pytest.approx(1.0, abs=0.15)
    assert "writing the network's result" in report.summary()
    with pytest.raises(ValueError, match="network won"):
        report.estimate(noisy, psf)


def test_every_candidates_errors_are_its_held_out_predictions_against_the_data():
    truth, noisy, psf, noise = _camera_case()
    report = check(lambda masked: truth, noisy, psf, noise=noise, folds=2, mask_fraction=0.02, spitfire_regs=(0.99,))
    assert report.observed.shape == (report.pixels,) == report.observed_weights.shape
    # The truth's reconvolution, read at the held-out pixels, is the network's prediction there.
    blurred = reconvolve(truth, psf)
    assert np.isin(report.networks[0].predictions, blurred).all()
    for c in (*report.networks, *report.classical):
        expected = (c.predictions.astype(np.float64) - report.observed) ** 2 * report.observed_weights
        np.testing.assert_allclose(c.errors, expected, rtol=1e-5)
        assert c.error == pytest.approx(float(expected.mean()), rel=1e-5)


def test_check_replaces_a_network_that_does_not_deconvolve():
    truth, noisy, psf, noise = _camera_case()
    # "Deconvolution" that returns its (masked) input: reblurred, it is blurred twice. (Steps
    # from it are off: Lucy-Richardson steps from the input are a deconvolution of their own.)
    report = check(
        lambda masked: masked, noisy, psf, noise=noise, folds=4, mask_fraction=0.02, spitfire_regs=(0.99,), refine=False
    )
    assert report.fell_back
    assert report.z > 2
    assert report.winner is report.classical[0]
    assert report.winner.name in ("lucy-richardson", "spitfire")
    assert "instead" in report.summary()
    est = report.estimate(noisy, psf)
    assert est.shape == noisy.shape
    # The fallback is a real deconvolution: closer to the object than the input is.
    assert np.mean((est - truth) ** 2) < np.mean((noisy - truth) ** 2)
    record = report.to_dict()
    assert record["fell_back"] is True and record["winner"] == report.winner.label


def test_check_runs_on_the_central_region_of_a_large_image():
    truth, noisy, psf, noise = _camera_case(size=96)
    seen: list[tuple[int, ...]] = []
    masks: list[np.ndarray] = []

    def replace(img, mask, rng):
        masks.append(mask)
        return replace_by_neighbours(img, mask, rng)

    def predict(masked):
        seen.append(masked.shape)
        return masked

    report = check(
        predict,
        noisy,
        psf,
        noise=noise,
        folds=2,
        max_voxels=48 * 48,
        spitfire_regs=(),
        mask_fraction=0.02,
        replace=replace,
    )
    # Every estimate is computed on the central 48x48 (the context) ...
    assert tuple(s.stop - s.start for s in report.context) == (48, 48)
    assert report.context[0].start == 24
    assert seen == [(48, 48), (48, 48)]
    # ... and the held-out pixels are drawn a quarter of the PSF (13 // 4 = 3) inside it, where
    # the estimates had the data around them.
    assert report.region == (slice(27, 69), slice(27, 69))
    held = np.any(masks, axis=0)
    assert held[3:45, 3:45].sum() == held.sum() == report.pixels > 0
    assert report.to_dict()["context"] == [[24, 72], [24, 72]]


def test_check_regions_cut_margins_only_where_the_image_goes_on():
    context, scored = holdout.check_regions((64, 256, 256), (33, 49, 49), max_voxels=2**18)
    # z is kept whole here (the PSF's 33 planes need 34): no margin at the image's own borders.
    assert context[0] == slice(15, 49)
    assert tuple(s.stop - s.start for s in context) == (34, 101, 101)
    assert scored == (slice(23, 41), slice(89, 166), slice(89, 166))
    small, inside = holdout.check_regions((24, 64, 64), (33, 49, 49))
    assert small == inside == (slice(0, 24), slice(0, 64), slice(0, 64))


def test_a_check_on_a_crop_read_alone_matches_the_check_on_the_whole_image():
    _, noisy, psf, noise = _camera_case(size=96)
    kwargs = dict(noise=noise, folds=2, max_voxels=48 * 48, spitfire_regs=(), mask_fraction=0.02)
    whole = check(lambda m: m, noisy, psf, **kwargs)
    context = whole.context
    part = check(lambda m: m, noisy[context], psf, part_of=(noisy.shape, context), **kwargs)
    assert part.region == whole.region and part.pixels == whole.pixels
    np.testing.assert_allclose(part.network.errors, whole.network.errors, rtol=1e-6)
    np.testing.assert_allclose(part.classical[0].errors, whole.classical[0].errors, rtol=1e-5)
    with pytest.raises(ValueError, match="has shape"):
        check(lambda m: m, noisy[:40, :40], psf, part_of=(noisy.shape, context), **kwargs)


def test_spitfire_on_a_crop_with_a_scaled_epsilon_takes_the_whole_images_steps():
    # Spitfire's objective is a mean over voxels: on a larger image its gradient per voxel is
    # smaller and Adam's epsilon damps it more. Scaling the epsilon by the voxel ratio makes a
    # crop take the whole image's steps, so its interior comes closer to the whole image's result
    # (measured: mean difference 0.128 scaled, 0.218 not; the rest is the crop's border).
    rng = np.random.default_rng(0)
    shape = (24, 160, 160)
    grids = np.meshgrid(*[np.arange(9) - 4] * 3, indexing="ij")
    psf = np.exp(-0.5 * ((grids[0] / 2.0) ** 2 + (grids[1] / 1.5) ** 2 + (grids[2] / 1.5) ** 2))
    psf = (psf / psf.sum()).astype(np.float32)
    truth = 400.0 * tubes_3d(shape, seed=1)
    blurred = signal.fftconvolve(np.pad(truth, 4, mode="reflect"), psf, mode="valid")
    data = rng.poisson(np.clip(blurred, 0, None)).astype(np.float32)
    kw = dict(reg=0.98, max_iterations=150, value_range=(float(data.min()), float(data.max())))
    whole = spitfire(data, psf, **kw)
    box = (slice(None), slice(56, 104), slice(56, 104))
    crop = np.ascontiguousarray(data[box])
    pad = variational.SPITFIRE_PAD
    ratio = np.prod([n + 2 * pad for n in shape]) / np.prod([n + 2 * pad for n in crop.shape])
    inner = (slice(None), slice(8, 40), slice(8, 40))
    ref = whole[box][inner]
    plain = spitfire(crop, psf, **kw)[inner]
    scaled = spitfire(crop, psf, adam_eps=variational.SPITFIRE_ADAM_EPS * ratio, **kw)[inner]
    err_plain = float(np.abs(plain - ref).mean())
    err_scaled = float(np.abs(scaled - ref).mean())
    assert err_scaled < 0.75 * err_plain
    with pytest.raises(ValueError, match="adam_eps"):
        spitfire(crop, psf, adam_eps=0.0)
    with pytest.raises(ValueError, match="value_range"):
        spitfire(crop, psf, value_range=(1.0, 1.0))


def test_check_needs_a_classical_candidate():
    _, noisy, psf, noise = _camera_case(size=32)
    with pytest.raises(ValueError, match="at least one classical"):
        check(lambda m: m, noisy, psf, noise=noise, folds=1, lr_iterations=(), spitfire_regs=())


def test_model_check_runs_the_network_on_masked_copies():
    from siamdecon import Deconvolver, make_config

    truth, noisy, psf, _ = _camera_case(size=64)
    cfg = make_config("fast", 2, steps=2, prior={"source": "none"})
    model = Deconvolver.fit(noisy, psf, cfg, progress=False)
    seen: list[np.ndarray] = []
    original = model.predict

    def spy(image, **kwargs):
        seen.append(np.array(image))
        return original(image, **kwargs)

    model.predict = spy  # type: ignore[method-assign]
    report = model.check(noisy, folds=3, spitfire_regs=())
    assert len(seen) == 3
    masks = holdout_folds(noisy.shape, 3, cfg.mask.fraction, 0)
    for copy, mask in zip(seen, masks):
        np.testing.assert_array_equal(copy[~mask], noisy[~mask])
        np.testing.assert_allclose(copy[mask], replace_by_neighbours(noisy, mask)[mask])
    assert report.pixels == int(masks.any(axis=0).sum())
    assert holdout.LR_ITERATIONS[0] == 1


def test_default_folds_hold_out_about_min_held_out_pixels():
    calls = []

    def predictor(masked):
        calls.append(1)
        return masked

    big = np.random.default_rng(0).random((512, 512)).astype(np.float32) + 1.0
    psf = _gaussian((5, 5), 1.0)
    noise = NoiseModel(1.0, 0.0, 0.01)
    # 2 % of 512^2 is 5,243 pixels per fold: the minimum of 2 folds.
    report = check(predictor, big, psf, noise=noise, mask_fraction=0.02, spitfire_regs=(), lr_iterations=(1, 2))
    assert len(calls) == 2 and report.pixels >= holdout.MIN_HELD_OUT
    calls.clear()
    # 0.5 % of 64^2 is 20 per fold: capped at 8 folds.
    check(predictor, big[:64, :64], psf, noise=noise, mask_fraction=0.005, spitfire_regs=(), lr_iterations=(1,))
    assert len(calls) == 8


def test_a_lucy_richardson_step_corrects_an_estimate_that_is_too_bright():
    from siamdecon.classical import richardson_lucy_refine

    truth, noisy, psf, _ = _camera_case(size=64)
    exact = reconvolve(truth, psf)  # noise-free data for the truth (offset 100 included)
    # The truth is a fixed point of the step on its own noise-free data, away from the border
    # (where the step continues the object by replication, the data by reflection) ...
    same = richardson_lucy_refine(truth, exact, psf, offset=100.0)
    inside = (slice(13, -13), slice(13, -13))
    assert np.abs(same - truth)[inside].max() < 1e-3 * float(truth.max())
    # ... and an estimate 30 % too bright above the offset is pulled back towards it: the step
    # rescales by the light the reblurred estimate adds.
    bright = 100.0 + 1.3 * (truth - 100.0)
    fixed = richardson_lucy_refine(bright, exact, psf, offset=100.0)
    excess = float((bright - truth).mean())
    assert abs(float((fixed - truth).mean())) < 0.05 * excess
    assert np.mean((fixed - truth) ** 2) < 0.2 * np.mean((bright - truth) ** 2)
    with pytest.raises(ValueError, match="shape"):
        richardson_lucy_refine(truth[:10], exact, psf)
    with pytest.raises(ValueError, match="iterations"):
        richardson_lucy_refine(truth, exact, psf, iterations=0)


def test_the_check_writes_the_network_after_a_lucy_richardson_step_when_that_predicts_better():
    from siamdecon.classical import richardson_lucy_refine

    truth, noisy, psf, noise = _camera_case()
    bright = 100.0 + 1.3 * (truth - 100.0)  # a network that knows the shapes, not the intensities
    kwargs = dict(noise=noise, folds=4, mask_fraction=0.02, spitfire_regs=(0.99,), refine_steps=(1,))
    report = check(lambda masked: bright, noisy, psf, **kwargs)
    raw, refined = report.networks
    assert raw.label == "network" and refined.label == "network + 1 Lucy-Richardson step"
    assert refined.error < 0.8 * raw.error
    assert report.network is refined and report.lr_steps == 1 and not report.fell_back
    assert "after one Lucy-Richardson step" in report.summary()
    written = report.output(noisy, psf, bright)
    np.testing.assert_allclose(written, richardson_lucy_refine(bright, noisy, psf, offset=100.0), rtol=1e-6)
    assert np.mean((written - truth) ** 2) < np.mean((bright - truth) ** 2)
    assert report.to_dict()["networks"].keys() == {"network", "network + 1 Lucy-Richardson step"}
    # Without the step the same network is scored as is.
    plain = check(lambda masked: bright, noisy, psf, refine=False, **kwargs)
    assert [c.label for c in plain.networks] == ["network"] and plain.lr_steps == 0
    assert plain.network.error == pytest.approx(raw.error)
    # The step must lower the held-out error by more than step_margin of it to be written.
    gain = 1.0 - refined.error / raw.error
    strict = check(lambda masked: bright, noisy, psf, step_margin=gain + 0.05, **kwargs)
    assert strict.network.label == "network" and strict.lr_steps == 0
    assert strict.networks[1].error == pytest.approx(refined.error)
    assert check(lambda masked: bright, noisy, psf, step_margin=gain - 0.05, **kwargs).lr_steps == 1
    with pytest.raises(ValueError, match="step_margin"):
        check(lambda masked: bright, noisy, psf, step_margin=1.0, **kwargs)


def test_refine_series_keeps_every_count_of_one_run():
    from siamdecon.classical import richardson_lucy_refine, richardson_lucy_refine_series

    truth, noisy, psf, _ = _camera_case(size=48)
    start = 100.0 + 1.2 * (truth - 100.0)
    series = richardson_lucy_refine_series(start, noisy, psf, [4, 1, 2], offset=100.0)
    assert sorted(series) == [1, 2, 4]
    for k, est in series.items():
        np.testing.assert_allclose(
            est, richardson_lucy_refine(start, noisy, psf, offset=100.0, iterations=k), rtol=1e-6
        )
    with pytest.raises(ValueError, match="positive"):
        richardson_lucy_refine_series(start, noisy, psf, [0, 2])
    with pytest.raises(ValueError, match="positive"):
        richardson_lucy_refine_series(start, noisy, psf, [])


def _scored(errors: list[float], lr_steps: int | None = None) -> holdout.Candidate:
    params = {} if lr_steps is None else {"lr_steps": lr_steps}
    e = np.asarray(errors, np.float64)
    return holdout.Candidate("network", params, float(e.mean()), e)


def test_the_longest_series_that_keeps_beating_what_stands_is_chosen():
    n = 400
    ones = np.ones(n)
    raw = _scored(list(2.0 * ones))
    one = _scored(list(1.5 * ones), 1)  # better at every pixel, by 25 %
    two = _scored(list(1.49 * ones), 2)  # better everywhere, but by less than the 1 % margin
    four = _scored(list(1.2 * ones), 4)  # 20 % better than one step: stands
    eight = _scored(list(np.where(np.arange(n) < 150, 0.1, 1.3)), 8)  # lower mean, worse at most pixels
    sixteen = _scored(list(1.1 * ones), 16)  # better than four steps everywhere
    chosen, z = holdout._choose_steps([raw, one, two, four, eight, sixteen], 2.0, 0.01)
    assert chosen is sixteen
    assert z == pytest.approx(np.sqrt(n))  # the first step is better at all n pixels
    # Without sixteen, the sign test keeps four steps against eight's lower mean.
    assert eight.error < four.error
    assert holdout._choose_steps([raw, one, two, four, eight], 2.0, 0.01)[0] is four
    # The first step gates the rest: if it does not stand, no longer series is considered.
    weak = _scored(list(1.995 * ones), 1)  # better everywhere, by 0.25 %
    chosen, z = holdout._choose_steps([raw, weak, two, four, sixteen], 2.0, 0.01)
    assert chosen is raw and z > 2.0
    assert holdout._choose_steps([raw], 2.0, 0.01) == (raw, 0.0)


def test_the_check_writes_several_steps_from_a_network_that_deconvolves_too_little():
    from siamdecon.classical import richardson_lucy_refine

    truth, noisy, psf, noise = _camera_case()
    # A network that only denoises: the noise-free blurred object. Lucy-Richardson steps from
    # it deconvolve, and more of them predict the held-out pixels better.
    blurred = reconvolve(truth, psf)
    report = check(lambda masked: blurred, noisy, psf, noise=noise, folds=4, mask_fraction=0.02, spitfire_regs=(0.99,))
    labels = [c.label for c in report.networks]
    assert labels == ["network"] + [
        "network + 1 Lucy-Richardson step",
        *(f"network + {k} Lucy-Richardson steps" for k in (2, 4, 8, 16)),
    ]
    assert report.lr_steps > 1 and not report.fell_back and report.network is report.winner
    errors = [c.error for c in report.networks]
    assert report.network.error == min(errors[: report.networks.index(report.network) + 1])
    assert f"after {report.lr_steps} Lucy-Richardson steps" in report.summary()
    written = report.output(noisy, psf, blurred)
    expected = richardson_lucy_refine(blurred, noisy, psf, offset=100.0, iterations=report.lr_steps)
    np.testing.assert_allclose(written, expected, rtol=1e-6)
    assert np.mean((written - truth) ** 2) < np.mean((blurred - truth) ** 2)
    # refine_steps sets the counts scored.
    short = check(
        lambda masked: blurred,
        noisy,
        psf,
        noise=noise,
        folds=4,
        mask_fraction=0.02,
        lr_iterations=(4,),
        spitfire_regs=(),
        refine_steps=(3, 1),
    )
    assert [c.params.get("lr_steps", 0) for c in short.networks] == [0, 1, 3]
    with pytest.raises(ValueError, match="refine_steps"):
        check(lambda masked: blurred, noisy, psf, noise=noise, refine_steps=(0, 1))


def test_a_step_that_fixes_a_few_pixels_is_not_written_when_it_makes_most_no_better():
    # A network right everywhere but in a small box, twice too bright there: one step fixes the
    # box, which lowers the mean held-out error by far more than the margin, while the other
    # pixels gain nothing. The mean alone would write the step; the sign test does not.
    truth, noisy, psf, noise = _camera_case()
    est = truth.copy()
    est[40:50, 40:50] = 100.0 + 2.0 * (truth[40:50, 40:50] - 100.0)
    kwargs = dict(noise=noise, folds=4, mask_fraction=0.02, spitfire_regs=(0.99,), refine_steps=(1,))
    report = check(lambda masked: est, noisy, psf, **kwargs)
    raw, refined = report.networks
    assert refined.error < 0.95 * raw.error
    assert abs(report.step_z) < 2.0 and report.lr_steps == 0 and report.network is raw
    assert report.to_dict()["step_z"] == pytest.approx(report.step_z, abs=1e-3)
    # Where the step makes most pixels better (a network too bright everywhere) it is written.
    bright = 100.0 + 1.3 * (truth - 100.0)
    everywhere = check(lambda masked: bright, noisy, psf, **kwargs)
    assert everywhere.step_z > 2.0 and everywhere.lr_steps == 1


def test_output_writes_the_network_as_is_or_the_fallback():
    truth, noisy, psf, noise = _camera_case()
    kwargs = dict(noise=noise, folds=4, mask_fraction=0.02, spitfire_regs=(0.99,), refine=False)
    kept = check(lambda masked: truth, noisy, psf, **kwargs)
    np.testing.assert_array_equal(kept.output(noisy, psf, truth), truth)
    with pytest.raises(ValueError, match="prediction"):
        kept.output(noisy, psf, None)
    replaced = check(lambda masked: masked, noisy, psf, **kwargs)
    assert replaced.fell_back and replaced.lr_steps == 0
    np.testing.assert_array_equal(replaced.output(noisy, psf, None), replaced.estimate(noisy, psf))


def test_the_check_runs_on_a_stack_thinner_than_spitfires_padding():
    # sdeconv's padding is 13 voxels of reflection; a stack of 6 planes gets less, not an error.
    rng = np.random.default_rng(0)
    truth = 100.0 + 300.0 * tubes_3d((6, 32, 32), seed=0)
    psf = _gaussian((3, 5, 5), 1.0)
    noisy = (100.0 + rng.poisson(np.clip(reconvolve(truth, psf) - 100.0, 0, None))).astype(np.float32)
    report = check(
        lambda m: m, noisy, psf, noise=NoiseModel(1.0, 100.0, 1e-3), folds=2, mask_fraction=0.05, spitfire_regs=(0.99,)
    )
    assert any(c.name == "spitfire" for c in report.classical) and np.isfinite(report.classical[0].error)
    best_spitfire = next(c for c in report.classical if c.name == "spitfire")
    assert holdout.classical_estimate(best_spitfire, noisy, psf, 100.0).shape == noisy.shape


def test_spitfire_on_blocks_as_parts_of_the_whole_image_matches_it_on_the_whole():
    """A lazily read volume's fallback runs block by block, each block with a margin: told the
    whole image's shape and range, Spitfire on a block solves the block's part of the whole
    image's problem, far closer to the whole image's estimate than the block solved on its own."""
    from scipy import signal as sps

    from siamdecon.batch import FALLBACK_MARGIN, _with_margin
    from siamdecon.data import iter_blocks
    from siamdecon.holdout import Candidate, classical_estimate
    from siamdecon.simulate import fluorescence_2d

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[-4:5, -4:5]
    psf = np.exp(-(yy**2 + xx**2) / (2 * 1.6**2))
    psf /= psf.sum()
    truth = 100 + 400 * fluorescence_2d(96, seed=0)
    image = (100 + rng.poisson(np.clip(sps.fftconvolve(truth, psf, mode="same") - 100, 0, None))).astype(np.float32)
    spitfire = Candidate("spitfire", {"reg": 0.98}, 0.0, None)
    whole = classical_estimate(spitfire, image, psf, 100.0)
    errors = {}
    for told in (False, True):
        out = np.zeros_like(image)
        for region in iter_blocks(image.shape, (48, 48)):
            where = _with_margin(region, [FALLBACK_MARGIN * (k - 1) for k in psf.shape], image.shape)
            part_of = (image.shape, (float(image.min()), float(image.max()))) if told else None
            est = classical_estimate(spitfire, image[where], psf, 100.0, part_of=part_of)
            out[region] = est[tuple(slice(r.start - w.start, r.stop - w.start) for r, w in zip(region, where))]
        errors[told] = float(np.abs(out - whole).max() / whole.std())
    assert errors[True] < 0.05 and errors[False] > 3 * errors[True], errors
