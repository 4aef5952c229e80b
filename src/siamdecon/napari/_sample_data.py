"""Sample data: the demo's degraded camera image with its PSF (and the ground truth, hidden)."""

from __future__ import annotations

from typing import Any


def camera_sample(size: int = 256) -> list[tuple[Any, dict, str]]:
    """The ``siamdecon demo`` example: scikit-image's *camera*, blurred and noised by the paper's protocol.

    Parameters
    ----------
    size : int
        Side of the centre crop (the demo uses the whole 512; 256 trains faster in the viewer).

    Returns
    -------
    list of napari layer data tuples
        The degraded image, the paper's 2D PSF, and the ground truth (hidden), each a 2D float32 image.
    """
    from ..demo import camera_example

    clean, noisy, psf = camera_example(size=size)
    return [
        (noisy, {"name": "camera (degraded)", "colormap": "gray"}, "image"),
        (psf, {"name": "camera PSF", "colormap": "magma"}, "image"),
        (clean, {"name": "camera (ground truth)", "colormap": "gray", "visible": False}, "image"),
    ]
