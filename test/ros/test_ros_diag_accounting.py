"""The accounting status and the frequency checks without a ROS graph: WARN on loss above the
threshold, on one input topic arriving slower than another, on anything uncounted; auto
expected rate follows the measured input."""

from __future__ import annotations

from dada_ros.ros.diagnostics import OK, WARN, Diagnostics, NodeStats


def _statuses(diag: Diagnostics) -> dict:
    return {s.name.split(": ")[1]: s for s in diag.statuses("n")}


def _receive(stats: NodeStats, n: int, topics=("rgb", "camera_info", "depth")) -> None:
    for _ in range(n):
        for t in topics:
            stats.message(t)


def _published_sets(stats: NodeStats, n: int) -> None:
    for _ in range(n):
        stats.synced()
        stats.set_entered()
        stats.published(0.05, {"frame_ms": 20.0})


def test_accounting_ok_then_warn_on_loss_and_uncounted() -> None:
    stats, t = NodeStats(), [0.0]
    diag = Diagnostics(stats, clock=lambda: t[0], loss_warn_fraction=0.1)
    _receive(stats, 10)
    _published_sets(stats, 10)
    t[0] = 1.0
    acc = _statuses(diag)["accounting"]
    assert (acc.level, acc.message) == (OK, "Every input message accounted for")
    assert dict(acc.values)["rgb: published"] == "10" and dict(acc.values)["rgb: uncounted"] == "0"
    # 10 more of each; 3 rgb leave unmatched (30% > 10%), the rest published
    _receive(stats, 10)
    for _ in range(3):
        stats.drop_message("rgb", "unmatched")
    stats.drop_message("camera_info", "unmatched", 3)
    stats.drop_message("depth", "unmatched", 3)
    _published_sets(stats, 7)
    t[0] = 2.0
    acc = _statuses(diag)["accounting"]
    assert acc.level == WARN and "rgb loss 30% (3/10)" in acc.message
    assert dict(acc.values)["rgb: dropped unmatched"] == "3"
    # stale frames are the newest-frame-only policy, not a loss
    _receive(stats, 5)
    for _ in range(5):
        stats.set_entered()
        stats.drop_set("stale")
    t[0] = 3.0
    assert _statuses(diag)["accounting"].level == OK
    # a message that went nowhere is uncounted, and said so
    stats.message("depth")
    t[0] = 4.0
    acc = _statuses(diag)["accounting"]
    assert acc.level == WARN and "depth: 1 message(s) uncounted" in acc.message


def test_one_topic_slower_than_the_others_warns_about_transport() -> None:
    stats, t = NodeStats(), [0.0]
    diag = Diagnostics(stats, clock=lambda: t[0])
    _statuses(diag)
    for k in range(1, 4):
        _receive(stats, 5, ("camera_info", "depth"))
        _receive(stats, 1, ("rgb",))
        t[0] = float(k)
        s = _statuses(diag)
    assert s["accounting"].level == WARN and "rgb arrives at 1.00 Hz, camera_info at 5.00 Hz" in s["accounting"].message
    assert "QoS" in s["accounting"].message


def test_auto_expected_rate_follows_the_inputs() -> None:
    stats, t = NodeStats(), [0.0]
    stats.set_rate(0.0)  # auto
    diag = Diagnostics(stats, clock=lambda: t[0])
    _statuses(diag)
    for k in range(1, 4):  # 10 messages/s per topic but only 2 sets/s: sets are being lost
        _receive(stats, 10)
        _published_sets(stats, 2)
        t[0] = float(k)
        s = _statuses(diag)
    assert (s["input"].level, s["input"].message) == (WARN, "Frequency too low.")
    assert dict(s["input"].values)["Minimum acceptable frequency (Hz)"] == "9.000"
    # output: a busy worker (20 ms frames could do 50 Hz) keeping up with the 2 sets/s is fine
    assert s["output"].level == OK
    # a fixed expected rate is a fixed target again
    stats.set_rate(2.0)
    for k in range(4, 7):
        _receive(stats, 2)
        _published_sets(stats, 2)
        t[0] = float(k)
        s = _statuses(diag)
    assert s["input"].level == OK
