"""Time per frame of the warm start against a cold frame, side by side, through ``FramePipeline``.

A generated 640x480 pan (ToF-like source at ``--source``) is fed frame by frame to the pipelines
in turn, so a shared machine's load hits them alike: cold (``warm_start: off``), the warm defaults
of session 5 (75 applications on every warm frame), the current ones with the solve's preparation
after the alignment (``overlap_prepare=False``: session 6's pipeline but for the age map, which is
no longer carried without the young-pixel refinement) and the current ones (DADA-free: 30
applications of the warm semi-iteration (session 16), the preparation on a second thread beside
the alignment). The
node's output-range check is on, as in the node. Prints the median frame time over the frames
after the first two, with the cost split (flow, acceptance, solve, loop; ``solve`` holds only the
part of an overlapped preparation the frame waited for).

    python benchmarks/warm_pipeline_timing.py                    # x4 and x8, 16 frames
    python benchmarks/warm_pipeline_timing.py --source 80x60 --threads 1
    python benchmarks/warm_pipeline_timing.py --method dada --source 160x120   # learned, guarded
    (yes > /dev/null &); python benchmarks/warm_pipeline_timing.py; pkill yes   # loaded
"""

from __future__ import annotations

import argparse
import statistics
import time

import dada_ros  # noqa: F401  (before torch: the CPU threads' spin setting)
import numpy as np

from dada_ros.core.device import set_cpu_threads
from dada_ros.core.output_range import OutputRangeConfig
from dada_ros.core.pipeline import FramePipeline, WarmConfig
from dada_ros.core.sequences import SequenceConfig, make_sequence
from dada_ros.core.guard import GuardConfig
from dada_ros.core.methods import make_solver
from dada_ros.core.solver import SolverConfig

def run(source: tuple[int, int], frames: int, method: str = "dada-free") -> list[str]:
    """Median frame time and cost split of each pipeline on one generated pan (source (w, h));
    ``dada``: the shipped learned model behind its guard, frames the guard checked left out (the
    check costs the same in every pipeline)."""
    seq = list(make_sequence(SequenceConfig(plan=(("pan", frames),), source_shape=source[::-1])))
    configs = {"cold": WarmConfig(mode="off"),
               "session-5 warm": WarmConfig(mode="flow", max_age=1e9, slow_motion_px=0.0, overlap_prepare=False,
                                            warm_schedule="plain", warm_iterations=75),
               "warm, no overlap": WarmConfig(mode="flow", max_age=1e9, overlap_prepare=False),
               "warm": WarmConfig(mode="flow", max_age=1e9)}
    pipes = {k: FramePipeline(make_solver(method, SolverConfig(device="cpu"), guard=GuardConfig()), c,
                              OutputRangeConfig()) for k, c in configs.items()}
    for p in pipes.values():
        p.warm_up()
    times: dict[str, list[float]] = {k: [] for k in pipes}
    split: dict[str, list[tuple]] = {k: [] for k in pipes}
    for i, f in enumerate(seq):
        src = np.nan_to_num(f.source, nan=0.0).astype(np.float32)
        for k, p in pipes.items():
            t = time.perf_counter()
            st = p.process(f.rgb, src, f.stamp).stats
            if i >= 2 and not st.get("guard", {}).get("checked"):  # the first frame has no previous
                # one, the second warms the flow up
                times[k].append((time.perf_counter() - t) * 1000)
                split[k].append((st.get("flow_ms", 0.0), st.get("accept_ms", 0.0), st["solve_ms"],
                                 st["loop_seconds"] * 1000, st["init_mode"]))
    cold = statistics.median(times["cold"])
    lines = []
    for k in pipes:
        m = statistics.median(times[k])
        med = [statistics.median(x[j] for x in split[k]) for j in range(4)]
        modes = sorted({x[4] for x in split[k]})
        lines.append(f"| {source[0]}x{source[1]} | {k} | {m:.1f} | {m / cold:.2f} | {med[0]:.1f} | {med[1]:.1f} | "
                     f"{med[2]:.1f} | {med[3]:.1f} | {', '.join(modes)} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", default="160x120,80x60", help="depth WxH, comma-separated (guide 640x480)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--method", choices=("dada-free", "dada"), default="dada-free",
                    help="dada: the shipped learned model behind its cross-scale guard")
    args = ap.parse_args(argv)
    set_cpu_threads(args.threads)
    print("| source | pipeline | median frame ms | / cold | flow | acceptance | solve | loop | init modes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in args.source.split(","):
        w, h = (int(x) for x in s.split("x"))
        for line in run((w, h), args.frames, args.method):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
