"""dada-upsample warm-start contract: --init / --init-guide / --warm-mode / --warm-iterations / --stats."""

import json

import cv2
import numpy as np
import pytest

from dada_ros.cli.common import run_cli
from dada_ros.cli.upsample import main
from dada_ros.core.metrics import consistency_error
from dada_ros.core.pipeline import WarmConfig, resolve_warm_schedule
from dada_ros.core.scenes import block_average, intrinsics, random_scene, render


def cli(capsys, *args):
    rc = run_cli("dada-upsample", main, [str(a) for a in args])
    return rc, capsys.readouterr().err


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Two frames of a 2 px pan (crops of one render) and a frame of another scene, as files."""
    d = tmp_path_factory.mktemp("warm")
    H, W = 64, 96
    rgb_b, d_b = render(random_scene(2), intrinsics(W + 2, H), (H, W + 2))
    gt_b = np.where(np.isfinite(d_b), d_b, np.nan).astype(np.float32)
    for i in range(2):
        rgb, gt = rgb_b[:, 2 * i:2 * i + W], gt_b[:, 2 * i:2 * i + W]
        cv2.imwrite(str(d / f"rgb{i}.png"), np.ascontiguousarray(rgb[:, :, ::-1]))
        np.save(d / f"src{i}.npy", np.nan_to_num(block_average(gt, (H // 8, W // 8))))
    rgb_c, d_c = render(random_scene(9), intrinsics(W, H), (H, W))
    cv2.imwrite(str(d / "rgb_cut.png"), rgb_c[:, :, ::-1])
    np.save(d / "src_cut.npy", np.nan_to_num(block_average(np.where(np.isfinite(d_c), d_c, np.nan), (H // 8, W // 8))))
    base = ["--max-iterations", 600]
    assert cli_plain(d, "--guide", d / "rgb0.png", "--source", d / "src0.npy", "--out", d / "prev.npy", *base) == 0
    return d


def cli_plain(d, *args):
    return run_cli("dada-upsample", main, [str(a) for a in args])


def stats_of(d, name):
    return json.loads((d / name).read_text())


def test_init_and_init_guide_run_the_flow_warm_start(frames, capsys):
    d = frames
    rc, err = cli(capsys, "--guide", d / "rgb1.png", "--source", d / "src1.npy", "--out", d / "o_flow.npy",
                  "--init", d / "prev.npy", "--init-guide", d / "rgb0.png", "--stats", d / "s_flow.json")
    assert rc == 0, err
    st = stats_of(d, "s_flow.json")
    assert st["init_mode"] == "flow" and st["cold_reason"] == ""
    # the slow-motion budget (DADA-free) when the view moved <= 5 px, the full one otherwise
    slow = st["mean_flow_px"] <= 5.0
    _, fast, slow_its = resolve_warm_schedule(WarmConfig(mode="flow"), True)  # DADA-free: the semi-iteration
    assert st["iterations"] == (slow_its if slow else fast) and st["warm_start"] is True
    assert st["flow_ms"] > 0 and 0.9 < st["warm_valid_fraction"] <= 1
    out = np.load(d / "o_flow.npy")
    assert consistency_error(out, np.load(d / "src1.npy")) < 1e-5
    # an explicit budget is the budget, whatever the motion
    rc, err = cli(capsys, "--guide", d / "rgb1.png", "--source", d / "src1.npy", "--out", d / "o_flow.npy",
                  "--init", d / "prev.npy", "--init-guide", d / "rgb0.png", "--warm-iterations", 57,
                  "--stats", d / "s_flow57.json")
    assert rc == 0, err
    st = stats_of(d, "s_flow57.json")
    assert st["init_mode"] == "flow" and st["iterations"] == 57


def test_init_alone_is_naive_and_warm_iterations_sets_the_budget(frames, capsys):
    d = frames
    # The same frame again (a still camera): the naive warm start fits and is kept.
    rc, err = cli(capsys, "--guide", d / "rgb0.png", "--source", d / "src0.npy", "--out", d / "o_naive.npy",
                  "--init", d / "prev.npy", "--warm-iterations", 30, "--stats", d / "s_naive.json")
    assert rc == 0, err
    st = stats_of(d, "s_naive.json")
    assert st["init_mode"] == "naive" and st["iterations"] == 30 and st["flow_ms"] == 0.0
    assert "warm_valid_fraction" in st and st["accept_median_error"] < 0.01
    # Onto the moved frame the unaligned previous output disagrees with the new depth: the
    # acceptance test starts it cold (the node's rule, through the CLI).
    rc, err = cli(capsys, "--guide", d / "rgb1.png", "--source", d / "src1.npy", "--out", d / "o_naive1.npy",
                  "--init", d / "prev.npy", "--warm-iterations", 30, "--max-iterations", 300,
                  "--stats", d / "s_naive1.json")
    assert rc == 0, err
    st = stats_of(d, "s_naive1.json")
    assert st["init_mode"] == "cold" and "disagrees" in st["cold_reason"], st


def test_warm_mode_overrides(frames, capsys):
    d = frames
    common = ["--guide", d / "rgb1.png", "--source", d / "src1.npy", "--out", d / "o.npy", "--max-iterations", 300]
    rc, err = cli(capsys, *common, "--init", d / "prev.npy", "--init-guide", d / "rgb0.png",
                  "--warm-mode", "cold", "--stats", d / "s_cold.json")
    assert rc == 0, err
    st = stats_of(d, "s_cold.json")
    assert st["init_mode"] == "cold" and st["cold_reason"] == "warm start off" and st["warm_start"] is False
    assert st["flow_ms"] == 0.0 and st["warm_valid_fraction"] == 0.0
    same = ["--guide", d / "rgb0.png", "--source", d / "src0.npy", "--out", d / "o.npy"]  # a still camera
    rc, err = cli(capsys, *same, "--init", d / "prev.npy", "--init-guide", d / "rgb0.png",
                  "--warm-mode", "naive", "--warm-iterations", 5, "--stats", d / "s_n.json")
    assert rc == 0, err
    assert stats_of(d, "s_n.json")["init_mode"] == "naive" and stats_of(d, "s_n.json")["iterations"] == 5
    # No --init: a plain cold frame with the warm-start keys in --stats.
    rc, err = cli(capsys, *common, "--stats", d / "s_plain.json")
    assert rc == 0, err
    assert stats_of(d, "s_plain.json")["init_mode"] == "cold"


def test_cut_between_init_guide_and_guide_falls_back_to_cold(frames, capsys):
    d = frames
    rc, err = cli(capsys, "--guide", d / "rgb_cut.png", "--source", d / "src_cut.npy", "--out", d / "o_cut.npy",
                  "--init", d / "prev.npy", "--init-guide", d / "rgb0.png", "--max-iterations", 300,
                  "--stats", d / "s_cut.json")
    assert rc == 0, err
    st = stats_of(d, "s_cut.json")
    assert st["init_mode"] == "cold" and st["cold_reason"], st


def test_bad_init_and_init_guide_one_line_error(frames, tmp_path, capsys):
    d = frames
    np.save(tmp_path / "small.npy", np.ones((32, 48), np.float32))
    cv2.imwrite(str(tmp_path / "small.png"), np.zeros((32, 48, 3), np.uint8))
    (tmp_path / "junk.png").write_bytes(b"not a png")
    base = ["--guide", d / "rgb1.png", "--source", d / "src1.npy", "--out", tmp_path / "o.npy"]
    cases = [
        (["--init", tmp_path / "small.npy", "--init-guide", d / "rgb0.png"], "initial depth"),
        (["--init", tmp_path / "small.npy"], "initial depth"),
        (["--init", d / "prev.npy", "--init-guide", tmp_path / "small.png"], "init guide"),
        (["--init", d / "prev.npy", "--init-guide", tmp_path / "junk.png"], "cannot read guide"),
        (["--init", d / "prev.npy", "--init-guide", tmp_path / "missing.png"], "not found"),
        (["--init", tmp_path / "missing.npy", "--init-guide", d / "rgb0.png"], "not found"),
        (["--init-guide", d / "rgb0.png"], "--init-guide needs --init"),
        (["--init", d / "prev.npy", "--warm-mode", "flow"], "needs --init-guide"),
        (["--warm-mode", "naive"], "needs --init"),
        (["--init", d / "prev.npy", "--warm-iterations", 0], "warm-iterations"),
        (["--init", d / "prev.npy", "--method", "bicubic"], "only applies to DADA"),
    ]
    for args, match in cases:
        rc, err = cli(capsys, *base, *args)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert rc == 2, (args, err)
        assert len(lines) == 1 and match in lines[0] and "Traceback" not in err, (args, err)
    assert not (tmp_path / "o.npy").exists()
