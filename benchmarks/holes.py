"""Hole fill of Y0, measured inside the holes: the colour-guided fill (the default) vs repeated
neighbour averaging (what the authors' reference does) vs the nearest fill.

The solver's Y0 in an invalid source cell comes from :func:`dada_ros.core.resample.fill_holes`;
diffusion then fills the hole along the guide's edges, but within a budget of ~100-200
applications Y0 still shapes the answer there. Per scene and hole pattern this prints the MSE of
the DADA-free default solve over the ground-truth pixels INSIDE invalid source cells, and over the
whole frame, for each fill:

* real scenes (../shared/realdata: the seven dense Middlebury 2001-2005 scenes, depth-like
  z = 2 m x median(d) / d; skipped when absent), masked block-average source with holes punched:
  ``blobs`` (dropout regions: ~8% of cells in smooth random blobs, like dark or specular
  surfaces) and ``edges`` (cells straddling a depth step, dilated by one cell: the shadow a
  Kinect-class sensor leaves beside every foreground edge);
* synthetic scenes (seeds 0-5, 256x256) through the ToF-like sensor model of core/scenes.py
  (random and dark-surface dropout, range limit, noise, flying pixels).

    python benchmarks/holes.py [--scales 4,8] [--quick]
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from dada_ros.core.resample import HOLE_FILLS, Partition
from dada_ros.core.scenes import TofModel, block_average, make_sample
from dada_ros.core.solver import DadaSolver, SolverConfig

REAL = ("tsukuba", "venus", "cones", "teddy", "art", "books", "moebius")


def blob_holes(shape: tuple[int, int], fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A mask of ~``fraction`` of the cells in smooth random blobs."""
    field = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 2.0)
    return field > np.quantile(field, 1 - fraction)


def edge_holes(gt: np.ndarray, shape: tuple[int, int], step: float = 0.1) -> np.ndarray:
    """Cells whose ground truth spans a relative depth step above ``step``, dilated by one cell."""
    hi = cv2.resize(np.nan_to_num(gt, nan=0.0), shape[::-1], interpolation=cv2.INTER_AREA)
    gmax = cv2.dilate(np.nan_to_num(gt, nan=0.0), np.ones((3, 3), np.uint8))
    gmin = cv2.erode(np.where(np.isfinite(gt), gt, 1e9).astype(np.float32), np.ones((3, 3), np.uint8))
    jump = ((gmax - gmin) / np.maximum(gmin, 1e-3) > step).astype(np.float32)
    cells = cv2.resize(jump, shape[::-1], interpolation=cv2.INTER_AREA) > 0
    return cv2.dilate(cells.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & (hi > 0)


def score(rgb, gt, src, hole_cells) -> dict[str, tuple[float, float]]:
    """{fill: (MSE inside the holes, MSE over the frame)} in cm^2 for the default DADA-free solve."""
    part = Partition(gt.shape, src.shape)
    inside = part.expand(hole_cells) & np.isfinite(gt)
    out = {}
    for fill in HOLE_FILLS:
        depth = DadaSolver(SolverConfig(hole_fill=fill, max_fill_distance=np.inf)).solve(rgb, src).depth
        err = ((depth - gt) * 100.0) ** 2
        ok = np.isfinite(gt)
        out[fill] = (float(err[inside].mean()), float(err[ok].mean()))
    return out


def cases(scales: list[int], quick: bool):
    rng = np.random.default_rng(0)
    try:
        from dada_ros.learned.datasets.realdata import RealDataScenes, default_root

        real = RealDataScenes(scenes=list(REAL[:3] if quick else REAL), multiple=32) if default_root() else None
    except ImportError:
        real = None
    if real is None:
        print("(real scenes skipped: ../shared/realdata is absent)")
    for scale in scales:
        for sc in (real.scenes if real else []):
            H, W = sc.depth.shape
            shape = (H // scale, W // scale)
            base = np.nan_to_num(block_average(sc.depth, shape), nan=0.0)
            for pattern, holes in (("blobs", blob_holes(shape, 0.08, rng)), ("edges", edge_holes(sc.depth, shape))):
                holes &= base > 0
                yield scale, "real", f"{sc.name} {pattern}", sc.rgb, sc.depth, np.where(holes, 0.0, base), holes
        for seed in range(2 if quick else 6):
            smp = make_sample(seed=seed, scale=scale, size=(256, 256), tof=TofModel(dropout=0.05))
            src = np.nan_to_num(smp.source, nan=0.0)
            yield scale, "synthetic ToF", f"seed {seed}", smp.rgb, smp.gt, src, src <= 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scales", default="4,8")
    ap.add_argument("--quick", action="store_true", help="3 real scenes, 2 synthetic seeds")
    args = ap.parse_args()
    print("| scale | data | scene / holes | hole cells | MSE in holes: guided / average / nearest (cm^2) | "
          "guided / average | frame MSE: guided / average / nearest |")
    print("|---|---|---|---|---|---|---|")
    pooled: dict[tuple[int, str], list] = {}
    for scale, group, name, rgb, gt, src, holes in cases([int(s) for s in args.scales.split(",")], args.quick):
        if not holes.any():
            continue
        r = score(rgb, gt, src, holes)
        (hg, fg), (ha, fa), (hn, fn) = r["guided"], r["average"], r["nearest"]
        pooled.setdefault((scale, group), []).append((hg, ha, hn))
        print(f"| x{scale} | {group} | {name} | {holes.mean():.1%} | {hg:.1f} / {ha:.1f} / {hn:.1f} | {hg / ha:.3f} | "
              f"{fg:.2f} / {fa:.2f} / {fn:.2f} |", flush=True)
    print("\n| scale | data | cases | mean MSE in holes: guided / average / nearest | guided / average | "
          "guided / nearest | cases where guided is worse than average |")
    print("|---|---|---|---|---|---|---|")
    for (scale, group), rows in sorted(pooled.items()):
        g, a, n = np.array(rows).T
        print(f"| x{scale} | {group} | {len(rows)} | {g.mean():.1f} / {a.mean():.1f} / {n.mean():.1f} | "
              f"{g.mean() / a.mean():.3f} | {g.mean() / n.mean():.3f} | {int((g > a).sum())} |")


if __name__ == "__main__":
    main()
