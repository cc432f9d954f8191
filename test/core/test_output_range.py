"""Output pixels beyond the local source range: clamped with down(Y) = S kept exact, marked
invalid, or left; counted either way."""

from __future__ import annotations

import numpy as np
import pytest

from dada_ros.core.errors import DadaInputError
from dada_ros.core.output_range import OutputRangeConfig, apply_output_range, local_limits
from dada_ros.core.resample import Partition
from dada_ros.core.scenes import block_average


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
    lo, hi = local_limits(src, 0.1)
    part = Partition(guide, source)
    L, U = part.expand(lo), part.expand(hi)
    assert ((y < L) | (y > U)).sum() > 0
    out, st = apply_output_range(y, src, OutputRangeConfig("clamp", 0.1))
    assert st["range_outliers"] == int(((y < L) | (y > U)).sum()) and st["range_worst"] > 1.5
    assert np.all(out >= L * (1 - 1e-5)) and np.all(out <= U * (1 + 1e-5))
    np.testing.assert_allclose(block_average(out, source), src, rtol=2e-5)
    # cells without a flying pixel are untouched
    cell_bad = block_average(((y < L) | (y > U)).astype(np.float32), source) > 0
    same = ~part.expand(cell_bad)
    np.testing.assert_array_equal(out[same], y[same])


def test_invalid_marks_exactly_the_outliers_and_off_changes_nothing() -> None:
    y, src = _case()
    lo, hi = local_limits(src, 0.1)
    part = Partition(y.shape, src.shape)
    bad = (y < part.expand(lo)) | (y > part.expand(hi))
    out, st = apply_output_range(y, src, OutputRangeConfig("invalid", 0.1))
    np.testing.assert_array_equal(np.isnan(out), bad)
    off, st_off = apply_output_range(y, src, OutputRangeConfig("off", 0.1))
    np.testing.assert_array_equal(off, y)
    assert st_off["range_outliers"] == st["range_outliers"] == int(bad.sum())


def test_limits_come_from_valid_neighbours_only() -> None:
    src = np.array([[1.0, 1.0, 0.0], [1.0, 2.0, np.nan], [0.0, 0.0, 0.0]], np.float32)
    lo, hi = local_limits(src, 0.0, radius=1)
    assert lo[1, 1] == 1.0 and hi[1, 1] == 2.0
    assert lo[2, 2] == 2.0 and hi[2, 2] == 2.0  # an invalid cell takes its valid neighbours' range
    far = np.zeros((5, 5), np.float32)
    far[0, 0] = 1.0
    lo, _ = local_limits(far, 0.1)
    assert np.isnan(lo[4, 4])  # no valid cell within 1: no limit


def test_config_is_validated() -> None:
    for bad in (OutputRangeConfig("clip"), OutputRangeConfig(margin=-0.1), OutputRangeConfig(radius=1.5)):
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
