"""The time-jump guard vs. ordinary stamp jitter and reordering, and the sync's accounting:
every message added is matched, dropped with a reason, or still queued."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from dada_ros.ros.sync import DEFAULT_JUMP_TOLERANCE, Synchronizer, check_sync_params, message_filters_available

try:
    from builtin_interfaces.msg import Time as Stamp
except ImportError:
    Stamp = SimpleNamespace

BACKENDS = ["internal"] + (["message_filters"] if message_filters_available() else [])


def msg(t: float) -> SimpleNamespace:
    ns = int(round(t * 1e9))
    return SimpleNamespace(header=SimpleNamespace(stamp=Stamp(sec=ns // 10**9, nanosec=ns % 10**9)))


class Rig:
    def __init__(self, backend: str, queue_size: int = 10, slop: float = 0.05, **kw):
        self.out: list = []
        self.resets: list[str] = []
        self.drops: list[tuple[int, str]] = []
        self.added = [0, 0, 0]
        self.s = Synchronizer(3, queue_size, slop, lambda *m: self.out.append(m), self.resets.append,
                              backend=backend, on_drop=lambda i, r: self.drops.append((i, r)), **kw)

    def add(self, i: int, t: float) -> None:
        self.added[i] += 1
        self.s.add(i, msg(t))

    def balanced(self) -> bool:
        """matched + dropped + queued == added, per input."""
        q = self.s.queued()
        return all(len(self.out) + sum(1 for j, _ in self.drops if j == i) + q[i] == self.added[i] for i in range(3))


@pytest.mark.parametrize("backend", BACKENDS)
def test_jitter_of_20ms_at_30hz_never_resets_and_pairs_every_set(backend: str) -> None:
    rng = np.random.default_rng(0)
    rig = Rig(backend)
    n = 300
    for k in range(n):
        t = 100 + k / 30
        j_rgb, j_depth = rng.uniform(-0.02, 0.02, 2)
        rig.add(0, t + j_rgb)
        rig.add(1, t + j_rgb)  # camera_info carries the image's stamp
        rig.add(2, t + j_depth)
    assert rig.resets == [] and rig.s.counters.time_resets == 0
    # slop 50 ms > the 40 ms worst spread: message_filters pairs (nearly) all of them too
    assert len(rig.out) >= n - 12
    assert rig.balanced()
    assert all(r == "unmatched" for _, r in rig.drops)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reordering_within_a_topic_does_not_reset_or_drop_sets(backend: str) -> None:
    rig = Rig(backend)
    n = 100
    stamps = [10 + k / 30 for k in range(n)]
    swapped = list(stamps)
    for k in range(0, n - 1, 2):  # rgb arrives pairwise swapped (two writers / a relay)
        swapped[k], swapped[k + 1] = swapped[k + 1], swapped[k]
    for k in range(n):
        rig.add(0, swapped[k])
        rig.add(1, stamps[k])
        rig.add(2, stamps[k])
    assert rig.resets == []
    assert len(rig.out) == n and rig.drops == [] and rig.balanced()


@pytest.mark.parametrize("backend", BACKENDS)
def test_backwards_jump_fires_once_and_keeps_the_first_frame_after_it(backend: str) -> None:
    rig = Rig(backend)
    for k in range(30):  # 1 s of a bag at 30 Hz
        for i in range(3):
            rig.add(i, 100 + k / 30)
    before = len(rig.out)
    # the bag loops: input 0 sees the new timeline first, inputs 1 and 2 still deliver one
    # old-timeline message each (in flight) before theirs
    rig.add(0, 0.0)
    rig.add(1, 101.0)
    rig.add(2, 101.0)
    rig.add(1, 0.0)
    rig.add(2, 0.0)
    assert len(rig.resets) == 1 and rig.s.counters.time_resets == 1
    assert len(rig.out) == before + 1
    assert [round(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9, 3) for m in rig.out[-1]] == [0.0, 0.0, 0.0]
    for k in range(1, 10):  # and it goes on matching on the new timeline
        for i in range(3):
            rig.add(i, k / 30)
    assert len(rig.out) == before + 10 and len(rig.resets) == 1
    assert {r for _, r in rig.drops} <= {"time_jump", "unmatched"} and rig.balanced()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_jump_beyond_the_tolerance_still_recovers(backend: str) -> None:
    rig = Rig(backend, jump_tolerance=0.1)
    for k in range(10):
        for i in range(3):
            rig.add(i, 5 + k / 30)
    rig.add(0, 4.5)  # 0.8 s back > 0.1 s: a simulator reset
    assert len(rig.resets) == 1
    rig.add(1, 4.5)
    rig.add(2, 4.5)
    assert len(rig.out) == 11 and len(rig.resets) == 1 and rig.balanced()


def test_default_tolerance_and_drop_reasons() -> None:
    assert 0.1 <= DEFAULT_JUMP_TOLERANCE <= 1.0  # above stamp jitter, below any bag loop
    rig = Rig("internal", queue_size=2)
    rig.add(0, 1.0)
    rig.add(0, 1.0)  # same stamp: replaces
    rig.add(0, 2.0)
    rig.add(0, 3.0)  # queue of 2: 1.0 leaves unmatched
    rig.s.add(1, SimpleNamespace(data=0))
    rig.added[1] += 1
    assert sorted(rig.drops) == [(0, "duplicate_stamp"), (0, "unmatched"), (1, "headerless")]
    assert rig.balanced()


@pytest.mark.parametrize("slop", [0.0, 4e-10, 9.9e-10, -1.0, float("nan")])
def test_slop_below_one_nanosecond_is_refused(slop: float) -> None:
    with pytest.raises(ValueError, match="1e-09"):
        check_sync_params(10, slop)
    check_sync_params(10, 1e-9)
