"""Output pixels beyond the local source range: clamped with down(Y) = S kept exact, marked
invalid, or left; counted either way. The issue-27 rule (5x5 window, holes and their rim bounded
from 8 cells, lower limit lo / 2) never makes MSE worse on small REAL crops (skipped without
../shared/realdata; the full table is benchmarks/output_range.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from dada_ros.core.errors import DadaInputError
from dada_ros.core.output_range import OutputRangeConfig, apply_output_range, local_limits
from dada_ros.core.resample import Partition
from dada_ros.core.scenes import block_average

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import holes as bench  # noqa: E402

CFG01 = OutputRangeConfig("clamp", margin=0.1, radius=1, lower_margin=0.1)


def _limits(src, cfg=CFG01):
    return local_limits(src, cfg.margin, cfg.radius, cfg.lower_margin, cfg.hole_radius, cfg.holes)


def _case(guide=(48, 64), source=(12, 16), seed=0):
    """A consistent output (block means == source) with flying pixels in it."""
    rng = np.random.default_rng(seed)
    src = (1.0 + 3.0 * rng.random(source)).astype(np.float32)
    part = Partition(guide, source)
    y = part.expand(src).astype(np.float32) * (1 + 0.02 * rng.standard_normal(guide)).astype(np.float32)
    y *= part.expand(src / block_average(y, source))  # exact cell means again
    k = rng.choice(y.size, 25, replace=False)
    y.ravel()[k[:15]] *= 4.0  # far beyond the local max
    y.ravel()[k[15:]] *= 0.2  # far below the local min
    y *= part.expand(src / block_average(y, source))  # keep down(Y) = S: the others compensate
    return y.astype(np.float32), src


@pytest.mark.parametrize("guide,source", [((48, 64), (12, 16)), ((50, 70), (9, 11))])  # x4 and non-integer
def test_clamp_keeps_consistency_exact_and_every_pixel_in_range(guide, source) -> None:
    y, src = _case(guide, source)
    lo, hi = _limits(src)
    part = Partition(guide, source)
    L, U = part.expand(lo), part.expand(hi)
    assert ((y < L) | (y > U)).sum() > 0
    out, st = apply_output_range(y, src, CFG01)
    assert st["range_outliers"] == int(((y < L) | (y > U)).sum()) and st["range_worst"] > 1.5
    assert np.all(out >= L * (1 - 1e-5)) and np.all(out <= U * (1 + 1e-5))
    np.testing.assert_allclose(block_average(out, source), src, rtol=2e-5)
    # cells without a flying pixel are untouched
    cell_bad = block_average(((y < L) | (y > U)).astype(np.float32), source) > 0
    same = ~part.expand(cell_bad)
    np.testing.assert_array_equal(out[same], y[same])


def test_invalid_marks_exactly_the_outliers_and_off_changes_nothing() -> None:
    y, src = _case()
    lo, hi = _limits(src)
    part = Partition(y.shape, src.shape)
    bad = (y < part.expand(lo)) | (y > part.expand(hi))
    out, st = apply_output_range(y, src, OutputRangeConfig("invalid", 0.1, 1, 0.1))
    np.testing.assert_array_equal(np.isnan(out), bad)
    off, st_off = apply_output_range(y, src, OutputRangeConfig("off", 0.1, 1, 0.1))
    np.testing.assert_array_equal(off, y)
    assert st_off["range_outliers"] == st["range_outliers"] == int(bad.sum())


def test_limits_come_from_valid_neighbours_only() -> None:
    src = np.array([[1.0, 1.0, 0.0], [1.0, 2.0, np.nan], [0.0, 0.0, 0.0]], np.float32)
    lo, hi = local_limits(src, 0.0, radius=1)
    assert lo[1, 1] == 1.0 and hi[1, 1] == 2.0
    assert lo[2, 2] == 2.0 and hi[2, 2] == 2.0  # an invalid cell takes its valid neighbours' range
    far = np.zeros((5, 5), np.float32)
    far[0, 0] = 1.0
    lo, _ = local_limits(far, 0.1, radius=1)
    assert np.isnan(lo[4, 4])  # no valid cell within 1: no lower limit


def test_holes_and_their_rim_take_the_upper_limit_from_farther_out() -> None:
    """A shadow hole left of a near object hides the far wall: the wall is seen again only beyond
    the hole, so the hole and the cells beside it are bounded from 8 cells, the rest from 2."""
    src = np.full((12, 16), 1.0, np.float32)
    src[:, :4] = 3.0  # far wall, 4 cells wide, then 4 hole cells, then the near object
    src[:, 4:8] = 0.0
    lo, hi = local_limits(src, 0.2, radius=2, lower_margin=1.0)
    np.testing.assert_allclose(hi[:, 4:9], 3.6)  # hole + its rim: the wall's depth x 1.2
    np.testing.assert_allclose(hi[:, 10:], 1.2)  # away from the hole: the 5x5 max x 1.2
    np.testing.assert_allclose(lo[:, 10:], 0.5)  # lo / 2
    lo_w, hi_w = local_limits(src, 0.2, radius=1, lower_margin=0.2, holes="window")  # the former rule
    np.testing.assert_allclose(hi_w[:, 7], 1.2)  # a hole cell bounded by the near object: the far wall cut off
    assert np.isnan(hi_w[:, 5:7]).all()  # ... and no limit at all 2 cells into the hole


def test_default_clamp_leaves_no_pixel_beyond_the_bound_and_keeps_consistency() -> None:
    """On a simulated ToF frame (holes, noise, mixed cells) after a real solve: nothing beyond the
    default bound after the clamp, down(Y) = S on the valid cells."""
    from dada_ros.core.scenes import TofModel, make_sample
    from dada_ros.core.solver import DadaSolver, SolverConfig

    s = make_sample(2, scale=8, size=(128, 128), tof=TofModel(dropout=0.1))
    src = np.nan_to_num(s.source, nan=0.0).astype(np.float32)
    y = DadaSolver(SolverConfig(device="cpu")).solve(s.rgb, src).depth
    cfg = OutputRangeConfig()
    # force pixels beyond it: flying points 1.5x behind and 0.3x in front
    y = y.copy()
    y[10:12, 10:12] *= 1.5
    y[100:102, 50:52] *= 0.3
    out, st = apply_output_range(y, src, cfg)
    lo, hi = _limits(src, cfg)
    part = Partition(y.shape, src.shape)
    L, U = part.expand(lo), part.expand(hi)
    fin = np.isfinite(out) & np.isfinite(L)
    assert st["range_outliers"] > 0
    assert np.all(out[fin] <= U[fin] * (1 + 1e-5)) and np.all(out[fin] >= L[fin] * (1 - 1e-5))
    valid = src > 0
    np.testing.assert_allclose(block_average(out, src.shape)[valid], src[valid], rtol=2e-5)


try:
    from dada_ros.learned.datasets.realdata import default_root
    HAVE_REAL = default_root() is not None
except ImportError:  # pragma: no cover
    HAVE_REAL = False


def _real_crop(group: str, name: str, box):
    case = next(c for c in bench.load_cases((group,)) if c.name == name)
    r0, r1, c0, c1 = box
    sensor = case.sensor[r0:r1, c0:c1]
    return np.ascontiguousarray(case.rgb[r0:r1, c0:c1]), case.truth[r0:r1, c0:c1], sensor


@pytest.mark.skipif(not HAVE_REAL, reason="../shared/realdata is absent")
@pytest.mark.parametrize("group,name,box,scale", [
    ("realsense", "posecnn_000000", (160, 320, 240, 400), 8),  # objects on a table, shadow holes
    ("middlebury", "wood1", (96, 288, 160, 352), 8),  # occlusion holes hiding a far surface (former rule: 2.4x)
    ("middlebury", "baby2", (128, 256, 0, 128), 4),
    ("tum", "tum2klg_08", (160, 320, 320, 480), 16),  # stereo-matcher holes
])
def test_clamp_never_worse_on_real_crops(group, name, box, scale) -> None:
    from dada_ros.core.solver import DadaSolver, SolverConfig

    rgb, truth, sensor = _real_crop(group, name, box)
    H, W = truth.shape
    src = bench.sensor_source(sensor, (H // scale, W // scale))
    y = DadaSolver(SolverConfig(device="cpu")).solve(rgb, src).depth
    out, st = apply_output_range(y, src, OutputRangeConfig())
    ok = np.isfinite(truth) & (truth > 0) & np.isfinite(y)
    mse_off = np.mean((y[ok] - truth[ok]) ** 2)
    mse = np.mean((out[ok] - truth[ok]) ** 2)
    assert mse <= 1.0005 * mse_off, (mse / mse_off, st)
    lo, hi = _limits(src, OutputRangeConfig())
    part = Partition(y.shape, src.shape)
    L, U = part.expand(lo), part.expand(hi)
    fin = np.isfinite(out) & np.isfinite(L)
    assert np.all(out[fin] <= U[fin] * (1 + 1e-5)) and np.all(out[fin] >= L[fin] * (1 - 1e-5))


def test_config_is_validated() -> None:
    for bad in (OutputRangeConfig("clip"), OutputRangeConfig(margin=-0.1), OutputRangeConfig(radius=1.5),
                OutputRangeConfig(lower_margin=11), OutputRangeConfig(holes="nearest"), OutputRangeConfig(hole_radius=-1)):
        with pytest.raises(DadaInputError):
            bad.validate()


def test_pipeline_applies_it() -> None:
    from dada_ros.core.pipeline import FramePipeline
    from dada_ros.core.scenes import make_sample
    from dada_ros.core.solver import DadaSolver, SolverConfig

    s = make_sample(1, scale=8, size=(64, 64))
    solver = DadaSolver(SolverConfig(device="cpu", max_iterations=200))
    a = FramePipeline(solver, output_range=None).process(s.rgb, s.source, 0.0)
    b = FramePipeline(solver, output_range=OutputRangeConfig("invalid", margin=0.0)).process(s.rgb, s.source, 0.0)
    assert "range_outliers" not in a.stats and b.stats["range_outliers"] >= 0
    assert np.isnan(b.depth).sum() - np.isnan(a.depth).sum() == b.stats["range_outliers"]


@pytest.mark.parametrize("guide, source", [((48, 64), (6, 8)), ((50, 70), (7, 9))])
def test_cell_extrema_pass_matches_the_partition(guide, source) -> None:
    """The one-pass per-cell min / max (numba when installed) gives Partition.cell_extrema's
    answer, NaN ignored and NaN for a cell of NaN only, at integer and non-integer ratios."""
    from dada_ros.core.output_range import cell_extrema

    rng = np.random.default_rng(3)
    y = rng.uniform(0.5, 5.0, guide).astype(np.float32)
    y[rng.random(guide) < 0.2] = np.nan
    part = Partition(guide, source)
    rs, cs = part.cell_starts()
    y[: rs[1], : cs[1]] = np.nan  # cell (0, 0) all NaN
    got, want = cell_extrema(part, y), part.cell_extrema(y)
    for g, wv in zip(got, want):
        assert g.dtype == np.float32 and g.shape == source
        np.testing.assert_array_equal(g, wv)
    assert np.isnan(got[0][0, 0]) and np.isnan(got[1][0, 0])
