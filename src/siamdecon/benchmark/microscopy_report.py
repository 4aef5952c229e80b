"""``report.md`` and figures of the microscopy suite, from its ``results.json`` and kept outputs."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path
from .microscopy import GROUPS, MICROSCOPY_METHODS, NOISES, PEERS, PSFS
from .store import load_results

__all__ = ["summarize_microscopy", "write_microscopy_report"]


def _cases(entries: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """``case key -> method -> entry`` for the entries that were scored (not skipped)."""
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for key, entry in entries.items():
        if "psnr" in entry:
            case, method = key.rsplit("/", 1)
            out[case][method] = entry
    return out


def _best_peer(methods: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    peers = [(m, methods[m]) for m in PEERS if m in methods]
    return max(peers, key=lambda p: p[1]["psnr"]) if peers else None


def summarize_microscopy(results: dict[str, Any]) -> dict[str, Any]:
    """Means per group and method, the best peer per case, and the default's losses.

    Returns
    -------
    dict
        ``groups``: group -> method -> ``{"n", "psnr", "ssim", "seconds"}`` (``best-peer`` is the
        better of the oracle-tuned Lucy-Richardson and Spitfire of each case); ``cases``: case ->
        ``{"best_peer", "default_minus_best_peer", "default_minus_input"}``; ``losses``: group ->
        ``{"n", "below_best_peer", "below_input"}`` counted over the cases that have both entries.
    """
    cases = _cases(results["entries"])
    rows: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    per_case: dict[str, dict[str, Any]] = {}
    losses: dict[str, dict[str, int]] = defaultdict(lambda: {"n": 0, "below_best_peer": 0, "below_input": 0})
    for case, methods in cases.items():
        group = case.split("/")[0]
        for m, e in methods.items():
            rows[group][m].append(e)
        peer = _best_peer(methods)
        info: dict[str, Any] = {}
        if peer is not None:
            rows[group]["best-peer"].append(peer[1])
            info["best_peer"] = peer[0]
            if "default" in methods:
                diff = methods["default"]["psnr"] - peer[1]["psnr"]
                info["default_minus_best_peer"] = diff
                losses[group]["n"] += 1
                losses[group]["below_best_peer"] += int(diff < 0)
        if "default" in methods and "input" in methods:
            diff_in = methods["default"]["psnr"] - methods["input"]["psnr"]
            info["default_minus_input"] = diff_in
            losses[group]["below_input"] += int(diff_in < 0)
        per_case[case] = info
    groups = {
        g: {
            m: {
                "n": len(es),
                "psnr": float(np.mean([e["psnr"] for e in es])),
                "ssim": float(np.mean([e["ssim"] for e in es])),
                "seconds": float(np.mean([e.get("seconds", 0.0) for e in es])),
            }
            for m, es in methods.items()
        }
        for g, methods in rows.items()
    }
    return {"groups": groups, "cases": per_case, "losses": dict(losses)}


def _order(methods: set[str]) -> list[str]:
    fixed = [*MICROSCOPY_METHODS, "best-peer"]
    return [m for m in fixed if m in methods]


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _group_order(names: set[str]) -> list[str]:
    known = [g.name for g in GROUPS]
    return [g for g in known if g in names] + sorted(n for n in names if n not in known)


def _panel_range(truth: np.ndarray) -> float:
    # One display range for every panel of a figure, set by the truth's bright structures (a few
    # saturated pixels rather than a dim image when the truth has isolated bright spots).
    return max(float(np.percentile(truth, 99.8)), 1e-3)


def _zoom_window(truth: np.ndarray) -> tuple[slice, slice]:
    """A square a quarter of the image's side, where the truth has the most structure."""
    from scipy import ndimage

    h, w = truth.shape
    side = max(min(h, w) // 4, 8)
    local = ndimage.uniform_filter(truth, side) ** 2
    var = ndimage.uniform_filter(truth**2, side) - local
    half = side // 2
    var[:half, :] = var[-half:, :] = var[:, :half] = var[:, -half:] = -np.inf
    y, x = np.unravel_index(int(np.argmax(var)), var.shape)
    y0, x0 = min(max(y - half, 0), h - side), min(max(x - half, 0), w - side)
    return slice(y0, y0 + side), slice(x0, x0 + side)


def _figure(out: Path, group: str, case: str, methods: dict[str, dict[str, Any]]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = out / "outputs" / Path(*case.split("/"))
    truth_path = folder / "truth.npy"
    if not truth_path.exists():
        return None
    truth = np.load(truth_path)
    peer = _best_peer(methods)
    panels: list[tuple[str, str]] = [("truth", "ground truth"), ("input", "input")]
    if peer is not None:
        panels.append((peer[0], f"best peer: {peer[0]}"))
    panels += [("default", "siamdecon default"), ("scratch", "siamdecon --prior none")]
    shown = [(f, t) for f, t in panels if (folder / f"{f}.npy").exists()]
    if len(shown) < 2:
        return None
    vmax = _panel_range(truth)
    images = [np.load(folder / f"{f}.npy") for f, _ in shown]
    titles = []
    for f, t in shown:
        e = methods.get(f)
        titles.append(f"{t}\n{e['psnr']:.2f} dB / {e['ssim']:.3f}" if e else t)
    if truth.ndim == 2:
        win = _zoom_window(truth)
        fig, axes = plt.subplots(1, len(images), figsize=(2.9 * len(images), 3.4))
        for ax, img, title in zip(np.atleast_1d(axes), images, titles, strict=True):
            ax.imshow(np.clip(img, 0, 1), cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
            ax.add_patch(
                matplotlib.patches.Rectangle(
                    (win[1].start, win[0].start),
                    win[1].stop - win[1].start,
                    win[0].stop - win[0].start,
                    fill=False,
                    ec="y",
                    lw=0.8,
                )
            )
            inset = ax.inset_axes((0.6, 0.0, 0.4, 0.4))
            inset.imshow(np.clip(img[win], 0, 1), cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
            inset.set_xticks([])
            inset.set_yticks([])
            for spine in inset.spines.values():
                spine.set_edgecolor("y")
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    else:
        fig, axes = plt.subplots(2, len(images), figsize=(2.9 * len(images), 4.6), height_ratios=(3, 1.4))
        for j, (img, title) in enumerate(zip(images, titles, strict=True)):
            clipped = np.clip(img, 0, 1)
            axes[0, j].imshow(clipped.max(axis=0), cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
            axes[1, j].imshow(
                clipped.max(axis=1), cmap="magma", vmin=0, vmax=vmax, aspect="auto", interpolation="nearest"
            )
            axes[0, j].set_title(title, fontsize=8)
            for ax in axes[:, j]:
                ax.axis("off")
        axes[0, 0].text(2, 2, "xy max", color="w", va="top", fontsize=7)
        axes[1, 0].text(2, 2, "xz max", color="w", va="top", fontsize=7)
    fig.suptitle(f"{case}: display range [0, {vmax:.2f}] of the truth's scale for every panel", fontsize=8)
    fig.tight_layout()
    figdir = out / "figures"
    figdir.mkdir(exist_ok=True)
    name = f"{group}.png"
    with atomic_path(figdir / name) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return f"figures/{name}"


def write_microscopy_report(out_dir: str | Path) -> Path:
    """Write ``report.md`` and ``figures/`` of a microscopy benchmark folder."""
    out = Path(out_dir)
    results = load_results(out)
    summary = summarize_microscopy(results)
    cases = _cases(results["entries"])
    skipped = {k: e["skipped"] for k, e in results["entries"].items() if "skipped" in e}
    s = results["settings"]
    machine = results.get("machine", {})
    lines = [
        "# siamdecon benchmark: microscopy suite",
        "",
        f"{'Quick' if s.get('quick') else 'Full'} suite (version {s.get('version')}), seed {s.get('seed')}."
        f" Machine: {machine.get('processor')}, {machine.get('threads')} threads, torch {machine.get('torch')},"
        f" GPU: {machine.get('cuda') or 'none'}.",
        "",
        "Every method gets the recorded data (camera counts as a uint16 file holds them, or the paper's"
        " [0, 1] values) and the PSF; every estimate is mapped to the truth's scale the same way"
        " ((estimate - offset) / (gain x photons)), clipped to [0, 1] and scored with PSNR and SSIM"
        " (data range 1). `lucy-richardson-best` (offset subtracted and negative counts clipped, best of"
        f" 1-{s.get('lr_iterations')} iterations) and `spitfire-best` (best `reg` of"
        f" {s.get('spitfire_regs')}) are oracles: they pick their parameter with the ground truth, their"
        " best case. `best-peer` is the better of the two per case. `lr-extended-best` is siamdecon's own"
        ' Lucy-Richardson with the object estimated beyond the image border (`boundary="extend"`), with the'
        " same oracle: not a peer, it shows what the boundary alone is worth. `default` is `siamdecon deconvolve` with"
        " no option; `scratch` adds `--prior none`. The structures come from"
        " `siamdecon.benchmark.structures`, code and parameters separate from the priors' training data"
        " (`siamdecon.simulate`, `siamdecon.prior`).",
        "",
    ]
    if s.get("steps") is not None:
        lines += [
            f"**siamdecon's methods ran {s['steps']} training steps instead of the preset's: a smoke test, so"
            " `default` here is not what `siamdecon deconvolve` does.**",
            "",
        ]
    if s.get("shapes"):
        lines += [f"Shapes: {s['shapes']} instead of the suite's.", ""]
    lines += [
        "## Mean PSNR / SSIM per group",
        "",
    ]
    groups = summary["groups"]
    all_methods = set().union(*[set(v) for v in groups.values()]) if groups else set()
    methods = _order(all_methods)
    lines += [
        "| group | cases | " + " | ".join(methods) + " | default below best peer | default below input |",
        "|---" * (len(methods) + 4) + "|",
    ]
    for g in _group_order(set(groups)):
        stats = groups[g]
        loss = summary["losses"].get(g, {"n": 0, "below_best_peer": 0, "below_input": 0})
        n = max(v["n"] for v in stats.values())
        cells = [f"{stats[m]['psnr']:.2f} / {stats[m]['ssim']:.3f}" if m in stats else "-" for m in methods]
        lines.append(
            f"| {g} | {n} | "
            + " | ".join(cells)
            + f" | {loss['below_best_peer']} of {loss['n']} | {loss['below_input']} |"
        )
    for dims in ("2d", "3d"):
        diffs = [
            v["default_minus_best_peer"]
            for c, v in summary["cases"].items()
            if c.startswith(dims) and "default_minus_best_peer" in v
        ]
        if diffs:
            lines += [
                "",
                f"{dims.upper()}: default minus best peer, mean {np.mean(diffs):+.2f} dB over {len(diffs)} cases"
                f" (min {min(diffs):+.2f}, max {max(diffs):+.2f}); below the best peer on"
                f" {sum(d < 0 for d in diffs)}.",
            ]
    lines += ["", "## Seconds per case (mean per group)", ""]
    timed = [m for m in methods if m not in ("input", "best-peer")]
    lines += ["| group | " + " | ".join(timed) + " |", "|---" * (len(timed) + 1) + "|"]
    for g in _group_order(set(groups)):
        stats = groups[g]
        lines.append(f"| {g} | " + " | ".join(_fmt(stats.get(m, {}).get("seconds"), 1) for m in timed) + " |")
    lines += [
        "",
        "## Per case (PSNR / SSIM; what the oracles chose)",
        "",
    ]
    case_methods = [m for m in methods if m != "best-peer"]
    lines += [
        "| case | " + " | ".join(case_methods) + " | default - best peer |",
        "|---" * (len(case_methods) + 2) + "|",
    ]
    rank = {g.name: i for i, g in enumerate(GROUPS)}
    for case in sorted(cases, key=lambda c: (rank.get(c.split("/")[0], len(rank)), c)):
        row = cases[case]
        cells = []
        for m in case_methods:
            e = row.get(m)
            if e is None:
                cells.append("-")
                continue
            extra = ""
            if m == "lucy-richardson-best":
                extra = f" ({e.get('iterations')} it.)"
            elif m == "spitfire-best":
                extra = f" (reg {e.get('reg')})"
            cells.append(f"{e['psnr']:.2f} / {e['ssim']:.3f}{extra}")
        diff = summary["cases"].get(case, {}).get("default_minus_best_peer")
        lines.append(f"| {case} | " + " | ".join(cells) + f" | {_fmt(diff)} |")
    lines += ["", "## Conditions", "", "| group | PSF | noise | structures |", "|---|---|---|---|"]
    for g in GROUPS:
        if g.name in groups:
            cam = NOISES[g.noise]
            noise = (
                "paper protocol (Poisson-Gaussian, salt-and-pepper in 2D, 10 bits)"
                if cam is None
                else f"camera: {cam.photons:g} photons at truth 1, gain {cam.gain:g}, read noise {cam.read_noise:g} e-,"
                f" offset {cam.offset:g}, uint16"
            )
            lines.append(f"| {g.name} | {PSFS[g.psf].about} | {noise} | {', '.join(g.structures)} |")
    measured = {
        c: e["case_info"]["measured_psf"]
        for c, ms in cases.items()
        for e in ms.values()
        if "measured_psf" in e.get("case_info", {})
    }
    if measured:
        lines += ["", "PSFs estimated from simulated bead images (the measured groups):", ""]
        for c, info in sorted(measured.items()):
            err = info.get("max_error_of_peak")
            lines.append(
                f"- {c}: {info.get('beads_used')} of {info.get('beads_found')} beads used, largest difference from the"
                f" true PSF {_fmt(100 * err if err is not None else None, 1)} % of its peak"
            )
    if skipped:
        lines += ["", "Skipped entries:", ""] + [f"- {k}: {v}" for k, v in sorted(skipped.items())]
    figs = []
    for g in _group_order(set(groups)):
        first = next(
            (c for c in sorted(cases) if c.split("/")[0] == g and (out / "outputs" / Path(*c.split("/"))).exists()),
            None,
        )
        if first is not None:
            made = _figure(out, g, first, cases[first])
            if made:
                figs.append(made)
    if figs:
        lines += ["", "## Figures (one case per group)", ""] + [f"![{f}]({f})" for f in figs]
    path = out / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path
