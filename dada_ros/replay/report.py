"""Report of a replay: PNG figures, ``report.md`` and the one-screen console summary.

Figures (matplotlib, Agg backend, written next to report.md):

* ``frame_<i>.png``: for a few frames, RGB | input depth | ground truth, then per method its
  output and its absolute error map (same colour scales across methods);
* ``error_over_time.png``: per-frame MSE of every method and per-frame time per method;
* ``warm_start.png``: the DADA warm-start modes side by side (cold / naive / flow): per-frame MSE
  and iterations, with the frames where a warm method had to start cold marked;
* ``summary.png``: mean MSE and mean time per frame per method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FIG_DPI = 90


@dataclass
class Snapshot:
    """One frame kept for the figures: inputs, ground truth and every method's output (metres)."""

    index: int
    stamp: float
    rgb: np.ndarray
    source: np.ndarray
    gt: np.ndarray | None
    outputs: dict[str, np.ndarray]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt(v: Any, nd: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        if v != 0 and abs(v) < 10 ** -nd:
            return f"{v:.1e}"
        return f"{v:.{nd}f}"
    return str(v)


def ordinal(n: int) -> str:
    """2 -> '2nd', 8 -> '8th'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _series(frames: list[dict], key: str, field: str) -> tuple[np.ndarray, np.ndarray]:
    """(frame indices, values) of ``field`` for method ``key`` over the frames that have it."""
    xs, ys = [], []
    for f in frames:
        rec = f["methods"].get(key, {})
        v = rec.get(field)
        if v is not None and isinstance(v, (int, float)) and math.isfinite(v):
            xs.append(f["index"])
            ys.append(v)
    return np.asarray(xs), np.asarray(ys, dtype=float)


def _style(key: str, meta: dict) -> dict:
    """Line style per method: DADA modes by colour family, baselines grey-ish, subsets as markers."""
    mode = meta.get("mode")
    colours = {"flow": "tab:green", "naive": "tab:orange", "cold": "tab:blue"}
    base_colours = {"bicubic": "0.45", "nearest": "0.7", "jbf": "tab:purple", "guided": "tab:brown", "fgs": "tab:pink"}
    colour = colours.get(mode) if mode else base_colours.get(key)
    if mode == "cold" and meta.get("iterations"):
        colour = "tab:cyan"  # cold with a fixed budget, next to the equilibrium cold
    style: dict[str, Any] = {"label": key, "lw": 1.4}
    if colour:
        style["color"] = colour
    if meta.get("base") == "dada":
        style["ls"] = "--"
    if meta.get("every", 1) > 1:
        style.update(marker="o", ms=5, ls=":")
    return style


def _cold_restarts(frames: list[dict], key: str) -> list[int]:
    """Frames where a warm method started cold for a reason other than "first frame"."""
    out = []
    for f in frames:
        rec = f["methods"].get(key, {})
        if rec.get("init_mode") == "cold" and rec.get("cold_reason") not in (None, "", "no previous frame"):
            out.append(f["index"])
    return out


def _per_frame_figure(frames: list[dict], meta: dict, keys: list[str],
                      lower: tuple[str, str]) -> tuple[Any, Any, bool]:
    """A column of per-frame panels of methods ``keys`` over a shared frame axis, log y: MSE on
    top when any of them was scored, then ``lower`` = (field, label); the legend on the top
    panel. -> (fig, axes, have_mse)."""
    plt = _plt()
    have_mse = any(_series(frames, k, "mse_cm2")[0].size for k in keys)
    fig, axes = plt.subplots(2 if have_mse else 1, 1, figsize=(11.5, 6.5 if have_mse else 3.5), sharex=True,
                             squeeze=False)
    axes = axes[:, 0]
    panels = [("mse_cm2", "MSE per frame (cm$^2$)")] if have_mse else []
    panels.append(lower)
    for ax, (field, label) in zip(axes, panels):
        for k in keys:
            x, y = _series(frames, k, field)
            if x.size:
                ax.plot(x, y, **_style(k, meta.get(k, {})))
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[-1].set_xlabel("frame")
    axes[0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig, axes, have_mse


def _save(fig: Any, path: Path, crop: bool = False) -> Path:
    """Write ``fig`` to ``path`` and free it: laid out tight, or (``crop``) cropped to what it draws."""
    if crop:
        fig.savefig(path, dpi=FIG_DPI, bbox_inches="tight")
    else:
        fig.tight_layout()
        fig.savefig(path, dpi=FIG_DPI)
    _plt().close(fig)
    return path


def figure_over_time(path: Path, metrics: dict) -> Path | None:
    """Per-frame MSE (when scored) and time per frame of every method."""
    frames, meta = metrics["frames"], metrics.get("methods", {})
    fig, axes, have_mse = _per_frame_figure(frames, meta, list(metrics["summary"]), ("ms", "time per frame (ms)"))
    if have_mse:
        axes[0].set_title("Error against ground truth, every frame")
    return _save(fig, path)


def figure_warm_start(path: Path, metrics: dict) -> Path | None:
    """MSE and iterations per frame of the DADA methods (cold / naive / flow side by side)."""
    frames, meta = metrics["frames"], metrics.get("methods", {})
    keys = [k for k in metrics["summary"] if meta.get(k, {}).get("mode")]
    if not keys:
        return None
    fig, axes, _ = _per_frame_figure(frames, meta, keys, ("iterations", "iterations per frame"))
    restarts = sorted({i for k in keys if meta.get(k, {}).get("mode") in ("flow", "naive")
                       for i in _cold_restarts(frames, k)})
    for ax in axes:
        for i in restarts:
            ax.axvline(i, color="0.3", ls="--", lw=0.8, alpha=0.6)
    axes[0].set_title("Warm start: cold / naive / flow (dashed: a warm method fell back to a cold start)", fontsize=10)
    return _save(fig, path)


def figure_summary(path: Path, metrics: dict) -> Path | None:
    summary, meta = metrics["summary"], metrics.get("methods", {})
    keys = [k for k, s in summary.items() if s.get("frames_out")]
    if not keys:
        return None
    plt = _plt()
    have_mse = any(summary[k].get("mse_cm2") is not None for k in keys)
    fig, axes = plt.subplots(1, 2 if have_mse else 1, figsize=(11 if have_mse else 6, 0.45 * len(keys) + 1.6),
                             squeeze=False)
    axes = axes[0]
    panels = [("mse_cm2", "mean MSE (cm$^2$)")] if have_mse else []
    panels.append(("mean_ms", "mean time per frame (ms)"))
    for ax, (field, label) in zip(axes, panels):
        vals = [summary[k].get(field) or 0.0 for k in keys]
        colours = [_style(k, meta.get(k, {})).get("color", "tab:gray") for k in keys]
        ax.barh(range(len(keys)), vals, color=colours)
        names = [f"{k}\n({summary[k]['frames_out']} frames)" if meta.get(k, {}).get("every", 1) > 1 else k
                 for k in keys]
        ax.set_yticks(range(len(keys)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(label)
        if field == "mean_ms" and min(v for v in vals if v > 0) * 30 < max(vals):
            ax.set_xscale("log")
            ax.set_xlabel(label + ", log scale")
        for i, v in enumerate(vals):
            ax.text(v, i, f" {v:.3g}", va="center", fontsize=8)
        ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path)


def _depth_range(*arrays: np.ndarray | None) -> tuple[float, float]:
    vals = np.concatenate([a[np.isfinite(a) & (a > 0)].ravel() for a in arrays if a is not None] or [np.ones(1)])
    if vals.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(vals, [1, 99])
    return float(lo), float(max(hi, lo + 1e-3))


def figure_frame(path: Path, snap: Snapshot, metrics: dict) -> Path:
    """RGB | input | ground truth, then output | |error| for each method (2 methods per row)."""
    plt = _plt()
    import cv2

    keys = [k for k in metrics["summary"] if k in snap.outputs]
    per_row = 2
    rows = 1 + math.ceil(len(keys) / per_row)
    fig, axes = plt.subplots(rows, 2 * per_row, figsize=(4 * per_row * 2 * 0.85, 2.55 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    vmin, vmax = _depth_range(snap.gt, snap.source)
    H, W = snap.rgb.shape[:2]
    up = cv2.resize(np.nan_to_num(snap.source, nan=0.0), (W, H), interpolation=cv2.INTER_NEAREST)
    up = np.where(up > 0, up, np.nan)
    axes[0, 0].imshow(snap.rgb)
    axes[0, 0].set_title(f"RGB guide, frame {snap.index}", fontsize=9)
    im = axes[0, 1].imshow(up, cmap="turbo", vmin=vmin, vmax=vmax, interpolation="nearest")
    sh = snap.source.shape
    axes[0, 1].set_title(f"input depth {sh[1]}x{sh[0]} (x{W / sh[1]:.3g})", fontsize=9)
    if snap.gt is not None:
        axes[0, 2].imshow(snap.gt, cmap="turbo", vmin=vmin, vmax=vmax)
        axes[0, 2].set_title("ground truth", fontsize=9)
    fig.colorbar(im, ax=axes[0, 3], fraction=0.5, label="depth (m)", location="left")
    errs = {k: np.abs(snap.outputs[k] - snap.gt) * 100.0 for k in keys} if snap.gt is not None else {}
    emax = 10.0
    if errs:
        pooled = np.concatenate([e[np.isfinite(e)] for e in errs.values()] or [np.zeros(1)])
        emax = float(max(np.percentile(pooled, 99), 1.0)) if pooled.size else 10.0
    eim = None
    frame = next((f for f in metrics["frames"] if f["index"] == snap.index), {"methods": {}})
    for i, k in enumerate(keys):
        r, c = 1 + i // per_row, 2 * (i % per_row)
        rec = frame["methods"].get(k, {})
        axes[r, c].imshow(snap.outputs[k], cmap="turbo", vmin=vmin, vmax=vmax)
        extra = f", {rec['iterations']} it" if rec.get("iterations") else ""
        axes[r, c].set_title(f"{k}{extra}", fontsize=9)
        if k in errs:
            eim = axes[r, c + 1].imshow(errs[k], cmap="magma", vmin=0, vmax=emax)
            axes[r, c + 1].set_title(f"|error|, MSE {_fmt(rec.get('mse_cm2'))} cm$^2$", fontsize=9)
    if eim is not None:
        fig.colorbar(eim, ax=axes[1:, -1].tolist(), fraction=0.04, label="|error| (cm)")
    return _save(fig, path, crop=True)


def summary_rows(metrics: dict) -> list[list[str]]:
    """Table rows (header first) of the per-method summary."""
    rows = [["method", "frames in/out/scored", "MSE cm²", "MAE cm", "RMSE cm", "coverage", "consistency max",
             "iterations mean (warm / cold)", "ms/frame mean (p95)", "flow ms"]]
    for k, s in metrics["summary"].items():
        its = _fmt(s.get("mean_iterations"), 0)
        if s.get("mean_iterations_warm") is not None and s.get("init_modes", {}).get("cold") is not None:
            its += f" ({_fmt(s.get('mean_iterations_warm'), 0)} / {_fmt(s.get('mean_iterations_cold'), 0)})"
        rows.append([
            k, f"{s['frames_in']}/{s['frames_out']}/{s['frames_scored']}", _fmt(s.get("mse_cm2")),
            _fmt(s.get("mae_cm"), 3), _fmt(s.get("rmse_cm")), _fmt(s.get("coverage"), 3),
            _fmt(s.get("consistency_max"), 6), its,
            f"{_fmt(s.get('mean_ms'), 0)} ({_fmt(s.get('p95_ms'), 0)})", _fmt(s.get("mean_flow_ms"), 1),
        ])
    return rows


def paired_rows(metrics: dict) -> list[list[str]]:
    """Mean MSE of every method on exactly the frames a subsampled method was scored on
    (header first; empty when no method was subsampled)."""
    meta, frames = metrics.get("methods", {}), metrics["frames"]
    subs = [k for k, m in meta.items() if m.get("every", 1) > 1]
    if not subs:
        return []
    keys = list(metrics["summary"])
    rows = [["frames of", "frames"] + keys]
    for sk in subs:
        idx = [f["index"] for f in frames if "mse_cm2" in f["methods"].get(sk, {})]
        if not idx:
            continue
        row = [sk, ", ".join(map(str, idx))]
        for k in keys:
            vals = [f["methods"][k].get("mse_cm2") for f in frames if f["index"] in idx]
            vals = [v for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
            row.append(_fmt(float(np.mean(vals))) if len(vals) == len(idx) else "-")
        rows.append(row)
    return rows if len(rows) > 1 else []


def _markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def _failures(metrics: dict) -> list[tuple[str, int, str]]:
    """(method, frames, error) of the per-frame failures of the methods that ran (a method that
    was not available at all is already in the notes)."""
    meta = metrics.get("methods", {})
    return [(k, n, err) for k, s in metrics["summary"].items() if meta.get(k, {}).get("available", True)
            for err, n in s.get("errors", {}).items()]


def _frames_line(metrics: dict) -> str:
    """One line on the input side: what was synchronised / published and what came back."""
    inp = metrics.get("input") or {}
    if metrics.get("mode") == "realtime":
        where = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in (inp.get("drops_where") or {}).items())
        return (f"frames published to the live node {inp.get('published_frames', 0)}, answered "
                f"{inp.get('received_outputs', 0)}, dropped {inp.get('dropped', 0)}"
                + (f" ({where})" if where else "") + f", without ground truth {inp.get('frames_without_gt', 0)}")
    text = (f"frames synchronised {inp.get('synchronised_sets', 0)}, processed {inp.get('frames_processed', 0)}, "
            f"without ground truth {inp.get('frames_without_gt', 0)}")
    if inp.get("messages"):
        text += "; messages: " + ", ".join(f"{t} {n}" for t, n in inp["messages"].items())
    if inp.get("dropped"):
        text += "; dropped: " + ", ".join(f"{r} {n}" for r, n in inp["dropped"].items())
    return text


def guard_lines(metrics: dict) -> list[str]:
    """One line per method that ran behind the learned model's guard: what ran its frames."""
    out = []
    for k, s in metrics.get("summary", {}).items():
        picks = s.get("guard_picks") or {}
        if picks:
            out.append(f"{k} behind the learned guard: " + ", ".join(f"{m} on {n}" for m, n in sorted(picks.items()))
                       + f" of {sum(picks.values())} frames ({s.get('guard_checks', 0)} checked)")
    return out


def format_summary(metrics: dict, report: Path | None = None) -> str:
    """The one-screen console summary."""
    rows = summary_rows(metrics)
    cols = [0, 1, 2, 3, 7, 8]
    table = [[r[c] for c in cols] for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(cols))]
    lines = [f"dada-replay: {metrics.get('bag')} -> {metrics.get('status')}"]
    lines += [f"  {_frames_line(metrics)}"] if metrics.get("input") else []
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in table]
    paired = paired_rows(metrics)
    for row in paired[1:]:
        keys = paired[0][2:]
        lines.append(f"  same frames as {row[0]} ({row[1]}): mean MSE " + ", ".join(
            f"{k} {v}" for k, v in zip(keys, row[2:])))
    lines += [f"  {g}" for g in guard_lines(metrics)]
    for n in metrics.get("notes", []):
        lines.append(f"  note: {n}")
    lines += [f"  {k}: {n} frame(s) failed: {err}" for k, n, err in _failures(metrics)]
    if report is not None:
        lines.append(f"  report: {report}")
    return "\n".join(lines)


def write_report(out: Path, metrics: dict, snapshots: list[Snapshot]) -> Path:
    """Write every figure and ``report.md`` under ``out``; returns the report path."""
    out = Path(out)
    figs: list[tuple[str, Path | None]] = []
    if metrics.get("frames"):
        figs.append(("Per-frame error and time", figure_over_time(out / "error_over_time.png", metrics)))
        figs.append(("Warm start: cold / naive / flow", figure_warm_start(out / "warm_start.png", metrics)))
        figs.append(("Mean error and time per method", figure_summary(out / "summary.png", metrics)))
    frame_figs = [figure_frame(out / f"frame_{s.index:04d}.png", s, metrics) for s in snapshots]
    meta = metrics.get("methods", {})
    md = [f"# dada-replay report: `{metrics.get('bag')}`", ""]
    inp = metrics.get("input", {})
    md.append(f"- status: **{metrics.get('status')}**; started {metrics.get('started')}; "
              f"mode {metrics.get('mode', 'offline')}; device {metrics.get('settings', {}).get('device')}; "
              f"host CPUs {metrics.get('host_cpus')}")
    if metrics.get("command"):
        md.append(f"- command: `{metrics['command']}`")
    if inp:
        md.append(f"- {_frames_line(metrics)}")
    md += ["", "## Summary", "", _markdown_table(summary_rows(metrics)), ""]
    md.append("MSE / MAE: mean over scored frames of the per-frame value over valid ground-truth pixels "
              "(the paper's units); RMSE = sqrt(mean MSE); coverage: fraction of valid ground truth with an "
              "estimate; consistency: max relative |down(Y) - S| / S (DADA guarantees ~0). Iterations "
              "(warm / cold): mean over frames that actually started warm / cold. Times are wall-clock of "
              "the method call on this machine (shared CPUs make them noisy), flow ms is the optical-flow "
              "part of a warm frame.")
    paired = paired_rows(metrics)
    if paired:
        md += ["", "Mean MSE (cm²) of every method on the same frames as the subsampled method(s), "
               "for a like-for-like comparison:", "", _markdown_table(paired)]
    guarded = guard_lines(metrics)
    if guarded:
        md += [""] + [f"- {g}" for g in guarded]
    md += ["", "Methods:", ""]
    for k, mm in meta.items():
        every = f" (scored on every {ordinal(mm['every'])} frame)" if mm.get("every", 1) > 1 else ""
        avail = "" if mm.get("available", True) else " — **not available**"
        md.append(f"- `{k}`: {mm.get('label', k)}{every}{avail}")
    if metrics.get("notes"):
        md += ["", "## Notes", ""] + [f"- {n}" for n in metrics["notes"]]
    md += [f"- `{k}`: {n} frame(s) failed: {err}" for k, n, err in _failures(metrics)]
    md += ["", "## Figures", ""]
    for title, p in figs:
        if p is not None:
            md += [f"### {title}", "", f"![{title}]({p.name})", ""]
    if frame_figs:
        md += ["### Frames: RGB | input depth | ground truth, then output and |error| per method", ""]
        md += [f"![frame]({p.name})" for p in frame_figs] + [""]
    ob = metrics.get("output_bag")
    if ob:
        md += ["## Output bag", "", f"`{ob['path']}` (play with `ros2 bag play`, view in RViz):", ""]
        md += [f"- `{t}` x{n}" for t, n in ob.get("topics", {}).items()]
        md.append("")
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n")
    return path
