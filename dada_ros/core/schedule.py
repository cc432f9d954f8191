"""The iteration schedule of the diffusion-adjustment loop: weights, budget and stop rule.

One object, shared by every backend (torch, the fused numba kernel, Triton): the driver in
:mod:`.loop` walks it, a backend only performs the step it is given.

With T = one diffusion step (Eq. 1) followed by one masked adjustment (Eq. 3), a schedule with
weights w_1..w_N runs the three-term recurrence

    y_{k+1} = w_{k+1} * (T(y_k) - y_{k-1}) + y_{k-1}          (y_{-1} unused: w_1 = 1)

* ``plain``: every w = 1, i.e. y_{k+1} = T(y_k) -- the paper's loop, N steps.
* ``chebyshev``: the Chebyshev semi-iteration (Golub & Varga 1961) for an iteration whose
  spectrum lies in [-rho, rho], rho = 1 - delta:

      w_1 = 1,  w_2 = 2 / (2 - rho^2),  w_{k+1} = 1 / (1 - rho^2 w_k / 4).

  The linearised diffusion step has its spectrum in [1 - 8 lambda, 1]; with lambda = 0.24 that
  is [-0.92, 1], inside the symmetric interval for any delta <= 0.08, so the symmetric weights
  (no extrapolation term, one state fewer per step) cover it. delta is the assumed gap below 1:
  the slow, large-scale modes that the plain loop needs thousands of steps for are the ones the
  polynomial damps; a smaller delta reaches further along that plateau at the cost of more
  applications. Every iterate is an affine combination (weights sum to 1) of adjusted images, so
  once Y0 itself is adjusted, ``down(y) == S`` holds at every step and the driver ends with one
  more adjustment to remove float drift.

The per-ratio table :data:`CHEBYSHEV_TABLE` (delta, applications) was chosen on synthetic seeds
and the real scenes of ``../shared/realdata`` with ``benchmarks/solver_speed.py --schedule-sweep``;
the README gives the measurements behind it. The stop rule of the default is its fixed budget
(the semi-iterate's change is not monotone, and on real data the 8000-step residual never reaches
a useful tolerance); ``tol`` still stops early on the change per check interval if asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import DadaInputError

SCHEDULES = ("chebyshev", "plain")

# (scale, delta, applications) anchors; between anchors delta and the budget are interpolated in
# log2(scale), beyond them the end values hold (x2 and x64 use the x4 / x32 rows). Chosen with
# benchmarks/solver_speed.py --schedule-sweep on 4 generated scenes and 9 real / rendered ones
# (README: "Chebyshev schedule"): delta = 1 / (128 s) up to x16 was the best of the candidates
# (1/(16 s^2), the rule measured on one scene before, is too large at x4: it leaves the slow modes
# of harder scenes unconverged), and it stops falling beyond x16 (x32: 1/2048 again); the budget
# is a multiple of 25 inside the window where the worst scene stays within 1% of the 8000-step MSE:
# x4 150 (worst 1.006; every budget from 150 on passes), x8 150 (1.002; from 150 on), x16 200
# (1.002; window 175-225: beyond it the semi-iteration passes the 8000-step state and the MSE of
# some scenes rises again), x32 225 (1.009, 8 scenes; reported, no target).
CHEBYSHEV_TABLE: tuple[tuple[float, float, int], ...] = (
    (4.0, 1.0 / (128 * 4.0), 150),
    (8.0, 1.0 / (128 * 8.0), 150),
    (16.0, 1.0 / (128 * 16.0), 200),
    (32.0, 1.0 / (128 * 16.0), 225),
)

# A frame with hole cells (no source value: sensor shadows, dropouts, occlusions). A hole cell has
# no adjustment to anchor it and, beside a depth edge, weak links to both sides, so its slow modes
# lie below the dense table's delta; the reference's 8000 plain steps move them further than the
# dense budget does (whole-frame MSE up to 1.20x the reference's on a Middlebury occlusion frame at
# x4, 1.155x on a RealSense frame at x8). At x4 and x8 the hole table follows 8000 plain steps
# (delta = N^2 / (2 * 8000^2), as Schedule.matching_plain) with N = 175, the fewest applications
# of the candidates 150 / 175 / 200 / 250 / 300 that kept every hole frame of every group within 1%
# of the reference (also when each group is held out in turn); at x16 and beyond it keeps the dense
# row (there the matching schedule lost up to 7% on a small simulated ToF frame, 16x16 cells, where
# the dense row was better than the reference). Measured with benchmarks/holes_budget.py
# (doc/method.md, "The schedule of a frame with holes").
HOLE_APPLICATIONS = 175
HOLE_TABLE: tuple[tuple[float, float, int], ...] = (
    (4.0, HOLE_APPLICATIONS ** 2 / (2.0 * 8000 ** 2), HOLE_APPLICATIONS),
    (8.0, HOLE_APPLICATIONS ** 2 / (2.0 * 8000 ** 2), HOLE_APPLICATIONS),
    (16.0, 1.0 / (128 * 16.0), 200),
    (32.0, 1.0 / (128 * 16.0), 225),
)

# Applications of the schedule for learned guides (Schedule.matching_plain): measured on held-out
# seeds 100000-100002 at x4-x16, worst MSE / MSE(8000 plain) 1.021 (dada_lite_v5) and 1.003
# (dada_lite_v6) at 300, 1.031 / 1.006 at 250. Session 11, dada_lite_v8 scored on validation only
# (realdata val split + 8 synthetic validation seeds, x4-x16, MSE against the truth): the fewest of
# 150 / 175 / 200 / 225 / 250 / 300 within 1% of 300's geo-mean with no row > 3% worse is 225
# (geo-mean 0.999x 300's, worst row 1.022x; 200: 1.038x): doc/learned.md.
LEARNED_APPLICATIONS = 225
# A weighted recurrence is not guaranteed to converge for every coefficient field (the
# multiplicative adjustment makes the step non-symmetric, and Chebyshev weights can amplify its
# complex modes; seen once on a learned guide): an iterate that leaves this multiple of the
# largest source depth (or stops being finite) aborts the run, and the solver falls back to the
# plain loop. Every iterate averages to the source over each cell, so a converging run stays
# within a few tenths of the source range.
DIVERGED_FACTOR = 10.0


def chebyshev_weights(n: int, delta: float) -> np.ndarray:
    """The n weights w_1..w_n of the symmetric Chebyshev semi-iteration for rho = 1 - delta."""
    if not 0.0 < delta < 1.0:
        raise DadaInputError(f"chebyshev delta must be in (0, 1), got {delta}")
    rho2 = (1.0 - delta) ** 2
    w = np.ones(n, dtype=np.float64)
    if n >= 2:
        w[1] = 2.0 / (2.0 - rho2)
    for k in range(2, n):
        w[k] = 1.0 / (1.0 - rho2 * w[k - 1] / 4.0)
    return w


def chebyshev_defaults(scale: float, holes: bool = False) -> tuple[float, int]:
    """(delta, applications) of the default schedule at this resolution ratio (``holes``: for a
    source with invalid cells, :data:`HOLE_TABLE`)."""
    if not (math.isfinite(scale) and scale > 0):
        raise DadaInputError(f"scale must be a positive number, got {scale}")
    table = HOLE_TABLE if holes else CHEBYSHEV_TABLE
    xs = [math.log2(s) for s, _, _ in table]
    x = min(max(math.log2(max(scale, 1.0)), xs[0]), xs[-1])
    log_delta = float(np.interp(x, xs, [math.log(d) for _, d, _ in table]))
    budget = float(np.interp(x, xs, [n for _, _, n in table]))
    return math.exp(log_delta), int(round(budget))


@dataclass(frozen=True)
class Schedule:
    """Weights (one per application), the check interval and the stop rule of one loop call.

    Build it with :meth:`plain`, :meth:`chebyshev` or :meth:`for_ratio`; ``len(schedule)`` is
    the budget. The driver checks the change of the iterate every ``check_every`` applications
    and after the last one, and stops early when :meth:`should_stop` says so.
    """

    kind: str
    weights: np.ndarray = field(repr=False)
    tol: float | None = None
    check_every: int = 25
    delta: float | None = None
    # (H, W) bool: the pixels the weights apply to; every other pixel takes plain steps (weight 1)
    # in the same applications. None: the weights apply everywhere. The video warm start uses it
    # (core/pipeline.py): the semi-iteration where a frame starts cold, plain steps on the kept prior.
    region: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise DadaInputError(f"unknown schedule {self.kind!r}; expected one of {SCHEDULES}")
        if len(self.weights) < 1:
            raise DadaInputError("a schedule needs at least one application")
        if int(self.check_every) != self.check_every or self.check_every < 1:
            raise DadaInputError(f"check_every must be an integer >= 1, got {self.check_every}")
        if self.tol is not None and not (math.isfinite(self.tol) and self.tol > 0):
            raise DadaInputError(f"tol must be a finite number > 0, got {self.tol}")
        if self.region is not None and (np.ndim(self.region) != 2 or np.asarray(self.region).dtype != bool):
            raise DadaInputError("a schedule's region must be a 2-D boolean mask")

    @classmethod
    def plain(cls, iterations: int, tol: float | None = None, check_every: int = 25) -> "Schedule":
        """The paper's loop: ``iterations`` steps y <- T(y)."""
        return cls("plain", np.ones(int(iterations)), tol, int(check_every))

    @classmethod
    def chebyshev(cls, applications: int, delta: float, tol: float | None = None,
                  check_every: int = 25, region: np.ndarray | None = None) -> "Schedule":
        """The semi-iteration with ``applications`` applications of T for rho = 1 - delta
        (only in ``region`` when given: plain steps elsewhere)."""
        return cls("chebyshev", chebyshev_weights(int(applications), delta), tol, int(check_every), delta, region)

    @classmethod
    def matching_plain(cls, plain_steps: int = 8000, applications: int = LEARNED_APPLICATIONS,
                       tol: float | None = None, check_every: int = 25) -> "Schedule":
        """The semi-iteration whose polynomial follows ``plain_steps`` plain steps, at any ratio.

        A mode with gap g decays as exp(-N g / sqrt(2 delta)) under N applications (g << delta)
        and as exp(-n g) under n plain steps: delta = N^2 / (2 n^2) makes the slow modes match, and
        N sqrt(2 delta) = N^2 / n (5.6 for N = 300, n = 8000) damps the rest. The per-ratio table
        exploits that DADA-free's 8000-step state is nearly converged at small ratios; a learned
        guide (trained for the 8000-step state, with weaker links: slower modes) needs the match."""
        n = int(applications)
        return cls.chebyshev(n, n * n / (2.0 * plain_steps * plain_steps), tol, check_every)

    @classmethod
    def for_ratio(cls, scale: float, applications: int | None = None, tol: float | None = None,
                  check_every: int = 25, holes: bool = False) -> "Schedule":
        """The default semi-iteration at resolution ratio ``scale`` (budget overridable; ``holes``:
        the source has invalid cells)."""
        delta, budget = chebyshev_defaults(scale, holes)
        return cls.chebyshev(applications if applications is not None else budget, delta, tol, check_every)

    def __len__(self) -> int:
        return len(self.weights)

    @property
    def is_plain(self) -> bool:
        """True when every weight is 1 (no previous iterate is needed)."""
        return bool(np.all(self.weights == 1.0))

    def chunks(self) -> list[np.ndarray]:
        """The weights split at the check points: the driver checks after each chunk."""
        n, k = len(self.weights), self.check_every
        return [self.weights[i:i + k] for i in range(0, n, k)]

    def should_stop(self, change: float) -> bool:
        """Stop rule at a check point: the change per check interval fell below ``tol``."""
        return self.tol is not None and change < self.tol
