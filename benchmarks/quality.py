"""Accuracy of every method per scale on generated scenes, in the paper's table format.

Prints MSE (cm^2) / MAE (cm) per scale x4..x32 for bicubic, nearest, JBF, guided filter, FGS,
learning-free DADA with the default iteration policy (the Chebyshev schedule), and DADA with
the paper's 8000 plain iterations (the reference the default must match within 1% MSE); the learned model too when it
is installed. Then the DADA/bicubic MSE ratio (the paper's first number to reproduce) and the
cost of one solver iteration at 640x480 on this machine's CPU.

    python benchmarks/quality.py            # 8 held-out scenes, 256x256
    python benchmarks/quality.py --quick    # 3 scenes (about a minute)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from tqdm import tqdm

from dada_ros.core.errors import DadaInputError
from dada_ros.core.loop import run_loop
from dada_ros.core.methods import run_method
from dada_ros.core.metrics import consistency_error, depth_errors
from dada_ros.core.resample import Partition, Resampler
from dada_ros.core.scenes import make_sample
from dada_ros.core.solver import SolverConfig

SCALES = (4, 8, 16, 32)
BASELINES = ("bicubic", "nearest", "jbf", "guided", "fgs")
FIRST_SEED = 100_000  # held out: training and tests use small seeds


def ms_per_iteration(size=(480, 640), scale=8, iterations=200) -> float:
    """Wall time of one in-place diffusion-adjustment step on CPU, float32."""
    H, W = size
    part = Partition(size, (H // scale, W // scale))
    res = Resampler(part, torch.device("cpu"))
    src = torch.rand(1, 1, H // scale, W // scale) + 1
    valid = torch.ones_like(src, dtype=torch.bool)
    cv, ch = torch.rand(1, 1, H - 1, W), torch.rand(1, 1, H, W - 1)
    y = res.up(src).contiguous()
    run_loop(y, src, valid, cv, ch, res, 0.24, iterations=20)  # warm-up
    t0 = time.perf_counter()
    run_loop(y, src, valid, cv, ch, res, 0.24, iterations=iterations)
    return (time.perf_counter() - t0) * 1000 / iterations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 scenes instead of 8")
    ap.add_argument("--scenes", type=int, default=None)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    n = args.scenes or (3 if args.quick else 8)
    methods = list(BASELINES) + ["dada-free", "dada-free 8000"]
    try:
        run_method("dada", np.zeros((8, 8, 3), np.uint8), np.ones((2, 2), np.float32),
                   config=SolverConfig(schedule="plain", iterations=1))
        methods.append("dada")
    except DadaInputError as exc:
        print(f"(learned model not available: {exc})")

    results = {(m, s): [] for m in methods for s in SCALES}
    iters = {s: [] for s in SCALES}
    consist = []
    jobs = [(seed, s) for seed in range(FIRST_SEED, FIRST_SEED + n) for s in SCALES]
    for seed, scale in tqdm(jobs, desc="scenes x scales"):
        smp = make_sample(seed, scale, (args.size, args.size))
        for m in methods:
            if m == "dada-free 8000":
                depth, st = run_method("dada-free", smp.rgb, smp.source,
                                       config=SolverConfig(schedule="plain", iterations=8000))
            else:
                depth, st = run_method(m, smp.rgb, smp.source)
            e = depth_errors(depth, smp.gt)
            results[(m, scale)].append((e.mse_cm2, e.mae_cm))
            if m == "dada-free":
                iters[scale].append(st["iterations"])
                consist.append(consistency_error(depth, smp.source))

    print(f"\nMSE cm^2 / MAE cm, mean over {n} generated scenes {args.size}x{args.size} (seeds {FIRST_SEED}..)")
    print("| method | " + " | ".join(f"x{s}" for s in SCALES) + " |")
    print("|---|" + "---|" * len(SCALES))
    for m in methods:
        cells = []
        for s in SCALES:
            arr = np.array(results[(m, s)])
            cells.append(f"{arr[:, 0].mean():.2f} / {arr[:, 1].mean():.3f}")
        print(f"| {m} | " + " | ".join(cells) + " |")
    mean = {k: np.mean([r[0] for r in v]) for k, v in results.items()}
    print("| DADA-free / bicubic MSE | " + " | ".join(f"{mean[('dada-free', s)] / mean[('bicubic', s)]:.2f}" for s in SCALES) + " |")
    print("| default / 8000-step MSE | " + " | ".join(f"{mean[('dada-free', s)] / mean[('dada-free 8000', s)]:.3f}" for s in SCALES) + " |")
    print("| default: mean iterations | " + " | ".join(f"{np.mean(iters[s]):.0f}" for s in SCALES) + " |")
    worst = max(
        np.array(results[("dada-free", s)])[i, 0] / np.array(results[("dada-free 8000", s)])[i, 0]
        for s in SCALES for i in range(n)
    )
    print(f"worst single scene default/8000 MSE ratio: {worst:.3f} (target <= 1.01)")
    print(f"max consistency error |down(Y)-S|/S (DADA-free): {max(consist):.2e}")
    print(f"solver step at 640x480, x8, CPU ({torch.get_num_threads()} threads): {ms_per_iteration():.2f} ms/iteration")


if __name__ == "__main__":
    main()
