"""Export a trained model as a BioImage Model Zoo package (model spec 0.5, ``bioimageio.spec``).

The package holds the weights as a PyTorch ``state_dict`` with the architecture as one
self-contained source file (:mod:`siamdecon.bmz_architecture`, PyTorch only, so that a consumer
needs neither siamdecon nor anything beyond ``torch``), the PSF, the config and the siamdecon
model file as attachments, a test input and output, a cover image, the paper's citation and the
licence. The network maps raw intensities to raw intensities: the standardization of the
training image is inside it, so no pre- or postprocessing is declared.

Needs the ``bmz`` extra (``pip install "siamdecon[bmz]"``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError, InputError
from .model import Deconvolver

__all__ = [
    "BMZExport",
    "PAPER_CITATION",
    "bmz_kwargs",
    "bmz_network",
    "bmz_state_dict",
    "export_bmz",
    "validate_bmz_package",
]

PAPER_CITATION = {
    "text": (
        "Papkov M., Palo K., Parts L. Self-Supervised Single-Image Deconvolution with Siamese Neural"
        " Networks. arXiv:2308.09426 (2023)."
    ),
    "doi": "10.48550/arXiv.2308.09426",
}
# The exported network must reproduce siamdecon's own prediction to this fraction of the output's
# range on the test input, or the export is refused.
EXPORT_TOLERANCE = 1e-4
# Largest side of the test input: it must fit in one inference tile so that siamdecon's prediction
# is one forward pass, like the package's.
_TEST_SIDE_2D = 128
_TEST_SHAPE_3D = (32, 64, 64)
_CONFIG_NAME = "siamdecon_config.json"


@dataclass
class BMZExport:
    """What :func:`export_bmz` wrote.

    Attributes
    ----------
    path : Path
        The zip package.
    max_difference : float
        Largest absolute difference between the package's network and ``Deconvolver.predict`` on
        the test input (raw units).
    output_range : float
        ``max - min`` of the test output, the scale of ``max_difference``.
    test_passed : bool or None
        Whether ``bioimageio.core``'s ``test_model`` passed (``None``: not run).
    test_details : list of str
        The test's failures, if any.
    """

    path: Path
    max_difference: float
    output_range: float
    test_passed: bool | None = None
    test_details: list[str] = field(default_factory=list)


def _import_spec():
    try:
        from bioimageio.spec import save_bioimageio_package
        from bioimageio.spec.model import v0_5
    except ImportError as exc:
        raise ConfigError(
            "BioImage Model Zoo export needs bioimageio.spec and bioimageio.core: pip install 'siamdecon[bmz]'"
        ) from exc
    return v0_5, save_bioimageio_package


def bmz_kwargs(model: Deconvolver) -> dict:
    """Keyword arguments of :class:`siamdecon.bmz_architecture.SiamdeconNetwork` for ``model``."""
    from .data import psf_is_dihedral

    cfg = model.config
    start = cfg.training.start.kind
    counts = cfg.training.start.iterations_run() or (1,)
    norm = model.normalization
    kwargs = {
        "ndim": cfg.ndim,
        "width": cfg.network.width,
        "levels": cfg.network.levels,
        "skip": cfg.network.skip,
        "norm": cfg.network.norm,
        "start": start,
        "iterations": int(counts[0]),
        "psf_shape": [int(s) for s in model.psf.shape],
        "mean": float(norm.mean),
        "std": float(norm.std),
        # Deconvolver.predict averages over rotations only when the PSF has that symmetry, or
        # when the PSF enters through input channels computed before the rotations (generic).
        "tta": bool(cfg.inference.tta and (start == "generic" or psf_is_dihedral(model.psf))),
    }
    if start == "generic":
        kwargs.update(
            extra_iterations=[int(n) for n in counts[1:]],
            gain=float(norm.gain),
            offset=float(norm.offset),
            read_variance=float(norm.read_variance),
        )
    return kwargs


def bmz_state_dict(model: Deconvolver) -> dict[str, torch.Tensor]:
    """The package's weights: the U-Net's parameters and buffers, and the PSF."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.network.state_dict().items()}
    state["psf"] = torch.from_numpy(np.ascontiguousarray(model.psf, dtype=np.float32))
    return state


def bmz_network(model: Deconvolver) -> torch.nn.Module:
    """``model`` rebuilt as the package's stand-alone network (eval mode, CPU), weights loaded strictly."""
    from .bmz_architecture import SiamdeconNetwork

    net = SiamdeconNetwork(**bmz_kwargs(model))
    try:
        net.load_state_dict(bmz_state_dict(model), strict=True)
    except RuntimeError as exc:
        raise ConfigError(
            f"this model's network cannot be exported: the stand-alone architecture of the package does not match it"
            f" ({exc})"
        ) from exc
    return net.eval()


def _input_size(model: Deconvolver) -> tuple[int, int]:
    """Smallest side and step of the package's input sizes: multiples of the U-Net's downsampling."""
    step = 2 ** (model.config.network.levels - 1)
    return max(4 * step, 16), step


def _test_input(model: Deconvolver, image: np.ndarray | None, seed: int) -> np.ndarray:
    """A test input that fits in one tile: a centre crop of ``image``, or a synthetic one.

    The synthetic input is a fluorescence-like image (tubes in 3D) blurred with the model's PSF,
    with noise, scaled to the training image's mean and standard deviation.
    """
    nd = model.config.ndim
    tile = model.config.inference.tile_size
    if image is not None:
        arr = np.asarray(image, dtype=np.float32)
        if arr.ndim != nd:
            raise InputError(f"the test image is {arr.ndim}D (shape {arr.shape}) but the model is {nd}D")
        limit = (_TEST_SIDE_2D,) * 2 if nd == 2 else _TEST_SHAPE_3D
        low, step = _input_size(model)
        if min(arr.shape) < low:
            raise InputError(f"the test image (shape {arr.shape}) needs at least {low} pixels along every axis")
        # A size the package accepts as it is: low + k * step.
        crop = tuple(low + (min(n, lim, tile) - low) // step * step for n, lim in zip(arr.shape, limit))
        starts = [(n - c) // 2 for n, c in zip(arr.shape, crop)]
        return np.ascontiguousarray(arr[tuple(slice(a, a + c) for a, c in zip(starts, crop))])
    from .simulate import degrade, fluorescence_2d, tubes_3d

    if nd == 2:
        side = min(_TEST_SIDE_2D, tile)
        clean = fluorescence_2d(side, seed=seed)
    else:
        shape = tuple(min(s, tile) for s in _TEST_SHAPE_3D)
        clean = tubes_3d(shape, seed=seed)
    k = model.psf
    if any(ks > s for ks, s in zip(k.shape, clean.shape)):
        raise InputError(f"the model's PSF {k.shape} is larger than the test input {clean.shape}; pass a test image")
    noisy = degrade(clean, k, poisson=0.0, gaussian=0.05, salt_pepper=0.0, bits=None, seed=seed)
    noisy = (noisy - noisy.mean()) / max(float(noisy.std()), 1e-12)
    return (noisy * model.normalization.std + model.normalization.mean).astype(np.float32)


def _cover(path: Path, test_in: np.ndarray, test_out: np.ndarray) -> None:
    """Input and output side by side (2:1), each scaled to its own 0.1-99.9 percentile range."""
    from PIL import Image

    def scaled(a: np.ndarray) -> np.ndarray:
        a = a if a.ndim == 2 else a.max(axis=0)
        lo, hi = np.percentile(a, [0.1, 99.9])
        return (np.clip((a - lo) / max(hi - lo, 1e-12), 0, 1) * 255).astype(np.uint8)

    pair = np.concatenate([scaled(test_in), scaled(test_out)], axis=1)
    img = Image.fromarray(pair)
    h = 256
    img.resize((2 * h, h), Image.Resampling.NEAREST).save(path, format="PNG")


def _camera_line(kwargs: dict) -> str:
    if kwargs["start"] != "generic":
        return ""
    counts = ", ".join(str(n) for n in [kwargs["iterations"], *kwargs["extra_iterations"]])
    return (
        f"\n- The network's input channels (Lucy-Richardson estimates after {counts} iterations, the noise"
        f" level) use the camera model of the training image: gain {kwargs['gain']:.6g}, offset"
        f" {kwargs['offset']:.6g}, read variance {kwargs['read_variance']:.6g} (raw units). Images from"
        " another camera setting need a new model."
    )


def _documentation(model: Deconvolver, kwargs: dict, difference: float) -> str:
    cfg = model.config
    return f"""# siamdecon deconvolution model

Self-supervised deconvolution of a {cfg.ndim}D fluorescence microscopy {"image" if cfg.ndim == 2 else "volume"}
with a known PSF (Papkov et al. 2023), trained by siamdecon on one image
({cfg.preset} preset, {cfg.loss.label} loss{f", from prior {model.prior}" if model.prior else ""}).

- Input `raw`: raw intensities, axes `batch, channel{", z" if cfg.ndim == 3 else ""}, y, x`, float32, one channel.
- Output `deconvolved`: the deconvolved image, same axes, shape and intensity units.
- The training image's standardization (mean {kwargs["mean"]:.6g}, std {kwargs["std"]:.6g}) is inside the
  network; no pre- or postprocessing is needed.{_camera_line(kwargs)}
- `{_CONFIG_NAME}`: the full siamdecon configuration; `psf.npy`: the PSF it was trained with;
  `model.pt`: the siamdecon model file (`siamdecon predict IMAGE --model model.pt`).

The model was trained on one image and is meant for images of the same microscope, PSF and intensity
range. A different PSF needs a new model.

## Validation

The test output is siamdecon's own prediction (`Deconvolver.predict`) on the test input; the package's
network reproduces it to {difference:.2g} (raw units). For an input larger than siamdecon's inference tile
({cfg.inference.tile_size} px), siamdecon predicts in overlapping tiles: tools that predict it whole or in
other tiles give slightly different results near tile borders. Judge deconvolution quality on images with
known ground truth (`siamdecon benchmark`); this package does not measure it.
"""


def export_bmz(
    model: Deconvolver | str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    name: str | None = None,
    description: str | None = None,
    authors: list[str] | None = None,
    test_image: np.ndarray | None = None,
    license: str = "MIT",
    run_test: bool = True,
    seed: int = 0,
) -> BMZExport:
    """Write ``model`` as a BioImage Model Zoo package (zip, model spec 0.5).

    Parameters
    ----------
    model : Deconvolver or path
        A trained model, or a model file written by :meth:`Deconvolver.save`.
    output : path
        The ``.zip`` to write (atomically).
    name, description : str, optional
        The package's name and description (defaults say what the model is).
    authors : list of str, optional
        Names of the package's authors (default: "siamdecon user").
    test_image : np.ndarray, optional
        Image to take the test input from (centre crop that fits one tile); default a synthetic
        image blurred with the model's PSF at the training image's intensity statistics.
    license : str
        SPDX licence identifier of the package (default MIT, siamdecon's).
    run_test : bool
        Run ``bioimageio.core``'s ``test_model`` on the written package.
    seed : int
        Seed of the synthetic test input.

    Returns
    -------
    BMZExport
        The path and how closely the package reproduces ``Deconvolver.predict``.

    Raises
    ------
    ConfigError
        If bioimageio.spec is missing, or the package's network does not reproduce the model.
    InputError
        If the output is not a writable ``.zip`` or the test image does not fit the model.
    """
    from ._version import __version__
    from .io import atomic_path, check_writable

    out = Path(output)
    if out.suffix.lower() != ".zip":
        raise InputError(f"output '{out}' must be a .zip file (a BioImage Model Zoo package)")
    check_writable(out, "package")
    model_path: Path | None = None
    if not isinstance(model, Deconvolver):
        model_path = Path(model)
        model = Deconvolver.load(model_path)
    v0_5, save_package = _import_spec()
    nd = model.config.ndim

    test_in = _test_input(model, test_image, seed)
    expected = model.predict(test_in, device="cpu")
    kwargs = bmz_kwargs(model)
    net = bmz_network(model)
    with torch.no_grad():
        got = net(torch.from_numpy(test_in)[None, None])[0, 0].numpy()
    difference = float(np.abs(got - expected).max())
    span = float(expected.max() - expected.min()) or 1.0
    if not difference <= EXPORT_TOLERANCE * span:
        raise ConfigError(
            f"the package's network differs from siamdecon's prediction by {difference:.3g} (output range {span:.3g});"
            " the stand-alone architecture (siamdecon/bmz_architecture.py) no longer matches siamdecon's network"
        )

    with tempfile.TemporaryDirectory(prefix="siamdecon-bmz-") as tmp_name:
        tmp = Path(tmp_name)
        arch = tmp / "siamdecon_network.py"
        shutil.copyfile(Path(__file__).with_name("bmz_architecture.py"), arch)
        weights = tmp / "weights.pt"
        torch.save(bmz_state_dict(model), weights)
        np.save(tmp / "test_input.npy", test_in[None, None])
        np.save(tmp / "test_output.npy", expected[None, None].astype(np.float32))
        np.save(tmp / "psf.npy", model.psf.astype(np.float32))
        # Sample tensors are for people (any viewer opens a TIFF); test tensors for tools.
        import tifffile

        tifffile.imwrite(tmp / "sample_input.tif", test_in.astype(np.float32))
        tifffile.imwrite(tmp / "sample_output.tif", expected.astype(np.float32))
        (tmp / _CONFIG_NAME).write_text(json.dumps(model.config.model_dump(mode="json"), indent=2))
        saved_model = tmp / "model.pt"
        if model_path is not None:
            shutil.copyfile(model_path, saved_model)
        else:
            model.save(saved_model)
        _cover(tmp / "cover.png", test_in, expected)
        doc = tmp / "README.md"
        doc.write_text(_documentation(model, kwargs, difference))
        env = tmp / "environment.yaml"
        torch_version = torch.__version__.split("+")[0]
        env.write_text(
            "name: siamdecon-bmz\nchannels:\n  - conda-forge\n  - nodefaults\ndependencies:\n"
            "  - python>=3.10\n  - pytorch>=2.0\n  - numpy\n"
        )

        space = ["z", "y", "x"][-nd:]
        min_size, step = _input_size(model)
        in_axes = [v0_5.BatchAxis(), v0_5.ChannelAxis(channel_names=[v0_5.Identifier("raw")])]
        in_axes += [
            v0_5.SpaceInputAxis(id=v0_5.AxisId(a), size=v0_5.ParameterizedSize(min=min_size, step=step)) for a in space
        ]
        out_axes = [v0_5.BatchAxis(), v0_5.ChannelAxis(channel_names=[v0_5.Identifier("deconvolved")])]
        out_axes += [
            v0_5.SpaceOutputAxis(
                id=v0_5.AxisId(a), size=v0_5.SizeReference(tensor_id=v0_5.TensorId("raw"), axis_id=v0_5.AxisId(a))
            )
            for a in space
        ]
        cfg = model.config
        descr = v0_5.ModelDescr(
            name=name or f"siamdecon {nd}D deconvolution ({cfg.preset} preset)",
            description=description
            or (
                f"Self-supervised deconvolution of a {nd}D fluorescence microscopy image with a known PSF"
                f" (Siamese invariance losses, Papkov et al. 2023), trained by siamdecon {__version__} on one image."
            ),
            authors=[v0_5.Author(name=a) for a in (authors or ["siamdecon user"])],
            cite=[v0_5.CiteEntry(**PAPER_CITATION)],
            license=license,
            documentation=v0_5.FileDescr(source=doc),
            covers=[v0_5.FileDescr(source=tmp / "cover.png")],
            tags=[
                "deconvolution",
                "fluorescence-light-microscopy",
                "self-supervised",
                f"{nd}d",
                "pytorch",
                "siamdecon",
            ],
            attachments=[
                v0_5.FileDescr(source=tmp / "psf.npy"),
                v0_5.FileDescr(source=tmp / _CONFIG_NAME),
                v0_5.FileDescr(source=saved_model),
            ],
            inputs=[
                v0_5.InputTensorDescr(
                    id=v0_5.TensorId("raw"),
                    description="raw intensities (one channel)",
                    axes=in_axes,
                    test_tensor=v0_5.FileDescr(source=tmp / "test_input.npy"),
                    sample_tensor=v0_5.FileDescr(source=tmp / "sample_input.tif"),
                )
            ],
            outputs=[
                v0_5.OutputTensorDescr(
                    id=v0_5.TensorId("deconvolved"),
                    description="deconvolved image, in the input's intensity units",
                    axes=out_axes,
                    test_tensor=v0_5.FileDescr(source=tmp / "test_output.npy"),
                    sample_tensor=v0_5.FileDescr(source=tmp / "sample_output.tif"),
                )
            ],
            weights=v0_5.WeightsDescr(
                pytorch_state_dict=v0_5.PytorchStateDictWeightsDescr(
                    source=weights,
                    architecture=v0_5.ArchitectureFromFileDescr(
                        source=arch, callable=v0_5.Identifier("SiamdeconNetwork"), kwargs=kwargs
                    ),
                    pytorch_version=v0_5.Version(torch_version),
                    dependencies=v0_5.FileDescr(source=env),
                )
            ),
            config=v0_5.Config(siamdecon={"version": __version__, "preset": cfg.preset, "loss": cfg.loss.label}),
        )
        with atomic_path(out) as part:
            save_package(descr, output_path=part)
    result = BMZExport(out, difference, span)
    if run_test:
        result.test_passed, result.test_details = validate_bmz_package(out)
    return result


def validate_bmz_package(path: str | os.PathLike[str]) -> tuple[bool, list[str]]:
    """Run ``bioimageio.core``'s ``test_model`` on a package; return whether it passed and its failures."""
    try:
        from bioimageio.core import test_model
    except ImportError as exc:
        raise ConfigError("testing a package needs bioimageio.core: pip install 'siamdecon[bmz]'") from exc
    summary = test_model(Path(path), devices=["cpu"])
    failures = []
    for detail in summary.details:
        if detail.status == "failed":
            errors = "; ".join(str(e.msg) for e in detail.errors) or detail.name
            failures.append(f"{detail.name}: {errors}")
    # "valid-format" alone would mean that no inference was tested.
    return summary.status == "passed", failures
