"""Tiny bags for the replay tests (small images, few frames: the suite shares 2 CPU cores)."""

import pytest

from dada_ros.replay.sample import SampleConfig, write_sample_bag

TINY = dict(size=(96, 128), source_shape=(24, 32), plan=(("static", 1), ("pan", 5)))


def make_bag(path, frames=6, **kw):
    """Write a tiny sample bag at ``path`` and return its summary dict."""
    cfg = SampleConfig(frames=frames, **{**TINY, **kw})
    return write_sample_bag(path, cfg)


@pytest.fixture(scope="session")
def tiny_bag(tmp_path_factory):
    """6 frames, RGB 128x96, ToF 32x24 (x4), camera panning after the first frame."""
    path = tmp_path_factory.mktemp("bags") / "tiny"
    make_bag(path)
    return path
