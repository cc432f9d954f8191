"""Video warm start on generated sequences: MSE and iterations per frame per mode, flow vs loop time.

For each motion type (static stretch, pan, rotation, forward motion, a pure 2 px/frame image
shift -- the issue's reference protocol, no parallax --, a cut) and each source
condition (clean block average; ToF-like with 0.5% noise, the issue's reference; the package's
default ToF model with 0.5% + 0.15% z^2 noise and dropouts), a sequence is rendered (frame 0
cold in every mode, frames 1..N scored) and upsampled by ``FramePipeline`` in these modes:

* ``cold``      the default single-frame policy (tolerance stop, <= 8000 steps): the reference;
* ``cold@N``    cold start, N steps;
* ``naive@N``   previous output as is, N steps;
* ``flow-v1@N`` the first version (nearest-neighbour warp, forward-backward mask, no fill, no
  young-pixel refinement), kept to show what changed;
* ``flow@N``    the default warm start (colour-guided selection warp, fill, refinement).

Printed: a table of mean MSE (ratio of means over the scored frames, vs ``cold``) and mean
iterations per mode (``flow`` counts full-image-equivalent steps incl. the refinement), then the
flow cost vs the loop and the frame time at 640x480 on CPU. ``--per-frame`` prints every frame,
``--json`` writes all records. Timings on a shared machine are noisy: compare the ratios measured
side by side in the same run.

    python benchmarks/warm_start.py --quick     # 320x240, 8 frames, 2 conditions: a few minutes
    python benchmarks/warm_start.py             # 640x480, 12 frames, 3 conditions
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dada_ros.core.metrics import consistency_error, depth_errors  # noqa: E402
from dada_ros.core.pipeline import FramePipeline, WarmConfig  # noqa: E402
from dada_ros.core.scenes import (TofModel, block_average, intrinsics, random_scene, render,  # noqa: E402
                                  simulate_tof)
from dada_ros.core.sequences import Frame, SequenceConfig, make_sequence  # noqa: E402
from dada_ros.core.solver import DadaSolver, SolverConfig  # noqa: E402
from dada_ros.core.warm_start import AlignConfig, dense_flow  # noqa: E402

NOISE = {
    "clean": None,
    "tof0.5%": TofModel(noise_quad=0.0),
    "tof-default": TofModel(),
}
MOTIONS = ("static", "pan", "rotate", "forward", "shift", "cut")
# The first version of the flow warm start (nearest warp, fb mask, full-resolution flow).
FLOW_V1 = AlignConfig(flow_scale=1.0, warp="nearest", forward_backward=True, fill_passes=0,
                      cut_photometric=0.12, min_valid_fraction=0.3)


def plan_for(motion: str, n: int) -> tuple:
    if motion == "cut":
        k = max(1, (n - 1) // 2)
        return (("static", 1), ("pan", k), ("cut", 1), ("pan", max(1, n - k - 1)))
    return (("static", 1), (motion, n))


def shift_sequence(noise: str, size: tuple[int, int], scale: int, n: int, seed: int, step: int = 2):
    """The issue's reference protocol: a pure image translation, ``step`` px per frame (crops of one
    wide render; no parallax, no sub-pixel motion), a fresh sensor noise draw every frame."""
    H, W = size
    K_wide = intrinsics(W + step * n, H)
    rgb_w, d_w = render(random_scene(seed), K_wide, (H, W + step * n))
    gt_w = np.where(np.isfinite(d_w), d_w, np.nan).astype(np.float32)
    rng = np.random.default_rng(seed + 424242)
    src_shape = (H // scale, W // scale)
    frames = []
    for i in range(n + 1):
        rgb = np.ascontiguousarray(rgb_w[:, i * step:i * step + W])
        gt = np.ascontiguousarray(gt_w[:, i * step:i * step + W])
        src = (np.nan_to_num(block_average(gt, src_shape)) if NOISE[noise] is None
               else simulate_tof(gt, rgb, src_shape, NOISE[noise], rng))
        frames.append(Frame(i, 1.0 + i / 15.0, "static" if i == 0 else "shift", rgb, gt, src, K_wide, K_wide, seed))
    return frames


def sequence(motion: str, noise: str, size: tuple[int, int], scale: int, n: int, seed: int):
    if motion == "shift":
        return shift_sequence(noise, size, scale, n, seed)
    # Metric steps per frame scaled so the image motion is ~2 px/frame whatever the size
    # (the SequenceConfig defaults are tuned for 640x480).
    k = 640 / size[1]
    cfg = SequenceConfig(seed=seed, size=size, source_shape=(size[0] // scale, size[1] // scale),
                         plan=plan_for(motion, n), tof=NOISE[noise],
                         pan_step=0.012 * k, yaw_step=0.004 * k, forward_step=0.02 * k)
    return list(make_sequence(cfg))


def mean_flow_px(frames) -> float:
    import cv2

    mags = []
    for a, b in zip(frames[:-1], frames[1:]):
        if a.scene_seed != b.scene_seed:
            continue
        fl = dense_flow(cv2.cvtColor(b.rgb, cv2.COLOR_RGB2GRAY), cv2.cvtColor(a.rgb, cv2.COLOR_RGB2GRAY),
                        cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        mags.append(float(np.hypot(fl[..., 0], fl[..., 1]).mean()))
    return float(np.mean(mags)) if mags else 0.0


def run_modes(frames, solver: DadaSolver, warm_its: int, flow_cfg: WarmConfig | None = None) -> dict[str, list[dict]]:
    """Per mode, a record per frame: mse, iterations, effective iterations, init_mode, timings."""
    out: dict[str, list[dict]] = {}
    cold = [solver.solve(f.rgb, f.source) for f in frames]
    out["cold"] = [_rec(f, r.depth, r.stats.as_dict() | {"init_mode": "cold", "effective_iterations": r.stats.iterations})
                   for f, r in zip(frames, cold)]
    c_n = [solver.solve(f.rgb, f.source, iterations=warm_its) for f in frames]
    out[f"cold@{warm_its}"] = [_rec(f, r.depth, r.stats.as_dict() | {"init_mode": "cold", "effective_iterations": warm_its})
                               for f, r in zip(frames, c_n)]
    modes = {
        f"naive@{warm_its}": WarmConfig(mode="naive", warm_iterations=warm_its, max_age=1e9),
        f"flow-v1@{warm_its}": WarmConfig(mode="flow", warm_iterations=warm_its, max_age=1e9, align=FLOW_V1,
                                          refine_iterations=0),
        f"flow@{warm_its}": flow_cfg or WarmConfig(mode="flow", warm_iterations=warm_its, max_age=1e9),
    }
    for name, wc in modes.items():
        pipe = FramePipeline(solver, wc)
        # Frame 0 is the same cold answer in every mode: seed it instead of solving it again.
        pipe.set_previous(cold[0].depth, frames[0].rgb, frames[0].stamp)
        recs = [out["cold"][0]]
        for f in frames[1:]:
            res = pipe.process(f.rgb, f.source, f.stamp)
            recs.append(_rec(f, res.depth, res.stats))
        out[name] = recs
    return out


def _rec(f, depth, stats: dict) -> dict:
    e = depth_errors(depth, f.gt)
    return {
        "frame": f.index, "segment": f.segment, "mse_cm2": e.mse_cm2, "mae_cm": e.mae_cm,
        "iterations": int(stats.get("iterations", 0)),
        "effective_iterations": float(stats.get("effective_iterations", stats.get("iterations", 0))),
        "init_mode": stats.get("init_mode"), "cold_reason": stats.get("cold_reason", ""),
        "flow_ms": float(stats.get("flow_ms", 0.0)), "loop_ms": float(stats.get("loop_seconds", 0.0)) * 1000,
        "frame_ms": float(stats.get("frame_seconds", stats.get("seconds", 0.0))) * 1000,
        "warm_valid_fraction": float(stats.get("warm_valid_fraction", 0.0)),
        "refine_fraction": float(stats.get("refine_fraction", 0.0)),
        "consistency": consistency_error(depth, f.source),
    }


def summarise(recs: dict[str, list[dict]], motion: str) -> dict:
    ref = recs["cold"]
    scored = list(range(1, len(ref)))
    c_mse = float(np.mean([ref[i]["mse_cm2"] for i in scored]))
    row = {"cold_mse": c_mse, "cold_its": float(np.mean([ref[i]["iterations"] for i in scored]))}
    for name, r in recs.items():
        if name == "cold":
            continue
        row[name] = float(np.mean([r[i]["mse_cm2"] for i in scored])) / c_mse
        row[name + ":its"] = float(np.mean([r[i]["effective_iterations"] for i in scored]))
    if motion == "cut":
        cut_i = next(i for i, x in enumerate(ref) if x["segment"] == "cut")
        for name, r in recs.items():
            if name.startswith("flow@"):
                row["cut_frame_mode"] = r[cut_i]["init_mode"]
                row["cut_frame_ratio"] = r[cut_i]["mse_cm2"] / ref[cut_i]["mse_cm2"]
                nxt = [i for i in range(cut_i + 1, len(ref))]
                row["after_cut_ratio"] = (float(np.mean([r[i]["mse_cm2"] for i in nxt]))
                                          / float(np.mean([ref[i]["mse_cm2"] for i in nxt])))
    return row


def timing_640(solver: DadaSolver, warm_its: int, flow_cfg: WarmConfig, n: int = 10) -> dict:
    """Flow vs loop vs frame time at 640x480 x8 on a 2 px/frame pan (medians of warm frames)."""
    frames = sequence("pan", "tof0.5%", (480, 640), 8, n, seed=3)
    t = time.perf_counter()
    cold = solver.solve(frames[0].rgb, frames[0].source)
    cold_ms = (time.perf_counter() - t) * 1000
    out = {"cold_frame_ms": cold_ms, "cold_iterations": cold.stats.iterations}
    pipes = {"flow": FramePipeline(solver, flow_cfg),
             "flow-v1": FramePipeline(solver, WarmConfig(warm_iterations=warm_its, max_age=1e9, align=FLOW_V1,
                                                         refine_iterations=0))}
    stats: dict[str, list[dict]] = {k: [] for k in pipes}
    for pipe in pipes.values():
        pipe.set_previous(cold.depth, frames[0].rgb, frames[0].stamp)
    for f in frames[1:]:  # modes interleaved frame by frame: the same machine load for both
        for name, pipe in pipes.items():
            stats[name].append(pipe.process(f.rgb, f.source, f.stamp).stats)
    for name, st in stats.items():
        st = st[1:]  # the first warm frame may include one-time kernel loading
        fl = statistics.median(s["flow_ms"] for s in st)
        fr = statistics.median(s["frame_seconds"] for s in st) * 1000
        out[name] = {"flow_ms": fl, "loop_ms": statistics.median(s["loop_seconds"] for s in st) * 1000,
                     "refine_ms": statistics.median(s.get("refine_ms", 0.0) for s in st),
                     "frame_ms": fr, "flow_fraction": statistics.median(s["flow_ms"] / (s["frame_seconds"] * 1000) for s in st)}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="320x240, 8 frames, clean + tof0.5%% (a few minutes)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="guide size (default 480 640; quick 240 320)")
    p.add_argument("--scale", type=int, default=8)
    p.add_argument("--frames", type=int, help="scored frames per motion (default 12; quick 8)")
    p.add_argument("--noise", nargs="+", choices=list(NOISE), help="source conditions")
    p.add_argument("--motions", nargs="+", choices=MOTIONS, default=list(MOTIONS))
    p.add_argument("--warm-iterations", type=int, default=WarmConfig().warm_iterations)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-frame", action="store_true", help="print every frame of every mode")
    p.add_argument("--no-timing", action="store_true", help="skip the 640x480 timing section")
    p.add_argument("--json", help="write all per-frame records and the summary here")
    p.add_argument("--threads", type=int, default=1,
                   help="numba and torch CPU threads (default 1: on busy shared cores the parallel loop "
                   "kernel was measured 15x slower with 2 threads); 0 leaves the libraries' defaults")
    g = p.add_argument_group("flow mode settings (defaults: WarmConfig / AlignConfig)")
    g.add_argument("--flow-preset", choices=("ultrafast", "fast", "medium"))
    g.add_argument("--flow-scale", type=float)
    g.add_argument("--search-radius", type=int)
    g.add_argument("--warp", choices=("select", "nearest", "linear"))
    g.add_argument("--refine-iterations", type=int)
    g.add_argument("--accept-color-error", type=float)
    g.add_argument("--mature-iterations", type=float)
    g.add_argument("--refine-min-fraction", type=float)
    a = p.parse_args(argv)
    size = tuple(a.size) if a.size else ((240, 320) if a.quick else (480, 640))
    n = a.frames or (8 if a.quick else 12)
    noises = a.noise or (["clean", "tof0.5%"] if a.quick else list(NOISE))
    if a.threads > 0:
        from dada_ros.core.device import set_cpu_threads

        set_cpu_threads(a.threads)
    solver = DadaSolver(SolverConfig(device="cpu"))
    N = a.warm_iterations
    align = AlignConfig()
    if a.flow_preset:
        align.preset = {"ultrafast": 0, "fast": 1, "medium": 2}[a.flow_preset]
    for k in ("flow_scale", "search_radius", "warp", "accept_color_error"):
        if getattr(a, k) is not None:
            setattr(align, k, getattr(a, k))
    flow_cfg = WarmConfig(mode="flow", warm_iterations=N, max_age=1e9, align=align)
    for k in ("refine_iterations", "mature_iterations", "refine_min_fraction"):
        if getattr(a, k) is not None:
            setattr(flow_cfg, k, getattr(a, k))
    flow_cfg.validate()
    print(f"# warm start benchmark: {size[1]}x{size[0]} x{a.scale}, {n} scored frames per motion, "
          f"{N} warm iterations, CPU ({os.cpu_count()} cores, {a.threads or 'default'} thread(s); "
          "timings on a shared machine are noisy)", flush=True)
    t_all = time.perf_counter()
    rows, records = [], {}
    for noise in noises:
        for motion in a.motions:
            frames = sequence(motion, noise, size, a.scale, n, a.seed)
            px = mean_flow_px(frames)
            recs = run_modes(frames, solver, N, flow_cfg)
            row = {"motion": motion, "noise": noise, "px_per_frame": px} | summarise(recs, motion)
            rows.append(row)
            records[f"{motion}/{noise}"] = recs
            if a.per_frame:
                print(f"\n{motion} / {noise}: per frame MSE cm^2 (effective iterations) [init mode]")
                for i in range(len(frames)):
                    cells = [f"{k}: {r[i]['mse_cm2']:7.1f} ({r[i]['effective_iterations']:5.0f}) [{r[i]['init_mode']}]"
                             for k, r in recs.items()]
                    print(f"  {i:2d} {frames[i].segment:7s} " + " | ".join(cells))
            print(f"  done {motion:7s} {noise:11s} ({time.perf_counter() - t_all:5.0f} s)", flush=True)

    modes = [f"cold@{N}", f"naive@{N}", f"flow-v1@{N}", f"flow@{N}"]
    print(f"\nMean MSE over frames 1..{n} as a ratio of the cold default (tolerance stop, <= 8000 steps); "
          "iterations per frame (flow: full-image equivalent incl. young-pixel refinement)")
    head = f"| motion | source | px/frame | cold MSE cm^2 | cold its | " + " | ".join(modes) + f" | flow@{N} its | its ratio |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        its = r[f"flow@{N}:its"]
        print(f"| {r['motion']} | {r['noise']} | {r['px_per_frame']:.1f} | {r['cold_mse']:.1f} | {r['cold_its']:.0f} | "
              + " | ".join(f"{r[m]:.3f}" for m in modes) + f" | {its:.0f} | 1/{r['cold_its'] / its:.0f} |")
    cuts = [r for r in rows if r["motion"] == "cut"]
    for r in cuts:
        print(f"cut ({r['noise']}): the cut frame started {r['cut_frame_mode']} (MSE {r['cut_frame_ratio']:.3f} x cold); "
              f"frames after it {r['after_cut_ratio']:.3f} x cold")
    worst = max(max(x["consistency"] for x in recs[f"flow@{N}"] if np.isfinite(x["consistency"]))
                for recs in records.values())
    print(f"max relative |down(Y) - S| / S on flow frames: {worst:.1e}")

    timing = None
    if not a.no_timing:
        timing = timing_640(solver, N, flow_cfg)
        f, v1 = timing["flow"], timing["flow-v1"]
        print(f"\nTiming at 640x480 x8 on CPU (pan, medians of warm frames; same run, shared machine):")
        print(f"| mode | flow ms | loop ms | refine ms | frame ms | flow / frame |")
        print(f"|---|---|---|---|---|---|")
        for name, t in (("flow (default)", f), ("flow-v1", v1)):
            print(f"| {name} | {t['flow_ms']:.1f} | {t['loop_ms']:.1f} | {t['refine_ms']:.1f} | {t['frame_ms']:.1f} | "
                  f"{t['flow_fraction']:.0%} |")
        print(f"| cold default | - | - | - | {timing['cold_frame_ms']:.0f} | ({timing['cold_iterations']} its) |")
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"summary": rows, "timing": timing, "records": records}, fh, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
