"""siamdecon: self-supervised deconvolution of 2D and 3D fluorescence images with Siamese networks.

Public API::

    from siamdecon import Deconvolver, deconvolve, make_config, load_psf, generate_psf
    from siamdecon import widefield_psf, confocal_psf, estimate_psf_from_beads
    from siamdecon import richardson_lucy, spitfire, read_image, write_image, evaluate
    from siamdecon import degrade, Camera, camera_image, pretrain, Prior
    from siamdecon import deconvolve_files, predict_files, train_file, read_stack, write_stack, Stack
"""

from __future__ import annotations

__version__ = "0.1.0"

from .batch import deconvolve_files, predict_files, train_file  # noqa: E402
from .beads import estimate_psf as estimate_psf_from_beads  # noqa: E402
from .classical import richardson_lucy, richardson_lucy_series  # noqa: E402
from .config import Config, make_config  # noqa: E402
from .errors import ConfigError, InputError, SiamdeconError  # noqa: E402
from .io import ImageData, read_image, write_image  # noqa: E402
from .losses import LossWeights, loss_preset  # noqa: E402
from .metrics import evaluate  # noqa: E402
from .model import Deconvolver, deconvolve  # noqa: E402
from .operators import PSFConvolution  # noqa: E402
from .prior import PretrainConfig, Prior, pretrain  # noqa: E402
from .psf import confocal_psf, generate_psf, load_psf, normalize_psf, validate_psf, widefield_psf  # noqa: E402
from .simulate import (  # noqa: E402
    Camera,
    camera_image,
    camera_to_truth,
    dead_leaves,
    degrade,
    filament_phantom,
    fluorescence_2d,
    rescale01,
)
from .stack import Stack, read_stack, write_stack  # noqa: E402
from .variational import spitfire  # noqa: E402

__all__ = [
    "__version__",
    "Camera",
    "Config",
    "ConfigError",
    "Deconvolver",
    "ImageData",
    "InputError",
    "LossWeights",
    "PSFConvolution",
    "PretrainConfig",
    "Prior",
    "Stack",
    "SiamdeconError",
    "camera_image",
    "camera_to_truth",
    "confocal_psf",
    "dead_leaves",
    "deconvolve",
    "deconvolve_files",
    "degrade",
    "estimate_psf_from_beads",
    "evaluate",
    "filament_phantom",
    "fluorescence_2d",
    "generate_psf",
    "load_psf",
    "loss_preset",
    "make_config",
    "normalize_psf",
    "predict_files",
    "pretrain",
    "read_image",
    "read_stack",
    "rescale01",
    "richardson_lucy",
    "richardson_lucy_series",
    "spitfire",
    "train_file",
    "validate_psf",
    "widefield_psf",
    "write_image",
    "write_stack",
]
