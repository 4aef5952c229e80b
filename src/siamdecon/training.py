"""The training loop: sample, mask, run both branches, reconvolve, loss, step.

One model per image, as in the paper, trained from scratch or, with ``config.prior``, fine-tuned
from a network pretrained on synthetic images (:mod:`siamdecon.prior`). Both branches (unmasked
and masked) go through the network in one concatenated batch: it halves the number of calls, and
normalization layers then see both kinds of input at once.

With several Hessian weights (``prior.fine_tune_hessian``), one copy of the prior per weight is
fine-tuned side by side on the same batches and masks, all fed the same start estimates (computed
once per step); :class:`siamdecon.model.Deconvolver` keeps the one that predicts held-out pixels best.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import Config, OneCycleSchedule, StepSchedule
from .data import ImageSource, Normalization, PatchSampler, TrainingSource, psf_is_dihedral
from .device import resolve_device
from .losses import LossInputs, compute_losses
from .masking import apply_mask, stratified_mask
from .network import DeconvolutionNetwork, build_network, prefer_channels_last
from .operators import PSFConvolution
from .prior_choice import config_for_psf, resolve_prior
from .runtime import keep_freed_memory

__all__ = ["resolve_device", "build_network", "TrainResult", "train"]


@dataclass
class TrainResult:
    """What training produces."""

    network: DeconvolutionNetwork
    normalization: Normalization
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    prior: str | None = None
    config: Config | None = None
    #: With several Hessian weights (``prior.fine_tune_hessian``): one result per weight, in
    #: order, trained together on the same patches and masks (this result is the first).
    candidates: list[TrainResult] | None = None


def _scheduler(opt: torch.optim.Optimizer, config: Config, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    schedule = config.training.schedule
    if isinstance(schedule, StepSchedule):
        return torch.optim.lr_scheduler.StepLR(opt, step_size=schedule.decay_every, gamma=schedule.decay_factor)
    if isinstance(schedule, OneCycleSchedule):
        total = max(steps, 1)
        warm = max(int(round(schedule.warmup_fraction * total)), 1)

        def factor(step: int) -> float:
            if step < warm:
                return 0.1 + 0.9 * step / warm
            progress = (step - warm) / max(total - warm, 1)
            return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

        return torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def _recalibrate(net: torch.nn.Module, sampler: PatchSampler, device: torch.device, batches: int = 8) -> None:
    """Re-estimate BatchNorm running statistics on unmasked patches.

    During training the normalization layers see masked and unmasked inputs together; at
    inference they see only unmasked ones. Recomputing the statistics on what inference sees
    avoids the global intensity shift reported for masked training schemes.
    """
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    net.train()
    with torch.no_grad():
        for _ in range(batches):
            net(sampler.sample().to(device))
    net.eval()


def train(
    image: np.ndarray | TrainingSource,
    psf: np.ndarray,
    config: Config,
    *,
    progress: bool = True,
    callback: Callable[[int, dict[str, float], torch.nn.Module], Any] | None = None,
    allow_interrupt: bool = True,
    intensity_range: tuple[float, float] | None = None,
) -> TrainResult:
    """Train a network on one image (self-supervised).

    Parameters
    ----------
    image : np.ndarray or TrainingSource
        Raw 2D or 3D image, or a source of normalization and patches (several time points,
        arrays read lazily: :class:`siamdecon.data.TrainingSource`).
    psf : np.ndarray
        Normalized kernel with the image's number of dimensions.
    config : Config
        Validated settings (``config.ndim`` must match the image).
    progress : bool
        Show a progress bar with the loss.
    callback : callable, optional
        Called as ``callback(step, logs, network)`` after every step (the network is in train
        mode; a callback that evaluates it must switch to eval mode and back).
    allow_interrupt : bool
        If true, Ctrl-C stops training early and returns the current weights
        (``result.interrupted`` is set); otherwise the interrupt propagates.
    intensity_range : (float, float), optional
        Range for the boundary losses; default ``config.training.intensity_range``, else
        :func:`siamdecon.data.default_intensity_range`.

    Returns
    -------
    TrainResult
        The trained network (in eval mode), the normalization, the loss history and the name
        of the prior it started from (``None``: from scratch). With several Hessian weights and
        fine-tuning steps to run, ``candidates`` holds one result per weight (this is the first);
        the callback and the progress bar follow the first.

    Raises
    ------
    ConfigError
        If ``config.prior.source`` names a prior made for another PSF or network.
    """
    # Seeding torch's global generator (network initialization) and the thread count asked for
    # must not outlive the call: both are restored when training returns.
    device = resolve_device(config.training.device)
    threads = torch.get_num_threads()
    try:
        if config.training.threads is not None:
            torch.set_num_threads(config.training.threads)
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            return _train(
                image,
                psf,
                config,
                progress=progress,
                callback=callback,
                allow_interrupt=allow_interrupt,
                intensity_range=intensity_range,
            )
    finally:
        torch.set_num_threads(threads)


def _train(
    image: np.ndarray | TrainingSource,
    psf: np.ndarray,
    config: Config,
    *,
    progress: bool,
    callback: Callable[[int, dict[str, float], torch.nn.Module], Any] | None,
    allow_interrupt: bool,
    intensity_range: tuple[float, float] | None,
) -> TrainResult:
    config = config_for_psf(config, psf)
    t = config.training
    source = image if isinstance(image, TrainingSource) else ImageSource(image)
    if source.ndim != config.ndim:
        raise ValueError(f"the image is {source.ndim}D but the config is for {config.ndim}D")
    device = resolve_device(t.device)
    keep_freed_memory(device)
    torch.manual_seed(t.seed)
    gen = torch.Generator().manual_seed(t.seed)
    intensity_range = intensity_range or t.intensity_range
    low, high = intensity_range if intensity_range is not None else (None, None)
    norm = source.normalization(low, high, noise=t.start.kind == "generic")
    augment = t.augment
    if augment and not psf_is_dihedral(psf):
        warnings.warn(
            "the PSF is not symmetric under 90-degree rotations and flips in the xy plane; training"
            " without rotation/flip augmentation so that patches stay consistent with the PSF",
            stacklevel=2,
        )
        augment = False
    net = build_network(config, psf, norm)
    prior = resolve_prior(config.prior.source, psf, config)
    batch_size = t.batch_size
    grid = config.prior.hessian_grid
    if prior is not None:
        net.unet.load_state_dict(prior.state_dict)
        steps, lr = config.prior.fine_tune_steps, config.prior.fine_tune_lr
        batch_size = config.prior.fine_tune_batch_size or batch_size
    else:
        steps, lr = t.steps, t.lr
    if prior is None or not steps:
        # The Hessian weights act on the fine-tuning only: without it there is nothing to choose.
        grid = grid[:1]
    configs = [
        config.model_copy(update={"prior": config.prior.model_copy(update={"fine_tune_hessian": w})}) for w in grid
    ]
    losses = [c.fine_tune_weights() if prior is not None else c.loss_weights() for c in configs]
    sampler = source.sampler(norm, t.patch_size, batch_size, augment, t.seed)
    net = prefer_channels_last(net.to(device), device)
    # Several weights: copies of the network trained side by side on the same batches, which share
    # the start's estimates (most of a fine-tuning step's time with the generic start).
    nets = [net] + [copy.deepcopy(net) for _ in grid[1:]]
    # Share the start estimate's operator (and its cached PSF transforms) when there is one.
    op = net.op if net.op is not None else PSFConvolution(psf).to(device)
    need_masked = losses[0].needs_masked_branch
    need_plain = losses[0].needs_unmasked_branch
    opts = [torch.optim.Adam(n.parameters(), lr=lr) for n in nets]
    scheds = [_scheduler(o, config, steps) for o in opts]
    histories: list[list[dict[str, float]]] = [[] for _ in nets]
    interrupted = False
    start_time = time.perf_counter()
    desc = "fine-tuning" if prior else "training"
    if len(nets) > 1:
        desc += f" ({len(nets)} Hessian weights)"
    bar = tqdm(total=steps, desc=desc, disable=not progress, dynamic_ncols=True)
    for n in nets:
        n.train()
    border = t.loss_border
    try:
        for step in range(steps):
            x = sampler.sample().to(device)
            target = x
            mask = stratified_mask(tuple(target.shape), config.mask.fraction, gen, device)
            branches = []
            if need_plain:
                branches.append(x)
            if need_masked:
                branches.append(apply_mask(x, mask, config.mask.noise_std, gen))
            inputs = net.unet_inputs(torch.cat(branches) if len(branches) > 1 else branches[0])
            for n, opt, sched, weights, history in zip(nets, opts, scheds, losses, histories, strict=True):
                out = n.unet(inputs)
                both = op(out)
                if need_plain and need_masked:
                    d, d_masked = out.chunk(2)
                    y, y_masked = both.chunk(2)
                else:
                    d = d_masked = out
                    y = y_masked = both
                terms = compute_losses(
                    LossInputs(target, d, d_masked, y, y_masked, mask, norm.mean, norm.std, norm.low, norm.high),
                    weights,
                    border=min(border, (min(target.shape[2:]) - 1) // 2),
                )
                opt.zero_grad(set_to_none=True)
                terms["total"].backward()
                opt.step()
                sched.step()
                logs = {k: float(v.detach()) for k, v in terms.items()}
                logs["step"] = step + 1
                logs["lr"] = opt.param_groups[0]["lr"]
                logs["seconds"] = time.perf_counter() - start_time
                history.append(logs)
                if not math.isfinite(logs["total"]):
                    raise FloatingPointError(
                        f"the loss became {logs['total']} at step {step + 1}; lower the learning rate"
                    )
            logs = histories[0][-1]
            bar.update(1)
            bar.set_postfix(loss=f"{logs['total']:.4f}", refresh=False)
            if callback is not None:
                callback(step + 1, logs, net)
    except KeyboardInterrupt:
        if not allow_interrupt:
            raise
        interrupted = True
    finally:
        bar.close()
    seconds = time.perf_counter() - start_time
    results = []
    for n, c, history in zip(nets, configs, histories, strict=True):
        if config.network.norm == "batch" and t.recalibrate_norm:
            _recalibrate(n, sampler, device)
        n.eval()
        results.append(TrainResult(n, norm, history, seconds, interrupted, prior.name if prior else None, c))
    if len(results) > 1:
        results[0].candidates = results
    return results[0]
