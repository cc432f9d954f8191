"""Output pixels far outside the local source range: detect them and clamp them, keeping the
consistency ``down(Y) = S`` exact.

Why: the diffusion + multiplicative adjustment can push a pixel well beyond every depth measured
around it (an over-shooting edge, a non-integer ratio whose cells straddle an edge, a hole filled
from the far side). In a point cloud such a pixel is a flying point.

Limits per source cell (issue #27 rule, chosen on data by benchmarks/output_range.py):

* upper ``hi * (1 + margin)``, ``hi`` = the max of the VALID source cells within ``radius`` = 2
  cells (a 5x5 window). In a hole cell and in a valid cell beside a hole (3x3) the window is
  ``hole_radius`` = 8 cells instead (= the solver's ``max_fill_distance``): a sensor hole is
  mostly a shadow / occlusion that hides a FARTHER surface, seen again only beyond the hole, and a
  valid cell beside it can be partly hidden too (its value is the mean of its visible pixels only).
* lower ``lo / (1 + lower_margin)``, ``lo`` = the min of the valid cells within ``radius``;
  ``lower_margin`` = 1.0 (half the nearest depth measured around): loose on purpose, because a
  structure thinner than a cell (a chair leg, a cable) is truly nearer than every cell mean around
  it; a tighter lower limit was the side that made MSE worse.

Why not "the neighbourhood's range + sensor noise" (a few %): the cell values are MEANS, and on
the benchmark frames the true depth of 0.01-4.6% of the pixels (per group and scale) lies beyond
the min / max of the cell means within one cell widened by 2% (thin structures, narrow gaps onto
the far background, partly hidden cells). With a noise-sized margin the clamp clamps real
structure: 3% above the local max made MSE up to 1.18x worse on a training frame, and the former
rule (3x3 window everywhere, holes bounded by their 3x3 neighbours) 2.44x on a Middlebury frame
with occlusion holes. ``margin`` = 0.2 above the 5x5 max is the smallest measured (0.03 .. 0.25)
whose clamp is never worse than 1.0005x on any TRAINING frame (simulated ToF + 21 Middlebury
scenes, x4 / x8 / x16; worst 1.0002x); held out (RealSense, NYU raw, tum2klg) the worst is
1.0000x. doc/node.md "Output range" has the tables (``python benchmarks/output_range.py --choose``).

Multiplicative on purpose: depth error scales with depth, and the solver's adjustment is
multiplicative too.

Modes (``mode``):

* ``clamp`` (default): each cell's pixels become the Euclidean projection of Y onto
  ``{limits} ∩ {mean over the cell = S}``, i.e. ``clip(Y + t, L, U)`` with the per-cell shift t
  found by bisection (the cell mean of the clipped values is monotone in t). The cell's own value
  S lies inside its limits, so the set is never empty: consistency stays exact (to float
  precision) for every valid cell. Cells without a valid source value (filled by diffusion) are
  only clipped. Pixels that were inside the limits move only by the shift t of their cell.
* ``invalid``: out-of-limit pixels become NaN (no estimate), nothing else changes.
* ``off``: nothing is done (the counts are still reported).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .errors import DadaInputError
from .fused_cpu import HAVE_NUMBA
from .resample import Partition, valid_source_mask

if HAVE_NUMBA:
    from .fused_cpu import njit, prange

OUTPUT_RANGE_MODES = ("clamp", "invalid", "off")
HOLE_RULES = ("rim", "window")  # rim: the issue-27 rule (module doc); window: the former one (comparison)
DEFAULT_MARGIN = 0.2  # above the local max: the smallest with the clamp never worse on the training frames
DEFAULT_LOWER_MARGIN = 1.0  # below the local min: lo / 2
DEFAULT_RADIUS = 2
DEFAULT_HOLE_RADIUS = 8
DEFAULT_HOLES = "rim"
BISECTION_STEPS = 12  # then the exact step of the active set (see _clamp_consistent)


@dataclass(frozen=True)
class OutputRangeConfig:
    mode: str = "clamp"
    margin: float = DEFAULT_MARGIN
    radius: int = DEFAULT_RADIUS
    lower_margin: float = DEFAULT_LOWER_MARGIN
    hole_radius: int = DEFAULT_HOLE_RADIUS
    holes: str = DEFAULT_HOLES

    def validate(self) -> None:
        if self.mode not in OUTPUT_RANGE_MODES:
            raise DadaInputError(f"output_range must be one of {', '.join(OUTPUT_RANGE_MODES)}, got {self.mode!r}")
        for name in ("margin", "lower_margin"):
            v = getattr(self, name)
            if not (0 <= v <= 10):
                raise DadaInputError(f"output_range_{name} must be in [0, 10], got {v}")
        for name, top in (("radius", 16), ("hole_radius", 64)):
            v = getattr(self, name)
            if int(v) != v or not 0 <= v <= top:
                raise DadaInputError(f"output range {name} must be an integer in [0, {top}], got {v}")
        if self.holes not in HOLE_RULES:
            raise DadaInputError(f"output range holes must be one of {HOLE_RULES}, got {self.holes!r}")


def _window(values: np.ndarray, radius: int, op) -> np.ndarray:
    if radius <= 0:
        return values
    k = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return op(values, k, borderType=cv2.BORDER_REPLICATE)


def local_limits(source: np.ndarray, margin: float = DEFAULT_MARGIN, radius: int = DEFAULT_RADIUS,
                 lower_margin: float | None = None, hole_radius: int = DEFAULT_HOLE_RADIUS,
                 holes: str = DEFAULT_HOLES) -> tuple[np.ndarray, np.ndarray]:
    """Per source cell (h, w): (lower, upper) depth limits (see the module doc); NaN where the
    window holds no valid cell (no limit). ``lower_margin`` None: the same as ``margin``.
    ``holes="window"``: the former rule (every cell uses the ``radius`` window)."""
    src = np.asarray(source, dtype=np.float32)
    valid = valid_source_mask(src)
    lm = margin if lower_margin is None else lower_margin
    lo = _window(np.where(valid, src, np.inf).astype(np.float32), radius, cv2.erode)
    valid_or_low = np.where(valid, src, -np.inf).astype(np.float32)
    hi = _window(valid_or_low, radius, cv2.dilate)
    if holes == "rim" and not valid.all() and valid.any():
        rim = cv2.dilate((~valid).astype(np.uint8), np.ones((3, 3), np.uint8),
                         borderType=cv2.BORDER_REPLICATE).astype(bool)
        far = _window(valid_or_low, max(hole_radius, radius), cv2.dilate)
        hi = np.where(rim, far, hi)
    with np.errstate(invalid="ignore", over="ignore"):
        lower = np.where(np.isfinite(lo), lo / (1.0 + lm), np.nan).astype(np.float32)
        upper = np.where(np.isfinite(hi), hi * (1.0 + margin), np.nan).astype(np.float32)
    return lower, upper


def apply_output_range(depth: np.ndarray, source: np.ndarray, config: OutputRangeConfig | None = None) -> tuple[np.ndarray, dict]:
    """Handle pixels of ``depth`` (H, W, metres, NaN = none) outside the local limits of
    ``source`` (h, w; 0 / NaN invalid) per ``config`` (see the module doc).

    Returns (new depth, stats): ``range_outliers`` (pixels outside before), ``range_fraction``
    (of the finite pixels), ``range_worst`` (largest ratio beyond a limit, 1.0 = none),
    ``range_mode``.
    """
    cfg = config or OutputRangeConfig()
    cfg.validate()
    lower, upper = local_limits(source, cfg.margin, cfg.radius, cfg.lower_margin, cfg.hole_radius, cfg.holes)
    return apply_limits(depth, source, lower, upper, cfg.mode)


if HAVE_NUMBA:

    # One pass over the image, cell rows in parallel (every frame, warm or cold, runs it on the
    # output): 0.2 ms at 640x480 against 1.3 ms for the OpenCV erosion + dilation of
    # Partition.cell_extrema (two full-resolution passes and their temporaries).
    @njit(parallel=True, cache=True, nogil=True)
    def _cell_extrema_numba(y, row_starts, col_starts, cmin, cmax):
        h = row_starts.shape[0] - 1
        w = col_starts.shape[0] - 1
        for ci in prange(h):
            for cj in range(w):
                cmin[ci, cj] = np.inf
                cmax[ci, cj] = -np.inf
            for i in range(row_starts[ci], row_starts[ci + 1]):
                for cj in range(w):
                    lo = cmin[ci, cj]
                    hi = cmax[ci, cj]
                    for j in range(col_starts[cj], col_starts[cj + 1]):
                        v = y[i, j]
                        if v < lo:  # NaN compares False: ignored
                            lo = v
                        if v > hi:
                            hi = v
                    cmin[ci, cj] = lo
                    cmax[ci, cj] = hi
            for cj in range(w):  # a cell of NaN only: NaN, as Partition.cell_extrema
                if cmin[ci, cj] == np.inf:
                    cmin[ci, cj] = np.nan
                if cmax[ci, cj] == -np.inf:
                    cmax[ci, cj] = np.nan


def cell_extrema(part: Partition, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`Partition.cell_extrema` of a float32 (H, W) image (the numba pass when available)."""
    if not HAVE_NUMBA:
        return part.cell_extrema(y)
    rs, cs = part.cell_starts()
    h, w = part.source_shape
    cmin, cmax = np.empty((h, w), np.float32), np.empty((h, w), np.float32)
    _cell_extrema_numba(np.ascontiguousarray(y, dtype=np.float32), rs, cs, cmin, cmax)
    return cmin, cmax


def apply_limits(depth: np.ndarray, source: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                 mode: str = "clamp") -> tuple[np.ndarray, dict]:
    """:func:`apply_output_range` with given per-cell limits (h, w; NaN = no limit)."""
    y = np.asarray(depth, dtype=np.float32)
    part = Partition(y.shape, source.shape)
    # Cell level first (per-cell min / max of Y, cheap): only the pixels of cells that reach
    # beyond their limits are looked at one by one.
    cmin, cmax = cell_extrema(part, y)
    with np.errstate(invalid="ignore"):
        flagged = (cmax > upper) | (cmin < lower)  # NaN limits / all-NaN cells compare False
    stats = {"range_outliers": 0, "range_fraction": 0.0, "range_worst": 1.0, "range_mode": mode}
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
    if n_out == 0 or mode == "off":
        return y, stats
    out = y.copy()
    if mode == "invalid":
        out.ravel()[idx[outside]] = np.nan
        return out, stats
    # a missing limit (a hole cell with a lower limit only) is one that no pixel reaches
    with np.errstate(invalid="ignore"):
        span = float(np.nanmax(yv)) - float(np.nanmin(yv)) + 1.0
    lv = np.where(np.isnan(lv), float(np.nanmin(yv)) - span, lv)
    uv = np.where(np.isnan(uv), float(np.nanmax(yv)) + span, uv)
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
    # a cell without a valid source value has no mean to keep: its pixels are only clipped (its
    # limits can also be one-sided, filled in by apply_limits with values no pixel reaches)
    new = np.where(valid[inv], new, np.clip(y64, l64, u64))
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
