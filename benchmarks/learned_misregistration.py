"""Learned models when the depth is not exactly registered to the RGB (issue #28, session 8).

A real sensor's depth reaches its colour camera's grid through a calibration that is good to a
pixel or a few; the generated and Middlebury training data are registered exactly. This
benchmark shifts the depth (truth and source alike) by ``--shifts`` pixels to the right of the
RGB and scores each model against DADA-free on the same frames (node output: the default
output-range clamp after the solve), per ratio: MSE / DADA-free's, geo-mean and worst per group.

Groups: ``synthetic`` = held-out generated scenes (seeds 0..N-1, 256x264; training uses seeds
>= 10,000,000); ``realsense`` = the five RealSense-class frames (metric, their own valid depth as
truth; ``../shared/realdata``); ``icl`` = six ICL-NUIM rendered frames (three of each sequence);
``tum`` = frames 0, 8, 16 of the real tum2klg sequence, scored against their own stereo depth where
valid (agreement with a poor sensor, not accuracy); ``nyu`` (session 12) = the raw NYU Depth v2
Kinect frame registered to its RGB camera with the NYU toolbox's calibration
(:mod:`dada_ros.learned.datasets.nyu_raw`), scored against its own registered depth where valid.
None of them trained or chose anything of the shipped models.

    python benchmarks/learned_misregistration.py --model v6_mixed=dada_ros/data/dada_lite_v6_mixed.pt \\
        --model v7=dada_ros/data/dada_lite_v7.pt                    # ~15 min on one core
    python benchmarks/learned_misregistration.py --groups icl --shifts 0 --model v7=dada_ros/data/dada_lite_v7.pt
    python benchmarks/learned_misregistration.py --groups tum --shifts 0 --guard --model v7=dada_ros/data/dada_lite_v7.pt

``--guard``: also each model behind the node's default guard (:class:`GuardedSolver`, checked on
every frame) on the unshifted frames: the guarded ratio and how often the guard kept the model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import dada_ros  # noqa: F401  (before torch: the CPU threads' spin setting)
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dada_ros.core.device import set_cpu_threads  # noqa: E402
from dada_ros.core.guard import GuardConfig, GuardedSolver  # noqa: E402
from dada_ros.core.output_range import OutputRangeConfig, apply_output_range  # noqa: E402
from dada_ros.core.solver import LEARNED_SCHEDULES, DadaSolver, FreeGuide, SolverConfig  # noqa: E402
from dada_ros.learned import crossval as C  # noqa: E402
from dada_ros.learned.datasets.base import make_example  # noqa: E402
from holes import load_cases  # noqa: E402  (the tum2klg frames, read as the hole benchmark reads them)
from learned_guard import frames as guard_frames, mse  # noqa: E402  (the RealSense frames; MSE in cm^2)

ICL_FILES = ([f"open3d_testdata_synthetic_iclnuim/livingroom_seq_{i:05d}.npz" for i in (0, 2, 4)]
             + [f"slambook2_synthetic_iclnuim/dense_rgbd_seq_{i}.npz" for i in (1, 3, 5)])
MARGIN = 4  # columns dropped at each side after the shift (the wrapped band)


def frames(groups: list[str], seeds: int):
    """(group, name, rgb, depth in metres, NaN = no truth): the RealSense frames as
    ``learned_guard.py`` reads them, the tum2klg and registered NYU frames as ``holes.py`` does."""
    if "synthetic" in groups:
        from dada_ros.learned.evaluate import generated_scenes

        for i, sc in enumerate(generated_scenes(range(seeds), (256, 256 + 2 * MARGIN))):
            yield "synthetic", f"seed{i}", sc.rgb, sc.depth
    if "realsense" in groups:
        for g, name, rgb, depth, _ in guard_frames(["realsense"], 0, None):
            yield g, name, rgb, depth
    if "icl" in groups:
        from dada_ros.learned.datasets.realdata import default_root, read_npz

        root = default_root()
        for f in ICL_FILES if root is not None else ():
            sc, _ = read_npz(root / f)
            yield "icl", f.split("/")[-1][:-4], sc.rgb, sc.depth
    if "tum" in groups:
        for case in load_cases(("tum",)):
            yield "tum", case.name, case.rgb, case.truth
    if "nyu" in groups:
        for case in load_cases(("nyu_reg",)):  # registered to its RGB, as holes.py reads it
            yield "nyu", case.name, case.rgb, case.truth


def shifted(rgb: np.ndarray, depth: np.ndarray, dx: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The depth moved ``dx`` pixels to the right of the RGB, both cropped to a multiple of ``scale``
    without the wrapped band."""
    d = np.roll(depth, dx, axis=1)[:, MARGIN:-MARGIN]
    r = rgb[:, MARGIN:-MARGIN]
    H, W = d.shape
    return np.ascontiguousarray(r[: H - H % scale, : W - W % scale]), np.ascontiguousarray(d[: H - H % scale, : W - W % scale])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True, metavar="LABEL=CKPT")
    ap.add_argument("--groups", default="synthetic,realsense,icl,tum,nyu")
    ap.add_argument("--shifts", default="-3,0,3", help="depth shifts in pixels (to the right of the RGB)")
    ap.add_argument("--scales", default="4,8,16")
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--guard", action="store_true", help="also behind the node's default guard (unshifted frames)")
    ap.add_argument("--learned-schedule", choices=LEARNED_SCHEDULES, default="matching",
                    help="the learned solves' schedule (SolverConfig.learned_schedule); DADA-free is unchanged")
    ap.add_argument("--learned-applications", type=int, default=SolverConfig.learned_applications,
                    help="the matching schedule's applications (SolverConfig.learned_applications)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    set_cpu_threads(args.threads)
    from dada_ros.core.methods import load_learned_guide

    cfg = SolverConfig(device="cpu", learned_schedule=args.learned_schedule,
                       learned_applications=args.learned_applications)
    free = DadaSolver(cfg, FreeGuide())
    models = {k: DadaSolver(cfg, load_learned_guide(v, "cpu")) for k, v in (m.split("=", 1) for m in args.model)}
    guards = {k: GuardedSolver(sv, free, GuardConfig(every=1)) for k, sv in models.items()}
    shifts = [int(v) for v in args.shifts.split(",")]
    scales = [int(v) for v in args.scales.split(",")]
    rng = OutputRangeConfig()
    res: dict = {}
    for g, name, rgb, depth in frames(args.groups.split(","), args.seeds):
        for s in scales:
            for dx in shifts:
                r, d = shifted(rgb, depth, dx, s)
                src = np.nan_to_num(make_example(r, d, s).source, nan=0.0)
                ref = mse(apply_output_range(free.solve(r, src).depth, src, rng)[0], d, None)
                for k, sv in models.items():
                    v = mse(apply_output_range(sv.solve(r, src).depth, src, rng)[0], d, None) / ref
                    res.setdefault(g, {}).setdefault(name, {})[f"{k}/{s}/{dx}"] = v
                    if args.guard and dx == 0:
                        keep = guards[k].check(r, src) is sv
                        res[g][name][f"{k}+guard/{s}/{dx}"] = v if keep else 1.0
                        res[g][name][f"{k}+kept/{s}/{dx}"] = float(keep)
        print(f"  {g} {name}: " + " ".join(f"{k} {v:.3f}" for k, v in res[g][name].items()), file=sys.stderr,
              flush=True)
    print("MSE / DADA-free's (node output), geo-mean (worst) over the group's frames; depth shifted dx px "
          "to the right of the RGB\n")
    print("| group | frames | model | dx | " + " | ".join(f"x{s}" for s in scales) + " |")
    print("|---|---|---|---|" + "---|" * len(scales))
    labels = [k for m in models for k in ((m, m + "+guard") if args.guard else (m,))]
    for g, per in res.items():
        for k in labels:
            for dx in shifts:
                if f"{k}/{scales[0]}/{dx}" not in next(iter(per.values())):
                    continue
                cells = []
                for s in scales:
                    v = [x[f"{k}/{s}/{dx}"] for x in per.values()]
                    kept = (f", kept {sum(x[f'{k[:-6]}+kept/{s}/{dx}'] for x in per.values()):.0f}"
                            if k.endswith("+guard") else "")
                    cells.append(f"{C.geo_mean(v):.3f} ({max(v):.3f}{kept})")
                print(f"| {g} | {len(per)} | {k} | {dx:+d} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
