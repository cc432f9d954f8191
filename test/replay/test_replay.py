"""End to end: replay a tiny generated bag offline and check every file it leaves."""

import json

import numpy as np
import pytest

from dada_ros.core.pipeline import WarmConfig, resolve_warm_schedule
from dada_ros.cli.common import run_cli
from dada_ros.cli.replay import main
from dada_ros.replay.bag import BagReader
from dada_ros.ros.conversions import depth_image_to_metres, pointcloud2_to_array

PNG = b"\x89PNG\r\n\x1a\n"


def replay(*argv):
    return run_cli("dada-replay", main, [str(a) for a in argv])


@pytest.fixture(scope="module")
def result(tiny_bag, tmp_path_factory):
    out = tmp_path_factory.mktemp("replay") / "out"
    rc = replay("--bag", tiny_bag, "--out", out, "--no-progress", "--warm-iterations", "60", "--cold-every", "2", "--threads", "1", "--node-params", "points_rgb:=true,max_iterations:=1500", "--snapshots", "2",
                "--methods", "dada-free:flow,dada-free:naive,dada-free:cold,dada-free:cold:60,bicubic,jbf,dada")
    return rc, out, json.loads((out / "metrics.json").read_text())


def test_metrics_summary(result):
    rc, out, metrics = result
    assert rc == 0 and metrics["status"] == "complete"
    s = metrics["summary"]
    for key in ("dada-free:flow", "dada-free:naive", "dada-free:cold:60", "bicubic", "jbf"):
        assert s[key]["frames_in"] == s[key]["frames_out"] == s[key]["frames_scored"] == 6, key
        for field in ("mse_cm2", "mae_cm", "rmse_cm", "mean_iterations", "mean_ms", "coverage", "consistency_max"):
            assert s[key][field] is not None, (key, field)
    assert s["dada-free:cold"]["frames_in"] == 3 and s["dada-free:cold"]["frames_skipped"] == 3
    assert s["dada-free:flow"]["mse_cm2"] < s["bicubic"]["mse_cm2"]
    assert s["dada-free:flow"]["consistency_max"] < 1e-4 < s["bicubic"]["consistency_max"]
    # warm frames run the warm budget (60) or the slow-motion one (warm_slow_iterations, 30), the
    # first frame the cold equilibrium (on this 128x96 pan a few frames leave more than
    # max_cold_area of the image cold and start cold too)
    modes = s["dada-free:flow"]["init_modes"]
    assert set(modes) == {"cold", "flow"} and sum(modes.values()) == 6 and modes["flow"] >= 2, modes
    slow = resolve_warm_schedule(WarmConfig(warm_iterations=60), True)[2]  # DADA-free's semi-iteration
    assert slow <= s["dada-free:flow"]["mean_iterations_warm"] <= 60 and s["dada-free:flow"]["mean_iterations_cold"] > 60
    assert metrics["input"]["synchronised_sets"] == 6 and metrics["input"]["without_partner"] == {}


def test_unavailable_method_does_not_stop_the_replay(result):
    _, _, metrics = result
    s = metrics["summary"]["dada"]
    if metrics["methods"]["dada"]["available"]:
        pytest.skip("the learned model is installed here")
    assert s["frames_out"] == 0 and s["errors"]
    assert any(n.startswith("method dada not run") for n in metrics["notes"])


def test_learned_method_reports_what_its_guard_ran(result):
    """dada runs behind the node's default guard: the summary counts which method ran each frame
    and how many frames were checked (the first, then every learned_guard_every = 30)."""
    _, out, metrics = result
    if not metrics["methods"]["dada"]["available"]:
        pytest.skip("the learned model is not installed here")
    s = metrics["summary"]["dada"]
    assert sum(s["guard_picks"].values()) == s["frames_out"] == 3 and s["guard_checks"] == 1  # --cold-every 2
    assert set(s["guard_picks"]) <= {"dada", "dada-free"}
    assert "dada behind the learned guard" in (out / "report.md").read_text()
    assert metrics["summary"]["dada-free:flow"]["guard_picks"] == {}


def test_per_frame_entries_and_jsonl(result):
    _, out, metrics = result
    frames = metrics["frames"]
    assert [f["index"] for f in frames] == list(range(6))
    lines = (out / "frames.jsonl").read_text().splitlines()
    assert len(lines) == 6 and json.loads(lines[2])["index"] == 2
    warm = [f["methods"]["dada-free:flow"] for f in frames if f["methods"]["dada-free:flow"]["init_mode"] == "flow"]
    for rec in warm:  # the budget follows the measured motion; the warm Y0 is DADA-free's depth feature
        slow = resolve_warm_schedule(WarmConfig(warm_iterations=60), True)[2]
        assert rec["iterations"] == (slow if rec["mean_flow_px"] <= 5.0 else 60), rec
        assert rec["warm_depth_feature"] is True, rec
        assert rec["ms"] > 0 and rec["mse_cm2"] > 0
    assert frames[2]["methods"]["dada-free:cold"] == {"skipped": True} and "mse_cm2" in frames[3]["methods"]["dada-free:cold"]


def test_report_and_figures(result):
    _, out, _ = result
    report = (out / "report.md").read_text()
    assert "| dada-free:flow |" in report and "warm_start.png" in report
    pngs = sorted(out.glob("*.png"))
    names = {p.name for p in pngs}
    assert {"error_over_time.png", "warm_start.png", "summary.png"} <= names
    assert any(n.startswith("frame_") for n in names)
    import matplotlib.image as mpimg

    for p in pngs:
        assert p.read_bytes()[:8] == PNG
        assert mpimg.imread(p).ndim == 3


def test_output_bag_reads_back(result):
    _, out, metrics = result
    with BagReader(out / "output_bag") as r:
        topics = r.topics
        assert topics["/depth_upsampled/image_rect"].count == 6
        assert topics["/depth_upsampled/camera_info"].count == 6
        assert topics["/depth_upsampled/points"].count == 6
        assert topics["/rgb/image_rect_color"].count == 6
        depth = cloud = None
        for m in r.messages(["/depth_upsampled/image_rect", "/depth_upsampled/points"]):
            if m.topic.endswith("image_rect") and depth is None:
                depth = depth_image_to_metres(m.decode())
            if m.topic.endswith("points") and cloud is None:
                cloud = pointcloud2_to_array(m.decode())
    assert depth.shape == (96, 128) and np.isfinite(depth).mean() > 0.9
    assert cloud.shape == (96, 128) and set(cloud.dtype.names) >= {"x", "y", "z", "rgb"}
    np.testing.assert_allclose(cloud["z"], depth, equal_nan=True)
