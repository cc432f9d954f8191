"""Per-frame video pipeline: warm-start policy + solver, shared by the ROS node and the replay tool.

``FramePipeline.process`` takes one synchronised frame (RGB guide, low-res depth in metres, stamp
in seconds) and decides how to initialise the solver:

* ``off``   (cold; the default): Y0 from the source alone, the equilibrium policy of
  :class:`SolverConfig`;
* ``naive``: Y0 = previous output as is, ``warm_iterations`` steps;
* ``flow``  (opt-in): Y0 = previous output warped onto the current frame
  (:func:`~dada_ros.core.warm_start.align_frames`: DIS flow + colour-guided selection + fill),
  ``warm_iterations`` applications. A short fixed budget on purpose: with the cold coefficients
  a tolerance (or the solver's own schedule, ``warm_schedule="solver"``) walks the warm answer
  back to the single-frame equilibrium and throws away the fused detail (measured 1.00-1.01 x
  cold, against 0.92-0.97 with plain steps). With DADA-free a warm solve makes its coefficients
  from the warm Y0 (``SolverConfig.warm_depth_feature``, session 14), so ITS equilibrium carries
  the fused detail, and since session 16 the warm run is a semi-iteration toward it
  (``warm_schedule="chebyshev"``, ``warm_delta``: 30 applications, pan 0.35x cold against 0.70x
  with the 40 plain steps before); a learned guide keeps plain steps (``"plain"``).

Young pixels. A pixel that entered the view a few frames ago (at the image border, or behind a
moving object) started from the cold initialisation (inside a warm frame: a cold frame's answer
counts as mature) and has only had a few warm budgets since:
far from the thousands of steps a cold frame takes, so a depth edge that just entered stays
blurred. The pipeline carries an "age" per pixel (steps since the pixel was last started cold,
moved along with the depth by the alignment) and, before the full-image warm run, gives tiles of
young pixels ``refine_iterations`` extra steps on a crop around them (``refine_*`` settings).
Measured on a generated 2 px/frame pan at 320x240 x8 (300 extra steps): mean MSE 0.96 -> 0.94 of
the cold equilibrium for about +25% work; at 640x480 the entering band is a smaller share of the
image and it made no difference (within 0.1%) for ~11 ms a frame, so it is off by default
(``refine_iterations=0``), and then no age map is carried (it cost 5 ms of a 640x480 warm frame):
pixels count as mature until the refinement is turned on.

Acceptance (issue 19: a warm start must never cost accuracy). The warped Y0 is tested against
the new source by :func:`~dada_ros.core.warm_accept.accept_prior`: motion-corrected, cell by cell.
Cells whose prior clearly disagrees with the new measurement, and pixels without a prior
(disocclusions the fill did not reach), start cold.

One solve per frame (issue 26). The warm run is ONE solve of ``warm_iterations`` applications
whose schedule has a region (:attr:`~dada_ros.core.schedule.Schedule.region`): in the source
cells that hold a cold-initialised pixel the applications follow the Chebyshev semi-iteration
(the solver's own schedule, ``delta`` x ``region_delta_factor``: 4 with DADA-free, 1 with a learned
guide), everywhere else plain steps (``"plain"``); with ``"chebyshev"`` (DADA-free's default
since session 16) every pixel follows the semi-iteration with ``warm_delta``. A cold region is
bounded by converged pixels, so it converges like a small domain within the budget. Until issue 26
the cold pixels were first solved on crops with the cold policy, one solve per crop: slower, and
not better (doc/warm_start.md). When the prior does not fit the frame as a whole (median cell
error, too few tracked pixels, cold cells over ``max_cold_area`` of the image) the frame starts
cold.

Any reason to distrust the previous frame falls back to a cold start and is reported in
``stats["cold_reason"]``: no previous frame, size change, time going backwards, a gap over
``max_age``, a scene cut (flow failed / photometric error / too few tracked pixels), or a warm
Y0 that disagrees with the new source (the acceptance test).

Backoff (issue 26). A declined warm start has already paid the flow and the acceptance test
(together about a third of a cold solve at 640x480). Where they keep failing -- real hand-held
motion, a scene the flow cannot follow -- the pipeline stops trying for a while: after two
declines in a row the next 1, then 2, 4, ... frames (``max_backoff_frames`` at most) start cold
without computing anything (``cold_reason`` "warm start backing off ...",
``stats["warm_declined_in_row"]``); an accepted warm start or a reset clears it.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace

import cv2
import numpy as np

from .errors import DadaInputError
from .output_range import OutputRangeConfig, apply_output_range
from .resample import Partition, cell_index, valid_source_mask
from .schedule import Schedule, chebyshev_defaults
from .solver import DadaSolver, FreeGuide
from .warm_accept import LEARNED_DILATE_CELLS, AcceptConfig, accept_prior
from .warm_start import AlignConfig, align_frames

WARM_MODES = ("off", "naive", "flow")
# WarmConfig.slow_motion_px when None with DADA-free (a learned guide: off); chosen in session 6
# (see WarmConfig and doc/warm_start.md).
FREE_SLOW_MOTION_PX = 5.0
WARM_SCHEDULES = ("chebyshev", "plain", "solver")
# A warm frame's budgets (warm_iterations, slow_motion_iterations) per warm schedule, where WarmConfig
# leaves them None: a semi-iteration gets further per application than plain steps (session 16).
WARM_BUDGETS = {"chebyshev": (30, 30), "plain": (75, 40), "solver": (75, 40)}
# WarmConfig.warm_delta when None: this times the solver's per-ratio delta (the dense table:
# 0.00195 at x8, where the pan, drop, ICL living-room and 20-frame moving-sphere sequences chose
# 0.002; 0.0039 at x4, where 0.002 left the living room up to 1.046x cold). Session 16,
# doc/warm_start.md "A warm frame that converges (session 16)".
WARM_DELTA_FACTOR = 2.0


@dataclass
class WarmConfig:
    # "off" by default since issue #26: on the CPU a warm frame was never faster than a cold one at
    # equal accuracy (doc/warm_start.md "Default: off"); "flow" is opt-in.
    mode: str = "off"
    # None: the warm schedule's own budget (WARM_BUDGETS): 30 semi-iteration applications (session
    # 16), 75 plain steps. 75 (session 5, with the medium-preset flow): the fewest of 50 / 60 / 75 / 100 that keep every
    # frame of the pan and frame-drop sequences within 1.02x the cold solve (640x480 x8; 50: drop
    # up to 1.067x, the cold-initialised cells are not converged). See doc/warm_start.md.
    warm_iterations: int | None = None
    # A warm frame whose view moved little (mean |flow| of the alignment at most ``slow_motion_px``
    # guide pixels) runs min(slow_motion_iterations, warm_iterations) applications: its warped prior
    # needs less repair than a frame drop's. None: 5 px with DADA-free, 0 (off: always
    # warm_iterations) with a learned guide. Session 6 (640x480 x8, DADA-free, per frame 40 against
    # 75 applications): frames of 1.3-3.5 px/frame were as good with 40 (within +-0.02 of the 75
    # figure, never above 0.99x cold), frames of a frame drop (8.1-8.7 px) lost up to 1.051x cold with
    # 40 against 1.011x; chosen on the pan, drop, big_pan and ICL living-room sequences (any
    # threshold in [3.5, 8.1) px passed them; 5 px), held out: rotate, forward, shift, dynamic, shake.
    # The learned guide's slower schedule lost with 40 on smooth motion (pan up to 1.019x cold,
    # living room 1.012x, against 1.018x / 0.962x with 75), so it keeps warm_iterations.
    # Session 14: 30 was adopted (within about +-1% of 40 on every motion with the cold depth
    # feature; node warm / cold 0.55-0.58 -> 0.48-0.51) and taken back the same session: with the
    # warm depth feature (SolverConfig.warm_depth_feature) the budget matters again (pan warm /
    # cold 0.769 / 0.727 / 0.703 with 30 / 35 / 40), and the rule stated for it (the fewest
    # applications whose pan and living-room means stay within +0.5% of 40's) picks 40.
    # doc/warm_start.md, "A smaller slow-motion budget and a cheaper acceptance (session 14)".
    # Those were plain budgets (WARM_BUDGETS "plain": 40); the semi-iteration's (session 16): 30,
    # the same as beyond 5 px (with 20 a moving object lost up to 1.33x cold over 20 frames; 20 is the
    # user's trade for speed, doc/warm_start.md). None: the warm schedule's own.
    slow_motion_iterations: int | None = None
    slow_motion_px: float | None = None
    # Loop of a warm frame: "chebyshev" = the semi-iteration over the whole image with
    # ``warm_delta`` (session 16: a warm solve with DADA-free makes its coefficients from the warm
    # Y0, so its equilibrium carries the fused detail and converging toward it wins: pan warm / cold
    # 0.345 against 0.703 at x8); "plain" = plain steps, the Chebyshev weights only in the cold-initialised
    # cells (the design of issue 26 until session 15: a short run keeps the prior's detail where the
    # equilibrium would not); "solver" = the solver's own schedule restarted from Y0 with
    # warm_iterations applications. None: "chebyshev" where the solver makes a warm frame's
    # coefficients from its Y0 (DADA-free; SolverConfig.warm_depth_feature), "plain" otherwise (a
    # learned guide: measured with plain steps only).
    warm_schedule: str | None = None
    # delta of the "chebyshev" warm schedule: small = the slow modes too (x8: 0.001 left the ICL
    # living room up to 1.008x cold), large = closer to plain steps (pan 0.446 at 0.0075 against
    # 0.405, measured with the cold cells on other weights). None: WARM_DELTA_FACTOR x the solver's per-ratio delta (the slow modes scale with the
    # ratio); doc/warm_start.md.
    warm_delta: float | None = None
    max_age: float = 0.5  # seconds between frames beyond which the previous output is stale
    # Median |down(Y0) / S - 1| over valid cells above this means the previous output does not fit
    # the new measurement (a cut, a 1-frame glitch): start cold rather than leave a ghost. Tested
    # before the motion correction; the acceptance test (``accept``) is the finer one.
    max_init_ratio_error: float = 0.1
    align: AlignConfig | None = None
    accept: AcceptConfig | None = None  # per-pixel acceptance of the warped Y0 (None: defaults)
    # The Chebyshev weights of the warm run's region (the cells holding cold-initialised pixels) use
    # the solver's delta times this: the region is bounded by converged pixels, its slowest mode is
    # faster than the whole frame's. None: 4 with DADA-free (its per-ratio delta), 1 with a learned
    # guide (whose schedule's delta follows 8000 plain steps, a slower diffusion). Measured
    # (benchmarks/warm_start.py, generated sequences, warm / cold MSE mean and worst): DADA-free
    # 640x480 pan and drop: x0.25 1.019 / 1.173 (drop), x1 0.952 / 1.101, x4 0.947 / 1.081, x16
    # 1.011 / 1.220; dada 320x240 pan and shake: x0.25 up to 1.116 / 1.221, x1 0.884-1.000 / 1.043,
    # x4 0.969-0.997 / 1.075, x16 1.085-1.227 / 1.433.
    region_delta_factor: float | None = None
    # A frame whose cold-initialised cells cover more than this fraction of the image starts cold:
    # the warm run's applications converge strips and patches bounded by a kept prior, not a large
    # share of the frame. Session 5 (x8, medium-preset flow, 75 applications; chosen on the pan,
    # drop and big_pan sequences and the ICL-NUIM living room, both methods): kept frames that won
    # left 1-5% of the image cold; DADA-free on a 28 px/frame pan left 14-21% (kept: up to 1.042x
    # the cold solve), the learned model on frame drops at 320x240 6-11% (kept: up to 1.089x). 0.7
    # before. See doc/warm_start.md.
    max_cold_area: float = 0.05
    # ``naive`` reuses the previous output unaligned, which fits a static view only: more rejected
    # cells than this fraction means the view moved, and the frame starts cold. Measured on
    # generated 320x240 x8 sequences: static 0% rejected (warm 0.986-1.000x cold), pan / shift /
    # rotation 12.6-17.9% rejected (kept: 1.01-1.10x cold).
    naive_max_rejected: float = 0.02
    # Exposure: the previous guide is scaled to the current one (AlignConfig.compensate_exposure)
    # so the alignment survives an exposure / white-balance change, but the prior was solved on a
    # guide of another contrast: when any channel's gain leaves [min, max] the frame starts cold.
    # Measured (320x240, benchmarks/warm_start.py exposure): brighter by 1.2-1.6 lost 2-11% warm
    # with dada-free; darker by 0.45-0.8 won 15-19% with dada-free but lost 54% with dada.
    max_exposure_gain: float = 1.1
    min_exposure_gain: float = 0.9
    # Photometric error of the flow (mean |flow-warped previous gray - current gray|, [0, 1]) above
    # which the alignment is not trusted for a warm start (the cut test, AlignConfig.cut_photometric,
    # is far looser). Measured on generated 320x240 sequences: every frame whose forced warm start
    # lost by > 5% had >= 0.014 (motion blur, 4x frame drops, large baselines, a fast moving
    # object); smooth and hand-held motions that won had <= 0.010, the ICL-NUIM living-room
    # renders 0.009-0.010. A noisier real camera raises the floor: this errs towards cold.
    max_photometric_error: float = 0.013
    # Young-pixel refinement (flow mode; see the module docstring): extra steps per frame on tiles
    # of young pixels. Off by default: it helped small images (320x240 pan: 0.96 -> 0.94 x cold)
    # but made no difference at 640x480 for ~11 ms a frame. 300 is the measured setting.
    refine_iterations: int = 0
    mature_iterations: int = 1000  # a pixel with fewer accumulated steps than this is young
    refine_tile_cells: int = 4  # tile side in source cells
    refine_min_fraction: float = 0.25  # a tile is refined when at least this fraction is young
    # Backoff: after two warm starts in a row were declined by a test of the prior itself (the
    # alignment, the exposure, the acceptance: not a missing or stale previous frame), the next 1,
    # then 2, 4, ... frames (at most this many) start cold without computing the flow; the first
    # warm start accepted resets it. Where the warm start cannot win (real hand-held motion:
    # tum2klg, every warm start declined) a frame otherwise paid the flow and the acceptance for
    # nothing (1.37x a cold frame, 1.18x with the backoff; benchmarks/warm_start.py); 0 = try
    # every frame.
    max_backoff_frames: int = 8
    # Compute the solve's own preparation (input checks, cold Y0, guide features and coefficients:
    # DadaSolver.prepare, which the warm start does not change) on a second thread while the
    # previous frame is aligned and tested. None = when the solver runs on the CPU with at least two
    # cores available to this process; False = one after the other. The answer is the same
    # either way (a test holds it); only the time differs (doc/warm_start.md "Overlap").
    overlap_prepare: bool | None = None

    def fixed_budget(self, iterations: int) -> "WarmConfig":
        """A copy whose every warm frame runs ``iterations`` applications, whatever the motion (a
        budget a user names: ``dada-upsample --warm-iterations``, ``dada-replay`` method counts)."""
        return replace(self, warm_iterations=iterations, slow_motion_px=0.0)

    def validate(self) -> None:
        if self.mode not in WARM_MODES:
            raise DadaInputError(f"warm start mode must be one of {', '.join(WARM_MODES)}, got {self.mode!r}")
        if self.warm_schedule is not None and self.warm_schedule not in WARM_SCHEDULES:
            raise DadaInputError(f"warm_schedule must be one of {', '.join(WARM_SCHEDULES)}, got {self.warm_schedule!r}")
        if self.warm_iterations is not None and (int(self.warm_iterations) != self.warm_iterations
                                                 or self.warm_iterations < 1):
            raise DadaInputError(f"warm_iterations must be an integer >= 1, got {self.warm_iterations}")
        if self.warm_delta is not None and not (isinstance(self.warm_delta, (int, float)) and 0 < self.warm_delta < 1):
            raise DadaInputError(f"warm_delta must be in (0, 1), got {self.warm_delta}")
        if not self.max_age > 0:
            raise DadaInputError(f"warm_start_max_age must be > 0 seconds, got {self.max_age}")
        if not self.max_init_ratio_error > 0:
            raise DadaInputError(f"max_init_ratio_error must be > 0, got {self.max_init_ratio_error}")
        if self.slow_motion_iterations is not None and (int(self.slow_motion_iterations) != self.slow_motion_iterations
                                                        or self.slow_motion_iterations < 1):
            raise DadaInputError(f"slow_motion_iterations must be an integer >= 1, got {self.slow_motion_iterations}")
        if self.slow_motion_px is not None and not (math.isfinite(self.slow_motion_px) and self.slow_motion_px >= 0):
            raise DadaInputError(f"slow_motion_px must be a finite number >= 0, got {self.slow_motion_px}")
        if int(self.refine_iterations) != self.refine_iterations or self.refine_iterations < 0:
            raise DadaInputError(f"refine_iterations must be an integer >= 0, got {self.refine_iterations}")
        if not self.mature_iterations >= 0:
            raise DadaInputError(f"mature_iterations must be >= 0, got {self.mature_iterations}")
        if int(self.max_backoff_frames) != self.max_backoff_frames or self.max_backoff_frames < 0:
            raise DadaInputError(f"max_backoff_frames must be an integer >= 0, got {self.max_backoff_frames}")
        if int(self.refine_tile_cells) != self.refine_tile_cells or self.refine_tile_cells < 1:
            raise DadaInputError(f"refine_tile_cells must be an integer >= 1, got {self.refine_tile_cells}")
        if not 0 < self.refine_min_fraction <= 1:
            raise DadaInputError(f"refine_min_fraction must be in (0, 1], got {self.refine_min_fraction}")
        if not 0 < self.max_photometric_error <= 1:
            raise DadaInputError(f"max_photometric_error must be in (0, 1], got {self.max_photometric_error}")
        if not 0 < self.max_cold_area <= 1:
            raise DadaInputError(f"max_cold_area must be in (0, 1], got {self.max_cold_area}")
        if not 0 < self.min_exposure_gain <= 1 <= self.max_exposure_gain:
            raise DadaInputError(f"exposure gain bounds must satisfy 0 < min <= 1 <= max, got "
                                 f"{self.min_exposure_gain}, {self.max_exposure_gain}")
        if not 0 <= self.naive_max_rejected <= 1:
            raise DadaInputError(f"naive_max_rejected must be in [0, 1], got {self.naive_max_rejected}")
        if self.region_delta_factor is not None and not (math.isfinite(self.region_delta_factor)
                                                         and self.region_delta_factor > 0):
            raise DadaInputError(f"region_delta_factor must be a finite number > 0, got {self.region_delta_factor}")
        if self.overlap_prepare not in (None, True, False):
            raise DadaInputError(f"overlap_prepare must be None, True or False, got {self.overlap_prepare!r}")
        if self.align is not None:
            self.align.validate()
        if self.accept is not None:
            self.accept.validate()


def resolve_warm_schedule(warm: WarmConfig, warm_feature: bool) -> tuple[str, int, int]:
    """(warm schedule, warm_iterations, slow_motion_iterations) of ``warm`` with its None filled in:
    the schedule "chebyshev" where the solver makes a warm frame's coefficients from its Y0
    (``warm_feature``: DADA-free, ``SolverConfig.warm_depth_feature``), else "plain"; the budgets
    the schedule's own (WARM_BUDGETS); the slow-motion budget at most warm_iterations."""
    kind = warm.warm_schedule or ("chebyshev" if warm_feature else "plain")
    fast, slow = WARM_BUDGETS[kind]
    fast = int(warm.warm_iterations) if warm.warm_iterations is not None else fast
    slow = int(warm.slow_motion_iterations) if warm.slow_motion_iterations is not None else slow
    return kind, fast, min(slow, fast)


@dataclass
class FrameResult:
    depth: np.ndarray  # (H, W) float32 metres, NaN = no estimate
    stats: dict


def _pixel_ranges(fine: int, coarse: int) -> np.ndarray:
    """start[k] = first fine pixel of coarse cell k (k = 0..coarse; start[coarse] = fine)."""
    return np.searchsorted(cell_index(fine, coarse), np.arange(coarse + 1)).astype(np.int64)


def _refine_boxes(young: np.ndarray, source_shape: tuple[int, int], tile_cells: int,
                  min_fraction: float) -> tuple[np.ndarray, np.ndarray, list]:
    """Tiles of young pixels grouped into crops: (tile row starts, tile col starts, boxes).

    Each box is (t0, t1, j0, j1, selection) in tile units, ``selection`` the young tiles inside it.
    """
    H, W = young.shape
    h, w = source_shape
    rs, cs = _pixel_ranges(H, h), _pixel_ranges(W, w)
    th, tw = math.ceil(h / tile_cells), math.ceil(w / tile_cells)
    # Young fraction per tile (tiles in cells, mapped to pixel ranges).
    tr = rs[np.minimum(np.arange(th + 1) * tile_cells, h)]
    tc = cs[np.minimum(np.arange(tw + 1) * tile_cells, w)]
    csum = np.zeros((H + 1, W + 1), np.float64)
    csum[1:, 1:] = np.cumsum(np.cumsum(young, 0), 1)
    area = np.outer(np.diff(tr), np.diff(tc)).astype(np.float64)
    count = csum[np.ix_(tr[1:], tc[1:])] - csum[np.ix_(tr[:-1], tc[1:])] - csum[np.ix_(tr[1:], tc[:-1])] + csum[np.ix_(tr[:-1], tc[:-1])]
    tiles = (count >= min_fraction * np.maximum(area, 1)) & (area > 0)
    boxes: list = []
    if not tiles.any():
        return tr, tc, boxes
    n, labels, stats, _ = cv2.connectedComponentsWithStats(tiles.astype(np.uint8), connectivity=8)
    for k in range(1, n):
        x, t, bw, bh, cnt = stats[k]
        if bw * bh <= 2 * cnt:  # compact group: one crop
            boxes.append((t, t + bh, x, x + bw, labels[t:t + bh, x:x + bw] == k))
        else:  # sparse (diagonal) group: one crop per tile
            for i, j in zip(*np.nonzero(labels == k)):
                boxes.append((i, i + 1, j, j + 1, np.ones((1, 1), bool)))
    return tr, tc, boxes


def refine_young(solver: DadaSolver, rgb: np.ndarray, source: np.ndarray, y0: np.ndarray, young: np.ndarray,
                 iterations: int | None, tile_cells: int = 4, min_fraction: float = 0.25,
                 margin_cells: int = 1) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Extra steps on crops around tiles of young pixels; see the module docstring.

    The image is cut into tiles of ``tile_cells`` x ``tile_cells`` source cells; a tile whose
    young fraction is >= ``min_fraction`` is young. Each 8-connected group of young tiles is
    solved on its bounding box plus ``margin_cells`` (``iterations`` steps from ``y0``, or the
    solver's own cold policy with ``iterations=None``; NaN in ``y0`` takes the cold
    initialisation) and only its young tiles are written back. The crop has no-flux borders,
    which is why the result is only a better start: the full-image warm run that follows
    restores the exact consistency with the whole source.

    Returns (y, refined mask, number of pixels solved including margins, work in pixel-steps
    (sum over crops of pixels x steps; divide by H*W for full-image-equivalent steps)).
    """
    H, W = y0.shape
    h, w = source.shape
    rs, cs = _pixel_ranges(H, h), _pixel_ranges(W, w)
    tr, tc, boxes = _refine_boxes(young, source.shape, tile_cells, min_fraction)
    y = y0.copy()
    refined = np.zeros((H, W), bool)
    if not boxes:
        return y, refined, 0, 0.0
    solved, work = 0, 0.0
    valid_src = valid_source_mask(source)
    for t0, t1, j0, j1, sel in boxes:
        c_r0, c_r1 = t0 * tile_cells, min(h, t1 * tile_cells)
        c_c0, c_c1 = j0 * tile_cells, min(w, j1 * tile_cells)
        m_r0, m_r1 = max(0, c_r0 - margin_cells), min(h, c_r1 + margin_cells)
        m_c0, m_c1 = max(0, c_c0 - margin_cells), min(w, c_c1 + margin_cells)
        if not valid_src[m_r0:m_r1, m_c0:m_c1].any():
            continue
        py0, py1, px0, px1 = rs[m_r0], rs[m_r1], cs[m_c0], cs[m_c1]
        res = solver.solve(rgb[py0:py1, px0:px1], source[m_r0:m_r1, m_c0:m_c1],
                           init=y0[py0:py1, px0:px1], iterations=None if iterations is None else int(iterations))
        solved += (py1 - py0) * (px1 - px0)
        work += (py1 - py0) * (px1 - px0) * float(res.stats.iterations)
        out = res.depth
        for (i, j) in zip(*np.nonzero(sel)):
            ti, tj = t0 + i, j0 + j
            a0, a1, b0, b1 = tr[ti], tr[ti + 1], tc[tj], tc[tj + 1]
            patch = out[a0 - py0:a1 - py0, b0 - px0:b1 - px0]
            ok = np.isfinite(patch)
            y[a0:a1, b0:b1] = np.where(ok, patch, y[a0:a1, b0:b1])
            refined[a0:a1, b0:b1] = ok
    return y, refined, solved, work


class FramePipeline:
    """Holds the previous frame and applies the warm-start policy; see the module docstring."""

    def __init__(self, solver: DadaSolver, warm: WarmConfig | None = None,
                 output_range: OutputRangeConfig | None = None):
        self.solver = solver
        self.warm = warm or WarmConfig()
        self.warm.validate()
        # out-of-local-range output pixels (core/output_range.py); None = not checked at all
        self.output_range = output_range
        self._prepare_pool: ThreadPoolExecutor | None = None  # one worker, made on first use
        self.reset()

    def warm_up(self, guide_shape: tuple[int, int] = (48, 64), scale: int = 8) -> float:
        """Run every kernel this pipeline's method and warm start use once, on a small synthetic
        frame with a hole, then forget it; returns the seconds it took.

        The first call of a numba kernel in a process compiles it or loads it from the cache
        (0.5-10 s on a busy 2-core CPU), and torch's first calls allocate and dispatch: a node
        that says "ready" before paying that answers its first real frame seconds late. The cold
        solve with the configured schedule (its kernels also serve the plain loop: the weighting
        is a run-time argument), the output range and, with a warm start, two frames through
        :meth:`process` cover every path a frame can take."""
        t0 = time.perf_counter()
        rng = np.random.default_rng(0)
        H, W = guide_shape
        rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        src = (1.0 + rng.random((H // scale, W // scale))).astype(np.float32)
        src[0, 0] = np.nan  # a hole: the hole fill and the masked adjustment
        depth = self.solver.solve(rgb, src).depth
        if self.output_range is not None:  # its per-cell extrema are a numba kernel too
            apply_output_range(depth, src, self.output_range)
        if self.warm.mode != "off":
            self.reset()
            self.process(rgb, src, 0.0)
            self.process(np.roll(rgb, 1, axis=1), src, 0.1)
        self.reset()
        return time.perf_counter() - t0

    def reset(self) -> None:
        """Forget the previous frame (bag loop, simulator reset, parameter change)."""
        self._prev_depth: np.ndarray | None = None
        self._prev_guide: np.ndarray | None = None
        self._prev_stamp: float | None = None
        self._prev_age: np.ndarray | None = None
        self._declined = 0  # warm starts declined in a row (by a test of the prior)
        self._skip = 0  # frames still to start cold without trying (backoff)

    def set_previous(self, depth: np.ndarray, guide: np.ndarray | None = None, stamp: float = 0.0,
                     age: np.ndarray | None = None) -> None:
        """Seed the previous frame (e.g. the CLI's ``--init`` / ``--init-guide``).

        ``guide`` may be None for a naive warm start (flow mode then starts cold, reported);
        ``age`` (H, W) accumulated steps per pixel, None = fully converged.
        """
        self._prev_depth = np.asarray(depth, dtype=np.float32)
        self._prev_guide = None if guide is None else np.asarray(guide)
        self._prev_stamp = float(stamp)
        self._prev_age = None if age is None else np.asarray(age, dtype=np.float32)

    def previous(self) -> tuple[np.ndarray | None, np.ndarray | None, float | None, np.ndarray | None]:
        """The held previous frame (depth, guide, stamp, age), e.g. to seed another pipeline with it."""
        return self._prev_depth, self._prev_guide, self._prev_stamp, self._prev_age

    def _warm_init(self, rgb: np.ndarray, source: np.ndarray, stamp: float) -> tuple[np.ndarray | None, dict]:
        y0, info = self._try_warm(rgb, source, stamp)
        if info.pop("declined", False):
            self._declined += 1
            # One decline (a cut, a glitch, an exposure jump) is an event of that frame pair; two in a
            # row start the backoff: skip 1, then 2, 4, ... frames.
            if self._declined >= 2:
                self._skip = min(2 ** (self._declined - 2), int(self.warm.max_backoff_frames))
        elif y0 is not None:
            self._declined = 0
        info["warm_declined_in_row"] = self._declined
        return y0, info

    def _try_warm(self, rgb: np.ndarray, source: np.ndarray, stamp: float) -> tuple[np.ndarray | None, dict]:
        """Y0 of this frame (None: cold) and what decided it; ``info["declined"]`` marks a
        warm start refused by a test of the prior (what the backoff counts)."""
        info: dict = {"init_mode": "cold", "cold_reason": "", "flow_ms": 0.0, "warm_valid_fraction": 0.0}
        self._age = None
        self._region = None
        mode = self.warm.mode
        if mode == "off":
            info["cold_reason"] = "warm start off"
            return None, info
        if self._prev_depth is None:
            info["cold_reason"] = "no previous frame"
            return None, info
        if self._prev_depth.shape != rgb.shape[:2]:
            info["cold_reason"] = "image size changed"
            return None, info
        dt = stamp - self._prev_stamp
        if dt <= 0:
            info["cold_reason"] = f"time went backwards or repeated ({dt:+.3f} s)"
            return None, info
        if dt > self.warm.max_age:
            info["cold_reason"] = f"previous frame too old ({dt:.3f} s > {self.warm.max_age} s)"
            return None, info
        if self._skip > 0:
            self._skip -= 1
            info["cold_reason"] = f"warm start backing off after {self._declined} declined in a row"
            return None, info
        # The age map only serves the young-pixel refinement: without it (the default) it is not
        # carried at all (5 ms of a 640x480 warm frame: a gather and three full-image passes).
        track_age = self.warm.refine_iterations > 0
        prev_age = None
        if track_age:
            prev_age = self._prev_age if self._prev_age is not None else np.full(rgb.shape[:2], np.inf, np.float32)
        age = None
        if mode == "naive":
            y0 = self._prev_depth
            info["warm_valid_fraction"] = float(np.isfinite(y0).mean())
            if track_age:
                age = np.where(np.isfinite(y0), prev_age, 0.0).astype(np.float32)
        else:
            if self._prev_guide is None:
                info["cold_reason"] = "no previous guide to align with"
                return None, info
            if self._prev_guide.shape[:2] != rgb.shape[:2]:
                info["cold_reason"] = "image size changed"
                return None, info
            al = align_frames(self._prev_depth, self._prev_guide, rgb, self._align_config())
            y0 = al.y0
            info["flow_ms"] = al.info.flow_ms
            info["warm_valid_fraction"] = al.info.valid_fraction
            info["warm_filled_fraction"] = al.info.filled_fraction
            info["photometric_error"] = al.info.photometric_error
            info["mean_flow_px"] = al.info.mean_flow_px
            info["flow_tier"] = al.info.flow_tier
            if al.info.cut:
                info["cold_reason"] = f"scene cut: {al.info.reason}"
                info["declined"] = True
                return None, info
            if al.info.photometric_error > self.warm.max_photometric_error:
                info["cold_reason"] = (f"alignment unreliable (photometric error {al.info.photometric_error:.3f} > "
                                       f"{self.warm.max_photometric_error})")
                info["declined"] = True
                return None, info
            gain = np.asarray(al.info.exposure_gain, np.float64)
            info["exposure_gain"] = [float(g) for g in gain]
            if gain.max() > self.warm.max_exposure_gain or gain.min() < self.warm.min_exposure_gain:
                info["cold_reason"] = (f"exposure changed (gain {', '.join(f'{g:.2f}' for g in gain)} outside "
                                       f"[{self.warm.min_exposure_gain}, {self.warm.max_exposure_gain}])")
                info["declined"] = True
                return None, info
            if track_age:
                age = np.where(al.source_index >= 0, prev_age.reshape(-1)[np.maximum(al.source_index, 0)], 0.0)
                age = age.astype(np.float32)
        tracked = al.valid if mode == "flow" else None
        t_acc = time.perf_counter()
        # the coarse ratio test first (it stops the acceptance before its motion fit and cell tests)
        acc = accept_prior(y0, source, tracked, self._accept_config(),
                           max_ratio_error=self.warm.max_init_ratio_error)
        info["accept_ms"] = (time.perf_counter() - t_acc) * 1000
        info["init_ratio_error"] = acc.ratio_error
        if acc.ratio_error > self.warm.max_init_ratio_error:
            info["cold_reason"] = acc.reason
            info["declined"] = True
            return None, info
        info.update({"accept_" + k: v for k, v in acc.stats().items() if k not in ("accepted", "reason", "ratio_error")})
        if not acc.accepted:
            info["cold_reason"] = acc.reason
            info["declined"] = True
            return None, info
        if mode == "naive" and acc.rejected_fraction > self.warm.naive_max_rejected:
            info["cold_reason"] = (f"the view moved ({acc.rejected_fraction:.0%} of the image in cells that disagree "
                                   f"> {self.warm.naive_max_rejected:.0%}): naive needs a static view")
            info["declined"] = True
            return None, info
        # the cells that hold a cold pixel, marked by the acceptance while it kept the prior
        part = Partition(acc.cold_pixels.shape, source.shape)
        region = part.expand(acc.cold_cells)
        area = np.count_nonzero(region) / region.size
        info["warm_region_fraction"] = area
        if area > self.warm.max_cold_area:
            info["cold_reason"] = (f"cold-initialised cells cover {area:.0%} of the image "
                                   f"(> {self.warm.max_cold_area:.0%}): a cold frame is better")
            info["declined"] = True
            return None, info
        info["init_mode"] = mode
        self._age = None if age is None else np.where(acc.cold_pixels, 0.0, age).astype(np.float32)
        self._region = region
        return acc.y0, info

    def overlaps_prepare(self) -> bool:
        """Whether a frame that aligns the previous one prepares its solve on a second thread
        (``WarmConfig.overlap_prepare``; None: a CPU solver with >= 2 cores for this process)."""
        if getattr(self.solver, "prepare", None) is None:  # a solver without a preparation step
            return False
        flag = self.warm.overlap_prepare
        if flag is not None:
            return bool(flag)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return str(getattr(self.solver, "device", "cpu")).startswith("cpu") and cores >= 2

    def _start_prepare(self, rgb: np.ndarray, source: np.ndarray) -> Future | None:
        """The solver's preparation of this frame on the worker thread when this frame will do
        warm-start work first (a previous frame, no backoff) and the overlap is on; else None."""
        if (self.warm.mode == "off" or self._prev_depth is None or self._skip > 0
                or not self.overlaps_prepare()):
            return None
        if self._prepare_pool is None:
            self._prepare_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dada-prepare")
        # warm=True: a warm solve that makes its own coefficients leaves the cold ones out
        return self._prepare_pool.submit(self.solver.prepare, rgb, source, warm=True)

    def _slow_motion_px(self) -> float:
        """WarmConfig.slow_motion_px, resolved (None: 5 px with DADA-free, 0 = off with a learned guide)."""
        px = self.warm.slow_motion_px
        if px is None:
            px = FREE_SLOW_MOTION_PX if isinstance(self.solver.guide_model, FreeGuide) else 0.0
        return float(px)

    def _align_config(self) -> AlignConfig:
        """The alignment's settings; its cheap flow tier (AlignConfig.cheap_max_px None) serves the
        frames of the slow-motion budget, so it follows the slow-motion threshold."""
        cfg = self.warm.align or AlignConfig()
        return replace(cfg, cheap_max_px=self._slow_motion_px()) if cfg.cheap_max_px is None else cfg

    def _accept_config(self) -> AcceptConfig:
        """The acceptance's settings; ``dilate_cells`` None: 2 with a learned guide (warm_accept's
        LEARNED_DILATE_CELLS), the acceptance's own default (1) with DADA-free."""
        cfg = self.warm.accept or AcceptConfig()
        if cfg.dilate_cells is None and not isinstance(self.solver.guide_model, FreeGuide):
            return replace(cfg, dilate_cells=LEARNED_DILATE_CELLS)
        return cfg

    def _warm_resolved(self) -> tuple[str, int, int]:
        """:func:`resolve_warm_schedule` of this pipeline's settings for this solver."""
        applies = getattr(self.solver, "warm_feature_applies", None)
        return resolve_warm_schedule(self.warm, applies is not None and applies())

    def warm_schedule_kind(self) -> str:
        """WarmConfig.warm_schedule, resolved for this solver (see :func:`resolve_warm_schedule`)."""
        return self._warm_resolved()[0]

    def warm_budgets(self) -> tuple[int, int]:
        """(warm_iterations, slow_motion_iterations), resolved (see :func:`resolve_warm_schedule`)."""
        return self._warm_resolved()[1:]

    def _warm_budget(self, info: dict) -> int:
        """Applications of this warm frame: the slow-motion budget when the alignment measured a
        small motion, ``warm_iterations`` otherwise (``naive``: no flow, always the latter)."""
        its, slow = self.warm_budgets()
        px = self._slow_motion_px()
        flow = info.get("mean_flow_px", float("nan"))
        if px > 0 and flow <= px:  # NaN (no flow: naive) compares False
            return slow
        return its

    def _warm_schedule(self, iterations: int, scale: float) -> Schedule:
        """The warm run (see the module doc): "chebyshev", the semi-iteration with ``warm_delta``
        over the whole image, the cold-initialised cells included; "plain", plain steps with the
        Chebyshev weights of the solver's own schedule (``delta`` x ``region_delta_factor``) in the
        cold-initialised cells."""
        if self.warm_schedule_kind() == "chebyshev":
            # One weight sequence for every pixel: the cold cells with the solver's stronger weights
            # (a region schedule) lost on a moving object (x4, 20 frames: up to 1.038x cold against
            # 0.633x; doc/warm_start.md, session 16).
            delta = self.warm.warm_delta
            if delta is None:
                delta = min(WARM_DELTA_FACTOR * chebyshev_defaults(scale)[0], 0.5)
            return Schedule.chebyshev(iterations, float(delta))
        if self._region is None or not self._region.any():
            return Schedule.plain(iterations)
        delta = self.solver.schedule_for(scale).delta or chebyshev_defaults(scale)[0]
        factor = self.warm.region_delta_factor
        if factor is None:
            factor = 4.0 if isinstance(self.solver.guide_model, FreeGuide) else 1.0
        return Schedule.chebyshev(iterations, min(delta * factor, 0.5), region=self._region)

    def process(self, rgb: np.ndarray, source: np.ndarray, stamp: float) -> FrameResult:
        """Upsample one frame; ``source`` in metres (0/NaN invalid), ``stamp`` in seconds.

        ``stats`` holds the solver's :class:`~dada_ros.core.solver.SolveStats` fields plus
        ``init_mode`` (cold | naive | flow), ``cold_reason``, ``flow_ms`` (alignment time),
        ``mean_flow_px`` (how far the view moved: it picks the warm frame's budget),
        ``warm_valid_fraction`` (pixels tracked), ``refine_iterations`` / ``refine_fraction``
        (young-pixel refinement: steps and fraction of the image solved), ``effective_iterations``
        (full-image-equivalent steps: ``iterations + refine_iterations * refine_fraction``),
        ``accept_*`` (the acceptance test: median cell error, rejected and cold-initialised
        fractions, fitted depth motion), ``warm_region_fraction`` (the image share of the
        cold-initialised cells: the Chebyshev region of the "plain" warm schedule), ``accept_ms`` (the acceptance test),
        ``solve_ms`` (the full-image solve), ``warm_declined_in_row`` (the backoff's count) and
        ``frame_seconds``: with ``flow_ms`` the cost split of a
        warm frame (what the warm start costs; the node publishes it in ``/diagnostics``).
        """
        t0 = time.perf_counter()
        if self._prev_stamp is not None and stamp <= self._prev_stamp:
            # A bag loop or simulator reset: nothing from the old timeline applies any more.
            self.reset()
            reset_reason = "time went backwards: warm-start state reset"
        else:
            reset_reason = ""
        pending = self._start_prepare(rgb, source)
        try:
            y0, info = self._warm_init(rgb, source, stamp)
        except BaseException:
            if pending is not None:  # never leave the worker running on this frame
                wait([pending])
            raise
        if reset_reason:
            info["cold_reason"] = reset_reason
        prepared, wait_ms = None, 0.0
        if pending is not None:
            t_wait = time.perf_counter()
            prepared = pending.result()  # a DadaInputError of the inputs surfaces here, as in solve
            wait_ms = (time.perf_counter() - t_wait) * 1000
        # passed only when made: a solver without a preparation step need not know the argument
        solve_kw = {"prepared": prepared} if prepared is not None else {}
        refine_fraction, refine_ms, refine_its = 0.0, 0.0, 0
        region_fraction = 0.0
        if y0 is None:
            res = self.solver.solve(rgb, source, **solve_kw)
            # A cold frame is what the cold policy gives (even when capped): mature by definition
            # (None: every pixel mature).
            age = None
        else:
            age = self._age
            warm_its = self._warm_budget(info)
            if info["init_mode"] == "flow" and self.warm.refine_iterations > 0:
                young = age < self.warm.mature_iterations
                if young.any():
                    t1 = time.perf_counter()
                    y0, refined, solved, _ = refine_young(
                        self.solver, rgb, source, y0, young, int(self.warm.refine_iterations),
                        int(self.warm.refine_tile_cells), float(self.warm.refine_min_fraction))
                    refine_ms = (time.perf_counter() - t1) * 1000
                    if solved:
                        refine_its = int(self.warm.refine_iterations)
                        refine_fraction = solved / young.size
                        age = np.where(refined, age + refine_its, age)
            if self.warm_schedule_kind() != "solver":
                schedule = self._warm_schedule(warm_its, rgb.shape[0] / source.shape[0])
                region_fraction = info.get("warm_region_fraction", 0.0)  # the cold-initialised cells' share
                res = self.solver.solve(rgb, source, init=y0, schedule=schedule, **solve_kw)
            else:
                res = self.solver.solve(rgb, source, init=y0, iterations=warm_its, **solve_kw)
            if age is not None:
                age = age + float(res.stats.iterations)
        depth, range_stats = (apply_output_range(res.depth, source, self.output_range)
                              if self.output_range is not None else (res.depth, {}))
        self._prev_depth = depth
        self._prev_guide = rgb
        self._prev_stamp = stamp
        self._prev_age = None if age is None else age.astype(np.float32)
        stats = res.stats.as_dict()
        # A preparation made beside the alignment counts in the solve's time only for the part the
        # alignment did not hide (what this frame waited for it): frame = align + solve + other.
        stats["seconds"] += wait_ms / 1000
        stats["prepare_overlapped"] = prepared is not None
        stats["prepare_wait_ms"] = wait_ms
        stats.update(range_stats)
        stats.update(info)
        stats["refine_iterations"] = refine_its
        stats["refine_fraction"] = refine_fraction
        stats["refine_ms"] = refine_ms
        stats["warm_region_fraction"] = region_fraction
        # the cost split of a frame (flow_ms and accept_ms come from the warm-start decision)
        stats["solve_ms"] = stats["seconds"] * 1000
        stats["effective_iterations"] = stats["iterations"] + refine_its * refine_fraction
        stats["frame_seconds"] = time.perf_counter() - t0
        return FrameResult(depth, stats)
