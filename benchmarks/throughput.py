"""Training-step FLOP/s against this machine's matmul peak (issue #4, target 3).

    python benchmarks/throughput.py [--ndim 2] [--steps 12] [--step siamese|fine-tune|pretrain]
                                    [--malloc reuse|system]

Counts the FLOPs of one training step of the `fast` preset with torch.utils.flop_counter (the FFT
convolution is not counted, it is a small share), times the steps, and compares with a large fp32
matmul on the same threads: rounds of a few steps and one matmul alternate, and the fastest of each
is kept, so that both see the same load on a shared machine. Prints JSON.

Steps: `siamese` is training from scratch (both branches of the preset's loss), `fine-tune` the
blind-spot fine-tuning from a prior (one masked branch), `pretrain` a supervised pretraining step
(batch 16 in 2D, no mask, no PSF). `--malloc system` leaves glibc's allocator as it is instead of
keeping freed memory as training does (siamdecon.runtime.keep_freed_memory); the page faults per
step are reported either way.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from siamdecon import make_config
from siamdecon.data import standardize
from siamdecon.losses import LossInputs, compute_losses, loss_preset
from siamdecon.masking import apply_mask, stratified_mask
from siamdecon.network import prefer_channels_last
from siamdecon.operators import PSFConvolution
from siamdecon.psf import generate_psf
from siamdecon.runtime import allow_keep_freed_memory, keep_freed_memory
from siamdecon.training import build_network


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ndim", type=int, default=2)
    ap.add_argument("--steps", type=int, default=12, help="timed steps, in rounds of 4")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--step", choices=("siamese", "fine-tune", "pretrain"), default="siamese")
    ap.add_argument("--width", type=int, help="override the network width")
    ap.add_argument("--batch-size", type=int, help="override the batch size")
    ap.add_argument(
        "--contiguous", action="store_true", help="keep the default layout instead of training's channels-last"
    )
    ap.add_argument("--malloc", choices=("reuse", "system"), default="reuse")
    args = ap.parse_args()
    if args.malloc == "reuse":
        allow_keep_freed_memory()  # as the CLI does: the library alone leaves malloc as it is
    malloc_tuned = keep_freed_memory() if args.malloc == "reuse" else False
    cfg = make_config(
        args.preset, args.ndim, width=args.width, training={"batch_size": args.batch_size} if args.batch_size else None
    )
    psf = generate_psf(ndim=args.ndim)
    img = np.random.default_rng(0).random((64,) * args.ndim if args.ndim == 3 else (256, 256)).astype(np.float32)
    _, norm = standardize(img)
    net = build_network(cfg, psf, norm)
    if not args.contiguous:
        net = prefer_channels_last(net, torch.device("cpu"))  # as training does on the CPU
    op = PSFConvolution(psf)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    t = cfg.training
    batch = t.batch_size
    if args.step == "pretrain":
        from siamdecon.prior import default_pretrain_config

        batch = default_pretrain_config(args.ndim).batch_size
    elif args.step == "fine-tune":
        batch = cfg.prior.fine_tune_batch_size or batch
    if args.batch_size:
        batch = args.batch_size
    shape = (batch, 1) + (min(t.patch_size, 64 if args.ndim == 3 else 256),) * args.ndim
    weights = cfg.loss_weights() if args.step == "siamese" else loss_preset(cfg.prior.fine_tune_loss)

    def step() -> None:
        x = torch.randn(shape)
        if args.step == "pretrain":
            loss = ((net(x) - torch.randn(shape)) ** 2).mean()
        elif args.step == "fine-tune":
            mask = stratified_mask(shape, cfg.mask.fraction)
            dj = net(apply_mask(x, mask))
            yj = op(dj)
            loss = compute_losses(LossInputs(x, dj, dj, yj, yj, mask), weights)["total"]
        else:
            mask = stratified_mask(shape, cfg.mask.fraction)
            out = net(torch.cat([x, apply_mask(x, mask)]))
            y = op(out)
            d, dj = out.chunk(2)
            yy, yj = y.chunk(2)
            loss = compute_losses(LossInputs(x, d, dj, yy, yj, mask), weights)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    step()
    n = 4096
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    per_step = matmul_s = float("inf")
    faults = 0
    rounds = max(1, args.steps // 4)
    for _ in range(rounds):
        f0, t0 = _minor_faults(), time.perf_counter()
        for _ in range(4):
            step()
        per_step = min(per_step, (time.perf_counter() - t0) / 4)
        faults += _minor_faults() - f0
        t0 = time.perf_counter()
        a @ b
        matmul_s = min(matmul_s, time.perf_counter() - t0)
    peak = 2 * n**3 / matmul_s
    print(
        json.dumps(
            {
                "preset": args.preset,
                "step": args.step,
                "width": cfg.network.width,
                "channels_last": not args.contiguous,
                "ndim": args.ndim,
                "batch_shape": list(shape),
                "threads": torch.get_num_threads(),
                "malloc_keeps_freed_memory": malloc_tuned,
                "page_faults_per_step": faults / (4 * rounds),
                "gflop_per_step": flops / 1e9,
                "seconds_per_step": per_step,
                "achieved_gflops": flops / per_step / 1e9,
                "matmul_peak_gflops": peak / 1e9,
                "fraction_of_peak": flops / per_step / peak,
            }
        )
    )


if __name__ == "__main__":
    main()
