"""``dada-eval``: the paper-style table (MSE cm^2 / MAE cm per scale and method) on a dataset or on
held-out generated scenes.

Examples::

    dada-eval                                            # generated seeds 0..15, 256x256, x4..x32
    dada-eval --tof                                      # same scenes, ToF-like sources
    dada-eval --dataset middlebury --data-dir data/Middlebury --split test --weights runs/mb/best.pt
    dada-eval --dataset nyuv2 --data-dir "data/NYU Depth v2" --scales 8 --limit 20 --json nyu.json

Datasets are cut into non-overlapping 256 x 256 tiles from the top-left (``--tile``); sources are
block averages of the valid ground truth (the paper's protocol). Generated seeds are never used
in training (training/validation seeds start at 10,000,000).
"""

from __future__ import annotations

import argparse
import itertools
import sys

from ..core.methods import METHODS
from ..core.solver import DEFAULT_MAX_ITERATIONS, SolverConfig
from ..learned.datasets import DATASETS, open_dataset
from ..learned.evaluate import DEFAULT_METHODS, evaluate, format_table, generated_scenes, tof_source_fn
from .common import run_cli, write_json


def parse_seeds(text: str) -> list[int]:
    """'0:16' -> 0..15; '3,5,9' -> [3, 5, 9]."""
    from ..core.errors import DadaInputError

    try:
        if ":" in text:
            a, b = text.split(":")
            return list(range(int(a), int(b)))
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise DadaInputError(f"--seeds must look like 0:16 or 1,2,3, got {text!r}") from exc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dada-eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="generated", choices=DATASETS)
    p.add_argument("--data-dir", help="dataset root (real datasets)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--seeds", default="0:16", help="generated scene seeds, e.g. 0:16 or 1,5,9")
    p.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"), help="generated scene size")
    p.add_argument("--tof", action="store_true", help="ToF-like sources (noise, dropouts) instead of block averages")
    p.add_argument("--scales", type=int, nargs="+", default=[4, 8, 16, 32])
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS)
    p.add_argument("--weights", help="learned checkpoint for method dada (default: the shipped one)")
    p.add_argument("--tile", type=int, default=256, help="tile size for datasets (0: whole images)")
    p.add_argument("--limit", type=int, help="evaluate at most this many scenes")
    p.add_argument("--iterations", type=int, help="fixed solver iterations (default: tolerance stop, cap 8000)")
    p.add_argument("--tol", type=float, help="solver tolerance")
    p.add_argument("--max-iterations", type=int, default=DEFAULT_MAX_ITERATIONS)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--json", help="write the full report (per-tile MSE included) here")
    p.add_argument("--quiet", action="store_true", help="no per-scene progress lines")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        from ..core.device import set_cpu_threads

        set_cpu_threads(args.threads)
    config = SolverConfig(iterations=args.iterations, tol=args.tol, max_iterations=args.max_iterations,
                          device=args.device)
    config.validate()
    if args.dataset == "generated":
        seeds = parse_seeds(args.seeds)
        scenes = generated_scenes(seeds[: args.limit] if args.limit else seeds, tuple(args.size))
        tile = None
        what = f"generated seeds {args.seeds} ({args.size[0]}x{args.size[1]})"
    else:
        data = open_dataset(args.dataset, args.data_dir, args.split)
        n = min(len(data), args.limit) if args.limit else len(data)
        scenes = (data[i] for i in range(n))
        tile = args.tile or None
        what = f"{args.dataset} {args.split} ({n} images, tiles {tile or 'whole'})"
    source = "ToF-like sources" if args.tof else "block-average sources"
    progress = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    report = evaluate(scenes, args.scales, args.methods, tile, config, args.weights,
                      tof_source_fn() if args.tof else None, progress)
    title = f"{what}, {source}: MSE cm^2 / MAE cm over valid ground truth, {report['tiles']} tiles"
    print(format_table(report, title))
    low = [f"{m} x{s}: {c['coverage']:.3f}" for m, s in itertools.product(report["results"], args.scales)
           if (c := report["results"][m][int(s)])["coverage"] < 0.999]
    if low:
        print("coverage below 100 %: " + ", ".join(low))
    if args.json:
        report.update(dataset=args.dataset, what=what, source=source, scales=args.scales,
                      weights=args.weights or "shipped")
        write_json(args.json, report)
    return 0


def entry() -> None:
    sys.exit(run_cli("dada-eval", main))


if __name__ == "__main__":
    entry()
