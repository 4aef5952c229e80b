"""The napari plugin on a real viewer: widgets from the manifest, a few training steps, Cancel, the layers added.

The viewer needs an OpenGL context, which Qt's ``offscreen`` platform cannot give napari's canvas;
without a display these tests start their own X server (Xvfb, Debian package ``xvfb``) for the
session, so they run headless in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")
pytest.importorskip("qtpy")

from siamdecon.beads import resample_psf, simulate_bead_image  # noqa: E402
from siamdecon.classical import richardson_lucy  # noqa: E402
from siamdecon.io import ImageData, write_image  # noqa: E402
from siamdecon.psf import generate_psf  # noqa: E402
from siamdecon.simulate import Camera, degrade, fluorescence_2d  # noqa: E402

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session", autouse=True)
def _display():
    """An X display for the session: the one given, or a private Xvfb; set before Qt starts."""
    saved = {k: os.environ.get(k) for k in ("DISPLAY", "QT_QPA_PLATFORM")}
    server = None
    if not os.environ.get("DISPLAY"):
        xvfb = shutil.which("Xvfb")
        if xvfb is None:
            pytest.skip("napari's canvas needs an X display or Xvfb (apt-get install xvfb)")
        read, write = os.pipe()
        server = subprocess.Popen(
            # -terminate: the server exits by itself when its last client (Qt) disconnects.
            [xvfb, "-displayfd", str(write), "-screen", "0", "1600x1000x24", "-nolisten", "tcp", "-terminate"],
            pass_fds=(write,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(write)
        with os.fdopen(read) as fh:
            number = fh.readline().strip()
        if not number:
            server.kill()
            pytest.skip("Xvfb did not start")
        os.environ["DISPLAY"] = f":{number}"
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if server is not None:
        from qtpy.QtWidgets import QApplication

        # Qt keeps its connection until the process exits (and would report the server's death
        # if it went first); without a client the server is ended here.
        if QApplication.instance() is None:
            server.terminate()
            server.wait(10)


def _wait(qtbot, widget, timeout: float = 60.0) -> None:
    qtbot.waitUntil(lambda: not widget.running, timeout=int(timeout * 1000))


def _dock(viewer, name: str):
    _, widget = viewer.window.add_plugin_dock_widget("siamdecon", name)
    return widget


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def camera(viewer):
    """The plugin's sample data (a 128 px crop of the demo's image), with a physical scale."""
    from siamdecon.napari import camera_sample

    for data, meta, kind in camera_sample(size=128):
        assert kind == "image"
        viewer.add_image(data, scale=(0.1, 0.1), **meta)
    return viewer


def test_deconvolve_runs_a_few_steps_and_adds_a_layer(camera, qtbot):
    viewer = camera
    widget = _dock(viewer, "Deconvolve")
    image = viewer.layers["camera (degraded)"]
    widget._image.value = image
    widget._psf_layer.value = viewer.layers["camera PSF"]
    widget._prior.value = "none"
    widget._steps.value = 3
    widget._check.value = False  # the network's own layer (the 3D test below runs the check)
    steps_seen = []
    widget._relay.progress.connect(lambda done, total, text: steps_seen.append((done, total)))
    widget.start()
    assert widget.running and not widget._run.enabled and widget._cancel.enabled
    _wait(qtbot, widget)
    assert widget.last_error is None, widget.status
    out = viewer.layers[-1]
    assert out.name == "camera (degraded) siamdecon (fast, siamese-deconvolved, 3 steps, PSF camera PSF)"
    assert out.data.shape == image.data.shape and np.isfinite(out.data).all()
    assert tuple(out.scale) == (0.1, 0.1)
    assert (3, 3) in steps_seen and widget._progress.value == widget._progress.max == 3
    assert widget.status.startswith("added") and widget._run.enabled and not widget._cancel.enabled


def test_cancel_stops_training_and_adds_nothing(camera, qtbot):
    viewer = camera
    widget = _dock(viewer, "Deconvolve")
    widget._image.value = viewer.layers["camera (degraded)"]
    widget._psf_layer.value = viewer.layers["camera PSF"]
    widget._prior.value = "none"
    widget._steps.value = 100_000
    layers = len(viewer.layers)
    widget.start()
    qtbot.waitUntil(lambda: widget._progress.value >= 2, timeout=60_000)
    started = time.perf_counter()
    widget.cancel()
    _wait(qtbot, widget, timeout=30)
    assert time.perf_counter() - started < 30
    assert widget._progress.value < 1000  # stopped long before the 100,000 steps
    assert widget.status == "cancelled; nothing was added"
    assert len(viewer.layers) == layers
    assert widget._run.enabled and not widget._cancel.enabled


def test_deconvolve_with_a_psf_from_parameters_in_3d(viewer, qtbot, tmp_path):
    psf = np.load(DATA / "paper_psf_3d.npy")
    rng = np.random.default_rng(0)
    volume = degrade(rng.random((20, 48, 48)).astype(np.float32) ** 8, psf, seed=0)
    image = viewer.add_image(volume, name="volume", scale=(0.4, 0.2, 0.2))
    widget = _dock(viewer, "Deconvolve")
    widget._image.value = image
    assert (widget._pixel.value, widget._z_step.value) == pytest.approx((0.2, 0.4))  # from the layer's scale
    widget._psf_source.value = "from parameters"
    assert not widget._na.native.isHidden() and widget._psf_layer.native.isHidden()
    widget._na.value, widget._index.value = 0.8, 1.33
    widget._prior.value = "none"
    widget._steps.value = 1
    widget._check.value = False  # the 2D test below runs the check (seven Spitfire runs take long in 3D)
    widget.start()
    _wait(qtbot, widget, timeout=120)
    assert widget.last_error is None, widget.status
    out = viewer.layers[-1]
    assert out.data.shape == volume.shape and "NA 0.8" in out.name and tuple(out.scale) == (0.4, 0.2, 0.2)


def test_deconvolve_checks_against_classical_estimates_by_default(camera, qtbot):
    viewer = camera
    widget = _dock(viewer, "Deconvolve")
    assert widget._check.value is True
    widget._image.value = viewer.layers["camera (degraded)"]
    widget._psf_layer.value = viewer.layers["camera PSF"]
    widget._prior.value = "none"
    widget._steps.value = 1
    texts = []
    widget._relay.progress.connect(lambda done, total, text: texts.append(text))
    widget.start()
    _wait(qtbot, widget, timeout=120)
    assert widget.last_error is None, widget.status
    assert any("held-out pixels" in t for t in texts), texts
    # The layer's name says which estimate it holds.
    name = viewer.layers[-1].name
    assert "siamdecon (fast" in name or "the network was behind it on held-out pixels" in name, name


def test_bad_choices_are_reported_not_raised(camera, tmp_path):
    viewer = camera
    widget = _dock(viewer, "Deconvolve")
    widget._image.value = viewer.layers["camera (degraded)"]
    widget._psf_layer.value = None
    widget.start()
    assert not widget.running and widget.status == "error: choose the PSF layer, or another PSF source"
    widget._psf_source.value = "PSF file"
    widget._psf_file.value = tmp_path / "missing.tif"
    widget.start()
    assert "does not exist" in widget.status
    rgb = viewer.add_image(np.zeros((32, 32, 3), np.uint8), rgb=True, name="rgb")
    widget._image.value = rgb
    widget.start()
    assert "RGB" in widget.status
    big = viewer.add_image(np.ones((9, 9), np.float32), name="tiny")
    widget._image.value = big
    widget._psf_source.value = "PSF layer"
    widget._psf_layer.value = viewer.layers["camera PSF"]
    widget.start()
    assert "larger than the image" in widget.status or "constant" in widget.status


def test_lucy_richardson_widget_matches_the_library(camera, qtbot, tmp_path):
    viewer = camera
    widget = _dock(viewer, "Lucy-Richardson")
    image = viewer.layers["camera (degraded)"]
    widget._image.value = image
    widget._psf_source.value = "PSF file"
    psf = np.load(DATA / "paper_psf_2d.npy")
    np.save(tmp_path / "psf.npy", psf)
    widget._psf_file.value = tmp_path / "psf.npy"
    widget._iterations.value = 5
    widget.start()
    _wait(qtbot, widget)
    out = viewer.layers[-1]
    assert out.name == "camera (degraded) Lucy-Richardson (5 it.)"
    expected = richardson_lucy(np.asarray(image.data, np.float32), psf / psf.sum(), 5)
    assert np.allclose(out.data, expected, atol=1e-5)
    assert widget._progress.value == 5


def test_lucy_richardson_cancel(camera, qtbot):
    viewer = camera
    widget = _dock(viewer, "Lucy-Richardson")
    widget._image.value = viewer.layers["camera (degraded)"]
    widget._psf_layer.value = viewer.layers["camera PSF"]
    widget._iterations.value = 10_000
    layers = len(viewer.layers)
    widget.start()
    qtbot.waitUntil(lambda: widget._progress.value >= 2, timeout=30_000)
    widget.cancel()
    _wait(qtbot, widget, timeout=30)
    assert widget.status.startswith("cancelled") and len(viewer.layers) == layers


def test_psf_from_beads_widget_resamples_like_a_layer(viewer, qtbot):
    truth = generate_psf(ndim=2, size=21, pixel_size=0.1, z_step=0.1, num_z=21, plane=10, focal_offset=-1.0)
    camera = Camera(photons=1000.0, offset=100.0)
    counts, _ = simulate_bead_image(truth, (160, 160), n_beads=15, camera=camera, touching=2, saturated=2, seed=1)
    beads = viewer.add_image(counts, name="beads", scale=(0.1, 0.1))
    data = viewer.add_image(np.ones((64, 64), np.float32), name="data", scale=(0.05, 0.05))
    widget = _dock(viewer, "PSF from beads")
    widget._beads.value = beads
    assert widget._voxel.value == "0.1, 0.1"
    widget._like.value = data
    widget._size.value = "35"
    widget.start()
    _wait(qtbot, widget)
    assert widget.last_error is None, widget.status
    psf = viewer.layers[-1]
    assert psf.name == "PSF from beads (15 beads)" and tuple(psf.scale) == (0.05, 0.05)
    reference = resample_psf(truth, 0.1, 0.05, shape=35)
    assert np.abs(psf.data - reference).max() / reference.max() < 0.05
    assert "from 15 of 21 beads found" in widget.summary and "4 touching, 2 saturated" in widget.summary
    widget._target.value = "0.05"
    widget.start()
    assert "not both" in widget.status


def test_sample_data_contribution_and_reader(viewer, tmp_path):
    viewer.open_sample("siamdecon", "camera")
    names = [layer.name for layer in viewer.layers]
    assert names == ["camera (degraded)", "camera PSF", "camera (ground truth)"]
    assert viewer.layers["camera (degraded)"].data.shape == (256, 256)
    assert viewer.layers["camera PSF"].data.shape == (17, 17)
    volume = ImageData(np.ones((4, 16, 16), np.float32), spacing=(0.5, 0.1, 0.1), unit="um")
    path = write_image(tmp_path / "stack.tif", volume)
    (layer,) = viewer.open(path, plugin="siamdecon")
    assert tuple(layer.scale) == pytest.approx((0.5, 0.1, 0.1))
    from siamdecon.napari import get_reader

    assert get_reader(str(write_image(tmp_path / "plain.tif", fluorescence_2d(32)))) is None
    assert get_reader(str(tmp_path / "x.png")) is None
