"""Bad input: one clear line (no traceback), partial results kept, nothing scored without truth."""

import json
import subprocess
import sys

import numpy as np

from dada_ros.cli.common import run_cli
from dada_ros.cli.replay import main
from dada_ros.replay import messages as m
from dada_ros.replay.bag import BagWriter

from .conftest import make_bag


def replay(*argv):
    return run_cli("dada-replay", main, [str(a) for a in argv] + ["--no-progress", "--snapshots", "1"])


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


def test_missing_bag(tmp_path, capsys):
    assert replay("--bag", tmp_path / "nope", "--out", tmp_path / "o", "--methods", "bicubic") == 2
    assert _error_line(capsys) == f"dada-replay: error: bag not found: {tmp_path / 'nope'}"


def test_corrupt_bag(tmp_path, capsys):
    (tmp_path / "bad.db3").write_bytes(b"not a database" * 10)
    assert replay("--bag", tmp_path / "bad.db3", "--out", tmp_path / "o", "--methods", "bicubic") == 2
    assert "cannot read bag" in _error_line(capsys)


def test_missing_topics_lists_what_the_bag_has(tmp_path, capsys):
    with BagWriter(tmp_path / "b") as w:
        w.write("/camera/image", m.image(np.zeros((4, 4, 3), np.uint8), "rgb8", m.header(1, "c")), 1)
    assert replay("--bag", tmp_path / "b", "--out", tmp_path / "o", "--methods", "bicubic") == 2
    line = _error_line(capsys)
    assert "lacks input topic" in line and "/camera/image [sensor_msgs/Image] x1" in line and "--topics" in line


def test_unsupported_message_type(tmp_path, capsys):
    CI = m.msg_class("sensor_msgs/msg/CompressedImage")
    with BagWriter(tmp_path / "b") as w:
        w.write("/rgb/image_rect_color", CI(header=m.header(1, "c"), format="jpeg", data=np.zeros(3, np.uint8)), 1)
        w.write("/rgb/camera_info", m.camera_info(np.eye(3), 4, 4, m.header(1, "c")), 1)
        w.write("/depth/image_rect", m.image(np.zeros((2, 2), np.uint16), "16UC1", m.header(1, "c")), 1)
    assert replay("--bag", tmp_path / "b", "--out", tmp_path / "o", "--methods", "bicubic") == 2
    assert "unsupported message type on /rgb/image_rect_color: sensor_msgs/msg/CompressedImage" in _error_line(capsys)


def test_out_dir_not_writable(tiny_bag, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert replay("--bag", tiny_bag, "--out", tmp_path / "file" / "out", "--methods", "bicubic") == 2
    assert "not writable" in _error_line(capsys)


def test_no_ground_truth_scores_nothing(tmp_path, capsys):
    make_bag(tmp_path / "b", frames=3, plan=(("static", 3),))
    out = tmp_path / "o"
    assert replay("--bag", tmp_path / "b", "--out", out, "--methods", "bicubic,dada-free:cold:20",
                  "--gt-topic", "/not_there", "--no-bag") == 0
    err = capsys.readouterr().err
    assert "no ground truth" in err and "Traceback" not in err
    metrics = json.loads((out / "metrics.json").read_text())
    s = metrics["summary"]["bicubic"]
    assert s["frames_out"] == 3 and s["frames_scored"] == 0 and s["mse_cm2"] is None
    assert metrics["summary"]["dada-free:cold:20"]["mean_iterations"] == 20
    assert (out / "report.md").exists() and (out / "error_over_time.png").exists()


def test_frames_without_partner_are_counted(tmp_path, capsys):
    make_bag(tmp_path / "b", frames=5, plan=(("static", 5),), drop_depth=(2,))
    out = tmp_path / "o"
    assert replay("--bag", tmp_path / "b", "--out", out, "--methods", "bicubic", "--no-bag") == 0
    assert "had no partner" in capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["summary"]["bicubic"]["frames_in"] == metrics["summary"]["bicubic"]["frames_out"] == 4
    assert metrics["input"]["without_partner"] == {"/rgb/image_rect_color": 1, "/rgb/camera_info": 1}


def test_console_script_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "dada_ros.cli.replay", "--bag", str(tmp_path / "x"), "--out",
                        str(tmp_path / "o")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"dada-replay: error: bag not found: {tmp_path / 'x'}"


def test_reader_failure_half_way_keeps_partial_results(tmp_path, capsys, monkeypatch):
    from dada_ros.core.errors import DadaInputError
    from dada_ros.replay.bag import BagReader

    make_bag(tmp_path / "b", frames=4, plan=(("static", 4),))
    real = BagReader.messages

    def failing(self, topics=None):  # what BagReader.messages raises on a bad chunk mid-file
        for i, msg in enumerate(real(self, topics)):
            if i == 7 and topics and "/rgb/image_rect_color" in topics:
                raise DadaInputError(f"bag {self.path} is corrupt or truncated: ZstdError: data corruption")
            yield msg

    monkeypatch.setattr(BagReader, "messages", failing)
    out = tmp_path / "o"
    assert replay("--bag", tmp_path / "b", "--out", out, "--methods", "bicubic") == 2
    assert "corrupt or truncated" in _error_line(capsys)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"].startswith("failed") and len(metrics["frames"]) == 2
    assert (out / "report.md").exists() and len((out / "frames.jsonl").read_text().splitlines()) == 2


def test_undecodable_message_is_dropped_and_counted(tmp_path, capsys):
    import sqlite3

    make_bag(tmp_path / "b", frames=3, plan=(("static", 3),), storage="sqlite3")
    with sqlite3.connect(tmp_path / "b" / "b.db3") as db:
        (tid,) = db.execute("SELECT id FROM topics WHERE name = '/depth/image_rect'").fetchone()
        (mid,) = db.execute("SELECT min(id) FROM messages WHERE topic_id = ?", (tid,)).fetchone()
        db.execute("UPDATE messages SET data = x'000100000102' WHERE id = ?", (mid,))
    out = tmp_path / "o"
    assert replay("--bag", tmp_path / "b", "--out", out, "--methods", "bicubic", "--no-bag") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["input"]["dropped"] == {"undecodable": 1}
    assert metrics["summary"]["bicubic"]["frames_out"] == 2


def test_existing_output_bag_is_not_overwritten(tiny_bag, tmp_path, capsys):
    (tmp_path / "o" / "output_bag").mkdir(parents=True)
    (tmp_path / "o" / "metrics.json").write_text("{}")
    assert replay("--bag", tiny_bag, "--out", tmp_path / "o", "--methods", "bicubic") == 2
    assert "exists already" in _error_line(capsys)
    assert (tmp_path / "o" / "metrics.json").read_text() == "{}"


def test_truncated_bag_is_replayed_and_scored_with_a_warning(tmp_path, capsys):
    """A recording cut at 90% (power loss): replayed, scored, and what was lost is said."""
    make_bag(tmp_path / "b", frames=8)
    f = next((tmp_path / "b").glob("*.mcap"))
    data = f.read_bytes()
    f.write_bytes(data[: int(len(data) * 0.9)])
    assert replay("--bag", tmp_path / "b", "--out", tmp_path / "o", "--methods", "bicubic") == 0
    err = capsys.readouterr().err
    assert "is damaged" in err and "File end magic is invalid" in err and "lost" in err
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert any("is damaged" in n and "of 40 recorded" in n for n in metrics["notes"])
    assert metrics["status"] == "complete"
    scored = metrics["summary"]["bicubic"]
    assert 3 <= scored["frames_scored"] < 8 and scored["mse_cm2"] > 0
