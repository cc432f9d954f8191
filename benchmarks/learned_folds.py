"""Issue 28, step 2: the learned model TRAINED inside grouped cross-validation folds, reported out of fold.

Nested, grouped 5-fold cross-validation over the 28 Middlebury rows of ``../shared/realdata`` (the
21 third-size 2005/2006 scenes, both views, and the 7 2001-2005 scenes; folds by scene family,
:func:`dada_ros.learned.crossval.grouped_folds`, the same folds as ``benchmarks/learned.py --only
cv``). For outer fold f (:func:`~dada_ros.learned.crossval.fold_plan`):

* every recipe trains on the files of the three other folds (``dada-train --dataset realdata
  --real-scenes ...``), its checkpoint chosen on the inner fold f+1 (``--val-mode ratios``);
* the gate toward DADA-free (grid 0, 0.25, ..., 1 per ratio) and the recipe are chosen on the
  inner fold (lowest geo-mean dada / dada-free in disparity among gates no worse than 1.02x on any
  inner row; 0 = DADA-free always qualifies);
* only fold f is reported. No row trained or chose anything that scores it: every one of the 28
  rows is out of fold (the recipes start from ``dada_lite_v5`` -- procedural scenes only -- or
  from scratch).

The metric RealSense frames (``posecnn_*``; truth = each frame's own valid depth) are in no fold:
every fold's model and gate score them (never chosen on them).

Recipes (fixed before any fold was scored; the recipe itself is chosen per fold on the inner fold):

* ``lite``: the shipped 235k-parameter lite U-Net from ``dada_lite_v5``;
* ``wide``: the lite U-Net at widths 32 48 80 128 128 (~4x the channels), from scratch (untrained it
  is DADA-free).

Both: ratio-conditioned decoder, gradient through the whole default solve, 96 px crops, batch 4,
x4 / x8 / x16, lr 3e-4, squared log-depth loss, 20% ToF-like sources, one thread per process.

Everything resumes (training from ``OUT/<recipe>/fold<f>/last.pt``, scores from ``scores.json``
beside it): rerun the same command after an interruption; ``--steps`` larger than before continues
the training. ~0.3 s per training step and one process per core on this 2-core VM::

    python benchmarks/learned_folds.py --out runs/cv --steps 3000 --jobs 2 [--json cv_train.json]
    python benchmarks/learned_folds.py --out runs/cv --report-only        # tables from what is there
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import dada_ros  # noqa: F401  (before torch, so that the loop's GOMP_SPINCOUNT takes effect)

from dada_ros.core.output_range import OutputRangeConfig
from dada_ros.learned import crossval as C

REPO = Path(__file__).resolve().parents[1]
V5 = REPO / "dada_ros" / "data" / "dada_lite_v5.pt"
RECIPES = {
    "lite": ["--init-from", str(V5), "--scale-film"],
    "wide": ["--widths", "32", "48", "80", "128", "128", "--scale-film"],
}
COMMON = ["--dataset", "realdata", "--solve", "full", "--scales", "4", "8", "16", "--crop", "96", "--batch", "4",
          "--lr", "3e-4", "--lr-step", "1000", "--loss", "log", "--tof-prob", "0.2", "--val-mode", "ratios",
          "--val-tile", "0", "--val-every", "100", "--threads", "1", "--quiet"]
GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
SENSORS = [r for r in C.sensor_rows() if r.kind == "sensor"]


def _short(log: Path) -> str:
    return "/".join(log.parts[-3:])


def run_jobs(jobs: list[tuple[list[str], Path]], parallel: int) -> None:
    """Run the commands, ``parallel`` at a time, each writing its output to its log file."""
    pending, running = list(jobs), []
    while pending or running:
        while pending and len(running) < parallel:
            cmd, log = pending.pop(0)
            log.parent.mkdir(parents=True, exist_ok=True)
            print(f"[{time.strftime('%H:%M:%S')}] start: {_short(log)}", flush=True)
            running.append((subprocess.Popen(cmd, stdout=open(log, "a"), stderr=subprocess.STDOUT, cwd=REPO), log))
        time.sleep(5)
        for p, log in list(running):
            if p.poll() is not None:
                running.remove((p, log))
                print(f"[{time.strftime('%H:%M:%S')}] done (exit {p.returncode}): {_short(log)}",
                      flush=True)
                if p.returncode:
                    raise SystemExit(f"{' '.join(p.args)} failed; see {log}")


def score_one(out: Path, recipe: str, fold: int, root: Path) -> None:
    """Score the inner and test rows and the sensor frames with one fold's best checkpoint (cached)."""
    import torch

    torch.set_num_threads(1)
    rows = C.middlebury_rows()
    plan = C.fold_plan(rows, C.grouped_folds(rows, 5), fold)
    d = out / recipe / f"fold{fold}"
    files = plan.files(plan.inner) + plan.files(plan.test) + C.FoldPlan.files(SENSORS)
    C.score_all(root, files, str(d / "best.pt"), d / "scores.json", grid=GRID, check_modes=(),
                progress=lambda m: print(m, flush=True), output_range=OutputRangeConfig())


def inner_score(rec: dict, rows, gate: dict[int, float], metric: str = "primary") -> float:
    """Mean over ratios of the geo-mean dada / dada-free over ``rows`` at ``gate``."""
    return sum(C.geo_mean([C.row_ratio(rec, r, s, gate[s], metric) for r in rows]) for s in C.SCALES) / len(C.SCALES)


def _has_range(scores: Path) -> bool:
    """Whether a scores file has the clamped predictions (files from before they were scored lack them)."""
    rec = json.loads(scores.read_text())
    return all("depth" + C.RANGE in cell for r in rec.values() for k, cell in r.items() if k.isdigit())


def _meta(path: Path) -> dict:
    from dada_ros.learned.model import load_checkpoint

    return load_checkpoint(str(path))[1] if path.exists() else {}


VARIANTS = {  # label: (primary metric, z / metric depth)
    "solver": ("primary", "depth"),
    "node": ("primary" + C.RANGE, "depth" + C.RANGE),  # after the node's default output-range clamp
}


def report(out: Path, recipes: list[str], folds_wanted: list[int], max_ratio: float) -> dict:
    rep = {}
    for label, (prim, zm) in VARIANTS.items():
        print(f"\n## {label}: " + ("the solver's output" if label == "solver" else
                                   "after the node's default output-range clamp (output_range: clamp)") + "\n")
        rep[label] = report_variant(out, recipes, folds_wanted, max_ratio, prim, zm)
    return rep


def report_variant(out: Path, recipes: list[str], folds_wanted: list[int], max_ratio: float,
                   prim: str, zm: str) -> dict:
    rows = C.middlebury_rows(used={})
    folds = C.grouped_folds(rows, 5)
    chosen: dict = {}
    oof: dict = {"picked": {}, "picked_z": {}}
    for rcp in recipes:
        oof[f"{rcp}_net"], oof[f"{rcp}_net_z"] = {}, {}
    sensor: dict = {}
    print("| fold | recipe | steps | best val (inner, ratios) | gate x4 / x8 / x16 (inner) | inner geo-mean at gate | picked |")
    print("|---|---|---|---|---|---|---|")
    for f in folds_wanted:
        plan = C.fold_plan(rows, folds, f)
        cands = {}
        for rcp in recipes:
            d = out / rcp / f"fold{f}"
            if not (d / "scores.json").exists():
                continue
            rec = json.loads((d / "scores.json").read_text())
            gate = {s: C.choose_alpha(rec, plan.inner, s, GRID, max_ratio, prim) for s in C.SCALES}
            cands[rcp] = (inner_score(rec, plan.inner, gate, prim), gate, rec)
            for r in plan.test:
                oof[f"{rcp}_net"][r.name] = {s: C.row_ratio(rec, r, s, 1.0, prim) for s in C.SCALES}
                oof[f"{rcp}_net_z"][r.name] = {s: C.row_ratio(rec, r, s, 1.0, zm) for s in C.SCALES}
        if not cands:
            continue
        pick = min(cands, key=lambda k: cands[k][0])
        _, gate, rec = cands[pick]
        chosen[f] = {"recipe": pick, "gate": gate}
        for rcp, (score, g, _) in cands.items():
            meta = _meta(out / rcp / f"fold{f}" / "last.pt")
            print(f"| {f} | {rcp} | {meta.get('steps', '?')} | {meta.get('best_val_loss', float('nan')):.3f} | "
                  + " / ".join(f"{g[s]:g}" for s in C.SCALES) + f" | {score:.3f} | {'yes' if rcp == pick else ''} |")
        for r in plan.test:
            oof["picked"][r.name] = {s: C.row_ratio(rec, r, s, gate[s], prim) for s in C.SCALES}
            oof["picked_z"][r.name] = {s: C.row_ratio(rec, r, s, gate[s], zm) for s in C.SCALES}
        sensor[f] = {r.name: {s: C.row_ratio(rec, r, s, gate[s], prim) for s in C.SCALES} for r in SENSORS}
        sensor[f"{f}_net"] = {r.name: {s: C.row_ratio(rec, r, s, 1.0, prim) for s in C.SCALES} for r in SENSORS}
    done = [r for r in rows if r.name in oof["picked"]]
    print("\n| scene | fold | picked recipe | out-of-fold dada / dada-free x4 / x8 / x16, disparity (z) | "
          + " | ".join(f"{rcp} net alone (gate 1), disparity" for rcp in recipes) + " |")
    print("|---|---|---|---|" + "---|" * len(recipes))
    for r in done:
        f = folds[r.name]
        print(f"| {r.name} | {f} | {chosen[f]['recipe']} | "
              + " / ".join(C._f(oof["picked"][r.name][s]) for s in C.SCALES) + " ("
              + " / ".join(C._f(oof["picked_z"][r.name][s]) for s in C.SCALES) + ") | "
              + " | ".join(" / ".join(C._f(oof[f"{rcp}_net"][r.name][s]) for s in C.SCALES)
                           if r.name in oof[f"{rcp}_net"] else "-" for rcp in recipes) + " |")
    print("\n| out of fold, dada / dada-free | geo-mean x4 / x8 / x16 | worst x4 / x8 / x16 |\n|---|---|---|")
    for key, lab in [("picked", "picked recipe and gate, disparity"), ("picked_z", "picked recipe and gate, z")] + [
            (f"{rcp}_net{z}", f"{rcp} net alone, {'z' if z else 'disparity'}") for rcp in recipes for z in ("", "_z")]:
        rs = [r for r in done if r.name in oof[key]]
        if rs:
            print(*C.summary_lines(lab, oof[key], rs), sep="\n")
    print("\n| sensor frames (posecnn, metric, in no fold): fold's model | geo-mean x4 / x8 / x16 | worst x4 / x8 / x16 |"
          "\n|---|---|---|")
    for f in chosen:
        print(*C.summary_lines(f"fold {f} ({chosen[f]['recipe']}, its gate)", sensor[f], SENSORS), sep="\n")
        print(*C.summary_lines(f"fold {f} ({chosen[f]['recipe']}, net alone)", sensor[f"{f}_net"], SENSORS), sep="\n")
    return {"chosen": chosen, "oof": oof, "sensor": sensor, "folds": folds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="runs folder (OUT/<recipe>/fold<f>/...)")
    ap.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=sorted(RECIPES))
    ap.add_argument("--folds", nargs="+", type=int, default=list(range(5)))
    ap.add_argument("--steps", type=int, default=3000, help="training steps per fold and recipe")
    ap.add_argument("--jobs", type=int, default=2, help="processes at once (one thread each)")
    ap.add_argument("--max-ratio", type=float, default=1.02, help="gate: no inner row worse than this")
    ap.add_argument("--real-dir", help="realdata folder (default ../shared/realdata)")
    ap.add_argument("--report-only", action="store_true", help="no training or scoring: tables from OUT")
    ap.add_argument("--json", help="write the report here")
    ap.add_argument("--score-one", nargs=2, metavar=("RECIPE", "FOLD"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    from dada_ros.learned.datasets.realdata import default_root

    root = Path(args.real_dir) if args.real_dir else default_root()
    if root is None:
        raise SystemExit("no ../shared/realdata (pass --real-dir)")
    out = Path(args.out).resolve()
    if args.score_one:
        score_one(out, args.score_one[0], int(args.score_one[1]), root)
        return
    if not args.report_only:
        rows = C.middlebury_rows(used={})
        folds = C.grouped_folds(rows, 5)
        train, score = [], []
        for f in args.folds:
            plan = C.fold_plan(rows, folds, f)
            for rcp in args.recipes:
                d = out / rcp / f"fold{f}"
                cmd = [sys.executable, "-m", "dada_ros.cli.train", *COMMON, *RECIPES[rcp], "--data-dir", str(root),
                       "--steps", str(args.steps), "--out", str(d), "--real-scenes", *plan.files(plan.train),
                       "--real-val-scenes", *plan.files(plan.inner)]
                train.append((cmd, d / "train.log"))
                score.append(([sys.executable, str(Path(__file__).resolve()), "--out", str(out), "--real-dir",
                               str(root), "--score-one", rcp, str(f)], d / "score.log"))
        run_jobs(train, args.jobs)
        for _, log in score:  # a new checkpoint invalidates its scores
            sj, best = log.parent / "scores.json", log.parent / "best.pt"
            if sj.exists() and ((best.exists() and sj.stat().st_mtime < best.stat().st_mtime) or not _has_range(sj)):
                sj.unlink()
        run_jobs(score, args.jobs)
    rep = report(out, args.recipes, args.folds, args.max_ratio)
    if args.json:
        Path(args.json).write_text(json.dumps(rep, indent=1, default=str))


if __name__ == "__main__":
    main()
