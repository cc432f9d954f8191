"""DADA solver: numpy guide + low-res depth in, full-resolution depth + stats out.

This wires the pieces together: input checks, hole filling and Y0, guide coefficients, an
optional coarse-to-fine start, the masked diffusion-adjustment loop (:mod:`.loop`), and the
mapping back to metres with NaN where nothing could be inferred.

Iteration policy (``SolverConfig``):

* ``schedule="chebyshev"`` (the default): the Chebyshev semi-iteration of :mod:`.schedule`
  around the same multiplicative diffusion + adjustment step, with the per-ratio (delta, budget)
  of :data:`~dada_ros.core.schedule.CHEBYSHEV_TABLE` (150 / 150 / 200 applications at x4 / x8 /
  x16, capped by ``max_iterations``): MSE within 1% of the paper's 8000 plain steps on the
  benchmark's synthetic and real scenes at 1/40 - 1/53 of the applications
  (``benchmarks/solver_speed.py``). ``iterations=N`` runs N applications; ``tol`` adds an
  early stop on the change per check interval.
* ``schedule="plain"``: the paper's loop. ``iterations=N``: exactly N steps from Y0.
  ``tol=T``: steps until the max relative change per ``check_every`` steps falls below T
  (capped by ``max_iterations``); neither: ``tol=DEFAULT_TOL`` with the 8000-step cap (on real
  scenes the tolerance never fires: the cap stops it at exactly 8000).

With ``coarse_to_fine`` a cold start first solves on coarser guides (either schedule).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from typing import Callable, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from . import coefficients as coef
from .device import DEVICES, resolve_device
from .errors import DadaInputError
from .inputs import check_init, check_pair
from .loop import LoopStats, run_loop
from .resample import HOLE_FILLS, Partition, Resampler, fill_holes, initial_upsample, layered_y0
from .schedule import LEARNED_APPLICATIONS, SCHEDULES, Schedule, chebyshev_defaults

DEFAULT_LAMBDA = 0.24
DEFAULT_TOL = 2e-4
DEFAULT_MAX_ITERATIONS = 8000
# Documented upper bound of every iteration count (CLI, node parameters, config): 100k plain
# steps is ~12x the paper's 8000 and already minutes on a CPU; beyond it a typo (1e6, 1e12)
# would block a worker for hours, so it is refused with a reason instead.
ITERATIONS_LIMIT = 100_000
# SolverConfig.learned_schedule: which schedule a learned guide runs (see the field's comment)
LEARNED_SCHEDULES = ("matching", "per-ratio")


def check_iterations(n: float, name: str = "iterations") -> None:
    """Refuse an iteration count that is not an integer in [1, ITERATIONS_LIMIT], with a reason."""
    if int(n) != n or not 1 <= n <= ITERATIONS_LIMIT:
        raise DadaInputError(f"{name} must be an integer in [1, {ITERATIONS_LIMIT}], got {n}")


# Values <= this (in metres) are shifted before the multiplicative adjustment, as the authors do,
# so that a near-zero depth cannot blow up the ratio S / down(Y).
POSITIVITY_FLOOR = 0.1


class GuideModel(Protocol):
    """What the solver needs from a guide: features at full resolution and c(features)."""

    def features(self, rgb01: torch.Tensor, depth_up: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        """Features at full resolution; ``scale`` is the resolution ratio guide / source."""
        ...

    def coefficients(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass
class FreeGuide:
    """Learning-free guide (DADA-dagger): the authors' code form or Eq. (2) as printed."""

    kappa: float = coef.DEFAULT_KAPPA
    form: str = "code"

    def __post_init__(self) -> None:
        if self.form not in coef.FORMS:
            raise DadaInputError(f"unknown coefficient form {self.form!r}; expected one of {coef.FORMS}")
        coef.check_kappa(self.kappa)

    def features(self, rgb01: torch.Tensor, depth_up: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        if self.form == "paper":
            return rgb01
        return coef.free_features(rgb01, depth_up)

    def coefficients(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.form == "paper":
            return coef.coefficients_paper(features, self.kappa)
        return coef.coefficients_from_features(features, self.kappa)

    def coefficients_from_inputs(self, rgb: np.ndarray, depth_up: np.ndarray, device: torch.device,
                                 scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``coefficients(features(rgb, depth_up))`` in one pass without the feature tensor (bit-identical:
        :func:`~.coefficients.free_coefficients_from_inputs`), or None where it does not apply (the
        paper's form, a GPU, no numba): then the caller makes the features."""
        if self.form != "code" or device.type != "cpu":
            return None
        return coef.free_coefficients_from_inputs(rgb, depth_up, self.kappa)


@dataclass
class SolverConfig:
    """Tunables of the solver; ``validate()`` rejects out-of-range values with a reason."""

    lam: float = DEFAULT_LAMBDA
    schedule: str = "chebyshev"
    iterations: int | None = None
    tol: float | None = None
    max_iterations: int = DEFAULT_MAX_ITERATIONS
    check_every: int = 25
    # Coarse-to-fine reaches the TRUE fixed point in fewer steps, but on scenes with strong colour
    # edges that fixed point is worse than the paper's 8000-step answer (depth slowly leaks across
    # weak links), so the default follows the paper: plain steps from Y0 with a tolerance stop.
    coarse_to_fine: bool = False
    init: str = "bicubic"
    # How Y0 is made in invalid source cells before the upsampling (see resample.fill_holes).
    # "average" (the authors' reference: repeated 3x3 averaging) since issue #27: on real sensor
    # frames the former default "guided" was up to 7x worse over the whole frame (RealSense border
    # bands) and "layered" up to 1.7% worse (benchmarks/holes.py, doc/method.md "Holes").
    hole_fill: str = "average"
    # Pixels whose source cell is farther than this (in source cells) from any valid cell are
    # returned as NaN: diffusion would invent depth there (e.g. out-of-range sky in a ToF image).
    max_fill_distance: float = 8.0
    device: str = "auto"
    # The schedule of a LEARNED guide (DADA-free always runs the per-ratio table):
    # "matching": Schedule.matching_plain, learned_applications (225) that follow 8000 plain steps (the
    # default); "per-ratio": the per-ratio table DADA-free runs (150-200 applications), the
    # schedule `dada-train --solve full` differentiates through. Measured in session 9
    # (doc/learned.md, "The learned guide's schedule"): a learned frame ~0.8x, the same accuracy
    # out of fold on real frames, 10% worse on synthetic scenes at x4, and one divergence (plain-loop
    # fallback) in 147 solves; not the default.
    learned_schedule: str = "matching"
    # Applications of the matching schedule (Schedule.matching_plain(8000, N)); 300 until session 11,
    # 225 chosen then on validation only (doc/learned.md "The learned guide's budget").
    learned_applications: int = LEARNED_APPLICATIONS
    # A warm start's Y0 (the motion-compensated previous output where it was kept, the cold Y0
    # elsewhere) is also DADA-free's depth feature, in place of the cold Y0 (up(S)): its depth
    # edges are the fused ones of earlier frames, so the coefficients place the diffusion barriers
    # there. Session 14 (doc/warm_start.md, "The warm start's depth feature"): warm / cold MSE
    # over every benchmark warm frame 0.941 -> 0.758, pan / the 8000-step equilibrium 0.960 ->
    # 0.783; one more coefficient pass (~1.5 ms at 640x480). DADA-free's code form only (a learned
    # guide would run its network again; the paper's form has no depth feature).
    warm_depth_feature: bool = True

    def validate(self) -> None:
        if not (isinstance(self.lam, (int, float)) and 0 < self.lam < 0.25):
            raise DadaInputError(f"lambda must be in (0, 0.25) for a stable 4-neighbour step, got {self.lam}")
        if self.iterations is not None:
            check_iterations(self.iterations)
        if self.tol is not None and not (math.isfinite(self.tol) and self.tol > 0):
            raise DadaInputError(f"tol must be a finite number > 0, got {self.tol}")
        check_iterations(self.max_iterations, "max_iterations")
        if int(self.check_every) != self.check_every or self.check_every < 1:
            raise DadaInputError(f"check_every must be an integer >= 1, got {self.check_every}")
        if self.schedule not in SCHEDULES:
            raise DadaInputError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.hole_fill not in HOLE_FILLS:
            raise DadaInputError(f"hole_fill must be one of {', '.join(HOLE_FILLS)}, got {self.hole_fill!r}")
        if self.init not in ("bicubic", "nearest", "bilinear"):
            raise DadaInputError(f"init must be bicubic, nearest or bilinear, got {self.init!r}")
        if not (self.max_fill_distance >= 0):
            raise DadaInputError(f"max_fill_distance must be >= 0 (inf = fill all), got {self.max_fill_distance}")
        check_iterations(self.learned_applications, "learned_applications")
        if not isinstance(self.warm_depth_feature, (bool, np.bool_)):
            raise DadaInputError(f"warm_depth_feature must be true or false, got {self.warm_depth_feature!r}")
        if self.learned_schedule not in LEARNED_SCHEDULES:
            raise DadaInputError(f"learned_schedule must be one of {', '.join(LEARNED_SCHEDULES)}, "
                                 f"got {self.learned_schedule!r}")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise DadaInputError(f"unknown device {self.device!r}; expected one of {', '.join(DEVICES)}")


@dataclass
class SolveStats:
    """What the solver did for one image (JSON-friendly via ``as_dict``)."""

    iterations: int = 0  # applications of the step at full resolution
    schedule: str = "chebyshev"
    coarse_iterations: list[int] = field(default_factory=list)  # steps per coarse level, coarse first
    residual: float = float("nan")  # max relative change over the last check interval
    converged: bool = False
    seconds: float = 0.0  # whole solve: checks, features, coefficients, loops (less a prepare made beforehand)
    prepare_seconds: float = 0.0  # checks, cold Y0, features, coefficients (DadaSolver.prepare), wherever it ran
    loop_seconds: float = 0.0
    scale: float = 1.0
    integer_factor: int | None = None
    fallback: str = ""  # why the default schedule was replaced (e.g. the semi-iteration diverged)
    warm_start: bool = False
    warm_depth_feature: bool = False  # the coefficients' depth feature came from the warm Y0
    valid_source_fraction: float = 1.0
    filled_fraction: float = 1.0  # fraction of output pixels that are finite
    device: str = "cpu"
    # the learned model's guard (core/guard.py): pick, checked, the check's errors, ms, reason
    guard: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        # one level deep (the list and the dict copied): dataclasses.asdict's recursive deep copy
        # cost ~0.15 ms a frame for the same dict
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["coarse_iterations"] = list(self.coarse_iterations)
        out["guard"] = dict(self.guard)
        return out


@dataclass
class PreparedFrame:
    """:meth:`DadaSolver.prepare`'s result: what a solve takes from (guide, source) alone.

    ``solver`` made it and ``guide`` / ``source`` are the very arrays it was made from (``solve``
    checks both by identity, so a prepared frame cannot be paired with other inputs or another
    solver's coefficients); ``src`` / ``valid`` / ``part`` the checked
    source; ``y_cold`` the cold Y0 and ``dist`` each cell's distance to a valid one; ``offset`` the
    positivity shift; ``features`` / ``cv`` / ``ch`` the guide's features and coefficients.
    """

    solver: "DadaSolver"  # whose features and coefficients these are
    guide: np.ndarray
    source: np.ndarray
    src: np.ndarray
    valid: np.ndarray
    part: Partition
    y_cold: np.ndarray
    dist: np.ndarray
    offset: float
    features: torch.Tensor | None  # None: not made (on the CPU without coarse-to-fine)
    cv: torch.Tensor | None  # None: left to the solve (prepared with warm=True)
    ch: torch.Tensor | None
    seconds: float
    rgb: np.ndarray  # the guide as float32 in [0, 1] (a warm solve's depth feature reuses it)


@dataclass
class SolveResult:
    depth: np.ndarray  # (H, W) float32 metres, NaN where nothing could be inferred
    stats: SolveStats


def coarse_shapes(guide_shape: tuple[int, int], source_shape: tuple[int, int]) -> list[tuple[int, int]]:
    """Guide sizes for coarse-to-fine, coarsest first, excluding full resolution.

    Each level halves the guide while it stays at least twice the source size (a ratio < 2
    leaves almost nothing for the diffusion to do).
    """
    (H, W), (h, w) = guide_shape, source_shape
    shapes = []
    k = 1
    while round(H / 2**k) >= 2 * h and round(W / 2**k) >= 2 * w:
        shapes.append((round(H / 2**k), round(W / 2**k)))
        k += 1
    return shapes[::-1]


def _to_tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W) -> (1, 1, H, W); (H, W, C) -> (1, C, H, W)."""
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)
    return t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]


def cold_start(src: np.ndarray, valid: np.ndarray, part: Partition, rgb: np.ndarray, hole_fill: str,
               init: str) -> tuple[np.ndarray, np.ndarray]:
    """Y0 (H, W) without a warm start, and each source cell's distance to the nearest valid one
    (``rgb``: the guide in [0, 1]). ``layered`` decides Y0 per pixel in occlusion holes
    (:func:`~.resample.layered_y0`); the other fills make a hole-free source, then upsample it."""
    if hole_fill == "layered":
        _, dist = fill_holes(src, valid, "nearest")
        return (layered_y0(src, valid, part, rgb, init) if not valid.all()
                else initial_upsample(src, part.guide_shape, init)), dist
    filled, dist = fill_holes(src, valid, hole_fill,
                              part.cell_means(rgb) if hole_fill == "guided" and not valid.all() else None)
    return initial_upsample(filled, part.guide_shape, init), dist


class DadaSolver:
    """Reusable solver for one configuration and guide model (the node keeps one of these)."""

    def __init__(self, config: SolverConfig | None = None, guide_model: GuideModel | None = None):
        self.config = config or SolverConfig()
        self.config.validate()
        self.guide_model = guide_model or FreeGuide()
        self.device = resolve_device(self.config.device)

    def prepare(self, guide: np.ndarray, source: np.ndarray, warm: bool = False) -> PreparedFrame:
        """The part of a solve that depends on (guide, source) alone: input checks, the cold Y0,
        the guide's features and coefficients. A caller may compute it while it aligns the
        previous frame (``FramePipeline``) and hand it to :meth:`solve`. Thread-safe: it reads the
        solver's configuration only.

        ``warm``: the frame will probably be solved warm. Where a warm solve makes coefficients of
        its own (:attr:`SolverConfig.warm_depth_feature`), the cold ones are then left to
        :meth:`solve`, which makes them only if the frame starts cold after all (1.5-2 ms at
        640x480 that would otherwise compete with the alignment for the cores, for nothing).

        Raises:
            DadaInputError: on malformed inputs (see :mod:`.inputs`).
        """
        t0 = time.perf_counter()
        rgb, src, valid, part = check_pair(guide, source)
        y_cold, dist = cold_start(src, valid, part, rgb, self.config.hole_fill, self.config.init)
        # Positivity guard (authors' code): shift everything when a depth is near zero.
        offset = POSITIVITY_FLOOR if float(src[valid].min()) <= POSITIVITY_FLOOR else 0.0
        feats = cv = ch = None
        if not (warm and self.warm_feature_applies()):
            feats, cv, ch = self._coefficients(rgb, y_cold, part.scale)
        return PreparedFrame(self, guide, source, src, valid, part, y_cold, dist, offset, feats, cv, ch,
                             time.perf_counter() - t0, rgb)

    def _coefficients(self, rgb: np.ndarray, depth: np.ndarray, scale: float
                      ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """(features or None, cv, ch) of the guide ``rgb`` (float32 in [0, 1]) with ``depth`` as
        the depth input. On the CPU the coefficients straight from the inputs, no feature tensor
        (DADA-free in one pass, a learned lite U-Net in two), except for coarse-to-fine, which needs
        the features. A guide that offers it must give what coefficients(features(...)) would, to
        float rounding."""
        gm, dev = self.guide_model, self.device
        fast_path = None if self.config.coarse_to_fine else getattr(gm, "coefficients_from_inputs", None)
        fast = fast_path(rgb, depth, dev, scale) if fast_path is not None else None
        if fast is not None:
            return None, *fast
        with torch.no_grad():  # thread-local: set here, not only by the caller
            feats = gm.features(_to_tensor(rgb, dev), _to_tensor(depth, dev), scale)
            return feats, *gm.coefficients(feats)

    def warm_feature_applies(self) -> bool:
        """Whether a warm solve makes DADA-free's coefficients with the warm Y0 as the depth feature
        (``SolverConfig.warm_depth_feature``; not with a learned guide, the paper's form or a
        coarse-to-fine solve)."""
        gm = self.guide_model
        return (bool(self.config.warm_depth_feature) and isinstance(gm, FreeGuide) and gm.form == "code"
                and not self.config.coarse_to_fine)

    def _warm_coefficients(self, pre: PreparedFrame, y0: np.ndarray) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The coefficients of a warm solve with the warm Y0 as the depth feature, or None where
        that does not apply (see :meth:`warm_feature_applies`)."""
        if not self.warm_feature_applies():
            return None
        return self._coefficients(pre.rgb, y0, pre.part.scale)[1:]

    def solve(self, guide: np.ndarray, source: np.ndarray, init: np.ndarray | None = None,
              iterations: int | None = None, schedule: Schedule | None = None,
              observe: Callable[[int, np.ndarray], None] | None = None,
              prepared: PreparedFrame | None = None) -> SolveResult:
        """Upsample ``source`` (h, w, metres; 0/NaN/inf/<0 invalid) onto ``guide`` (H, W, 3).

        Args:
            guide: RGB, uint8 / uint16 / float in [0, 1].
            source: low-resolution depth in metres.
            init: optional warm start Y0 (H, W) in metres; its non-finite or <= 0 pixels take
                the cold initialisation. A warm start runs at full resolution only.
            iterations: overrides the configured policy with exactly this many steps (the video
                warm-start budget).
            schedule: overrides the configured policy with this loop schedule (benchmarks).
            observe: ``observe(n, depth)`` at every check of the full-resolution loop with the
                (H, W) metres the solve would return after n applications (before the NaN of
                ``max_fill_distance``); benchmarks trace the error along the trajectory with it.
            prepared: :meth:`prepare` of these very arrays (computed beforehand, e.g. beside the
                warm-start alignment); its time is ``stats.prepare_seconds``, not in ``stats.seconds``.
        Returns:
            :class:`SolveResult` with the depth (H, W) float32 and :class:`SolveStats`.
        Raises:
            DadaInputError: on malformed inputs (see :mod:`.inputs`), or ``prepared`` made from
                other arrays or by another solver.
        """
        t0 = time.perf_counter()
        cfg = self.config
        if iterations is not None:
            check_iterations(iterations)
        if prepared is None:  # a warm solve makes its own coefficients where it can (prepare's warm)
            prepared = self.prepare(guide, source, warm=init is not None)
        elif prepared.guide is not guide or prepared.source is not source:
            raise DadaInputError("prepared was made from other guide / source arrays than the ones given")
        elif prepared.solver is not self:
            raise DadaInputError("prepared was made by another solver (other features and coefficients)")
        pre = prepared
        part, src, valid, offset = pre.part, pre.src, pre.valid, pre.offset
        y0_warm = check_init(init, part.guide_shape)
        dev = self.device
        warm = y0_warm is not None
        cv, ch = pre.cv, pre.ch
        warm_coef = None
        if warm:
            ok = np.isfinite(y0_warm) & (y0_warm > 0)
            y0 = np.where(ok, y0_warm, pre.y_cold).astype(np.float32, copy=False)
            warm_coef = self._warm_coefficients(pre, y0)
            if warm_coef is not None:
                cv, ch = warm_coef
        else:
            y0 = pre.y_cold
        if cv is None:  # prepared for a warm solve that did not happen: the cold coefficients now
            pre.features, pre.cv, pre.ch = self._coefficients(pre.rgb, pre.y_cold, part.scale)
            cv, ch = pre.cv, pre.ch

        with torch.no_grad():
            src_t = _to_tensor(src + offset, dev)
            valid_t = torch.from_numpy(valid).to(dev)[None, None]

            stats = SolveStats(
                scale=part.scale,
                integer_factor=part.integer_factor,
                warm_start=warm,
                warm_depth_feature=warm_coef is not None,
                valid_source_fraction=float(valid.mean()),
                device=str(dev),
                prepare_seconds=pre.seconds,
            )
            # the loop works in place: a warm Y0 is this solve's own array (no copy when there is no
            # offset), the cold one belongs to the prepared frame
            y = _to_tensor(y0 + offset if offset or not warm else y0, dev)
            n_fixed = iterations if iterations is not None else cfg.iterations
            if cfg.coarse_to_fine and n_fixed is None and not warm:
                y = self._coarse_start(y, pre.features, src_t, valid_t, part, stats)
            res = Resampler(part, dev)
            sched = schedule if schedule is not None else self.schedule_for(part.scale, n_fixed, not valid.all())
            stats.schedule = sched.kind
            watch = None if observe is None else (
                lambda n, t: observe(n, (t[0, 0] - offset).float().cpu().numpy()))
            loop = run_loop(y, src_t, valid_t, cv, ch, res, cfg.lam, schedule=sched, observe=watch)
            if loop.diverged:  # rare: the semi-iteration ran away on these coefficients (y is Y0 again)
                # First a semi-iteration with twice the applications (smaller weights: the schedule
                # that follows 8000 plain steps), a few times a frame's cost; then the plain loop
                # (8000 steps: ~40x). Session 11: dada_lite_v8 at 225 applications diverged on one
                # held-out frame of 147 (flowerpots x4), which 250 or more did not.
                n_retry = min(2 * len(sched), int(cfg.max_iterations))
                why = f"diverged after {loop.iterations} applications"
                retry = Schedule.matching_plain(DEFAULT_MAX_ITERATIONS, n_retry, None, cfg.check_every)
                loop = run_loop(y, src_t, valid_t, cv, ch, res, cfg.lam, schedule=retry, observe=watch)
                stats.fallback = f"{why}: {n_retry} applications following 8000 plain steps"
                stats.schedule = retry.kind
                if loop.diverged:
                    stats.fallback = f"{why}, and with {n_retry}: plain loop"
                    loop = run_loop(y, src_t, valid_t, cv, ch, res, cfg.lam, schedule=self._plain_policy(),
                                    observe=watch)
                    stats.schedule = "plain"
            self._record(stats, loop, final=True)
            out = (y[0, 0] - offset).float().cpu().numpy()

        # NaN where the nearest measurement is too far for the fill to mean anything (a dense
        # source, the common case, has no such cell: no full-resolution mask then).
        far = pre.dist > cfg.max_fill_distance
        if far.any():
            out[part.expand(far)] = np.nan
        stats.filled_fraction = float(np.isfinite(out).mean())
        stats.seconds = time.perf_counter() - t0  # a prepare made beforehand is not in it (prepare_seconds)
        return SolveResult(out, stats)

    def schedule_for(self, scale: float, iterations: int | None = None, holes: bool = False) -> Schedule:
        """The loop schedule of one solve at ratio ``scale`` (``iterations``: a fixed count;
        ``holes``: the source has invalid cells, whose interiors converge more slowly)."""
        cfg = self.config
        if cfg.schedule == "plain":
            if iterations is not None:
                return Schedule.plain(int(iterations), None, cfg.check_every)
            return self._plain_policy()
        tol = None if iterations is not None else cfg.tol
        if not isinstance(self.guide_model, FreeGuide) and cfg.learned_schedule == "matching":
            # A learned guide was trained for the 8000-step state and diffuses more slowly than
            # DADA-free: the schedule that follows 8000 plain steps at every ratio ("per-ratio":
            # the table below, as DADA-free and as `dada-train --solve full` trains through).
            n = int(iterations) if iterations is not None else min(int(cfg.learned_applications), int(cfg.max_iterations))
            return Schedule.matching_plain(DEFAULT_MAX_ITERATIONS, n, tol, cfg.check_every)
        delta, budget = chebyshev_defaults(scale, holes)
        n = int(iterations) if iterations is not None else min(budget, int(cfg.max_iterations))
        return Schedule.chebyshev(n, delta, tol, cfg.check_every)

    def _plain_policy(self) -> Schedule:
        """The paper's loop with the tolerance stop, capped by ``max_iterations``."""
        cfg = self.config
        return Schedule.plain(cfg.max_iterations, cfg.tol if cfg.tol is not None else DEFAULT_TOL, cfg.check_every)

    def _coarse_start(
        self, y_full: torch.Tensor, feats: torch.Tensor, src_t: torch.Tensor, valid_t: torch.Tensor,
        part: Partition, stats: SolveStats,
    ) -> torch.Tensor:
        """Solve on successively finer guides, each started from the previous level's answer.

        The coarse levels see the same source with a smaller ratio, so information crosses a block
        in a quarter of the steps per level; the full-resolution loop then only refines. Returns
        Y0 for full resolution (``y_full`` itself when the ratio is too small for a coarse level).
        """
        shapes = coarse_shapes(part.guide_shape, part.source_shape)
        if not shapes:
            return y_full
        y = F.interpolate(y_full, size=shapes[0], mode="area")
        for i, shape in enumerate(shapes):
            if i:
                y = F.interpolate(y, size=shape, mode="bilinear", align_corners=False)
            f = F.interpolate(feats, size=shape, mode="area")
            sub = Partition(shape, part.source_shape)
            cv, ch = self.guide_model.coefficients(f)
            loop = run_loop(y, src_t, valid_t, cv, ch, Resampler(sub, f.device), self.config.lam,
                            schedule=self.schedule_for(sub.scale))
            self._record(stats, loop, final=False)
        return F.interpolate(y, size=part.guide_shape, mode="bilinear", align_corners=False).contiguous()

    @staticmethod
    def _record(stats: SolveStats, loop: LoopStats, final: bool) -> None:
        if final:
            stats.iterations = loop.iterations
            stats.residual = loop.residual
            stats.converged = loop.converged
        else:
            stats.coarse_iterations.append(loop.iterations)
        stats.loop_seconds += loop.seconds


def upsample_depth(
    guide: np.ndarray,
    source: np.ndarray,
    config: SolverConfig | None = None,
    init: np.ndarray | None = None,
    guide_model: GuideModel | None = None,
) -> SolveResult:
    """One-shot convenience wrapper around :class:`DadaSolver`."""
    return DadaSolver(config, guide_model).solve(guide, source, init)
