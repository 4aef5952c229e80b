from __future__ import annotations

import pytest

from siamdecon.config import Config, make_config
from siamdecon.errors import ConfigError


def test_paper_preset_is_the_paper_protocol():
    c2 = make_config("paper", ndim=2)
    assert (c2.network.width, c2.network.levels, c2.network.skip) == (96, 3, "concat")
    t = c2.training
    assert (t.steps, t.batch_size, t.patch_size, t.lr, t.decay_every, t.decay_factor) == (3000, 16, 128, 4e-4, 500, 0.5)
    assert t.start == "none"
    assert c2.loss == "siamese-deconvolved"
    assert (c2.mask.fraction, c2.mask.noise_std) == (0.005, 0.2)
    c3 = make_config("paper", ndim=3)
    assert (c3.network.width, c3.network.skip) == (48, "add")
    assert (c3.training.steps, c3.training.batch_size, c3.training.patch_size, c3.training.decay_every) == (
        15000,
        4,
        64,
        2000,
    )
    assert c3.loss == "siamese-reconvolved"


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
