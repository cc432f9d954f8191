"""``dada-upsample``: upsample one low-resolution depth map onto an RGB guide.

Contract (other tooling depends on it)::

    dada-upsample --guide RGB.png --source DEPTH.(npy|png|tiff) --out OUT.npy
        [--method dada-free|dada|bicubic|nearest|jbf|guided|fgs] [--schedule chebyshev|plain]
        [--learned-schedule matching|per-ratio] [--iterations N] [--tol T]
        [--init PREV_OUT.npy [--init-guide PREV_RGB.png]] [--warm-mode cold|naive|flow]
        [--warm-iterations N] [--device auto|cpu|cuda] [--stats STATS.json]
        [--output-range clamp|invalid|off] [--guard cross_scale|off]

Output: float32 .npy in metres at guide resolution, NaN where nothing could be inferred.

DADA methods: the output passes the node's output-range handling (``--output-range``, default
``clamp`` as the node's ``output_range``; :mod:`dada_ros.core.output_range`): pixels far outside
the local source range -- flying points, and the collapse of a learned solve (doc/learned.md) --
are clamped with consistency kept; ``off`` returns the solver's output as is.

Video warm start (the node's per-frame policy, :class:`dada_ros.core.pipeline.FramePipeline`):

* ``--init PREV_OUT.npy --init-guide PREV_RGB.png``: the previous frame's output is aligned to
  the current guide (optical flow between the two guides) and a warm frame runs; a scene cut or a
  previous output that disagrees with the new depth falls back to a cold start (``--stats``
  ``cold_reason``);
* ``--init PREV_OUT.npy`` alone: a naive warm start (the previous output as is);
* ``--warm-mode cold|naive|flow`` overrides the mode (cold ignores ``--init``);
* a warm frame runs ``--warm-iterations`` steps (default: ``--iterations`` when given, else 50);
  a cold frame follows ``--iterations`` / ``--tol`` / the default equilibrium policy.

``--stats`` then also holds ``init_mode`` (cold | naive | flow), ``cold_reason``, ``flow_ms`` and
``warm_valid_fraction``, and the acceptance test's ``accept_median_error``,
``accept_rejected_fraction``, ``accept_cold_fraction`` (pixels that started cold inside a warm
frame), ``warm_region_fraction`` (the cells whose applications followed the Chebyshev weights in
the one warm solve) and ``effective_iterations``. The warm start is the node's: a prior that does not fit the new depth (per cell, or as a
whole frame) starts cold (:mod:`dada_ros.core.warm_accept`).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ..core.errors import DadaInputError
from ..core.guard import GUARD_MODES, GuardConfig
from ..core.image_io import read_depth, read_guide, write_depth_npy
from ..core.output_range import OUTPUT_RANGE_MODES, OutputRangeConfig, apply_output_range
from ..core.methods import DADA_METHODS, METHODS, make_solver, run_method
from ..core.pipeline import FREE_SLOW_MOTION_PX, WARM_BUDGETS, FramePipeline, WarmConfig
from ..core.schedule import SCHEDULES
from ..core.solver import DEFAULT_LAMBDA, DEFAULT_MAX_ITERATIONS, LEARNED_SCHEDULES, SolverConfig
from .common import run_cli, write_json

WARM_MODE_CHOICES = ("cold", "naive", "flow")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dada-upsample", description=__doc__.split("\n\n")[0])
    p.add_argument("--guide", required=True, help="RGB image at the output resolution")
    p.add_argument("--source", required=True, help="low-res depth: .npy metres, 16-bit .png mm, .tif(f)")
    p.add_argument("--out", required=True, help="output .npy (float32 metres, NaN = no estimate)")
    p.add_argument("--method", default="dada-free", choices=METHODS)
    p.add_argument("--schedule", default="chebyshev", choices=SCHEDULES,
                   help="loop schedule: chebyshev (default: the semi-iteration, ~100-200 applications per "
                        "cold frame) or plain (the paper's loop; with --iterations 8000 the paper's method)")
    p.add_argument("--learned-schedule", default="matching", choices=LEARNED_SCHEDULES,
                   help="--method dada, chebyshev: matching (default: --learned-applications that follow 8000 plain "
                        "steps) or per-ratio (the 150-200 of dada-free, as the model is trained; ~0.8x the time: "
                        "doc/learned.md)")
    p.add_argument("--learned-applications", type=int, default=SolverConfig.learned_applications,
                   help="--learned-schedule matching: applications of the learned solve (default %(default)s)")
    p.add_argument("--iterations", type=int, help="fixed number of applications of the diffusion-adjustment step")
    p.add_argument("--tol", type=float, help="stop when the max relative change per check is below this")
    p.add_argument("--max-iterations", type=int, default=DEFAULT_MAX_ITERATIONS, help="cap with --tol / default")
    p.add_argument("--init", help="previous output / warm start Y0 (.npy metres at guide resolution)")
    p.add_argument("--init-guide", help="RGB guide of the frame --init came from: align --init to --guide by "
                   "optical flow (flow warm start)")
    p.add_argument("--warm-mode", choices=WARM_MODE_CHOICES,
                   help="override the warm start: cold (ignore --init), naive (--init as is), flow (align; "
                   "needs --init-guide). Default: flow with --init-guide, naive with --init alone")
    p.add_argument("--warm-iterations", type=int,
                   help="steps of a warm frame (default: --iterations if given, else the warm schedule's own: with "
                   f"DADA-free {WARM_BUDGETS['chebyshev'][0]} semi-iteration applications, "
                   f"{WARM_BUDGETS['chebyshev'][1]} when the view moved <= {FREE_SLOW_MOTION_PX:g} px; with a "
                   f"learned guide {WARM_BUDGETS['plain'][0]} plain steps)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--stats", help="write solver statistics as JSON here")
    p.add_argument("--kappa", type=float, help="edge sensitivity of the coefficients (dada-free)")
    p.add_argument("--lambda", dest="lam", type=float, default=DEFAULT_LAMBDA, help="step size, < 0.25")
    p.add_argument("--form", choices=("code", "paper"), default="code", help="coefficient form (dada-free)")
    p.add_argument("--coarse-to-fine", action="store_true", help="cold start from coarser guides first")
    p.add_argument("--max-fill-distance", type=float, default=8.0,
                   help="NaN beyond this many source cells from any measurement (inf: fill all)")
    p.add_argument("--weights", help="learned model checkpoint (--method dada)")
    p.add_argument("--guard", choices=GUARD_MODES, default="cross_scale",
                   help="--method dada: cross_scale (default, as the node's learned_guard) runs DADA-free "
                        "instead when a cross-scale check on this frame says the learned guide loses "
                        "(about two extra solves at twice the ratio); off: the learned guide always")
    p.add_argument("--output-range", choices=OUTPUT_RANGE_MODES, default="clamp",
                   help="DADA methods: pixels beyond the local source range, as the node's output_range "
                        "(clamp: projected back, consistency kept; invalid: NaN; off: the solver's output)")
    return p


def _warm_mode(args) -> str:
    """The warm-start mode the arguments ask for; raises on a contradictory combination."""
    if args.init_guide and not args.init:
        raise DadaInputError("--init-guide needs --init (the previous output to align)")
    mode = args.warm_mode or ("flow" if args.init_guide else "naive" if args.init else "cold")
    if mode in ("naive", "flow") and not args.init:
        raise DadaInputError(f"--warm-mode {mode} needs --init (the previous output)")
    if mode == "flow" and not args.init_guide:
        raise DadaInputError("--warm-mode flow needs --init-guide (the previous frame's RGB guide)")
    return mode


def _guard(args) -> GuardConfig:
    return GuardConfig(mode=args.guard, every=1)  # one frame: check it


def _make_solver(args, config: SolverConfig):
    """The method's solver (behind the guard for ``dada``); warns when the guard is no protection."""
    solver = make_solver(args.method, config, kappa=args.kappa, form=args.form, weights=args.weights,
                         guard=_guard(args))
    if getattr(solver, "caveat", ""):
        print(f"dada-upsample: warning: {solver.caveat}", file=sys.stderr)
    return solver


def _range(args) -> OutputRangeConfig | None:
    return None if args.output_range == "off" else OutputRangeConfig(mode=args.output_range)


def _run_warm(args, guide, source, config: SolverConfig, mode: str) -> tuple[np.ndarray, dict]:
    """One frame through the node's pipeline, seeded with the previous output (and guide)."""
    init = read_depth(args.init)
    if init.shape != guide.shape[:2]:
        raise DadaInputError(f"initial depth {args.init} has shape {init.shape}, expected the guide size "
                             f"{guide.shape[:2]}")
    prev_guide = None
    if mode == "flow":
        prev_guide = read_guide(args.init_guide)
        if prev_guide.shape[:2] != guide.shape[:2]:
            raise DadaInputError(f"init guide {args.init_guide} has size {prev_guide.shape[:2]}, expected the "
                                 f"guide size {guide.shape[:2]}")
    warm = WarmConfig(mode=mode, max_age=float("inf"))
    fixed = args.warm_iterations if args.warm_iterations is not None else args.iterations
    if fixed is not None:
        warm = warm.fixed_budget(fixed)
    warm.validate()
    solver = _make_solver(args, config)
    pipe = FramePipeline(solver, warm, _range(args))
    pipe.set_previous(init, prev_guide, stamp=0.0)
    res = pipe.process(guide, source, stamp=1.0)
    stats = dict(res.stats)
    stats["method"] = args.method
    return res.depth, stats


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    mode = _warm_mode(args)
    guide = read_guide(args.guide)
    source = read_depth(args.source)
    if args.warm_iterations is not None and args.warm_iterations < 1:
        raise DadaInputError(f"--warm-iterations must be >= 1, got {args.warm_iterations}")
    config = SolverConfig(
        lam=args.lam, schedule=args.schedule, learned_schedule=args.learned_schedule, iterations=args.iterations,
        learned_applications=args.learned_applications, tol=args.tol, max_iterations=args.max_iterations, coarse_to_fine=args.coarse_to_fine,
        max_fill_distance=args.max_fill_distance, device=args.device,
    )
    config.validate()
    if args.method in DADA_METHODS:
        if mode == "cold":
            solver = _make_solver(args, config)
            depth, stats = run_method(args.method, guide, source, config=config, solver=solver)
            stats.update({"init_mode": "cold", "cold_reason": "warm start off" if args.init else "no previous frame",
                          "flow_ms": 0.0, "warm_valid_fraction": 0.0})
            output_range = _range(args)
            if output_range is not None:  # the node's output range (the warm pipeline applies it itself)
                depth, range_stats = apply_output_range(depth, source, output_range)
                stats.update(range_stats)
        else:
            depth, stats = _run_warm(args, guide, source, config, mode)
    else:
        from ..core.baselines import BaselineParams

        if args.init:
            raise DadaInputError(f"an initial depth (warm start) only applies to DADA methods, not {args.method!r}")
        depth, stats = run_method(args.method, guide, source,
                                  baseline_params=BaselineParams(max_fill_distance=args.max_fill_distance))
    write_depth_npy(args.out, depth)
    if args.stats:
        write_json(args.stats, stats)
    return 0


def entry() -> None:
    sys.exit(run_cli("dada-upsample", main))


if __name__ == "__main__":
    entry()
