"""The learned model (``method: dada``) against the others, its inference cost and training memory.

Sections (all by default; pick with --only):

* ``table``: paper-style table, MSE cm^2 / MAE cm, x4..x32, bicubic / JBF / DADA-free / DADA on
  held-out generated scenes (seeds 0..N-1, or F..F+N-1 with --first-seed F; training uses seeds
  >= 10,000,000), block-average sources (the paper's protocol), default solver policy (tolerance
  stop, cap 8000);
* ``tof``: the same scenes with ToF-like sources (noise, dropouts, flying pixels);
* ``sequence``: frames of the synthetic ToF sequence (:mod:`dada_ros.core.sequences`, the
  generator of the sample bag): 640x480 RGB, 160x120 ToF (x4) and 224x172 (non-integer ratio);
* ``speed``: F at 640x480 on the CPU (median ms, 1 and 2 threads) and the solver's iterations and
  seconds for DADA-free and DADA on one sequence frame;
* ``real``: the per-scene table on real RGB-D frames (``../shared/realdata``; the seven dense
  Middlebury scenes by default, disparity -> depth-like z as :mod:`dada_ros.learned.datasets.realdata`
  states; the split of each scene -- train / val of the fixed split -- is in the table), x4 / x8 /
  x16, whole frames, block-average sources: bicubic / JBF / DADA-free / DADA (``--weights``, default
  the shipped model) and any ``--model LABEL=CKPT`` (e.g. ``adapted=runs/a/best.pt``);
* ``adapt``: adaptation to a camera, measured honestly: the sample bag (``dada-replay
  --make-sample``: 640x480 RGB, 160x120 ToF, ground truth) is cut in two halves by time;
  ``dada-train --bag FIRST --self-supervised --init-from SHIPPED`` adapts on the first half (its
  ground truth unused), ``dada-replay`` scores the second half (the node's path: warm start from
  the flow-warped previous output) with DADA-free, the shipped model and the adapted one;
* ``cv`` (not in the default set): grouped 5-fold cross-validation of the gate by scene family on
  the 28 Middlebury rows of ``../shared/realdata`` (21 third-size 2005/2006 scenes, both views
  pooled, and the 7 2001-2005 scenes), the shipped model per scene marked in- / out-of-sample,
  the metric RealSense frames and the ground-truth-free cross-scale check
  (:mod:`dada_ros.learned.crossval`; ``--cv-cache FILE`` keeps the solves, a rerun only prints);
* ``memory``: peak training memory of one training step vs N_grad, with and without activation
  checkpointing (RSS growth sampled in a fresh subprocess per setting, and the bytes autograd saves).

    python benchmarks/learned.py                       # everything (~15-25 min on 2 busy cores)
    python benchmarks/learned.py --only table --seeds 8
    python benchmarks/learned.py --only table --first-seed 16 --seeds 48   # more held-out scenes
    python benchmarks/learned.py --weights runs/x/best.pt --json out.json
    python benchmarks/learned.py --only real --model v5=dada_ros/data/dada_lite_v5.pt   # real data
    python benchmarks/learned.py --only cv --cv-cache cv.json       # grouped CV, sensor frames (~4 min)
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import dada_ros  # noqa: F401  (before torch, so that the loop's GOMP_SPINCOUNT takes effect)
import numpy as np
import torch

SCALES = (4, 8, 16, 32)
METHODS = ("bicubic", "jbf", "dada-free", "dada")


def section_table(args, tof: bool) -> dict:
    from dada_ros.learned.evaluate import evaluate, format_table, generated_scenes, tof_source_fn

    scales = SCALES if not tof else (4, 8, 16)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    rep = evaluate(generated_scenes(seeds, (256, 256)), scales, METHODS, None, weights=args.weights,
                   source_fn=tof_source_fn() if tof else None, models=dict(m.split("=", 1) for m in args.model),
                   jobs=args.jobs)
    kind = "ToF-like sources" if tof else "block-average sources"
    title = f"\n### Held-out generated scenes (seeds {seeds.start}..{seeds.stop - 1}, 256x256), {kind}"
    print(format_table(rep, title), flush=True)
    return rep


def section_real(args) -> dict:
    from dada_ros.learned.datasets.realdata import SPLITS, RealDataScenes
    from dada_ros.learned.evaluate import evaluate, format_scene_table

    data = RealDataScenes(args.real_dir, args.real_split)
    where = {n: sp for sp in ("train", "val") for n in SPLITS[sp]}
    for sc in data.scenes:
        sc.name = f"{sc.name} ({where.get(sc.name, 'held out')})"
    models = dict(m.split("=", 1) for m in args.model)
    rep = evaluate(data, (4, 8, 16), METHODS, None, weights=args.weights, models=models, jobs=args.jobs)
    title = (f"\n### Real RGB-D frames: {data.describe()}; whole frames, block-average sources, "
             f"MSE cm^2 of z over valid ground truth; dada = {args.weights or 'shipped'}"
             + "".join(f"; {k} = {v}" for k, v in models.items()))
    print(format_scene_table(rep, title), flush=True)
    return rep


def section_cv(args) -> dict:
    """Grouped k-fold cross-validation of the gate over scene families, the shipped model per scene
    (in- / out-of-sample), real sensor frames and the cross-scale check (:mod:`dada_ros.learned.crossval`)."""
    from pathlib import Path

    from dada_ros.learned import crossval as C
    from dada_ros.learned.datasets.realdata import default_root
    from dada_ros.learned.model import SHIPPED_PATH, load_checkpoint

    root = Path(args.real_dir) if args.real_dir else default_root()
    rows, sensors = C.middlebury_rows(), C.sensor_rows()
    files = [f for r in rows + sensors for f in r.files]
    cache = Path(args.cv_cache) if args.cv_cache else None
    rec = C.score_all(root, files, args.weights, cache, progress=lambda m: print(m, flush=True))
    net, _, _ = load_checkpoint(str(args.weights or SHIPPED_PATH))
    shipped = {s: round(float(net.gate[i]), 3) for i, s in enumerate(C.SCALES)} if net.config.gate else None
    if shipped is None:
        raise SystemExit("--only cv needs a gated checkpoint (dada-eval --select-gate)")
    folds = C.grouped_folds(rows, args.cv_folds)
    oos = [r for r in rows if not r.in_sample]
    out: dict = {"shipped_gate": shipped, "folds": folds, "records": rec}
    print(f"\n### Middlebury, shipped model ({args.weights or 'shipped'}, gate "
          + " / ".join(f"x{s} {a:g}" for s, a in shipped.items()) + "): dada / dada-free per scene")
    print("Disparity scenes: MSE in disparity px^2 (solved on z = 2 m x median(d) / d, prediction turned back "
          "with the same f*B); in brackets the ratio on z. Both views of a third-size scene pooled.\n")
    print(C.shipped_table(rec, rows, shipped, folds))
    ship_r = {r.name: {s: C.row_ratio(rec, r, s, shipped[s]) for s in C.SCALES} for r in rows}
    ship_z = {r.name: {s: C.row_ratio(rec, r, s, shipped[s], "depth") for s in C.SCALES} for r in rows}
    print("\n| shipped gate: dada / dada-free | geo-mean x4 / x8 / x16 | worst x4 / x8 / x16 |\n|---|---|---|")
    for lab, rr in (("out-of-sample, disparity", ship_r), ("out-of-sample, z", ship_z)):
        print(*C.summary_lines(lab, rr, oos), sep="\n")
    print(*C.summary_lines("all 28 incl. in-sample, disparity", ship_r, rows), sep="\n")
    out["shipped"] = {"disp": ship_r, "z": ship_z}
    cv = {}
    for metric in ("primary", "depth"):
        for mr in (args.cv_max_ratio, float("inf")):
            for on_in in (False, True):
                cv[(metric, mr, on_in)] = C.cross_validate_gate(
                    rec, rows, folds, max_ratio=mr, choose_on_in_sample=on_in, metric=metric)
    main_d, main_z = cv[("primary", args.cv_max_ratio, False)], cv[("depth", args.cv_max_ratio, False)]
    print(f"\n### Gate, grouped {args.cv_folds}-fold cross-validation by scene family (out-of-fold)")
    print(f"Per fold, per ratio: the gate (grid 0, 0.1, ..., 1) with the lowest geo-mean dada / dada-free over the "
          f"training folds' out-of-sample rows among those no worse than {args.cv_max_ratio:g}x on any of them "
          "(0 = DADA-free always qualifies); scored on the held-out fold. Chosen and scored on disparity, and "
          "separately on z.\n")
    print("| fold | rows | gate x4 / x8 / x16, disparity | on z |\n|---|---|---|---|")
    for f in sorted(main_d["gates"]):
        names = ", ".join(n for n, k in folds.items() if k == f)
        print(f"| {f} | {names} | " + " / ".join(f"{a:g}" for a in main_d["gates"][f].values()) + " | "
              + " / ".join(f"{a:g}" for a in main_z["gates"][f].values()) + " |")
    print("\n| scene | used | fold | out-of-fold dada / dada-free x4 / x8 / x16, disparity | on z |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.name} | {r.used or 'out-of-sample'} | {folds[r.name]} | "
              + " / ".join(C._f(main_d["oof"][r.name][s]) for s in C.SCALES) + " | "
              + " / ".join(C._f(main_z["oof"][r.name][s]) for s in C.SCALES) + " |")
    print("\n| out-of-fold gate: dada / dada-free | geo-mean x4 / x8 / x16 | worst x4 / x8 / x16 |\n|---|---|---|")
    for (metric, mr, on_in), res in cv.items():
        limit = "no worst-row limit" if mr == float("inf") else f"limit {mr:g}"
        lab = (f"{'disparity' if metric == 'primary' else 'z'}, {limit}"
               f", chosen on {'all' if on_in else 'out-of-sample'} training-fold rows; out-of-sample rows")
        print(*C.summary_lines(lab, res["oof"], oos), sep="\n")
    print(*C.summary_lines(f"disparity, limit {args.cv_max_ratio:g}: all 28 rows", main_d["oof"], rows), sep="\n")
    out["cv"] = {f"{m}/{mr}/{'all' if on else 'oos'}": v for (m, mr, on), v in cv.items()}
    full = {s: C.choose_alpha(rec, oos, s, max_ratio=args.cv_max_ratio) for s in C.SCALES}
    full_z = {s: C.choose_alpha(rec, oos, s, max_ratio=args.cv_max_ratio, metric="depth") for s in C.SCALES}
    real = [r for r in sensors if r.kind == "sensor"]
    print("\n### Real sensor frames (posecnn_realsense, metric; truth = each frame's own valid depth, source = its "
          "block average; NYU raw: depth NOT registered to its colour, caveated, not in the figures)\n")
    print("| frame | DADA-free MSE cm^2 x4 / x8 / x16 | shipped gate: dada / dada-free | gate chosen on the 18 "
          "out-of-sample Middlebury rows, disparity (" + " / ".join(f"{a:g}" for a in full.values())
          + ") | same on z (" + " / ".join(f"{a:g}" for a in full_z.values()) + ") |\n|---|---|---|---|---|")
    sens: dict = {"shipped": {}, "middlebury_gate": {}, "middlebury_gate_z": {}}
    for r in sensors:
        for key, g in (("shipped", shipped), ("middlebury_gate", full), ("middlebury_gate_z", full_z)):
            sens[key][r.name] = {s: C.row_ratio(rec, r, s, g[s]) for s in C.SCALES}
        print(f"| {r.name}{' (caveated)' if r.kind == 'caveated' else ''} | "
              + " / ".join(f"{C.row_mse(rec, r, s, 'free'):.3g}" for s in C.SCALES) + " | "
              + " | ".join(" / ".join(C._f(sens[k][r.name][s]) for s in C.SCALES)
                           for k in ("shipped", "middlebury_gate", "middlebury_gate_z")) + " |")
    print("\n| sensor frames: dada / dada-free | geo-mean x4 / x8 / x16 | worst x4 / x8 / x16 |\n|---|---|---|")
    print(*C.summary_lines("shipped gate", sens["shipped"], real), sep="\n")
    print(*C.summary_lines("gate chosen on Middlebury, disparity", sens["middlebury_gate"], real), sep="\n")
    print(*C.summary_lines("gate chosen on Middlebury, z", sens["middlebury_gate_z"], real), sep="\n")
    out["sensor"] = sens | {"middlebury_gate_values": full, "middlebury_gate_values_z": full_z}
    print("\n### Cross-scale check (ground-truth free, per frame): pick DADA (shipped gate) or DADA-free by "
          "which predicts the frame's own source (z or metres) better from a x2 coarser copy; 'right' and the "
          "ratios by the frame's own truth at the real ratio, in the metric named\n")
    print("| frames | metric | mode | ratio | picked dada | right pick | geo-mean picked / free | geo-mean dada / free "
          "| worst picked | picked dada and >1.02 |\n|---|---|---|---|---|---|---|---|---|---|")
    out["check"] = {}
    for lab, rs, metrics in (("Middlebury, out-of-sample", oos, ("primary", "depth")),
                             ("Middlebury, all", rows, ("primary", "depth")), ("sensor", real, ("depth",))):
        for metric in metrics:
            for mode in C.CHECK_MODES:
                sc = C.self_check(rec, rs, mode, shipped, metric=metric)
                mname = "m" if lab == "sensor" else ("disparity" if metric == "primary" else "z")
                out["check"][f"{lab}/{mname}/{mode}"] = sc
                for s, v in sc["summary"].items():
                    print(f"| {lab} ({v['n']} frames) | {mname} | {mode} | x{s} | {v['picked_dada']} | {v['right']} / "
                          f"{v['n']} | {C._f(v['geo_picked'])} | {C._f(v['geo_dada'])} | {C._f(v['worst_picked'])} | "
                          f"{v['costly_wrong']} |", flush=True)
    return out


def split_bag(src, first, second, fraction: float = 0.5) -> int:
    """Copy ``src`` into two bags cut at the RGB message that starts frame ``fraction x n``
    (every message from its bag time on goes to ``second``); returns that frame index."""
    from dada_ros.replay.bag import BagReader, BagWriter
    from dada_ros.replay.topics import TopicMap

    rgb_topic = TopicMap().rgb
    with BagReader(src) as r:
        msgs = list(r.messages())
    times = sorted(m.log_time_ns for m in msgs if m.topic == rgb_topic)
    k = int(round(fraction * len(times)))
    cut = times[k]
    with BagWriter(first) as a, BagWriter(second) as b:
        for m in msgs:
            (a if m.log_time_ns < cut else b).write_raw(m.topic, m.msgtype, m.data, m.log_time_ns)
    return k


def _run(cmd: list[str], log) -> None:
    print("$ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if r.returncode:
        raise SystemExit(f"command failed ({r.returncode}): {' '.join(cmd)}; see {log.name}")


def section_adapt(args) -> dict:
    import tempfile
    from pathlib import Path

    from dada_ros.learned.model import SHIPPED_PATH

    work = Path(args.adapt_dir or tempfile.mkdtemp(prefix="dada_adapt_"))
    work.mkdir(parents=True, exist_ok=True)
    log = open(work / "commands.log", "a")
    py = [sys.executable, "-m"]
    bag = work / "sample"
    if not bag.exists():
        _run(py + ["dada_ros.cli.replay", "--make-sample", str(bag), "--frames", str(args.adapt_frames)], log)
    first, second = work / "first_half", work / "second_half"
    if not first.exists():
        k = split_bag(bag, first, second)
        print(f"split at frame {k} of {args.adapt_frames}", flush=True)
    init = args.weights or str(SHIPPED_PATH)
    run = work / "adapt"
    if not (run / "best.pt").exists():
        _run(py + ["dada_ros.cli.train", "--bag", str(first), "--self-supervised", "--init-from", init,
                   "--scale-film", "--scales", "2", "4", "8", "--scale-weights", "1", "2", "1", "--crop", "64",
                   "--batch", "4", "--steps", str(args.adapt_steps), "--n-pre", "800", "--n-pre-min", "0.25",
                   "--n-grad", "16", "--lr", "1e-4", "--loss", "l2", "--tof-prob", "0", "--val-mode", "scenes",
                   "--val-tile", "0", "--val-every", str(max(1, args.adapt_steps // 4)), "--bag-val-frames", "4",
                   "--threads", str(args.threads), "--out", str(run), "--quiet", "--no-resume"]
             + args.adapt_train_args, log)
    out = {}
    for label, methods, weights in (("shipped", "dada-free,dada", init), ("adapted", "dada", str(run / "best.pt"))):
        dest = work / f"replay_{label}"
        if not (dest / "metrics.json").exists():
            _run(py + ["dada_ros.cli.replay", "--bag", str(second), "--out", str(dest), "--methods", methods,
                       "--weights", weights, "--no-bag", "--no-progress", "--threads", str(args.threads)], log)
        summ = json.load(open(dest / "metrics.json"))["summary"]
        for m in methods.split(","):
            out["dada-free" if m == "dada-free" else f"dada ({label})"] = summ[m]
    ref = out["dada-free"]["mse_cm2"]
    print(f"\n### Adaptation to a camera: sample bag ({args.adapt_frames} frames, 640x480 RGB, 160x120 ToF), "
          f"adapted self-supervised on the first half, scored on the second half (dada-replay, the node's "
          f"flow warm start); work folder {work}")
    print("| method | MSE cm^2 | MAE cm | / DADA-free | frames scored |")
    print("|---|---|---|---|---|")
    for k, v in out.items():
        print(f"| {k} | {v['mse_cm2']:.4g} | {v.get('mae_cm', float('nan')):.3g} | {v['mse_cm2'] / ref:.3f} | "
              f"{v.get('frames_scored', v.get('scored', '-'))} |", flush=True)
    return out


def section_sequence(args) -> dict:
    from dada_ros.core.metrics import depth_errors
    from dada_ros.core.methods import make_solver, run_method
    from dada_ros.core.sequences import SequenceConfig, make_sequence
    from dada_ros.core.solver import SolverConfig

    out = {}
    for label, shape in (("160x120 (x4)", (120, 160)), ("224x172 (x2.8)", (172, 224))):
        frames = [f for f in make_sequence(SequenceConfig(seed=0, source_shape=shape)) if f.index in args.frames]
        solvers = {m: make_solver(m, SolverConfig(), weights=args.weights if m == "dada" else None)
                   for m in ("dada-free", "dada")}
        rows = {m: [] for m in METHODS}
        for f in frames:
            for m in METHODS:
                pred, st = run_method(m, f.rgb, f.source, solver=solvers.get(m))
                e = depth_errors(pred, f.gt)
                rows[m].append((e.mse_cm2, e.mae_cm, e.coverage, st.get("iterations", 0), st["seconds"]))
        out[label] = rows
        print(f"\n### Synthetic ToF sequence (seed 0), frames {list(args.frames)}, 640x480 guide, source {label}")
        print("| method | MSE cm^2 | MAE cm | coverage | iterations | seconds/frame |")
        print("|---|---|---|---|---|---|")
        for m in METHODS:
            a = np.array(rows[m], dtype=float)
            print(f"| {m} | {a[:, 0].mean():.3g} | {a[:, 1].mean():.3g} | {a[:, 2].mean():.3f} | "
                  f"{a[:, 3].mean():.0f} | {a[:, 4].mean():.2f} |", flush=True)
    return out


def section_speed(args) -> dict:
    from dada_ros.learned.model import load_guide_model

    guide = load_guide_model(args.weights, device="cpu")
    rgb, d = torch.rand(1, 3, 480, 640), 1 + 3 * torch.rand(1, 1, 480, 640)
    res = {}
    threads0 = torch.get_num_threads()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for _ in range(3):
            f = guide.features(rgb, d, 8.0)
        ts, tc = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            f = guide.features(rgb, d, 8.0)
            t1 = time.perf_counter()
            guide.coefficients(f)
            tc.append(time.perf_counter() - t1)
            ts.append(t1 - t0)
        res[threads] = {"features_ms": 1000 * statistics.median(ts), "coefficients_ms": 1000 * statistics.median(tc),
                        "features_ms_min": 1000 * min(ts)}
    torch.set_num_threads(threads0)
    n_params = sum(p.numel() for p in guide.net.parameters())
    print(f"\n### F at 640x480 on CPU ({guide.config.architecture}, C={guide.config.channels}, {n_params} parameters)")
    print("| threads | F median ms (min) | coefficients median ms |")
    print("|---|---|---|")
    for t, r in res.items():
        print(f"| {t} | {r['features_ms']:.1f} ({r['features_ms_min']:.1f}) | {r['coefficients_ms']:.1f} |", flush=True)
    return {"threads": res, "parameters": n_params, "load": list(np.round(np_load(), 2))}


def np_load():
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return []


MEMORY_CHILD = r"""
import json, os, sys, threading, time, torch
torch.set_num_threads(1)
from dada_ros.core.scenes import make_sample
from dada_ros.learned.datasets.base import collate, make_example
from dada_ros.learned.model import GuideNet
from dada_ros.learned.unroll import masked_l1, unrolled_solve
n_grad, segment, batch, crop = (int(v) for v in sys.argv[1:5])
s = make_sample(7, 8, (crop, crop))
b = collate([make_example(s.rgb, s.gt, 8)] * batch)
net = GuideNet().train()
PAGE = os.sysconf("SC_PAGE_SIZE")
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * PAGE
saved = {}
def pack(t):
    st = t.untyped_storage()
    saved[st.data_ptr()] = st.nbytes()
    return t
def step(n, count=False):
    net.zero_grad(set_to_none=True)
    if count:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = masked_l1(unrolled_solve(net, b, 0, n, segment=segment), b.gt, b.gt_valid)
    else:
        loss = masked_l1(unrolled_solve(net, b, 0, n, segment=segment), b.gt, b.gt_valid)
    loss.backward()
step(2); step(2)
base = rss()
peak = [base]
stop = [False]
def poll():
    while not stop[0]:
        peak[0] = max(peak[0], rss())
        time.sleep(0.0002)
th = threading.Thread(target=poll, daemon=True); th.start()
t = time.perf_counter(); step(n_grad); dt = time.perf_counter() - t
stop[0] = True; th.join()
step(n_grad, count=True)
print(json.dumps({"peak_growth_mb": (peak[0] - base) / 2**20, "saved_mb": sum(saved.values()) / 2**20, "seconds": dt}))
"""


def section_memory(args) -> dict:
    """Peak RSS growth during one training step (sampled every 0.2 ms; big allocations are
    mmapped so freed memory leaves RSS) and the tensors autograd saves in the forward pass."""
    import os

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="65536")
    out = {}
    for batch, crop, ngrads in ((args.mem_batch, args.mem_crop, args.mem_ngrad), (8, 256, (32, 256, 1024))):
        print(f"\n### Training memory of one step vs N_grad (batch {batch} x {crop}^2, lite-unet, CPU, float32)")
        print("| N_grad | plain: peak MB (saved MB) / s | checkpoint every 32 steps: peak MB (saved MB) / s |")
        print("|---|---|---|")
        for n in ngrads:
            row = {}
            for seg in (0, 32):
                if seg == 0 and batch * crop * crop * n > args.mem_max_plain * 6 * 96 * 96:
                    row[seg] = None
                    continue
                r = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(n), str(seg), str(batch), str(crop)],
                                   capture_output=True, text=True, timeout=1800, env=env)
                row[seg] = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {"error": r.stderr[-300:]}
            out[f"{batch}x{crop}/{n}"] = row

            def fmt(v):
                if v is None:
                    return "(skipped)"
                if "error" in v:
                    return "error"
                return f"{v['peak_growth_mb']:.0f} ({v['saved_mb']:.0f}) / {v['seconds']:.1f} s"

            print(f"| {n} | {fmt(row[0])} | {fmt(row[32])} |", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=("table", "tof", "sequence", "speed", "memory", "real", "adapt", "cv"))
    ap.add_argument("--weights", help="checkpoint (default: the shipped one)")
    ap.add_argument("--seeds", type=int, default=16, help="number of held-out generated scenes")
    ap.add_argument("--first-seed", type=int, default=0,
                    help="first held-out seed (seeds FIRST..FIRST+N-1; training uses seeds >= 10,000,000)")
    ap.add_argument("--frames", type=int, nargs="+", default=[0, 30, 60])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--mem-ngrad", type=int, nargs="+", default=[8, 32, 128, 512, 1024])
    ap.add_argument("--mem-max-plain", type=int, default=1024,
                    help="largest plain (no checkpointing) N_grad, in units of a 6 x 96^2 batch")
    ap.add_argument("--mem-batch", type=int, default=6)
    ap.add_argument("--mem-crop", type=int, default=96)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1,
                    help="table / tof / real: score the tiles in N worker processes (the same table as serial)")
    ap.add_argument("--real-dir", help="realdata folder (default ../shared/realdata or $DADA_REALDATA)")
    ap.add_argument("--real-split", default="all", help="realdata split: all | train | val | test")
    ap.add_argument("--model", action="append", default=[], metavar="LABEL=CKPT",
                    help="table / tof / real: one more learned model row (repeatable), e.g. adapted=runs/a/best.pt")
    ap.add_argument("--real", action="store_true", help="add the real-data section (same as --only ... real)")
    ap.add_argument("--adapt-dir", help="adapt: work folder (kept; reruns reuse what is there)")
    ap.add_argument("--adapt-frames", type=int, default=64, help="adapt: frames of the sample bag")
    ap.add_argument("--adapt-steps", type=int, default=150, help="adapt: fine-tuning steps")
    ap.add_argument("--adapt-train-args", nargs=argparse.REMAINDER, default=[],
                    help="adapt: further dada-train arguments (last on the command line)")
    ap.add_argument("--cv-cache", help="cv: JSON cache of the per-file solves (reruns resume from it)")
    ap.add_argument("--cv-folds", type=int, default=5, help="cv: folds of the grouped cross-validation")
    ap.add_argument("--cv-max-ratio", type=float, default=1.02,
                    help="cv: a gate may not be worse than this x DADA-free on any training-fold row")
    ap.add_argument("--json")
    args = ap.parse_args()
    if any("=" not in m for m in args.model):
        ap.error("--model takes LABEL=CHECKPOINT")
    from dada_ros.learned.datasets.procedural import TRAIN_SEED0

    if args.seeds < 1 or args.first_seed < 0 or args.first_seed + args.seeds > TRAIN_SEED0:
        ap.error(f"held-out seeds must lie in 0..{TRAIN_SEED0 - 1} (training uses seeds >= {TRAIN_SEED0})")
    from dada_ros.core.device import set_cpu_threads

    set_cpu_threads(args.threads)
    only = list(args.only or ["table", "tof", "sequence", "speed", "memory", "real"])
    if args.real and "real" not in only:
        only.append("real")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load average {np_load()}")
    report = {}
    t0 = time.perf_counter()
    if "speed" in only:
        report["speed"] = section_speed(args)
    if "table" in only:
        report["table"] = section_table(args, tof=False)
    if "tof" in only:
        report["tof"] = section_table(args, tof=True)
    if "sequence" in only:
        report["sequence"] = section_sequence(args)
    if "memory" in only:
        report["memory"] = section_memory(args)
    if "adapt" in only:
        report["adapt"] = section_adapt(args)
    if "cv" in only:
        from dada_ros.learned.datasets.realdata import default_root

        if args.real_dir is None and default_root() is None:
            print("\n(cv section skipped: no ../shared/realdata; pass --real-dir)")
        else:
            report["cv"] = section_cv(args)
    if "real" in only:
        from dada_ros.learned.datasets.realdata import default_root

        if args.real_dir is None and default_root() is None:
            print("\n(real section skipped: no ../shared/realdata; pass --real-dir)")
        else:
            report["real"] = section_real(args)
    print(f"\n(total {time.perf_counter() - t0:.0f} s, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
