from __future__ import annotations

import json

import pytest

from siamdecon.config import (
    Config,
    ConstantSchedule,
    CustomLoss,
    GenericStart,
    LucyRichardsonStart,
    NoStart,
    OneCycleSchedule,
    PresetLoss,
    StepSchedule,
    make_config,
)
from siamdecon.errors import ConfigError


def test_paper_preset_is_the_paper_protocol():
    c2 = make_config("paper", ndim=2)
    assert (c2.network.width, c2.network.levels, c2.network.skip) == (96, 3, "concat")
    t = c2.training
    assert (t.steps, t.batch_size, t.patch_size, t.lr) == (3000, 16, 128, 4e-4)
    assert t.schedule == StepSchedule(decay_every=500, decay_factor=0.5)
    assert t.start == NoStart()
    assert c2.loss == PresetLoss(name="siamese-deconvolved", boundary_weight=0.0)
    assert (c2.mask.fraction, c2.mask.noise_std) == (0.005, 0.2)
    c3 = make_config("paper", ndim=3)
    assert (c3.network.width, c3.network.skip) == (48, "add")
    assert (c3.training.steps, c3.training.batch_size, c3.training.patch_size) == (15000, 4, 64)
    assert c3.training.schedule.decay_every == 2000
    assert c3.loss.name == "siamese-reconvolved"


def test_fast_preset_masks_2_percent_in_2d_and_the_paper_fraction_in_3d():
    # 2D: measured on the 14-image suite (README "Performance"); 3D keeps the paper's 0.5 %.
    assert make_config("fast", 2).mask.fraction == 0.02
    assert make_config("fast", 3).mask.fraction == 0.005
    assert make_config("fast", 2, mask={"fraction": 0.005}).mask.fraction == 0.005


def test_flat_and_nested_overrides():
    c = make_config("fast", 2, steps=7, width=8, loss="blind-spot", boundary_weight=0.1, training={"lr": 1e-3})
    assert (c.training.steps, c.network.width, c.training.lr) == (7, 8, 1e-3)
    assert c.loss_weights().active() == {"bsp": 1.0, "bound": 0.1, "bound_d": 0.1}
    assert make_config("fast", 2, steps=None).training.steps == make_config("fast", 2).training.steps


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_save_and_load_round_trip(tmp_path, suffix):
    c = make_config("paper", 3, seed=5)
    c.save(tmp_path / f"c{suffix}")
    assert Config.load(tmp_path / f"c{suffix}") == c


def test_invalid_values_and_names_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="unknown option 'stepz'"):
        make_config("fast", 2, stepz=3)
    with pytest.raises(ConfigError, match="steps"):
        make_config("fast", 2, steps=-1)
    with pytest.raises(ConfigError, match="unknown preset"):
        make_config("slow", 2)
    with pytest.raises(ConfigError, match="tile_overlap"):
        make_config("fast", 2, tile_size=16, tile_overlap=16)
    (tmp_path / "bad.yaml").write_text("training:\n  steps: many\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        Config.load(tmp_path / "bad.yaml")
    (tmp_path / "extra.json").write_text('{"unknown": 1}')
    with pytest.raises(ConfigError, match="extra"):
        Config.load(tmp_path / "extra.json")


def test_ambiguous_flat_keys_and_bad_devices_are_refused():
    with pytest.raises(ConfigError, match="several sections"):
        make_config("fast", 2, batch_size=4)
    assert make_config("fast", 2, inference={"batch_size": 2}).inference.batch_size == 2
    with pytest.raises(ConfigError, match="device"):
        make_config("fast", 2, device="gpu")
    assert make_config("fast", 2, device="cuda:1").training.device == "cuda:1"


def test_all_zero_loss_weights_are_refused():
    from siamdecon.losses import LossWeights

    with pytest.raises(ValueError, match="at least one"):
        LossWeights()


def test_start_and_schedule_are_typed_variants():
    fast = make_config("fast", 2)
    assert fast.training.start == GenericStart(iterations=4, extra_iterations=(16,))
    assert fast.training.schedule == OneCycleSchedule(warmup_fraction=0.1)
    # Another kind replaces the preset's variant with that kind's defaults; the same kind updates it.
    assert make_config("fast", 2, start="lucy-richardson").training.start == LucyRichardsonStart(iterations=5)
    assert make_config("fast", 2, training={"start": {"iterations": 6}}).training.start == GenericStart(
        iterations=6, extra_iterations=(16,)
    )
    assert make_config("fast", 2, schedule="constant").training.schedule == ConstantSchedule()
    assert make_config("paper", 2, training={"schedule": {"decay_every": 20}}).training.schedule == StepSchedule(
        decay_every=20, decay_factor=0.5
    )
    assert fast.training.start.iterations_run() == (4, 16)
    assert NoStart().iterations_run() == ()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"training": {"start": {"kind": "lucy-richardson", "extra_iterations": (8,)}}}, "extra_iterations"),
        ({"training": {"start": {"kind": "none", "iterations": 3}}}, "iterations"),
        ({"training": {"start": {"kind": "generic", "extra_iterations": (0,)}}}, "greater than or equal to 1"),
        ({"training": {"schedule": {"kind": "onecycle", "decay_every": 10}}}, "decay_every"),
        ({"training": {"start": {"kind": "lucy"}}}, "kind"),
        ({"loss": {"name": "custom", "terms": {"rec": 1.0}}, "boundary_weight": 0.1}, "boundary_weight"),
        ({"loss": "custom"}, "unknown loss"),
        ({"training": {"start": {"kind": "generic", "iterations": 4}, "start_iterations": 5}}, "disagrees"),
    ],
)
def test_incoherent_combinations_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config("fast", 2, **overrides)


def test_custom_loss_terms_and_the_fine_tuning_boundary_weight():
    c = make_config("fast", 2, loss={"name": "custom", "terms": {"rec": 1.0, "inv": 0.5, "bound": 0.2}})
    assert c.loss_weights().active() == {"rec": 1.0, "inv": 0.5, "bound": 0.2}
    assert c.loss.label == "custom (rec 1, inv 0.5, bound 0.2)"
    assert c.fine_tune_weights().active() == {"bsp": 1.0, "bound": 0.2, "bound_d": 0.2}
    named = make_config("fast", 3, boundary_weight=0.1, prior={"fine_tune_loss": "siamese-reconvolved"})
    assert named.loss == PresetLoss(name="siamese-reconvolved", boundary_weight=0.1)
    # The 3D default fine-tunes with and without the Hessian term: one loss per weight, not one.
    with pytest.raises(ConfigError, match="several weights"):
        named.fine_tune_weights()
    one = named.model_copy(update={"prior": named.prior.model_copy(update={"fine_tune_hessian": 0.03})})
    assert one.fine_tune_weights().active() == {"rec": 1.0, "inv": 2.0, "bound": 0.1, "bound_d": 0.1, "hess": 0.03}
    # A loss name given after a boundary weight keeps it.
    assert make_config("fast", 2, boundary_weight=0.1, loss="blind-spot").loss.boundary_weight == 0.1


def test_files_in_the_flat_layout_of_earlier_versions_load_as_the_typed_config(tmp_path):
    # What Config.model_dump wrote before the typed start, schedule and loss (a fast 3D model).
    legacy = {
        "preset": "fast",
        "ndim": 3,
        "loss": "siamese-reconvolved",
        "boundary_weight": 0.1,
        "weights": None,
        "training": {
            "steps": 200,
            "schedule": "onecycle",
            "decay_every": 500,
            "decay_factor": 0.5,
            "warmup_fraction": 0.1,
            "start": "generic",
            "start_iterations": 8,
            "start_extra_iterations": [24],
        },
    }
    (tmp_path / "old.json").write_text(json.dumps(legacy))
    c = Config.load(tmp_path / "old.json")
    assert c.training.start == GenericStart(iterations=8, extra_iterations=(24,))
    assert c.training.schedule == OneCycleSchedule(warmup_fraction=0.1)
    assert c.loss == PresetLoss(name="siamese-reconvolved", boundary_weight=0.1)
    paper = {"training": {"schedule": "step", "decay_every": 2000, "start": "none", "start_iterations": 5}}
    assert Config.model_validate(paper).training.schedule == StepSchedule(decay_every=2000)
    custom = {"loss": "custom", "weights": {"rec": 1.0, "inv_d": 1.0}}
    assert Config.model_validate(custom).loss == CustomLoss(terms={"rec": 1.0, "inv_d": 1.0})
    # A value the old layout ignored (no step schedule to decay) is refused, not dropped.
    with pytest.raises(ValueError, match="decay_every=100"):
        Config.model_validate({"training": {"schedule": "onecycle", "decay_every": 100}})


def test_legacy_keys_beside_a_typed_start_are_checked_not_dropped():
    from siamdecon.config import TrainingConfig

    # The object's own iterations (4) and the flat key disagree: refused rather than one ignored.
    with pytest.raises(ValueError, match="disagrees"):
        TrainingConfig(start=GenericStart(), start_iterations=6)
    assert TrainingConfig(start=GenericStart(), start_iterations=4).start == GenericStart()
    with pytest.raises(ValueError, match="applies to no start"):
        TrainingConfig(start=NoStart(), start_iterations=6)
