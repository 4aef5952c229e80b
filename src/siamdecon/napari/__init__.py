"""napari plugin (npe2): deconvolution, Lucy-Richardson and PSF-from-beads widgets, sample data, reader.

Needs the ``napari`` extra (``pip install "siamdecon[napari]"``); napari finds the plugin through
the ``napari.manifest`` entry point (``napari.yaml`` in this folder). Nothing here is imported by
the rest of siamdecon.
"""

from __future__ import annotations

__all__ = ["DeconvolveWidget", "LucyRichardsonWidget", "PSFFromBeadsWidget", "camera_sample", "get_reader"]


def __getattr__(name: str):
    # Lazy: importing siamdecon.napari must not import Qt (napari imports the plugin's modules itself).
    if name in ("DeconvolveWidget", "LucyRichardsonWidget", "PSFFromBeadsWidget"):
        from . import _widgets

        return getattr(_widgets, name)
    if name == "camera_sample":
        from ._sample_data import camera_sample

        return camera_sample
    if name == "get_reader":
        from ._reader import get_reader

        return get_reader
    raise AttributeError(name)
