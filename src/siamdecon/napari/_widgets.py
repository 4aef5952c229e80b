"""The plugin's dock widgets: siamdecon deconvolution, Lucy-Richardson and PSF from beads.

Each widget checks its inputs on the main thread (a bad choice is reported at once in its status
line), then runs the work in a napari ``thread_worker`` so that the viewer never freezes. Progress
comes back through a Qt signal, which Qt delivers on the main thread; Cancel sets an event that
the training callback (or Lucy-Richardson's ``on_iteration``) checks after every step and answers
by raising :class:`Cancelled`, which unwinds the computation: no layer is added.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import napari
import napari.viewer
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
    create_widget,
)
from napari.layers import Image
from napari.qt.threading import thread_worker
from qtpy.QtCore import QObject, Signal

from ..errors import InputError, SiamdeconError

__all__ = ["Cancelled", "DeconvolveWidget", "LucyRichardsonWidget", "PSFFromBeadsWidget"]

PSF_LAYER, PSF_FILE, PSF_PARAMETERS = "PSF layer", "PSF file", "from parameters"
DEFAULT_LOSS = "preset default"


class Cancelled(Exception):
    """Raised inside a running job when its widget's Cancel button was pressed."""


class _Relay(QObject):
    """Carries progress from the worker thread to the widget (queued onto the main thread)."""

    progress = Signal(int, int, str)


class _Job:
    """What a running computation sees of its widget: a cancel flag and a progress report."""

    def __init__(self, relay: _Relay) -> None:
        self.cancelled = threading.Event()
        self._relay = relay

    def check(self) -> None:
        """Raise :class:`Cancelled` if Cancel was pressed."""
        if self.cancelled.is_set():
            raise Cancelled()

    def report(self, done: int, total: int, text: str = "") -> None:
        self._relay.progress.emit(int(done), int(total), text)


def _image_data(layer: Image | None, what: str) -> np.ndarray:
    """The layer's pixels as a 2D/3D numpy array, or an :class:`InputError` saying what is wrong."""
    if layer is None:
        raise InputError(f"choose {what}")
    if getattr(layer, "rgb", False):
        raise InputError(f"layer '{layer.name}' is RGB; siamdecon needs single-channel (grey) data")
    if getattr(layer, "multiscale", False):
        raise InputError(f"layer '{layer.name}' is multiscale; open its full-resolution level as its own layer")
    data = np.asarray(layer.data)
    while data.ndim > 2 and data.shape[0] == 1:
        data = data[0]
    if data.ndim not in (2, 3):
        raise InputError(
            f"layer '{layer.name}' has {data.ndim} dimensions (shape {data.shape}); siamdecon works on one 2D image"
            " or 3D volume (z, y, x): split channels and time points into their own layers"
        )
    if data.dtype.kind not in "biuf":
        raise InputError(f"layer '{layer.name}' has dtype {data.dtype}, not a numeric image")
    return data


def _layer_voxel(layer: Image | None, ndim: int) -> tuple[float, ...] | None:
    """The layer's scale over its last ``ndim`` axes, or ``None`` where napari's default (all 1) says unknown."""
    if layer is None:
        return None
    scale = tuple(float(s) for s in layer.scale[-ndim:])
    return None if all(s == 1.0 for s in scale) else scale


def _parse_floats(text: str, ndim: int, what: str) -> tuple[float, ...] | None:
    text = text.strip()
    if not text:
        return None
    try:
        values = [float(v) for v in text.replace(";", ",").split(",")]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= ndim
    if len(values) != ndim or not all(0 < v < float("inf") for v in values):
        raise InputError(f"{what} must be one positive number or {ndim} (comma-separated), got {text!r}")
    return tuple(values)


def _optional_image(label: str) -> Any:
    return create_widget(annotation=Image, label=label, options={"nullable": True})


class _JobWidget(Container):
    """A form, a Run button, Cancel, a progress bar and a status line; the work runs in a thread."""

    run_text = "Run"
    cancellable = True

    def __init__(self, viewer: napari.viewer.Viewer, fields: list[Any]) -> None:
        self._viewer = viewer
        self._run = PushButton(text=self.run_text)
        self._cancel = PushButton(text="Cancel", enabled=False, visible=self.cancellable)
        self._progress = ProgressBar(value=0, min=0, max=1, label="progress")
        self._status = Label(value="")
        # Long messages (layer names, errors) wrap instead of widening the dock.
        self._status.native.setWordWrap(True)
        super().__init__(widgets=[*fields, self._run, self._cancel, self._progress, self._status])
        self._relay = _Relay()
        self._relay.progress.connect(self._on_progress)
        self._run.changed.connect(self.start)
        self._cancel.changed.connect(self.cancel)
        self.worker: Any = None
        self._job: _Job | None = None
        self.last_error: str | None = None
        # Closing the widget (or the viewer) stops a running job instead of leaving it to finish unseen.
        self.native.destroyed.connect(lambda *_: self._job is not None and self._job.cancelled.set())

    @property
    def status(self) -> str:
        """The text of the status line."""
        return str(self._status.value)

    @property
    def running(self) -> bool:
        return self.worker is not None

    def _prepare(self) -> tuple[Callable[[_Job], Any], int]:
        """Check the inputs; return the job (run in the worker thread) and its number of steps."""
        raise NotImplementedError

    def _finish(self, result: Any) -> None:
        """Use the job's result (main thread)."""
        raise NotImplementedError

    def _add_like(self, data: np.ndarray, name: str, layer: Image) -> None:
        """Add ``data`` as a new image layer with ``layer``'s geometry and colormap."""
        self._viewer.add_image(
            data.reshape(np.shape(layer.data)) if data.size == np.size(layer.data) else data,
            name=name,
            scale=layer.scale,
            translate=layer.translate,
            colormap=layer.colormap,
        )
        self._status.value = f"added '{name}'"

    def start(self) -> None:
        """Check the inputs and start the job in a worker thread (ignored while one runs)."""
        if self.running:
            return
        try:
            task, total = self._prepare()
        except (SiamdeconError, ValueError) as exc:
            self._fail(str(exc))
            return
        job = _Job(self._relay)

        def run() -> Any:
            try:
                return task(job)
            except Cancelled:
                return Cancelled

        worker = thread_worker(run, start_thread=False)()
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._job, self.worker, self.last_error = job, worker, None
        self._progress.max, self._progress.value = max(total, 1), 0
        self._run.enabled, self._cancel.enabled = False, True
        self._status.value = "running..."
        worker.start()

    def cancel(self) -> None:
        """Ask the running job to stop at its next step; it then adds nothing."""
        if self._job is not None:
            self._job.cancelled.set()
            self._status.value = "cancelling..."

    def _fail(self, message: str) -> None:
        self.last_error = message
        self._status.value = f"error: {message}"

    def _on_progress(self, done: int, total: int, text: str) -> None:
        if self.worker is None:
            return
        self._progress.max = max(total, 1)
        self._progress.value = min(done, max(total, 1))
        if text and not (self._job and self._job.cancelled.is_set()):
            self._status.value = text

    def _on_returned(self, result: Any) -> None:
        if result is Cancelled:
            self._status.value = "cancelled; nothing was added"
            return
        try:
            self._finish(result)
        except (SiamdeconError, ValueError) as exc:
            self._fail(str(exc))

    def _on_errored(self, exc: BaseException) -> None:
        known = isinstance(exc, (SiamdeconError, ValueError, RuntimeError, OSError))
        self._fail(str(exc) if known else f"{type(exc).__name__}: {exc}")

    def _on_finished(self) -> None:
        self.worker, self._job = None, None
        self._run.enabled, self._cancel.enabled = True, False


class DeconvolveWidget(_JobWidget):
    """Train siamdecon on an image layer (self-supervised, with its PSF) and add the deconvolution."""

    run_text = "Deconvolve"

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._image = create_widget(annotation=Image, label="image")
        self._psf_source = ComboBox(choices=[PSF_LAYER, PSF_FILE, PSF_PARAMETERS], value=PSF_LAYER, label="PSF")
        self._psf_layer = _optional_image("PSF layer")
        self._psf_file = FileEdit(mode="r", filter="*.tif *.tiff *.npy", label="PSF file")
        self._na = FloatSpinBox(value=1.4, min=0.05, max=1.7, step=0.05, label="NA")
        self._wavelength = FloatSpinBox(value=0.52, min=0.2, max=2.0, step=0.01, label="emission (um)")
        self._index = FloatSpinBox(value=1.515, min=1.0, max=2.0, step=0.005, label="immersion index")
        self._pixel = FloatSpinBox(value=0.1, min=0.001, max=100.0, step=0.01, label="pixel size (um)")
        self._z_step = FloatSpinBox(value=0.3, min=0.001, max=100.0, step=0.05, label="z step (um)")
        self._preset = ComboBox(choices=["fast", "paper"], value="fast", label="preset")
        self._loss = ComboBox(
            choices=[DEFAULT_LOSS, "siamese-deconvolved", "siamese-reconvolved", "blind-spot"],
            value=DEFAULT_LOSS,
            label="loss",
        )
        self._prior = ComboBox(choices=["auto", "none"], value="auto", label="prior")
        self._steps = SpinBox(value=0, min=0, max=1_000_000, label="steps (0: preset)")
        self._device = ComboBox(choices=["auto", "cpu", "cuda", "mps"], value="auto", label="device")
        self._check = CheckBox(
            value=True,
            label="check against Lucy-Richardson and Spitfire",
            tooltip="On held-out pixels; the classical result replaces the network's where the network predicts"
            " the data worse (the layer's name says so). Off with the paper preset.",
        )
        fields = [
            self._image,
            self._psf_source,
            self._psf_layer,
            self._psf_file,
            self._na,
            self._wavelength,
            self._index,
            self._pixel,
            self._z_step,
            self._preset,
            self._loss,
            self._prior,
            self._steps,
            self._device,
            self._check,
        ]
        super().__init__(viewer, fields)
        self._psf_source.changed.connect(self._show_psf_fields)
        self._image.changed.connect(self._take_voxel_size)
        self._show_psf_fields()
        self._take_voxel_size()

    def _show_psf_fields(self, *_: Any) -> None:
        source = self._psf_source.value
        self._psf_layer.visible = source == PSF_LAYER
        self._psf_file.visible = source == PSF_FILE
        for w in (self._na, self._wavelength, self._index, self._pixel, self._z_step):
            w.visible = source == PSF_PARAMETERS

    def _take_voxel_size(self, *_: Any) -> None:
        layer = self._image.value
        voxel = _layer_voxel(layer, min(np.ndim(layer.data), 3)) if layer is not None else None
        if voxel is not None:
            self._pixel.value = voxel[-1]
            if len(voxel) == 3:
                self._z_step.value = voxel[0]

    def _prepare(self) -> tuple[Callable[[_Job], Any], int]:
        from ..config import make_config
        from ..prior_choice import config_for_psf, resolve_prior
        from ..psf import check_psf_fits, load_psf, normalize_psf, validate_psf

        layer = self._image.value
        data = _image_data(layer, "an image layer to deconvolve")
        nd = data.ndim
        if float(data.std()) == 0.0:
            raise InputError(f"layer '{layer.name}' is constant; there is nothing to deconvolve")
        source = self._psf_source.value
        psf: np.ndarray | None = None
        if source == PSF_LAYER:
            psf_layer = self._psf_layer.value
            if psf_layer is None:
                raise InputError("choose the PSF layer, or another PSF source")
            if psf_layer is layer:
                raise InputError("the PSF layer is the image itself; choose the layer holding the PSF")
            kernel = _image_data(psf_layer, "a PSF layer")
            psf = normalize_psf(validate_psf(kernel, f"PSF layer '{psf_layer.name}'", nd))
            psf_name = f"PSF {psf_layer.name}"
        elif source == PSF_FILE:
            path = Path(str(self._psf_file.value))
            if not path.is_file():
                raise InputError(f"PSF file '{path}' does not exist; choose a .tif, .tiff or .npy PSF")
            psf = load_psf(path, ndim=nd)
            psf_name = f"PSF {path.name}"
        else:
            psf_name = f"NA {self._na.value:g}, {self._wavelength.value:g} um"
        if psf is not None:
            check_psf_fits(psf.shape, data.shape, psf_name)
        steps = int(self._steps.value) or None
        loss = None if self._loss.value == DEFAULT_LOSS else self._loss.value
        config = make_config(
            self._preset.value,
            ndim=nd,
            loss=loss,
            steps=steps,
            fine_tune_steps=steps,
            prior={"source": self._prior.value},
            device=self._device.value,
        )
        na, wavelength, index = self._na.value, self._wavelength.value, self._index.value
        pixel, z_step = self._pixel.value, self._z_step.value
        image_name = layer.name
        check = bool(self._check.value) and config.preset != "paper"

        def task(job: _Job) -> tuple[np.ndarray, str, Image]:
            from ..holdout import steps_phrase
            from ..model import Deconvolver

            kernel = psf
            if kernel is None:
                kernel = _psf_from_parameters(nd, data.shape, na, wavelength, index, pixel, z_step)
            run = config_for_psf(config, normalize_psf(kernel))
            prior = resolve_prior(run.prior.source, normalize_psf(kernel), run)
            total = run.prior.fine_tune_steps if prior is not None else run.training.steps

            def callback(step: int, logs: dict[str, float], _net: Any) -> None:
                job.check()
                job.report(step, total, f"training: step {step}/{total}, loss {logs['total']:.4g}")

            job.report(0, total, "training..." if total else "starting from the prior...")
            model = Deconvolver.fit(data, kernel, config, progress=False, callback=callback, allow_interrupt=False)
            job.check()
            job.report(total, total, "predicting...")
            result = model.predict(data, device=config.training.device)
            name = f"{image_name} siamdecon ({config.preset}, {model.training_summary}, {psf_name})"
            if check:
                job.report(total, total, "checking against Lucy-Richardson and Spitfire on held-out pixels...")
                report = model.check(data, device=config.training.device)
                job.check()
                if report.fell_back:
                    behind = "the network was behind it on held-out pixels"
                    name = f"{image_name} {report.winner.label} ({behind}, {psf_name})"
                elif report.lr_steps:
                    how = f"{model.training_summary} + {steps_phrase(report.lr_steps)}"
                    name = f"{image_name} siamdecon ({config.preset}, {how}, {psf_name})"
                result = report.output(data, model.psf, result)
            return result, name, layer

        return task, 0

    def _finish(self, result: tuple[np.ndarray, str, Image]) -> None:
        self._add_like(*result)


def _psf_from_parameters(
    ndim: int, shape: tuple[int, ...], na: float, wavelength: float, index: float, pixel: float, z_step: float
) -> np.ndarray:
    """A widefield PSF (vectorial Gibson-Lanni, focal scan, no index mismatch) cropped to fit ``shape``."""
    from ..errors import ConfigError
    from ..psf import normalize_psf, widefield_psf

    if na >= index:
        raise ConfigError(f"NA {na:g} must be below the immersion index {index:g}")
    kernel = widefield_psf(ndim, na=na, wavelength=wavelength, pixel_size=pixel, z_step=z_step, immersion_index=index)
    # The automatic size keeps the PSF's faces below 0.1 % of its peak; an image smaller than that
    # still gets the central part (odd sizes, same centre).
    limit = [n if n % 2 else n - 1 for n in shape]
    crop = tuple(slice((k - m) // 2, (k - m) // 2 + m) for k, m in zip(kernel.shape, np.minimum(kernel.shape, limit)))
    return normalize_psf(kernel[crop])


class LucyRichardsonWidget(_JobWidget):
    """Classical Lucy-Richardson deconvolution, for side-by-side comparison with siamdecon."""

    run_text = "Run Lucy-Richardson"

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._image = create_widget(annotation=Image, label="image")
        self._psf_source = ComboBox(choices=[PSF_LAYER, PSF_FILE], value=PSF_LAYER, label="PSF")
        self._psf_layer = _optional_image("PSF layer")
        self._psf_file = FileEdit(mode="r", filter="*.tif *.tiff *.npy", label="PSF file")
        self._iterations = SpinBox(value=10, min=1, max=10_000, label="iterations")
        self._offset = FloatSpinBox(value=0.0, min=0.0, max=1e9, step=1.0, label="camera offset")
        self._device = ComboBox(choices=["auto", "cpu", "cuda", "mps"], value="auto", label="device")
        fields = [self._image, self._psf_source, self._psf_layer, self._psf_file, self._iterations]
        super().__init__(viewer, [*fields, self._offset, self._device])
        self._psf_source.changed.connect(self._show_psf_fields)
        self._show_psf_fields()

    def _show_psf_fields(self, *_: Any) -> None:
        self._psf_layer.visible = self._psf_source.value == PSF_LAYER
        self._psf_file.visible = self._psf_source.value == PSF_FILE

    def _prepare(self) -> tuple[Callable[[_Job], Any], int]:
        from ..psf import check_psf_fits, load_psf, normalize_psf, validate_psf
        from ..training import resolve_device

        layer = self._image.value
        data = _image_data(layer, "an image layer").astype(np.float32)
        if self._psf_source.value == PSF_LAYER:
            psf_layer = self._psf_layer.value
            if psf_layer is None or psf_layer is layer:
                raise InputError("choose the layer holding the PSF, or a PSF file")
            psf = normalize_psf(
                validate_psf(_image_data(psf_layer, "a PSF layer"), f"PSF layer '{psf_layer.name}'", data.ndim)
            )
        else:
            path = Path(str(self._psf_file.value))
            if not path.is_file():
                raise InputError(f"PSF file '{path}' does not exist; choose a .tif, .tiff or .npy PSF")
            psf = load_psf(path, ndim=data.ndim)
        check_psf_fits(psf.shape, data.shape)
        offset = float(self._offset.value)
        if offset > 0:
            data = np.clip(data - offset, 0.0, None)
        elif data.min() < 0:
            raise InputError(
                f"layer '{layer.name}' has negative values (minimum {data.min():.3g}); Lucy-Richardson needs"
                " non-negative intensities: give the camera offset"
            )
        n = int(self._iterations.value)
        device = resolve_device(self._device.value)

        def task(job: _Job) -> tuple[np.ndarray, str, Image]:
            from ..classical import richardson_lucy_series

            def on_iteration(i: int, _estimate: Any) -> None:
                job.check()
                job.report(i, n, f"iteration {i}/{n}")

            result = richardson_lucy_series(data, psf, [n], device=device, on_iteration=on_iteration)[n]
            return result, f"{layer.name} Lucy-Richardson ({n} it.)", layer

        return task, n

    def _finish(self, result: tuple[np.ndarray, str, Image]) -> None:
        self._add_like(*result)


class PSFFromBeadsWidget(_JobWidget):
    """Measure the PSF from a bead image layer, optionally resampled to another layer's voxel size."""

    run_text = "Measure PSF"
    cancellable = False

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._beads = create_widget(annotation=Image, label="bead image")
        self._voxel = LineEdit(value="", label="bead voxel (um)")
        self._bead_size = FloatSpinBox(value=0.0, min=0.0, max=10.0, step=0.01, label="bead diameter (um, 0: none)")
        self._like = _optional_image("resample like")
        self._target = LineEdit(value="", label="or voxel size (um)")
        self._size = LineEdit(value="auto", label="size")
        self._summary = Label(value="")
        self._summary.native.setWordWrap(True)
        super().__init__(viewer, [self._beads, self._voxel, self._bead_size, self._like, self._target, self._size])
        self.append(self._summary)
        self._beads.changed.connect(self._take_voxel_size)
        self._take_voxel_size()

    @property
    def summary(self) -> str:
        """What the last measurement did (beads used, background, FWHM)."""
        return str(self._summary.value)

    def _take_voxel_size(self, *_: Any) -> None:
        layer = self._beads.value
        voxel = _layer_voxel(layer, min(np.ndim(layer.data), 3)) if layer is not None else None
        if voxel is not None:
            self._voxel.value = ", ".join(f"{v:g}" for v in voxel)

    def _prepare(self) -> tuple[Callable[[_Job], Any], int]:
        layer = self._beads.value
        data = _image_data(layer, "the bead image layer")
        nd = data.ndim
        voxel = _parse_floats(self._voxel.value, nd, "the bead voxel size")
        diameter = float(self._bead_size.value) or None
        like = self._like.value
        target = _parse_floats(self._target.value, nd, "the voxel size to resample to")
        if like is not None:
            if target is not None:
                raise InputError("give a layer to resample like or a voxel size, not both")
            target = _layer_voxel(like, nd)
            if target is None:
                raise InputError(f"layer '{like.name}' has no voxel size (its scale is 1); type the voxel size instead")
        if voxel is None and (diameter is not None or target is not None):
            raise InputError("the bead diameter and resampling need the bead image's voxel size (um)")
        size_text = self._size.value.strip().lower()
        shape = None
        if size_text not in ("", "auto"):
            sizes = _parse_floats(size_text, nd, "size") or ()
            if not all(float(v).is_integer() and int(v) % 2 == 1 for v in sizes):
                raise InputError(f"size must be 'auto' or odd integers (one, or {nd} with commas), got {size_text!r}")
            shape = tuple(int(v) for v in sizes)
        resample = target is not None and not np.allclose(target, voxel)  # type: ignore[arg-type]

        def task(job: _Job) -> tuple[np.ndarray, tuple[float, ...] | None, list[str], str]:
            from ..beads import estimate_psf, psf_fwhm, resample_psf

            job.report(0, 1, "measuring...")
            result = estimate_psf(data, shape=None if resample else shape, voxel=voxel, bead_diameter=diameter)
            kernel, lines, final = result.psf, result.summary(), voxel
            if resample:
                kernel = resample_psf(kernel, voxel, target, shape=shape)  # type: ignore[arg-type]
                final = target
                widths = ", ".join(f"{w * v:.3f}" for w, v in zip(psf_fwhm(kernel), target))  # type: ignore[arg-type]
                lines.append(f"resampled to voxel {', '.join(f'{v:g}' for v in target)} um: FWHM {widths} um")  # type: ignore[union-attr]
            job.report(1, 1)
            return kernel, final, lines, f"PSF from {layer.name} ({len(result.used)} beads)"

        return task, 1

    def _finish(self, result: tuple[np.ndarray, tuple[float, ...] | None, list[str], str]) -> None:
        kernel, voxel, lines, name = result
        self._viewer.add_image(kernel, name=name, scale=voxel or (1.0,) * kernel.ndim, colormap="magma")
        self._summary.value = "\n".join(lines)
        self._status.value = f"added '{name}'"
