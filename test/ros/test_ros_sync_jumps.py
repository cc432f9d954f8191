"""Sequences of time jumps with the inputs out of step (issue 25, item 5): the time-jump guard
never throws away a message of a complete set after the last jump, and every message added is
matched, dropped with a reason, or still queued."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from dada_ros.ros.sync import Synchronizer, message_filters_available

try:
    from builtin_interfaces.msg import Time as Stamp
except ImportError:
    Stamp = SimpleNamespace

BACKENDS = ["internal"] + (["message_filters"] if message_filters_available() else [])
RGB, INFO, DEPTH = 0, 1, 2
PERIOD_NS = 33_333_333  # 30 Hz
T0_NS = 1_700_000_000 * 10**9


def msg(stamp_ns: int) -> SimpleNamespace:
    return SimpleNamespace(header=SimpleNamespace(stamp=Stamp(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)),
                           stamp_ns=stamp_ns)


class Rig:
    """A Synchronizer with everything it emits, resets and drops recorded."""

    def __init__(self, backend: str = "internal", queue_size: int = 10, slop: float = 0.02, **kw):
        self.out: list[tuple[int, ...]] = []
        self.resets: list[str] = []
        self.drops: list[tuple[int, str]] = []
        self.added = [0, 0, 0]
        self.s = Synchronizer(3, queue_size, slop, lambda *m: self.out.append(tuple(x.stamp_ns for x in m)),
                              self.resets.append, backend=backend,
                              on_drop=lambda i, r: self.drops.append((i, r)), **kw)

    def add(self, i: int, stamp_ns: int) -> None:
        self.added[i] += 1
        self.s.add(i, msg(stamp_ns))

    def triple(self, stamp_ns: int, order: tuple[int, ...] = (RGB, INFO, DEPTH)) -> None:
        for i in order:
            self.add(i, stamp_ns)

    def balance(self) -> list[tuple[int, int, int, int]]:
        """Per input (added, matched, dropped, queued)."""
        q = self.s.queued()
        return [(self.added[i], len(self.out), sum(1 for j, _ in self.drops if j == i), q[i]) for i in range(3)]

    def balanced(self) -> bool:
        return all(a == m + d + q for a, m, d, q in self.balance())


@pytest.mark.parametrize("backend", BACKENDS)
def test_second_jump_shown_first_by_depth_keeps_the_triple_after_it(backend: str) -> None:
    """The node-fuzz case of issue 25: a jump back of 3600 s, seven triples later a jump back of
    1.03 s, and depth one message ahead (a triple missing its depth came in between). Before the
    fix, depth's step back was taken for the first jump's echo (an expected-jump entry left over,
    because the other inputs' last stamps had been forgotten), then the RGB's step back reset
    every queue and threw that depth away: the first good triple after the jump was lost."""
    rig = Rig(backend, queue_size=10, slop=0.05)  # the node's defaults
    for k in range(10):
        rig.triple(T0_NS + k * PERIOD_NS)
    t1 = T0_NS + 10 * PERIOD_NS - 3600 * 10**9  # jump back 3600 s (the RGB shows it first)
    for k in range(7):
        rig.triple(t1 + k * PERIOD_NS)
    assert len(rig.out) == 17 and len(rig.resets) == 1
    rig.add(RGB, t1 + 7 * PERIOD_NS)  # a triple missing its depth
    rig.add(INFO, t1 + 7 * PERIOD_NS)
    t2 = t1 + 8 * PERIOD_NS - 1_030_000_000  # jump back 1.03 s; depth is one message ahead
    rig.add(DEPTH, t2)
    rig.add(RGB, t2)
    rig.add(INFO, t2)
    assert rig.out[-1] == (t2, t2, t2), "the first triple after the second jump was lost"
    assert len(rig.resets) == 2 and rig.s.counters.time_resets == 2
    for k in range(1, 6):  # depth stays one message ahead
        rig.triple(t2 + k * PERIOD_NS, order=(DEPTH, RGB, INFO))
    assert rig.out[-6:] == [(t2 + k * PERIOD_NS,) * 3 for k in range(6)]
    assert len(rig.resets) == 2
    # the partial triple before the jump left with the reset; nothing else was dropped
    assert sorted(rig.drops) == [(RGB, "time_jump"), (INFO, "time_jump")]
    assert rig.balanced() and rig.s.queued() == [0, 0, 0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("first", [RGB, INFO, DEPTH])
def test_a_second_jump_right_after_the_first_is_a_new_jump(backend: str, first: int) -> None:
    """Whichever input shows it first, a jump soon after another one (within queue_size + 1
    messages) is not taken for the first one's echo: it resets, and the triple after it is kept."""
    rig = Rig(backend)
    for k in range(5):
        rig.triple(T0_NS + k * PERIOD_NS)
    t1 = T0_NS - 3600 * 10**9
    rig.triple(t1)
    rig.triple(t1 + PERIOD_NS)
    t2 = t1 + 2 * PERIOD_NS - 1_030_000_000
    order = (first,) + tuple(i for i in (RGB, INFO, DEPTH) if i != first)
    for k in range(4):
        rig.triple(t2 + k * PERIOD_NS, order=order)
    assert len(rig.resets) == 2
    assert rig.out[-4:] == [(t2 + k * PERIOD_NS,) * 3 for k in range(4)]
    assert len(rig.out) == 5 + 2 + 4 and rig.drops == [] and rig.balanced()


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_input_two_jumps_behind_catches_up_without_losing_sets(backend: str) -> None:
    """Depth still delivers the first timeline while RGB and camera_info already made two jumps:
    depth's two steps back are the jumps already made (no further reset), and the sets of the last
    timeline that RGB and camera_info delivered before depth caught up are kept."""
    rig = Rig(backend)
    for k in range(5):
        rig.triple(T0_NS + k * PERIOD_NS)
    t1 = T0_NS - 50 * 10**9
    t2 = t1 + 3 * PERIOD_NS - 1_500_000_000
    for k in range(3):
        rig.add(RGB, t1 + k * PERIOD_NS)
        rig.add(INFO, t1 + k * PERIOD_NS)
    for k in range(3):
        rig.add(RGB, t2 + k * PERIOD_NS)
        rig.add(INFO, t2 + k * PERIOD_NS)
    assert len(rig.resets) == 2 and len(rig.out) == 5
    rig.add(DEPTH, T0_NS + 5 * PERIOD_NS)  # an old-timeline straggler
    for k in range(3):  # depth's first timeline: only late, never matched
        rig.add(DEPTH, t1 + k * PERIOD_NS)
    for k in range(3):
        rig.add(DEPTH, t2 + k * PERIOD_NS)
    assert len(rig.resets) == 2
    assert rig.out[5:] == [(t2 + k * PERIOD_NS,) * 3 for k in range(3)]
    assert {r for _, r in rig.drops} <= {"time_jump"} and rig.balanced()


def test_an_input_that_never_jumps_counts_as_on_the_new_timeline_again() -> None:
    """One late RGB stamp (beyond the tolerance) is taken for a jump; camera_info and depth never
    step back. After queue_size + 1 of their messages they count as on the newest timeline, so a
    real jump they show later resets again and the triple after it is kept."""
    rig = Rig(queue_size=3)
    for k in range(5):
        rig.triple(T0_NS + k * PERIOD_NS)
    rig.add(RGB, T0_NS - 10**9)  # 1 s late
    assert len(rig.resets) == 1
    for k in range(5, 10):
        rig.triple(T0_NS + k * PERIOD_NS)
    assert len(rig.out) == 10
    t = T0_NS - 3600 * 10**9
    for k in range(3):
        rig.triple(t + k * PERIOD_NS, order=(DEPTH, INFO, RGB))
    assert len(rig.resets) == 2
    assert rig.out[-3:] == [(t + k * PERIOD_NS,) * 3 for k in range(3)]
    assert rig.balanced()


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_input_that_missed_a_whole_timeline_keeps_its_messages_at_the_landing(backend: str) -> None:
    """RGB misses the whole second timeline (for it, time goes forward from the first timeline to
    the third); camera_info and depth then jump back onto the third. RGB's messages already
    there are not cleared by that reset: the sets are kept."""
    rig = Rig(backend)
    for k in range(3):
        rig.triple(T0_NS + k * PERIOD_NS)
    t2 = T0_NS + 800 * 10**9  # forward: the second timeline (RGB's messages of it all missing)
    t3 = t2 + 3 * PERIOD_NS - 40 * 10**9  # then 40 s back
    for k in range(3):
        rig.add(INFO, t2 + k * PERIOD_NS)
        rig.add(DEPTH, t2 + k * PERIOD_NS)
    rig.add(RGB, t3)  # RGB is ahead on the third timeline
    rig.add(RGB, t3 + PERIOD_NS)
    for k in range(3):
        rig.add(INFO, t3 + k * PERIOD_NS)
        rig.add(DEPTH, t3 + k * PERIOD_NS)
    rig.add(RGB, t3 + 2 * PERIOD_NS)
    assert len(rig.resets) == 1
    assert rig.out[3:] == [(t3 + k * PERIOD_NS,) * 3 for k in range(3)]
    assert sorted(rig.drops) == [(INFO, "time_jump")] * 3 + [(DEPTH, "time_jump")] * 3
    assert rig.balanced() and rig.s.queued() == [0, 0, 0]


def jump_scenario(rng: np.random.Generator, max_shift: int = 2, p_missing: float = 0.15,
                  lengths: tuple[int, int] = (4, 15), n_timelines: tuple[int, int] = (2, 8),
                  min_delivered: int = 3) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """A random stream of triples with time jumps back and forward and the inputs out of step.

    Returns (arrivals [(input, stamp)], the stamps of the last timeline (after the last jump),
    the stamps delivered on all three inputs). ``n_timelines`` timelines of ``lengths`` frames at
    30 Hz; each input misses a message with probability ``p_missing`` but delivers at least
    ``min_delivered`` of each timeline (0: it may miss a whole one); its arrival is shifted by up
    to ``max_shift`` + 0.5 messages against the frame order, redrawn per timeline (by default
    at most 5 against another input: under the queue size of 10). Jumps are back (1 to 3 s, 3 s
    to 2 min, or an hour) or forward (1 s to 10 min): at least twice the jump tolerance, what a
    bag loop or a simulator reset looks like; a jump of less than the tolerance plus the lag
    cannot be told from jitter.
    """
    n_tl = int(rng.integers(*n_timelines))
    frames: list[tuple[int, int]] = []  # (timeline, stamp)
    start = T0_NS + int(rng.integers(0, 10**9))
    for tl in range(n_tl):
        n = int(rng.integers(*lengths))
        stamps = [start + k * PERIOD_NS + int(rng.integers(-2_000_000, 2_000_001)) for k in range(n)]
        frames += [(tl, s) for s in stamps]
        end = stamps[-1]
        if rng.random() < 0.65:  # back: a few seconds, a bag's length or an hour
            size = float(rng.choice([rng.uniform(1.0, 3.0), rng.uniform(3.0, 120.0), 3600.0]))
            start = end - int(size * 1e9) + int(rng.integers(0, PERIOD_NS))
        else:
            start = end + int(rng.uniform(1.0, 600.0) * 1e9)
    last_tl = n_tl - 1
    arrivals: list[tuple[float, int, int, int]] = []  # (when, input, seq, stamp)
    delivered: list[set[int]] = [set(), set(), set()]
    for i in range(3):
        when = -1.0
        for tl in range(n_tl):
            shift = float(rng.integers(-max_shift, max_shift + 1)) + rng.random() * 0.5  # out of step, per timeline
            idx = [f for f, (t, _) in enumerate(frames) if t == tl]
            keep = rng.random(len(idx)) >= p_missing  # a partner missing now and then
            keep[rng.choice(len(idx), min(min_delivered, len(idx)), replace=False)] = True
            for f, k in zip(idx, keep):
                if k:
                    when = max(when, f + shift)  # in order within one input (one writer)
                    arrivals.append((when, i, len(arrivals), frames[f][1]))
                    delivered[i].add(frames[f][1])
    arrivals.sort()
    complete = sorted(delivered[0] & delivered[1] & delivered[2])
    last = [s for t, s in frames if t == last_tl]
    return [(i, s) for _, i, _, s in arrivals], last, complete


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", ["out_of_step", "short_timelines", "whole_timeline_missed"])
@pytest.mark.parametrize("seed", range(60))
def test_random_jump_sequences_lose_no_set_after_the_last_jump(backend: str, variant: str, seed: int) -> None:
    """Property: over random sequences of jumps back and forward with the partners out of step,
    every complete set of the last timeline is matched (as itself), and every message is matched,
    dropped with a reason or queued. (Before the fix 7-27% of these seeds lost a set, depending
    on the variant.)"""
    kw = {"out_of_step": {},
          "short_timelines": {"lengths": (3, 6), "n_timelines": (4, 12), "max_shift": 3, "p_missing": 0.3},
          "whole_timeline_missed": {"min_delivered": 0, "p_missing": 0.3}}[variant]
    rng = np.random.default_rng(seed)
    arrivals, last, complete = jump_scenario(rng, **kw)
    rig = Rig(backend, queue_size=10, slop=0.02)  # 20 ms < the 33 ms between frames
    for i, s in arrivals:
        rig.add(i, s)
    matched = set(rig.out)
    after_last = [s for s in complete if s in set(last)]
    lost = [s for s in after_last if (s, s, s) not in matched]
    assert lost == [], f"{len(lost)} of {len(after_last)} complete sets after the last jump lost; resets {rig.resets}"
    # never a set of messages from different frames (every stamp of a frame is the same)
    assert all(len(set(m)) == 1 for m in rig.out)
    # every message is matched, dropped with a reason, or queued; then flushed, nothing queued
    assert rig.balanced(), rig.balance()
    assert {r for _, r in rig.drops} <= {"time_jump", "unmatched"}
    rig.s.flush()
    assert rig.s.queued() == [0, 0, 0] and rig.balanced(), rig.balance()
