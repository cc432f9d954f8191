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

What message_filters lacks, :class:`Synchronizer` adds in front of either backend:

* a time-jump guard: when the stamps of one input go back by more than ``jump_tolerance``
  (default :data:`DEFAULT_JUMP_TOLERANCE` = 0.5 s: a bag loop, a simulator reset), every queue
  is cleared and ``on_reset`` is called. Without this the queues stay full of "future"
  leftovers, every new (older-stamped) message is the oldest and is evicted at once, and the
  synchroniser stalls for good. Steps back within the tolerance (stamp jitter, reordering within
  one topic) are ordinary messages: no reset, the approximate-time matching pairs them.
  Inputs rarely show a jump at the same moment (partners out of step: one topic a message or
  a few ahead), so the guard follows timelines, numbered: each input is on the timeline of its
  last jump back and keeps its own last stamp, so its own step back is always seen.

  - The first input to step back off the newest timeline starts a new one: every queue is
    cleared (``time_jump``: all of it came before the jump) and ``on_reset`` is called. An input
    whose last stamp is already within the tolerance of the landing (it missed the whole timeline
    being left, so for it time went forward) is on the new timeline: its messages from the
    landing on are kept.
  - An input still behind that then steps back onto a newer timeline the others are on (its
    stamp within the tolerance of the stamps seen there) shows the same jump, not a new one: no
    reset; only its own queued messages, all from before its jump, are dropped (``time_jump``).
    The others' queues, already on the new timeline, are kept, so the first frame after a jump
    is not lost whichever input shows the jump first. Its stragglers sent before that step back
    are queued (and leave with it, or as ``unmatched``).
  - A step back that lands on no timeline seen yet is a new jump, even soon after another one:
    a second jump is never taken for the first one's echo (issue 25: it was, and the reset that
    followed threw away the first good frame after the second jump).
  - An input that sends ``queue_size + 1`` messages without stepping back did not jump (e.g.
    another input's stamp was only late by more than the tolerance): it counts as on the newest
    timeline again, so its next step back is a new jump.

  Limits: a jump of less than the tolerance plus the partners' lag cannot be told from stamp
  jitter; an input that misses a whole timeline and is also the first to show the next one
  starts a timeline of its own, and its messages go with the reset when the others arrive.
* accounting: every message that leaves a queue without being part of a matched set is
  reported to ``on_drop(index, reason)``: ``unmatched`` (pushed out of a full queue without a
  partner), ``duplicate_stamp`` (replaced by a newer message with the same stamp),
  ``time_jump`` (cleared by the guard), ``headerless`` (no usable stamp). ``queued()`` says what
  is waiting. So every message added is in a matched set, dropped with a reason, or queued.

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
DropCallback = Callable[[int, str], None]
# Steps back of one input's stamps up to this are jitter / reordering, not a time jump: well
# above real stamp noise (tens of ms) and below any bag loop or simulator reset worth resetting
# for (a bag loop jumps back by the bag's length).
DEFAULT_JUMP_TOLERANCE = 0.5
# slop is compared in whole nanoseconds: below 1 ns it would round to 0 and nothing would match.
MIN_SLOP = 1e-9
# below any stamp: discard_after(index, _FAR_PAST, ...) drops all of an input's queue
_FAR_PAST = -(1 << 62)
# stamp spans kept of the newest timelines (an input more jumps behind than this rejoins by the lapse)
_MAX_TIMELINES = 16


def _drop_stamps(lock: Any, queue: dict, drop: Callable[[int], bool]) -> int:
    """Delete the entries of ``queue`` (stamp -> message) whose stamp ``drop`` selects, under
    ``lock``; returns how many (the caller reports them to the accounting)."""
    with lock:
        gone = [s for s in queue if drop(s)]
        for s in gone:
            del queue[s]
    return len(gone)


def _stamp_ns(msg: Any) -> int | None:
    """Header stamp of ``msg`` in ns, or None for a headerless / malformed message."""
    try:
        return stamp_to_nanoseconds(msg.header.stamp)
    except (AttributeError, TypeError, ValueError):
        return None


def check_sync_params(queue_size: int, slop: float) -> None:
    """Raise ValueError with a reason for a queue size < 1 or a slop < 1 ns (nothing would match)."""
    if int(queue_size) != queue_size or queue_size < 1:
        raise ValueError(f"queue_size must be an integer >= 1, got {queue_size}")
    if not (slop >= MIN_SLOP):
        raise ValueError(f"slop must be >= {MIN_SLOP} s (stamps are compared in whole nanoseconds; sets "
                         f"match when max - min < slop), got {slop}")


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

    def __init__(self, n_inputs: int, queue_size: int, slop: float, callback: Callback,
                 on_drop: DropCallback | None = None):
        check_sync_params(queue_size, slop)
        self.on_drop = on_drop
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

    def _dropped(self, index: int, reason: str, n: int = 1) -> None:
        if self.on_drop is not None:
            for _ in range(n):
                self.on_drop(index, reason)

    def queued(self) -> list[int]:
        with self.lock:
            return [len(q) for q in self.queues]

    def discard_after(self, index: int, stamp_ns: int, reason: str) -> None:
        """Drop input ``index``'s queued messages stamped after ``stamp_ns`` (counted ``reason``)."""
        self._dropped(index, reason, _drop_stamps(self.lock, self.queues[index], lambda s: s > stamp_ns))

    def discard_before(self, index: int, stamp_ns: int, reason: str) -> None:
        """Drop input ``index``'s queued messages stamped before ``stamp_ns`` (counted ``reason``)."""
        self._dropped(index, reason, _drop_stamps(self.lock, self.queues[index], lambda s: s < stamp_ns))

    def reset(self) -> None:
        with self.lock:
            sizes = [len(q) for q in self.queues]
            for q in self.queues:
                q.clear()
        for i, n in enumerate(sizes):
            self._dropped(i, "time_jump", n)

    def add(self, index: int, msg: Any) -> None:
        stamp = _stamp_ns(msg)
        if stamp is None:
            self.counters.headerless += 1
            self._dropped(index, "headerless")
            return
        with self.lock:
            matched = self._add_locked(index, msg, stamp)
        if matched is not None:
            self.counters.matched += 1
            self.callback(*matched)

    def _add_locked(self, index: int, msg: Any, stamp: int) -> list | None:
        my_queue = self.queues[index]
        if stamp in my_queue:
            self._dropped(index, "duplicate_stamp")
        my_queue[stamp] = msg
        while len(my_queue) > self.queue_size:
            del my_queue[min(my_queue)]
            self.counters.evicted += 1
            self._dropped(index, "unmatched")
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

    def __init__(self, n_inputs: int, queue_size: int, slop: float, callback: Callback,
                 on_drop: DropCallback | None = None):
        import message_filters  # noqa: PLC0415 - optional dependency

        check_sync_params(queue_size, slop)
        self.on_drop = on_drop
        self._order = threading.Lock()  # one add at a time: the drop accounting compares queue sizes
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

    def _dropped(self, index: int, reason: str, n: int = 1) -> None:
        if self.on_drop is not None:
            for _ in range(n):
                self.on_drop(index, reason)

    def queued(self) -> list[int]:
        with self._sync.lock:
            return [len(q) for q in self._sync.queues]

    def discard_after(self, index: int, stamp_ns: int, reason: str) -> None:
        q = self._sync.queues[index]
        self._dropped(index, reason, _drop_stamps(self._sync.lock, q, lambda s: s > stamp_ns))

    def discard_before(self, index: int, stamp_ns: int, reason: str) -> None:
        """Drop input ``index``'s queued messages stamped before ``stamp_ns`` (counted ``reason``)."""
        q = self._sync.queues[index]
        self._dropped(index, reason, _drop_stamps(self._sync.lock, q, lambda s: s < stamp_ns))

    def reset(self) -> None:
        with self._sync.lock:
            sizes = [len(q) for q in self._sync.queues]
            for q in self._sync.queues:
                q.clear()
        for i, n in enumerate(sizes):
            self._dropped(i, "time_jump", n)

    def add(self, index: int, msg: Any) -> None:
        stamp = _stamp_ns(msg)
        if stamp is None:
            self.counters.headerless += 1
            self._dropped(index, "headerless")
            return
        with self._order:
            # message_filters does not say what it drops: compare the queues before and after
            # (a message that left without being matched was replaced or pushed out)
            with self._sync.lock:
                before = [len(q) for q in self._sync.queues]
                duplicate = stamp in self._sync.queues[index]
            matched = self.counters.matched
            self._inputs[index].signalMessage(msg)
            with self._sync.lock:
                after = [len(q) for q in self._sync.queues]
            in_set = 1 if self.counters.matched > matched else 0
        for i, (b, a) in enumerate(zip(before, after)):
            left = b + (1 if i == index else 0) - a - in_set
            if i == index and duplicate and left > 0:
                self._dropped(i, "duplicate_stamp")
                left -= 1
            self.counters.evicted += max(0, left)
            self._dropped(i, "unmatched", max(0, left))


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
        jump_tolerance: seconds an input's stamp may step back without a reset (default
            :data:`DEFAULT_JUMP_TOLERANCE`): stamp jitter and reordering within one topic are not
            a jump; DDS keeps per-writer order, but drivers stamp with jitter and several
            writers (or a relay) can interleave.
        on_drop: ``on_drop(index, reason)`` for each message that leaves without a set.
    """

    def __init__(self, n_inputs: int, queue_size: int, slop: float, callback: Callback,
                 on_reset: Callable[[str], None] | None = None, backend: str = "auto",
                 jump_tolerance: float = DEFAULT_JUMP_TOLERANCE, on_drop: DropCallback | None = None):
        if backend == "auto":
            backend = "message_filters" if message_filters_available() else "internal"
        if backend == "message_filters":
            self._impl: Any = _MessageFiltersBackend(n_inputs, queue_size, slop, callback, on_drop)
        elif backend == "internal":
            self._impl = ApproximateTimeSync(n_inputs, queue_size, slop, callback, on_drop)
        else:
            raise ValueError(f"unknown sync backend {backend!r}")
        check_jump_tolerance(jump_tolerance)
        self.backend = backend
        self.on_reset = on_reset
        self._tolerance_ns = int(round(jump_tolerance * 1e9))
        # per input: highest stamp since its last jump back (None before its first message)
        self._last: list[int | None] = [None] * n_inputs
        # per input: the timeline it is on (see the module doc); the newest one any input is on;
        # [lowest, highest] stamp seen on each timeline some input is still on
        self._timeline = [0] * n_inputs
        self._newest = 0
        self._spans: dict[int, list[int]] = {}
        # per input behind the newest timeline: messages since then without a step back
        self._behind = [0] * n_inputs
        self._guard = threading.Lock()

    @property
    def counters(self) -> SyncCounters:
        return self._impl.counters

    def set_params(self, queue_size: int, slop: float, jump_tolerance: float | None = None) -> None:
        if jump_tolerance is not None:
            check_jump_tolerance(jump_tolerance)
        self._impl.set_params(queue_size, slop)
        if jump_tolerance is not None:
            with self._guard:
                self._tolerance_ns = int(round(jump_tolerance * 1e9))

    def queued(self) -> list[int]:
        """Messages waiting in each input's queue."""
        return self._impl.queued()

    def flush(self, reason: str = "shutdown") -> None:
        """Drop everything queued (each message reported to ``on_drop`` with ``reason``), e.g.
        at shutdown, so the accounting closes with nothing pending."""
        for i in range(len(self._last)):
            self._impl.discard_after(i, _FAR_PAST, reason)

    def reset(self) -> None:
        """Forget everything queued and every input's last stamp (queued messages: ``time_jump``)."""
        with self._guard:
            self._forget()
        self._impl.reset()

    def _forget(self) -> None:
        n = len(self._last)
        self._last = [None] * n
        self._timeline = [0] * n
        self._newest = 0
        self._spans = {}
        self._behind = [0] * n

    def _queue_size(self) -> int:
        return int(getattr(self._impl, "queue_size", 0) or getattr(
            getattr(self._impl, "_sync", None), "queue_size", 10))

    def _landing(self, index: int, stamp: int) -> int | None:
        """The timeline newer than input ``index``'s that its step back to ``stamp`` lands on
        (the oldest one whose stamps so far are within the tolerance of ``stamp``), or None."""
        for k in range(max(self._timeline[index] + 1, self._newest - _MAX_TIMELINES + 1), self._newest + 1):
            if self._fits(k, stamp):
                return k
        return None

    def _fits(self, timeline: int, stamp: int) -> bool:
        span = self._spans.get(timeline)
        return span is not None and span[0] - self._tolerance_ns <= stamp <= span[1] + self._tolerance_ns

    def _track(self, index: int, stamp: int) -> tuple[str, str, list[int]]:
        """Follow input ``index``'s timeline (under ``_guard``). Returns (action, reason, arrived):
        action "reset" (a new jump: ``reason`` says which), "rejoin" (this input shows a jump
        the others already made: drop its own queued messages) or ""; ``arrived``: on a reset,
        the other inputs whose stamps are already at the landing (keep their messages)."""
        action, reason, arrived = "", "", []
        last = self._last[index]
        if last is None:
            # its first message: on the newest timeline whose stamps it fits (an input that lags
            # from its very start may still send the timeline before a jump), else the newest
            self._timeline[index] = next((k for k in sorted(self._spans, reverse=True)
                                          if self._fits(k, stamp)), self._newest)
            self._behind[index] = 0
        if last is not None and stamp < last - self._tolerance_ns:
            landing = self._landing(index, stamp)
            if landing is None:
                self._newest += 1
                landing = self._newest
                action, reason = "reset", f"input {index} stamp went back {(last - stamp) * 1e-9:.3f} s"
                self._behind = [0] * len(self._last)  # every other input is behind now
                # an input whose stamps are already there (it missed the whole timeline this one
                # leaves, so for it time went forward) is on the new timeline: its messages from
                # the landing on are kept
                tol = self._tolerance_ns
                arrived = [j for j, v in enumerate(self._last)
                           if j != index and v is not None and stamp - tol <= v <= stamp + tol]
                for j in arrived:
                    self._timeline[j] = self._newest
            else:
                action = "rejoin"
            self._timeline[index] = landing
            self._behind[index] = 0
            last = None
        elif self._timeline[index] < self._newest:
            # an old-timeline straggler; after queue_size + 1 of them without a step back this
            # input did not jump (e.g. another input's stamp was only late): it is on the newest
            # timeline, so its next step back beyond the tolerance is a new jump again
            self._behind[index] += 1
            if self._behind[index] > self._queue_size():
                self._timeline[index] = self._newest
                self._behind[index] = 0
        # max(): a small step back within the tolerance must not lower the reference
        self._last[index] = stamp if last is None else max(stamp, last)
        k = self._timeline[index]
        span = self._spans.setdefault(k, [stamp, stamp])
        span[0], span[1] = min(span[0], stamp), max(span[1], stamp)
        oldest = max(min(self._timeline), self._newest - _MAX_TIMELINES + 1)
        for old in [t for t in self._spans if t < oldest]:
            del self._spans[old]
        return action, reason, arrived

    def add(self, index: int, msg: Any) -> None:
        stamp = _stamp_ns(msg)
        if stamp is not None:
            with self._guard:
                action, reason, arrived = self._track(index, stamp)
            if action == "reset":
                # everything queued came before this jump (inputs that show it later rejoin),
                # but for inputs already at the landing stamp
                for j in range(len(self._last)):
                    if j in arrived:
                        self._impl.discard_before(j, stamp - self._tolerance_ns, "time_jump")
                    else:
                        self._impl.discard_after(j, _FAR_PAST, "time_jump")
                self._impl.counters.time_resets += 1
                if self.on_reset is not None:
                    self.on_reset(reason)
            elif action == "rejoin":
                # the jump the others already made: this input's queued messages all came before
                # it (stragglers) and can never match now; the others' are on the new timeline
                self._impl.discard_after(index, _FAR_PAST, "time_jump")
        self._impl.add(index, msg)


def check_jump_tolerance(tolerance: float) -> None:
    """Raise ValueError for a negative or non-finite jump tolerance."""
    if not (0 <= tolerance < float("inf")):
        raise ValueError(f"jump tolerance must be a finite number of seconds >= 0, got {tolerance}")
