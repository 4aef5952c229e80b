"""The trained deconvolver: fit on an image, predict, save and load.

A model file holds the network weights, the full config, the PSF and the normalization
statistics, so it can be reloaded on another machine (CPU, CUDA or MPS) and applied without
any other file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import Config, make_config
from .data import Normalization, psf_is_dihedral
from .errors import ConfigError, InputError
from .inference import predict_tiled, with_augmentation
from .io import read_torch_file, write_torch_file
from .network import prefer_channels_last
from .psf import check_psf_fits, normalize_psf, validate_psf
from .training import TrainResult, build_network, resolve_device, train

__all__ = ["Deconvolver", "deconvolve"]

_FORMAT = "siamdecon-model"
_FORMAT_VERSION = 1


class Deconvolver:
    """A self-supervised deconvolution network trained on one image.

    Use :meth:`fit` to train, :meth:`predict` to deconvolve, :meth:`save`/:meth:`load` to keep it.

    Examples
    --------
    >>> model = Deconvolver.fit(image, psf, make_config("fast", ndim=2))  # doctest: +SKIP
    >>> sharp = model.predict(image)                                      # doctest: +SKIP
    >>> model.save("model.pt"); Deconvolver.load("model.pt")               # doctest: +SKIP
    """

    def __init__(
        self,
        network: torch.nn.Module,
        config: Config,
        psf: np.ndarray,
        normalization: Normalization,
        history: list[dict[str, float]] | None = None,
        train_seconds: float = 0.0,
        interrupted: bool = False,
        prior: str | None = None,
    ) -> None:
        self.network = network.eval()
        self.config = config
        self.psf = np.asarray(psf, dtype=np.float32)
        self.normalization = normalization
        self.history = history or []
        self.train_seconds = train_seconds
        self.interrupted = interrupted
        self.prior = prior

    # -- training ---------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        image: np.ndarray,
        psf: np.ndarray,
        config: Config | None = None,
        *,
        progress: bool = True,
        **kwargs: Any,
    ) -> Deconvolver:
        """Train on ``image`` with the known ``psf``.

        Parameters
        ----------
        image : np.ndarray
            Raw 2D image or 3D volume (z, y, x).
        psf : np.ndarray
            PSF with the same number of dimensions; validated and normalized to sum 1.
        config : Config, optional
            Settings; default the ``fast`` preset for the image's dimensionality.
        progress : bool
            Show a progress bar.
        **kwargs
            Passed to :func:`siamdecon.training.train` (``callback``, ``allow_interrupt``...).
        """
        image = np.asarray(image, dtype=np.float32)
        if image.ndim not in (2, 3):
            raise InputError(f"image must be 2D or 3D, got shape {image.shape}")
        if float(image.std()) <= 1e-12 * max(1.0, abs(float(image.mean()))):
            raise InputError("the image is constant (zero variance); there is nothing to deconvolve")
        psf = normalize_psf(validate_psf(psf, ndim=image.ndim))
        check_psf_fits(psf.shape, image.shape)
        config = config or make_config("fast", ndim=image.ndim)
        if config.ndim != image.ndim:
            raise ConfigError(
                f"the config is for {config.ndim}D data but the image is {image.ndim}D (shape {image.shape});"
                f" build it with make_config(..., ndim={image.ndim})"
            )
        result: TrainResult = train(image, psf, config, progress=progress, **kwargs)
        return cls(
            result.network,
            config,
            psf,
            result.normalization,
            result.history,
            result.seconds,
            result.interrupted,
            result.prior,
        )

    # -- inference --------------------------------------------------------------------------------
    def predict(
        self,
        image: np.ndarray,
        *,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        device: str | None = None,
        normalization: str = "model",
        tta: bool | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Deconvolve an image: unmasked forward pass, no PSF, de-standardized.

        Parameters
        ----------
        image : np.ndarray
            Raw image with the model's number of dimensions.
        tile_size, tile_overlap : int, optional
            Tiling (default from the config); inputs up to ``tile_size`` run in one pass.
        device : str, optional
            ``auto`` (default: CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        normalization : {"model", "image"}
            Standardize with the statistics stored in the model (default) or recompute them on
            ``image`` (for applying a model to a different image with other intensities).
        tta : bool, optional
            Average over the 8 rotations/flips of the xy plane (default from the config).
        progress : bool
            Show a progress bar over tiles.

        Returns
        -------
        np.ndarray
            Float32 array of exactly the input's shape.
        """
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != self.config.ndim:
            raise InputError(
                f"this model was trained on {self.config.ndim}D data but the image is {image.ndim}D"
                f" (shape {image.shape})"
            )
        if normalization == "model":
            norm = self.normalization
        elif normalization == "image":
            from .data import standardize

            _, norm = standardize(image)
        else:
            raise ValueError(f"normalization must be 'model' or 'image', got {normalization!r}")
        inf = self.config.inference
        tile = tile_size or inf.tile_size
        overlap = inf.tile_overlap if tile_overlap is None else tile_overlap
        if overlap >= tile:
            raise InputError(f"tile overlap ({overlap}) must be smaller than the tile size ({tile})")
        dev = resolve_device(device or "auto")
        inputs = norm.apply(image)[None]
        net = prefer_channels_last(self.network.to(dev), dev).eval()
        use_tta = self.config.inference.tta if tta is None else tta
        # Averaging over rotations is only valid when the PSF has that symmetry.
        fn = with_augmentation(net) if use_tta and psf_is_dihedral(self.psf) else net
        saved = (net.mean, net.std)
        net.mean, net.std = norm.mean, norm.std
        try:
            out = predict_tiled(
                fn, inputs, tile, overlap, batch_size=inf.batch_size, margin=inf.context, device=dev, progress=progress
            )
        finally:
            net.mean, net.std = saved
        return norm.invert(out[0])

    # -- files --------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write weights, config, PSF and normalization to one file (atomically)."""
        p = Path(path)
        state = {
            "config": self.config.model_dump_json(),
            "psf": torch.from_numpy(self.psf.copy()),
            "normalization": self.normalization.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
            "train_seconds": float(self.train_seconds),
            "prior": self.prior or "",
            "final_loss": float(self.history[-1]["total"]) if self.history else float("nan"),
            "saved": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        return write_torch_file(p, _FORMAT, _FORMAT_VERSION, state)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "cpu") -> Deconvolver:
        """Load a model written by :meth:`save` (onto ``device``; default CPU)."""
        p = Path(path)
        state = read_torch_file(p, _FORMAT, _FORMAT_VERSION, "model", map_location=device)
        try:
            config = Config.model_validate_json(state["config"])
            norm = Normalization(**state["normalization"])
            psf = state["psf"].cpu().numpy()
            net = build_network(config, psf, norm)
            net.load_state_dict(state["state_dict"])
        except Exception as exc:  # a damaged or hand-edited file fails in many ways
            raise InputError(f"model file '{p}' is damaged or incompatible: {exc}") from exc
        net = net.to(device)
        return cls(
            net,
            config,
            psf,
            norm,
            train_seconds=state.get("train_seconds", 0.0),
            prior=state.get("prior") or None,
        )


def deconvolve(image: np.ndarray, psf: np.ndarray, config: Config | None = None, **fit_kwargs: Any) -> np.ndarray:
    """Train on ``image`` and return its deconvolution (the one-call API).

    Examples
    --------
    >>> from siamdecon import deconvolve, make_config       # doctest: +SKIP
    >>> sharp = deconvolve(image, psf, make_config("fast", ndim=image.ndim))  # doctest: +SKIP
    """
    return Deconvolver.fit(image, psf, config, **fit_kwargs).predict(image)
