"""--realtime: the tiny bag played into a live upsample_node (rclpy, in child processes)."""

import json

import pytest

from dada_ros.cli.common import run_cli
from dada_ros.cli.replay import main
from dada_ros.replay.bag import BagReader

from .conftest import make_bag

pytest.importorskip("rclpy")


def replay(*argv):
    return run_cli("dada-replay", main, [str(a) for a in argv] + ["--no-progress"])


def test_realtime_replay_into_the_live_node(tmp_path, capsys):
    make_bag(tmp_path / "b", frames=4)
    out = tmp_path / "o"
    rc = replay("--bag", tmp_path / "b", "--out", out, "--realtime", "--rate", "0.5", "--node-timeout", "60",
                "--node-params", "max_iterations:=200,torch_threads:=1,warm_iterations:=20")
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    s = metrics["summary"]["dada-free"]
    assert metrics["mode"] == "realtime" and metrics["status"] == "complete"
    assert s["frames_in"] == 4 and s["frames_out"] >= 1 and s["frames_out"] + s["frames_dropped"] == 4
    assert s["mean_ms"] > 0 and s["frames_scored"] == s["frames_out"] and s["consistency_max"] < 1e-4
    assert metrics["input"]["node_diagnostics"], "no /diagnostics seen from the node"
    with BagReader(out / "output_bag") as r:
        assert r.topics["/depth_upsampled/image_rect"].count == s["frames_out"]
    assert (out / "report.md").exists() and "live node" in capsys.readouterr().out


def test_realtime_without_a_node_is_one_line(tiny_bag, tmp_path, capsys, monkeypatch):
    # a domain nobody uses, so a node another test runs on the default domain is not found
    monkeypatch.setenv("ROS_DOMAIN_ID", "229")
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    rc = replay("--bag", tiny_bag, "--out", tmp_path / "o", "--realtime", "--no-launch-node", "--node-timeout", "2")
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    assert err[-1].startswith("dada-replay: error: no upsample_node subscribed to /rgb/image_rect_color")
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["status"].startswith("failed")
