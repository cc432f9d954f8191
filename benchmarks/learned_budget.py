"""The learned guide's matching budget N on VALIDATION rows only: how N was chosen (session 11).

Rows: the realdata VAL split (teddy, books, venus) and 8 synthetic validation seeds
(``VAL_SEED0 + 500..507``, 256x256), each at x4 / x8 / x16 — the rows the shipped model's gate was
chosen on, never a held-out frame. Per row: MSE against the truth of the learned solve (raw output,
as the gate selection scores it) over DADA-free's, for ``Schedule.matching_plain(8000, N)`` at every
N and for the per-ratio table; runaway recurrences (``stats.fallback``) are listed. The rule
applied (set before the figures were seen): the fewest N within 1% of the largest N's geo-mean over
all rows with no row more than 3% worse than with it.

    python benchmarks/learned_budget.py                       # the shipped weights, N = 150..300
    python benchmarks/learned_budget.py --budgets 200,225,300 --weights runs/x/best.pt
"""

from __future__ import annotations

import argparse
import os
import sys

import dada_ros  # noqa: F401  (before torch: the CPU threads' spin setting)
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dada_ros.core.device import set_cpu_threads  # noqa: E402
from dada_ros.core.metrics import depth_errors  # noqa: E402
from dada_ros.core.schedule import Schedule  # noqa: E402
from dada_ros.core.solver import DEFAULT_MAX_ITERATIONS, DadaSolver, FreeGuide, SolverConfig  # noqa: E402
from dada_ros.learned.crossval import geo_mean as geo  # noqa: E402
from dada_ros.learned.datasets import open_dataset  # noqa: E402
from dada_ros.learned.datasets.base import make_example  # noqa: E402
from dada_ros.learned.datasets.procedural import VAL_SEED0, render_scene  # noqa: E402
from dada_ros.learned.datasets.realdata import default_root  # noqa: E402
from dada_ros.learned.model import SHIPPED_PATH, LearnedGuide, load_checkpoint  # noqa: E402


def mse(pred: np.ndarray, gt: np.ndarray) -> float:
    return depth_errors(pred, gt).mse_cm2


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", help="checkpoint (default: the shipped one, with its gate)")
    ap.add_argument("--budgets", default="150,175,200,225,250,300", help="N values, comma-separated")
    ap.add_argument("--data-dir", help="realdata root (default: ../shared/realdata)")
    ap.add_argument("--synthetic", type=int, default=8, help="synthetic validation seeds")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    set_cpu_threads(args.threads)
    budgets = sorted(int(n) for n in args.budgets.split(","))
    net, _, _ = load_checkpoint(str(args.weights or SHIPPED_PATH))
    guide = LearnedGuide(net, torch.device("cpu"))
    free = DadaSolver(SolverConfig(device="cpu"), FreeGuide())
    learned = DadaSolver(SolverConfig(device="cpu"), guide)
    per_ratio = DadaSolver(SolverConfig(device="cpu", learned_schedule="per-ratio"), guide)
    scenes = []
    root = args.data_dir or default_root()
    if root and os.path.isdir(root):
        data = open_dataset("realdata", root, "val")
        scenes += [("real", data[i]) for i in range(len(data))]
    else:
        print(f"realdata not found ({root}): synthetic rows only", file=sys.stderr)
    scenes += [("synthetic", render_scene(VAL_SEED0 + 500 + i, (256, 256))) for i in range(args.synthetic)]
    keys = [str(n) for n in budgets] + ["per-ratio"]
    rows = []
    for part, sc in scenes:
        for s in (4, 8, 16):
            src = np.nan_to_num(make_example(sc.rgb, sc.depth, s).source, nan=0.0)
            base = mse(free.solve(sc.rgb, src).depth, sc.depth)
            prep = learned.prepare(sc.rgb, src)
            row = {"part": part, "name": f"{sc.name} x{s}", "runaway": []}
            for n in budgets:
                r = learned.solve(sc.rgb, src, prepared=prep,
                                  schedule=Schedule.matching_plain(DEFAULT_MAX_ITERATIONS, n))
                row[str(n)] = mse(r.depth, sc.depth) / base
                if r.stats.fallback:
                    row["runaway"].append(str(n))
            r = per_ratio.solve(sc.rgb, src)
            row["per-ratio"] = mse(r.depth, sc.depth) / base
            if r.stats.fallback:
                row["runaway"].append("per-ratio")
            rows.append(row)
            print(f"  {row['name']}: " + " ".join(f"{k} {row[k]:.3f}" for k in keys)
                  + (f"  runaway: {', '.join(row['runaway'])}" if row["runaway"] else ""), file=sys.stderr, flush=True)
    ref = str(budgets[-1])
    print(f"MSE / DADA-free on validation rows; 'vs {ref}' = geo-mean over all rows / N={ref}'s, worst row / N={ref}'s\n")
    print(f"| N | real geo-mean | synthetic geo-mean | vs {ref} | worst row vs {ref} | runaway |")
    print("|---|---|---|---|---|---|")
    chosen = None
    for k in keys:
        parts = {p: [r[k] for r in rows if r["part"] == p] for p in ("real", "synthetic")}
        rel = geo([r[k] for r in rows]) / geo([r[ref] for r in rows])
        worst = max(rows, key=lambda r: r[k] / r[ref])
        runaway = sum(k in r["runaway"] for r in rows)
        print(f"| {k} | " + " | ".join(f"{geo(v):.3f}" if v else "-" for v in parts.values())
              + f" | {rel:.4f} | {worst[k] / worst[ref]:.3f} ({worst['name']}) | {runaway} |")
        if chosen is None and k != "per-ratio" and rel <= 1.01 and worst[k] / worst[ref] <= 1.03:
            chosen = k
    print(f"\nthe fewest N within 1% of N={ref} with no row > 3% worse: {chosen}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
