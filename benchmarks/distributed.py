"""Training throughput: one process against ``torchrun --nproc_per_node 2`` (gloo), side by side.

Each setting runs the same ``dada-train`` command (the default recipe: crops 96^2, global batch 6,
x4/x8/x16, N_pre up to 2000 x s/8, N_grad 32; the same seed, so the same crops and horizons in
every setting) for ``--steps`` steps; steps/s is read from ``log.csv`` over the steps after the
first ``--skip`` (start-up, scene rendering and validation excluded). Settings are interleaved
round by round so that a change in the machine's load hits all of them alike:

* ``1 process x 1 thread``, ``1 process x 2 threads`` (what one process makes of 2 cores),
* ``2 processes x 1 thread`` (``torchrun --standalone --nproc_per_node 2``: each rank solves 3 crops),
  with batch norm over the global batch (the default) and with ``--dist-bn local`` (no BN collectives),
* ``torchrun, world size 1``: the DDP path with one rank (with ``--device cuda``: NCCL on one GPU,
  the single-GPU figure the issue asks for: ``--device cuda --only 0 4``).

Two parts: synthetic (procedural scenes) and real (``--realdata``, default ``../shared/realdata``:
the realdata train split, tsukuba / cones / art / moebius; skipped when absent).

    python benchmarks/distributed.py                    # ~10 min on 2 idle cores
    python benchmarks/distributed.py --steps 8 --rounds 1 --json out.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (name, processes, threads each, extra dada-train arguments, through torchrun)
SETTINGS = (("1 process x 1 thread", 1, 1, [], False), ("1 process x 2 threads", 1, 2, [], False),
            ("2 processes x 1 thread", 2, 1, [], True),
            ("2 processes x 1 thread, --dist-bn local", 2, 1, ["--dist-bn", "local"], True),
            ("torchrun, world size 1", 1, 1, [], True))


def load() -> list[float]:
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return []


def train_command(procs: int, threads: int, out: Path, cache: Path, steps: int, data: list[str],
                  extra: list[str], torchrun: bool) -> list[str]:
    args = ["--out", str(out), "--cache-dir", str(cache), "--steps", str(steps), "--threads", str(threads),
            "--train-scenes", "24", "--val-scenes", "1", "--val-every", str(10**6), "--ckpt-every", str(10**6),
            "--quiet", "--no-resume", *data, *extra]
    if not torchrun:
        return [sys.executable, "-m", "dada_ros.cli.train", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs), "-m", "dada_ros.cli.train", *args]


def steps_per_second(log: Path, skip: int) -> float:
    rows = [r for r in csv.DictReader(open(log)) if int(r["step"]) > 0]
    t0 = float(rows[skip - 1]["seconds"]) if skip else 0.0
    return (len(rows) - skip) / (float(rows[-1]["seconds"]) - t0)


def measure(part: str, data: list[str], args, work: Path, settings) -> dict:
    cache = work / f"cache_{part}"
    res: dict[str, list[float]] = {name: [] for name, *_ in settings}
    for r in range(args.rounds):
        for name, procs, threads, extra, torchrun in settings:
            out = work / f"{part}_{procs}x{threads}_{r}"
            env = dict(os.environ, OMP_NUM_THREADS=str(threads))
            t = time.perf_counter()
            p = subprocess.run(train_command(procs, threads, out, cache, args.steps, data,
                                             extra + ["--device", args.device], torchrun), cwd=ROOT, env=env,
                               capture_output=True, text=True)
            if p.returncode != 0:
                raise SystemExit(f"{name} failed:\n{p.stderr[-2000:]}")
            res[name].append(steps_per_second(out / "log.csv", args.skip))
            print(f"  {part} round {r}: {name}: {res[name][-1]:.3f} steps/s (run {time.perf_counter() - t:.0f} s, "
                  f"load {load()})", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--skip", type=int, default=2, help="first steps left out of the rate")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu | cuda (cuda: nccl under torchrun)")
    ap.add_argument("--only", nargs="+", type=int, choices=range(len(SETTINGS)),
                    help="indices of the settings to run, the first is the ratios' base (default: all)")
    ap.add_argument("--realdata", default=str(ROOT.parent / "shared" / "realdata"))
    ap.add_argument("--json")
    args = ap.parse_args()
    if not 0 <= args.skip < args.steps:
        ap.error("--skip must be in [0, --steps)")
    parts = {"synthetic": []}
    if Path(args.realdata).is_dir():
        parts["real"] = ["--dataset", "realdata", "--data-dir", args.realdata]
    else:
        print(f"(real part skipped: {args.realdata} not found)")
    print(f"{os.cpu_count()} CPUs, load average {load()} at the start")
    settings = [SETTINGS[i] for i in args.only] if args.only else list(SETTINGS)
    report = {"cpus": os.cpu_count(), "load_start": load(), "steps": args.steps, "skip": args.skip}
    with tempfile.TemporaryDirectory() as tmp:
        for part, data in parts.items():
            report[part] = measure(part, data, args, Path(tmp), settings)
    report["load_end"] = load()
    print(f"\n### dada-train steps/s on {args.device}, default recipe (global batch 6 x 96^2, N_grad 32), mean of {args.rounds} "
          f"round(s), steps {args.skip + 1}..{args.steps}; load average {report['load_start']} -> {report['load_end']}")
    cols = list(parts)
    base_name = settings[0][0]
    print("| setting | " + " | ".join(f"{c} steps/s (x vs {base_name})" for c in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for name, *_ in settings:
        cells = []
        for c in cols:
            mean = sum(report[c][name]) / len(report[c][name])
            base = sum(report[c][base_name]) / len(report[c][base_name])
            cells.append(f"{mean:.3f} ({mean / base:.2f}x)")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
