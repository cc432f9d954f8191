"""The learned model behind the node's default guard, against the same model without it.

What a user of ``method: dada`` gets per frame: :class:`dada_ros.core.guard.GuardedSolver` with
the node's default :class:`~dada_ros.core.guard.GuardConfig` (cross-scale check, guide mode x2,
inverse depth, margin 1), checked on every frame here. Node output everywhere (the default
output-range clamp after the solve). Frames the model never trained or chose anything on:

* ``synthetic``: held-out generated scenes (seeds 0..N-1, 256x256; training uses seeds >=
  10,000,000), block-average sources, MSE in cm^2;
* ``middlebury``: the Middlebury rows of ``../shared/realdata`` the weights did not use (for the
  shipped weights, and with ``--shipped-split`` for weights trained on the same split: the 18
  out-of-sample rows of ``crossval.middlebury_rows()``;
  each view its own frame), solved on z and scored on disparity;
* ``realsense``: the five RealSense-class frames (metric, their own valid depth as truth).

Per frame and ratio: dada / dada-free and guarded / dada-free; geo-mean and worst per group, and
how often the guard kept the learned model and was right to (by the frame's own truth).

    python benchmarks/learned_guard.py                       # shipped weights, ~5 min on one core
    python benchmarks/learned_guard.py --weights runs/cv4000/final/wide/last.pt   # synthetic + RealSense
    python benchmarks/learned_guard.py --learned-schedule per-ratio [--timing]      # the shorter learned solve
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import dada_ros  # noqa: F401  (before torch: the CPU threads' spin setting)
import numpy as np
import torch

from dada_ros.core.guard import GuardConfig, GuardedSolver
from dada_ros.core.output_range import OutputRangeConfig, apply_output_range
from dada_ros.core.solver import LEARNED_SCHEDULES, DadaSolver, FreeGuide, SolverConfig
from dada_ros.learned import crossval as C
from dada_ros.learned.datasets.base import make_example

SCALES = (4, 8, 16)


def frames(groups: list[str], seeds: int, weights_used: dict[str, str] | None):
    """(group, name, rgb, depth the solver sees, truth transform) for every frame."""
    if "synthetic" in groups:
        from dada_ros.learned.evaluate import generated_scenes

        for i, sc in enumerate(generated_scenes(range(seeds), (256, 256))):
            yield "synthetic", f"seed{i}", sc.rgb, sc.depth, None
    if {"middlebury", "realsense"} & set(groups):
        from dada_ros.learned.datasets.realdata import default_root, read_npz, scene_path

        root = default_root()
        if root is None:
            print("no ../shared/realdata: real groups skipped", file=sys.stderr)
            return
        files = []
        if "middlebury" in groups:
            files += [("middlebury", f) for r in C.middlebury_rows(weights_used) if not r.in_sample for f in r.files]
        if "realsense" in groups:
            files += [("realsense", f) for f in C.SENSOR]
        for g, f in files:
            scene, info = read_npz(scene_path(root, f))
            yield g, f, scene.rgb, scene.depth, info.get("f_times_b")


def mse(pred: np.ndarray, gt: np.ndarray, fb: float | None) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        p, t = (fb / pred, fb / gt) if fb else (pred * 100.0, gt * 100.0)
    m = np.isfinite(t) & (gt > 0) & np.isfinite(p)
    return float(np.mean((p[m] - t[m]) ** 2)) if m.any() else math.nan


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", help="checkpoint (default: the shipped one)")
    ap.add_argument("--groups", default="synthetic,middlebury,realsense",
                    help="with --weights, middlebury needs --middlebury-unseen (the rows must be unseen by them)")
    ap.add_argument("--middlebury-unseen", action="store_true",
                    help="--weights never trained or chose anything on any Middlebury row")
    ap.add_argument("--shipped-split", action="store_true",
                    help="--weights were trained and gated on the shipped model's scenes (the realdata fixed "
                         "split): its out-of-sample Middlebury rows are scored, as for the shipped weights")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--check-modes", default="guide",
                    help="the guard's check mode(s), comma-separated (GuardConfig.check_mode: guide, half, source)")
    ap.add_argument("--learned-schedule", choices=LEARNED_SCHEDULES, default="matching",
                    help="the learned solves' schedule (SolverConfig.learned_schedule); DADA-free is unchanged")
    ap.add_argument("--learned-applications", type=int, default=SolverConfig.learned_applications,
                    help="the matching schedule's applications (SolverConfig.learned_applications)")
    ap.add_argument("--json")
    ap.add_argument("--timing", action="store_true",
                    help="only the cost at 640x480 (RealSense frames, x4 / x8, median of 3): DADA-free solve, "
                         "learned solve (also with the torch output stage of before session 8), one guard check")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from dada_ros.core.methods import load_learned_guide

    cfg = SolverConfig(device="cpu", learned_schedule=args.learned_schedule,
                       learned_applications=args.learned_applications)
    learned = DadaSolver(cfg, load_learned_guide(args.weights, "cpu"))
    free = DadaSolver(cfg, FreeGuide())
    modes = args.check_modes.split(",")
    guards = {m: GuardedSolver(learned, free, GuardConfig(every=1, check_mode=m)) for m in modes}
    rng = OutputRangeConfig()
    if args.timing:
        other = next(s for s in LEARNED_SCHEDULES if s != args.learned_schedule)
        alt = DadaSolver(SolverConfig(device="cpu", learned_schedule=other), learned.guide_model)
        return timing(learned, free, guards, (other, alt))
    # which scenes the weights used: the shipped split for the shipped weights, none for others
    used = None if args.weights is None or args.shipped_split else {}
    groups = args.groups.split(",")
    if args.weights and not (args.middlebury_unseen or args.shipped_split) and "middlebury" in groups:
        groups.remove("middlebury")
        print("middlebury skipped: --weights may have seen its rows (pass --middlebury-unseen if not)", file=sys.stderr)
    res: dict = {}
    robust = {"solves": 0, "fallbacks": [], "negative": []}  # the learned solves, before the clamp
    for g, name, rgb, depth, fb in frames(groups, args.seeds, used):
        for s in SCALES:
            H, W = depth.shape
            crop = (slice(0, H - H % s), slice(0, W - W % s))
            rgb_c, gt = np.ascontiguousarray(rgb[crop]), depth[crop]
            src = np.nan_to_num(make_example(rgb_c, gt, s).source, nan=0.0)
            out = {}
            for key, solver in (("free", free), ("dada", learned)):
                r = solver.solve(rgb_c, src)
                out[key] = mse(apply_output_range(r.depth, src, rng)[0], gt, fb)
            robust["solves"] += 1
            if r.stats.fallback:
                robust["fallbacks"].append(f"{name} x{s}: {r.stats.fallback}")
            if np.nanmin(r.depth) < 0:
                robust["negative"].append(f"{name} x{s} ({float(np.nanmin(r.depth)):.3g} m)")
            for m, guarded in guards.items():
                out[f"keep_{m}"] = keep = guarded.check(rgb_c, src) is learned
                out[f"guarded_{m}"] = out["dada"] if keep else out["free"]
            res.setdefault(g, {}).setdefault(name, {})[s] = out
        r = res[g][name]
        print(f"  {g} {name}: " + " ".join(f"x{s} {r[s]['dada'] / r[s]['free']:.3f}"
                                           + "".join("*" if r[s][f"keep_{m}"] else "." for m in modes)
                                           for s in SCALES), file=sys.stderr, flush=True)
    print(f"weights: {args.weights or 'shipped'}; node output; per check mode ({', '.join(modes)}): * = the guard "
          "kept the learned model\n")
    print("| group | frames | check mode | dada / dada-free geo-mean x4 / x8 / x16 | worst | guarded / dada-free "
          "geo-mean | worst | kept (right) |")
    print("|---|---|---|---|---|---|---|---|")
    for g, per in res.items():
        def col(key, agg):
            return " / ".join(f"{agg([v[s][key] / v[s]['free'] for v in per.values()]):.3f}" for s in SCALES)

        for m in modes:
            kept = " / ".join(f"{sum(v[s][f'keep_{m}'] for v in per.values())} "
                              f"({sum(v[s][f'keep_{m}'] == (v[s]['dada'] < v[s]['free']) for v in per.values())})"
                              for s in SCALES)
            print(f"| {g} | {len(per)} | {m} | {col('dada', C.geo_mean)} | {col('dada', max)} | "
                  f"{col(f'guarded_{m}', C.geo_mean)} | {col(f'guarded_{m}', max)} | {kept} |")
    print(f"\nlearned solves ({learned.config.learned_schedule}"
          + (f", {learned.config.learned_applications} applications" if learned.config.learned_schedule == "matching"
             else "") + f"): {robust['solves']}; runaway semi-iterations (rerun) {len(robust['fallbacks'])}"
          + (f" ({', '.join(robust['fallbacks'])})" if robust["fallbacks"] else "")
          + f"; negative depth before the clamp {len(robust['negative'])}"
          + (f" ({', '.join(robust['negative'])})" if robust["negative"] else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res | {"robustness": robust}, f, indent=1)
    return 0


def _torch_output_stage(learned):
    """``learned.solve`` with the network's output stage and the learned channels' coefficients
    as torch expressions (the path before the fused kernels of session 8), for a side-by-side."""
    from dada_ros.core import coefficients as coef
    from dada_ros.learned import backbones

    def solve(rgb, src):
        saved = backbones.fused_head_applies, coef._fused_applies
        backbones.fused_head_applies = lambda *a: False
        coef._fused_applies = lambda f, kappa: saved[1](f, kappa) and f.shape[1] == 4 and not isinstance(
            kappa, torch.Tensor)
        try:
            return learned.solve(rgb, src)
        finally:
            backbones.fused_head_applies, coef._fused_applies = saved
    return solve


def timing(learned, free, guards: dict, alt: tuple[str, DadaSolver], repeats: int = 3) -> int:
    """Median ms of each solve on the RealSense frames, interleaved; ``alt`` = (its learned
    schedule, the learned solver on it) for a column beside the learned solve."""
    import time

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); learned schedule "
          f"{learned.config.learned_schedule}\n")
    print(f"| frame | scale | DADA-free solve ms | learned solve ms | learned, {alt[0]} schedule ms | "
          "learned, torch output stage ms | "
          + " | ".join(f"check ({m}) ms | check ({m}) / learned frame" for m in guards) + " |")
    print("|---|---|---|---|---|---|" + "---|---|" * len(guards))
    torch_stage = _torch_output_stage(learned)
    ratios: dict[str, list[float]] = {"dada": [], "dada_alt": []}
    for _, name, rgb, depth, _ in frames(["realsense"], 0, None):
        for s in (4, 8):
            src = np.nan_to_num(make_example(rgb, depth, s).source, nan=0.0)
            fns = {"free": lambda: free.solve(rgb, src), "dada": lambda: learned.solve(rgb, src),
                   "dada_alt": lambda: alt[1].solve(rgb, src), "dada_torch": lambda: torch_stage(rgb, src)}
            fns.update({mode: (lambda g=g: g.check(rgb, src)) for mode, g in guards.items()})
            t: dict = {k: [] for k in fns}
            for _ in range(repeats + 1):  # the first round warms up
                for key, fn in fns.items():
                    t0 = time.perf_counter()
                    fn()
                    t[key].append(1e3 * (time.perf_counter() - t0))
            m = {k: float(np.median(v[1:])) for k, v in t.items()}
            print(f"| {name} | x{s} | {m['free']:.0f} | {m['dada']:.0f} | {m['dada_alt']:.0f} | {m['dada_torch']:.0f} | "
                  + " | ".join(f"{m[g]:.0f} | {m[g] / m['dada']:.2f}" for g in guards) + " |", flush=True)
            for k in ratios:
                ratios[k].append(m[k] / m["free"])
    print(f"\nlearned frame / DADA-free frame, median (range): {learned.config.learned_schedule} schedule "
          f"{np.median(ratios['dada']):.2f} ({min(ratios['dada']):.2f}-{max(ratios['dada']):.2f}), {alt[0]} schedule "
          f"{np.median(ratios['dada_alt']):.2f} ({min(ratios['dada_alt']):.2f}-{max(ratios['dada_alt']):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
