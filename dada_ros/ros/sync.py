"""Approximate-time synchronisation of the three camera inputs, with a time-jump reset.

:class:`ApproximateTimeSync` reproduces the matching rule of the Python
``message_filters.ApproximateTimeSynchronizer`` (ROS 2 Jazzy) so that the node behaves the same
with or without message_filters installed:

* each input keeps a queue keyed by header stamp (a repeated stamp replaces the old message);
  a queue longer than ``queue_size`` drops its OLDEST stamp;
* matching happens only when a message arrives: it is the pivot; from every other queue the
  messages within ``slop`` of the pivot are candidates, closest first; the first combination
  (in ``itertools.product`` order) whose spread ``max - min`` is strictly below ``slop`` is
  emitted and only those messages leave their queues. Output stamps may therefore go backwards.

What message_filters lacks, :class:`Synchronizer` adds in front of either backend: when the
stamps of one input go backwards (a bag loop, a simulator reset), every queue is cleared and
``on_reset`` is called. Without this the queues stay full of "future" leftovers, every new
(older-stamped) message is the oldest and is evicted at once, and the synchroniser stalls for
good.

:class:`Synchronizer` uses ``message_filters`` when it is importable (``backend="auto"``) and
the in-package implementation otherwise; both get the same guard. No ROS import at module level.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any, Callable

from .conversions import stamp_to_nanoseconds

Callback = Callable[..., None]


def _stamp_ns(msg: Any) -> int | None:
    """Header stamp of ``msg`` in ns, or None for a headerless / malformed message."""
    try:
        return stamp_to_nanoseconds(msg.header.stamp)
    except (AttributeError, TypeError, ValueError):
        return None


def check_sync_params(queue_size: int, slop: float) -> None:
    """Raise ValueError with a reason for a queue size < 1 or a slop <= 0 (nothing would match)."""
    if int(queue_size) != queue_size or queue_size < 1:
        raise ValueError(f"queue_size must be an integer >= 1, got {queue_size}")
    if not (slop > 0):
        raise ValueError(f"slop must be > 0 seconds (sets match when max - min < slop), got {slop}")


@dataclass
class SyncCounters:
    matched: int = 0  # sets emitted
    evicted: int = 0  # messages dropped because their queue was over queue_size
    headerless: int = 0  # messages without a usable header stamp (ignored)
    time_resets: int = 0  # queues cleared because an input's stamps went backwards


class ApproximateTimeSync:
    """In-package equivalent of ``message_filters.ApproximateTimeSynchronizer`` (see module doc).

    ``add(index, msg)`` feeds input ``index``; ``callback(*msgs)`` receives each matched set in
    input order. Thread-safe; the callback runs outside the internal lock.
    """

    def __init__(self, n_inputs: int, queue_size: int, slop: float, callback: Callback):
        check_sync_params(queue_size, slop)
        self.queues: list[dict[int, Any]] = [{} for _ in range(n_inputs)]
        self.queue_size = int(queue_size)
        self.slop_ns = int(round(slop * 1e9))
        self.callback = callback
        self.counters = SyncCounters()
        self.lock = threading.Lock()

    def set_params(self, queue_size: int, slop: float) -> None:
        check_sync_params(queue_size, slop)
        with self.lock:
            self.queue_size = int(queue_size)
            self.slop_ns = int(round(slop * 1e9))

    def reset(self) -> None:
        with self.lock:
            for q in self.queues:
                q.clear()

    def add(self, index: int, msg: Any) -> None:
        stamp = _stamp_ns(msg)
        if stamp is None:
            self.counters.headerless += 1
            return
        with self.lock:
            matched = self._add_locked(index, msg, stamp)
        if matched is not None:
            self.counters.matched += 1
            self.callback(*matched)

    def _add_locked(self, index: int, msg: Any, stamp: int) -> list | None:
        my_queue = self.queues[index]
        my_queue[stamp] = msg
        while len(my_queue) > self.queue_size:
            del my_queue[min(my_queue)]
            self.counters.evicted += 1
        if stamp not in my_queue:  # the new message was itself the oldest and got evicted
            return None
        candidates: list[list[int]] = []
        for i, q in enumerate(self.queues):
            if i == index:
                continue
            # closest first; ties keep queue (arrival) order, as sorted(key=delta) does upstream
            near = sorted(((abs(s - stamp), s) for s in q if abs(s - stamp) <= self.slop_ns), key=lambda d: d[0])
            if not near:
                return None
            candidates.append([s for _, s in near])
        for combo in itertools.product(*candidates):
            stamps = list(combo)
            stamps.insert(index, stamp)
            if max(stamps) - min(stamps) < self.slop_ns:
                msgs = [q.pop(s) for q, s in zip(self.queues, stamps)]
                return msgs
        return None


class _MessageFiltersBackend:
    """``message_filters.ApproximateTimeSynchronizer`` fed through SimpleFilter inputs, so the
    node keeps its own subscriptions (QoS, input checks) and the time-jump guard."""

    def __init__(self, n_inputs: int, queue_size: int, slop: float, callback: Callback):
        import message_filters  # noqa: PLC0415 - optional dependency

        check_sync_params(queue_size, slop)
        self._inputs = [message_filters.SimpleFilter() for _ in range(n_inputs)]
        self._sync = message_filters.ApproximateTimeSynchronizer(self._inputs, int(queue_size), float(slop))
        self._sync.registerCallback(self._emit)
        self._callback = callback
        self.counters = SyncCounters()

    def _emit(self, *msgs: Any) -> None:
        self.counters.matched += 1
        self._callback(*msgs)

    def set_params(self, queue_size: int, slop: float) -> None:
        from rclpy.duration import Duration  # noqa: PLC0415 - message_filters implies rclpy

        check_sync_params(queue_size, slop)
        with self._sync.lock:
            self._sync.queue_size = int(queue_size)
            self._sync.slop = Duration(seconds=float(slop))

    def reset(self) -> None:
        with self._sync.lock:
            for q in self._sync.queues:
                q.clear()

    def add(self, index: int, msg: Any) -> None:
        if _stamp_ns(msg) is None:
            self.counters.headerless += 1
            return
        self._inputs[index].signalMessage(msg)


def message_filters_available() -> bool:
    try:
        import message_filters  # noqa: F401, PLC0415
    except ImportError:
        return False
    return hasattr(message_filters, "ApproximateTimeSynchronizer")


class Synchronizer:
    """Approximate-time sync of ``n_inputs`` streams with a reset when time goes backwards.

    Args:
        n_inputs: number of inputs (the node uses 3: rgb, camera_info, depth).
        queue_size, slop: as in message_filters (slop in seconds).
        callback: ``callback(*msgs)`` for each matched set, in input order.
        on_reset: ``on_reset(reason)`` after a time jump cleared the queues.
        backend: ``"auto"`` (message_filters when importable), ``"message_filters"`` or
            ``"internal"``.
        jump_tolerance: seconds an input's stamp may step back without a reset. 0 by default:
            one publisher's stamps never go back unless its clock jumped (DDS keeps per-writer
            order, even best effort).
    """

    def __init__(self, n_inputs: int, queue_size: int, slop: float, callback: Callback,
                 on_reset: Callable[[str], None] | None = None, backend: str = "auto",
                 jump_tolerance: float = 0.0):
        if backend == "auto":
            backend = "message_filters" if message_filters_available() else "internal"
        if backend == "message_filters":
            self._impl: Any = _MessageFiltersBackend(n_inputs, queue_size, slop, callback)
        elif backend == "internal":
            self._impl = ApproximateTimeSync(n_inputs, queue_size, slop, callback)
        else:
            raise ValueError(f"unknown sync backend {backend!r}")
        self.backend = backend
        self.on_reset = on_reset
        self._tolerance_ns = int(round(jump_tolerance * 1e9))
        self._last: list[int | None] = [None] * n_inputs
        self._guard = threading.Lock()

    @property
    def counters(self) -> SyncCounters:
        return self._impl.counters

    def set_params(self, queue_size: int, slop: float) -> None:
        self._impl.set_params(queue_size, slop)

    def reset(self) -> None:
        """Forget everything queued and every input's last stamp."""
        with self._guard:
            self._last = [None] * len(self._last)
        self._impl.reset()

    def add(self, index: int, msg: Any) -> None:
        stamp = _stamp_ns(msg)
        jumped = ""
        if stamp is not None:
            with self._guard:
                last = self._last[index]
                if last is not None and stamp < last - self._tolerance_ns:
                    jumped = f"input {index} stamp went back {(last - stamp) * 1e-9:.3f} s"
                    self._last = [None] * len(self._last)
                    last = None
                # max(): a small step back within the tolerance must not lower the reference
                self._last[index] = stamp if last is None else max(stamp, last)
            if jumped:
                self._impl.reset()
                self._impl.counters.time_resets += 1
                if self.on_reset is not None:
                    self.on_reset(jumped)
        self._impl.add(index, msg)

