"""Output pixels far outside the local source range: detect them and clamp them, keeping the
consistency ``down(Y) = S`` exact.

Why: the diffusion + multiplicative adjustment can push a pixel well beyond every depth measured
around it (an over-shooting edge, a thin structure whose cell average is dominated by the
background, a non-integer ratio whose cells straddle an edge). In a point cloud such a pixel is a
flying point. The physical bound is local: within a few source cells, the true depth lies between
the smallest and the largest measured cell value (a cell value is the mean of the true depths in
it, so the extremes can lie a bit outside: hence a margin).

Limits per source cell: ``[lo / (1 + margin), hi * (1 + margin)]`` with ``lo`` / ``hi`` the min /
max of the VALID source cells within ``radius`` cells (a (2r+1)^2 window). Multiplicative on
purpose: depth error scales with depth, and the solver's adjustment is multiplicative too.

Modes (``mode``):

* ``clamp`` (default): each cell's pixels become the Euclidean projection of Y onto
  ``{limits} ∩ {mean over the cell = S}``, i.e. ``clip(Y + t, L, U)`` with the per-cell shift t
  found by bisection (the cell mean of the clipped values is monotone in t). The cell's own value
  S lies inside its limits, so the set is never empty: consistency stays exact (to float
  precision) for every valid cell. Cells without a valid source value (filled by diffusion) are
  only clipped. Pixels that were inside the limits move only by the shift t of their cell.
* ``invalid``: out-of-limit pixels become NaN (no estimate), nothing else changes.
* ``off``: nothing is done (the counts are still reported).

benchmarks/output_range.py measured the choice (MSE, consistency, how often), synthetic and real
scenes; see the README ("Output range").
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .errors import DadaInputError
from .resample import Partition, valid_source_mask

OUTPUT_RANGE_MODES = ("clamp", "invalid", "off")
# 0.2: chosen after benchmarks/output_range.py on its synthetic scenes and the seven real
# Middlebury scenes (the same scenes: no held-out set): the smallest margin measured (0.05 / 0.1 /
# 0.2) whose MSE change stays within +-0.5% at every real scale; 0.1 cost up to +2.2% on real x8,
# because many flagged pixels there are genuine structure beyond the local cell means.
DEFAULT_MARGIN = 0.2
DEFAULT_RADIUS = 1
BISECTION_STEPS = 12  # then the exact step of the active set (see _clamp_consistent)


@dataclass(frozen=True)
class OutputRangeConfig:
    mode: str = "clamp"
    margin: float = DEFAULT_MARGIN
    radius: int = DEFAULT_RADIUS

    def validate(self) -> None:
        if self.mode not in OUTPUT_RANGE_MODES:
            raise DadaInputError(f"output_range must be one of {', '.join(OUTPUT_RANGE_MODES)}, got {self.mode!r}")
        if not (0 <= self.margin <= 10):
            raise DadaInputError(f"output_range_margin must be in [0, 10], got {self.margin}")
        if int(self.radius) != self.radius or not 0 <= self.radius <= 16:
            raise DadaInputError(f"output range radius must be an integer in [0, 16], got {self.radius}")


def local_limits(source: np.ndarray, margin: float = DEFAULT_MARGIN,
                 radius: int = DEFAULT_RADIUS) -> tuple[np.ndarray, np.ndarray]:
    """Per source cell (h, w): (lower, upper) depth limits from the valid cells within ``radius``
    cells; NaN where the window holds no valid cell (no limit)."""
    src = np.asarray(source, dtype=np.float32)
    valid = valid_source_mask(src)
    k = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    lo = cv2.erode(np.where(valid, src, np.inf).astype(np.float32), k, borderType=cv2.BORDER_REPLICATE)
    hi = cv2.dilate(np.where(valid, src, -np.inf).astype(np.float32), k, borderType=cv2.BORDER_REPLICATE)
    none = ~np.isfinite(lo) | ~np.isfinite(hi)
    lower = np.where(none, np.nan, lo / (1.0 + margin)).astype(np.float32)
    upper = np.where(none, np.nan, hi * (1.0 + margin)).astype(np.float32)
    return lower, upper


def _cell_mean(y: np.ndarray, flat: np.ndarray, n_cells: int, counts: np.ndarray) -> np.ndarray:
    return np.bincount(flat, y.ravel(), n_cells) / np.maximum(counts, 1)


def apply_output_range(depth: np.ndarray, source: np.ndarray, config: OutputRangeConfig | None = None) -> tuple[np.ndarray, dict]:
    """Handle pixels of ``depth`` (H, W, metres, NaN = none) outside the local limits of
    ``source`` (h, w; 0 / NaN invalid) per ``config`` (see the module doc).

    Returns (new depth, stats): ``range_outliers`` (pixels outside before), ``range_fraction``
    (of the finite pixels), ``range_worst`` (largest ratio beyond a limit, 1.0 = none),
    ``range_mode``.
    """
    cfg = config or OutputRangeConfig()
    cfg.validate()
    y = np.asarray(depth, dtype=np.float32)
    part = Partition(y.shape, source.shape)
    lower, upper = local_limits(source, cfg.margin, cfg.radius)
    # Cell level first (per-cell min / max of Y, cheap): only the pixels of cells that reach
    # beyond their limits are looked at one by one.
    rs, cs = part.cell_starts()
    with np.errstate(invalid="ignore"):
        cmax = np.fmax.reduceat(np.fmax.reduceat(y, rs[:-1], axis=0), cs[:-1], axis=1)
        cmin = np.fmin.reduceat(np.fmin.reduceat(y, rs[:-1], axis=0), cs[:-1], axis=1)
        flagged = (cmax > upper) | (cmin < lower)  # NaN limits / all-NaN cells compare False
    stats = {"range_outliers": 0, "range_fraction": 0.0, "range_worst": 1.0, "range_mode": cfg.mode}
    if not flagged.any():
        return y, stats
    (H, W), (h, w) = y.shape, part.source_shape
    from .resample import cell_index

    rows, cols = cell_index(H, h), cell_index(W, w)
    idx = np.flatnonzero(part.expand(flagged))  # pixels of flagged cells
    cell = rows[idx // W] * w + cols[idx % W]
    yv = y.ravel()[idx]
    lv, uv = lower.ravel()[cell], upper.ravel()[cell]
    with np.errstate(invalid="ignore", divide="ignore"):
        out_lo, out_hi = yv < lv, yv > uv  # NaN pixels compare False
        worst = 1.0
        if out_lo.any():
            worst = max(worst, float(np.max(lv[out_lo] / np.maximum(yv[out_lo], 1e-12))))
        if out_hi.any():
            worst = max(worst, float(np.max(yv[out_hi] / uv[out_hi])))
    outside = out_lo | out_hi
    n_out = int(outside.sum())
    n_finite = int(np.isfinite(y).sum())
    stats.update(range_outliers=n_out, range_fraction=n_out / max(1, n_finite), range_worst=worst)
    if n_out == 0 or cfg.mode == "off":
        return y, stats
    out = y.copy()
    if cfg.mode == "invalid":
        out.ravel()[idx[outside]] = np.nan
        return out, stats
    out.ravel()[idx] = _clamp_consistent(yv, lv, uv, cell, outside, source)
    return out, stats


def _clamp_consistent(yv: np.ndarray, lv: np.ndarray, uv: np.ndarray, cell: np.ndarray, outside: np.ndarray,
                      source: np.ndarray) -> np.ndarray:
    """The new values of the given pixels (those of flagged cells: value, limits, cell index):
    per cell with an outlier, clip(Y + t, L, U) with t such that the cell mean stays what it was
    (= S after the solver's adjustment; see the module doc). Other cells are returned unchanged."""
    result = yv.copy()
    bad_cells = np.unique(cell[outside])
    sel = np.isin(cell, bad_cells) & np.isfinite(yv)
    if not sel.any():
        return result
    uniq, inv = np.unique(cell[sel], return_inverse=True)
    n = len(uniq)
    y64 = yv[sel].astype(np.float64)
    l64, u64 = lv[sel].astype(np.float64), uv[sel].astype(np.float64)
    counts = np.bincount(inv, minlength=n).astype(np.float64)
    target = np.bincount(inv, y64, n) / counts
    src = np.asarray(source, dtype=np.float64).ravel()[uniq]
    valid = np.isfinite(src) & (src > 0)
    # A valid cell's exact target is S itself (the solver's adjustment makes the mean S; using S
    # keeps consistency exact even where the solver left a tiny residual). Every pixel of a cell
    # has the same limits (they are per cell), so the target is reachable iff it is in them.
    cell_l = np.bincount(inv, l64, n) / counts
    cell_u = np.bincount(inv, u64, n) / counts
    target = np.clip(np.where(valid, src, target), cell_l, cell_u)
    # all pixels at the lower limit (mean = L <= target) .. all at the upper one (mean = U >= target)
    t_lo = cell_l - _cell_max(y64, inv, n)
    t_hi = cell_u - _cell_min(y64, inv, n)
    for _ in range(BISECTION_STEPS):
        t = 0.5 * (t_lo + t_hi)
        m = np.bincount(inv, np.clip(y64 + t[inv], l64, u64), n) / counts
        above = m > target
        t_hi = np.where(above, t, t_hi)
        t_lo = np.where(above, t_lo, t)
    t = 0.5 * (t_lo + t_hi)
    # The mean is piecewise linear in t: with the bracket this narrow the pixels at a limit are
    # known, and t follows exactly from them (free pixels move by t, clipped ones stay put).
    z = y64 + t[inv]
    at_lo, at_hi = z <= l64, z >= u64
    free = ~(at_lo | at_hi)
    n_free = np.bincount(inv, free.astype(np.float64), n)
    fixed = np.bincount(inv, np.where(at_lo, l64, 0.0) + np.where(at_hi, u64, 0.0), n)
    y_free = np.bincount(inv, np.where(free, y64, 0.0), n)
    t_exact = np.where(n_free > 0, (target * counts - fixed - y_free) / np.maximum(n_free, 1), t)
    t = np.where((t_exact >= t_lo) & (t_exact <= t_hi), t_exact, t)
    new = np.clip(y64 + t[inv], l64, u64)
    # the last float residual, spread additively over the cell's pixels that are not at a limit
    resid = target - np.bincount(inv, new, n) / counts
    free = (new > l64) & (new < u64)
    n_free = np.bincount(inv, free.astype(np.float64), n)
    corr = np.where(n_free > 0, resid * counts / np.maximum(n_free, 1), 0.0)
    new = np.where(free, new + corr[inv], new)
    result[sel] = new.astype(np.float32)
    return result


def _cell_max(v: np.ndarray, inv: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, -np.inf)
    np.maximum.at(out, inv, v)
    return out


def _cell_min(v: np.ndarray, inv: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.inf)
    np.minimum.at(out, inv, v)
    return out
