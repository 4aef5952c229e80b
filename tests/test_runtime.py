"""The allocator setting that training applies on the CPU (siamdecon.runtime)."""

from __future__ import annotations

import platform

import pytest

from siamdecon import runtime

glibc = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's"
)


@pytest.fixture
def fresh(monkeypatch):
    """Forget whether this process already applied the setting, and clear the opt-outs."""
    monkeypatch.setattr(runtime, "_applied", None)
    monkeypatch.setattr(runtime, "_allowed", True)
    for name in ("SIAMDECON_MALLOC", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@glibc
def test_applies_once_on_glibc(fresh):
    assert runtime.keep_freed_memory() is True
    # The answer is remembered: a later opt-out cannot undo what is already set.
    fresh.setenv("SIAMDECON_MALLOC", "system")
    assert runtime.keep_freed_memory() is True


@pytest.mark.parametrize(
    ("name", "value"),
    [("SIAMDECON_MALLOC", "system"), ("SIAMDECON_MALLOC", "SYSTEM"), ("MALLOC_TRIM_THRESHOLD_", "131072")],
)
def test_opt_outs_leave_malloc_alone(fresh, name, value):
    fresh.setenv(name, value)
    assert runtime.keep_freed_memory() is False


def test_other_devices_are_left_alone(fresh):
    assert runtime.keep_freed_memory("cuda") is False
    assert runtime._applied is None  # a GPU run does not stop a later CPU run from applying it


def test_other_systems_are_left_alone(fresh):
    fresh.setattr(runtime.platform, "libc_ver", lambda: ("", ""))
    assert runtime.keep_freed_memory() is False


def test_cpu_training_and_tiled_prediction_ask_for_it(monkeypatch):
    import numpy as np

    from siamdecon import Deconvolver, inference, make_config, training

    calls: list[str] = []
    monkeypatch.setattr(training, "keep_freed_memory", lambda device: calls.append(f"train {device}"))
    monkeypatch.setattr(inference, "keep_freed_memory", lambda device: calls.append(f"predict {device}"))
    img = np.random.default_rng(0).random((40, 40)).astype(np.float32) + 0.5
    psf = np.ones((3, 3), np.float32) / 9
    cfg = make_config("fast", ndim=2, steps=1, patch_size=32, width=4, tile_size=32, tile_overlap=8, context=4)
    model = Deconvolver.fit(img, psf, cfg, progress=False)
    model.predict(img)
    assert calls[0] == "train cpu" and "predict cpu" in calls


def test_the_library_leaves_malloc_alone_unless_asked(fresh):
    fresh.setattr(runtime, "_allowed", False)
    assert runtime.keep_freed_memory() is False
    assert runtime._applied is None  # not decided: asking later still works
    fresh.setenv("SIAMDECON_MALLOC", "keep")
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert runtime.keep_freed_memory() is True


def test_the_command_line_asks_for_it(fresh):
    from typer.testing import CliRunner

    from siamdecon.cli import app

    fresh.setattr(runtime, "_allowed", False)
    res = CliRunner().invoke(app, ["config", "--help"])
    assert res.exit_code == 0
    assert runtime._allowed is True
