"""The learned model's guard: DADA-free where a ground-truth-free check says the learned guide loses.

A learned guide trained on some scenes can lose to DADA-free on a camera unlike them (issue 28:
out of fold, up to 1.30x DADA-free's MSE on a Middlebury scene and 1.24x on a RealSense frame). The
guard runs the cross-scale check (:func:`.cross_scale.cross_scale_measures`: both methods predict the
frame's own source from a x2 coarser copy, at twice the real ratio on the full guide) and keeps the
learned guide only when its error is below ``margin`` x DADA-free's. The check costs about two solves
at twice the ratio, so the node runs it on the first frame, every ``every`` frames after it and
whenever the frame size changes, and keeps the decision in between (a camera and its scenes change
slowly); ``every = 1`` checks every frame (the CLI's single frames).

The rule (guide mode, factor 2, inverse-depth error, margin 1) was chosen inside the grouped folds of
``benchmarks/learned_folds.py --guard`` (each fold's choice made on its inner fold; 4 of 5 folds
picked it), and its out-of-fold figures are in doc/learned.md ("A guard in front of the learned
model").
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .cross_scale import CROSS_SCALE_MEASURES, CROSS_SCALE_MODES, cross_scale_measures
from .errors import DadaInputError
from .schedule import Schedule
from .solver import DadaSolver, PreparedFrame, SolveResult

GUARD_MODES = ("cross_scale", "off")


def keeps_learned(errors: dict, measure: str, margin: float) -> bool:
    """The guard's rule on one check (:func:`.cross_scale.cross_scale_measures` of ``"dada"`` and
    ``"dada-free"``): keep the learned guide when its ``measure`` error is below ``margin`` x
    DADA-free's; a NaN on either side keeps DADA-free."""
    a, b = errors["dada"][measure], errors["dada-free"][measure]
    return bool(math.isfinite(a) and math.isfinite(b) and a < margin * b)


def independence_caveat(learned: DadaSolver) -> str:
    """Why the cross-scale check is no protection for these weights ("" when nothing says so).

    Weights adapted by cross-scale self-supervision (``dada-train --self-supervised``: the sensor's
    own depth predicted from a coarser copy of it) were trained on the signal the check measures,
    so the check favours them whether or not they win at the served ratio: measured on held-out
    RealSense frames (doc/learned.md, "Adapting to one camera"), the check kept such a model on 14
    of 15 x4 checks, losses of up to 1.57x DADA-free's MSE included."""
    meta = getattr(learned.guide_model, "meta", None) or {}
    if (meta.get("train_config") or {}).get("self_supervised"):
        return ("these weights were trained by cross-scale self-supervision, the signal the learned guard's check "
                "measures: the check favours them and does not protect against their losses (doc/learned.md, "
                "\"Adapting to one camera\"); validate them against ground truth before relying on the guard")
    return ""


@dataclass(frozen=True)
class GuardConfig:
    """How the guard checks: ``mode`` ``"cross_scale"`` or ``"off"`` (the learned guide always),
    the check's ``check_mode`` / ``factor`` / ``measure``, the ``margin`` the learned guide must beat
    DADA-free's error by, and ``every`` (check each N-th frame; 0: only the first frame and when the
    frame size changes)."""

    mode: str = "cross_scale"
    check_mode: str = "guide"
    factor: int = 2
    measure: str = "inverse"
    margin: float = 1.0
    every: int = 30

    def validate(self) -> None:
        if self.mode not in GUARD_MODES:
            raise DadaInputError(f"guard must be one of {', '.join(GUARD_MODES)}, got {self.mode!r}")
        if self.check_mode not in CROSS_SCALE_MODES:
            raise DadaInputError(f"guard check mode must be one of {CROSS_SCALE_MODES}, got {self.check_mode!r}")
        if self.measure not in CROSS_SCALE_MEASURES:
            raise DadaInputError(f"guard measure must be one of {CROSS_SCALE_MEASURES}, got {self.measure!r}")
        if int(self.factor) != self.factor or self.factor < 2:
            raise DadaInputError(f"guard factor must be an integer >= 2, got {self.factor}")
        if not (math.isfinite(self.margin) and self.margin > 0):
            raise DadaInputError(f"guard margin must be a finite number > 0, got {self.margin}")
        if int(self.every) != self.every or self.every < 0:
            raise DadaInputError(f"guard every must be an integer >= 0, got {self.every}")


class GuardedSolver:
    """A :class:`DadaSolver` look-alike that solves each frame with the learned solver or with
    DADA-free, as the last cross-scale check decided.

    Its stats (``SolveStats.guard``) say which ran (``pick``), whether this frame was checked
    (``checked``), the last check's errors (``error_dada``, ``error_free``), this frame's check cost
    (``ms``) and, when the check could not run (e.g. a source too small for a coarser copy), why
    (``reason``; DADA-free then runs).
    """

    def __init__(self, learned: DadaSolver, free: DadaSolver, config: GuardConfig | None = None):
        self.config_guard = config or GuardConfig()
        self.config_guard.validate()
        self.learned, self.free = learned, free
        self.caveat = independence_caveat(learned)  # "" unless the check is not independent evidence
        self._pick: DadaSolver | None = None
        self._since = 0
        self._shape: tuple | None = None
        self._last: dict = {}
        self._prepared: tuple[PreparedFrame, bool] | None = None  # prepare()'s frame and whether it was checked

    # --- what callers of a DadaSolver read -------------------------------------------------
    @property
    def current(self) -> DadaSolver:
        """The solver the last check picked (the learned one before any check)."""
        return self._pick or self.learned

    @property
    def config(self):
        return self.learned.config

    @property
    def device(self):
        return self.learned.device

    @property
    def guide_model(self):
        return self.current.guide_model

    def schedule_for(self, scale: float, iterations: int | None = None, holes: bool = False) -> Schedule:
        return self.current.schedule_for(scale, iterations, holes)

    def warm_feature_applies(self) -> bool:
        return self.current.warm_feature_applies()

    # --- the guard ---------------------------------------------------------------------------
    def _due(self, shape: tuple) -> bool:
        every = self.config_guard.every
        return self._pick is None or shape != self._shape or (every > 0 and self._since >= every)

    def check(self, guide: np.ndarray, source: np.ndarray) -> DadaSolver:
        """Run the cross-scale check on this frame and keep its decision."""
        g = self.config_guard
        t0 = time.perf_counter()
        try:  # the check treats 0, NaN, inf and negative source cells as invalid, as the solver does
            errs = cross_scale_measures(guide, source, {"dada": self.learned, "dada-free": self.free},
                                        g.check_mode, g.factor)
            a, b = errs["dada"][g.measure], errs["dada-free"][g.measure]
            keep = keeps_learned(errs, g.measure, g.margin)
            reason = "" if math.isfinite(a) and math.isfinite(b) else "the check left no cell to compare"
        except DadaInputError as exc:  # too small a source for a coarser copy, no valid cell, ...
            a = b = math.nan
            keep, reason = False, f"check not possible: {exc}"
        self._pick = self.learned if keep else self.free
        self._since = 0
        self._last = {"error_dada": a, "error_free": b, "reason": reason, "ms": 1000 * (time.perf_counter() - t0)}
        return self._pick

    def _decide(self, guide: np.ndarray, source: np.ndarray) -> bool:
        """Pick this frame's solver (running the check when due); True when this frame was checked."""
        shape = (np.shape(guide)[:2], np.shape(source))
        checked = self.config_guard.mode == "cross_scale" and self._due(shape)
        if self.config_guard.mode == "off":
            self._pick = self.learned
        elif checked:
            self.check(guide, source)
        self._shape = shape
        self._since += 1
        return checked

    def prepare(self, guide: np.ndarray, source: np.ndarray, warm: bool = False) -> PreparedFrame:
        """Decide this frame (checking when due) and :meth:`DadaSolver.prepare` it with the picked
        solver (``warm``: as there); ``solve(..., prepared=)`` then runs that solver without
        deciding again. The pipeline calls it on its worker thread beside the warm-start alignment."""
        checked = self._decide(guide, source)
        pre = self.current.prepare(guide, source, warm)
        self._prepared = (pre, checked)
        return pre

    def solve(self, guide: np.ndarray, source: np.ndarray, init: np.ndarray | None = None,
              iterations: int | None = None, schedule: Schedule | None = None, observe=None,
              prepared: PreparedFrame | None = None) -> SolveResult:
        """:meth:`DadaSolver.solve` of the picked solver (checking first when due; with
        ``prepared`` from :meth:`prepare` the frame was decided there)."""
        if prepared is not None and self._prepared is not None and self._prepared[0] is prepared:
            checked = self._prepared[1]
        else:  # a foreign preparation is refused by the picked solver's own identity check
            checked = self._decide(guide, source)
        self._prepared = None
        res = self.current.solve(guide, source, init, iterations, schedule, observe, prepared=prepared)
        res.stats.guard = {"pick": "dada" if self.current is self.learned else "dada-free", "checked": checked,
                           **self._last, "ms": self._last.get("ms", 0.0) if checked else 0.0}
        return res
