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
  were skipped (that is the newest-frame-only policy working, not a fault).

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

    def count(self, reason: str, n: int = 1) -> int:
        with self.lock:
            self.counters[reason] = self.counters.get(reason, 0) + n
            return self.counters[reason]

    def message(self, topic: str) -> None:
        with self.lock:
            self.messages[topic] = self.messages.get(topic, 0) + 1

    def synced(self) -> None:
        with self.lock:
            self.inputs.tick()

    def published(self, latency: float, frame: dict[str, Any]) -> None:
        with self.lock:
            self.outputs.tick()
            self.latencies.append(latency)
            self._latency_since_update.append(latency)
            self.last_frame = dict(frame)

    def set_rate(self, rate: float) -> None:
        with self.lock:
            for w in (self.inputs, self.outputs):
                w.min_freq, w.max_freq = (rate, rate) if rate > 0 else (0.0, float("inf"))

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counters)


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


class Diagnostics:
    """Builds the statuses from :class:`NodeStats` (see module doc) and publishes them."""

    TASKS = ("input", "output", "latency", "solver", "drops")

    def __init__(self, stats: NodeStats, clock: Callable[[], float] = time.monotonic,
                 max_delay: float = 5.0, min_delay: float = -1.0,
                 extra: dict[str, Callable[[], dict[str, Any]]] | None = None):
        self.stats = stats
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
            self.stats.inputs.run(stat, self.clock())
            for topic, n in self.stats.messages.items():
                stat.add(f"Messages received: {topic}", n)
        return stat

    def output(self, stat: Any) -> Any:
        with self.stats.lock:
            return self.stats.outputs.run(stat, self.clock())

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
                  "flow_ms", "warm_valid_fraction", "solve_ms", "frame_ms", "scale", "filled_fraction",
                  *LATENCY_STAGES):
            if k in frame:
                stat.add(k, _fmt(frame[k]))
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
