"""Acceptance of a warped previous output as the warm start Y0: keep it where it fits, per pixel.

The warm start makes a frame worse than a cold start when the warped previous output is wrong
somewhere the short warm run cannot repair: a misaligned depth edge after a large motion, a
surface seen from too different a viewpoint, a moving object, a fill that leaked across a
disocclusion. The node cannot see the ground truth, but it has the new measurement S: every valid
source cell says what the block mean of the answer must be, so

    e(cell) = |S(cell) - down(Y0)(cell)| / S(cell)

is a per-cell test of the prior against the new frame. Two corrections make it a test of the
*alignment* rather than of the camera motion:

* the depth of a static point changes when the camera moves (forward motion shortens every depth,
  a rotation scales it across the image), so before the test Y0 is corrected by a robustly fitted
  global model  z_now = z_prev * (a0 + a1 x + a2 y) + b  (x, y: normalised image coordinates),
  the first-order z change of a rigid motion. The corrected Y0 is also what the solver starts
  from: the adjustment then only repairs what is left, not the motion;
* cells only partly covered by the prior are tested on the covered part (mean over finite pixels)
  and not at all below ``cell_coverage``.

Decision (:func:`accept_prior`):

* per cell: e > ``reject_cell_error`` cold-initialises the cell and its neighbours
  (``dilate_cells``): those pixels get NaN (the solver's cold initialisation) and the pipeline
  gives their cells the Chebyshev weights in its one warm solve (it gave them a cold budget on
  crops when this was chosen). 0.08 was chosen on generated 320x240 sequences (pan,
  rotation, forward, fast rotation, shake; dada-free and dada): at 0.15 or 0.10 a depth edge one
  pixel row off after a forward motion (a ~5-8% error of its cell, an expensive one) was kept and
  the frame lost up to 36% (dada); at 0.05 so many edge cells were rejected that most frames fell
  back cold and the gains were gone (dada-free pan 0.995 x cold);
* per frame: the whole frame starts cold when the median cell error exceeds ``max_median_error``
  (the prior does not fit anywhere: a wide baseline, a failed flow), when fewer than
  ``min_tracked_fraction`` of the pixels were tracked, or when more than ``max_reject_fraction``
  would be cold-initialised (a cold solve is then as cheap and as good).

The thresholds were chosen on generated sequences and checked on the rendered ICL-NUIM frames
(``benchmarks/warm_start.py`` prints the precision: warm starts kept that lost, and rejected ones
that would have won).
"""

from __future__ import annotations

import functools

from dataclasses import dataclass, field, fields

import cv2
import numpy as np

from .errors import DadaInputError
# numba is optional: without it the same passes run in numpy (about 3x slower, same decisions)
from .fused_cpu import HAVE_NUMBA
from .resample import Partition, cell_index, valid_source_mask

if HAVE_NUMBA:
    from numba import prange

    from .fused_cpu import njit


# AcceptConfig.dilate_cells when None: 1 (issue 19, generated sequences); a FramePipeline with a
# learned guide uses 2 (session 13, chosen on the pan and drop sequences: with 1 a frame-drop frame of
# the learned warm start was 1.045x the cold solve; with 2 three of the five drop frames start cold
# and no warm frame of any benchmark motion is above 0.956x cold, for ~1% of the smooth motions'
# gain and the ICL living room's warm starts, now declined; doc/warm_start.md).
FREE_DILATE_CELLS = 1
LEARNED_DILATE_CELLS = 2


@dataclass
class AcceptConfig:
    """Settings of :func:`accept_prior` (see the module docstring)."""

    motion_model: bool = True  # correct Y0 by the fitted z change before testing (and solving)
    cell_coverage: float = 0.5  # a cell is tested when at least this fraction of it has a prior
    reject_cell_error: float = 0.08  # cell error above this: cold-initialise the cell
    # ... and its neighbours up to this many cells away. None: FREE_DILATE_CELLS, and in
    # FramePipeline LEARNED_DILATE_CELLS with a learned guide (see there).
    dilate_cells: int | None = None
    max_median_error: float = 0.02  # frame: median cell error above this = start cold
    min_tracked_fraction: float = 0.8  # frame: fewer tracked pixels than this = start cold
    max_reject_fraction: float = 0.3  # frame: more cold-initialised pixels than this = start cold
    # Bounds of the fitted motion model: beyond them the fit is not a rigid motion (start cold).
    max_scale_change: float = 0.5  # |a0 - 1|
    max_offset: float = 1.0  # |b| metres

    def validate(self) -> None:
        for name in ("cell_coverage", "min_tracked_fraction", "max_reject_fraction"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v <= 1):
                raise DadaInputError(f"{name} must be in [0, 1], got {v}")
        for name in ("reject_cell_error", "max_median_error", "max_scale_change", "max_offset"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise DadaInputError(f"{name} must be a finite number > 0, got {v}")
        if self.dilate_cells is not None and (int(self.dilate_cells) != self.dilate_cells
                                              or not 0 <= self.dilate_cells <= 8):
            raise DadaInputError(f"dilate_cells must be an integer in 0..8, got {self.dilate_cells}")


@dataclass
class Acceptance:
    """Result of :func:`accept_prior`.

    ``y0`` (H, W) float32: the prior to start from (motion-corrected), NaN where it is not kept;
    ``cold_pixels`` (H, W) bool: pixels that start cold (rejected cells and pixels without prior);
    ``cell_error`` (h, w) float32: e per tested cell, NaN where untested.
    """

    y0: np.ndarray
    cold_pixels: np.ndarray
    cell_error: np.ndarray
    accepted: bool
    reason: str
    median_error: float
    rejected_fraction: float  # pixels cold-initialised because their cell failed the test
    cold_fraction: float  # all pixels that start cold (rejected + no prior)
    motion: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)  # a0, a1, a2, b
    # Median over valid source cells wholly covered by the prior of |down(Y0) / S - 1|, before the
    # motion correction (inf: no such cell): the coarse test the pipeline applies first
    # (WarmConfig.max_init_ratio_error), from the cell sums this test makes anyway.
    ratio_error: float = float("inf")
    # (h, w) bool: source cells holding a cold pixel (the warm run's Chebyshev region, per cell);
    # None on a declined prior.
    cold_cells: np.ndarray | None = None

    def stats(self) -> dict:
        """JSON-friendly summary (no arrays). Read field by field: ``asdict`` deep-copies the
        three arrays first (0.3-0.5 ms of a 640x480 warm frame)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)
             if f.name not in ("y0", "cold_pixels", "cell_error", "cold_cells")}
        d["motion"] = [float(x) for x in self.motion]
        return d


def cell_means(y: np.ndarray, partition: Partition) -> tuple[np.ndarray, np.ndarray]:
    """Mean over the finite pixels of each source cell and the finite fraction, both (h, w).

    Any ratio (the solver's partition). Cells without a finite pixel have mean NaN.
    """
    fin = np.isfinite(y)
    total = partition.cell_means(np.where(fin, y, np.float32(0)))  # sum of the finite pixels / cell size
    cov = partition.cell_means(fin)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(cov > 0, total / cov, np.nan)
    return mean.astype(np.float32), cov.astype(np.float32)


@functools.lru_cache(maxsize=8)
def _coords(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised (x, y) of the cell / pixel centres of an n x m grid: x in [-0.5, 0.5] across the
    width, y in the same unit (so the guide grid and the source grid share one coordinate frame).
    Cached (the frame size rarely changes), hence read-only."""
    y, x = np.mgrid[0:n, 0:m].astype(np.float32)
    x, y = (x + 0.5) / m - 0.5, ((y + 0.5) / n - 0.5) * (n / m)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def fit_depth_motion(prior_means: np.ndarray, source: np.ndarray, ok: np.ndarray,
                     rounds: int = 3, use_numba: bool | None = None) -> tuple[float, float, float, float]:
    """Robust least squares of  S = d * (a0 + a1 x + a2 y) + b  over the cells ``ok``.

    ``prior_means`` (h, w): the prior's cell means d; ``source`` (h, w) S. Each round refits on
    the cells whose relative residual is below max(3 x median, 1%) (outliers: moving objects,
    misaligned edges). Returns (a0, a1, a2, b); the identity (1, 0, 0, 0) with fewer than 8 cells.
    ``use_numba``: the gather and the residual rounds in numba (None: when installed); the same
    arithmetic in the same order as numpy, so the same fit (a test holds it).
    """
    h, w = source.shape
    x, y = _coords(h, w)
    use_numba = HAVE_NUMBA if use_numba is None else use_numba
    if use_numba:
        # 2 ms of a 640x480 warm frame in numpy (a gather and, per round, five passes and a median
        # over ~19k cells); one pass per round here
        cols, s = _design_numba(prior_means, source, np.ascontiguousarray(ok, dtype=np.bool_), x, y)
    else:
        d, s = prior_means[ok].astype(np.float64), source[ok].astype(np.float64)
        cols = np.stack([d, d * x[ok], d * y[ok], np.ones_like(d)])  # (4, n): the design matrix, transposed
    if s.size < 8:
        return 1.0, 0.0, 0.0, 0.0
    keep = np.ones(s.size, bool)
    p = np.array([1.0, 0.0, 0.0, 0.0])
    for _ in range(rounds):
        if np.count_nonzero(keep) < 8:
            break
        p = _least_squares(cols, s, keep, use_numba)
        if use_numba:
            keep = _inliers_numba(cols, s, p[0], p[1], p[2], p[3])
        else:
            r = np.abs(p[0] * cols[0] + p[1] * cols[1] + p[2] * cols[2] + p[3] - s) / s
            keep = r <= max(3.0 * float(np.median(r)), 0.01)
    return float(p[0]), float(p[1]), float(p[2]), float(p[3])


def _least_squares(cols: np.ndarray, b: np.ndarray, keep: np.ndarray, use_numba: bool = HAVE_NUMBA) -> np.ndarray:
    """argmin |cols.T p - b| over the columns ``keep`` of a (4, n) float64 ``cols``: the normal
    equations (a 4x4 solve), the SVD where they are ill-conditioned (a degenerate cell set).

    Not BLAS: OpenBLAS splits a product of ~20k cells over its thread pool, and with another
    process busy on a 2-core machine each call waited for a time slice (a round took 1-13 ms with
    ``np.linalg.lstsq``; a ``np.dot`` of two such columns up to 100 ms). One numba pass, or
    elementwise numpy sums without numba."""
    if use_numba:
        ata, atb = _normal_equations_numba(cols, b, keep)
    else:
        ck, bk = cols[:, keep], b[keep]
        n = ck.shape[0]
        ata = np.empty((n, n))
        for i in range(n):
            for j in range(i, n):
                ata[i, j] = ata[j, i] = float((ck[i] * ck[j]).sum())
        atb = np.array([float((c * bk).sum()) for c in ck])
    if np.linalg.cond(ata) < 1e10:
        return np.linalg.solve(ata, atb)
    return np.linalg.lstsq(cols[:, keep].T, b[keep], rcond=None)[0]


if HAVE_NUMBA:

    @njit(cache=True, nogil=True)
    def _normal_equations_numba(cols, b, keep):
        """A^T A and A^T b of the (4, n) design columns over ``keep``: each entry summed over the
        cells in order, in scalars (array accumulators kept it ~3x slower: 0.35 ms a round)."""
        s00 = s01 = s02 = s03 = s11 = s12 = s13 = s22 = s23 = s33 = 0.0
        t0 = t1 = t2 = t3 = 0.0
        for k in range(cols.shape[1]):
            if not keep[k]:
                continue
            c0, c1, c2, c3, bk = cols[0, k], cols[1, k], cols[2, k], cols[3, k], b[k]
            t0 += c0 * bk
            t1 += c1 * bk
            t2 += c2 * bk
            t3 += c3 * bk
            s00 += c0 * c0
            s01 += c0 * c1
            s02 += c0 * c2
            s03 += c0 * c3
            s11 += c1 * c1
            s12 += c1 * c2
            s13 += c1 * c3
            s22 += c2 * c2
            s23 += c2 * c3
            s33 += c3 * c3
        ata = np.array([[s00, s01, s02, s03], [s01, s11, s12, s13], [s02, s12, s22, s23], [s03, s13, s23, s33]])
        return ata, np.array([t0, t1, t2, t3])

    @njit(cache=True, nogil=True)
    def _design_numba(mean, src, ok, x, y):
        """The fit's (4, n) design columns (d, d x, d y, 1) and S over the cells ``ok``, float64,
        in numpy's boolean-indexing order (row-major)."""
        h, w = src.shape
        n = 0
        for i in range(h):
            for j in range(w):
                n += ok[i, j]
        cols = np.empty((4, n))
        s = np.empty(n)
        k = 0
        for i in range(h):
            for j in range(w):
                if ok[i, j]:
                    d = np.float64(mean[i, j])
                    cols[0, k] = d
                    cols[1, k] = d * np.float64(x[i, j])
                    cols[2, k] = d * np.float64(y[i, j])
                    cols[3, k] = 1.0
                    s[k] = np.float64(src[i, j])
                    k += 1
        return cols, s

    @njit(cache=True, nogil=True)
    def _inliers_numba(cols, s, p0, p1, p2, p3):
        """Cells whose relative residual |fit - S| / S is at most max(3 x its median, 1%)."""
        n = s.shape[0]
        r = np.empty(n)
        for k in range(n):
            r[k] = abs(p0 * cols[0, k] + p1 * cols[1, k] + p2 * cols[2, k] + p3 - s[k]) / s[k]
        limit = max(3.0 * np.median(r), 0.01)
        keep = np.empty(n, np.bool_)
        for k in range(n):
            keep[k] = r[k] <= limit
        return keep


def apply_depth_motion(y: np.ndarray, motion: tuple[float, float, float, float]) -> np.ndarray:
    """``y * (a0 + a1 x + a2 y) + b`` at full resolution (same normalised coordinates as the fit)."""
    a0, a1, a2, b = motion
    H, W = y.shape
    x, v = _coords(H, W)
    return (y * (a0 + a1 * x + a2 * v) + b).astype(np.float32)


if HAVE_NUMBA:
    # The acceptance's three passes over the full-resolution prior, one loop each instead of
    # 5-8 numpy passes (7-12 ms of a 640x480 warm frame in numpy, ~2 ms here). Cell sums in
    # float64. The two that every warm frame runs take the cell rows in parallel (session 15:
    # serial, they left the second core idle while the main thread waited for them; the solve's
    # preparation beside the alignment is done by then); the fallback moved pass stays serial.

    @njit(cache=True, nogil=True, parallel=True)
    def _prior_cells_numba(y, tracked, row_start, cols, h, w, xs, ys):
        """Sum and count of the finite, positive pixels per cell; tracked pixels among them; per
        cell the sums of v * x and v * y (normalised coordinates ``xs``, ``ys``), so the cell sums
        of the motion-corrected prior follow without a pass of their own; the smallest such pixel.
        Cell rows in parallel (pixel rows ``row_start[r]`` to ``row_start[r + 1]``): each thread
        owns its cells and sums them in the serial order, so the sums do not depend on the threads."""
        H, W = y.shape
        total = np.zeros((h, w))
        count = np.zeros((h, w))
        sum_x = np.zeros((h, w))
        sum_y = np.zeros((h, w))
        row_tracked = np.zeros(h, np.int64)
        row_min = np.full(h, np.inf)
        for r in prange(h):
            n_tracked = 0
            v_min = np.inf
            for i in range(row_start[r], row_start[r + 1]):
                yi = np.float64(ys[i])
                for j in range(W):
                    v = y[i, j]
                    if np.isfinite(v) and v > 0:
                        c = cols[j]
                        vd = np.float64(v)
                        total[r, c] += vd
                        count[r, c] += 1.0
                        sum_x[r, c] += vd * xs[j]
                        sum_y[r, c] += vd * yi
                        v_min = min(v_min, vd)
                        if tracked[i, j]:
                            n_tracked += 1
            row_tracked[r] = n_tracked
            row_min[r] = v_min
        return total, count, row_tracked.sum(), sum_x, sum_y, row_min.min()

    @njit(cache=True, nogil=True, inline="always")
    def _moved(v, a0, a1, xj, ty, b):
        """One prior pixel moved by the depth motion (float32 arithmetic in numpy's order; ``ty`` =
        a2 * y of its row): the moved pass and the keep pass share it, so their values agree bit for bit."""
        return v * ((a0 + a1 * xj) + ty) + b

    @njit(cache=True, nogil=True)
    def _moved_cells_numba(y, a0, a1, a2, b, xs, ys, rows, cols, h, w, out):
        """``out`` = the depth-motion-corrected prior (float32 arithmetic in numpy's order, NaN
        where it is not finite and positive before and after), with its per-cell sum and count."""
        H, W = y.shape
        total = np.zeros((h, w))
        count = np.zeros((h, w))
        for i in range(H):
            r = rows[i]
            ty = a2 * ys[i]
            for j in range(W):
                v = y[i, j]
                out[i, j] = np.nan
                if not (np.isfinite(v) and v > 0):
                    continue
                m = _moved(v, a0, a1, xs[j], ty, b)
                if m > 0:
                    out[i, j] = m
                    total[r, cols[j]] += m
                    count[r, cols[j]] += 1.0
        return total, count

    @njit(cache=True, nogil=True, parallel=True)
    def _keep_numba(y, bad, row_start, cols, out, cold, cell_cold, a0, a1, a2, b, xs, ys):
        """``out`` = ``y`` moved by the depth motion (a0, a1, a2, b: ``_moved``; identity: 1, 0,
        0, 0) where ``y`` is finite and positive, the
        moved value positive and its cell passed, NaN elsewhere; ``cold`` the complement,
        ``cell_cold`` (zeroed by the caller) the cells holding a cold pixel. Returns (pixels in
        rejected cells, cold pixels). Cell rows in parallel, as :func:`_prior_cells_numba`."""
        H, W = y.shape
        h = row_start.shape[0] - 1
        row_rejected = np.zeros(h, np.int64)
        row_cold = np.zeros(h, np.int64)
        identity = a0 == 1 and a1 == 0 and a2 == 0 and b == 0
        for r in prange(h):
            n_rejected = 0
            n_cold = 0
            for i in range(row_start[r], row_start[r + 1]):
                ty = a2 * ys[i]
                for j in range(W):
                    v = y[i, j]
                    rej = bad[r, cols[j]]
                    n_rejected += rej
                    m = v
                    if not identity and np.isfinite(v) and v > 0:
                        m = _moved(v, a0, a1, xs[j], ty, b)
                    if rej or not (np.isfinite(v) and v > 0 and m > 0):
                        out[i, j] = np.nan
                        cold[i, j] = True
                        cell_cold[r, cols[j]] = True
                        n_cold += 1
                    else:
                        out[i, j] = m
                        cold[i, j] = False
            row_rejected[r] = n_rejected
            row_cold[r] = n_cold
        return row_rejected.sum(), row_cold.sum()


def _means(total: np.ndarray, count: np.ndarray, part: Partition) -> tuple[np.ndarray, np.ndarray]:
    """(mean over the counted pixels, counted fraction of the cell), both (h, w) float32."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
    return mean.astype(np.float32), (count / part.cell_sizes()).astype(np.float32)


def accept_prior(y0: np.ndarray, source: np.ndarray, tracked: np.ndarray | None = None,
                 config: AcceptConfig | None = None, use_numba: bool | None = None,
                 max_ratio_error: float | None = None) -> Acceptance:
    """Decide per pixel where the warped previous output ``y0`` is kept; see the module docstring.

    Args:
        y0: (H, W) warped previous output in metres, NaN where there is none.
        source: (h, w) current low-resolution depth in metres (0 / NaN / <= 0 invalid).
        tracked: (H, W) bool, pixels the alignment tracked (None: every finite pixel of ``y0``).
        config: :class:`AcceptConfig`.
        use_numba: force (True) or avoid (False) the numba passes; None = when available. Both
            give the same decisions (cell sums in float64 there, OpenCV's float32 area sums here).
        max_ratio_error: decline at once, before the motion fit and the cell tests, when
            ``ratio_error`` (see :class:`Acceptance`) is above this (None: no such test).
    Returns:
        :class:`Acceptance`; when ``accepted`` is False the frame should start cold (``reason``).
    """
    cfg = config or AcceptConfig()
    cfg.validate()
    y0 = np.asarray(y0, dtype=np.float32)
    src = np.asarray(source, dtype=np.float32)
    if y0.ndim != 2 or src.ndim != 2:
        raise DadaInputError(f"prior and source must be 2-D, got {y0.shape} and {src.shape}")
    if tracked is not None and np.shape(tracked) != y0.shape:
        raise DadaInputError(f"tracked mask {np.shape(tracked)} must have the prior's shape {y0.shape}")
    use_numba = HAVE_NUMBA if use_numba is None else use_numba
    if use_numba and not HAVE_NUMBA:
        raise DadaInputError("the numba acceptance passes need numba installed")
    part = Partition(y0.shape, src.shape)
    valid = valid_source_mask(src)
    h, w = src.shape
    rows, cols = cell_index(y0.shape[0], h), cell_index(y0.shape[1], w)

    def declined(reason: str, motion=(1.0, 0.0, 0.0, 0.0)) -> Acceptance:
        finite = np.isfinite(y0) & (y0 > 0)
        cold = ~finite
        return Acceptance(np.where(finite, y0, np.nan).astype(np.float32), cold,
                          np.full((h, w), np.nan, np.float32), False, reason, float("nan"), 0.0,
                          float(cold.mean()), motion, ratio_error)

    if use_numba:
        trk = np.ones(y0.shape, bool) if tracked is None else np.ascontiguousarray(tracked, dtype=np.bool_)
        y0 = np.ascontiguousarray(y0)
        xg, yg = _coords(*y0.shape)
        xs, ys = xg[0], yg[:, 0]
        row_start = part.cell_starts()[0]
        total, count, n_tracked, sum_x, sum_y, v_min = _prior_cells_numba(y0, trk, row_start, cols, h, w, xs, ys)
        tracked_frac = n_tracked / y0.size
        mean, cov = _means(total, count, part)
    else:
        finite = np.isfinite(y0) & (y0 > 0)
        y0 = np.where(finite, y0, np.nan).astype(np.float32)
        tracked_frac = float((finite if tracked is None else (np.asarray(tracked, bool) & finite)).mean())
        mean, cov = cell_means(y0, part)
    whole = valid & (cov >= 1.0 - 1e-6)  # every pixel of the cell has a prior (float32 area sums: not exactly 1)
    ratio_error = float(np.median(np.abs(mean[whole] / src[whole] - 1.0))) if whole.any() else float("inf")
    if max_ratio_error is not None and ratio_error > max_ratio_error:
        return declined(f"previous output disagrees with the new depth (median ratio error {ratio_error:.2f})")
    if tracked_frac < cfg.min_tracked_fraction:
        return declined(f"only {tracked_frac:.0%} of pixels tracked (< {cfg.min_tracked_fraction:.0%})")
    tested = valid & (cov >= cfg.cell_coverage) & np.isfinite(mean)
    if not tested.any():
        return declined("no source cell covered by the previous output")
    motion = (1.0, 0.0, 0.0, 0.0)
    keep_motion = (np.float32(1), np.float32(0), np.float32(0), np.float32(0))  # applied by the keep pass
    if cfg.motion_model:
        motion = fit_depth_motion(mean, src, tested & (cov >= 0.99), use_numba=use_numba)
        if abs(motion[0] - 1.0) > cfg.max_scale_change or abs(motion[3]) > cfg.max_offset:
            return declined(f"previous output does not follow a rigid motion (fit a0={motion[0]:.2f}, "
                            f"b={motion[3]:.2f} m)", motion)
        if use_numba:
            a0, a1, a2, b = motion
            # Every moved pixel stays positive (the smallest prior pixel times the smallest factor
            # over the image, plus b, with a margin for float32): the moved cell sums follow from
            # the first pass's moments, and the keep pass below applies the motion. Otherwise a
            # pass of its own (it drops the pixels the motion makes <= 0 from the sums).
            f_min = a0 - abs(a1) * float(np.abs(xs).max()) - abs(a2) * float(np.abs(ys).max())
            if f_min > 0 and v_min * f_min + b > 1e-4 * max(1.0, v_min):
                with np.errstate(invalid="ignore", divide="ignore"):
                    mean = np.where(count > 0, (a0 * total + a1 * sum_x + a2 * sum_y + b * count) / count,
                                    np.nan).astype(np.float32)
                keep_motion = tuple(np.float32(m) for m in motion)
            else:
                moved = np.empty_like(y0)
                total, count = _moved_cells_numba(y0, *(np.float32(m) for m in motion), xs, ys, rows, cols,
                                                  h, w, moved)
                y0 = moved
                mean, cov = _means(total, count, part)
        else:
            y0 = apply_depth_motion(y0, motion)
            y0 = np.where(y0 > 0, y0, np.nan).astype(np.float32)
            mean, cov = cell_means(y0, part)
        tested &= np.isfinite(mean)
    err = np.full((h, w), np.nan, np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        err[tested] = np.abs(src[tested] - mean[tested]) / src[tested]
    med = float(np.median(err[tested]))
    bad = tested & (err > cfg.reject_cell_error)
    dilate = FREE_DILATE_CELLS if cfg.dilate_cells is None else int(cfg.dilate_cells)
    if dilate > 0 and bad.any():
        k = 2 * dilate + 1
        bad = cv2.dilate(bad.astype(np.uint8), np.ones((k, k), np.uint8)) > 0
    if use_numba:
        y_keep, cold = np.empty_like(y0), np.empty(y0.shape, np.bool_)
        cell_cold = np.zeros((h, w), np.bool_)
        n_rej, n_cold = _keep_numba(y0, np.ascontiguousarray(bad, dtype=np.bool_), row_start, cols, y_keep, cold,
                                    cell_cold, *keep_motion, xs, ys)
        rej_frac, cold_frac = n_rej / y0.size, n_cold / y0.size
    else:
        rejected = part.expand(bad)
        cold = rejected | ~np.isfinite(y0)
        rej_frac, cold_frac = float(rejected.mean()), float(cold.mean())
        y_keep = np.where(cold, np.nan, y0).astype(np.float32)
        cell_cold = part.cell_means(cold) > 0
    reason = ""
    if med > cfg.max_median_error:
        reason = f"previous output disagrees with the new depth (median cell error {med:.3f} > {cfg.max_median_error})"
    elif cold_frac > cfg.max_reject_fraction:
        reason = (f"previous output disagrees with the new depth on {cold_frac:.0%} of the image "
                  f"(> {cfg.max_reject_fraction:.0%})")
    return Acceptance(y_keep, cold, err, not reason, reason, med, rej_frac, cold_frac, motion, ratio_error, cell_cold)
