"""Choosing the gate toward DADA-free (``GuideConfig.gate``) on real validation scenes.

The gate alpha(s) blends the network's coefficients with DADA-free's (:mod:`.model`): 0 is
exactly DADA-free, 1 the network alone. It has one value per anchor ratio (x4 / x8 / x16) and an
integer ratio at an anchor uses that value alone, so every ratio is chosen independently:

1. :func:`gate_grid` solves every scene at every ratio for every alpha of a grid (whole frames,
   block-average sources, the solver's default policy -- the benchmark's protocol) and keeps the
   squared-error sum and pixel count of each;
2. :func:`choose_gate` picks, per ratio, the alpha with the lowest MSE pooled over the chosen
   scenes among those that lose on NO chosen scene by more than ``max_ratio`` (alpha 0 always
   qualifies: it is DADA-free);
3. :func:`leave_one_out` repeats the choice without each scene in turn and scores it on that
   scene -- the honest per-scene figure when only seven real scenes exist.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Callable, Sequence

import numpy as np
import torch

from ..core.cross_scale import (CROSS_SCALE_MEASURES, CROSS_SCALE_MODES, cross_scale_errors,  # noqa: F401
                                cross_scale_measures, cross_scale_pick)  # re-exported: benchmarks use them here
from ..core.errors import DadaInputError
from ..core.metrics import depth_errors
from ..core.solver import DadaSolver, FreeGuide, SolverConfig
from .datasets.base import RGBDScene, make_example
from .model import GATE_SCALES, GuideConfig, GuideNet, LearnedGuide, load_checkpoint

DEFAULT_GRID = tuple(round(0.1 * k, 1) for k in range(11))

# grid[scene][scale] = {"free": (sq, px), alpha: (sq, px), ...}
Grid = dict[str, dict[int, dict]]


def gated_copy(net: GuideNet) -> GuideNet:
    """``net`` with a gate (shut: exactly DADA-free until set); a gated net is copied as is."""
    cfg = GuideConfig.from_dict(asdict(net.config) | {"gate": True})
    out = GuideNet(cfg)
    missing = out.load_state_dict(net.state_dict(), strict=False).missing_keys
    if set(missing) - {"gate"}:
        raise DadaInputError(f"cannot add a gate to this model: missing {missing}")
    return out.eval()


def load_gated(path: str) -> tuple[GuideNet, dict]:
    """A checkpoint as a gated net (see :func:`gated_copy`) and its meta."""
    net, meta, _ = load_checkpoint(path)
    return gated_copy(net), meta


def set_gate(net: GuideNet, values: dict[int, float]) -> None:
    """Set alpha at the anchor ratios given (``{4: 0.3, 8: 0.5}``); the others are kept."""
    if not net.config.gate:
        raise DadaInputError("this model has no gate")
    with torch.no_grad():
        for s, a in values.items():
            if int(s) not in GATE_SCALES:
                raise DadaInputError(f"gate anchors are {GATE_SCALES}, not {s}")
            if not 0.0 <= float(a) <= 1.0:
                raise DadaInputError(f"gate values must be in [0, 1], got {a}")
            net.gate[GATE_SCALES.index(int(s))] = float(a)


def _sq_px(pred: np.ndarray, gt: np.ndarray) -> tuple[float, int]:
    e = depth_errors(pred, gt)
    return (e.mse_cm2 * e.pixels if e.pixels else 0.0), int(e.pixels)


def gate_grid(net: GuideNet, scenes: Sequence[RGBDScene], scales: Sequence[int] = GATE_SCALES,
              grid: Sequence[float] = DEFAULT_GRID, config: SolverConfig | None = None,
              progress: Callable[[str], None] | None = None) -> Grid:
    """Squared-error sums of DADA-free and of the gated net at every alpha of ``grid``, per scene
    and ratio (whole frames; each must be a multiple of every ratio)."""
    for s in scales:
        if int(s) not in GATE_SCALES:
            raise DadaInputError(f"gate ratios are {GATE_SCALES}, not {s}")
    config = config or SolverConfig()
    gated = gated_copy(net)
    free = DadaSolver(config, FreeGuide())
    learned = DadaSolver(config, LearnedGuide(gated, torch.device("cpu")))
    out: Grid = {}
    for sc in scenes:
        for s in scales:
            ex = make_example(sc.rgb, sc.depth, int(s))
            src = np.nan_to_num(ex.source, nan=0.0)
            cell = {"free": _sq_px(free.solve(sc.rgb, src).depth, sc.depth)}
            for a in grid:
                if a == 0.0:
                    cell[0.0] = cell["free"]
                    continue
                set_gate(gated, {int(s): float(a)})
                cell[float(a)] = _sq_px(learned.solve(sc.rgb, src).depth, sc.depth)
            out.setdefault(sc.name, {})[int(s)] = cell
            if progress:
                f = cell["free"][0] / max(1, cell["free"][1])
                progress(f"{sc.name} x{s}: " + ", ".join(
                    f"{a:g}:{(v[0] / max(1, v[1])) / f:.3f}" for a, v in cell.items() if a != "free"))
    return out


def _ratio(cell: dict, a: float) -> float:
    sq, px = cell[a]
    fsq, fpx = cell["free"]
    return (sq / px) / (fsq / fpx) if px and fsq else math.nan


def choose_gate(grid: Grid, names: Sequence[str], max_ratio: float = 1.0,
                also: tuple[Grid, Sequence[str]] | None = None) -> dict[int, float]:
    """Per ratio: among the alphas no worse than ``max_ratio`` x DADA-free on every scene of
    ``names``, the one with the lowest MSE pooled over ``names`` relative to DADA-free's -- or,
    with ``also`` = (another grid, its scenes; e.g. synthetic validation scenes), the lowest mean
    of the two pooled ratios (the constraint stays on ``names``: the real scenes)."""
    scales = sorted({s for n in names for s in grid[n]})
    chosen = {}
    for s in scales:
        alphas = [a for a in grid[names[0]][s] if a != "free"]
        best, best_obj = 0.0, math.inf
        for a in sorted(alphas):
            if any(_ratio(grid[n][s], a) > max_ratio for n in names):
                continue
            obj = pooled_ratio(grid, names, {s: a})[s]
            if also is not None:
                obj = 0.5 * (obj + pooled_ratio(also[0], also[1], {s: a})[s])
            if obj < best_obj - 1e-12:
                best, best_obj = a, obj
        chosen[s] = best
    return chosen


def pooled_ratio(grid: Grid, names: Sequence[str], gate: dict[int, float]) -> dict[int, float]:
    """MSE pooled over ``names`` at ``gate`` / DADA-free's, per ratio."""
    out = {}
    for s, a in gate.items():
        sq = sum(grid[n][s][a][0] for n in names)
        px = sum(grid[n][s][a][1] for n in names)
        fsq = sum(grid[n][s]["free"][0] for n in names)
        fpx = sum(grid[n][s]["free"][1] for n in names)
        out[s] = (sq / px) / (fsq / fpx)
    return out


def leave_one_out(grid: Grid, max_ratio: float = 1.0, also: tuple[Grid, Sequence[str]] | None = None) -> dict[str, dict]:
    """For every scene: the gate chosen on all the others (and ``also``) and its ratio to DADA-free on it."""
    names = list(grid)
    out = {}
    for n in names:
        rest = [m for m in names if m != n]
        gate = choose_gate(grid, rest, max_ratio, also)
        out[n] = {"gate": gate, "ratio": {s: _ratio(grid[n][s], a) for s, a in gate.items()}}
    return out


def format_grid(grid: Grid, gate: dict[int, float], loo: dict[str, dict] | None = None,
                split: dict[str, str] | None = None) -> str:
    """Markdown: per scene and ratio, MSE / DADA-free's at alpha 1 (the network alone), at the
    chosen gate and (``loo``) at the gate chosen without that scene."""
    scales = sorted(gate)
    head = "| scene | " + " | ".join(f"x{s}: net alone / gate {gate[s]:g}" + (" / LOO" if loo else "")
                                     for s in scales) + " |"
    lines = [head, "|---|" + "---|" * len(scales)]
    for n, by in grid.items():
        cells = []
        for s in scales:
            c = f"{_ratio(by[s], 1.0):.2f} / {_ratio(by[s], gate[s]):.2f}" if 1.0 in by[s] else f"{_ratio(by[s], gate[s]):.2f}"
            if loo:
                c += f" / {loo[n]['ratio'][s]:.2f} (a={loo[n]['gate'][s]:g})"
            cells.append(c)
        tag = f" ({split[n]})" if split and n in split else ""
        lines.append(f"| {n}{tag} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
