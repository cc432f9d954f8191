"""The node's parameters: one table (name, default, description, range, read-only), the settings
object built from them, and the validation that refuses bad values with a reason.

Kept free of rclpy at module level so the table and the checks can be tested (and documented)
without a running ROS graph; :func:`descriptor` imports ``rcl_interfaces`` lazily.

Two layers of checking, on purpose:

* the ``ParameterDescriptor`` (type, integer/float range, read-only) is enforced by rclpy itself
  and is what ``ros2 param describe`` shows;
* :func:`validate_settings` adds what a descriptor cannot say (open intervals such as
  ``0 < lambda < 0.25``, choices, an existing weights file) using the core's own validators, so
  the node and the CLI refuse the same values with the same words.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace
from typing import Any

from dada_ros.core.coefficients import DEFAULT_KAPPA, FORMS, check_kappa
from dada_ros.core.device import DEVICES
from dada_ros.core.errors import DadaInputError
from dada_ros.core.methods import DADA_METHODS
from dada_ros.core.pipeline import WARM_MODES, WarmConfig
from dada_ros.core.solver import DEFAULT_LAMBDA, DEFAULT_MAX_ITERATIONS, DEFAULT_TOL, SolverConfig

from .conversions import OUTPUT_DEPTH_ENCODINGS

RELIABILITIES = ("best_effort", "reliable")


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
              "smaller keeps more guide edges.", float_range=(0.0, 100.0), constraints="kappa > 0"),
    ParamSpec("coefficient_form", "code", "Coefficient form of dada-free: code (the authors' code) "
              "or paper (Eq. 2 as printed).", choices=FORMS),
    ParamSpec("lambda", DEFAULT_LAMBDA, "Diffusion step size; 0 < lambda < 0.25 for a stable "
              "4-neighbour step.", float_range=(0.0, 0.25), constraints="0 < lambda < 0.25", attr="lam"),
    ParamSpec("max_iterations", DEFAULT_MAX_ITERATIONS, "Cap on diffusion-adjustment steps of a "
              "COLD frame (warm frames run warm_iterations).", int_range=(1, 1_000_000)),
    ParamSpec("tolerance", DEFAULT_TOL, "A cold frame stops when the max relative change per check "
              "falls below this.", float_range=(0.0, 1.0), constraints="tolerance > 0"),
    ParamSpec("max_fill_distance", 8.0, "Output pixels farther than this (in source cells) from any "
              "valid depth are left invalid instead of invented.", float_range=(0.0, 1e6)),
    ParamSpec("device", "auto", "Torch device: auto (CUDA if present), cpu, cuda or cuda:N. CUDA "
              "requested but absent falls back to CPU with one warning.",
              constraints="auto | cpu | cuda | cuda:N"),
    ParamSpec("weights", "", "Checkpoint of the learned model (method dada); must be an existing "
              "file when set.", constraints="empty or an existing file"),
    ParamSpec("torch_threads", 0, "CPU threads of torch and of the fused CPU loop; 0 leaves their defaults.",
              int_range=(0, 1024)),
    # --- video warm start (see dada_ros.core.pipeline) ---
    ParamSpec("warm_start", "flow", "Initialisation from the previous output: off (always cold), "
              "naive (previous output as is) or flow (warped by optical flow).", choices=WARM_MODES),
    ParamSpec("warm_iterations", WarmConfig.warm_iterations, "Fixed step budget of a warm-started frame.",
              int_range=(1, 1_000_000)),
    # 2 s rather than the core's 0.5 s: the node processes the NEWEST frame, so the gap between
    # two processed frames is the frame time (about 1 s at 640x480 on a laptop CPU); with 0.5 s a
    # CPU node would never warm-start. Stale or mismatched warm starts are still caught by the
    # pipeline's flow-validity and first-ratio checks (cold fallback).
    ParamSpec("warm_start_max_age", 2.0, "Seconds between processed frames beyond which the previous "
              "output is stale and the frame starts cold.", float_range=(0.0, 1e6),
              constraints="warm_start_max_age > 0"),
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
              "rgb/camera_info/depth set.", float_range=(0.0, 60.0), constraints="slop > 0"),
    # --- transport (read-only: subscriptions and publishers are created once) ---
    ParamSpec("qos_reliability", "best_effort", "Reliability of the input subscriptions; "
              "best_effort receives from both kinds of publisher.", read_only=True,
              choices=RELIABILITIES),
    ParamSpec("qos_depth", 5, "History depth of the input subscriptions.", read_only=True,
              int_range=(1, 100_000)),
    ParamSpec("output_qos_reliability", "best_effort", "Reliability of the outputs (sensor-data "
              "QoS like depth_image_proc; reliable for subscribers that insist on it).",
              read_only=True, choices=RELIABILITIES),
    # --- diagnostics ---
    ParamSpec("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", read_only=True,
              float_range=(0.01, 3600.0)),
    ParamSpec("expected_rate", 0.0, "Expected input/output frame rate (Hz) for the diagnostics "
              "frequency check; 0 accepts any rate above zero.", float_range=(0.0, 1000.0)),
)
PARAMS_BY_NAME = {p.name: p for p in PARAMS}

# Fields whose change needs a new solver (and a cold start); the rest apply in place.
SOLVER_FIELDS = ("method", "kappa", "coefficient_form", "lam", "max_iterations", "tolerance",
                 "max_fill_distance", "device", "weights")


@dataclass(frozen=True)
class NodeSettings:
    """Typed snapshot of every parameter (field names = parameter names, but ``lam``)."""

    method: str
    kappa: float
    coefficient_form: str
    lam: float
    max_iterations: int
    tolerance: float
    max_fill_distance: float
    device: str
    weights: str
    torch_threads: int
    warm_start: str
    warm_iterations: int
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

    @classmethod
    def defaults(cls) -> "NodeSettings":
        return cls(**{p.field: p.default for p in PARAMS})

    def updated(self, values: dict[str, Any]) -> "NodeSettings":
        """A copy with ``{parameter name: value}`` applied (unknown names raise KeyError)."""
        return replace(self, **{PARAMS_BY_NAME[k].field: v for k, v in values.items()})

    def solver_config(self, device: str | None = None) -> SolverConfig:
        return SolverConfig(lam=self.lam, tol=self.tolerance, max_iterations=self.max_iterations,
                            max_fill_distance=self.max_fill_distance, device=device or self.device)

    def warm_config(self) -> WarmConfig:
        return WarmConfig(mode=self.warm_start, warm_iterations=self.warm_iterations,
                          max_age=self.warm_start_max_age)

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
    _check_device(s.device)
    check_kappa(s.kappa)
    s.solver_config().validate()
    s.warm_config().validate()
    if s.weights and not os.path.isfile(s.weights):
        raise DadaInputError(f"weights file {s.weights!r} does not exist")
    if not s.slop > 0:
        raise DadaInputError(f"slop must be > 0 seconds (a set matches when max - min < slop), got {s.slop}")


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
