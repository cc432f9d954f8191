"""Input subscriptions whose reliability follows the publishers (``qos_reliability: auto``).

A ROS 2 subscription matches a publisher only if it asks for no more than the publisher offers:
a RELIABLE subscription never receives from a BEST_EFFORT (sensor-data QoS) publisher, and a
BEST_EFFORT subscription of a large reliable image stream loses most frames on Fast DDS (measured
here: 55-88% of 640x480 frames; ``benchmarks/transport.py``). No fixed choice serves every
driver, so, like ``ros2 topic echo``, rosbag2 and image_proc since Humble (image_pipeline PR 814),
the node looks at what the publishers of each input topic offer and subscribes to match:

* no publisher yet: BEST_EFFORT (it matches any publisher that appears, so nothing waits on the
  next look at the graph);
* every matched publisher RELIABLE: RELIABLE (no transport loss);
* any BEST_EFFORT publisher: BEST_EFFORT (the only way to hear it).

The graph is looked at periodically (publishers come, go, or restart with other QoS). A change
re-creates the subscription *make before break*: the new one is created while the old one still
delivers; the old one's messages are taken until the new one delivers a message newer than the
last of them, duplicates (the same stamp through both) are skipped before anything counts them
(``qos_handover_duplicate``), and the old subscription is destroyed at the next look. So a
switch loses nothing that both subscriptions received, and counts nothing twice.

``reliable`` / ``best_effort`` keep their fixed meaning. The standard QoS override parameters
(``qos_overrides.<topic>.subscription.{history,depth,reliability}``) are declared on the first
subscription of a topic; an overridden reliability fixes that topic's reliability (no adapting).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Sequence

RELIABILITY_MODES = ("auto", "reliable", "best_effort")
# The old subscription of a switch is destroyed once the new one delivers, or after this long
# (no traffic: nothing to hand over).
HANDOVER_TIMEOUT_S = 1.0


def choose_reliability(offered: Sequence[str]) -> str | None:
    """The reliability that hears every publisher without transport loss where possible:
    ``None`` when there is no publisher (keep what is there), ``"reliable"`` when all of
    ``offered`` are reliable, else ``"best_effort"``."""
    if not offered:
        return None
    return "reliable" if all(r == "reliable" for r in offered) else "best_effort"


def _stamp_ns(msg: Any) -> int | None:
    try:
        s = msg.header.stamp
        return int(s.sec) * 1_000_000_000 + int(s.nanosec)
    except AttributeError:
        return None


class Handover:
    """Which messages of two overlapping subscriptions (generation ``old`` and ``new``) to pass on
    during a switch. Pure logic: tested without ROS."""

    def __init__(self, old: int, new: int, since: float = 0.0) -> None:
        self.old, self.new, self.since = old, new, since
        self.last_old: int | None = None  # newest stamp passed on from the old subscription
        self.new_started = False  # the new subscription has passed a message on

    def accept(self, gen: int, stamp: int | None) -> bool:
        """True: pass the message on; False: a duplicate of one already passed on."""
        if gen == self.old:
            if self.new_started:
                return False  # the new subscription delivers this stream now
            if stamp is not None:
                self.last_old = stamp if self.last_old is None else max(self.last_old, stamp)
            return True
        if gen == self.new:
            if not self.new_started and stamp is not None and self.last_old is not None and stamp <= self.last_old:
                return False  # received through the old subscription already
            self.new_started = True
            return True
        return False  # a subscription older than the handover: already being destroyed


class AdaptiveSubscription:
    """One input topic's subscription under a reliability ``mode`` (see the module docstring).

    ``make_qos(reliability, depth)`` builds the profile (``depth`` None: the node's setting; on a
    re-creation, the depth the first subscription got after the QoS override parameters), ``events()`` the event callbacks of a new subscription,
    ``on_switch(topic, old, new, why)`` is called after each change, ``on_duplicate()`` for each
    skipped duplicate. Everything runs in the node's executor (callbacks and the graph timer)."""

    def __init__(self, node: Any, msg_type: type, topic: str, callback: Callable[[Any], None], mode: str,
                 make_qos: Callable[[str, int | None], Any], events: Callable[[], Any] | None = None,
                 on_switch: Callable[[str, str | None, str, str], None] | None = None,
                 on_duplicate: Callable[[], None] | None = None, overriding_options: Any = None,
                 fixed_by_override: bool = False) -> None:
        if mode not in RELIABILITY_MODES:
            raise ValueError(f"qos_reliability must be one of {', '.join(RELIABILITY_MODES)}, got {mode!r}")
        self.node, self.msg_type, self.topic, self.callback = node, msg_type, topic, callback
        self.mode = "fixed" if fixed_by_override else mode
        self.make_qos, self.events = make_qos, events
        self.on_switch, self.on_duplicate = on_switch, on_duplicate
        self._lock = threading.Lock()
        self._gen = 0  # generations handed out so far; the newest alive is the current one
        self._subs: dict[int, Any] = {}
        self.handover: Handover | None = None
        self.switches = 0
        self.publishers: list[str] = []
        first = "best_effort" if mode == "auto" else mode
        if fixed_by_override:
            first = "reliable" if mode == "auto" else mode  # the override replaces it in the profile
        self.reliability = first
        sub = self._create(first, overriding_options)
        if fixed_by_override:
            self.reliability = _reliability_name(sub.qos_profile)
        self.history = [self.reliability]  # every reliability this topic has had, in order
        self.depth = int(sub.qos_profile.depth)

    # ------------------------------------------------------------------ subscriptions
    def _create(self, reliability: str, overriding_options: Any = None) -> Any:
        self._gen += 1
        gen = self._gen
        kwargs = {"event_callbacks": self.events() if self.events else None}
        if overriding_options is not None:
            kwargs["qos_overriding_options"] = overriding_options
        qos = self.make_qos(reliability, getattr(self, "depth", None))
        sub = self.node.create_subscription(self.msg_type, self.topic, lambda msg, g=gen: self._deliver(g, msg),
                                            qos, **kwargs)
        self._subs[gen] = sub
        return sub

    def _deliver(self, gen: int, msg: Any) -> None:
        with self._lock:
            ho = self.handover
            ok = ho is None or ho.accept(gen, _stamp_ns(msg))
        if not ok:
            if self.on_duplicate:
                self.on_duplicate()
            return
        self.callback(msg)

    # ------------------------------------------------------------------ the graph
    def offered(self) -> list[str]:
        """The reliability each publisher of the topic offers."""
        infos = self.node.get_publishers_info_by_topic(self.node.resolve_topic_name(self.topic))
        return [_reliability_name(i.qos_profile) for i in infos]

    def reevaluate(self, now: float | None = None) -> None:
        """Look at the publishers; retire a finished handover; switch when the choice changed
        (also back, in the middle of a handover: the new subscription is then dropped)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            ho = self.handover
            if ho is not None and (ho.new_started or now - ho.since > HANDOVER_TIMEOUT_S):
                self._retire(ho.old)
                self.handover = ho = None
        if self.mode != "auto":
            return
        self.publishers = self.offered()
        want = choose_reliability(self.publishers)
        if want is None or want == self.reliability:
            return
        old_rel = self.reliability
        if ho is not None:
            # the choice went back before the new subscription delivered anything: the old one,
            # still matched and delivering, is what is wanted
            with self._lock:
                self._retire(ho.new)
                self.handover = None
        else:
            old_gen = max(self._subs)
            self._create(want)
            with self._lock:
                self.handover = Handover(old_gen, self._gen, now)
        self.reliability = want
        self.history.append(want)
        self.switches += 1
        if self.on_switch:
            why = f"{len(self.publishers)} publisher(s) offer {', '.join(sorted(set(self.publishers)))}"
            self.on_switch(self.topic, old_rel, want, why)

    def _retire(self, gen: int) -> None:
        sub = self._subs.pop(gen, None)
        if sub is not None:
            self.node.destroy_subscription(sub)

    def describe(self) -> str:
        pubs = f", {len(self.publishers)} publisher(s)" if self.mode == "auto" else ""
        return f"{self.reliability} ({self.mode}{pubs})"


def _reliability_name(profile: Any) -> str:
    """'reliable' / 'best_effort' / other lower-case names of a QoSProfile's reliability."""
    rel = getattr(profile, "reliability", None)
    name = getattr(rel, "name", str(rel)).lower()
    return name
