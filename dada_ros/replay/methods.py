"""Method specs of the replay tool and one runner per method.

A spec is ``METHOD[:MODE[:N]]``:

* ``dada-free`` / ``dada``: the node's path, :class:`~dada_ros.core.pipeline.FramePipeline`
  with the node's default warm start (``warm_start`` off: cold);
* ``dada-free:flow`` / ``dada-free:naive`` (``:N`` = warm budget, iterations per warm frame);
* ``dada-free:cold`` every frame from scratch with the solver's default policy (the Chebyshev
  schedule's per-ratio budget); ``dada-free:cold:N`` exactly N applications per frame;
* ``bicubic``, ``nearest``, ``jbf``, ``guided``, ``fgs``: the classical baselines.

A method that cannot be built (e.g. ``dada`` without the learned model) does not stop the replay:
its runner carries the error, every frame counts it, and the summary says why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from ..core.baselines import BASELINES
from ..core.errors import DadaInputError
from ..core.methods import DADA_METHODS, make_solver, run_method
from ..core.pipeline import FREE_SLOW_MOTION_PX, FramePipeline, WarmConfig, resolve_warm_schedule
from ..core.solver import DadaSolver
from ..ros.parameters import NodeSettings

MODES = ("flow", "naive", "cold")
_PIPELINE_MODE = {"flow": "flow", "naive": "naive", "cold": "off"}
# the node's default ``warm_start`` parameter, in this module's words
DEFAULT_MODE = {v: k for k, v in _PIPELINE_MODE.items()}[NodeSettings.defaults().warm_start]
DEFAULT_METHODS = "dada-free,dada-free:flow,dada-free:naive,bicubic,jbf"


@dataclass(frozen=True)
class MethodSpec:
    """One scored method: ``key`` is the name used in metrics.json and the report."""

    key: str
    base: str
    mode: str | None = None  # flow | naive | cold for DADA methods, None for baselines
    iterations: int | None = None  # warm budget (flow/naive) or fixed count (cold); None = defaults

    @property
    def is_dada(self) -> bool:
        return self.base in DADA_METHODS

    @property
    def stateless(self) -> bool:
        """True when frames can be skipped without changing the others (baselines, cold)."""
        return not self.is_dada or self.mode == "cold"

    @property
    def equilibrium_cold(self) -> bool:
        """Cold start with the solver's default policy (expensive: up to 8000 iterations)."""
        return self.is_dada and self.mode == "cold" and self.iterations is None

    def label(self, node: NodeSettings) -> str:
        """Human description for the report (iteration policy from the node's parameters)."""
        if not self.is_dada:
            return self.base
        if self.mode == "cold":
            its = (f"{self.iterations} it" if self.iterations else
                   f"equilibrium: tolerance {node.tolerance:g}, cap {node.max_iterations}")
            return f"{self.base}, cold start every frame ({its})"
        how = "flow-warped previous output" if self.mode == "flow" else "previous output as is (naive)"
        cfg = self.warm_config(node)
        # DADA-free's warm solve makes its coefficients from the warm Y0: the semi-iteration schedule
        kind, fast, slow = resolve_warm_schedule(cfg, self.base == "dada-free")
        its = f"{fast} it/warm frame ({kind})"
        if self.mode == "flow" and self.base == "dada-free" and cfg.slow_motion_px is None:
            its = (f"{slow} it/warm frame when the view moved <= {FREE_SLOW_MOTION_PX:g} px, else {fast} ({kind})")
        return f"{self.base}, warm start from {how}, {its}"

    def warm_config(self, node: NodeSettings) -> WarmConfig:
        """The node's warm-start settings in this method's mode; a count in the spec
        (``dada-free:flow:60``) is the budget of every warm frame, whatever the motion."""
        warm = replace(node.warm_config(), mode=_PIPELINE_MODE[self.mode])
        return warm.fixed_budget(self.iterations) if self.iterations else warm


def parse_method(text: str) -> MethodSpec:
    """``dada-free:cold:100`` -> :class:`MethodSpec` (see the module docstring)."""
    parts = [p.strip() for p in text.strip().split(":")]
    base = parts[0]
    if base not in DADA_METHODS and base not in BASELINES:
        known = ", ".join(DADA_METHODS + tuple(BASELINES))
        raise DadaInputError(f"unknown method {text!r}; expected one of {known} (DADA: METHOD[:cold|naive|flow[:N]])")
    if base not in DADA_METHODS:
        if len(parts) > 1:
            raise DadaInputError(f"method {base!r} takes no warm-start mode (got {text!r})")
        return MethodSpec(base, base)
    if len(parts) > 3:
        raise DadaInputError(f"bad method {text!r}; expected METHOD[:MODE[:N]]")
    mode = parts[1] if len(parts) > 1 else DEFAULT_MODE
    if mode == "off":
        mode = "cold"
    if mode not in MODES:
        raise DadaInputError(f"unknown warm-start mode {mode!r} in {text!r}; expected one of {', '.join(MODES)}")
    iterations = None
    if len(parts) == 3:
        try:
            iterations = int(parts[2])
        except ValueError:
            iterations = 0
        if iterations < 1:
            raise DadaInputError(f"iterations in {text!r} must be an integer >= 1")
    key = base if len(parts) == 1 else ":".join([base, mode] + parts[2:])
    return MethodSpec(key, base, mode, iterations)


def parse_methods(text: str) -> list[MethodSpec]:
    """Comma-separated specs; duplicates are an error."""
    specs = [parse_method(t) for t in text.split(",") if t.strip()]
    if not specs:
        raise DadaInputError("no method given; e.g. --methods dada-free,bicubic")
    seen: set[tuple] = set()
    for s in specs:
        ident = (s.base, s.mode, s.iterations)
        if ident in seen:
            raise DadaInputError(f"method {s.key!r} is listed twice")
        seen.add(ident)
    return specs


@dataclass
class RunnerSettings:
    """The node's parameters (one :class:`~dada_ros.ros.parameters.NodeSettings`, same names and
    defaults as ``upsample_node``) plus the replay's own device choice."""

    node: NodeSettings = field(default_factory=NodeSettings.defaults)
    device: str = "auto"

    @property
    def warm_iterations(self) -> int:
        return int(self.node.warm_iterations)


class MethodRunner:
    """Runs one :class:`MethodSpec` frame by frame; DADA keeps its warm-start state here."""

    def __init__(self, spec: MethodSpec, settings: RunnerSettings, solvers: dict[str, DadaSolver]):
        self.spec = spec
        self.error: str | None = None
        self.pipeline: FramePipeline | None = None
        if not spec.is_dada:
            return
        node = settings.node
        try:
            base_solver = solvers.get(spec.base)
            if base_solver is None:
                # exactly the node's solver: make_solver(method, NodeSettings.solver_config(), ...)
                base_solver = make_solver(spec.base, node.solver_config(settings.device), kappa=node.kappa,
                                          form=node.coefficient_form, weights=node.weights or None,
                                          guard=node.guard_config())
                solvers[spec.base] = base_solver
            solver = base_solver
            if spec.mode == "cold" and spec.iterations is not None:
                cfg = replace(base_solver.config, iterations=spec.iterations, tol=None)
                solver = DadaSolver(cfg, base_solver.guide_model)
            warm = spec.warm_config(node)
            # the node's output range handling too (parameter output_range), as the node runs it
            self.pipeline = FramePipeline(solver, warm, node.output_range_config())
        except DadaInputError as exc:
            self.error = str(exc)
        except Exception as exc:  # e.g. a broken learned-model install: report, keep replaying
            self.error = f"{type(exc).__name__}: {exc}"

    def process(self, rgb: np.ndarray, source_m: np.ndarray, stamp_s: float) -> tuple[np.ndarray, dict]:
        """One frame -> (depth (H, W) metres, stats with ``ms`` = wall time of the call)."""
        if self.error is not None:
            raise DadaInputError(self.error)
        t0 = time.perf_counter()
        if self.pipeline is not None:
            res = self.pipeline.process(rgb, source_m, stamp_s)
            depth, stats = res.depth, dict(res.stats)
        else:
            depth, stats = run_method(self.spec.base, rgb, source_m)
        stats["ms"] = (time.perf_counter() - t0) * 1e3
        return depth, stats


def build_runners(specs: list[MethodSpec], settings: RunnerSettings) -> list[MethodRunner]:
    """One runner per spec; DADA runners of the same base share the solver (and its model)."""
    solvers: dict[str, DadaSolver] = {}
    return [MethodRunner(s, settings, solvers) for s in specs]
