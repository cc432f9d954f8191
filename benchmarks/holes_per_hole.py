"""Per-hole choice between the colour-guided and the averaging hole fill (issue #27): measured, not shipped.

The colour-guided fill (``hole_fill="guided"``) is far better than neighbour averaging inside the
Middlebury occlusion holes (pooled 0.56 / 0.68 / 0.93x at x4 / x8 / x16) and far worse on the
RealSense frames (up to 7.2x over a whole frame: the band the aligned depth never covers is filled
from the far wall). This benchmark tries rules that pick one of the two PER HOLE (8-connected
invalid source cells), everything else being the default (averaging) Y0:

* ``interior``: guided for holes that do not touch the image border, averaging for those that do;
* ``ring<w>m<m>[i]``: a self-test without ground truth: the valid cells within ``w`` cells of a hole
  are hidden, both fills predict them from what is left, and the hole takes the guided fill when its
  squared log error on its ring is below ``m`` x the averaging fill's (``i``: interior holes only).

Frames, source and scoring are those of ``benchmarks/holes.py`` (real sensor holes of RealSense,
NYU raw, tum2klg; Middlebury occlusion holes; simulated ToF). Printed per group and scale: pooled
inside-hole MSE and worst whole-frame MSE, each as a ratio to the averaging fill (the default).

    python benchmarks/holes_per_hole.py                                  # all groups, ~10 min on 2 cores
    python benchmarks/holes_per_hole.py --groups realsense,tum --rules interior,ring1m1
"""

from __future__ import annotations

import argparse
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dada_ros  # noqa: E402,F401  (before torch: the CPU threads' spin setting)
import holes as H  # noqa: E402
from dada_ros.core import resample, solver as solver_module  # noqa: E402
from dada_ros.core.solver import DadaSolver, SolverConfig  # noqa: E402

RULES = ("interior", "ring1m1", "ring1m0.5", "ring1m0.25", "ring1m0.5i", "ring2m0.5")


def per_hole_fill(source: np.ndarray, valid: np.ndarray, cell_rgb: np.ndarray, rule: str) -> np.ndarray:
    """The averaging fill, with the guided fill in the holes ``rule`` picks (module docstring)."""
    avg = resample.fill_invalid_average(source, valid)
    guided = resample.fill_invalid_guided(source, valid, cell_rgb)
    n, labels = cv2.connectedComponents((~valid).astype(np.uint8), connectivity=8)
    border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])).tolist())
    out = avg.copy()
    if rule == "interior":
        for lab in range(1, n):
            if lab not in border:
                out[labels == lab] = guided[labels == lab]
        return out
    interior_only = rule.endswith("i")
    width, margin = rule[4:].rstrip("i").split("m")
    k = np.ones((2 * int(width) + 1,) * 2, np.uint8)
    ring = cv2.dilate((~valid).astype(np.uint8), k).astype(bool) & valid
    kept = valid & ~ring
    if not kept.any():
        return avg
    err = {name: np.log(f(source, kept) / np.maximum(source, 1e-6)) ** 2 for name, f in (
        ("avg", resample.fill_invalid_average),
        ("guided", lambda s, v: resample.fill_invalid_guided(s, v, cell_rgb)))}
    near_label = cv2.dilate(labels.astype(np.float32), k).astype(np.int32)  # the hole a ring cell borders
    for lab in range(1, n):
        r = ring & (near_label == lab)
        if not r.any() or (interior_only and lab in border):
            continue
        if err["guided"][r].sum() < float(margin) * err["avg"][r].sum():
            out[labels == lab] = guided[labels == lab]
    return out


def solve_with_rule(case: H.Case, src: np.ndarray, rule: str) -> np.ndarray:
    """The default solver with ``rule``'s fill as the hole-free source of Y0."""
    original = solver_module.fill_holes

    def fill(source, valid, mode="guided", cell_rgb=None):
        filled, dist = original(source, valid, "nearest")
        return (filled if valid.all() else per_hole_fill(source, valid, cell_rgb, rule)), dist

    solver_module.fill_holes = fill
    try:  # "guided" makes the solver pass the cell-mean colours to the fill
        return DadaSolver(SolverConfig(hole_fill="guided", device="cpu")).solve(case.rgb, src).depth
    finally:
        solver_module.fill_holes = original


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", default=",".join(H.GROUPS))
    ap.add_argument("--scales", default="4,8,16")
    ap.add_argument("--rules", default=",".join(RULES))
    args = ap.parse_args(argv)
    rules, scales = args.rules.split(","), [int(s) for s in args.scales.split(",")]
    res = {}
    for case in H.load_cases(tuple(args.groups.split(","))):
        for s in scales:
            src = case.source(s)
            if (src > 0).all() or not (src > 0).any():
                continue
            r = {f: H.score(case, s, H.solve(case, src, f), src) for f in ("average", "guided")}
            for rule in rules:
                r[rule] = H.score(case, s, solve_with_rule(case, src, rule), src)
            res[(case.group, case.name, s)] = r
            print(f"  {case.group} {case.name} x{s}: " + " ".join(
                f"{m} {r[m].frame / r['average'].frame:.4f}" for m in r if m != "average"), file=sys.stderr, flush=True)
    methods = ["guided"] + rules
    print("Pooled inside-hole MSE / worst whole-frame MSE, ratios to the averaging fill (the default)")
    print("| group | scale | frames | " + " | ".join(methods) + " |")
    print("|---|---|---|" + "---|" * len(methods))
    for g in H.GROUPS:
        for s in scales:
            keys = [k for k in res if k[0] == g and k[2] == s]
            if keys:
                cells = [H.ratios(res, keys, m, "average") for m in methods]
                print(f"| {g} | x{s} | {len(keys)} | " + " | ".join(f"{p:.3f} / {w:.4f}" for w, p, _ in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
