"""One entry point for every upsampling method, so the CLI, the replay tool, the benchmarks and
the node all run exactly the same code for one frame."""

from __future__ import annotations

import importlib
import time

import numpy as np

from .baselines import BASELINES, BaselineParams, run_baseline
from .errors import DadaInputError
from .guard import GuardConfig, GuardedSolver
from .inputs import check_pair
from .solver import DadaSolver, FreeGuide, GuideModel, SolverConfig

DADA_METHODS = ("dada-free", "dada")
METHODS = DADA_METHODS + tuple(BASELINES)


def load_learned_guide(weights: str | None, device: str = "auto") -> GuideModel:
    """The learned feature network as a :class:`GuideModel` (``dada_ros.learned``).

    Raises a clear :class:`DadaInputError` when the learned model is not available.
    """
    try:
        learned = importlib.import_module("dada_ros.learned.model")
    except ModuleNotFoundError as exc:
        raise DadaInputError(
            "method 'dada' needs the learned feature network (dada_ros.learned), which this "
            "installation does not have; use --method dada-free"
        ) from exc
    return learned.load_guide_model(weights, device=device)


def make_solver(method: str, config: SolverConfig, kappa: float | None = None,
                form: str = "code", weights: str | None = None,
                guard: GuardConfig | None = None) -> DadaSolver | GuardedSolver:
    """A :class:`DadaSolver` for ``dada-free`` or ``dada``; with ``guard`` (mode ``cross_scale``),
    ``dada`` becomes a :class:`~.guard.GuardedSolver` that falls back to DADA-free (same ``kappa``
    and ``form``) where the cross-scale check says the learned guide loses."""
    free = FreeGuide(kappa=kappa if kappa is not None else FreeGuide().kappa, form=form)
    if method == "dada-free":
        return DadaSolver(config, free)
    if method != "dada":
        raise DadaInputError(f"{method!r} is not a DADA method; expected one of {DADA_METHODS}")
    learned = DadaSolver(config, load_learned_guide(weights, config.device))
    if guard is None or guard.mode == "off":
        return learned
    return GuardedSolver(learned, DadaSolver(config, free), guard)


def run_method(method: str, guide: np.ndarray, source: np.ndarray, *,
               config: SolverConfig | None = None, init: np.ndarray | None = None,
               solver: DadaSolver | GuardedSolver | None = None, kappa: float | None = None, form: str = "code",
               weights: str | None = None, baseline_params: BaselineParams | None = None) -> tuple[np.ndarray, dict]:
    """Upsample with ``method`` -> (depth (H, W) float32 metres, stats dict).

    The stats always hold ``method``, ``scale``, ``iterations``, ``residual`` and ``seconds``
    (the upsampling only: no file I/O); DADA adds the solver's :class:`SolveStats` fields.
    """
    if method not in METHODS:
        raise DadaInputError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if method in DADA_METHODS:
        solver = solver or make_solver(method, config or SolverConfig(), kappa, form, weights)
        res = solver.solve(guide, source, init)
        stats = res.stats.as_dict()
        stats["method"] = method
        return res.depth, stats
    if init is not None:
        raise DadaInputError(f"an initial depth (warm start) only applies to DADA methods, not {method!r}")
    t0 = time.perf_counter()
    _, _, _, part = check_pair(guide, source)
    depth, _ = run_baseline(method, guide, source, baseline_params)
    return depth, {
        "method": method, "scale": part.scale, "iterations": 0, "residual": float("nan"),
        "seconds": time.perf_counter() - t0, "filled_fraction": float(np.isfinite(depth).mean()),
    }
