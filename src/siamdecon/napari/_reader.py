"""Reader: TIFF files with their voxel size (ImageJ or OME metadata) as the layer's scale.

napari's built-in TIFF reader loads the pixels only; deconvolution and the PSF widgets need the
voxel size (to generate or resample a PSF, and to show anisotropic volumes with the right aspect).
Files without a voxel size are left to napari's own reader.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

LayerData = list[tuple[Any, dict, str]]


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], LayerData] | None:
    """Return a reader for ``path`` if it is a single-channel 2D/3D TIFF with a voxel size, else ``None``."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if p.suffix.lower() not in (".tif", ".tiff"):
        return None
    from ..errors import SiamdeconError
    from ..io import read_image

    try:
        img = read_image(p)
    except SiamdeconError:
        return None
    if img.spacing is None or (not img.unit and all(float(v) == 1.0 for v in img.spacing)):
        return None  # no voxel size, or an uncalibrated ImageJ file (resolution 1, no unit)

    import numpy as np

    data = img.data
    if np.dtype(img.original_dtype).kind in "iu" and np.dtype(img.original_dtype).itemsize <= 2:
        # Raw camera counts stay integers: the bead widget recognizes saturation by the dtype's full scale.
        data = data.astype(img.original_dtype)

    def reader(_: str | list[str]) -> LayerData:
        meta = {"spacing_unit": img.unit or "um"}
        return [(data, {"name": p.stem, "scale": tuple(img.spacing), "metadata": meta}, "image")]

    return reader
