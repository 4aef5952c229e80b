"""3D quality per CPU-minute on a filament phantom (issue #4, target 2).

    python benchmarks/quality_3d.py [--shape 64,256,256] [--steps 600] [--every 100] [--loss ...]
                                    [--prior auto|none|FILE] [--fine-tune-loss ...] [--tta]

Builds the benchmark's 3D case (filament phantom, paper 3D PSF, paper noise, no salt-and-pepper),
reports the input and the best Lucy-Richardson (1, 2, 3, 5, 10, 20 iterations), then trains the
`fast` 3D preset and evaluates the whole-volume prediction every `--every` steps. Evaluation time is
subtracted from the training clock; the final row also gives the wall time of fit + predict, which
is what a user waits for. With a prior, `--steps` counts fine-tuning steps and the curve starts at
step 0 (the prior alone). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time

from siamdecon import Deconvolver, evaluate, make_config, richardson_lucy_series
from siamdecon.benchmark import suite_3d
from siamdecon.data import standardize


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="64,256,256")
    ap.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--loss", help="loss preset (default: the 3D default)")
    ap.add_argument("--n-filaments", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prior", help="auto, none or a prior file (default: the preset's)")
    ap.add_argument("--tta", action="store_true", help="average predictions over the 8 rotations/flips in xy")
    ap.add_argument("--fine-tune-loss", help="loss of the fine-tuning from a prior (default: the preset's)")
    args = ap.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    case = next(suite_3d(shape, n_filaments=args.n_filaments, seed=args.seed))
    report: dict = {"shape": list(shape), "input": evaluate(case.noisy, case.clean)}
    t = time.perf_counter()
    series = richardson_lucy_series(case.noisy, case.psf, (1, 2, 3, 5, 10, 20))
    lr = {n: evaluate(v, case.clean) for n, v in series.items()}
    best = max(lr, key=lambda n: lr[n]["psnr"])
    report["lucy_richardson"] = {"best_iterations": best, **lr[best], "seconds_all_six": time.perf_counter() - t}
    print(json.dumps(report), flush=True)

    prior = {k: v for k, v in {"source": args.prior, "fine_tune_loss": args.fine_tune_loss}.items() if v}
    if args.steps is not None:
        prior["fine_tune_steps"] = args.steps
    cfg = make_config(
        "fast",
        3,
        loss=args.loss,
        training={"steps": args.steps} if args.steps else None,
        prior=prior or None,
        tta=True if args.tta else None,
    )
    from siamdecon.prior_choice import resolve_prior

    if resolve_prior(cfg.prior.source, case.psf, cfg) is not None:
        t0 = time.perf_counter()
        zero = cfg.model_copy(update={"prior": cfg.prior.model_copy(update={"fine_tune_steps": 0})})
        start = Deconvolver.fit(case.noisy, case.psf, zero, progress=False)
        m = evaluate(start.predict(case.noisy), case.clean)
        report["prior_only"] = {
            "prior": start.prior,
            "tta": cfg.inference.tta,
            **m,
            "fit_predict_seconds": time.perf_counter() - t0,
        }
        print(json.dumps(report["prior_only"]), flush=True)
    norm = standardize(case.noisy)[1]
    curve: list[dict] = []
    paused = [0.0]

    def checkpoint(step: int, logs: dict, net) -> None:
        if step % args.every:
            return
        t0 = time.perf_counter()
        net.eval()
        est = Deconvolver(net, cfg, case.psf, norm).predict(case.noisy)
        net.train()
        m = evaluate(est, case.clean)
        curve.append({"step": step, "train_seconds": logs["seconds"] - paused[0], "psnr": m["psnr"], "ssim": m["ssim"]})
        print(json.dumps(curve[-1]), flush=True)
        paused[0] += time.perf_counter() - t0

    t = time.perf_counter()
    model = Deconvolver.fit(case.noisy, case.psf, cfg, progress=False, callback=checkpoint)
    t_pred = time.perf_counter()
    out = model.predict(case.noisy)
    predict_seconds = time.perf_counter() - t_pred
    final = evaluate(out, case.clean)
    report.update(
        {
            "prior": model.prior,
            "loss": cfg.prior.fine_tune_loss if model.prior else cfg.loss.label,
            "steps": len(model.history),
            "curve": curve,
            "final": final,
            "gain_over_best_lr_db": final["psnr"] - lr[best]["psnr"],
            "train_seconds": model.train_seconds,
            "predict_seconds": predict_seconds,
            "wall_seconds_fit_predict": time.perf_counter() - t - paused[0],
        }
    )
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
