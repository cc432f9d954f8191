"""Cross-scale self-supervision: pair construction, and a tiny adaptation run on a generated bag."""

import json

import cv2
import numpy as np
import pytest

from dada_ros.core.errors import DadaInputError
from dada_ros.core.scenes import block_average, make_sample
from dada_ros.learned.datasets.base import make_example
from dada_ros.learned.datasets.selfsup import (BagScenes, SelfSupervisedScenes, bag_frames,
                                               self_supervised_scene, split_range)
from dada_ros.learned.datasets.base import RGBDScene


def test_pair_is_rgb_at_the_depth_resolution_and_the_depth_block_averaged():
    s = make_sample(seed=3, scale=4, size=(64, 96))
    sensor = s.source.copy()  # (16, 24): what a low-resolution sensor would give
    sensor[0, 0] = 0.0  # a dropout
    scene = self_supervised_scene(s.rgb, sensor, "f", multiple=8)
    assert scene.rgb.shape == (16, 24, 3) and scene.depth.shape == (16, 24)
    np.testing.assert_array_equal(scene.rgb, cv2.resize(s.rgb, (24, 16), interpolation=cv2.INTER_AREA))
    assert np.isnan(scene.depth[0, 0]) and np.allclose(scene.depth[1:, 1:], sensor[1:, 1:])
    ex = make_example(scene.rgb, scene.depth, 4)  # the example protocol on the sensor's own depth
    np.testing.assert_allclose(ex.source, block_average(scene.depth, (4, 6)), equal_nan=True)
    assert ex.gt is scene.depth
    with pytest.raises(DadaInputError, match="larger"):
        self_supervised_scene(s.rgb[:8], sensor, "f")


def test_sensor_ratio_emulates_a_low_resolution_sensor_on_a_dataset():
    s = make_sample(seed=4, scale=4, size=(64, 64))
    sets = SelfSupervisedScenes([RGBDScene(s.rgb, s.gt, "g")], sensor_ratio=4, multiple=8)
    sc = sets[0]
    assert sc.name == "g/self-x4" and sc.depth.shape == (16, 16) and sc.rgb.shape == (16, 16, 3)
    np.testing.assert_allclose(sc.depth, block_average(s.gt, (16, 16)), rtol=1e-6)
    assert split_range(10, (0.0, 0.5)) == range(0, 5) and split_range(10, (0.5, 1.0)) == range(5, 10)
    with pytest.raises(DadaInputError):
        split_range(10, (0.6, 0.2))


@pytest.fixture(scope="module")
def tiny_bag(tmp_path_factory):
    from dada_ros.replay.sample import SampleConfig, write_sample_bag

    path = tmp_path_factory.mktemp("bag") / "tiny"
    write_sample_bag(path, SampleConfig(frames=8, size=(96, 128), source_shape=(24, 32)))
    return path


def test_bag_frames_are_the_nodes_synchronised_sets(tiny_bag):
    frames = bag_frames(tiny_bag)
    assert len(frames) == 8
    rgb, depth, stamp = frames[0]
    assert rgb.shape == (96, 128, 3) and depth.shape == (24, 32) and stamp > 0
    first = BagScenes(tiny_bag, (0.0, 0.5), multiple=8, frames=frames)
    assert first.indices == [0, 1, 2, 3] and first[0].rgb.shape == (24, 32, 3)


def test_tiny_bag_adaptation_writes_a_checkpoint_the_node_loads(tiny_bag, tmp_path, capsys):
    from dada_ros.cli.train import main
    from dada_ros.learned.model import GuideNet, load_guide_model, save_checkpoint

    init = tmp_path / "init.pt"
    save_checkpoint(init, GuideNet())
    out = tmp_path / "adapt"
    rc = main(["--bag", str(tiny_bag), "--self-supervised", "--init-from", str(init), "--gate",
               "--scales", "2", "4", "--crop", "16", "--batch", "2", "--steps", "3", "--n-pre", "10",
               "--n-grad", "2", "--val-mode", "scenes", "--val-tile", "0", "--val-every", "3",
               "--bag-val-frames", "1", "--tof-prob", "0", "--out", str(out), "--quiet"])
    assert rc == 0
    guide = load_guide_model(str(out / "best.pt"), device="cpu")
    assert guide.config.gate and guide.meta["train_config"]["bag"] == str(tiny_bag)
    assert guide.meta["train_config"]["bag_part"] == [0.0, 0.5]
    with pytest.raises(DadaInputError, match="self-supervised"):
        main(["--bag", str(tiny_bag), "--out", str(tmp_path / "x"), "--quiet"])
