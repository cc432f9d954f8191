"""DADA-free's cold solve with the one-pass coefficient kernels against the torch expressions.

The same ``DadaSolver`` solves a generated 640x480 scene at x4 and x8 with the diffusion
coefficients from the torch expressions (what training and the GPU use), from the numba one-pass
kernel on the feature tensor (``coefficients._coefficients_fused``, session 5) and straight from
the guide and Y0 (``coefficients.free_coefficients_from_inputs``, no feature tensor: the default
on the CPU since session 8), in turn, so a shared machine's load hits them alike; prints the
median solve time of each (first solve dropped).

    python benchmarks/coefficients_speed.py
    (yes > /dev/null &); python benchmarks/coefficients_speed.py; pkill yes    # one busy process
"""

from __future__ import annotations

import argparse
import statistics
import time

import dada_ros  # noqa: F401  (before torch: the CPU threads' spin setting)
import numpy as np

from dada_ros.core import coefficients as coef
from dada_ros.core.device import set_cpu_threads
from dada_ros.core.scenes import make_sample
from dada_ros.core.solver import DadaSolver, SolverConfig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--solves", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if not coef.HAVE_NUMBA:
        print("numba is not installed: the torch expressions are the only path")
        return 1
    set_cpu_threads(args.threads)
    solver = DadaSolver(SolverConfig(device="cpu"))
    print("| ratio | solve ms, torch coefficients | one pass on the features | one pass from the inputs | "
          "last / torch | last / features |\n|---|---|---|---|---|---|")
    from_inputs = coef.free_coefficients_from_inputs
    modes = ("torch", "features", "inputs")
    try:
        for s in (4, 8):
            smp = make_sample(seed=3, scale=s, size=(480, 640))
            src = np.nan_to_num(smp.source, nan=0.0)
            times: dict[str, list[float]] = {m: [] for m in modes}
            for i in range(args.solves):
                for mode in modes:
                    coef.HAVE_NUMBA = mode != "torch"
                    coef.free_coefficients_from_inputs = from_inputs if mode == "inputs" else (lambda *a, **k: None)
                    t0 = time.perf_counter()
                    solver.solve(smp.rgb, src)
                    if i:
                        times[mode].append((time.perf_counter() - t0) * 1000)
            a, b, c = (statistics.median(times[m]) for m in modes)
            print(f"| x{s} | {a:.1f} | {b:.1f} | {c:.1f} | {c / a:.2f} | {c / b:.2f} |", flush=True)
    finally:
        coef.HAVE_NUMBA = True
        coef.free_coefficients_from_inputs = from_inputs
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
