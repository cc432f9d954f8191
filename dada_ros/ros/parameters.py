"""The node's parameters: one table (name, default, description, range, read-only), the settings
object built from them, and the validation that refuses bad values with a reason.

Kept free of rclpy at module level so the table and the checks can be tested (and documented)
without a running ROS graph; :func:`descriptor` imports ``rcl_interfaces`` lazily.

Two layers of checking, on purpose:

* the ``ParameterDescriptor`` (type, integer/float range, read-only) is enforced by rclpy itself
  and is what ``ros2 param describe`` shows;
* :func:`validate_settings` checks every value against the SAME ranges (so what the
  descriptor allows is exactly what is accepted), then adds what a descriptor cannot say
  (choices, an existing weights file) and the core's own validators, so the node and the CLI
  refuse the same values with the same words.

A descriptor range is closed, so an open interval is replaced by a closed one inside it that the
core also accepts: ``lambda`` in [1e-6, 0.2499] for the core's 0 < lambda < 0.25; ``kappa`` from
1e-6 (below, kappa^2 underflows in float32 and the coefficients become 0/0 = NaN: every output
all-NaN); ``tolerance`` from 1e-9; ``slop`` from 1 ns (stamps are compared in whole nanoseconds);
``warm_start_max_age`` from 1 ms. Iteration counts are bounded by the node's documented maximum
(:data:`NODE_MAX_ITERATIONS`, :data:`NODE_MAX_WARM_ITERATIONS`; the core's limit is
``ITERATIONS_LIMIT``): the worker must not block for minutes on one frame.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace
from typing import Any

from dada_ros.core.coefficients import DEFAULT_KAPPA, FORMS, check_kappa
from dada_ros.core.device import DEVICES
from dada_ros.core.errors import DadaInputError
from dada_ros.core.guard import GUARD_MODES, GuardConfig
from dada_ros.core.methods import DADA_METHODS
from dada_ros.core.pipeline import FREE_SLOW_MOTION_PX, WARM_MODES, WarmConfig
from dada_ros.core.output_range import DEFAULT_MARGIN, OUTPUT_RANGE_MODES, OutputRangeConfig
from dada_ros.core.schedule import SCHEDULES
from dada_ros.core.solver import (DEFAULT_LAMBDA, DEFAULT_MAX_ITERATIONS, DEFAULT_TOL, ITERATIONS_LIMIT,
                                  LEARNED_SCHEDULES, SolverConfig)

from .conversions import OUTPUT_DEPTH_ENCODINGS
from .qos import RELIABILITY_MODES
from .sync import DEFAULT_JUMP_TOLERANCE, MIN_SLOP

RELIABILITIES = ("best_effort", "reliable")
# The node's iteration defaults, in ONE place (the solver work may change them).
NODE_DEFAULT_MAX_ITERATIONS = DEFAULT_MAX_ITERATIONS
# 0 = the warm schedule's own budget (core.pipeline.WARM_BUDGETS: 30 / 20 semi-iteration
# applications with DADA-free, 75 / 40 plain steps with a learned guide)
NODE_DEFAULT_WARM_ITERATIONS = 0
# The node's documented maximum step counts (the core allows ITERATIONS_LIMIT): 20000 plain steps
# are 2.5x the paper's 8000 (about 10-40 s a cold 640x480 frame on a laptop CPU); a warm frame is
# meant to be cheap, 5000 is 100x the default.
NODE_MAX_ITERATIONS = min(20_000, ITERATIONS_LIMIT)
NODE_MAX_WARM_ITERATIONS = min(5_000, ITERATIONS_LIMIT)
KAPPA_MIN = 1e-6
LAMBDA_RANGE = (1e-6, 0.2499)
# The one diagnostics period parameter: diagnostic_updater's own name, so with the real
# diagnostic_updater (which declares it) the node has one period parameter, not two.
DIAGNOSTICS_PERIOD_PARAM = "diagnostic_updater.period"


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter. ``attr`` is the :class:`NodeSettings` field (``lambda`` is a
    Python keyword). ``choices`` are checked by :func:`validate_settings` and listed in the
    descriptor's ``additional_constraints``."""

    name: str
    default: Any
    description: str
    read_only: bool = False
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    constraints: str = ""
    attr: str = ""

    @property
    def field(self) -> str:
        return self.attr or self.name


PARAMS: tuple[ParamSpec, ...] = (
    # --- solver (a change rebuilds the solver and forgets the previous frame) ---
    ParamSpec("method", "dada-free", "Upsampling method: dada-free (learning-free DADA) or dada "
              "(learned features; needs dada_ros.learned and a weights file).", choices=DADA_METHODS),
    ParamSpec("kappa", DEFAULT_KAPPA, "Edge sensitivity of the diffusion coefficients (dada-free); "
              "smaller keeps more guide edges.", float_range=(KAPPA_MIN, 100.0),
              constraints=f"{KAPPA_MIN:g} <= kappa <= 100 (smaller underflows: NaN output)"),
    ParamSpec("coefficient_form", "code", "Coefficient form of dada-free: code (the authors' code) "
              "or paper (Eq. 2 as printed).", choices=FORMS),
    ParamSpec("lambda", DEFAULT_LAMBDA, "Diffusion step size; 0 < lambda < 0.25 for a stable "
              "4-neighbour step (a descriptor range is closed: [1e-6, 0.2499]).", float_range=LAMBDA_RANGE,
              constraints="1e-6 <= lambda <= 0.2499 (inside the stable 0 < lambda < 0.25)", attr="lam"),
    ParamSpec("schedule", "chebyshev", "Loop schedule: chebyshev (the semi-iteration: a cold frame "
              "runs the per-ratio budget, 150-200 applications at x4-x16, 175 at x4-x8 with holes, within 1% of "
              "the paper's 8000 steps) or plain (the paper's loop, stopped by tolerance / max_iterations).",
              choices=SCHEDULES),
    ParamSpec("learned_schedule", "matching", "Schedule of a learned frame (method dada, chebyshev): "
              "matching (learned_applications that follow the paper's 8000 steps) or per-ratio (the 150-200 "
              "of a dada-free frame, the schedule the model is trained through: a learned frame ~0.8x "
              "the time, equal on real frames out of fold, 10% worse on synthetic scenes at x4, and a "
              "rare plain-loop fallback where the model fits worst).", choices=LEARNED_SCHEDULES),
    ParamSpec("learned_applications", SolverConfig.learned_applications, "Applications of a learned "
              "frame's matching schedule (method dada, learned_schedule matching); 300 before session 11, "
              f"{SolverConfig.learned_applications} since (as accurate on validation, ~20% less loop); "
              "capped by max_iterations.", int_range=(1, NODE_MAX_ITERATIONS)),
    ParamSpec("max_iterations", NODE_DEFAULT_MAX_ITERATIONS, "Cap on diffusion-adjustment steps of a "
              f"COLD frame (warm frames run warm_iterations); node maximum {NODE_MAX_ITERATIONS}.",
              int_range=(1, NODE_MAX_ITERATIONS)),
    ParamSpec("tolerance", DEFAULT_TOL, "A cold frame stops when the max relative change per check "
              "falls below this (plain: the stop rule; chebyshev: an early stop before the budget).",
              float_range=(1e-9, 1.0)),
    ParamSpec("max_fill_distance", 8.0, "Output pixels farther than this (in source cells) from any "
              "valid depth are left invalid instead of invented.", float_range=(0.0, 1e6)),
    ParamSpec("device", "auto", "Torch device: auto (CUDA if present), cpu, cuda or cuda:N. CUDA "
              "requested but absent falls back to CPU with one warning.",
              constraints="auto | cpu | cuda | cuda:N"),
    ParamSpec("weights", "", "Checkpoint of the learned model (method dada); must be an existing "
              "file when set.", constraints="empty or an existing file"),
    ParamSpec("learned_guard", "cross_scale", "method dada: cross_scale runs DADA-free instead where a "
              "ground-truth-free cross-scale check says the learned guide loses (checked on the first frame, "
              "every learned_guard_every frames and on a size change); off: the learned guide always.",
              choices=GUARD_MODES),
    ParamSpec("learned_guard_every", 30, "method dada: frames between two cross-scale checks (a check "
              "costs about two solves at twice the ratio); 0: only the first frame and size changes.",
              int_range=(0, 1_000_000)),
    ParamSpec("torch_threads", 0, "CPU threads of torch and of the fused CPU loop; 0 leaves their defaults.",
              int_range=(0, 1024)),
    # --- video warm start (see dada_ros.core.pipeline) ---
    # off by default (issue #26): on the CPU a warm frame cost more than a cold one or lost accuracy
    # (doc/warm_start.md "Default: off").
    ParamSpec("warm_start", "off", "Initialisation from the previous output: off (always cold; the "
              "default), naive (previous output as is) or flow (warped by optical flow).", choices=WARM_MODES),
    ParamSpec("warm_iterations", NODE_DEFAULT_WARM_ITERATIONS, "Fixed step budget of a warm-started "
              "frame; 0 = the warm schedule's own (30 semi-iteration applications with DADA-free, 75 plain "
              f"steps with a learned guide); node maximum {NODE_MAX_WARM_ITERATIONS}.",
              int_range=(0, NODE_MAX_WARM_ITERATIONS)),
    ParamSpec("warm_slow_iterations", NODE_DEFAULT_WARM_ITERATIONS, "Step budget of a warm frame "
              f"whose view moved little (mean optical flow <= {FREE_SLOW_MOTION_PX:g} px) with DADA-free, at "
              "most warm_iterations; 0 = the warm schedule's own (30 with DADA-free); "
              "a learned guide always runs warm_iterations (doc/warm_start.md).",
              int_range=(0, NODE_MAX_WARM_ITERATIONS)),
    # 2 s rather than the core's 0.5 s: the node processes the NEWEST frame, so the gap between
    # two processed frames is the frame time (about 1 s at 640x480 on a laptop CPU); with 0.5 s a
    # CPU node would never warm-start. Stale or mismatched warm starts are still caught by the
    # pipeline's flow-validity and first-ratio checks (cold fallback).
    ParamSpec("warm_start_max_age", 2.0, "Seconds between processed frames beyond which the previous "
              "output is stale and the frame starts cold.", float_range=(1e-3, 1e6)),
    # --- output range (see dada_ros.core.output_range; measured in benchmarks/output_range.py) ---
    ParamSpec("output_range", "clamp", "Output pixels beyond the local source range (above (1 + "
              "output_range_margin) x the max of the valid source cells within 2 cells, 8 next to a "
              "hole; below half their min): clamp (keeping down(Y) = S exact), invalid (NaN) or off.",
              choices=OUTPUT_RANGE_MODES),
    ParamSpec("output_range_margin", DEFAULT_MARGIN, "Relative margin above the local source maximum "
              "(0.2: 20%; doc/node.md Output range).", float_range=(0.0, 10.0)),
    # --- outputs ---
    ParamSpec("output_encoding", "32FC1", "Encoding of depth_upsampled/image_rect: 32FC1 (metres, "
              "NaN invalid) or 16UC1 (millimetres, 0 invalid).", choices=OUTPUT_DEPTH_ENCODINGS),
    ParamSpec("publish_points", True, "Publish depth_upsampled/points (PointCloud2)."),
    ParamSpec("points_rgb", False, "Cloud fields x y z rgb (like point_cloud_xyzrgb) instead of "
              "x y z (like point_cloud_xyz)."),
    ParamSpec("points_decimation", 1, "Keep every N-th row and column in the cloud.",
              int_range=(1, 64)),
    ParamSpec("points_organized", True, "Keep the image grid with NaN points for invalid depth "
              "(depth_image_proc); false drops them (height 1, is_dense true)."),
    # --- synchronisation ---
    ParamSpec("queue_size", 10, "Approximate-time sync queue length per input.",
              int_range=(1, 10_000)),
    ParamSpec("slop", 0.05, "Approximate-time sync: max stamp spread (seconds) of a matched "
              "rgb/camera_info/depth set (stamps are compared in whole ns).", float_range=(MIN_SLOP, 60.0)),
    ParamSpec("jump_tolerance", DEFAULT_JUMP_TOLERANCE, "Seconds an input's stamps may step back "
              "(jitter, reordering) before it is a time jump (bag loop, simulator reset): queues "
              "cleared, warm start reset.", float_range=(0.0, 3600.0)),
    # --- transport (read-only: subscriptions and publishers are created once) ---
    # auto by default: a reliable subscription never hears a best-effort (sensor-data QoS)
    # publisher, and a best-effort subscription of a reliable 640x480 publisher loses most frames
    # (measured: benchmarks/transport.py); auto follows what the publishers offer (ros/qos.py).
    ParamSpec("qos_reliability", "auto", "Reliability of the input subscriptions: auto (follow the "
              "publishers: reliable when every publisher of the topic offers reliable, best_effort "
              "otherwise; re-checked while running), reliable, or best_effort.", read_only=True,
              choices=RELIABILITY_MODES),
    ParamSpec("qos_depth", 5, "History depth of the input subscriptions.", read_only=True,
              int_range=(1, 100_000)),
    # REP-2003: publishers reliable (system default): they serve reliable subscribers (RViz's
    # default, a plain rclpy subscription) AND best-effort ones.
    ParamSpec("output_qos_reliability", "reliable", "Reliability of the outputs: reliable (REP-2003; "
              "serves reliable and best-effort subscribers) or best_effort.",
              read_only=True, choices=RELIABILITIES),
    # --- diagnostics ---
    ParamSpec(DIAGNOSTICS_PERIOD_PARAM, 1.0, "Seconds between /diagnostics messages (diagnostic_updater's "
              "own parameter: declared by it when it is installed).", read_only=True,
              float_range=(0.01, 3600.0), attr="diagnostics_period"),
    ParamSpec("expected_rate", 0.0, "Expected frame rate (Hz) of the diagnostics frequency checks; 0 = "
              "auto: sets must keep up with the fastest input topic, outputs with the lower of the set "
              "rate and what the frame time allows.", float_range=(0.0, 1000.0)),
    ParamSpec("loss_warn_fraction", 0.1, "Diagnostics accounting: WARN when more than this fraction of "
              "an input topic's messages since the last update were dropped (stale frames excluded).",
              float_range=(0.0, 1.0)),
)
PARAMS_BY_NAME = {p.name: p for p in PARAMS}

# Fields whose change needs a new solver (and a cold start); the rest apply in place.
SOLVER_FIELDS = ("method", "kappa", "coefficient_form", "lam", "schedule", "learned_schedule", "learned_applications",
                 "max_iterations",
                 "tolerance", "max_fill_distance", "device", "weights", "learned_guard", "learned_guard_every")


@dataclass(frozen=True)
class NodeSettings:
    """Typed snapshot of every parameter (field names = parameter names, but ``lam``)."""

    method: str
    kappa: float
    coefficient_form: str
    lam: float
    schedule: str
    learned_schedule: str
    learned_applications: int
    max_iterations: int
    tolerance: float
    max_fill_distance: float
    device: str
    weights: str
    learned_guard: str
    learned_guard_every: int
    torch_threads: int
    warm_start: str
    warm_iterations: int
    warm_slow_iterations: int
    warm_start_max_age: float
    output_encoding: str
    publish_points: bool
    points_rgb: bool
    points_decimation: int
    points_organized: bool
    queue_size: int
    slop: float
    qos_reliability: str
    qos_depth: int
    output_qos_reliability: str
    diagnostics_period: float
    expected_rate: float
    loss_warn_fraction: float
    output_range: str
    output_range_margin: float
    jump_tolerance: float

    @classmethod
    def defaults(cls) -> "NodeSettings":
        return cls(**{p.field: p.default for p in PARAMS})

    def updated(self, values: dict[str, Any]) -> "NodeSettings":
        """A copy with ``{parameter name: value}`` applied (unknown names raise KeyError)."""
        return replace(self, **{PARAMS_BY_NAME[k].field: v for k, v in values.items()})

    def solver_config(self, device: str | None = None) -> SolverConfig:
        return SolverConfig(lam=self.lam, schedule=self.schedule, learned_schedule=self.learned_schedule,
                            learned_applications=self.learned_applications, tol=self.tolerance, max_iterations=self.max_iterations,
                            max_fill_distance=self.max_fill_distance, device=device or self.device)

    def guard_config(self) -> GuardConfig:
        return GuardConfig(mode=self.learned_guard, every=self.learned_guard_every)

    def warm_config(self) -> WarmConfig:
        return WarmConfig(mode=self.warm_start, warm_iterations=self.warm_iterations or None,  # 0: the schedule's own
                          slow_motion_iterations=self.warm_slow_iterations or None, max_age=self.warm_start_max_age)

    def output_range_config(self) -> OutputRangeConfig:
        return OutputRangeConfig(mode=self.output_range, margin=self.output_range_margin)

    def solver_changed(self, other: "NodeSettings") -> bool:
        return any(getattr(self, f) != getattr(other, f) for f in SOLVER_FIELDS)


assert {f.name for f in fields(NodeSettings)} == {p.field for p in PARAMS}, "table and settings disagree"


def _check_device(device: str) -> None:
    if device in DEVICES:
        return
    if device.startswith("cuda:") and device[5:].isdigit():
        return
    raise DadaInputError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)} or cuda:N")


def validate_settings(s: NodeSettings) -> None:
    """Raise :class:`DadaInputError` with a user-facing reason for any invalid value.

    Solver and warm-start values go through the core validators (same words as the CLI);
    ``method dada`` is checked later, when the learned model is actually loaded.
    """
    for p in PARAMS:
        v = getattr(s, p.field)
        if p.choices is not None and v not in p.choices:
            raise DadaInputError(f"{p.name} must be one of {', '.join(p.choices)}, got {v!r}")
        if isinstance(v, float) and not math.isfinite(v):
            raise DadaInputError(f"{p.name} must be finite, got {v}")
        # the descriptor's range, checked here too: what `ros2 param describe` shows is what is accepted
        rng = p.int_range if p.int_range is not None else p.float_range
        if rng is not None and not (rng[0] <= v <= rng[1]):
            why = f" ({p.constraints})" if p.constraints else ""
            raise DadaInputError(f"{p.name} must be in [{rng[0]:g}, {rng[1]:g}]{why}, got {v}")
    _check_device(s.device)
    check_kappa(s.kappa)
    s.solver_config().validate()
    s.guard_config().validate()
    s.warm_config().validate()
    s.output_range_config().validate()
    if s.weights and not os.path.isfile(s.weights):
        raise DadaInputError(f"weights file {s.weights!r} does not exist")


def descriptor(spec: ParamSpec) -> Any:
    """The rcl_interfaces ParameterDescriptor of ``spec`` (type, description, range, read-only)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType  # noqa: PLC0415

    types = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
             float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}
    constraints = spec.constraints or (f"one of: {', '.join(spec.choices)}" if spec.choices else "")
    if spec.read_only:
        constraints = (constraints + "; " if constraints else "") + "read-only: set at start-up"
    d = ParameterDescriptor(name=spec.name, type=types[type(spec.default)], description=spec.description,
                            additional_constraints=constraints, read_only=spec.read_only)
    if spec.int_range is not None:
        d.integer_range = [IntegerRange(from_value=spec.int_range[0], to_value=spec.int_range[1], step=1)]
    if spec.float_range is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(spec.float_range[0]),
                                                     to_value=float(spec.float_range[1]), step=0.0)]
    return d
