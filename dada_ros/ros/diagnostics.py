"""What the node reports on ``/diagnostics``: rates, latency, solver state, drops by reason.

:class:`NodeStats` collects events from the subscription callbacks and the worker thread
(thread-safe). :class:`Diagnostics` turns them into four statuses named like diagnostic_updater
names them (``"<node name>: <task>"``):

* ``input``   synced frame sets received -- FrequencyStatus semantics and messages
  ("No events recorded." ERROR, "Frequency too low." / "Frequency too high." WARN,
  "Desired frequency met" OK; "Actual frequency (Hz)", ...);
* ``output``  frames published -- the same frequency check;
* ``latency`` stamp -> publish delay -- TimeStampStatus semantics (limits -1 s .. 5 s);
* ``solver``  last frame's method, device, init mode, cold reason, iterations, residual, flow ms;
* ``drops``   per-reason counters; WARN while bad input arrives, OK when only stale frames
  were skipped (that is the newest-frame-only policy working, not a fault);
* ``accounting`` where every input message went, per topic (:class:`Ledger`): received =
  published (part of a published frame) + dropped by reason (unmatched, evicted, stale, invalid,
  ...) + pending (waiting in a sync queue or for the worker) + uncounted (0 unless a bug). WARN
  when the loss rate since the last update (non-stale drops / received) passes
  ``loss_warn_fraction``, when one input topic arrives markedly slower than another (messages
  lost before the node: QoS), or when anything is uncounted.

Frequency checks: ``expected_rate`` > 0 is a fixed target (FrequencyStatus min = max = rate).
``expected_rate`` 0 (the default) is "auto": the synced-set rate must keep up with the fastest
input topic (every message should become part of a set) and the output rate with the lower of
the set rate and what the measured frame time allows; a shortfall is WARN "Frequency too low.".

``diagnostic_updater.Updater`` publishes them when it is importable; otherwise an equivalent
timer publishes the same ``diagnostic_msgs/DiagnosticArray`` shape directly.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

OK, WARN, ERROR, STALE = 0, 1, 2, 3

# Counter keys that are normal operation, not bad input.
BENIGN_REASONS = ("dropped_stale",)
# Per-message fates of the ledger that are the newest-frame-only policy working (not a loss).
BENIGN_FATES = ("stale",)
# Events counted in ``counters`` that are conditions, not a message's fate (a message they
# concern also gets a fate of its own, so the ledger does not count them).
INPUT_TOPIC_KEYS = ("rgb", "camera_info", "depth")
# One input topic arriving below this fraction of the fastest one means messages are lost
# before the node (transport / QoS), not by it.
TOPIC_RATE_RATIO_WARN = 0.8
# Per-frame latency split the node records (see dada_ros.ros.node.latency_stages), in ms.
LATENCY_STAGES = ("t_input_ms", "t_decode_ms", "t_align_ms", "t_features_ms", "t_loop_ms", "t_other_ms",
                  "t_depth_out_ms", "t_cloud_ms")


class StatusWrapper:
    """The part of ``diagnostic_updater.DiagnosticStatusWrapper`` the tasks use."""

    def __init__(self, name: str = ""):
        self.name = name
        self.level = ERROR
        self.message = "No message was set"
        self.values: list[tuple[str, str]] = []

    def summary(self, level: int, message: str) -> None:
        self.level, self.message = level, message

    def add(self, key: str, value: Any) -> None:
        self.values.append((key, str(value)))


@dataclass
class FrequencyWindow:
    """diagnostic_updater.FrequencyStatus: events counted over the last ``window`` updates."""

    min_freq: float = 0.0
    max_freq: float = float("inf")
    tolerance: float = 0.1
    window: int = 5
    count: int = 0
    _hist: deque = field(default_factory=deque)

    def tick(self) -> None:
        self.count += 1

    def run(self, stat: StatusWrapper, now: float) -> StatusWrapper:
        self._hist.append((now, self.count))
        while len(self._hist) > self.window:
            self._hist.popleft()
        t0, c0 = self._hist[0]
        events, duration = self.count - c0, now - t0
        freq = events / duration if duration > 0 else 0.0
        if events == 0:
            stat.summary(ERROR, "No events recorded.")
        elif freq < self.min_freq * (1 - self.tolerance):
            stat.summary(WARN, "Frequency too low.")
        elif freq > self.max_freq * (1 + self.tolerance):
            stat.summary(WARN, "Frequency too high.")
        else:
            stat.summary(OK, "Desired frequency met")
        stat.add("Events in window", events)
        stat.add("Events since startup", self.count)
        stat.add("Duration of window (s)", f"{duration:.3f}")
        stat.add("Actual frequency (Hz)", f"{freq:.3f}")
        if self.min_freq > 0:
            stat.add("Minimum acceptable frequency (Hz)", f"{self.min_freq * (1 - self.tolerance):.3f}")
        if self.max_freq < float("inf"):
            stat.add("Maximum acceptable frequency (Hz)", f"{self.max_freq * (1 + self.tolerance):.3f}")
        return stat


class Ledger:
    """Where every input message went, per topic (see the module doc). Not locked itself:
    :class:`NodeStats` holds its lock around every call."""

    def __init__(self, topics: tuple[str, ...] = INPUT_TOPIC_KEYS) -> None:
        self.topics = topics
        self.received = {t: 0 for t in topics}
        self.published = {t: 0 for t in topics}
        self.dropped: dict[str, dict[str, int]] = {t: {} for t in topics}
        self.in_flight_sets = 0  # matched sets handed to the worker and not yet decided

    def drop(self, topic: str, reason: str, n: int = 1) -> None:
        d = self.dropped[topic]
        d[reason] = d.get(reason, 0) + n

    def dropped_total(self, topic: str, benign: bool = True) -> int:
        return sum(v for k, v in self.dropped[topic].items() if benign or k not in BENIGN_FATES)

    def balance(self, queued: dict[str, int] | None = None) -> dict[str, dict[str, int]]:
        """Per topic: received, published, dropped (all reasons), pending (sync queue + worker),
        uncounted = received - published - dropped - pending."""
        out = {}
        for t in self.topics:
            pending = (queued or {}).get(t, 0) + self.in_flight_sets
            dropped = self.dropped_total(t)
            out[t] = {"received": self.received[t], "published": self.published[t], "dropped": dropped,
                      "pending": pending,
                      "uncounted": self.received[t] - self.published[t] - dropped - pending}
        return out


class NodeStats:
    """Thread-safe counters and recent values shared by the callbacks, the worker and the
    diagnostics timer."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counters: dict[str, int] = {}
        self.inputs = FrequencyWindow()
        self.outputs = FrequencyWindow()
        self.messages: dict[str, int] = {"rgb": 0, "camera_info": 0, "depth": 0}
        self.latencies: deque[float] = deque(maxlen=200)
        self._latency_since_update: list[float] = []
        self.last_frame: dict[str, Any] = {}
        self.notes: dict[str, str] = {}  # standing conditions, e.g. a CUDA fallback
        self._drops_at_update: dict[str, int] = {}
        self.ledger = Ledger()
        # () -> {topic: messages waiting in the synchroniser's queues} (set by the node)
        self.queued: Callable[[], dict[str, int]] = dict
        self.frame_ms: deque[float] = deque(maxlen=20)
        self.auto_rate = True  # expected_rate 0: the frequency checks follow the measured rates
        self._topic_hist: deque = deque()

    def count(self, reason: str, n: int = 1) -> int:
        with self.lock:
            self.counters[reason] = self.counters.get(reason, 0) + n
            return self.counters[reason]

    def message(self, topic: str) -> None:
        with self.lock:
            self.messages[topic] = self.messages.get(topic, 0) + 1
            if topic in self.ledger.received:
                self.ledger.received[topic] += 1

    def drop_message(self, topic: str, reason: str, n: int = 1) -> None:
        """The fate of ``n`` messages of one input topic: dropped for ``reason``."""
        with self.lock:
            self.ledger.drop(topic, reason, n)

    def set_entered(self) -> None:
        """A matched set was handed to the worker (its three messages are pending)."""
        with self.lock:
            self.ledger.in_flight_sets += 1

    def drop_set(self, reason: str, in_flight: bool = True) -> None:
        """The fate of a whole matched set (one message of each topic): dropped for ``reason``."""
        with self.lock:
            for t in self.ledger.topics:
                self.ledger.drop(t, reason)
            if in_flight:
                self.ledger.in_flight_sets -= 1

    def balance(self) -> dict[str, dict[str, int]]:
        """:meth:`Ledger.balance` with the synchroniser's queued messages."""
        queued = self.queued()
        with self.lock:
            return self.ledger.balance(queued)

    def synced(self) -> None:
        with self.lock:
            self.inputs.tick()

    def published(self, latency: float, frame: dict[str, Any]) -> None:
        with self.lock:
            for t in self.ledger.topics:
                self.ledger.published[t] += 1
            self.ledger.in_flight_sets -= 1
            if "frame_ms" in frame:
                self.frame_ms.append(float(frame["frame_ms"]))
            self.outputs.tick()
            self.latencies.append(latency)
            self._latency_since_update.append(latency)
            self.last_frame = dict(frame)

    def set_rate(self, rate: float) -> None:
        with self.lock:
            self.auto_rate = not rate > 0
            for w in (self.inputs, self.outputs):
                w.min_freq, w.max_freq = (rate, rate) if rate > 0 else (0.0, float("inf"))

    def topic_rates(self, now: float, window: int = 5) -> dict[str, float]:
        """Messages per second received per input topic over the last ``window`` calls (caller
        holds the lock; called once per diagnostics update)."""
        self._topic_hist.append((now, dict(self.ledger.received)))
        while len(self._topic_hist) > window:
            self._topic_hist.popleft()
        t0, c0 = self._topic_hist[0]
        dt = now - t0
        return {t: (n - c0.get(t, 0)) / dt if dt > 0 else 0.0 for t, n in self.ledger.received.items()}

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counters)


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


class Diagnostics:
    """Builds the statuses from :class:`NodeStats` (see module doc) and publishes them."""

    TASKS = ("input", "output", "latency", "solver", "drops", "accounting")

    def __init__(self, stats: NodeStats, clock: Callable[[], float] = time.monotonic,
                 max_delay: float = 5.0, min_delay: float = -1.0,
                 extra: dict[str, Callable[[], dict[str, Any]]] | None = None,
                 loss_warn_fraction: float = 0.1):
        self.stats = stats
        self.loss_warn_fraction = loss_warn_fraction
        self._topic_rates: dict[str, float] = {}
        self._ledger_before: tuple[dict[str, int], dict[str, int]] = ({}, {})
        self.clock = clock
        self.max_delay, self.min_delay = max_delay, min_delay
        # task -> () -> {key: value} appended to that task's values (e.g. the conversion backends)
        self.extra = dict(extra or {})

    def _add_extra(self, task: str, stat: Any) -> Any:
        fn = self.extra.get(task)
        if fn is not None:
            for k, v in fn().items():
                stat.add(k, v)
        return stat

    # -- tasks (each fills a DiagnosticStatusWrapper-like ``stat``) --------------------------
    def input(self, stat: Any) -> Any:
        with self.stats.lock:
            now = self.clock()
            rates = self.stats.topic_rates(now)
            self._topic_rates = rates
            if self.stats.auto_rate:
                # every received message should end up in a set: sets keep up with the fastest topic
                self.stats.inputs.min_freq = max(rates.values(), default=0.0)
            self.stats.inputs.run(stat, now)
            for topic, n in self.stats.messages.items():
                stat.add(f"Messages received: {topic}", n)
            for topic, r in rates.items():
                stat.add(f"Message rate (Hz): {topic}", f"{r:.3f}")
        return stat

    def output(self, stat: Any) -> Any:
        with self.stats.lock:
            now = self.clock()
            if self.stats.auto_rate:
                hist = self.stats.inputs._hist
                sets = (hist[-1][1] - hist[0][1]) / (hist[-1][0] - hist[0][0]) if len(hist) > 1 and \
                    hist[-1][0] > hist[0][0] else 0.0
                frame_ms = sorted(self.stats.frame_ms)
                # a busy worker publishes at 1 / frame time (newest-frame-only), an idle one at the
                # set rate; 0.8: room for the time between frames that is not in frame_ms
                cap = 1000.0 / frame_ms[len(frame_ms) // 2] if frame_ms and frame_ms[len(frame_ms) // 2] > 0 else sets
                self.stats.outputs.min_freq = 0.8 * min(sets, cap)
            return self.stats.outputs.run(stat, now)

    def latency(self, stat: Any) -> Any:
        with self.stats.lock:
            recent = self.stats._latency_since_update
            self.stats._latency_since_update = []
            window = sorted(self.stats.latencies)
        if not recent:
            stat.summary(WARN, "No data since last update.")
        elif max(recent) > self.max_delay:
            stat.summary(ERROR, "Timestamps too far in past seen.")
        elif min(recent) < self.min_delay:
            stat.summary(ERROR, "Timestamps too far in future seen.")
        else:
            stat.summary(OK, "Timestamps are reasonable.")
        stat.add("Latency stamp->publish last (s)", f"{recent[-1]:.4f}" if recent else "n/a")
        if window:
            stat.add("Latency median (s)", f"{window[len(window) // 2]:.4f}")
            stat.add("Latency max (s)", f"{window[-1]:.4f}")
        stat.add("Earliest acceptable delay (s)", self.min_delay)
        stat.add("Latest acceptable delay (s)", self.max_delay)
        return stat

    def solver(self, stat: Any) -> Any:
        with self.stats.lock:
            frame = dict(self.stats.last_frame)
            notes = dict(self.stats.notes)
        if not frame:
            stat.summary(OK if not notes else WARN, "; ".join(notes.values()) or "No frame processed yet")
        else:
            msg = f"{frame.get('init_mode', '?')} start, {frame.get('iterations', '?')} iterations"
            if frame.get("cold_reason"):
                msg += f" ({frame['cold_reason']})"
            if notes:
                msg += "; " + "; ".join(notes.values())
            stat.summary(WARN if notes else OK, msg)
        for k in ("method", "device", "init_mode", "cold_reason", "iterations", "residual", "converged",
                  "flow_ms", "mean_flow_px", "flow_tier", "accept_ms", "warm_region_fraction", "warm_valid_fraction", "warm_declined_in_row", "solve_ms",
                  "prepare_overlapped", "prepare_wait_ms", "frame_ms", "scale", "filled_fraction",
                  "range_outliers", "range_worst",
                  *LATENCY_STAGES):
            if k in frame:
                stat.add(k, _fmt(frame[k]))
        for k, v in (frame.get("guard") or {}).items():  # method dada behind the cross-scale guard
            stat.add(f"guard_{k}", _fmt(v))
        return stat

    def drops(self, stat: Any) -> Any:
        with self.stats.lock:
            counters = dict(self.stats.counters)
            before = self.stats._drops_at_update
            self.stats._drops_at_update = counters
        new = {k: v - before.get(k, 0) for k, v in counters.items() if v != before.get(k, 0)}
        bad_new = {k: v for k, v in new.items() if k not in BENIGN_REASONS}
        if bad_new:
            stat.summary(WARN, "Bad input since last update: " + ", ".join(f"{k} x{v}" for k, v in sorted(bad_new.items())))
        elif new:
            stat.summary(OK, f"Skipped {new.get('dropped_stale', 0)} stale frame(s) (newest-frame-only policy)")
        else:
            stat.summary(OK, "No drops since last update")
        stat.add("Total", sum(counters.values()))
        for k in sorted(counters):
            stat.add(k, counters[k])
        return stat

    def accounting(self, stat: Any) -> Any:
        """Per topic: received = published + dropped (by reason) + pending + uncounted."""
        bal = self.stats.balance()
        with self.stats.lock:
            ledger = self.stats.ledger
            lost_now = {t: ledger.dropped_total(t, benign=False) for t in ledger.topics}
            received_now = dict(ledger.received)
            dropped = {t: dict(d) for t, d in ledger.dropped.items()}
            before = self._ledger_before
            self._ledger_before = (received_now, lost_now)
        problems = []
        rates_window = {}
        for t in bal:
            d_recv = received_now[t] - before[0].get(t, 0)
            d_lost = lost_now[t] - before[1].get(t, 0)
            rates_window[t] = d_lost / d_recv if d_recv > 0 else 0.0
            if d_recv > 0 and rates_window[t] > self.loss_warn_fraction:
                problems.append(f"{t} loss {100 * rates_window[t]:.0f}% ({d_lost}/{d_recv})")
            if bal[t]["uncounted"]:
                problems.append(f"{t}: {bal[t]['uncounted']} message(s) uncounted")
        rates = self._topic_rates
        if rates and max(rates.values()) > 0:
            slow = min(rates, key=rates.get)
            fast = max(rates, key=rates.get)
            if rates[slow] < TOPIC_RATE_RATIO_WARN * rates[fast]:
                problems.append(f"{slow} arrives at {rates[slow]:.2f} Hz, {fast} at {rates[fast]:.2f} Hz: "
                                "messages lost before the node (check the input QoS)")
        if problems:
            stat.summary(WARN, "; ".join(problems))
        else:
            stat.summary(OK, "Every input message accounted for")
        stat.add("Loss warn fraction", self.loss_warn_fraction)
        for t, b in bal.items():
            for k, v in b.items():
                stat.add(f"{t}: {k}", v)
            for reason in sorted(dropped[t]):
                stat.add(f"{t}: dropped {reason}", dropped[t][reason])
            stat.add(f"{t}: loss rate since last update", f"{rates_window[t]:.4f}")
        return stat

    def run(self, task: str, stat: Any) -> Any:
        """Fill ``stat`` for ``task`` (one of :attr:`TASKS`), with its ``extra`` values."""
        return self._add_extra(task, getattr(self, task)(stat))

    def statuses(self, node_name: str) -> list[StatusWrapper]:
        """All statuses, named ``"<node_name>: <task>"`` (the fallback publisher's content)."""
        out = []
        for task in self.TASKS:
            s = self.run(task, StatusWrapper(task))
            s.name = f"{node_name}: {task}"
            out.append(s)
        return out


def diagnostic_updater_available() -> bool:
    try:
        import diagnostic_updater  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def to_diagnostic_array(statuses: list[StatusWrapper], stamp: Any, hardware_id: str = "none") -> Any:
    """diagnostic_msgs/DiagnosticArray of ``statuses`` (levels as the bytes 0..3)."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue  # noqa: PLC0415

    arr = DiagnosticArray()
    arr.header.stamp = stamp
    for s in statuses:
        arr.status.append(DiagnosticStatus(level=bytes([s.level]), name=s.name, message=s.message,
                                           hardware_id=hardware_id,
                                           values=[KeyValue(key=k, value=v) for k, v in s.values]))
    return arr


class DiagnosticsPublisher:
    """Publishes :class:`Diagnostics` on ``/diagnostics`` every ``period`` seconds, through
    diagnostic_updater when importable, else with an own timer and publisher."""

    def __init__(self, node: Any, diagnostics: Diagnostics, period: float, backend: str = "auto"):
        if backend == "auto":
            backend = "diagnostic_updater" if diagnostic_updater_available() else "internal"
        self.backend = backend
        self.node = node
        self.diagnostics = diagnostics
        if backend == "diagnostic_updater":
            import diagnostic_updater  # noqa: PLC0415

            self.updater = diagnostic_updater.Updater(node, period=period)
            self.updater.setHardwareID("none")
            for task in Diagnostics.TASKS:
                fn = functools.partial(diagnostics.run, task)
                self.updater.add(task, lambda stat, fn=fn: self._run_native(stat, fn))
        else:
            from diagnostic_msgs.msg import DiagnosticArray  # noqa: PLC0415

            self.pub = node.create_publisher(DiagnosticArray, "/diagnostics", 1)
            self.timer = node.create_timer(period, self.update)

    @staticmethod
    def _run_native(stat: Any, fn: Callable[[Any], Any]) -> Any:
        # diagnostic_updater wants the level as bytes; our tasks use ints.
        tmp = fn(StatusWrapper(stat.name))
        stat.summary(bytes([tmp.level]), tmp.message)
        for k, v in tmp.values:
            stat.add(k, v)
        return stat

    def update(self) -> None:
        statuses = self.diagnostics.statuses(self.node.get_name())
        self.pub.publish(to_diagnostic_array(statuses, self.node.get_clock().now().to_msg()))
