"""The realdata npz loader (fixtures written here; the shared real data when present)."""

import json

import numpy as np
import pytest

from dada_ros.core.errors import DadaInputError
from dada_ros.learned.datasets import open_dataset
from dada_ros.learned.datasets import realdata as R


def _write(path, rgb, depth, valid, unit, meta=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, rgb=rgb, depth=depth, valid=valid, unit=np.array(unit), meta=np.array(json.dumps(meta or {})))


def _fixture(root, h=40, w=50):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    disp = rng.uniform(10, 40, (h, w)).astype(np.float32)
    valid = np.ones((h, w), bool)
    valid[0, 0] = False
    disp[1, 1] = 0.0  # 0 = unknown even where valid says otherwise
    _write(root / "middlebury2003" / "teddy.npz", rgb, disp, valid, "disparity_px", {"licence": "x", "real": True})
    metric = rng.uniform(1, 3, (h, w)).astype(np.float32)
    _write(root / "somewhere" / "frame.npz", rgb, metric, valid, "m")
    return rgb, disp, valid, metric


def test_disparity_becomes_depth_like_z_with_the_stated_rule(tmp_path):
    rgb, disp, valid, _ = _fixture(tmp_path)
    scene, info = R.read_npz(tmp_path / "middlebury2003" / "teddy.npz", multiple=16)
    assert scene.rgb.shape == (32, 48, 3) and scene.depth.shape == (32, 48)  # top-left crop to 16
    np.testing.assert_array_equal(scene.rgb, rgb[:32, :48])
    ok = valid & (disp > 0)
    fb = R.REFERENCE_DEPTH_M * np.median(disp[ok])
    assert info["unit"] == "disparity_px" and R.unit_of(info) == "z" and info["f_times_b"] == pytest.approx(fb)
    expect = np.where(ok, fb / np.where(ok, disp, 1), np.nan)[:32, :48]
    np.testing.assert_allclose(scene.depth, expect, rtol=1e-6)
    assert np.isnan(scene.depth[0, 0]) and np.isnan(scene.depth[1, 1])
    assert np.nanmedian(R.disparity_to_depth(disp, ok)) == pytest.approx(R.REFERENCE_DEPTH_M, rel=1e-3)


def test_metric_scenes_by_name_and_bad_files(tmp_path):
    _, _, valid, metric = _fixture(tmp_path)
    data = R.RealDataScenes(tmp_path, scenes=["frame"])
    assert data.unit == "m" and len(data) == 1
    np.testing.assert_allclose(data[0].depth[1:, 1:], metric[1:32, 1:48])
    assert R.RealDataScenes(tmp_path, scenes=["teddy", "frame"]).unit == "mixed"
    bad = tmp_path / "bad" / "x.npz"
    _write(bad, np.zeros((20, 20, 3), np.uint8), np.ones((20, 20), np.float32), np.ones((20, 20), bool), "furlong")
    with pytest.raises(DadaInputError, match="unknown unit"):
        R.read_npz(bad)
    np.savez(bad, rgb=np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(DadaInputError, match="lacks"):
        R.read_npz(bad)
    bad.write_bytes(b"not a zip")
    with pytest.raises(DadaInputError, match="unreadable"):
        R.read_npz(bad)
    with pytest.raises(DadaInputError, match="does not exist"):
        R.RealDataScenes(tmp_path / "nope", "val")
    with pytest.raises(DadaInputError, match="split"):
        R.RealDataScenes(tmp_path, "bogus")


def test_fixed_split_is_disjoint_and_covers_the_dense_scenes():
    assert not set(R.SPLITS["train"]) & set(R.SPLITS["val"])
    assert set(R.SPLITS["train"]) | set(R.SPLITS["val"]) == set(R.SPLITS["all"]) == set(R.DENSE_REAL)
    assert not set(R.SPLITS["test"]) & set(R.SPLITS["all"])


@pytest.mark.skipif(R.default_root() is None, reason="no ../shared/realdata (a user's clone has none)")
def test_shared_realdata_loads_through_open_dataset():
    val = open_dataset("realdata", None, "val")
    assert val.names == ["teddy", "books", "venus"] and val.unit == "z"
    for sc in val:
        assert sc.rgb.dtype == np.uint8 and sc.depth.shape == sc.rgb.shape[:2]
        assert sc.depth.shape[0] % 16 == 0 and sc.depth.shape[1] % 16 == 0
        z = sc.depth[np.isfinite(sc.depth)]
        assert z.size > 0.9 * sc.depth.size and z.min() > 0 and 1.5 < np.median(z) < 2.5
    assert open_dataset("realdata", None, "test").unit == "m"
