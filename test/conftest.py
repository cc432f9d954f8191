"""Shared test set-up: small torch thread count (2 shared cores) and common fixtures."""

import dada_ros  # noqa: F401,I001 - first, as in the node and the CLIs: it sets GOMP_SPINCOUNT before torch loads libgomp
import numpy as np
import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def sample_x8():
    """A generated 128x128 scene with its x8 block-average source."""
    from dada_ros.core.scenes import make_sample

    return make_sample(seed=11, scale=8, size=(128, 128))


def _step_edge_pair(size=(64, 64), scale=8, near=1.0, far=2.0, col=None):
    """Guide with a colour edge exactly where the depth steps (column ``col``) -> (rgb, gt, source)."""
    from dada_ros.core.scenes import block_average

    H, W = size
    col = W // 2 + 3 if col is None else col
    gt = np.full((H, W), far, np.float32)
    gt[:, :col] = near
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:, :col] = (200, 40, 40)
    rgb[:, col:] = (30, 160, 220)
    return rgb, gt, block_average(gt, (H // scale, W // scale))


@pytest.fixture
def step_edge_pair():
    """Factory: guide with a colour edge exactly at the depth step -> (rgb, gt, source)."""
    return _step_edge_pair
