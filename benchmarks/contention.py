"""How the solver and the node share a busy CPU: idle vs 1 and 2 competing busy processes.

A robot's CPU is never idle (SLAM, planners, drivers). On a machine with C cores, a solve that
shares them fairly with k busy processes should slow down by about the CPU share it loses,
not by barrier stalls of its parallel sweeps. This runs, side by side in one run:

* solver: ``DadaSolver.solve`` (the documented Python API, default configuration, a warm
  process) on a generated 640x480 frame at x4 / x8 / x16;
* node: the real ``dada_upsample`` node in-process on a real rclpy graph, default parameters,
  640x480 frames (x4 / x8 / x16 sources, 16UC1 like a ToF driver) sent one at a time; stamp ->
  publish.

The loads rotate round by round (0, 1, 2 busy processes, then 1, 2, 0, ...), so slow drifts of a
shared machine hit every load alike. A busy process is ``python -c "while True: pass"``. Printed:
median (and p90) per load and the ratio to idle.

    python benchmarks/contention.py                       # solver + node, 6 rounds
    python benchmarks/contention.py --part solver --scales 8 --rounds 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager

import dada_ros  # noqa: F401,I001 - first: it sets GOMP_SPINCOUNT before libgomp loads, as the node and CLIs do
import numpy as np

BUSY = "while True: pass"


@contextmanager
def busy(k: int):
    """k competing busy processes for the duration of the block."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(k)]
    try:
        time.sleep(0.3 if k else 0.05)  # let them get scheduled
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def frame(size: tuple[int, int], scale: int, seed: int = 4242):
    from dada_ros.core.scenes import make_sample  # noqa: PLC0415

    smp = make_sample(seed, scale=scale, size=size)
    return smp.rgb, smp.source


def solver_part(args, loads: list[int]) -> dict:
    from dada_ros.core.solver import DadaSolver, SolverConfig  # noqa: PLC0415

    solver = DadaSolver(SolverConfig(device="cpu"))
    frames = {s: frame((480, 640), s) for s in args.scales}
    for s, (rgb, src) in frames.items():  # compile / load the kernels, first torch calls
        solver.solve(rgb, src)
    times: dict = {(s, k): [] for s in args.scales for k in loads}
    for r in range(args.rounds):
        for k in loads[r % len(loads):] + loads[:r % len(loads)]:
            with busy(k):
                for s, (rgb, src) in frames.items():
                    for _ in range(args.repeat):
                        times[(s, k)].append(solver.solve(rgb, src).stats.seconds)
    return times


def node_part(args, loads: list[int]) -> dict:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import node_latency  # noqa: PLC0415

    from dada_ros.core.sequences import SequenceConfig, make_sequence  # noqa: PLC0415
    from dada_ros.ros.parameters import PARAMS_BY_NAME  # noqa: PLC0415
    from dada_ros.ros.transport_profile import apply_default_profile  # noqa: PLC0415

    apply_default_profile()
    n = args.rounds * len(loads) * args.node_frames
    # one node (default parameters: no warm start, so frames of any ratio may follow each other)
    frames = {sc: list(make_sequence(SequenceConfig(seed=0, size=(480, 640), source_shape=(480 // sc, 640 // sc),
                                                    plan=(("pan", n),)))) for sc in args.scales}
    ns = argparse.Namespace(max_age=PARAMS_BY_NAME["warm_start_max_age"].default,
                            threads=PARAMS_BY_NAME["torch_threads"].default, frame_timeout=60.0, verbose=False)
    times: dict = {(sc, k): [] for sc in args.scales for k in loads}
    with node_latency.running_node(PARAMS_BY_NAME["warm_start"].default, ns, 200 + os.getpid() % 30) as runner:
        i = 0
        for r in range(args.rounds):
            for k in loads[r % len(loads):] + loads[:r % len(loads)]:
                with busy(k):
                    for _ in range(args.node_frames):
                        for sc in args.scales:
                            before = len(runner.rows)
                            runner.frame(i, frames[sc][i])
                            if len(runner.rows) > before:
                                times[(sc, k)].append(runner.rows[-1]["latency"])
                        i += 1
    return times


def table(title: str, what: str, times: dict, scales: list[int], loads: list[int]) -> None:
    """Print median / p90 / ratio to idle per (scale, load) of ``times`` (seconds)."""
    print(f"\n{title}")
    print(f"| scale, busy processes | {what} | median | p90 | / idle |\n|---|---|---|---|---|")
    for sc in scales:
        idle = statistics.median(times[(sc, loads[0])])
        for k in loads:
            ts = times[(sc, k)]
            med = statistics.median(ts) * 1000
            print(f"| x{sc}, {k} | {len(ts)} | {med:.1f} | {np.percentile(ts, 90) * 1000:.1f} | "
                  f"{med / (idle * 1000):.2f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("solver", "node", "both"), default="both")
    ap.add_argument("--scales", default="4,8,16")
    ap.add_argument("--loads", default="0,1,2", help="numbers of competing busy processes")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=3, help="solves per scale per round")
    ap.add_argument("--node-frames", type=int, default=4, help="node frames per round and load")
    args = ap.parse_args(argv)
    args.scales = [int(s) for s in args.scales.split(",")]
    loads = [int(k) for k in args.loads.split(",")]
    import torch  # noqa: PLC0415

    from dada_ros.core.fused_cpu import numba_threads, spin_setting_problem, threading_summary  # noqa: PLC0415

    print(f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}, loop threads {numba_threads()}, "
          f"{threading_summary()}; load average before {os.getloadavg()[0]:.2f}", flush=True)
    if spin_setting_problem():
        print("WARNING: " + spin_setting_problem(), flush=True)
    if args.part in ("solver", "both"):
        table("solver (DadaSolver.solve, 640x480, default configuration): ms per solve", "solves",
              solver_part(args, loads), args.scales, loads)
    if args.part in ("node", "both"):
        table("node (default parameters, 640x480, one frame at a time): stamp -> publish ms", "frames",
              node_part(args, loads), args.scales, loads)
    print(f"\nload average after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
