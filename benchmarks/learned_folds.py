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
  is DADA-free);
* ``lite-misreg``, ``wide-misreg`` (added in session 8, after the other two were scored): ``lite`` /
  ``wide`` with ``--misregister-px 3`` (half the crops' depth up to 3 px off their RGB; doc/learned.md).
* ``lite-q-misreg`` (added in session 10): ``lite-misreg`` with ``--arch lite-unet-q`` (the U-Net at a
  quarter of the guide's resolution, ``dada_lite_v8``'s architecture).

Both: ratio-conditioned decoder, gradient through the whole default solve, 96 px crops, batch 4,
x4 / x8 / x16, lr 3e-4, squared log-depth loss, 20% ToF-like sources, one thread per process.

Everything resumes (training from ``OUT/<recipe>/fold<f>/last.pt``, scores from ``scores.json``
beside it): rerun the same command after an interruption; ``--steps`` larger than before continues
the training. ~0.3 s per training step and one process per core on this 2-core VM::

    python benchmarks/learned_folds.py --out runs/cv --steps 3000 --jobs 2 [--json cv_train.json]
    python benchmarks/learned_folds.py --out runs/cv --report-only        # tables from what is there
    python benchmarks/learned_folds.py --out runs/cv4000 --recipes wide --steps 4000 --guard wide --final wide
        # + the per-frame guard, out of fold (guard.json per fold), and the model trained on all rows
    python benchmarks/learned_folds.py --out runs/cv_fr --rescore-from runs/cv --recipes lite-misreg \
        --learned-schedule per-ratio        # the same checkpoints scored again with another learned schedule
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import dada_ros  # noqa: F401  (before torch, so that the loop's GOMP_SPINCOUNT takes effect)

from dada_ros.core.output_range import OutputRangeConfig
from dada_ros.core.solver import LEARNED_SCHEDULES
from dada_ros.learned import crossval as C

REPO = Path(__file__).resolve().parents[1]
V5 = REPO / "dada_ros" / "data" / "dada_lite_v5.pt"
RECIPES = {
    "lite": ["--init-from", str(V5), "--scale-film"],
    "wide": ["--widths", "32", "48", "80", "128", "128", "--scale-film"],
    # session 8: with misregistration augmentation (half the crops' depth up to 3 px off the RGB)
    "lite-misreg": ["--init-from", str(V5), "--scale-film", "--misregister-px", "3"],
    "wide-misreg": ["--widths", "32", "48", "80", "128", "128", "--scale-film", "--misregister-px", "3"],
    # session 10: lite-misreg with the U-Net at quarter resolution (dada_lite_v8's architecture)
    "lite-q-misreg": ["--init-from", str(V5), "--arch", "lite-unet-q", "--scale-film", "--misregister-px", "3"],
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


def score_one(out: Path, recipe: str, fold: int, root: Path, learned_schedule: str = "matching") -> None:
    """Score the inner and test rows and the sensor frames with one fold's best checkpoint (cached;
    ``learned_schedule``: :attr:`SolverConfig.learned_schedule` of the learned solves)."""
    import torch

    from dada_ros.core.solver import SolverConfig

    torch.set_num_threads(1)
    rows = C.middlebury_rows()
    plan = C.fold_plan(rows, C.grouped_folds(rows, 5), fold)
    d = out / recipe / f"fold{fold}"
    files = plan.files(plan.inner) + plan.files(plan.test) + C.FoldPlan.files(SENSORS)
    C.score_all(root, files, str(d / "best.pt"), d / "scores.json", grid=GRID, check_modes=(),
                config=SolverConfig(learned_schedule=learned_schedule),
                progress=lambda m: print(m, flush=True), output_range=OutputRangeConfig())


def link_checkpoints(src: Path, out: Path, recipes: list[str], folds: list[int]) -> None:
    """OUT/<recipe>/fold<f> takes SRC's trained checkpoints (symbolic links) to be scored again."""
    for rcp in recipes:
        for f in folds:
            a, b = src / rcp / f"fold{f}", out / rcp / f"fold{f}"
            if not (a / "best.pt").exists():
                raise SystemExit(f"{a / 'best.pt'} missing: train that fold first")
            b.mkdir(parents=True, exist_ok=True)
            for name in ("best.pt", "last.pt", "log.csv"):
                if (a / name).exists() and not (b / name).exists():
                    (b / name).symlink_to(a / name)


GUARD_MODES = (("guide", 2), ("source", 2), ("source", 4), ("half", 2))  # (cross-scale mode, extra factor)
GUARD_MARGINS = (1.0, 0.95, 0.9)
MEASURES = ("depth", "inverse", "log")


def node_gate(rec: dict, plan, max_ratio: float = 1.02) -> dict[int, float]:
    """The gate the node variant chooses on the inner fold (what the fold's model ships with)."""
    return {s: C.choose_alpha(rec, plan.inner, s, GRID, max_ratio, "primary" + C.RANGE) for s in C.SCALES}


def guard_measures(model: Path, gate: dict[int, float], files: list[str], cache: Path, root: Path,
                   modes=GUARD_MODES) -> dict:
    """Cross-scale check measures (:func:`dada_ros.core.cross_scale.cross_scale_measures`) of
    DADA-free and of ``model`` at ``gate``, per file, ratio and check mode; cached in ``cache``
    (a rerun resumes and adds only missing modes; a different gate or a newer ``model`` starts over)."""
    import torch

    from dada_ros.core.cross_scale import cross_scale_measures
    from dada_ros.core.solver import DadaSolver, FreeGuide, SolverConfig
    from dada_ros.learned.datasets.base import make_example
    from dada_ros.learned.datasets.realdata import read_npz, scene_path
    from dada_ros.learned.gate import gated_copy, set_gate
    from dada_ros.learned.model import LearnedGuide, load_checkpoint

    torch.set_num_threads(1)
    net = gated_copy(load_checkpoint(str(model))[0])
    set_gate(net, gate)
    cfg = SolverConfig()
    solvers = {"dada-free": DadaSolver(cfg, FreeGuide()), "dada": DadaSolver(cfg, LearnedGuide(net, torch.device("cpu")))}
    fresh = cache.exists() and cache.stat().st_mtime >= model.stat().st_mtime
    done = json.loads(cache.read_text()) if fresh else {}
    if done.get("gate") != {str(k): v for k, v in gate.items()}:
        done = {"gate": {str(k): v for k, v in gate.items()}}
    for f in files:
        rec = done.get(f, {})
        todo = [(s, mode, k) for s in C.SCALES for mode, k in modes if f"{s}/{mode}{k}" not in rec]
        if not todo:
            continue
        scene, _ = read_npz(scene_path(root, f))
        sources = {s: np.nan_to_num(make_example(scene.rgb, scene.depth, int(s)).source, nan=0.0)
                   for s in {s for s, _, _ in todo}}
        for s, mode, k in todo:
            src = sources[s]
            try:
                rec[f"{s}/{mode}{k}"] = cross_scale_measures(scene.rgb, src, solvers, mode, k)
            except Exception as e:  # too small a source for the factor: recorded, never picked
                rec[f"{s}/{mode}{k}"] = {"error": str(e)}
        done[f] = rec
        cache.write_text(json.dumps(done))
        print(f"{f}: done", flush=True)
    return done


def guard_one(out: Path, recipe: str, fold: int, root: Path) -> None:
    """:func:`guard_measures` of one fold's model at its node gate on the inner, test and sensor
    files; cached in ``guard.json`` beside the scores."""
    rows = C.middlebury_rows(used={})
    plan = C.fold_plan(rows, C.grouped_folds(rows, 5), fold)
    d = out / recipe / f"fold{fold}"
    gate = node_gate(json.loads((d / "scores.json").read_text()), plan)
    guard_measures(d / "best.pt", gate, plan.files(plan.inner) + plan.files(plan.test) + C.FoldPlan.files(SENSORS),
                   d / "guard.json", root)


def guard_pick(check: dict, measure: str, margin: float) -> bool:
    """True when the guard's rule (:func:`dada_ros.core.guard.keeps_learned`) keeps DADA on this
    recorded check; a check that could not run keeps DADA-free, as the guard does."""
    from dada_ros.core.guard import keeps_learned

    return "error" not in check and keeps_learned(check, measure, margin)


def guarded_ratio(rec: dict, guard: dict, row, s: int, gate: float, rule: tuple, metric: str) -> float:
    """A row's MSE over DADA-free's when each of its files uses DADA only where ``rule`` (mode,
    measure, margin) keeps it."""
    mode, measure, margin = rule
    m = C.metric_of(rec, row, metric)
    key = f"{float(gate):g}"
    sq = px = 0.0
    for f in row.files:
        use = gate > 0 and guard_pick(guard[f][f"{s}/{mode}"], measure, margin)
        cell = rec[f][str(s)][m]["free" if not use else key]
        sq, px = sq + cell[0], px + cell[1]
    free = C.row_mse(rec, row, s, "free", metric)
    return (sq / px) / free if px else float("nan")


def guard_report(out: Path, recipe: str, folds_wanted: list[int], max_ratio: float) -> dict:
    """Out-of-fold figures of the guarded model: per fold, the rule (mode, measure, margin) is
    chosen on the inner fold (lowest mean over ratios of the geo-mean, among rules no worse than
    ``max_ratio`` on any inner row; none: no guard = DADA-free), then scored on the test fold and
    the sensor frames. Every fixed rule's out-of-fold figures are printed too (not chosen)."""
    rows = C.middlebury_rows(used={})
    folds = C.grouped_folds(rows, 5)
    metric = "primary" + C.RANGE
    rules = [(f"{m}{k}", meas, mg) for m, k in GUARD_MODES for meas in MEASURES for mg in GUARD_MARGINS]
    per_rule = {r: {} for r in rules}
    per_rule_sensor = {r: {} for r in rules}
    chosen_oof, chosen_sensor, unguarded, unguarded_sensor, choices, right = {}, {}, {}, {}, {}, {}
    for f in folds_wanted:
        d = out / recipe / f"fold{f}"
        if not (d / "guard.json").exists():
            continue
        plan = C.fold_plan(rows, folds, f)
        rec = json.loads((d / "scores.json").read_text())
        guard = json.loads((d / "guard.json").read_text())
        gate = node_gate(rec, plan, max_ratio)

        def ratios(rule, rs):
            return {r.name: {s: guarded_ratio(rec, guard, r, s, gate[s], rule, metric) for s in C.SCALES} for r in rs}

        def inner_key(rule):
            rr = ratios(rule, plan.inner)
            worst = max(v for x in rr.values() for v in x.values())
            return (worst > max_ratio, sum(C.geo_mean([rr[r.name][s] for r in plan.inner]) for s in C.SCALES))

        best = min(rules, key=inner_key)
        choices[f] = best if not inner_key(best)[0] else None
        for rule in rules:
            per_rule[rule].update(ratios(rule, plan.test))
            per_rule_sensor[rule][f] = ratios(rule, SENSORS)
        pick = choices[f]
        chosen_oof.update(ratios(pick, plan.test) if pick else {r.name: {s: 1.0 for s in C.SCALES} for r in plan.test})
        chosen_sensor[f] = ratios(pick, SENSORS) if pick else {r.name: {s: 1.0 for s in C.SCALES} for r in SENSORS}
        unguarded.update({r.name: {s: C.row_ratio(rec, r, s, gate[s], metric) for s in C.SCALES} for r in plan.test})
        unguarded_sensor[f] = {r.name: {s: C.row_ratio(rec, r, s, gate[s], metric) for s in C.SCALES} for r in SENSORS}
        for r in list(plan.test) + SENSORS:  # how often the chosen rule picks the better method, per file
            for fl in r.files:
                one = C.Row(fl, (fl,), r.group, r.used, r.kind)
                for s in C.SCALES:
                    if gate[s] == 0 or pick is None:
                        continue
                    truth = C.row_ratio(rec, one, s, gate[s], metric)
                    kept = guard_pick(guard[fl][f"{s}/{pick[0]}"], pick[1], pick[2])
                    k = (r.kind, s)
                    right.setdefault(k, [0, 0, 0])
                    right[k][0] += int(kept == (truth < 1.0))
                    right[k][1] += 1
                    right[k][2] += int(kept)
    done = [r for r in rows if r.name in chosen_oof]
    if not done:
        return {}
    print(f"\n## guard ({recipe}): node output, disparity (Middlebury) / metres (RealSense)\n")
    print("| fold | rule chosen on the inner fold (mode+factor, measure, margin) |\n|---|---|")
    for f, c in choices.items():
        print(f"| {f} | {c if c else 'none qualifies: DADA-free'} |")
    print("\n| out of fold | Middlebury geo-mean x4 / x8 / x16 | worst | RealSense (5 frames x folds) geo-mean | worst |")
    print("|---|---|---|---|---|")

    def line(label, mid, sens):
        g = " / ".join(C._f(C.geo_mean([mid[r.name][s] for r in done])) for s in C.SCALES)
        w = " / ".join(C._f(max(mid[r.name][s] for r in done)) for s in C.SCALES)
        sv = {s: [v[r.name][s] for v in sens.values() for r in SENSORS] for s in C.SCALES}
        gs = " / ".join(C._f(C.geo_mean(sv[s])) for s in C.SCALES)
        ws = " / ".join(C._f(max(sv[s])) for s in C.SCALES)
        print(f"| {label} | {g} | {w} | {gs} | {ws} |")

    line("no guard (fold's gate)", unguarded, unguarded_sensor)
    line("**guard, rule chosen per fold on its inner fold**", chosen_oof, chosen_sensor)
    for rule in rules:
        line(f"fixed rule {rule[0]} {rule[1]} x{rule[2]:g} (not chosen: shown)", per_rule[rule], per_rule_sensor[rule])
    print("\n| chosen rule: right picks (kept DADA iff it was better) | x4 | x8 | x16 |\n|---|---|---|---|")
    for kind in ("middlebury", "sensor"):
        print(f"| {kind} (files) | " + " | ".join(
            f"{right[(kind, s)][0]}/{right[(kind, s)][1]} (kept {right[(kind, s)][2]})" if (kind, s) in right else "-"
            for s in C.SCALES) + " |")
    return {"choices": {f: list(c) if c else None for f, c in choices.items()}, "oof": chosen_oof,
            "sensor": chosen_sensor, "unguarded": unguarded, "right": {f"{k[0]}/{k[1]}": v for k, v in right.items()}}


def final_model(out: Path, recipe: str, steps: int, root: Path, report_only: bool) -> dict:
    """The model a user gets: ``recipe`` trained on ALL 28 Middlebury rows for ``steps`` (no
    checkpoint choice: ``last.pt``; no gate: the folds' gates were 1 in 13 of 15 fold x ratio
    choices), in ``OUT/final/<recipe>``. Its Middlebury figures are the folds' (out of fold: the
    procedure, not this model, is what they measure); here it scores the RealSense frames (never
    used) without and with the node's default guard (:class:`dada_ros.core.guard.GuardConfig`)."""
    from dada_ros.core.guard import GuardConfig

    d = out / "final" / recipe
    rows = C.middlebury_rows(used={})
    files = C.FoldPlan.files(SENSORS)
    if not report_only:
        cmd = [sys.executable, "-m", "dada_ros.cli.train", *COMMON, "--val-every", "1000", *RECIPES[recipe],
               "--data-dir", str(root), "--steps", str(steps), "--out", str(d), "--real-scenes",
               *C.FoldPlan.files(rows), "--real-val-scenes", "tsukuba"]  # in-sample: val only logs
        run_jobs([(cmd, d / "train.log")], 1)
        sj, last = d / "scores.json", d / "last.pt"
        if sj.exists() and sj.stat().st_mtime < last.stat().st_mtime:
            sj.unlink()
        C.score_all(root, files, str(last), sj, grid=(0.0, 1.0), check_modes=(),
                    progress=lambda m: print(m, flush=True), output_range=OutputRangeConfig())
        g = GuardConfig()
        guard_measures(last, {s: 1.0 for s in C.SCALES}, files, d / "guard.json", root, ((g.check_mode, g.factor),))
    if not (d / "guard.json").exists():
        return {}
    g = GuardConfig()
    rec = json.loads((d / "scores.json").read_text())
    guard = json.loads((d / "guard.json").read_text())
    rule = (f"{g.check_mode}{g.factor}", g.measure, g.margin)
    metric = "primary" + C.RANGE
    plain = {r.name: {s: C.row_ratio(rec, r, s, 1.0, metric) for s in C.SCALES} for r in SENSORS}
    guarded = {r.name: {s: guarded_ratio(rec, guard, r, s, 1.0, rule, metric) for s in C.SCALES} for r in SENSORS}
    print(f"\n## the final model ({recipe}, all 28 Middlebury rows, {_meta(d / 'last.pt').get('steps', '?')} steps): "
          "RealSense frames (never used), node output, dada / dada-free\n")
    print("| frame | no guard x4 / x8 / x16 | behind the default guard |\n|---|---|---|")
    for r in SENSORS:
        print(f"| {r.name} | " + " / ".join(C._f(plain[r.name][s]) for s in C.SCALES) + " | "
              + " / ".join(C._f(guarded[r.name][s]) for s in C.SCALES) + " |")
    print("\n| RealSense (5 frames) | geo-mean x4 / x8 / x16 | worst x4 / x8 / x16 |\n|---|---|---|")
    print(*C.summary_lines("final model, no guard", plain, SENSORS), sep="\n")
    print(*C.summary_lines("final model, default guard", guarded, SENSORS), sep="\n")
    return {"no_guard": plain, "guard": guarded}


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
    ap.add_argument("--guard", metavar="RECIPE", help="also the per-frame cross-scale guard of this recipe's fold "
                    "models: measured (resumable, guard.json) and reported out of fold")
    ap.add_argument("--final", metavar="RECIPE", help="also train this recipe on all 28 rows (OUT/final/RECIPE, "
                    "--steps) and score the RealSense frames without and with the default guard")
    ap.add_argument("--rescore-from", metavar="DIR",
                    help="no training: score DIR's fold checkpoints again into OUT (e.g. with --learned-schedule)")
    ap.add_argument("--learned-schedule", choices=LEARNED_SCHEDULES, default="matching",
                    help="the learned solves' schedule when scoring (SolverConfig.learned_schedule)")
    ap.add_argument("--score-one", nargs=2, metavar=("RECIPE", "FOLD"), help=argparse.SUPPRESS)
    ap.add_argument("--guard-one", nargs=2, metavar=("RECIPE", "FOLD"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    from dada_ros.learned.datasets.realdata import default_root

    root = Path(args.real_dir) if args.real_dir else default_root()
    if root is None:
        raise SystemExit("no ../shared/realdata (pass --real-dir)")
    out = Path(args.out).resolve()
    if args.score_one:
        score_one(out, args.score_one[0], int(args.score_one[1]), root, args.learned_schedule)
        return
    if args.rescore_from:
        if Path(args.rescore_from).resolve() == out:
            raise SystemExit("--rescore-from needs another --out (its scores would replace the trained run's)")
        link_checkpoints(Path(args.rescore_from).resolve(), out, args.recipes, args.folds)
    if args.guard_one:
        guard_one(out, args.guard_one[0], int(args.guard_one[1]), root)
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
                if not args.rescore_from:
                    train.append((cmd, d / "train.log"))
                score.append(([sys.executable, str(Path(__file__).resolve()), "--out", str(out), "--real-dir",
                               str(root), "--learned-schedule", args.learned_schedule, "--score-one", rcp, str(f)],
                              d / "score.log"))
        run_jobs(train, args.jobs)
        for _, log in score:  # a new checkpoint invalidates its scores
            sj, best = log.parent / "scores.json", log.parent / "best.pt"
            if sj.exists() and ((best.exists() and sj.stat().st_mtime < best.stat().st_mtime) or not _has_range(sj)):
                sj.unlink()
        run_jobs(score, args.jobs)
    if args.guard and not args.report_only:
        run_jobs([([sys.executable, str(Path(__file__).resolve()), "--out", str(out), "--real-dir", str(root),
                    "--guard-one", args.guard, str(f)], out / args.guard / f"fold{f}" / "guard.log")
                  for f in args.folds], args.jobs)
    rep = report(out, args.recipes, args.folds, args.max_ratio)
    if args.guard:
        rep["guard"] = guard_report(out, args.guard, args.folds, args.max_ratio)
    if args.final:
        rep["final"] = final_model(out, args.final, args.steps, root, args.report_only)
    if args.json:
        Path(args.json).write_text(json.dumps(rep, indent=1, default=str))


if __name__ == "__main__":
    main()
