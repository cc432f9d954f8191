"""``dada-eval``: the paper-style table (MSE cm^2 / MAE cm per scale and method) on a dataset or on
held-out generated scenes.

Examples::

    dada-eval                                            # generated seeds 0..15, 256x256, x4..x32
    dada-eval --tof                                      # same scenes, ToF-like sources
    dada-eval --dataset middlebury --data-dir data/Middlebury --split test --weights runs/mb/best.pt
    dada-eval --dataset nyuv2 --data-dir "data/NYU Depth v2" --scales 8 --limit 20 --json nyu.json
    dada-eval --dataset realdata --split all --scales 4 8 16          # real frames, per-scene table
    dada-eval --dataset realdata --split val --weights runs/a/best.pt --select-gate gated.pt

``realdata`` (``../shared/realdata`` by default) is scored on whole frames with a per-scene table;
``--select-gate OUT`` chooses the gate toward DADA-free of ``--weights`` on the chosen split
(:mod:`dada_ros.learned.gate`), prints it per scene with leave-one-out figures over every dense
real scene, and writes the gated checkpoint to OUT.

Other datasets are cut into non-overlapping 256 x 256 tiles from the top-left (``--tile``); sources are
block averages of the valid ground truth (the paper's protocol). Generated seeds are never used
in training (training/validation seeds start at 10,000,000).
"""

from __future__ import annotations

import argparse
import itertools
import sys

from ..core.methods import METHODS
from ..core.solver import DEFAULT_MAX_ITERATIONS, LEARNED_SCHEDULES, SolverConfig
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
    p.add_argument("--split", default="test", choices=("train", "val", "test", "all"),
                   help="split (all: realdata only, the seven dense real scenes)")
    p.add_argument("--seeds", default="0:16", help="generated scene seeds, e.g. 0:16 or 1,5,9")
    p.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"), help="generated scene size")
    p.add_argument("--tof", action="store_true", help="ToF-like sources (noise, dropouts) instead of block averages")
    p.add_argument("--scales", type=int, nargs="+", default=[4, 8, 16, 32])
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS)
    p.add_argument("--weights", help="learned checkpoint for method dada (default: the shipped one)")
    p.add_argument("--tile", type=int, help="tile size for datasets (0: whole images; default 256, realdata 0)")
    p.add_argument("--limit", type=int, help="evaluate at most this many scenes")
    p.add_argument("--iterations", type=int, help="fixed applications of the solver step (default: the solver's "
                   "per-ratio Chebyshev budget)")
    p.add_argument("--learned-schedule", default="matching", choices=LEARNED_SCHEDULES,
                   help="schedule of the learned solves: matching (default: --learned-applications) or per-ratio "
                        "(dada-free's 150-200, as --solve full trains; also for --select-gate)")
    p.add_argument("--learned-applications", type=int, default=SolverConfig.learned_applications,
                   help="--learned-schedule matching: applications of the learned solve (default %(default)s)")
    p.add_argument("--tol", type=float, help="solver tolerance")
    p.add_argument("--max-iterations", type=int, default=DEFAULT_MAX_ITERATIONS)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--json", help="write the full report (per-tile MSE included) here")
    p.add_argument("--quiet", action="store_true", help="no per-scene progress lines")
    p.add_argument("--jobs", type=int, default=1,
                   help="score the tiles in N worker processes (the same report as serial; threads / N each)")
    p.add_argument("--select-gate", metavar="OUT", help="choose the gate of --weights on the split's scenes, write OUT")
    p.add_argument("--gate-grid", type=float, nargs="+", help="gate values tried (default 0, 0.1, ..., 1)")
    p.add_argument("--gate-synthetic", type=int, default=0, metavar="N",
                   help="--select-gate: also weigh N synthetic validation scenes (half of the objective)")
    p.add_argument("--max-ratio", type=float, default=1.0,
                   help="--select-gate: a gate may not be worse than this x DADA-free on any chosen scene")
    return p


def select_gate(args) -> int:
    """``--select-gate``: grid over the gate on every dense real scene, choice on the split's."""
    from ..core.errors import DadaInputError
    from ..learned import gate as G
    from ..learned.datasets.realdata import SPLITS, RealDataScenes
    from ..learned.model import SHIPPED_PATH, save_checkpoint

    if args.dataset != "realdata":
        raise DadaInputError("--select-gate chooses on real validation scenes: use --dataset realdata")
    chosen_on = list(SPLITS[args.split])
    data = RealDataScenes(args.data_dir, "all")
    extra = [n for n in chosen_on if n not in data.names]
    if extra:
        data = RealDataScenes(args.data_dir, scenes=data.names + extra)
    weights = args.weights or str(SHIPPED_PATH)
    net, meta = G.load_gated(weights)
    progress = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    scales = [int(s) for s in args.scales]
    alphas = args.gate_grid or G.DEFAULT_GRID
    config = SolverConfig(learned_schedule=args.learned_schedule, learned_applications=args.learned_applications)
    grid = G.gate_grid(net, data.scenes, scales, alphas, config=config, progress=progress)
    also = None
    if args.gate_synthetic:
        from ..learned.datasets.procedural import VAL_SEED0, render_scene

        # Synthetic VALIDATION seeds (never the benchmark's held-out seeds 0..N).
        syn = [render_scene(VAL_SEED0 + 500 + i, (256, 256)) for i in range(args.gate_synthetic)]
        sgrid = G.gate_grid(net, syn, scales, alphas, config=config, progress=progress)
        also = (sgrid, list(sgrid))
    gate = G.choose_gate(grid, chosen_on, args.max_ratio, also)
    loo = G.leave_one_out({n: grid[n] for n in SPLITS["all"] if n in grid}, args.max_ratio, also)
    split = {n: sp for sp in ("train", "val") for n in SPLITS[sp]}
    rule = f"no scene worse than {args.max_ratio:g} x DADA-free" + (
        f"; objective: mean of the pooled ratios on them and on {args.gate_synthetic} synthetic validation "
        f"seeds {VAL_SEED0 + 500}.." if also else "; objective: their pooled ratio")
    print(f"gate of {weights} chosen on realdata {args.split} ({', '.join(chosen_on)}; {rule}): "
          + ", ".join(f"x{s} {a:g}" for s, a in gate.items()))
    print(f"pooled MSE / DADA-free on {args.split}: " + ", ".join(
        f"x{s} {r:.3f}" for s, r in G.pooled_ratio(grid, chosen_on, gate).items()))
    if also:
        print("pooled MSE / DADA-free on the synthetic validation seeds: net alone " + ", ".join(
            f"x{s} {r:.3f}" for s, r in G.pooled_ratio(also[0], also[1], {s: 1.0 for s in scales}).items())
              + "; gated " + ", ".join(f"x{s} {r:.3f}" for s, r in G.pooled_ratio(also[0], also[1], gate).items()))
    print(f"\nrealdata, {data.describe()}: MSE / DADA-free per scene (LOO: gate chosen on the other dense scenes)")
    print(G.format_grid(grid, gate, {n: v for n, v in loo.items()}, split))
    G.set_gate(net, gate)
    save_checkpoint(args.select_gate, net, dict(meta) | {"gate_selection": {
        "from": weights, "chosen_on": chosen_on, "gate": gate, "max_ratio": args.max_ratio,
        "synthetic_val_seeds": args.gate_synthetic,
        "pooled_ratio": G.pooled_ratio(grid, chosen_on, gate),
        "loo_ratio": {n: v["ratio"] for n, v in loo.items()}}})
    print(f"wrote {args.select_gate}")
    if args.json:
        def plain(g):
            return {n: {s: {str(a): v for a, v in c.items()} for s, c in by.items()} for n, by in g.items()}

        write_json(args.json, {"gate": gate, "chosen_on": chosen_on, "loo": loo, "grid": plain(grid),
                               "synthetic_grid": plain(also[0]) if also else None})
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        from ..core.device import set_cpu_threads

        set_cpu_threads(args.threads)
    config = SolverConfig(iterations=args.iterations, tol=args.tol, max_iterations=args.max_iterations,
                          device=args.device, learned_schedule=args.learned_schedule,
                          learned_applications=args.learned_applications)
    config.validate()
    if args.select_gate:
        return select_gate(args)
    if args.dataset == "generated":
        seeds = parse_seeds(args.seeds)
        scenes = generated_scenes(seeds[: args.limit] if args.limit else seeds, tuple(args.size))
        tile = None
        what = f"generated seeds {args.seeds} ({args.size[0]}x{args.size[1]})"
    else:
        data = open_dataset(args.dataset, args.data_dir, args.split)
        n = min(len(data), args.limit) if args.limit else len(data)
        scenes = (data[i] for i in range(n))
        tile = (args.tile if args.tile is not None else (0 if args.dataset == "realdata" else 256)) or None
        what = f"{args.dataset} {args.split} ({n} images, tiles {tile or 'whole'})"
        if args.dataset == "realdata":
            what = f"{data.describe()}, {n} images, tiles {tile or 'whole'}"
    source = "ToF-like sources" if args.tof else "block-average sources"
    progress = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if args.jobs < 1:
        from ..core.errors import DadaInputError

        raise DadaInputError(f"--jobs must be >= 1, got {args.jobs}")
    report = evaluate(scenes, args.scales, args.methods, tile, config, args.weights,
                      tof_source_fn() if args.tof else None, progress, jobs=args.jobs)
    title = f"{what}, {source}: MSE cm^2 / MAE cm over valid ground truth, {report['tiles']} tiles"
    print(format_table(report, title))
    if args.dataset == "realdata":
        from ..learned.evaluate import format_scene_table

        print("\n" + format_scene_table(report, "Per scene:" if "dada-free" in args.methods else ""))
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
