"""Input and output QoS against driver-like peers in ANOTHER process (real DDS between processes).

Default parameters (``qos_reliability: auto``, reliable outputs): a reliable AND a best-effort
640x480 publisher at 5 Hz are each answered (>= 95% of frames), and a reliable AND a best-effort
downstream subscriber each receive them. Fixed modes keep their meaning: a reliable subscription
cannot hear a best-effort publisher, and the node says so (warned, counted) instead of silence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dada_ros.ros.parameters import PARAMS_BY_NAME
from dada_ros.ros.qos import Handover, choose_reliability
from dada_ros.ros.transport_profile import PROFILE, apply_default_profile
from ros_harness import DOMAIN_ID, Harness

DEFAULT_QOS = {name: PARAMS_BY_NAME[name].default for name in ("qos_reliability", "qos_depth", "output_qos_reliability")}


def camera(ns: str, qos: str, rate: float = 10.0, seconds: float = 1.5, size: str = "640x480",
           wait: float = 10.0, listen: str = "none", profile: bool = False) -> dict:
    """Run fake_camera in another process; ``profile``: with the package's Fast DDS profile (as
    the docs tell a best-effort driver to use), else with Fast DDS's defaults."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)
    if profile:
        env["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
    proc = subprocess.run([sys.executable, "-m", "dada_ros.ros.fake_camera", "--ns", ns, "--qos", qos,
                           "--rate", str(rate), "--seconds", str(seconds), "--size", size, "--wait", str(wait),
                           "--listen", listen, "--linger", "8"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_choose_reliability() -> None:
    assert choose_reliability([]) is None
    assert choose_reliability(["reliable", "reliable"]) == "reliable"
    assert choose_reliability(["reliable", "best_effort"]) == "best_effort"
    assert choose_reliability(["best_effort"]) == "best_effort"


def test_handover_passes_each_stamp_once() -> None:
    """Make-before-break: both subscriptions deliver the same stream for a while; every stamp
    is passed on exactly once, the old subscription's until the new one takes over."""
    ho = Handover(old=1, new=2)
    passed = []
    events = [(1, 10), (1, 11), (2, 10), (2, 11), (1, 12), (2, 12), (2, 13), (1, 13), (1, 14), (2, 14)]
    for gen, stamp in events:
        if ho.accept(gen, stamp):
            passed.append(stamp)
    assert passed == [10, 11, 12, 13, 14]
    assert not ho.accept(0, 15)  # a subscription older than the handover is being destroyed


def test_defaults_follow_publishers_and_serve_every_subscriber() -> None:
    assert DEFAULT_QOS == {"qos_reliability": "auto", "qos_depth": 5, "output_qos_reliability": "reliable"}


def test_fast_dds_profile_is_applied_unless_configured() -> None:
    assert PROFILE.is_file()
    env: dict = {}
    assert apply_default_profile(env) is None and env["FASTRTPS_DEFAULT_PROFILES_FILE"] == str(PROFILE)
    mine = {"FASTRTPS_DEFAULT_PROFILES_FILE": "/my.xml"}
    assert "set" in apply_default_profile(mine) and mine["FASTRTPS_DEFAULT_PROFILES_FILE"] == "/my.xml"
    assert "RMW" in apply_default_profile({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"})
    assert "FASTDDS_BUILTIN_TRANSPORTS" in apply_default_profile({"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"})


# A best-effort driver of 640x480 images loses frames in ITS OWN shared-memory segment (Fast DDS
# default 512 KB) before the node sees them, whatever the node does: measured 12-19 of 20 frames
# without the profile (benchmarks/transport.py). The docs tell such a driver to use the package's
# profile; the test's best-effort driver does. A reliable driver needs nothing.
@pytest.mark.parametrize("pub_qos,listen", [("reliable", "reliable"), ("best_effort", "best_effort"),
                                            ("reliable", "best_effort"), ("best_effort", "reliable")])
def test_default_qos_answers_any_publisher_to_any_subscriber(ros_context, pub_qos: str, listen: str) -> None:
    """The issue's target: default parameters, 640x480 at 5 Hz, >= 95% of frames answered from a
    reliable and from a best-effort publisher, received by a reliable and a best-effort subscriber
    (the subscriber has Fast DDS's defaults: only the node's own profile is at work for it)."""
    h = Harness(ros_context, {**DEFAULT_QOS, "warm_start": "off", "max_iterations": 300, "torch_threads": 0})
    try:
        sent = camera(h.ns, pub_qos, rate=5.0, seconds=4.0, listen=listen, profile=pub_qos == "best_effort")
        assert sent["matched"]
        assert sent["answered"] >= 0.95 * sent["sent"], (sent, h.node.stats.balance(), h.node.stats.snapshot())
        # the tester node's own (idle, reliable) input publishers are on the graph too: reliable
        # until the camera comes; best_effort while a best-effort camera publishes
        history = {k: s.history for k, s in h.node.inputs.items()}
        for hist in history.values():
            assert hist[:2] == ["best_effort", "reliable"], history
            assert ("best_effort" in hist[2:]) == (pub_qos == "best_effort"), history
        assert h.counter("qos_incompatible") == 0
        assert h.wait(lambda: h.node.stats.ledger.in_flight_sets == 0, 20)
        assert all(b["uncounted"] == 0 for b in h.node.stats.balance().values()), h.node.stats.balance()
    finally:
        h.close()


def test_auto_follows_a_publisher_that_changes(ros_context) -> None:
    """A best-effort driver, then a reliable one on the same topics: the subscriptions follow
    (make before break) and both drivers are heard; the switches are in the diagnostics. (The
    tester node's idle reliable publishers are on the graph throughout.)"""
    h = Harness(ros_context, {**DEFAULT_QOS, "warm_start": "off", "max_iterations": 5})
    try:
        first = camera(h.ns, "best_effort", size="160x120", rate=10.0, seconds=1.0)
        assert first["matched"]
        # heard: the subscription was (or went back to) best effort while the driver published
        assert h.wait(lambda: h.node.stats.ledger.received["depth"] >= 0.9 * first["sent"], 10)
        for sub in h.node.inputs.values():
            assert sub.history[0] == "best_effort" and "reliable" in sub.history, sub.history
        n_switches = sum(sub.switches for sub in h.node.inputs.values())
        second = camera(h.ns, "reliable", size="160x120", rate=10.0, seconds=1.5)
        assert second["matched"]
        assert h.wait(lambda: all(sub.reliability == "reliable" for sub in h.node.inputs.values()), 5)
        assert h.wait(lambda: h.node.stats.ledger.received["depth"] >= 0.9 * (first["sent"] + second["sent"]), 10)
        assert h.wait(lambda: any(kv.key == "qos_switches" and int(kv.value) >= n_switches
                                  for a in h.diagnostics[-3:] for s in a.status for kv in s.values), 5)
        assert h.wait(lambda: h.node.stats.ledger.in_flight_sets == 0, 20)
        assert all(b["uncounted"] == 0 for b in h.node.stats.balance().values()), h.node.stats.balance()
    finally:
        h.close()


def test_fixed_reliable_against_best_effort_driver_is_warned_and_counted(ros_context) -> None:
    h = Harness(ros_context, {"qos_reliability": "reliable", "qos_depth": 5})
    try:
        sent = camera(h.ns, "best_effort", seconds=0.5, wait=3.0)
        assert not sent["matched"]  # ROS 2 QoS: a reliable reader does not match a best-effort writer
        assert h.wait(lambda: h.counter("qos_incompatible") >= 3, 10)  # one per input topic
        assert any("incompatible" in v for v in h.node.stats.notes.values())
        assert h.node.stats.ledger.received["rgb"] == 0
        # and the status says so (the solver status carries the standing notes at WARN)
        assert h.wait(lambda: any(s.name.endswith("solver") and s.level == b"\x01" and "incompatible" in s.message
                                  for a in h.diagnostics[-2:] for s in a.status), 5)
    finally:
        h.close()


def test_qos_override_parameter_fixes_the_reliability(ros_context) -> None:
    """The standard ROS 2 QoS override parameters are accepted and win over auto."""
    topic = None
    from dada_ros.ros.names import INPUT_TOPICS

    overrides = {}
    ns_holder = {}

    h = Harness(ros_context, {**DEFAULT_QOS, "max_iterations": 5})
    try:
        ns_holder["ns"] = h.ns
        topic = h.node.resolve_topic_name(INPUT_TOPICS["depth"])
        assert h.node.has_parameter(f"qos_overrides.{topic}.subscription.reliability")
        assert h.node.has_parameter(f"qos_overrides.{h.node.resolve_topic_name('depth_upsampled/image_rect')}"
                                    ".publisher.reliability")
    finally:
        h.close()
    overrides = {f"qos_overrides./{INPUT_TOPICS['depth']}.subscription.reliability": "best_effort"}
    # a node in the root namespace, so the override's topic name is known before it starts
    from rclpy.parameter import Parameter

    from dada_ros.ros.node import UpsampleNode

    node = UpsampleNode(context=ros_context, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    try:
        assert node.inputs["depth"].mode == "fixed" and node.inputs["depth"].reliability == "best_effort"
        assert node.inputs["rgb"].mode == "auto"
    finally:
        node.destroy_node()


def test_transport_loss_is_not_reported_as_fine(ros_context) -> None:
    """Best-effort subscription of a reliable 640x480 publisher (forced): when RGB frames are
    lost before the node, /diagnostics must not say all is well."""
    h = Harness(ros_context, {"qos_reliability": "best_effort", "qos_depth": 5, "max_iterations": 5,
                              "warm_start": "off", "diagnostic_updater.period": 0.5})
    try:
        sent = camera(h.ns, "reliable", rate=10.0, seconds=3.0)
        assert h.wait(lambda: h.node.stats.ledger.received["depth"] >= sent["sent"] * 0.9, 10)
        led = h.node.stats.ledger.received
        if led["rgb"] >= 0.8 * led["depth"]:
            pytest.skip(f"the transport lost too little this time (rgb {led['rgb']} / depth {led['depth']})")
        warned = [s.message for a in h.diagnostics for s in a.status
                  if s.name.endswith(("accounting", "input")) and s.level == b"\x01"]
        assert any("arrives at" in m or "Frequency too low" in m for m in warned), warned
    finally:
        h.close()


class _FakeSub:
    def __init__(self, qos):
        self.qos_profile = qos


class _FakeNode:
    """Just enough of rclpy.Node for AdaptiveSubscription: the graph is a list we set."""

    def __init__(self):
        self.offers: list[str] = []
        self.subs: list = []
        self.destroyed: list = []

    def create_subscription(self, msg_type, topic, cb, qos, **kw):
        sub = _FakeSub(qos)
        sub.cb = cb
        self.subs.append(sub)
        return sub

    def destroy_subscription(self, sub):
        self.destroyed.append(sub)

    def resolve_topic_name(self, t):
        return "/" + t

    def get_publishers_info_by_topic(self, t):
        from types import SimpleNamespace

        from rclpy.qos import ReliabilityPolicy

        rel = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}
        return [SimpleNamespace(qos_profile=SimpleNamespace(reliability=rel[o])) for o in self.offers]


def test_auto_switches_back_in_the_middle_of_a_handover() -> None:
    """A best-effort driver appearing while a switch to reliable is still handing over: the
    reliable subscription is dropped at once and the old best-effort one, which hears both
    drivers, stays (no second handover, no waiting for the first to time out)."""
    from types import SimpleNamespace

    from dada_ros.ros.qos import AdaptiveSubscription

    node, got = _FakeNode(), []
    sub = AdaptiveSubscription(node, object, "depth", got.append, "auto",
                               make_qos=lambda rel, depth: SimpleNamespace(reliability=SimpleNamespace(name=rel.upper()),
                                                                           depth=depth or 5))
    node.offers = ["reliable"]
    sub.reevaluate(now=0.0)
    assert sub.reliability == "reliable" and sub.handover is not None and len(node.subs) == 2
    node.offers = ["reliable", "best_effort"]
    sub.reevaluate(now=0.3)
    assert sub.reliability == "best_effort" and sub.handover is None
    assert node.destroyed == [node.subs[1]]  # the new (reliable) one went, the old one stays
    assert sub.history == ["best_effort", "reliable", "best_effort"]
    msg = SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=1, nanosec=0)))
    node.subs[0].cb(msg)
    assert got == [msg]  # the old subscription delivers as the current one
