"""The trained deconvolver: fit on an image, predict, save and load.

A model file holds the network weights, the full config, the PSF and the normalization
statistics, so it can be reloaded on another machine (CPU, CUDA or MPS) and applied without
any other file.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import Config, make_config
from .data import Normalization, psf_is_dihedral
from .errors import ConfigError, InputError
from .inference import predict_tiled, with_augmentation
from .network import prefer_channels_last
from .psf import check_psf_fits, normalize_psf, validate_psf
from .torchfile import read_torch_file, write_torch_file
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
        *,
        axes: str | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        self.network = network.eval()
        self.config = config
        self.psf = np.asarray(psf, dtype=np.float32)
        self.normalization = normalization
        self.history = history or []
        self.train_seconds = train_seconds
        self.interrupted = interrupted
        self.prior = prior
        #: Axes of the data it was trained for (for example "TCZYX"), when known.
        self.axes = axes
        #: What it was trained on and how (channel, time points, PSF file...), saved with it.
        self.provenance = dict(provenance or {})

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
        image : np.ndarray, or a sequence of array-likes
            Raw 2D image or 3D volume (z, y, x). A list of them (the time points of one channel,
            for example), or an array read lazily (Zarr, :class:`~siamdecon.stack.VolumeView`),
            trains one network on patches drawn across all of them, with their joint
            normalization computed block by block (:func:`siamdecon.sources.train_on_arrays`).
        psf : np.ndarray
            PSF with the same number of dimensions; validated and normalized to sum 1.
        config : Config, optional
            Settings; default the ``fast`` preset for the image's dimensionality. With several
            ``prior.fine_tune_hessian`` weights (the 3D default: 0 and 0.03), one network per weight
            is fine-tuned and the one whose estimate predicts held-out pixels of the image best is
            kept; ``provenance["hessian_choice"]`` records the weights, their errors and the choice.
        progress : bool
            Show a progress bar.
        **kwargs
            Passed to :func:`siamdecon.training.train` (``callback``, ``allow_interrupt``...).
        """
        if isinstance(image, list | tuple) and image and all(hasattr(a, "shape") for a in image):
            if len(image) > 1 or not isinstance(image[0], np.ndarray):
                return cls._fit_arrays(list(image), psf, config, progress=progress, **kwargs)
            image = image[0]
        elif not isinstance(image, np.ndarray) and hasattr(image, "shape") and hasattr(image, "__getitem__"):
            return cls._fit_arrays([image], psf, config, progress=progress, **kwargs)
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
        return cls._from_result(result, psf, config, image)

    @classmethod
    def _fit_arrays(
        cls, arrays: list[Any], psf: np.ndarray, config: Config | None, *, progress: bool, **kwargs: Any
    ) -> Deconvolver:
        from .sources import train_on_arrays

        ndims = {len(a.shape) for a in arrays}
        if len(ndims) != 1 or next(iter(ndims)) not in (2, 3):
            raise InputError(f"images must all be 2D or all 3D, got shapes {[tuple(a.shape) for a in arrays]}")
        ndim = next(iter(ndims))
        psf = normalize_psf(validate_psf(psf, ndim=ndim))
        for a in arrays:
            check_psf_fits(psf.shape, tuple(a.shape))
        config = config or make_config("fast", ndim=ndim)
        if config.ndim != ndim:
            raise ConfigError(
                f"the config is for {config.ndim}D data but the images are {ndim}D; build it with"
                f" make_config(..., ndim={ndim})"
            )
        where = kwargs.pop("where", "image")
        pool = kwargs.pop("max_pool_bytes", None)
        extra = {"max_pool_bytes": pool} if pool else {}
        result = train_on_arrays(arrays, psf, config, progress=progress, where=where, **extra, **kwargs)
        if not result.candidates:
            return cls._from_result(result, psf, config, np.zeros(0, np.float32))
        from .holdout import check_regions

        # Several Hessian weights: scored on the first array's central region, read as the check
        # reads a lazy volume.
        first = arrays[0]
        context, _ = check_regions(tuple(first.shape), psf.shape)
        crop = np.asarray(first[context], dtype=np.float32)
        return cls._from_result(result, psf, config, crop, (tuple(first.shape), context))

    @classmethod
    def _from_result(
        cls,
        result: TrainResult,
        psf: np.ndarray,
        config: Config,
        image: np.ndarray,
        part_of: tuple[tuple[int, ...], tuple[slice, ...]] | None = None,
    ) -> Deconvolver:
        """The model of a training result; with several Hessian weights, the candidate whose estimate
        predicts held-out pixels of ``image`` best (:func:`siamdecon.holdout.score_networks`: the
        pixels and folds the check holds out; ``part_of`` as there)."""

        def model_of(r: TrainResult) -> Deconvolver:
            return cls(
                r.network, r.config or config, psf, r.normalization, r.history, r.seconds, r.interrupted, r.prior
            )

        grid = config.prior.hessian_grid
        model = model_of(result)
        if len(grid) < 2:
            return model
        if not result.candidates:
            model.provenance["hessian_choice"] = {"weights": list(grid), "chosen": grid[0], "why": "no fine-tuning ran"}
            return model
        if result.interrupted:
            model.provenance["hessian_choice"] = {"weights": list(grid), "chosen": grid[0], "why": "interrupted"}
            return model
        from .holdout import score_networks

        models = [model_of(r) for r in result.candidates]
        device = config.training.device
        scores = score_networks(
            [lambda masked, m=m: m.predict(masked, device=device) for m in models],
            image,
            model.psf,
            part_of=part_of,
            **model._check_arguments(),
        )
        errors = [c.error for c in scores]
        best = int(np.argmin(errors))
        chosen = models[best]
        chosen.provenance["hessian_choice"] = {
            "weights": list(grid),
            "errors": [round(e, 6) for e in errors],
            "chosen": grid[best],
            "held_out_pixels": int(scores[0].errors.size),
        }
        return chosen

    def _check_arguments(self) -> dict[str, Any]:
        """The noise model and mask fraction :meth:`check` scores with."""
        from .noise import NoiseModel

        norm = self.normalization
        out: dict[str, Any] = {"mask_fraction": self.config.mask.fraction}
        if norm.gain != 1.0 or norm.read_variance != 0.0:
            out["noise"] = NoiseModel(norm.gain, norm.offset, norm.read_variance)
        return out

    @property
    def training_summary(self) -> str:
        """How this network was made, in a few words (for names of results and report rows):
        ``"prior P, as is"``, ``"prior P + N fine-tuning steps (LOSS)"`` or ``"LOSS, N steps"``,
        counting the steps that ran (fewer than asked when training was interrupted)."""
        steps = len(self.history)
        if self.prior:
            if not steps:
                return f"prior {self.prior}, as is"
            loss = self.config.prior.fine_tune_loss
            if self.config.prior.fine_tune_hessian:
                loss += f" + Hessian {self.config.prior.fine_tune_hessian:g}"
            choice = self.provenance.get("hessian_choice", {})
            if "errors" in choice:
                loss += f", chosen of {', '.join(f'{w:g}' for w in choice['weights'])} on held-out pixels"
            return f"prior {self.prior} + {steps} fine-tuning steps ({loss})"
        return f"{self.config.loss.label}, {steps} steps"

    # -- inference --------------------------------------------------------------------------------
    def _prepared(self, device: str | None, normalization: Normalization, tta: bool | None):
        """The network on ``device`` as a function of standardized tiles.

        The normalization is passed to every call rather than set on the network, so that
        predicting never changes the model (two threads may predict with one model).
        """
        dev = resolve_device(device or "auto")
        net = prefer_channels_last(self.network.to(dev), dev).eval()
        n = normalization

        def fn(x: torch.Tensor) -> torch.Tensor:
            return net(x, n.mean, n.std, n.gain, n.offset, n.read_variance)

        use_tta = self.config.inference.tta if tta is None else tta
        if not use_tta:
            return fn, dev
        if net.start == "generic":
            # The PSF enters the generic network only through its Lucy-Richardson input channels:
            # rotating those channels is valid for any PSF (and runs Lucy-Richardson once, not 8 times).
            def inputs(x: torch.Tensor) -> torch.Tensor:
                return net.generic_inputs(x, n.mean, n.std, n.gain, n.offset, n.read_variance)

            return with_augmentation(net.unet, inputs), dev
        if not psf_is_dihedral(self.psf):
            warnings.warn(
                "test-time augmentation skipped: the PSF is not symmetric under 90-degree rotations and flips"
                " in the xy plane, and this network knows it in one orientation only (the fast preset's"
                " generic start, which sees the PSF through Lucy-Richardson inputs that rotate with the tile,"
                " is averaged for any PSF)",
                stacklevel=3,
            )
            return fn, dev
        return with_augmentation(fn), dev

    def predict_region(
        self,
        source: Any,
        region: tuple[slice, ...],
        *,
        normalization: Normalization | None = None,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        device: str | None = None,
        tta: bool | None = None,
    ) -> np.ndarray:
        """Deconvolve one region of an array that need not fit in memory (a Zarr-backed volume).

        The region is predicted by the same tiles as :meth:`predict` uses for a whole image, each
        with the network's context read from ``source`` around it, so that a volume processed
        region by region (in any order, in any process) needs only one region in memory at a time.

        Parameters
        ----------
        source : array-like
            The raw 2D/3D volume, indexable by slices (NumPy, Zarr, :class:`~siamdecon.stack.VolumeView`).
        region : tuple of slice
            The spatial region to return.
        normalization : Normalization, optional
            Default the model's (the training data's statistics).
        tile_size, tile_overlap, device, tta
            As for :meth:`predict`.

        Returns
        -------
        np.ndarray
            Float32 result for ``region``.
        """
        from .inference import predict_tiled_region

        shape = tuple(int(n) for n in source.shape)
        if len(shape) != self.config.ndim:
            raise InputError(
                f"this model was trained on {self.config.ndim}D data but the volume is {len(shape)}D (shape {shape})"
            )
        norm = normalization or self.normalization
        inf = self.config.inference
        tile = tile_size or inf.tile_size
        overlap = inf.tile_overlap if tile_overlap is None else tile_overlap
        if overlap >= tile:
            raise InputError(f"tile overlap ({overlap}) must be smaller than the tile size ({tile})")
        region = tuple(slice(r.start or 0, n if r.stop is None else r.stop) for r, n in zip(region, shape, strict=True))
        fn, dev = self._prepared(device, norm, tta)
        out = predict_tiled_region(
            fn,
            lambda window: norm.apply(np.asarray(source[window]))[None],
            shape,
            region,
            tile,
            overlap,
            batch_size=inf.batch_size,
            margin=inf.context,
            device=dev,
        )
        return norm.invert(out[0])

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

            _, norm = standardize(image, noise=self.config.training.start.kind == "generic")
        else:
            raise ValueError(f"normalization must be 'model' or 'image', got {normalization!r}")
        inf = self.config.inference
        tile = tile_size or inf.tile_size
        overlap = inf.tile_overlap if tile_overlap is None else tile_overlap
        if overlap >= tile:
            raise InputError(f"tile overlap ({overlap}) must be smaller than the tile size ({tile})")
        fn, dev = self._prepared(device, norm, tta)
        out = predict_tiled(
            fn,
            norm.apply(image)[None],
            tile,
            overlap,
            batch_size=inf.batch_size,
            margin=inf.context,
            device=dev,
            progress=progress,
        )
        return norm.invert(out[0])

    def check(self, image: np.ndarray, *, device: str | None = None, **kwargs: Any):
        """Compare this network with Lucy-Richardson and Spitfire on held-out pixels of ``image``.

        The network runs on copies of ``image`` whose held-out pixels (as sparse as its training
        mask) are replaced by the mean of their neighbours, so its prediction there never sees
        them; see :func:`siamdecon.holdout.check` for the
        classical candidates, the criterion and ``kwargs``.

        Returns
        -------
        siamdecon.holdout.CheckReport
            ``report.fell_back`` says whether a classical estimate predicts the data better;
            ``report.output(image, model.psf, network)`` gives what to write (the network's
            prediction as is or after the check's Lucy-Richardson steps, or the classical estimate).
        """
        from .holdout import check

        image = np.asarray(image, dtype=np.float32)
        if image.ndim != self.config.ndim:
            raise InputError(
                f"this model was trained on {self.config.ndim}D data but the image is {image.ndim}D"
                f" (shape {image.shape})"
            )

        def predict_masked(masked: np.ndarray) -> np.ndarray:
            return self.predict(masked, device=device)

        for key, value in self._check_arguments().items():
            kwargs.setdefault(key, value)
        return check(predict_masked, image, self.psf, device=resolve_device(device or "auto"), **kwargs)

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
            # Older readers ignore these two; older files load without them.
            "axes": self.axes or "",
            "provenance": json.dumps(self.provenance, default=str),
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
            axes=state.get("axes") or None,
            provenance=_provenance(state.get("provenance")),
        )


def _provenance(text: Any) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def deconvolve(
    image: np.ndarray,
    psf: np.ndarray,
    config: Config | None = None,
    *,
    check: bool | None = None,
    **fit_kwargs: Any,
) -> np.ndarray:
    """Train on ``image`` and return its deconvolution (the one-call API).

    Parameters
    ----------
    image, psf, config
        As for :meth:`Deconvolver.fit`.
    check : bool, optional
        Compare the trained network with Lucy-Richardson and Spitfire on held-out pixels
        (:meth:`Deconvolver.check`) and return the classical estimate, with a warning that says
        so, when the network predicts the data worse. Default: on, except for the ``paper`` preset.
    **fit_kwargs
        Passed to :meth:`Deconvolver.fit`.

    Examples
    --------
    >>> from siamdecon import deconvolve, make_config       # doctest: +SKIP
    >>> sharp = deconvolve(image, psf, make_config("fast", ndim=image.ndim))  # doctest: +SKIP
    """
    import warnings

    model = Deconvolver.fit(image, psf, config, **fit_kwargs)
    if check is None:
        check = model.config.preset != "paper"
    if check:
        device = model.config.training.device
        report = model.check(image, device=device)
        if report.fell_back:
            warnings.warn(report.summary(), stacklevel=2)
        network = None if report.fell_back else model.predict(image)
        return report.output(np.asarray(image, np.float32), model.psf, network, device=resolve_device(device))
    return model.predict(image)
