"""What keeping freed frame buffers (core/allocator.py) buys: solve time with and without it.

The setting is process-wide, so each side runs in its own child process (``DADA_ROS_MALLOC_TUNING=0``
turns it off there), the two alternating round by round so that a drifting machine hits both
alike. A child times DADA-free and the shipped learned guide (median of 3 after a warm-up) on the
five RealSense frames at x4 and x8 (640x480; generated 640x480 scenes when ../shared/realdata is
absent), one torch thread by default, and reports its peak resident memory.

    python benchmarks/allocator.py                 # 2 rounds, idle
    python benchmarks/allocator.py --busy 1        # beside one competing busy process
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from contention import busy


def child(threads: int) -> dict:
    from dada_ros.core.allocator import retain_freed_memory

    state = retain_freed_memory()
    import numpy as np
    import torch

    from dada_ros.core.methods import load_learned_guide
    from dada_ros.core.solver import DadaSolver, FreeGuide, SolverConfig
    from dada_ros.learned import crossval as C
    from dada_ros.learned.datasets.base import make_example
    from dada_ros.learned.datasets.realdata import default_root, read_npz, scene_path

    torch.set_num_threads(threads)
    root = default_root()
    if root is not None:
        scenes = [(f, read_npz(scene_path(root, f))[0]) for f in C.SENSOR]
        pairs = [(f, s.rgb, s.depth) for f, s in scenes]
    else:
        from dada_ros.learned.evaluate import generated_scenes

        pairs = [(f"seed{i}", sc.rgb, sc.depth) for i, sc in enumerate(generated_scenes(range(5), (480, 640)))]
    solvers = {"dada-free": DadaSolver(SolverConfig(device="cpu"), FreeGuide()),
               "dada": DadaSolver(SolverConfig(device="cpu"), load_learned_guide(None, "cpu"))}
    ms: dict[str, list[float]] = {k: [] for k in solvers}
    for _, rgb, depth in pairs:
        for s in (4, 8):
            src = np.nan_to_num(make_example(rgb, depth, s).source, nan=0.0)
            t: dict[str, list[float]] = {k: [] for k in solvers}
            for _ in range(4):  # the first round warms up
                for k, sv in solvers.items():
                    t0 = time.perf_counter()
                    sv.solve(rgb, src)
                    t[k].append(1e3 * (time.perf_counter() - t0))
            for k in solvers:
                ms[k].append(statistics.median(t[k][1:]))
    return {"state": state, "ms": ms, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "frames": "realsense" if root is not None else "generated"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--busy", type=int, default=0, help="competing busy processes during the run")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.threads)))
        return 0
    runs: dict[str, list[dict]] = {"on": [], "off": []}
    with busy(args.busy):
        for r in range(args.rounds):
            for side in (("on", "off") if r % 2 == 0 else ("off", "on")):
                env = {k: v for k, v in os.environ.items() if k != "DADA_ROS_MALLOC_TUNING"}
                if side == "off":
                    env["DADA_ROS_MALLOC_TUNING"] = "0"
                out = subprocess.run([sys.executable, __file__, "--child", "--threads", str(args.threads)], env=env,
                                     capture_output=True, text=True, check=True)
                res = json.loads(out.stdout.strip().splitlines()[-1])
                runs[side].append(res)
                print(f"round {r} {side}: {res['state']}; " + ", ".join(
                    f"{k} {statistics.median(v):.1f} ms" for k, v in res["ms"].items()), file=sys.stderr, flush=True)
    frames = runs["on"][0]["frames"]
    print(f"{frames} frames at x4 / x8, {args.threads} torch thread(s), {args.busy} busy process(es), "
          f"{args.rounds} rounds; per frame and scale the median of 3 solves, then the median over them\n")
    print("| method | solve ms, tuning off | solve ms, on | on / off, median (range) | peak RSS MB off / on |")
    print("|---|---|---|---|---|")
    for k in runs["on"][0]["ms"]:
        off = [statistics.median(vals) for vals in zip(*(r["ms"][k] for r in runs["off"]))]
        on = [statistics.median(vals) for vals in zip(*(r["ms"][k] for r in runs["on"]))]
        ratio = [a / b for a, b in zip(on, off)]
        rss = tuple(max(r["maxrss_mb"] for r in runs[s]) for s in ("off", "on"))
        print(f"| {k} | {statistics.median(off):.1f} | {statistics.median(on):.1f} | {statistics.median(ratio):.2f} "
              f"({min(ratio):.2f}-{max(ratio):.2f}) | {rss[0]:.0f} / {rss[1]:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
