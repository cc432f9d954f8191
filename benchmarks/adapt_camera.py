"""Adapting the learned model to one camera without ground truth, scored on frames it never saw.

Leave one frame out over the five RealSense-class frames of ``../shared/realdata``: for each
held-out frame the shipped weights (``dada_lite_v6_mixed`` when doc/learned.md's table was measured;
``dada_lite_v7`` in sessions 8-9, ``dada_lite_v8`` since session 10) are adapted by cross-scale self-supervision on the
other four (``dada-train --self-supervised --sensor-ratio K``: the sensor emulated at 1/K of the
RGB resolution, the network predicting that depth from a coarser copy of it; the last checkpoint,
nothing chosen on any frame), then serves the held-out frame at x K (full guide, block-average
source, node output with the default output-range clamp, metres). Printed per frame and as
geo-mean / worst over the five: adapted / DADA-free, shipped / DADA-free, the adapted model behind
the node's default guard, and whether the guard kept it. Training resumes (``dada-train`` does):
rerun the same line after an interruption. About 3-5 minutes per fold on one core.

    python benchmarks/adapt_camera.py --ratio 8 --crop 48 --out runs/adapt/k8_s1000   # doc/learned.md
    python benchmarks/adapt_camera.py --ratio 4 --out runs/adapt/k4_s1000
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import dada_ros  # noqa: F401  (before torch: the CPU threads' spin setting)
import numpy as np
import torch

from dada_ros.core.guard import GuardConfig, GuardedSolver
from dada_ros.core.methods import load_learned_guide
from dada_ros.core.metrics import depth_errors
from dada_ros.core.output_range import OutputRangeConfig, apply_output_range
from dada_ros.core.solver import DadaSolver, FreeGuide, SolverConfig
from dada_ros.learned import crossval as C
from dada_ros.learned.datasets.base import make_example
from dada_ros.learned.datasets.realdata import default_root, read_npz, scene_path
from dada_ros.learned.model import SHIPPED_PATH


def adapt(held_out: str, frames: list[str], args) -> Path:
    """Train (or resume) the fold without ``held_out``; returns its last checkpoint."""
    out = Path(args.out) / f"without_{held_out}"
    train = [f for f in frames if f != held_out]
    cmd = [sys.executable, "-m", "dada_ros.cli.train", "--dataset", "realdata", "--real-scenes", *train,
           "--real-val-scenes", train[0], "--self-supervised", "--sensor-ratio", str(args.ratio),
           "--scales", *[str(s) for s in args.scales], "--crop", str(args.crop), "--batch", "4",
           "--steps", str(args.steps), "--init-from", str(SHIPPED_PATH), "--scale-film", "--gate",
           "--solve", "full", "--val-every", "100", "--ckpt-every", "25", "--threads", str(args.threads),
           "--seed", str(frames.index(held_out)), "--out", str(out), "--quiet"]
    last = out / "last.pt"
    done = out / "done.json"
    if not (done.exists() and json.loads(done.read_text()).get("steps") == args.steps and last.exists()):
        print(f"adapting without {held_out} ({args.steps} steps) ...", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True)
        done.write_text(json.dumps({"steps": args.steps}))
    return last


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ratio", type=int, default=8, help="sensor ratio K: adapt at 1/K, serve at x K")
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 4], help="self-supervised training ratios")
    ap.add_argument("--crop", type=int, default=64, help="training crop (must fit the 1/K frames: 48 at K = 8)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True, help="folder of the fold runs (resumed when present)")
    args = ap.parse_args(argv)
    root = default_root()
    if root is None:
        print("no ../shared/realdata: nothing to adapt on", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    frames = list(C.SENSOR)
    cfg, rng, s = SolverConfig(device="cpu"), OutputRangeConfig(), args.ratio
    free = DadaSolver(cfg, FreeGuide())
    shipped = DadaSolver(cfg, load_learned_guide(None, "cpu"))
    rows = []
    for name in frames:
        adapted = DadaSolver(cfg, load_learned_guide(str(adapt(name, frames, args)), "cpu"))
        sc, _ = read_npz(scene_path(root, name))
        H, W = sc.depth.shape
        rgb, truth = np.ascontiguousarray(sc.rgb[: H - H % s, : W - W % s]), sc.depth[: H - H % s, : W - W % s]
        src = np.nan_to_num(make_example(rgb, truth, s).source, nan=0.0)
        err = {k: depth_errors(apply_output_range(v.solve(rgb, src).depth, src, rng)[0], truth).mse_cm2
               for k, v in (("free", free), ("shipped", shipped), ("adapted", adapted))}
        keep = GuardedSolver(adapted, free, GuardConfig(every=1)).check(rgb, src) is adapted
        row = {"frame": name, "shipped": err["shipped"] / err["free"], "adapted": err["adapted"] / err["free"],
               "guarded": (err["adapted"] if keep else err["free"]) / err["free"], "kept": keep}
        rows.append(row)
        print(f"  {name} x{s}: shipped {row['shipped']:.3f} adapted {row['adapted']:.3f} "
              f"behind the guard {row['guarded']:.3f} (kept: {keep})", flush=True)
    print(f"\nleave one frame out, x{s}, {args.steps} steps, scales {args.scales}: MSE / DADA-free's (node output)")
    print("| model | geo-mean | worst | best |\n|---|---|---|---|")
    for key in ("shipped", "adapted", "guarded"):
        r = [x[key] for x in rows]
        print(f"| {key} | {math.exp(np.mean(np.log(r))):.3f} | {max(r):.3f} | {min(r):.3f} |")
    print(f"guard kept the adapted model on {sum(x['kept'] for x in rows)} of {len(rows)} frames")
    (Path(args.out) / "report.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
