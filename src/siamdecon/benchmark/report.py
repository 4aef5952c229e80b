"""Turn ``results.json`` (and saved outputs) into ``report.md`` and PNG figures."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path
from .runner import DERIVED_METHODS, LR_ITERATIONS, NETWORK_METHODS, load_results

__all__ = ["summarize", "write_report", "PAPER_RESULTS"]

# The paper's own numbers (GPU, full protocol), from PAPER.md.
PAPER_RESULTS = {
    "2d": {
        "input": (17.8, 0.18),
        "lucy-richardson (best)": (22.2, 0.44),
        "blind-spot (SSI)": ("22.0-22.5", 0.46),
        "siamese-deconvolved (Eq. 4)": (22.8, 0.46),
    },
    "3d": {
        "input": (21.2, 0.64),
        "lucy-richardson (best)": (22.4, 0.32),
        "blind-spot (SSI)": (22.6, 0.39),
        "siamese-reconvolved (Eq. 3)": (24.1, 0.39),
    },
}
_METRICS = ("psnr", "ssim", "rmse", "mi", "smi")


def _by_case(entries: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    cases: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for key, entry in entries.items():
        suite, name, method = key.split("/", 2)
        cases[f"{suite}/{name}"][method] = entry
    return cases


def summarize(results: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean metrics per suite and method, with ``lr-best`` chosen per image by PSNR.

    Only images for which a method has finished count towards that method's mean; the number of
    images is reported as ``n``.
    """
    per_suite: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for case, methods in _by_case(results["entries"]).items():
        suite = case.split("/")[0]
        lrs = {m: e for m, e in methods.items() if m.startswith("lr-")}
        for m, e in methods.items():
            per_suite[suite][m].append(e)
        if lrs:
            best = max(lrs.values(), key=lambda e: e["psnr"])
            per_suite[suite]["lr-best"].append(best)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for suite, methods in per_suite.items():
        out[suite] = {}
        for m, rows in methods.items():
            agg: dict[str, float] = {"n": len(rows)}
            for k in (*_METRICS, "train_seconds", "inference_seconds", "check_seconds", "iterations"):
                vals = [r[k] for r in rows if k in r and r[k] is not None]
                if vals:
                    agg[k] = float(np.mean(vals))
            out[suite][m] = agg
    return out


def _order(methods: list[str]) -> list[str]:
    fixed = ["input", *[f"lr-{n}" for n in LR_ITERATIONS], "lr-best", *NETWORK_METHODS, *DERIVED_METHODS]
    return [m for m in fixed if m in methods] + sorted(m for m in methods if m not in fixed)


def _fmt(v: Any, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _mean_table(suite: str, summary: dict[str, dict[str, float]]) -> list[str]:
    cols = ["psnr", "ssim", "rmse"] + (["mi", "smi"] if suite == "2d" else [])
    checked = any("check_seconds" in a for a in summary.values())
    lines = [
        "| method | n | "
        + " | ".join(c.upper() for c in cols)
        + " | train s | infer s |"
        + (" check s |" if checked else ""),
        "|---" * (len(cols) + 4 + checked) + "|",
    ]
    for m in _order(list(summary)):
        a = summary[m]
        label = f"{m} (per-image best iteration, mean {a.get('iterations', 0):.1f})" if m == "lr-best" else m
        lines.append(
            f"| {label} | {a['n']} | "
            + " | ".join(_fmt(a.get(c), 2 if c == "psnr" else 3) for c in cols)
            + f" | {_fmt(a.get('train_seconds'), 1)} | {_fmt(a.get('inference_seconds'), 2)} |"
            + (f" {_fmt(a.get('check_seconds'), 1)} |" if checked else "")
        )
    return lines


def _per_image_table(results: dict[str, Any], suite: str) -> list[str]:
    cases = {k: v for k, v in _by_case(results["entries"]).items() if k.startswith(suite + "/")}
    names = (*NETWORK_METHODS, *DERIVED_METHODS)
    methods = ["input", "lr-best", *[m for m in names if any(m in v for v in cases.values())]]
    lines = ["| image | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for case, entries in cases.items():
        lrs = [e for m, e in entries.items() if m.startswith("lr-")]
        row = dict(entries)
        if lrs:
            row["lr-best"] = max(lrs, key=lambda e: e["psnr"])
        cells = [f"{row[m]['psnr']:.2f} / {row[m]['ssim']:.3f}" if m in row else "-" for m in methods]
        lines.append(f"| {case.split('/', 1)[1]} | " + " | ".join(cells) + " |")
    return lines


def _figures(out: Path, results: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[str] = []
    root = out / "outputs"
    figdir = out / "figures"
    figdir.mkdir(exist_ok=True)
    cases = _by_case(results["entries"])
    if root.exists():
        for suite_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            for case_dir in sorted(p for p in suite_dir.iterdir() if p.is_dir()):
                entries = cases.get(f"{suite_dir.name}/{case_dir.name}", {})
                siamese = [
                    m
                    for m in NETWORK_METHODS
                    if m.startswith("siamese") and m in entries and (case_dir / f"{m}.npy").exists()
                ]
                best_siamese = max(siamese, key=lambda m: entries[m]["psnr"]) if siamese else None
                panels = [
                    ("truth", "truth"),
                    ("input", "input"),
                    ("lr-best", "Lucy-Richardson (best)"),
                    ("blind-spot", "blind-spot"),
                ]
                if best_siamese:
                    panels.append((best_siamese, best_siamese))
                default = entries.get("default", {})
                title = "default"
                if default.get("prior"):
                    title += " (prior + fine-tuning)" if default.get("steps") else " (prior as is)"
                panels.append(("default", title))
                panels = [(f, t) for f, t in panels if (case_dir / f"{f}.npy").exists()]
                if len(panels) < 2:
                    continue
                imgs = [np.load(case_dir / f"{f}.npy") for f, _ in panels]
                titles = []
                for f, t in panels:
                    e = entries.get(f) if f not in ("truth", "lr-best") else None
                    if f == "lr-best":
                        lrs = [v for k, v in entries.items() if k.startswith("lr-")]
                        e = max(lrs, key=lambda v: v["psnr"]) if lrs else None
                    titles.append(f"{t}\n{e['psnr']:.2f} dB / {e['ssim']:.3f}" if e else t)
                name = f"{suite_dir.name}_{case_dir.name}.png"
                if imgs[0].ndim == 2:
                    h, w = imgs[0].shape
                    zh, zw = max(h // 4, 8), max(w // 4, 8)
                    y0, x0 = (h - zh) // 2, (w - zw) // 2
                    fig, axes = plt.subplots(2, len(imgs), figsize=(2.8 * len(imgs), 5.8))
                    for j, (img, title) in enumerate(zip(imgs, titles)):
                        axes[0, j].imshow(np.clip(img, 0, 1), cmap="gray", vmin=0, vmax=1)
                        axes[0, j].add_patch(matplotlib.patches.Rectangle((x0, y0), zw, zh, fill=False, ec="y", lw=1))
                        axes[0, j].set_title(title, fontsize=8)
                        axes[1, j].imshow(
                            np.clip(img[y0 : y0 + zh, x0 : x0 + zw], 0, 1),
                            cmap="gray",
                            vmin=0,
                            vmax=1,
                            interpolation="nearest",
                        )
                        for ax in axes[:, j]:
                            ax.axis("off")
                else:
                    fig, axes = plt.subplots(3, len(imgs), figsize=(2.8 * len(imgs), 7.5))
                    for j, (img, title) in enumerate(zip(imgs, titles)):
                        for i, (axis, label) in enumerate(((0, "xy"), (1, "xz"), (2, "yz"))):
                            mip = np.clip(img, 0, 1).max(axis=axis)
                            axes[i, j].imshow(mip, cmap="magma", vmin=0, vmax=1, aspect="auto")
                            axes[i, j].axis("off")
                            if i == 0:
                                axes[i, j].set_title(title, fontsize=8)
                            if j == 0:
                                axes[i, j].text(2, 2, label, color="w", va="top", fontsize=8)
                fig.tight_layout()
                with atomic_path(figdir / name) as tmp:
                    fig.savefig(tmp, dpi=90, format="png")
                plt.close(fig)
                made.append(f"figures/{name}")
    else:
        # The kept arrays were removed (to keep a report small) after their figures were made.
        made += [f"figures/{f.name}" for f in sorted(figdir.glob("*_*.png")) if f.name != "training_curve.png"]
    # Training curve of one run: the first network entry that kept a history.
    for key, entry in results["entries"].items():
        hist = entry.get("history")
        if hist:
            terms = [k for k in hist[0] if k not in ("step", "lr", "seconds")]
            fig, ax = plt.subplots(figsize=(6, 3.5))
            steps = [h["step"] for h in hist]
            for t in terms:
                ax.plot(steps, [h[t] for h in hist], label=t)
            ax.set_xlabel("step")
            ax.set_ylabel("loss")
            ax.set_yscale("log")
            ax.set_title(key, fontsize=9)
            ax.legend(fontsize=8)
            fig.tight_layout()
            with atomic_path(figdir / "training_curve.png") as tmp:
                fig.savefig(tmp, dpi=90, format="png")
            plt.close(fig)
            made.append("figures/training_curve.png")
            break
    return made


def write_report(out_dir: str | Path, fft_rows: list[dict[str, Any]] | None = None) -> Path:
    """Write ``report.md`` and ``figures/`` for a benchmark folder from its ``results.json``.

    A folder of the microscopy suite gets its own report
    (:func:`siamdecon.benchmark.microscopy_report.write_microscopy_report`).
    """
    out = Path(out_dir)
    results = load_results(out)
    if results.get("settings", {}).get("suite") == "microscopy":
        from .microscopy_report import write_microscopy_report

        return write_microscopy_report(out)
    summary = summarize(results)
    s = results["settings"]
    m = results.get("machine", {})
    lines = [
        "# siamdecon benchmark",
        "",
        f"Preset `{s['preset']}`" + (f", {s['steps']} steps" if s.get("steps") else "") + f", seed {s['seed']};"
        f" 2D crop {s['crop']}; 3D volumes {s['volumes_3d']} of {tuple(s['shape_3d'])}.",
        f"Machine: {m.get('processor')}, {m.get('threads')} threads, torch {m.get('torch')},"
        f" GPU: {m.get('cuda') or 'none'}.",
        "",
        "PSNR and SSIM use data range 1 on outputs clipped to [0, 1]. `lr-best` picks, per image, the"
        " Lucy-Richardson iteration count with the highest PSNR against the ground truth (an oracle choice,"
        " as in the paper).",
        "",
    ]
    if any(e.get("method") == "default-network" for e in results["entries"].values()):
        lines += [
            "`default` is what `siamdecon deconvolve` writes: the network after the held-out check (kept as"
            " is, after one Lucy-Richardson step, or replaced by a classical estimate); `default-network` is"
            " the same network's result before the check.",
            "",
        ]
    for suite in ("2d", "3d"):
        if suite not in summary:
            continue
        lines += [f"## {suite.upper()}: mean over images", "", *_mean_table(suite, summary[suite]), ""]
        lines += [f"### {suite.upper()}: per image (PSNR / SSIM)", "", *_per_image_table(results, suite), ""]
        lines += [
            f"### {suite.upper()}: the paper's numbers (GPU, full protocol)",
            "",
            "| method | PSNR | SSIM |",
            "|---|---|---|",
        ]
        lines += [f"| {k} | {v[0]} | {v[1]} |" for k, v in PAPER_RESULTS[suite].items()]
        lines.append("")
    if fft_rows:
        lines += [
            "## PSF convolution, forward + backward: FFT against direct",
            "",
            "| dims | kernel | image | FFT ms | direct ms | speed-up | auto picks |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in fft_rows:
            lines.append(
                f"| {r['ndim']}D | {r['kernel']} | {r['image']} | {r['fft_ms']:.2f} | {r['direct_ms']:.2f} |"
                f" {r['ratio']:.1f}x | {r['auto']} |"
            )
        lines.append("")
    figs = _figures(out, results)
    if figs:
        lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figs] + [""]
    path = out / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))
    return path
