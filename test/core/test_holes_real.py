"""The layered hole fill (issue #27): never worse than neighbour averaging on REAL sensor holes.

Real frames come from ../shared/realdata (skipped when absent); see benchmarks/holes.py for the
frames, the hole masks and the full table.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from dada_ros.core.resample import (Partition, fill_holes, fill_invalid_average, layered_y0,
                                    occlusion_holes)
from dada_ros.core.solver import DadaSolver, SolverConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import holes as bench  # noqa: E402

try:
    from dada_ros.learned.datasets.realdata import default_root
    HAVE_REAL = default_root() is not None
except ImportError:  # pragma: no cover
    HAVE_REAL = False

real = pytest.mark.skipif(not HAVE_REAL, reason="../shared/realdata is absent")


def _step_scene():
    """Foreground (1 m, red) right of a background (3 m, grey) with a shadow hole left of the edge."""
    h, w, s = 8, 12, 4
    src = np.full((h, w), 3.0, np.float32)
    src[:, 7:] = 1.0
    valid = np.ones((h, w), bool)
    valid[2:6, 5:7] = False  # the shadow: background seen by the camera, not by the projector
    rgb = np.full((h * s, w * s, 3), 0.5, np.float32)
    rgb[:, 7 * s:] = (1.0, 0.0, 0.0)
    return np.where(valid, src, 0.0), valid, rgb, Partition((h * s, w * s), (h, w))


def test_occlusion_hole_is_filled_from_the_far_side():
    src, valid, rgb, part = _step_scene()
    todo, near, far = occlusion_holes(src, valid)
    assert todo[2:6, 5:7].all() and near[:, 7].any() and far[:, 4].any()
    y0 = layered_y0(src, valid, part, rgb)
    hole_px = part.expand(~valid)
    assert np.allclose(y0[hole_px], 3.0)  # grey pixels: the background's depth
    avg = fill_invalid_average(src, valid)
    assert avg[3, 6] < 2.9  # the reference blends the foreground into the shadow


def test_one_layer_and_border_holes_keep_the_averaging_fill():
    src = np.linspace(1.0, 1.02, 96, dtype=np.float32).reshape(8, 12)
    valid = np.ones_like(src, bool)
    valid[3:5, 4:6] = False  # dropout inside one surface
    valid[0:3, 0:2] = False  # and a hole touching the border
    src[~valid] = 0
    part = Partition((32, 48), (8, 12))
    rgb = np.random.default_rng(0).random((32, 48, 3)).astype(np.float32)
    assert not occlusion_holes(src, valid)[0].any()
    avg = fill_holes(src, valid, "average")[0]
    assert np.array_equal(fill_holes(src, valid, "layered")[0], avg)
    from dada_ros.core.resample import initial_upsample

    assert np.array_equal(layered_y0(src, valid, part, rgb), initial_upsample(avg, (32, 48)))


def test_layered_solve_keeps_consistency_on_valid_cells():
    src, valid, rgb, part = _step_scene()
    y = DadaSolver(SolverConfig(hole_fill="layered", device="cpu")).solve(rgb, src).depth
    down = part.cell_means(np.nan_to_num(y))
    assert np.max(np.abs(down[valid] / src[valid] - 1)) < 1e-5


def _frames():
    cases = bench.load_cases(("realsense",))
    cases += bench.load_cases(("nyu",))
    cases += bench.load_cases(("tum",), tum_frames=(0,))
    cases += [c for c in bench.load_cases(("middlebury",)) if c.name in ("art", "bowling2", "wood2", "baby3")]
    return cases


@real
@pytest.mark.parametrize("scale", [8, 16])
def test_real_sensor_holes_never_worse_than_averaging(scale):
    """Whole-frame MSE <= 1.01 x the neighbour-averaging reference's (the same solver with
    hole_fill="average") on every real frame, for the default fill and for "layered" on the
    sensor frames (RealSense, NYU raw, tum2klg stereo) and Middlebury scenes with their real
    occlusion holes; "guided" (the former default) fails this on RealSense (border bands)."""
    worse = []
    for case in _frames():
        src = case.source(scale)
        if (src > 0).all():
            continue
        ref = bench.score(case, scale, bench.solve(case, src, "average"), src)
        for fill in sorted({SolverConfig().hole_fill, "layered"}):
            new = bench.score(case, scale, bench.solve(case, src, fill), src)
            if new.frame > 1.01 * ref.frame:
                worse.append(f"{fill} {case.name} x{scale}: {new.frame:.3f} vs {ref.frame:.3f}")
    assert not worse, worse


@real
def test_real_sensor_frames_within_one_percent_of_the_authors_reference():
    """Whole-frame MSE of the default solve <= 1.01 x that of the authors' reference (averaging
    fill + 8000 plain steps) on the real sensor frames at x8, where the dense table's schedule was
    1.155x on a RealSense frame (its hole interiors left short of the reference's state); also the
    NYU Kinect frame registered to its RGB (its infrared shadows as holes; session 12: 0.995x)."""
    worse = []
    cases = bench.load_cases(("realsense",)) + bench.load_cases(("tum",), tum_frames=(0,))
    for case in cases + bench.load_cases(("nyu_reg",)):
        src = case.source(8)
        if (src > 0).all():
            continue
        ref = bench.score(case, 8, bench.solve(case, src, "average", plain=8000), src)
        new = bench.score(case, 8, bench.solve(case, src, SolverConfig().hole_fill), src)
        if new.frame > 1.01 * ref.frame:
            worse.append(f"{case.name}: {new.frame:.3f} vs {ref.frame:.3f}")
    assert not worse, worse
