import numpy as np

from dada_ros.core.scenes import TofModel, intrinsics, make_sample, random_scene, render, scale_intrinsics
from dada_ros.core.sequences import SequenceConfig, make_sequence


def test_sample_is_reproducible_and_has_structure():
    a = make_sample(seed=7, scale=4, size=(64, 96))
    b = make_sample(seed=7, scale=4, size=(64, 96))
    c = make_sample(seed=8, scale=4, size=(64, 96))
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.gt, b.gt, equal_nan=True)
    assert not np.array_equal(a.rgb, c.rgb)
    assert a.source.shape == (16, 24) and a.scale == 4
    gt = a.gt[np.isfinite(a.gt)]
    assert 0.5 < gt.min() < gt.max() < 15  # a room: metres, several depths
    # Depth edges exist (jumps > 20 cm between neighbours).
    assert (np.abs(np.diff(a.gt, axis=1)) > 0.2).sum() > 5


def test_tof_source_has_noise_and_holes():
    clean = make_sample(seed=3, scale=8, size=(128, 128))
    tof = make_sample(seed=3, scale=8, size=(128, 128), tof=TofModel(dropout=0.1))
    holes = (tof.source == 0).mean()
    assert 0.05 < holes < 0.5
    both = (tof.source > 0) & np.isfinite(clean.source)
    assert 0 < np.abs(tof.source[both] - clean.source[both]).mean() < 0.2


def test_render_depth_is_z_in_optical_frame():
    K = intrinsics(64, 48)
    rgb, depth = render(random_scene(0), K, (48, 64))
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8 and depth.dtype == np.float32
    K2 = scale_intrinsics(K, 0.25, 0.25)
    assert K2[0, 0] == K[0, 0] / 4 and K2[0, 2] == (K[0, 2] + 0.5) / 4 - 0.5


def test_sequence_deterministic_with_cut():
    cfg = SequenceConfig(seed=2, size=(48, 64), source_shape=(12, 16),
                         plan=(("static", 2), ("pan", 2), ("cut", 1), ("forward", 1)))
    f1 = list(make_sequence(cfg))
    f2 = list(make_sequence(cfg))
    assert [f.segment for f in f1] == ["static", "static", "pan", "pan", "cut", "forward"]
    assert all(np.array_equal(a.source, b.source) for a, b in zip(f1, f2))
    assert np.array_equal(f1[0].gt, f1[1].gt, equal_nan=True)  # static camera
    assert f1[4].scene_seed != f1[3].scene_seed
    assert all(b.stamp > a.stamp for a, b in zip(f1, f1[1:]))
