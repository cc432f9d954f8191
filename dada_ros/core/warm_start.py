"""Motion-compensated warm start: the previous output warped onto the current frame.

Under camera motion the previous output used as is (a "naive" warm start) puts every depth edge
in the wrong place and loses to a cold start; warped by dense optical flow between the two RGB
guides it carries the previous frames' sub-block detail onto the current grid, so a short run
from it is a temporal fusion (fewer iterations AND a lower error than the single-frame answer).

Flow is computed from the CURRENT guide to the PREVIOUS one, so the previous depth can be
sampled backward (every current pixel gets a value or is marked invalid; no splatting holes).

How a pixel is sampled matters more than anything else here. The error of a depth map is
concentrated on its depth edges (a pixel on the wrong side of a 2 m step costs 40000 cm^2), and
a sub-pixel flow puts the sample position between pixels at every edge. Measured on generated
sequences (x8, 320x240, ``benchmarks/warm_start.py``): warping the GROUND TRUTH of the previous
frame onto the current one costs 400-900 cm^2 MSE with nearest or bilinear sampling -- more
than the whole error of the single-frame answer -- and 10-60 cm^2 with the colour-guided
selection used here:

* ``select`` (default): among the previous pixels in a (2r+1)^2 window around the flow target,
  take the one whose previous-guide colour is closest to the current pixel's colour (plus a
  small penalty on the distance to the exact target, so flat regions keep the nearest pixel).
  At a colour edge this picks the correct side even when the flow is off by a pixel or two
  (flow is smooth across motion boundaries). A pixel whose best colour error is still large
  (occluded / disoccluded, or the flow failed) is marked invalid.
* ``nearest`` / ``linear``: plain ``cv2.remap`` sampling (for comparison).

Invalid pixels are then filled from valid 4-neighbours of similar colour (a few propagation
passes, so a thin disocclusion sliver takes the depth of the surface it belongs to); what is
left stays NaN and takes the solver's cold initialisation.

Exposure / white-balance changes (auto-exposure of a hand-held or robot camera) break the
brightness constancy both the flow and the colour selection rely on: with
``compensate_exposure`` the previous guide is first scaled per channel by the ratio of the two
guides' channel means (skipped when every gain is within 2% of 1, so ordinary frames are aligned
exactly as before).

A scene cut or a failed flow (photometric error of the flow-warped previous guide, or too few
tracked pixels) is reported so the caller starts cold. Whether the warped output then fits the new
depth, per pixel, is :mod:`.warm_accept`'s job.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from .coefficients import guide_to_unit_float
from .errors import DadaInputError

# numba is optional: without it the same selection runs in numpy (slower, same answer). The
# decorator comes from fused_cpu, which chooses a writable cache folder first (read-only install).
from .fused_cpu import HAVE_NUMBA

if HAVE_NUMBA:
    from .fused_cpu import njit, prange

WARPS = ("select", "nearest", "linear")
MIN_FLOW_SIDE = 32
# AlignConfig.variational_iterations and its cheap flow tier apply when the flow image's shorter side is at least this;
# a smaller flow image keeps the preset's refinement (its patches are coarse against the image: on
# a 128x96 pan the unrefined flow left 5.5-6.3% of the image cold against 2.7-5.6%, at < 1 ms).
MIN_UNREFINED_FLOW_SIDE = 100
# AlignConfig.cheap_max_px when None outside a FramePipeline (see AlignConfig)
CHEAP_FLOW_MAX_PX = 5.0


@dataclass
class AlignConfig:
    """Settings of :func:`align_previous` (defaults measured in ``benchmarks/warm_start.py``)."""

    # Flow on the guide resized by this factor (<= 1), DIS preset. The colour-guided selection
    # absorbs a pixel or two of flow error, so a cheap flow is enough: at 640x480 x8 (generated
    # pan / rotation / forward sequences, 8 frames) ultrafast at half resolution gave 0.894 / 0.888
    # / 0.893 x the cold MSE vs 0.882 / 0.888 / 0.913 for medium at half resolution, for 0.4 ms of
    # flow instead of 4 ms (whole alignment 6.4 ms vs 11 ms, one idle core).
    # Session 5: the medium preset and a radius of 3 (with the refinement off, below, about +4 ms
    # of flow at 640x480) after a frame drop (8 px/frame of pan with parallax) showed ultrafast's
    # errors at depth edges that the 2-pixel selection cannot absorb (warm up to 1.07x the cold
    # solve, 1.02-1.03x with medium);
    # chosen on the pan and drop sequences, every other motion held out (doc/warm_start.md).
    flow_scale: float = 0.5
    preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM
    # DIS variational refinement iterations (None: the preset's own; medium: 5). Off: the flow at
    # half resolution takes 4.7 ms instead of 10 and the warm frames were as good (pan / drop
    # 0.938 (0.951) / 0.979 (1.011) against 0.938 (0.949) / 0.976 (1.017)): the colour-guided
    # selection already does the sub-pixel placement the refinement would. Flow images under
    # MIN_UNREFINED_FLOW_SIDE keep the preset's refinement.
    variational_iterations: int | None = 0
    # Two tiers (session 13): the flow is first computed with ``cheap_preset`` (0.5 ms at 320x240
    # against 3 ms); when the view moved at most ``cheap_max_px`` (mean |flow|, full-resolution
    # pixels) that flow is kept, otherwise the ``preset`` flow is computed and used. The cheaper
    # flows lost where the view moved far (a frame drop's 8 px with parallax: edges 2-8 px off,
    # beyond the selection's window); on slow motion the selection absorbs most of their error.
    # None for cheap_max_px: CHEAP_FLOW_MAX_PX here, and in FramePipeline its slow-motion
    # threshold (5 px with DADA-free, off with a learned guide): the cheap flow serves the frames
    # whose warm start is cheap (40 applications), where 3 ms is a tenth of the frame.
    # cheap_preset None: always ``preset``. Measured in doc/warm_start.md (session 13).
    cheap_preset: int | None = cv2.DISOPTICAL_FLOW_PRESET_FAST
    cheap_max_px: float | None = None
    warp: str = "select"  # select | nearest | linear (see the module docstring)
    search_radius: int = 3  # select: window (2r+1)^2 around the rounded flow target
    distance_weight: float = 0.005  # select: score = mean |dRGB| (0..1) + this * distance^2 (px^2)
    # select: the flow target's own pixel is taken without searching the window when its colour
    # error is at most this (flat regions: most pixels; halves the cost at 640x480). 0 = always search.
    accept_color_error: float = 0.01
    max_color_error: float = 0.1  # select: best score above this = not tracked (occlusion)
    fill_color_tolerance: float = 0.06  # fill: propagate into a hole only across |dRGB| <= this
    fill_passes: int = 16  # fill: propagation passes (pixels reached from a tracked pixel)
    # Forward-backward consistency (a second flow, previous -> current). Off by default: it
    # doubles the flow cost, and on generated sequences masking its failures was measured to do
    # worse than the colour test above.
    forward_backward: bool = False
    fb_abs_px: float = 1.0  # allowed |f + b| in pixels ...
    fb_rel: float = 0.05  # ... plus this fraction of the flow magnitude
    # Cut tests. Measured on generated sequences (320x240): consecutive frames under pan, rotation
    # and forward motion 0.002-0.004 and >= 99% tracked; a cut 0.14 and 26% tracked.
    cut_photometric: float = 0.08  # mean |flow-warped prev gray - cur gray| in [0, 1] above this = cut
    min_valid_fraction: float = 0.5  # fewer tracked pixels than this = cut
    # Scale the previous guide per channel to the current one's channel means before the flow and
    # the selection (exposure / white-balance change); see the module docstring.
    compensate_exposure: bool = True

    def validate(self) -> None:
        if not 0 < self.flow_scale <= 1:
            raise DadaInputError(f"flow_scale must be in (0, 1], got {self.flow_scale}")
        if self.warp not in WARPS:
            raise DadaInputError(f"warp must be one of {', '.join(WARPS)}, got {self.warp!r}")
        if int(self.search_radius) != self.search_radius or not 0 <= self.search_radius <= 5:
            raise DadaInputError(f"search_radius must be an integer in 0..5, got {self.search_radius}")
        if int(self.fill_passes) != self.fill_passes or self.fill_passes < 0:
            raise DadaInputError(f"fill_passes must be an integer >= 0, got {self.fill_passes}")
        if self.variational_iterations is not None and (
                int(self.variational_iterations) != self.variational_iterations or self.variational_iterations < 0):
            raise DadaInputError(f"variational_iterations must be None or an integer >= 0, got {self.variational_iterations}")
        if self.cheap_max_px is not None and not (np.isfinite(self.cheap_max_px) and self.cheap_max_px >= 0):
            raise DadaInputError(f"cheap_max_px must be None or a finite number >= 0, got {self.cheap_max_px}")
        for name in ("distance_weight", "accept_color_error", "max_color_error", "fill_color_tolerance", "fb_abs_px", "fb_rel",
                     "cut_photometric", "min_valid_fraction"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0):
                raise DadaInputError(f"{name} must be a finite number >= 0, got {v}")


@dataclass
class AlignInfo:
    """What the alignment found (JSON-friendly via ``as_dict``)."""

    flow_ms: float  # flow + warp + fill, milliseconds
    valid_fraction: float  # pixels tracked from the previous frame
    photometric_error: float  # mean |flow-warped previous gray - current gray|, [0, 1]
    cut: bool
    reason: str = ""
    filled_fraction: float = 0.0  # untracked pixels given a depth by the colour-guided fill
    exposure_gain: tuple[float, float, float] = (1.0, 1.0, 1.0)  # applied to the previous guide
    mean_flow_px: float = float("nan")  # mean |flow| over the image, guide pixels (how far the view moved)
    flow_tier: str = ""  # which flow was used: "cheap" or "precise" (AlignConfig.cheap_preset)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Alignment:
    """Result of :func:`align_frames`.

    ``y0`` (H, W) float32 metres: the warped previous depth, filled where possible, NaN elsewhere;
    ``valid`` (H, W) bool: tracked pixels (excludes occlusions, disocclusions, out of frame and
    filled pixels); ``source_index`` (H, W) int64: flat index of the previous-frame pixel each
    tracked pixel came from, -1 elsewhere (to carry per-pixel state such as an age map).
    """

    y0: np.ndarray
    valid: np.ndarray
    source_index: np.ndarray
    info: AlignInfo


def _rgb8(guide: np.ndarray) -> np.ndarray:
    """Guide as contiguous (H, W, 3) uint8 RGB (uint8 input is used as is: no copy per frame)."""
    g = np.asarray(guide)
    if g.dtype == np.uint8 and g.ndim == 3 and g.shape[2] == 3:
        return np.ascontiguousarray(g)
    return np.ascontiguousarray((guide_to_unit_float(g) * 255 + 0.5).astype(np.uint8))


def _gray_u8(rgb8: np.ndarray, scale: float) -> np.ndarray:
    g = cv2.cvtColor(rgb8, cv2.COLOR_RGB2GRAY)
    if scale != 1.0:
        g = cv2.resize(g, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return g


def exposure_gain(prev8: np.ndarray, cur8: np.ndarray) -> np.ndarray:
    """Per-channel gain (3,) that maps the previous guide's channel means onto the current one's."""
    mp = np.asarray(cv2.mean(prev8)[:3], np.float64)
    mc = np.asarray(cv2.mean(cur8)[:3], np.float64)
    return (mc / np.maximum(mp, 1.0)).astype(np.float32)


def dense_flow(src_gray: np.ndarray, dst_gray: np.ndarray, preset: int,
               variational_iterations: int | None = None) -> np.ndarray:
    """DIS optical flow (H, W, 2): pixel p of ``src`` corresponds to p + flow(p) in ``dst``
    (``variational_iterations``: the refinement's iterations, None = the preset's)."""
    dis = cv2.DISOpticalFlow_create(preset)
    if variational_iterations is not None:
        dis.setVariationalRefinementIterations(int(variational_iterations))
    return dis.calc(src_gray, dst_gray, None)


def _flow(a8: np.ndarray, b8: np.ndarray, cfg: AlignConfig) -> tuple[np.ndarray, float, float, str]:
    """Flow from guide ``a`` to guide ``b`` at full resolution (computed at ``flow_scale``).

    Returns (flow (H, W, 2), photometric error of ``b`` warped onto ``a`` by the flow at the flow
    resolution (mean |d gray| in [0, 1] over in-frame pixels), mean |flow| in full-resolution pixels,
    the tier that gave it: "cheap" (``cheap_preset``) or "precise" (``preset``)).
    """
    H, W = a8.shape[:2]
    # Tiny images: no downscaling below MIN_FLOW_SIDE pixels (DIS needs a few patches per side).
    scale = cfg.flow_scale if min(H, W) * cfg.flow_scale >= MIN_FLOW_SIDE else 1.0
    ga, gb = _gray_u8(a8, scale), _gray_u8(b8, scale)
    refine = cfg.variational_iterations if min(ga.shape[:2]) >= MIN_UNREFINED_FLOW_SIDE else None
    h, w = ga.shape[:2]
    to_full = np.array([W / w, H / h], np.float32)  # vectors in small-image pixels -> full-resolution pixels
    small, tier, moved = None, "cheap", float("nan")
    limit = CHEAP_FLOW_MAX_PX if cfg.cheap_max_px is None else cfg.cheap_max_px
    # Below MIN_UNREFINED_FLOW_SIDE the flow is cheap anyway and the cheap preset's coarser patches
    # fail: on a 128x96 pan (a 64x48 flow image) it left 5-7% of the image cold, every warm start declined.
    if (cfg.cheap_preset is not None and cfg.cheap_preset != cfg.preset and limit > 0
            and min(h, w) >= MIN_UNREFINED_FLOW_SIDE):
        small = dense_flow(ga, gb, cfg.cheap_preset, refine)
        moved = _mean_magnitude(small, to_full)
        if not moved <= limit:
            small = None  # the view moved far: the precise flow
    if small is None:
        small, tier = dense_flow(ga, gb, cfg.preset, refine), "precise"
        moved = _mean_magnitude(small, to_full)
    # OpenCV passes on the flow image (0.5 ms at 320x240 against 2 ms of numpy temporaries):
    # absolute sampling positions, the in-frame mask, the warp and the mean difference inside.
    maps = cv2.add(_pixel_grid(h, w), small)
    inside = cv2.inRange(maps, (0.0, 0.0), (w - 1.0, h - 1.0))
    warped = cv2.remap(gb, maps, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    photo = cv2.mean(cv2.absdiff(warped, ga), mask=inside)[0] / 255.0 if cv2.countNonZero(inside) else float("inf")
    fl = small
    if (h, w) != (H, W):  # scaled on the small image (a quarter of the pixels), then resized
        fl = cv2.resize(small * to_full, (W, H), interpolation=cv2.INTER_LINEAR)
    return fl, photo, moved, tier


def _mean_magnitude(small: np.ndarray, to_full: np.ndarray) -> float:
    """Mean |flow| of a flow image in full-resolution pixels (float32 on the small flow: one pass;
    np.hypot in float64 cost 0.4 ms at 320x240)."""
    return float(cv2.magnitude(small[:, :, 0] * to_full[0], small[:, :, 1] * to_full[1]).mean())


@functools.lru_cache(maxsize=4)
def _pixel_grid(h: int, w: int) -> np.ndarray:
    """(column, row) coordinates of every pixel, (h, w, 2) float32 (cached per size, read-only)."""
    u, v = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    grid = np.ascontiguousarray(np.stack([u, v], axis=2))
    grid.flags.writeable = False
    return grid


# ----------------------------------------------------------------------------- colour-guided selection
def _window_offsets(radius: int) -> np.ndarray:
    """(dy, dx) of the selection window, ring by ring (Chebyshev distance), raster order in a ring.

    Both implementations visit taps in this order and keep the first of equal scores, so they
    agree exactly; the numba kernel skips ring k when the best score so far is below the distance
    penalty every tap of ring k pays (>= weight * (k - 1/2)^2): the same answer, fewer taps.
    """
    offs = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    return np.array(sorted(offs, key=lambda o: max(abs(o[0]), abs(o[1]))), dtype=np.int64).reshape(-1, 2)


def _select_numpy(prev_depth, prev_rgb, cur_rgb, flow, radius, beta, accept):
    H, W = prev_depth.shape
    u, v = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    mx = u + flow[:, :, 0]
    my = v + flow[:, :, 1]
    inside = (mx >= -0.5) & (mx < W - 0.5) & (my >= -0.5) & (my < H - 0.5)
    rx = np.floor(mx + np.float32(0.5)).astype(np.int64)
    ry = np.floor(my + np.float32(0.5)).astype(np.int64)
    best = np.full((H, W), np.inf, np.float32)
    idx = np.full((H, W), -1, np.int64)
    pd = prev_depth.reshape(-1)
    pc = prev_rgb.reshape(-1, 3).astype(np.int32)
    cur = cur_rgb.astype(np.int32)
    accepted = np.zeros((H, W), bool)
    for t, (dy, dx) in enumerate(_window_offsets(radius)):
        xi = rx + dx
        yi = ry + dy
        inb = inside & (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
        flat = np.where(inb, yi * W + xi, 0)
        d = pd[flat]
        c = pc[flat]
        diff = (np.abs(c[:, :, 0] - cur[:, :, 0]) + np.abs(c[:, :, 1] - cur[:, :, 1])
                + np.abs(c[:, :, 2] - cur[:, :, 2])).astype(np.float32) / np.float32(3 * 255)
        ex = xi.astype(np.float32) - mx
        ey = yi.astype(np.float32) - my
        pen = np.float32(beta) * (ex * ex + ey * ey)
        score = (diff + pen).astype(np.float32)
        sel = inb & np.isfinite(d) & (d > 0) & (score < best) & ~accepted
        best = np.where(sel, score, best)
        idx = np.where(sel, flat, idx)
        if t == 0:  # the flow target's own pixel, good enough: no search
            accepted = sel & (diff <= np.float32(accept))
    y = np.where(idx >= 0, pd[np.maximum(idx, 0)], np.nan).astype(np.float32)
    return y, best, idx


if HAVE_NUMBA:

    # Rows in parallel (session 11: 4.5 -> 2.3 ms at 640x480, r = 3, on 2 idle cores; an earlier
    # OpenMP version was measured slower, 16 vs 7.7 ms, while the solve's preparation shared the
    # cores). nogil (here, in the fill and the acceptance): the preparation runs on a second
    # thread meanwhile (WarmConfig.overlap_prepare), which the GIL would otherwise serialise.
    # A best score above ``max_score`` leaves the pixel untracked (NaN, index -1).
    @njit(parallel=True, cache=True, nogil=True)
    def _select_numba(prev_depth, prev_rgb, cur_rgb, flow, offsets, beta, accept, max_score, out_y, out_score,
                      out_idx):
        H, W = prev_depth.shape
        n_taps = offsets.shape[0]
        for i in prange(H):
            for j in range(W):
                mx = np.float32(j) + flow[i, j, 0]
                my = np.float32(i) + flow[i, j, 1]
                out_y[i, j] = np.nan
                out_score[i, j] = np.inf
                out_idx[i, j] = -1
                if not (mx >= -0.5 and mx < W - 0.5 and my >= -0.5 and my < H - 0.5):
                    continue
                rx = int(np.floor(mx + np.float32(0.5)))
                ry = int(np.floor(my + np.float32(0.5)))
                best = np.float32(np.inf)
                c0 = np.int32(cur_rgb[i, j, 0])
                c1 = np.int32(cur_rgb[i, j, 1])
                c2 = np.int32(cur_rgb[i, j, 2])
                for t in range(n_taps):
                    dy = offsets[t, 0]
                    dx = offsets[t, 1]
                    ring = max(abs(dy), abs(dx))
                    if ring >= 2:
                        bound = np.float32(ring) - np.float32(0.5)
                        if best < beta * bound * bound:
                            break  # no tap of this or a farther ring can score lower
                    yi = ry + dy
                    xi = rx + dx
                    if yi < 0 or yi >= H or xi < 0 or xi >= W:
                        continue
                    ex = np.float32(xi) - mx
                    ey = np.float32(yi) - my
                    pen = beta * (ex * ex + ey * ey)
                    if not pen < best:  # the colour term is >= 0: this tap cannot win
                        continue
                    d = prev_depth[yi, xi]
                    if not (np.isfinite(d) and d > 0):
                        continue
                    isum = (abs(np.int32(prev_rgb[yi, xi, 0]) - c0) + abs(np.int32(prev_rgb[yi, xi, 1]) - c1)
                            + abs(np.int32(prev_rgb[yi, xi, 2]) - c2))
                    diff = np.float32(isum) / np.float32(3 * 255)
                    score = np.float32(diff + pen)
                    if score < best:
                        best = score
                        out_y[i, j] = d
                        out_idx[i, j] = yi * W + xi
                    if t == 0 and diff <= accept:
                        break  # the flow target's own pixel, good enough: no search
                out_score[i, j] = best
                if not best <= max_score:
                    out_y[i, j] = np.nan
                    out_idx[i, j] = -1

    @njit(cache=True, nogil=True)
    def _holes_numba(ok):
        """Row and column of every pixel where ``ok`` is False (np.nonzero(~ok) without the
        full-size inverted mask and index temporaries: 0.5 ms at 640x480 for a few holes)."""
        H, W = ok.shape
        n = 0
        for i in range(H):
            for j in range(W):
                n += not ok[i, j]
        hi = np.empty(n, np.int64)
        hj = np.empty(n, np.int64)
        k = 0
        for i in range(H):
            for j in range(W):
                if not ok[i, j]:
                    hi[k] = i
                    hj[k] = j
                    k += 1
        return hi, hj

    @njit(cache=True, nogil=True)
    def _fill_numba(y, ok, rgb, tol, passes, hi, hj):
        """Jacobi passes over the holes (hi, hj) only; y / ok updated in place."""
        H, W = y.shape
        n = hi.shape[0]
        new_v = np.empty(n, np.float32)
        new_ok = np.zeros(n, np.bool_)
        for _ in range(passes):
            changed = False
            for k in range(n):
                i = hi[k]
                j = hj[k]
                new_ok[k] = False
                if ok[i, j]:
                    continue
                best = np.float32(np.inf)
                for q in range(4):
                    ni = i + (0, 0, 1, -1)[q]
                    nj = j + (1, -1, 0, 0)[q]
                    if ni < 0 or ni >= H or nj < 0 or nj >= W or not ok[ni, nj]:
                        continue
                    isum = (abs(np.int32(rgb[ni, nj, 0]) - np.int32(rgb[i, j, 0]))
                            + abs(np.int32(rgb[ni, nj, 1]) - np.int32(rgb[i, j, 1]))
                            + abs(np.int32(rgb[ni, nj, 2]) - np.int32(rgb[i, j, 2])))
                    diff = np.float32(isum) / np.float32(3 * 255)
                    if diff <= tol and diff < best:
                        best = diff
                        new_v[k] = y[ni, nj]
                        new_ok[k] = True
            for k in range(n):
                if new_ok[k]:
                    y[hi[k], hj[k]] = new_v[k]
                    ok[hi[k], hj[k]] = True
                    changed = True
            if not changed:
                break


def select_warp(prev_depth: np.ndarray, prev_guide: np.ndarray, cur_guide: np.ndarray, flow: np.ndarray,
                radius: int = 2, distance_weight: float = 0.005, accept_color_error: float = 0.0,
                use_numba: bool | None = None, max_score: float = np.inf) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour-guided backward warp (see the module docstring).

    Args:
        prev_depth: (H, W) previous depth (NaN / <= 0: no value there).
        prev_guide, cur_guide: (H, W, 3) RGB guides (uint8 used as is; uint16 / float in [0, 1]
            converted to uint8). Colour errors are mean |dRGB| scaled to [0, 1].
        flow: (H, W, 2) current -> previous flow in pixels.
        radius, distance_weight: window half-size and distance penalty of the score.
        accept_color_error: take the flow target's own pixel without searching when its colour
            error is at most this (0: always search the whole window).
        use_numba: force (True) or avoid (False) the numba kernel; None = when available.
        max_score: a pixel whose best score is above this keeps no selection (NaN, index -1; its
            score is still returned).
    Returns:
        (y, score, index): selected depth (NaN where none), best score (inf where none) and the
        flat index of the selected previous pixel (-1 where none), all (H, W).
    """
    pd = np.ascontiguousarray(prev_depth, dtype=np.float32)
    pr = _rgb8(prev_guide)
    cr = _rgb8(cur_guide)
    fl = np.ascontiguousarray(flow, dtype=np.float32)
    if use_numba is None:
        use_numba = HAVE_NUMBA
    if use_numba and not HAVE_NUMBA:
        raise DadaInputError("the numba selection kernel needs numba installed")
    if use_numba:
        y = np.empty(pd.shape, np.float32)
        score = np.empty(pd.shape, np.float32)
        idx = np.empty(pd.shape, np.int64)
        _select_numba(pd, pr, cr, fl, _window_offsets(int(radius)), np.float32(distance_weight),
                      np.float32(accept_color_error), np.float32(max_score), y, score, idx)
        return y, score, idx
    y, score, idx = _select_numpy(pd, pr, cr, fl, int(radius), distance_weight, np.float32(accept_color_error))
    far = ~(score <= np.float32(max_score))
    return np.where(far, np.float32(np.nan), y), score, np.where(far, -1, idx)


def guided_fill(depth: np.ndarray, ok: np.ndarray, guide: np.ndarray, tolerance: float = 0.06,
                passes: int = 16, use_numba: bool | None = None, in_place: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Fill pixels where ``ok`` is False from a 4-neighbour of similar colour, ``passes`` times.

    Each pass gives every unfilled pixel the value of its valid 4-neighbour with the smallest mean
    |dRGB| if that is <= ``tolerance`` (Jacobi: a pass reads the previous pass only, so the result
    does not depend on the scan order). Returns (filled depth, filled-or-valid mask).
    ``in_place``: fill ``depth`` and ``ok`` themselves when they are contiguous float32 / bool
    arrays (the alignment owns both: two full-size copies saved).
    """
    y = np.ascontiguousarray(depth, dtype=np.float32)
    m = np.ascontiguousarray(ok, dtype=np.bool_)
    if not (in_place and y is depth and m is ok):
        y, m = y.copy(), m.copy()
    c = _rgb8(guide)
    if use_numba is None:
        use_numba = HAVE_NUMBA
    if use_numba:
        hi, hj = _holes_numba(m)
        if hi.size:
            _fill_numba(y, m, c, np.float32(tolerance), int(passes), hi, hj)
        return y, m
    H, W = y.shape
    for _ in range(passes):
        if m.all():
            break
        best = np.full((H, W), np.inf, np.float32)
        val = np.full((H, W), np.nan, np.float32)
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            # neighbour (i + dy, j + dx) of pixel (i, j)
            ys, yd = slice(max(dy, 0), H + min(dy, 0)), slice(max(-dy, 0), H + min(-dy, 0))
            xs, xd = slice(max(dx, 0), W + min(dx, 0)), slice(max(-dx, 0), W + min(-dx, 0))
            nok = np.zeros((H, W), bool)
            nok[yd, xd] = m[ys, xs]
            nv = np.zeros((H, W), np.float32)
            nv[yd, xd] = y[ys, xs]
            nd = np.full((H, W), np.inf, np.float32)
            nd[yd, xd] = (np.abs(c[ys, xs].astype(np.int32) - c[yd, xd].astype(np.int32)).sum(axis=2)
                          .astype(np.float32) / np.float32(3 * 255))
            sel = ~m & nok & (nd <= tolerance) & (nd < best)
            best = np.where(sel, nd, best)
            val = np.where(sel, nv, val)
        new = ~m & np.isfinite(best)
        if not new.any():
            break
        y[new] = val[new]
        m |= new
    return y, m


# ----------------------------------------------------------------------------- alignment
def _remap_warp(prev_depth: np.ndarray, flow: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    H, W = prev_depth.shape
    u, v = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    mx, my = u + flow[:, :, 0], v + flow[:, :, 1]
    interp = cv2.INTER_NEAREST if mode == "nearest" else cv2.INTER_LINEAR
    y = cv2.remap(np.ascontiguousarray(prev_depth, dtype=np.float32), mx, my, interp,
                  borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)
    rx = np.clip(np.floor(mx + 0.5), 0, W - 1).astype(np.int64)
    ry = np.clip(np.floor(my + 0.5), 0, H - 1).astype(np.int64)
    inside = (mx >= 0) & (mx <= W - 1) & (my >= 0) & (my <= H - 1)
    idx = np.where(inside & np.isfinite(y) & (y > 0), ry * W + rx, -1)
    return y.astype(np.float32), idx


def align_frames(prev_depth: np.ndarray, prev_guide: np.ndarray, cur_guide: np.ndarray,
                 config: AlignConfig | None = None) -> Alignment:
    """Warp the previous output onto the current frame; see :class:`Alignment` and the module doc.

    Args:
        prev_depth: (H, W) previous output in metres (NaN = none).
        prev_guide, cur_guide: (H, W, 3) RGB guides (uint8, uint16 or float in [0, 1]).
        config: :class:`AlignConfig`.
    Raises:
        DadaInputError: on mismatched sizes or a bad configuration.
    """
    cfg = config or AlignConfig()
    cfg.validate()
    prev_depth = np.asarray(prev_depth)
    if prev_depth.ndim != 2:
        raise DadaInputError(f"previous depth must be HxW, got shape {prev_depth.shape}")
    H, W = prev_depth.shape
    if np.shape(prev_guide)[:2] != (H, W) or np.shape(cur_guide)[:2] != (H, W):
        raise DadaInputError(
            f"previous depth {prev_depth.shape}, previous guide {np.shape(prev_guide)[:2]} and current guide "
            f"{np.shape(cur_guide)[:2]} must all have the same size"
        )
    t0 = time.perf_counter()
    prev8 = _rgb8(prev_guide)
    cur8 = _rgb8(cur_guide)
    gain = np.ones(3, np.float32)
    if cfg.compensate_exposure:
        g = exposure_gain(prev8, cur8)
        if np.abs(g - 1).max() > 0.02:  # ordinary frames: aligned exactly as without compensation
            gain = g
            prev8 = np.clip(prev8.astype(np.float32) * gain + 0.5, 0, 255).astype(np.uint8)
    try:
        fwd, photo, mean_px, tier = _flow(cur8, prev8, cfg)  # current -> previous
    except cv2.error as exc:  # e.g. an image too small for the flow's pyramid: start cold
        info = AlignInfo((time.perf_counter() - t0) * 1000, 0.0, float("inf"), True,
                         f"optical flow failed: {' '.join(str(exc).split('error:')[-1].split())}")
        return Alignment(np.full((H, W), np.nan, np.float32), np.zeros((H, W), bool),
                         np.full((H, W), -1, np.int64), info)
    if cfg.warp == "select":
        # NaN and index -1 wherever nothing matched within max_color_error (y0 > 0 elsewhere)
        y0, _, idx = select_warp(prev_depth, prev8, cur8, fwd, cfg.search_radius, cfg.distance_weight,
                                 cfg.accept_color_error, max_score=cfg.max_color_error)
        valid = idx >= 0
    else:
        y0, idx = _remap_warp(prev_depth, fwd, cfg.warp)
        valid = idx >= 0
    if cfg.forward_backward:
        bwd = _flow(prev8, cur8, cfg)[0]  # previous -> current
        u, v = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
        back = cv2.remap(bwd, u + fwd[:, :, 0], v + fwd[:, :, 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        fb_err = np.hypot(fwd[:, :, 0] + back[:, :, 0], fwd[:, :, 1] + back[:, :, 1])
        valid &= fb_err <= cfg.fb_abs_px + cfg.fb_rel * np.hypot(fwd[:, :, 0], fwd[:, :, 1])
        idx = np.where(valid, idx, -1)
    if cfg.forward_backward or cfg.warp != "select":  # both warps index finite, positive depths only
        y0 = np.where(valid, y0, np.nan).astype(np.float32)
    filled = 0.0
    n_valid = int(np.count_nonzero(valid))
    if cfg.fill_passes > 0 and 0 < n_valid < valid.size:
        # NaN where not known; y0 is this function's own array (filled in place), valid is kept
        y0, known = guided_fill(y0, valid.copy(), cur8, cfg.fill_color_tolerance, cfg.fill_passes, in_place=True)
        filled = float(np.count_nonzero(known) - n_valid) / known.size

    flow_ms = (time.perf_counter() - t0) * 1000
    # The cut test uses the flow's own photometric error (gray, at the flow resolution), not the
    # selection's, which finds some colour match almost anywhere.
    frac = n_valid / valid.size
    reason = ""
    if photo > cfg.cut_photometric:
        reason = f"photometric error {photo:.3f} > {cfg.cut_photometric}"
    elif frac < cfg.min_valid_fraction:
        reason = f"only {frac:.0%} of pixels tracked (< {cfg.min_valid_fraction:.0%})"
    info = AlignInfo(flow_ms, frac, photo, bool(reason), reason, filled, tuple(float(x) for x in gain), mean_px, tier)
    return Alignment(y0, valid, idx, info)


def align_previous(
    prev_depth: np.ndarray, prev_guide: np.ndarray, cur_guide: np.ndarray, config: AlignConfig | None = None
) -> tuple[np.ndarray, np.ndarray, AlignInfo]:
    """Warp the previous output onto the current frame.

    Args:
        prev_depth: (H, W) previous output in metres (NaN = none).
        prev_guide, cur_guide: (H, W, 3) RGB guides of the previous and current frame.
        config: :class:`AlignConfig`.
    Returns:
        (y0, valid, info): y0 (H, W) float32 metres: the warped previous depth on tracked pixels,
        the colour-guided fill on some untracked ones, NaN elsewhere (the solver's cold
        initialisation takes those); valid (H, W) bool: tracked pixels (in frame, colour-
        consistent, finite; occlusions and disocclusions excluded); info: :class:`AlignInfo` with
        ``cut=True`` when the frames do not match (scene cut, failed flow): use a cold start.
    """
    a = align_frames(prev_depth, prev_guide, cur_guide, config)
    return a.y0, a.valid, a.info
