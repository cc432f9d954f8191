"""Paper-style evaluation: MSE (cm^2) / MAE (cm) per scale and method over a set of examples.

Every method runs through :func:`dada_ros.core.methods.run_method` -- the code the CLI and the
node run -- with one solver per DADA method reused for all examples. Errors are pooled over all
valid ground-truth pixels of all tiles of a scale (for equal-size tiles this is the mean of the
per-tile MSE weighted by valid pixels). Pixels a method leaves NaN are not scored but lower its
``coverage``, which is reported alongside.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from ..core.errors import DadaInputError
from ..core.methods import DADA_METHODS, METHODS, make_solver, run_method
from ..core.metrics import DepthErrors, depth_errors
from ..core.scenes import TofModel, simulate_tof
from ..core.solver import SolverConfig
from .datasets.base import RGBDScene, make_example, tiles

DEFAULT_METHODS = ("bicubic", "jbf", "dada-free", "dada")


@dataclass
class Cell:
    """Accumulated errors of one method at one scale."""

    sq_sum: float = 0.0
    abs_sum: float = 0.0
    pixels: int = 0
    gt_pixels: int = 0
    tiles: int = 0
    seconds: float = 0.0
    per_tile_mse: list[float] = field(default_factory=list)

    def add(self, pred: np.ndarray, gt: np.ndarray, seconds: float) -> None:
        self.add_errors(depth_errors(pred, gt), gt_pixels(gt), seconds)

    def add_errors(self, e: DepthErrors, n_gt: int, seconds: float) -> None:
        """Add one tile's errors (``n_gt``: its valid ground-truth pixels)."""
        if e.pixels:
            self.sq_sum += e.mse_cm2 * e.pixels
            self.abs_sum += e.mae_cm * e.pixels
        self.pixels += e.pixels
        self.gt_pixels += n_gt
        self.tiles += 1
        self.seconds += seconds
        self.per_tile_mse.append(e.mse_cm2)

    @property
    def mse(self) -> float:
        return self.sq_sum / self.pixels if self.pixels else float("nan")

    @property
    def mae(self) -> float:
        return self.abs_sum / self.pixels if self.pixels else float("nan")

    @property
    def coverage(self) -> float:
        return self.pixels / self.gt_pixels if self.gt_pixels else float("nan")

    def as_dict(self) -> dict:
        return {"mse_cm2": self.mse, "mae_cm": self.mae, "coverage": self.coverage, "tiles": self.tiles,
                "seconds_per_tile": self.seconds / max(1, self.tiles), "per_tile_mse_cm2": self.per_tile_mse}


def gt_pixels(gt: np.ndarray) -> int:
    """Valid ground-truth pixels (finite, > 0)."""
    return int((np.isfinite(gt) & (gt > 0)).sum())


SourceFn = Callable[[np.ndarray, np.ndarray, int, str], np.ndarray | None]


@dataclass(frozen=True)
class TofSource:
    """ToF-like sources (noise, dropouts), reproducible per tile name and scale (a class rather
    than a closure so that ``evaluate(jobs=N)`` can hand it to worker processes)."""

    seed: int = 0
    model: TofModel | None = None

    def __call__(self, gt: np.ndarray, rgb: np.ndarray, scale: int, name: str) -> np.ndarray:
        import zlib

        rng = np.random.default_rng([self.seed, scale, zlib.crc32(name.encode())])
        H, W = gt.shape
        src = simulate_tof(gt, rgb, (H // scale, W // scale), self.model or TofModel(), rng)
        return np.where(src > 0, src, np.nan).astype(np.float32)


def tof_source_fn(seed: int = 0, model: TofModel | None = None) -> SourceFn:
    """ToF-like sources (noise, dropouts), reproducible per tile name and scale."""
    return TofSource(seed, model)


# One method at one scale on one tile: (row label, scale, errors, valid ground-truth pixels, seconds).
TileScore = tuple[str, int, DepthErrors, int, float]


def make_solvers(methods: Sequence[str], models: dict[str, str], config: SolverConfig,
                 weights: str | None) -> dict:
    """One solver per DADA method and per extra model row, reused for every tile."""
    solvers = {m: make_solver(m, config, weights=weights if m == "dada" else None) for m in methods if m in DADA_METHODS}
    solvers.update({label: make_solver("dada", config, weights=path) for label, path in models.items()})
    return solvers


def score_tile(name: str, rgb: np.ndarray, gt: np.ndarray, scales: Sequence[int], rows: Sequence[str],
               models: dict[str, str], solvers: dict, source_fn: SourceFn | None) -> list[TileScore] | None:
    """Every row at every scale on one tile; None when the tile has no valid ground truth (not
    counted). A scale whose source has no valid cell is left out."""
    if not (np.isfinite(gt) & (gt > 0)).any():
        return None
    n_gt = gt_pixels(gt)
    out: list[TileScore] = []
    for s in scales:
        H, W = gt.shape
        if H % s or W % s:
            raise DadaInputError(f"tile {H}x{W} of {name} is not a multiple of scale {s}")
        src = source_fn(gt, rgb, s, name) if source_fn else None
        ex = make_example(rgb, gt, s, src)
        if not (np.isfinite(ex.source) & (ex.source > 0)).any():
            continue
        source = np.nan_to_num(ex.source, nan=0.0)
        for m in rows:
            t = time.perf_counter()
            pred, _ = run_method("dada" if m in models else m, rgb, source, solver=solvers.get(m))
            dt = time.perf_counter() - t
            out.append((m, int(s), depth_errors(pred, gt), n_gt, dt))
    return out


def scored_tiles(scenes: Iterable[RGBDScene], tile: int | None, scales: Sequence[int], rows: Sequence[str],
                 models: dict[str, str], solvers: dict, source_fn: SourceFn | None
                 ) -> Iterator[tuple[str, str, list[TileScore]]]:
    """(scene name, tile name, scores) for every tile with ground truth, in order."""
    for scene in scenes:
        for name, rgb, gt in tiles(scene, tile):
            scores = score_tile(name, rgb, gt, scales, rows, models, solvers, source_fn)
            if scores is not None:
                yield scene.name, name, scores


def evaluate(scenes: Iterable[RGBDScene], scales: Sequence[int], methods: Sequence[str] = DEFAULT_METHODS,
             tile: int | None = 256, config: SolverConfig | None = None, weights: str | None = None,
             source_fn: SourceFn | None = None, progress: Callable[[str], None] | None = None,
             models: dict[str, str] | None = None, jobs: int = 1) -> dict:
    """Run ``methods`` on every tile of every scene at every scale.

    ``jobs > 1`` scores the tiles in that many worker processes
    (:mod:`dada_ros.learned.parallel_eval`) and pools them here in tile order, so the report is
    the serial one (timings aside).

    ``models`` adds learned checkpoints as further rows: ``{label: checkpoint path}``, each run as
    ``method: dada`` with those weights (e.g. ``{"adapted": "runs/a/best.pt"}``).

    Returns:
        ``{"results": {method: {scale: Cell.as_dict()}}, "scenes": {scene: {method: {scale:
        MSE cm^2}}}, "tiles": n, "seconds": s}`` (``scenes``: pooled over that scene's tiles).
    """
    for m in methods:
        if m not in METHODS:
            raise DadaInputError(f"unknown method {m!r}; expected one of {METHODS}")
    models = dict(models or {})
    clash = sorted(set(models) & set(methods))
    if clash:
        raise DadaInputError(f"model labels {clash} clash with method names")
    config = config or SolverConfig()
    rows = list(methods) + list(models)
    cells = {m: {int(s): Cell() for s in scales} for m in rows}
    per_scene: dict[str, dict[str, dict[int, Cell]]] = {}
    n_tiles = 0
    t0 = time.perf_counter()
    if jobs > 1:
        from .parallel_eval import scored_tiles_parallel

        stream = scored_tiles_parallel(scenes, tile, scales, rows, models, config, weights, source_fn, jobs)
    else:
        stream = scored_tiles(scenes, tile, scales, rows, models, make_solvers(methods, models, config, weights),
                              source_fn)
    for scene_name, name, scores in stream:
        n_tiles += 1
        for m, s, e, n_gt, dt in scores:
            mine = per_scene.setdefault(scene_name, {r: {int(k): Cell() for k in scales} for r in rows})
            cells[m][s].add_errors(e, n_gt, dt)
            mine[m][s].add_errors(e, n_gt, dt)
        if progress:
            progress(f"{name}: " + ", ".join(f"{m} x{s} {cells[m][int(s)].mse:.3g}" for m in rows for s in scales[:2]))
    return {"results": {m: {s: c.as_dict() for s, c in cells[m].items()} for m in rows},
            "scenes": {n: {m: {s: c.mse for s, c in per.items()} for m, per in by.items()} for n, by in per_scene.items()},
            "tiles": n_tiles, "seconds": time.perf_counter() - t0}


def format_table(report: dict, title: str = "") -> str:
    """Markdown table: one row per method, ``MSE / MAE`` per scale; plus the ratio of DADA to
    DADA-free and bicubic MSE when those rows exist."""
    res = report["results"]
    methods = list(res)
    scales = sorted({int(s) for m in methods for s in res[m]})
    lines = []
    if title:
        lines.append(title)
    lines.append("| method | " + " | ".join(f"x{s}" for s in scales) + " |")
    lines.append("|---|" + "---|" * len(scales))
    for m in methods:
        cells = [res[m][s] for s in scales]
        lines.append(f"| {m} | " + " | ".join(f"{c['mse_cm2']:.3g} / {c['mae_cm']:.3g}" for c in cells) + " |")
    learned = [m for m in methods if m == "dada" or m not in METHODS]  # dada and extra model rows
    for ref in ("dada-free", "bicubic"):
        for m in learned:
            if ref in res:
                ratio = [res[m][s]["mse_cm2"] / res[ref][s]["mse_cm2"] for s in scales]
                lines.append(f"| {m} / {ref} (MSE) | " + " | ".join(f"{r:.2f}" for r in ratio) + " |")
    return "\n".join(lines)


def generated_scenes(seeds: Sequence[int], size: tuple[int, int]) -> Iterator[RGBDScene]:
    """Held-out generated scenes (render on the fly)."""
    from .datasets.procedural import render_scene

    for seed in seeds:
        yield render_scene(int(seed), size)


def format_scene_table(report: dict, title: str = "", ref: str = "dada-free") -> str:
    """Markdown table per scene: one row per (scene, method), ``MSE (MSE / ref's)`` per scale,
    then the pooled rows (MSE over all valid pixels of all scenes) and, for every method, the
    worst per-scene ratio to ``ref`` -- the figure a "does not lose anywhere" claim rests on."""
    res, per = report["results"], report["scenes"]
    rows = list(res)
    scales = sorted({int(s) for m in rows for s in res[m]})
    lines = [title] if title else []
    lines.append("| scene | method | " + " | ".join(f"x{s} MSE (/ {ref})" for s in scales) + " |")
    lines.append("|---|---|" + "---|" * len(scales))

    def cell(mse: float, base: float | None) -> str:
        return f"{mse:.3g}" + (f" ({mse / base:.2f})" if base else "")

    for name, by in per.items():
        for m in rows:
            lines.append(f"| {name} | {m} | " + " | ".join(
                cell(by[m][s], by[ref][s] if ref in by else None) for s in scales) + " |")
    for m in rows:
        lines.append(f"| **pooled** | {m} | " + " | ".join(
            cell(res[m][s]["mse_cm2"], res[ref][s]["mse_cm2"] if ref in res else None) for s in scales) + " |")
    if ref in res:
        for m in rows:
            if m == ref:
                continue
            worst = [max(by[m][s] / by[ref][s] for by in per.values()) for s in scales]
            lines.append(f"| worst scene | {m} / {ref} | " + " | ".join(f"{w:.2f}" for w in worst) + " |")
    return "\n".join(lines)


def scene_ratios(report: dict, method: str, ref: str = "dada-free") -> dict:
    """{"pooled": {scale: ratio}, "worst": {scale: ratio}, "per_scene": {scene: {scale: ratio}}}
    of ``method``'s MSE to ``ref``'s (pooled = over all valid pixels of all scenes)."""
    res, per = report["results"], report["scenes"]
    scales = sorted(int(s) for s in res[method])
    ps = {n: {s: by[method][s] / by[ref][s] for s in scales} for n, by in per.items()}
    return {"pooled": {s: res[method][s]["mse_cm2"] / res[ref][s]["mse_cm2"] for s in scales},
            "worst": {s: max(r[s] for r in ps.values()) for s in scales}, "per_scene": ps}
