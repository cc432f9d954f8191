"""Cold solves with the one-pass coefficient kernels against the torch expressions.

DADA-free (default): the same ``DadaSolver`` solves a generated 640x480 scene at x4 and x8 with
the diffusion coefficients from the torch expressions (what training and the GPU use), from the
numba one-pass kernel on the feature tensor (``coefficients._coefficients_fused``, session 5) and
straight from the guide and Y0 (``coefficients.free_coefficients_from_inputs``, no feature tensor:
the default on the CPU since session 8).

``--method dada`` (session 12): the shipped learned guide, its features made by the network's
torch path (``GuideNet.forward``, the fused output stage included) then its coefficients, against
``learned/fused_coefficients.py`` (the pooled input, the U-Net with batch norm folded, then one
row-by-row pass to the coefficients: no full-resolution tensor; the default on the CPU since
session 12).

The modes run in turn, solve by solve, so a shared machine's load hits them alike; prints the
median preparation (input checks, Y0, coefficients) and whole-solve times (first solve dropped).

    python benchmarks/coefficients_speed.py [--method dada]
    (yes > /dev/null &); python benchmarks/coefficients_speed.py; pkill yes    # one busy process
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import ExitStack
from unittest import mock

import dada_ros  # noqa: F401  (before torch: the CPU threads' spin setting)
import numpy as np

from dada_ros.core import coefficients as coef
from dada_ros.core.device import set_cpu_threads
from dada_ros.core.scenes import make_sample
from dada_ros.core.solver import DadaSolver, FreeGuide, SolverConfig


def _free_modes() -> dict[str, list]:
    """DADA-free: mode -> the patches that make it (applied around each solve)."""
    return {
        "torch coefficients": [mock.patch.object(coef, "HAVE_NUMBA", False),
                               mock.patch.object(FreeGuide, "coefficients_from_inputs", lambda *a, **k: None)],
        "one pass on the features": [mock.patch.object(FreeGuide, "coefficients_from_inputs", lambda *a, **k: None)],
        "one pass from the inputs": [],
    }


def _learned_modes(guide) -> dict[str, list]:
    return {
        "features (torch path)": [mock.patch.object(type(guide), "coefficients_from_inputs", lambda *a, **k: None)],
        "from the inputs": [],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", choices=("dada-free", "dada"), default="dada-free")
    ap.add_argument("--solves", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 8])
    args = ap.parse_args(argv)
    if not coef.HAVE_NUMBA:
        print("numba is not installed: the torch expressions are the only path")
        return 1
    set_cpu_threads(args.threads)
    if args.method == "dada":
        from dada_ros.learned.model import load_guide_model

        guide = load_guide_model(None, "cpu")
        solver = DadaSolver(SolverConfig(device="cpu"), guide)
        modes = _learned_modes(guide)
    else:
        solver = DadaSolver(SolverConfig(device="cpu"))
        modes = _free_modes()
    names = list(modes)
    print(f"{args.method}, 640x480, median ms (preparation / whole solve), {args.threads} threads\n")
    print("| ratio | " + " | ".join(names) + " | last / first, preparation | last / first, solve |")
    print("|---" * (len(names) + 3) + "|")
    for s in args.scales:
        smp = make_sample(seed=3, scale=s, size=(480, 640))
        src = np.nan_to_num(smp.source, nan=0.0)
        prep: dict[str, list[float]] = {m: [] for m in names}
        whole: dict[str, list[float]] = {m: [] for m in names}
        for i in range(args.solves):
            for name in names:
                with ExitStack() as stack:
                    for p in modes[name]:
                        stack.enter_context(p)
                    t0 = time.perf_counter()
                    prepared = solver.prepare(smp.rgb, src)
                    t1 = time.perf_counter()
                    solver.solve(smp.rgb, src, prepared=prepared)
                    t2 = time.perf_counter()
                if i:
                    prep[name].append((t1 - t0) * 1000)
                    whole[name].append((t2 - t0) * 1000)
        p_med = [statistics.median(prep[m]) for m in names]
        w_med = [statistics.median(whole[m]) for m in names]
        cells = " | ".join(f"{p:.1f} / {w:.1f}" for p, w in zip(p_med, w_med))
        print(f"| x{s} | {cells} | {p_med[-1] / p_med[0]:.2f} | {w_med[-1] / w_med[0]:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
