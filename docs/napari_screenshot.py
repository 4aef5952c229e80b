"""Make docs/napari.png: the plugin's widgets run for real on a headless napari viewer.

Run from the repository root with the napari extra installed and an X display (``xvfb-run -a
python docs/napari_screenshot.py`` on a machine without a screen). It opens the sample data,
runs Lucy-Richardson (best iteration count of the demo) and siamdecon's fast preset from the
Deconvolve widget, shows input, Lucy-Richardson and siamdecon side by side, and saves the window.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

OUT = Path(__file__).with_name("napari.png")


def _run(widget) -> None:
    app = QApplication.instance()
    widget.start()
    while widget.running:
        app.processEvents()
        time.sleep(0.02)
    if widget.last_error:
        sys.exit(f"{type(widget).__name__}: {widget.last_error}")


def main() -> None:
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 760)
    viewer.open_sample("siamdecon", "camera")
    image, psf = viewer.layers["camera (degraded)"], viewer.layers["camera PSF"]
    _, lr = viewer.window.add_plugin_dock_widget("siamdecon", "Lucy-Richardson")
    lr._image.value, lr._psf_layer.value, lr._iterations.value = image, psf, 5
    _run(lr)
    _, deconvolve = viewer.window.add_plugin_dock_widget("siamdecon", "Deconvolve", tabify=True)
    deconvolve._image.value, deconvolve._psf_layer.value = image, psf
    _run(deconvolve)
    psf.visible = False
    # Hidden layers first so that the grid shows input, Lucy-Richardson and siamdecon from left to right.
    for layer in (image, psf, viewer.layers["camera (ground truth)"]):
        viewer.layers.move(viewer.layers.index(layer), 0)
    viewer.canvas.grid.enabled = True
    viewer.canvas.grid.shape = (1, 3)
    viewer.reset_view()
    for _ in range(20):
        QApplication.instance().processEvents()
        time.sleep(0.05)
    from PIL import Image

    # 256 colours are plenty for grey images on napari's dark theme, at a third of the size.
    shot = Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)).convert("RGB")
    shot.quantize(256).save(OUT, optimize=True)
    print(f"wrote {OUT}")
    viewer.close()


if __name__ == "__main__":
    main()
