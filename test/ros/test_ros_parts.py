"""The node's parts without a ROS graph: parameter table / YAML / validation, diagnostics
statuses, the one-slot mailbox."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml

from dada_ros.core.errors import DadaInputError
from dada_ros.ros.diagnostics import ERROR, OK, WARN, Diagnostics, FrequencyWindow, NodeStats, StatusWrapper
from dada_ros.ros.parameters import PARAMS, NodeSettings, descriptor, validate_settings

REPO = Path(__file__).resolve().parents[2]


def test_yaml_holds_every_parameter_with_its_default_and_a_comment() -> None:
    text = (REPO / "config" / "upsample.yaml").read_text()
    values = yaml.safe_load(text)["/**"]["ros__parameters"]
    assert set(values) == {p.name for p in PARAMS}
    for p in PARAMS:
        assert values[p.name] == p.default and type(values[p.name]) is type(p.default), p.name
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(f"{p.name}:"))
        assert "#" in line, f"{p.name} has no comment"


def test_descriptors() -> None:
    pytest.importorskip("rcl_interfaces")
    from rcl_interfaces.msg import ParameterType

    d = {p.name: descriptor(p) for p in PARAMS}
    assert all(x.description for x in d.values())
    assert d["lambda"].type == ParameterType.PARAMETER_DOUBLE
    assert d["lambda"].floating_point_range[0].to_value == 0.2499
    assert d["max_iterations"].integer_range[0].from_value == 1
    assert d["qos_reliability"].read_only and not d["kappa"].read_only
    assert "dada-free" in d["method"].additional_constraints


@pytest.mark.parametrize("change,words", [
    ({"lambda": 0.25}, "lambda"), ({"lambda": 0.0}, "lambda"), ({"kappa": 0.0}, "kappa"),
    ({"kappa": -0.1}, "kappa"), ({"device": "gpu"}, "device"), ({"device": "cuda:x"}, "device"),
    ({"weights": "/no/such/file.pt"}, "does not exist"), ({"warm_start": "on"}, "warm_start"),
    ({"output_encoding": "16UC3"}, "output_encoding"), ({"slop": 0.0}, "slop"),
    ({"tolerance": 0.0}, "tol"), ({"warm_start_max_age": 0.0}, "warm_start_max_age"),
    ({"method": "bicubic"}, "method"), ({"tolerance": float("nan")}, "finite"),
    ({"learned_schedule": "fast"}, "learned_schedule"), ({"learned_applications": 0}, "learned_applications"),
])
def test_invalid_values_are_refused_with_a_reason(change: dict, words: str) -> None:
    with pytest.raises(DadaInputError, match=words):
        validate_settings(NodeSettings.defaults().updated(change))


def test_valid_changes_and_what_needs_a_new_solver(tmp_path: Path) -> None:
    base = NodeSettings.defaults()
    validate_settings(base)
    w = tmp_path / "w.pt"
    w.write_bytes(b"x")
    for change in ({"device": "cuda"}, {"device": "cuda:1"}, {"weights": str(w)}, {"lambda": 0.2}):
        validate_settings(base.updated(change))
    assert base.updated({"kappa": 0.05}).solver_changed(base)
    assert not base.updated({"warm_start": "naive", "slop": 0.1}).solver_changed(base)
    cfg = base.updated({"lambda": 0.2, "max_iterations": 50}).solver_config("cpu")
    assert (cfg.lam, cfg.max_iterations, cfg.device) == (0.2, 50, "cpu")
    # the learned frame's schedule reaches the solver and, like the schedule, needs a new one
    assert cfg.learned_schedule == "matching"
    per = base.updated({"learned_schedule": "per-ratio"})
    assert per.solver_changed(base) and per.solver_config("cpu").learned_schedule == "per-ratio"
    assert cfg.learned_applications == 225
    longer = base.updated({"learned_applications": 300})
    assert longer.solver_changed(base) and longer.solver_config("cpu").learned_applications == 300


def test_frequency_window_follows_frequency_status() -> None:
    w = FrequencyWindow(min_freq=10.0, max_freq=10.0)
    assert w.run(StatusWrapper(), 0.0).message == "No events recorded."
    for _ in range(10):
        w.tick()
    s = w.run(StatusWrapper(), 1.0)
    assert (s.level, s.message) == (OK, "Desired frequency met")
    assert dict(s.values)["Actual frequency (Hz)"] == "10.000"
    w.tick()
    s = w.run(StatusWrapper(), 2.0)
    assert (s.level, s.message) == (WARN, "Frequency too low.")
    for _ in range(100):
        w.tick()
    assert w.run(StatusWrapper(), 3.0).message == "Frequency too high."


def test_statuses_report_drops_latency_and_solver() -> None:
    stats = NodeStats()
    t = [0.0]
    diag = Diagnostics(stats, clock=lambda: t[0])
    first = {s.name: s for s in diag.statuses("dada_upsample")}
    assert first["dada_upsample: input"].level == ERROR  # no events yet, like FrequencyStatus
    assert first["dada_upsample: latency"].message == "No data since last update."
    stats.synced()
    stats.count("dropped_stale", 3)
    stats.published(0.2, {"init_mode": "flow", "iterations": 100, "residual": 1e-3, "flow_ms": 5.0})
    t[0] = 1.0
    s = {x.name: x for x in diag.statuses("dada_upsample")}
    assert s["dada_upsample: output"].level == OK
    assert s["dada_upsample: latency"].message == "Timestamps are reasonable."
    assert s["dada_upsample: drops"].level == OK and "3 stale" in s["dada_upsample: drops"].message
    assert s["dada_upsample: solver"].message.startswith("flow start, 100 iterations")
    stats.count("step_mismatch")
    stats.published(7.0, {"init_mode": "cold", "iterations": 300, "cold_reason": "no previous frame"})
    t[0] = 2.0
    s = {x.name: x for x in diag.statuses("dada_upsample")}
    assert s["dada_upsample: drops"].level == WARN and "step_mismatch x1" in s["dada_upsample: drops"].message
    assert dict(s["dada_upsample: drops"].values)["step_mismatch"] == "1"
    assert s["dada_upsample: latency"].level == ERROR  # 7 s > 5 s
    assert "no previous frame" in s["dada_upsample: solver"].message


def test_diagnostic_array_shape() -> None:
    pytest.importorskip("diagnostic_msgs")
    from builtin_interfaces.msg import Time

    from dada_ros.ros.diagnostics import to_diagnostic_array

    s = StatusWrapper("dada_upsample: drops")
    s.summary(WARN, "x")
    s.add("k", 1)
    arr = to_diagnostic_array([s], Time(sec=1))
    assert arr.status[0].level == b"\x01" and arr.status[0].values[0].value == "1"


def test_latest_slot_keeps_only_the_newest() -> None:
    from dada_ros.ros.node import LatestSlot

    slot = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True  # 1 was waiting: replaced (the node counts it dropped_stale)
    assert slot.take(0.01) == 2 and slot.take(0.01) is None
    got = []
    th = threading.Thread(target=lambda: got.append(slot.take(5.0)))
    th.start()
    slot.put(3)
    th.join(2.0)
    assert got == [3]
    slot.close()
    assert slot.take(5.0) is None  # returns at once after close
