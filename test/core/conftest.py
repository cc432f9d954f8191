"""Small generated solver problems shared by the core tests (fixtures return the builders)."""

import numpy as np
import pytest
import torch

from dada_ros.core.coefficients import coefficients_from_features, free_features
from dada_ros.core.resample import Partition, Resampler
from dada_ros.core.scenes import make_sample

CPU = torch.device("cpu")


def with_holes(src, frac=0.15, seed=0):
    src = src.copy()
    rng = np.random.default_rng(seed)
    holes = rng.random(src.shape) < frac
    src[holes] = np.where(rng.random(holes.sum()) < 0.5, 0.0, np.nan)
    return src


def loop_problem(seed, size, source_shape):
    """A small generated loop problem with holes at a non-integer ratio: resampler, source,
    valid mask, Y0 and the learning-free coefficients."""
    s = make_sample(seed=seed, size=size, source_shape=source_shape)
    res = Resampler(Partition(size, source_shape), CPU)
    rgb = torch.from_numpy(s.rgb.astype(np.float32) / 255).permute(2, 0, 1)[None]
    src = torch.from_numpy(np.nan_to_num(with_holes(s.source), nan=0.0))[None, None]
    valid = src > 0
    y0 = res.up(torch.where(valid, src, src[valid].mean())).contiguous()
    cv, ch = coefficients_from_features(free_features(rgb, y0), 0.03)
    return res, src, valid, y0, cv, ch



@pytest.fixture(name="with_holes")
def with_holes_fixture():
    return with_holes


@pytest.fixture(name="loop_problem")
def loop_problem_fixture():
    return loop_problem
