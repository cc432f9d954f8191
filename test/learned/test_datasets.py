"""Dataset loaders on tiny fixtures written by the tests, and the example/batch protocol."""

import json
import warnings

import cv2
import numpy as np
import pytest

from dada_ros.core.errors import DadaInputError
from dada_ros.core.resample import fill_holes, initial_upsample
from dada_ros.core.scenes import block_average
from dada_ros.learned.datasets import open_dataset
from dada_ros.learned.datasets.base import CropSampler, RGBDScene, collate, make_example, tiles
from dada_ros.learned.datasets.middlebury import read_pfm, write_pfm
from dada_ros.learned.datasets.procedural import ProceduralScenes, tof_source


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_png_rgb(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


# ----------------------------------------------------------------------------- protocol
def test_example_and_collate_follow_the_solver():
    gt = np.linspace(1, 3, 16 * 16, dtype=np.float32).reshape(16, 16)
    gt[0:4, 0:4] = np.nan  # one fully unknown cell
    gt[5, 9] = np.nan
    ex = make_example(_rgb(16, 16), gt, 4)
    np.testing.assert_array_equal(ex.source, block_average(gt, (4, 4)))
    assert np.isnan(ex.source[0, 0]) and np.isfinite(ex.source[1, 2])
    b = collate([ex, ex])
    assert b.rgb.shape == (2, 3, 16, 16) and b.source.shape == (2, 1, 4, 4) and b.scale == 4
    assert not bool(b.valid[0, 0, 0, 0]) and float(b.source[0, 0, 0, 0]) == 0.0
    assert not bool(b.gt_valid[0, 0, 5, 9]) and float(b.gt[0, 0, 5, 9]) == 0.0
    valid = np.isfinite(ex.source)
    filled, _ = fill_holes(np.nan_to_num(ex.source), valid, "average")
    np.testing.assert_allclose(b.y0[0, 0].numpy(), initial_upsample(filled, (16, 16)), rtol=1e-6)


def test_crop_sampler_and_tiles():
    rng = np.random.default_rng(0)
    gt = np.full((40, 50), 2.0, np.float32)
    gt[:, :10] = np.nan  # a band of holes: crops overlapping it too much are rejected
    scenes = [RGBDScene(_rgb(40, 50), gt, "a")]
    s = CropSampler(scenes, 16, [4, 8], rng)
    for _ in range(5):
        b = s.batch(3)
        assert b.rgb.shape == (3, 3, 16, 16) and b.scale in (4, 8)
        assert b.gt_valid.float().mean() >= 0.8
    names = [n for n, _, _ in tiles(scenes[0], 16)]
    assert names == ["a@0,0", "a@0,16", "a@0,32", "a@16,0", "a@16,16", "a@16,32"]
    with pytest.raises(ValueError, match="multiple"):
        CropSampler(scenes, 20, [8], rng)
    # scale weights: a zero weight never comes up; a bad list is refused
    w = CropSampler(scenes, 16, [4, 8], rng, scale_weights=[0.0, 1.0])
    assert {w.batch(1).scale for _ in range(10)} == {8}
    with pytest.raises(ValueError, match="one non-negative weight per scale"):
        CropSampler(scenes, 16, [4, 8], rng, scale_weights=[1.0])


def test_crop_sampler_hard_pool_replays_highest_loss_crops():
    rng = np.random.default_rng(0)
    gt = np.arange(40 * 50, dtype=np.float32).reshape(40, 50) / 1000 + 1
    s = CropSampler([RGBDScene(_rgb(40, 50), gt, "a")], 16, [4], rng, hard_prob=1.0, hard_pool=2)
    s.batch(4)
    keys = list(s.last_keys)
    assert len(keys) == 4
    s.record(4, keys, [0.1, 5.0, 0.2, 3.0])
    assert [k for _, k in s.hard[4]] == [keys[1], keys[3]]  # the two highest, highest first
    # cut() reproduces a recorded crop; with hard_prob 1 every example comes from the pool
    ex = s.cut(keys[1], 4)
    want = gt[keys[1].i:keys[1].i + 16, keys[1].j:keys[1].j + 16]
    np.testing.assert_array_equal(ex.gt, want[:, ::-1] if keys[1].flip else want)
    s.batch(6)
    assert set(s.last_keys) <= {keys[1], keys[3]}
    # a crop the model has learned (new, low loss) leaves the pool; the state round-trips as JSON
    s.record(4, [keys[1], keys[0]], [0.0, 4.0])
    assert [k for _, k in s.hard[4]] == [keys[0], keys[3]]
    t = CropSampler([RGBDScene(_rgb(40, 50), gt, "a")], 16, [4], rng, hard_prob=1.0, hard_pool=2)
    t.load_pool_state(s.pool_state())
    assert t.hard == s.hard
    # off by default: nothing is kept
    u = CropSampler([RGBDScene(_rgb(40, 50), gt, "a")], 16, [4], rng)
    u.record(4, keys, [1.0] * 4)
    assert u.hard[4] == []


def test_crop_sampler_misregistration_offsets_depth_from_rgb():
    """--misregister-px: a crop's depth (truth and source) is cut (dy, dx) away from its RGB, both
    inside the scene, |dy|, |dx| <= px; the offset is in the key (a replay cuts the same crop) and
    in the hard pool's saved state (an old five-field state still loads, as registered crops)."""
    import json

    rng = np.random.default_rng(1)
    gt = np.arange(40 * 50, dtype=np.float32).reshape(40, 50) / 1000 + 1
    rgb = _rgb(40, 50)
    s = CropSampler([RGBDScene(rgb, gt, "a")], 16, [4], rng, misregister_px=3, misregister_prob=1.0,
                    hard_prob=0.5, hard_pool=4)
    offsets = set()
    for _ in range(20):
        b = s.batch(2)
        for k, g, c in zip(s.last_keys, b.gt[:, 0].numpy(), b.rgb.numpy()):
            assert abs(k.dy) <= 3 and abs(k.dx) <= 3
            offsets.add((k.dy, k.dx))
            want_gt = gt[k.i + k.dy:k.i + k.dy + 16, k.j + k.dx:k.j + k.dx + 16]
            want_rgb = rgb[k.i:k.i + 16, k.j:k.j + 16]
            if k.flip:
                want_gt, want_rgb = want_gt[:, ::-1], want_rgb[:, ::-1]
            np.testing.assert_array_equal(g, want_gt)
            np.testing.assert_allclose(c.transpose(1, 2, 0), want_rgb / 255.0, atol=1e-6)
        s.record(4, s.last_keys, [1.0, 2.0])
    assert len(offsets) > 5 and any(o != (0, 0) for o in offsets)
    t = CropSampler([RGBDScene(rgb, gt, "a")], 16, [4], rng, hard_prob=0.5, hard_pool=4)
    t.load_pool_state(s.pool_state())
    assert t.hard == s.hard
    old = json.dumps({"4": [[1.0, [0, 2, 3, False, False]]]})
    t.load_pool_state(old)
    assert t.hard[4][0][1].dy == 0 and t.hard[4][0][1].dx == 0
    # off by default: registered crops
    u = CropSampler([RGBDScene(rgb, gt, "a")], 16, [4], rng)
    u.batch(4)
    assert all(k.dy == 0 and k.dx == 0 for k in u.last_keys)
    with pytest.raises(ValueError, match="misregister"):
        CropSampler([RGBDScene(rgb, gt, "a")], 16, [4], rng, misregister_px=-1)
    with pytest.raises(ValueError, match="misregister"):
        CropSampler([RGBDScene(rgb, gt, "a")], 16, [4], rng, misregister_px=2, misregister_prob=1.5)


def test_procedural_cache_and_tof(tmp_path):
    a = ProceduralScenes([101, 102], [(24, 32)], cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    b = ProceduralScenes([101, 102], [(24, 32)], cache_dir=tmp_path, lazy=True)
    np.testing.assert_array_equal(a[1].rgb, b[1].rgb)
    np.testing.assert_array_equal(a[1].depth, b[1].depth)
    assert a[0].rgb.shape == (24, 32, 3) and a[0].depth.dtype == np.float32
    src = tof_source(a[0].depth, a[0].rgb, 4, np.random.default_rng(0))
    assert src.shape == (6, 8) and (np.isnan(src) | (src > 0)).all()


def test_procedural_cache_two_runs_render_the_same_seed(tmp_path, monkeypatch):
    """Two training runs sharing a cache may write the same new scene at once: neither may lose."""
    real_savez = np.savez
    nested = []

    def savez_then_other_run_writes(file, **arrays):
        real_savez(file, **arrays)
        if not nested:  # the other run renders this seed between our write and our rename
            nested.append(file)
            ProceduralScenes([101], [(24, 32)], cache_dir=tmp_path, lazy=True)[0]

    monkeypatch.setattr(np, "savez", savez_then_other_run_writes)
    scene = ProceduralScenes([101], [(24, 32)], cache_dir=tmp_path)[0]
    assert nested and [p.name for p in tmp_path.iterdir()] == ["seed101_24x32.npz"]
    with np.load(tmp_path / "seed101_24x32.npz") as z:
        np.testing.assert_array_equal(z["depth"], scene.depth)


# ----------------------------------------------------------------------------- Middlebury
def test_pfm_round_trip(tmp_path):
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    img[1, 2] = np.inf
    write_pfm(tmp_path / "d.pfm", img)
    np.testing.assert_array_equal(read_pfm(tmp_path / "d.pfm"), img)
    (tmp_path / "bad.pfm").write_bytes(b"P6\n1 1\n255\n\x00\x00\x00")
    with pytest.raises(DadaInputError, match="not a PFM"):
        read_pfm(tmp_path / "bad.pfm")


def _middlebury_fixture(root):
    # 2014: disparity + calib -> depth = f * baseline / (d + doffs) mm.
    disp = np.full((8, 12), 100.0, np.float32)
    disp[0, 0] = np.inf  # unknown
    for scene in ("Adirondack-perfect", "Jadeplant-perfect", "Jadeplant-imperfect", "Shelves-perfect"):
        d = root / "2014" / scene
        d.mkdir(parents=True)
        write_pfm(d / "disp0.pfm", disp)
        _write_png_rgb(d / "im0.png", _rgb(8, 12))
        (d / "calib.txt").write_text(
            "cam0=[4000 0 6; 0 4000 4; 0 0 1]\ncam1=[4000 0 7; 0 4000 4; 0 0 1]\ndoffs=60\n"
            "baseline=200\nwidth=12\nheight=8\nndisp=290\n")
    # 2005/2006: 8-bit disparity PNG (0 = unknown) + dmin, f = 3740 px, baseline 160 mm.
    for year, scene in (("2005", "Art"), ("2006", "Bowling1")):
        d = root / year / scene
        disp8 = np.full((6, 10), 50, np.uint8)
        disp8[2, 3] = 0
        d.mkdir(parents=True)
        assert cv2.imwrite(str(d / "disp1.png"), disp8)
        _write_png_rgb(d / "view1.png", _rgb(6, 10))
        (d / "dmin.txt").write_text("30\n")


def test_middlebury_loader(tmp_path):
    _middlebury_fixture(tmp_path)
    train = open_dataset("middlebury", tmp_path, "train")
    names = [train[i].name for i in range(len(train))]
    assert names == ["2005/Art/view1", "2014/Jadeplant-perfect/view0"]  # imperfect skipped
    sc = train[1]
    assert sc.rgb.shape == (8, 12, 3) and sc.depth.shape == (8, 12)
    assert np.isnan(sc.depth[0, 0])
    assert sc.depth[3, 3] == pytest.approx(4000 * 200 / (100 + 60) / 1000)
    art = train[0]
    assert np.isnan(art.depth[2, 3])
    assert art.depth[0, 0] == pytest.approx(3740 * 160 / (50 + 30) / 1000)
    test = open_dataset("middlebury", tmp_path, "test")
    assert sorted(test[i].name for i in range(len(test))) == ["2006/Bowling1/view1", "2014/Adirondack-perfect/view0"]
    val = open_dataset("middlebury", tmp_path, "val")
    assert [val[i].name for i in range(len(val))] == ["2014/Shelves-perfect/view0"]
    with pytest.raises(DadaInputError, match="does not exist"):
        open_dataset("middlebury", tmp_path / "missing", "train")


# ----------------------------------------------------------------------------- NYUv2
def _nyu_fixture(root, n=5, with_split=True):
    scipy_io = pytest.importorskip("scipy.io")

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (6, 8, 3, n), dtype=np.uint8)  # MATLAB order (H, W, 3, N)
    depths = rng.uniform(0.5, 9.0, (6, 8, n)).astype(np.float32)
    depths[0, 0, 1] = 0.0
    scipy_io.savemat(root / "nyu_depth_v2_labeled.mat", {"images": images, "depths": depths})
    if with_split:
        (root / "split_idc.json").write_text(json.dumps({"train": [0, 2, 4], "val": [1], "test": [3]}))
    return images, depths


def test_nyuv2_loader(tmp_path):
    images, depths = _nyu_fixture(tmp_path)
    train = open_dataset("nyuv2", tmp_path, "train")
    assert len(train) == 3
    sc = train[1]  # file index 2
    np.testing.assert_array_equal(sc.rgb, images[:, :, :, 2])
    np.testing.assert_allclose(sc.depth, depths[:, :, 2])
    val = open_dataset("nyuv2", tmp_path / "nyu_depth_v2_labeled.mat", "val")
    assert np.isnan(val[0].depth[0, 0]) and val[0].name == "nyuv2/1"


def test_nyuv2_positional_split_warns(tmp_path):
    _nyu_fixture(tmp_path, n=4, with_split=False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        train = open_dataset("nyuv2", tmp_path, "train")
    assert len(train) == 4 and any("positional" in str(x.message) for x in w)
    (tmp_path / "nyu_depth_v2_labeled.mat").write_bytes(b"garbage" * 20)
    with pytest.raises(DadaInputError):
        open_dataset("nyuv2", tmp_path, "train")


# ----------------------------------------------------------------------------- DIML
def _diml_fixture(root):
    depth = np.full((6, 8), 2500, np.uint16)
    depth[1, 1] = 0
    for split, scene, n in (("train", "01. Office", 10), ("test", "09. Lab", 2)):
        for k in range(n):
            base = root / split / "HR" / scene
            _write_png_rgb(base / "color" / f"f{k:03d}_c.png", _rgb(6, 8, k))
            (base / "depth_filled").mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(base / "depth_filled" / f"f{k:03d}_depth_filled.png"), depth)


def test_diml_loader(tmp_path):
    _diml_fixture(tmp_path)
    train, val, test = (open_dataset("diml", tmp_path, s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (9, 1, 2)  # last 10 % of each train scene = val
    assert val[0].name.endswith("f009_c")
    sc = test[0]
    assert sc.depth[0, 0] == pytest.approx(2.5) and np.isnan(sc.depth[1, 1])
    assert sc.rgb.shape == (6, 8, 3)
    # An 8-bit depth PNG is not DIML's format: rejected with a reason.
    bad = tmp_path / "test" / "HR" / "09. Lab" / "depth_filled" / "f000_depth_filled.png"
    cv2.imwrite(str(bad), np.zeros((6, 8), np.uint8))
    with pytest.raises(DadaInputError, match="16-bit"):
        test[0]


def test_unknown_dataset_and_split(tmp_path):
    with pytest.raises(DadaInputError, match="unknown dataset"):
        open_dataset("kitti", tmp_path, "train")
    with pytest.raises(DadaInputError, match="split"):
        open_dataset("diml", tmp_path, "all")


def test_mixed_scenes_draw_both_sets_about_equally():
    from dada_ros.learned.datasets.base import MixedScenes

    a = [RGBDScene(_rgb(8, 8), np.ones((8, 8), np.float32), f"real{i}") for i in range(3)]
    b = [RGBDScene(_rgb(8, 8), np.ones((8, 8), np.float32), f"gen{i}") for i in range(30)]
    m = MixedScenes(a, b)
    names = [m[i].name for i in range(len(m))]
    assert len(m) == 60 and sum(n.startswith("real") for n in names) == 30
    assert set(names) == {s.name for s in a + b}
    with pytest.raises(ValueError):
        MixedScenes(a, [], 0.5)
