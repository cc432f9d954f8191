"""Grouped cross-validation of the learned model's gate on every real scene in ``../shared/realdata``.

What it measures (issue 28, first step: no training):

* **the shipped model per scene**: DADA / DADA-free MSE at x4 / x8 / x16 on the 28 Middlebury
  rows (the 21 Middlebury 2005/2006 third-size scenes, both views pooled, and the 7 Middlebury
  2001-2005 scenes), each marked in-sample (its network was trained on it, or its gate was chosen
  on it -- also the same scene at another resolution) or out-of-sample; geo-means over the
  out-of-sample rows only;
* **the gate, cross-validated**: grouped k-fold over scene families (Baby1-3, Bowling1-2, Cloth1-4,
  Lampshade1-2, Rocks1-2, Wood1-2 each one group; every other scene its own group; a scene at two
  resolutions and both views of a stereo pair in one group): the gate (alpha per ratio, see
  :mod:`.gate`) is re-chosen on the training folds only and scored on the held-out fold
  (out-of-fold figures per scene);
* **sensor frames** (metric RealSense-class frames, truth = the frames' own valid depth; the NYU
  raw frame, depth NOT registered to its colour, as a caveated row): shipped gate and the gate
  chosen on all Middlebury rows (never on a sensor frame);
* **the cross-scale check** (:func:`.gate.cross_scale_errors`): per frame and ratio, the method it
  picks, how often that is the better one at the real ratio, and the MSE of the picked one over
  DADA-free's.

Units: disparity scenes are solved on the loader's depth-like z (= 2 m x median(d) / d, the unit
the model was trained and selected in) and scored on **disparity** (px^2, the prediction turned
back with the same f*B), and also on z; metric frames in cm^2. Units are never pooled: a row's
ratio is its own MSE over DADA-free's on the same pixels, and geo-means are over such ratios.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..core.output_range import OutputRangeConfig, apply_output_range
from ..core.solver import DadaSolver, FreeGuide, SolverConfig
from .datasets.base import make_example
from .datasets.realdata import DENSE_REAL, SPLITS, read_npz, scene_path
from .gate import DEFAULT_GRID, cross_scale_errors, cross_scale_pick, gated_copy, set_gate

SCALES = (4, 8, 16)
THIRD_2005 = ("art", "books", "laundry", "moebius")
THIRD_2006 = ("baby1", "baby2", "baby3", "bowling1", "bowling2", "cloth1", "cloth2", "cloth3", "cloth4",
              "flowerpots", "lampshade1", "lampshade2", "monopoly", "rocks1", "rocks2", "wood1", "wood2")
SENSOR = tuple(f"posecnn_{i:06d}" for i in range(5))
CAVEATED = ("nyu_raw_sample",)
CHECK_MODES = ("source", "guide")
RANGE = "+range"  # record keys of predictions after the node's output-range clamp


@dataclass(frozen=True)
class Row:
    """One scene of a table: its files (both views of a stereo pair pooled), its group (family),
    what the shipped model did with it (``"train"`` / ``"val"`` / ``""``) and its kind."""

    name: str
    files: tuple[str, ...]
    group: str
    used: str  # "train", "val" (gate / checkpoint chosen on it) or "" (out-of-sample)
    kind: str  # "middlebury", "sensor" or "caveated"

    @property
    def in_sample(self) -> bool:
        return bool(self.used)


def family(scene: str) -> str:
    """Scene family: Middlebury 2006 numbered scenes share one (``cloth3`` -> ``cloth``)."""
    return re.sub(r"\d+$", "", scene) if scene in THIRD_2006 else scene


def middlebury_rows(used: dict[str, str] | None = None) -> list[Row]:
    """The 28 Middlebury rows; ``used`` maps a scene to how the shipped model used it (default:
    the realdata fixed split, train = tsukuba, cones, art, moebius; val = teddy, books, venus)."""
    if used is None:
        used = {n: sp for sp in ("train", "val") for n in SPLITS[sp]}
    rows = [Row(n, (n,), n, used.get(n, ""), "middlebury") for n in DENSE_REAL]
    for n in THIRD_2005 + THIRD_2006:
        rows.append(Row(f"{n} (third)", (f"{n}_view1", f"{n}_view5"), family(n), used.get(n, ""), "middlebury"))
    return rows


def sensor_rows() -> list[Row]:
    return [Row(n, (n,), n, "", "sensor") for n in SENSOR] + [Row(n, (n,), n, "", "caveated") for n in CAVEATED]


def grouped_folds(rows: Sequence[Row], k: int = 5) -> dict[str, int]:
    """Row name -> fold (0..k-1): whole groups, largest first, each to the fold with fewest rows
    (ties: the lowest fold index). Deterministic."""
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(r.group, []).append(r)
    load = [0] * k
    out = {}
    for g in sorted(groups, key=lambda g: (-len(groups[g]), g)):
        f = min(range(k), key=lambda i: (load[i], i))
        load[f] += len(groups[g])
        for r in groups[g]:
            out[r.name] = f
    return out


@dataclass(frozen=True)
class FoldPlan:
    """Outer fold ``fold`` of a nested grouped cross-validation: the network trains on ``train``'s
    files, its checkpoint and gate are chosen on ``inner`` (another whole fold, never trained on),
    and only ``test`` (the held-out fold) is reported."""

    fold: int
    train: tuple[Row, ...]
    inner: tuple[Row, ...]
    test: tuple[Row, ...]

    @staticmethod
    def files(rows: Sequence[Row]) -> list[str]:
        return [f for r in rows for f in r.files]


def fold_plan(rows: Sequence[Row], folds: dict[str, int], fold: int) -> FoldPlan:
    """Test = fold ``fold``; inner validation = fold ``fold + 1`` (mod k); train = the rest."""
    k = max(folds.values()) + 1
    if not 0 <= fold < k or k < 3:
        raise ValueError(f"fold {fold} of {k}: need 0 <= fold < k and k >= 3")
    inner = (fold + 1) % k
    pick = lambda want: tuple(r for r in rows if want(folds[r.name]))  # noqa: E731
    return FoldPlan(fold, pick(lambda f: f not in (fold, inner)), pick(lambda f: f == inner), pick(lambda f: f == fold))


# ----------------------------------------------------------------------------- scoring
def _sq_px(pred: np.ndarray, gt: np.ndarray, factor: float) -> list:
    m = np.isfinite(gt) & (gt > 0) & np.isfinite(pred)
    e = (pred[m].astype(np.float64) - gt[m].astype(np.float64)) * factor
    return [float(np.sum(e * e)), int(m.sum())]


def score_file(path: Path, scales: Sequence[int], grid: Sequence[float], net, shipped, config: SolverConfig,
               check_modes: Sequence[str] = CHECK_MODES, output_range: OutputRangeConfig | None = None) -> dict:
    """Every ratio of one realdata file: squared-error sums and pixel counts of DADA-free and of
    ``net`` at every gate of ``grid`` (``"depth"``: the solved unit, cm^2 for metres and z;
    ``"disp"``: disparity px^2 for disparity files), and the cross-scale check errors of
    DADA-free and ``shipped`` (the shipped gate) per mode. With ``output_range``, the same
    predictions after the node's output-range clamp are scored too (``"depth+range"``,
    ``"disp+range"``): what the node publishes."""
    scene, info = read_npz(path)
    fb = info.get("f_times_b")
    free = DadaSolver(config, FreeGuide())
    learned = DadaSolver(config, _guide(net))
    ship = DadaSolver(config, _guide(shipped))
    with np.errstate(divide="ignore", invalid="ignore"):
        gt_disp = fb / scene.depth if fb else None
    out = {"unit": info["unit"], "shape": list(scene.depth.shape)}
    for s in scales:
        ex = make_example(scene.rgb, scene.depth, int(s))
        src = np.nan_to_num(ex.source, nan=0.0)
        cell: dict = {"depth": {}, "disp": {}}

        def add(key: str, pred: np.ndarray, suffix: str = "") -> None:
            cell.setdefault("depth" + suffix, {})[key] = _sq_px(pred, scene.depth, 100.0)
            if fb:
                with np.errstate(divide="ignore", invalid="ignore"):
                    cell.setdefault("disp" + suffix, {})[key] = _sq_px(fb / pred, gt_disp, 1.0)
            if output_range is not None and not suffix:
                add(key, apply_output_range(pred, src, output_range)[0], RANGE)

        add("free", free.solve(scene.rgb, src).depth)
        for a in grid:
            if a == 0.0:
                continue
            set_gate(net, {int(s): float(a)})
            add(f"{float(a):g}", learned.solve(scene.rgb, src).depth)
        cell["check"] = {m: cross_scale_errors(scene.rgb, src, {"dada-free": free, "dada": ship}, m)
                         for m in check_modes}
        if not fb:
            del cell["disp"]
            cell.pop("disp" + RANGE, None)
        out[str(int(s))] = cell
    return out


def _guide(net):
    from .model import LearnedGuide

    return LearnedGuide(net, torch.device("cpu"))


def score_all(root: Path, files: Sequence[str], weights: str | None, cache: Path | None = None,
              scales: Sequence[int] = SCALES, grid: Sequence[float] = DEFAULT_GRID,
              config: SolverConfig | None = None, progress: Callable[[str], None] | None = None,
              check_modes: Sequence[str] = CHECK_MODES, output_range: OutputRangeConfig | None = None) -> dict:
    """:func:`score_file` for every file (name -> record), cached per file in ``cache`` (a JSON
    file, reruns resume) -- the expensive part, ~1 s per file and ratio on one core."""
    from .model import SHIPPED_PATH, load_checkpoint

    net0, _, _ = load_checkpoint(str(weights or SHIPPED_PATH))
    shipped = gated_copy(net0)
    net = gated_copy(net0)
    config = config or SolverConfig()
    done = json.loads(cache.read_text()) if cache and cache.exists() else {}
    for f in files:
        if f in done:
            continue
        done[f] = score_file(scene_path(root, f), scales, grid, net, shipped, config, check_modes, output_range)
        if cache:
            cache.write_text(json.dumps(done))
        if progress:
            progress(f"{f}: " + ", ".join(f"x{s} {_ratio1(done[f][str(s)])}" for s in scales))
    return {f: done[f] for f in files}


def _ratio1(cell: dict) -> str:
    key = "disp" if "disp" in cell else "depth"
    c = cell[key]
    return f"{(c['0.5'][0] / c['0.5'][1]) / (c['free'][0] / c['free'][1]):.3f}" if "0.5" in c else "-"


# ----------------------------------------------------------------------------- analysis
def metric_of(records: dict, row: Row, metric: str = "primary") -> str:
    """``"disp"`` for disparity rows (primary), ``"depth"`` otherwise (or when asked);
    ``"primary+range"``: the same after the output-range clamp."""
    if metric not in ("primary", "primary" + RANGE):
        return metric
    cell = next(v for k, v in records[row.files[0]].items() if k.isdigit())
    base = "disp" if "disp" in cell else "depth"
    return base + metric[len("primary"):]


def row_mse(records: dict, row: Row, scale: int, key: str, metric: str = "primary") -> float:
    """MSE of one row (files pooled) at one ratio for ``key`` (``"free"`` or a gate value)."""
    m = metric_of(records, row, metric)
    sq = sum(records[f][str(scale)][m][key][0] for f in row.files)
    px = sum(records[f][str(scale)][m][key][1] for f in row.files)
    return sq / px if px else math.nan


def row_ratio(records: dict, row: Row, scale: int, alpha: float, metric: str = "primary") -> float:
    """The row's MSE at gate ``alpha`` over DADA-free's (alpha 0 is DADA-free: 1)."""
    if alpha == 0.0:
        return 1.0
    return row_mse(records, row, scale, f"{float(alpha):g}", metric) / row_mse(records, row, scale, "free", metric)


def geo_mean(values: Sequence[float]) -> float:
    v = [x for x in values if math.isfinite(x) and x > 0]
    return math.exp(sum(math.log(x) for x in v) / len(v)) if v else math.nan


def choose_alpha(records: dict, rows: Sequence[Row], scale: int, grid: Sequence[float] = DEFAULT_GRID,
                 max_ratio: float = 1.02, metric: str = "primary") -> float:
    """The gate at one ratio with the lowest geo-mean ratio over ``rows`` among those no worse than
    ``max_ratio`` x DADA-free on any of them (0, DADA-free itself, always qualifies; also
    the answer for no rows)."""
    best, best_g = 0.0, 1.0
    if not rows:
        return best
    for a in sorted(float(x) for x in grid):
        if a == 0.0:
            continue
        r = [row_ratio(records, row, scale, a, metric) for row in rows]
        if max(r) > max_ratio:
            continue
        g = geo_mean(r)
        if g < best_g - 1e-12:
            best, best_g = a, g
    return best


def cross_validate_gate(records: dict, rows: Sequence[Row], folds: dict[str, int], scales: Sequence[int] = SCALES,
                        grid: Sequence[float] = DEFAULT_GRID, max_ratio: float = 1.02,
                        choose_on_in_sample: bool = False, metric: str = "primary") -> dict:
    """Per fold, the gate chosen on the other folds' rows (without the rows the network was trained
    or selected on unless ``choose_on_in_sample``), and each row's out-of-fold ratio.

    Returns ``{"gates": {fold: {scale: alpha}}, "oof": {row: {scale: ratio}}}``."""
    k = max(folds.values()) + 1
    gates, oof = {}, {}
    for f in range(k):
        train = [r for r in rows if folds[r.name] != f and (choose_on_in_sample or not r.in_sample)]
        gates[f] = {s: choose_alpha(records, train, s, grid, max_ratio, metric) for s in scales}
        for r in rows:
            if folds[r.name] == f:
                oof[r.name] = {s: row_ratio(records, r, s, gates[f][s], metric) for s in scales}
    return {"gates": gates, "oof": oof}


def self_check(records: dict, rows: Sequence[Row], mode: str, alpha: dict[int, float], scales: Sequence[int] = SCALES,
               margin: float = 1.0, metric: str = "primary") -> dict:
    """Per frame (file) and ratio: the cross-scale check's pick between DADA-free and DADA at
    ``alpha`` (the shipped gate: the check ran it), whether DADA or DADA-free was better at the
    real ratio (by the frame's own ratio), and the picked method's ratio to DADA-free.

    Returns ``{"frames": {file: {scale: (pick, truth ratio, picked ratio)}}, "summary": {scale:
    {"n", "right", "geo_picked", "geo_dada", "worst_picked", "costly_wrong"}}}``."""
    frames: dict = {}
    for r in rows:
        for f in r.files:
            one = Row(f, (f,), r.group, r.used, r.kind)
            for s in scales:
                errs = records[f][str(s)]["check"][mode]
                pick = cross_scale_pick(errs, "dada-free", margin)
                ratio = row_ratio(records, one, s, alpha[s], metric)
                frames.setdefault(f, {})[s] = (pick, ratio, ratio if pick == "dada" else 1.0)
    summary = {}
    for s in scales:
        v = [fr[s] for fr in frames.values()]
        right = sum(1 for p, r, _ in v if (p == "dada") == (r < 1.0) or r == 1.0)
        summary[s] = {"n": len(v), "right": right, "geo_picked": geo_mean([x[2] for x in v]),
                      "geo_dada": geo_mean([x[1] for x in v]), "worst_picked": max(x[2] for x in v),
                      "costly_wrong": sum(1 for p, r, _ in v if p == "dada" and r > 1.02),
                      "picked_dada": sum(1 for p, _, _ in v if p == "dada")}
    return {"frames": frames, "summary": summary}


# ----------------------------------------------------------------------------- tables
def _f(x: float) -> str:
    return f"{x:.3f}" if math.isfinite(x) else "-"


def shipped_table(records: dict, rows: Sequence[Row], gate: dict[int, float], folds: dict[str, int] | None = None,
                  scales: Sequence[int] = SCALES) -> str:
    """Per row: DADA-free MSE and DADA (shipped gate) / DADA-free, primary metric and z."""
    lines = ["| scene | shipped model used it | fold | DADA-free MSE " + " / ".join(f"x{s}" for s in scales)
             + " | dada / dada-free " + " / ".join(f"x{s}" for s in scales) + " (z: " + " / ".join(
                 f"x{s}" for s in scales) + ") |", "|---|---|---|---|---|"]
    for r in rows:
        free = " / ".join(f"{row_mse(records, r, s, 'free'):.3g}" for s in scales)
        rat = " / ".join(_f(row_ratio(records, r, s, gate[s])) for s in scales)
        z = " / ".join(_f(row_ratio(records, r, s, gate[s], "depth")) for s in scales)
        lines.append(f"| {r.name} | {r.used or 'out-of-sample'} | {folds[r.name] if folds else '-'} | {free} | "
                     f"{rat} ({z}) |")
    return "\n".join(lines)


def summary_lines(label: str, ratios: dict[str, dict[int, float]], rows: Sequence[Row],
                  scales: Sequence[int] = SCALES) -> list[str]:
    """Geo-mean and worst of per-row ratios over ``rows``: one markdown table line each."""
    g = " / ".join(_f(geo_mean([ratios[r.name][s] for r in rows])) for s in scales)
    w = " / ".join(_f(max(ratios[r.name][s] for r in rows)) for s in scales)
    return [f"| {label} ({len(rows)} rows) | {g} | {w} |"]


def save(obj, path: str | Path) -> None:
    Path(path).write_text(json.dumps(obj, indent=1, default=str))
