"""siamdecon: self-supervised deconvolution of 2D and 3D fluorescence images with Siamese networks.

Public API::

    from siamdecon import Deconvolver, deconvolve, make_config, load_psf, generate_psf
    from siamdecon import widefield_psf, confocal_psf, estimate_psf_from_beads
    from siamdecon import richardson_lucy, spitfire, read_image, write_image, evaluate
    from siamdecon import degrade, Camera, camera_image, pretrain, Prior
    from siamdecon import deconvolve_files, predict_files, train_file, read_stack, write_stack, Stack
"""

from __future__ import annotations

from ._version import __version__
from .batch import deconvolve_files, predict_files, train_file
from .beads import estimate_psf as estimate_psf_from_beads
from .classical import richardson_lucy, richardson_lucy_series
from .config import Config, make_config
from .errors import ConfigError, InputError, SiamdeconError
from .io import ImageData, read_image, write_image
from .losses import LossWeights, loss_preset
from .metrics import evaluate
from .model import Deconvolver, deconvolve
from .operators import PSFConvolution
from .prior import PretrainConfig, Prior, pretrain
from .psf import confocal_psf, generate_psf, load_psf, normalize_psf, validate_psf, widefield_psf
from .simulate import (
    Camera,
    camera_image,
    camera_to_truth,
    dead_leaves,
    degrade,
    filament_phantom,
    fluorescence_2d,
    rescale01,
)
from .stack import Stack, read_stack, write_stack
from .variational import spitfire

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
