"""benchmarks/learned_folds.py's guard arithmetic: each file of a row uses the learned model only
where its check kept it, and the row's MSE pools the picked errors."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import learned_folds as LF  # noqa: E402
from dada_ros.learned import crossval as C  # noqa: E402


def _check(dada: float, free: float) -> dict:
    return {"dada": {"depth": dada, "inverse": dada, "log": dada}, "dada-free": {"depth": free, "inverse": free, "log": free}}


def test_guard_pick_and_the_guarded_row_ratio():
    assert LF.guard_pick(_check(1.0, 2.0), "depth", 1.0) and not LF.guard_pick(_check(1.9, 2.0), "depth", 0.9)
    assert not LF.guard_pick(_check(float("nan"), 2.0), "depth", 1.0) and not LF.guard_pick({"error": "x"}, "log", 1.0)
    row = C.Row("scene", ("a", "b"), "scene", "", "middlebury")
    # per file: squared-error sum and pixel count of DADA-free and of the model at gate 1, after the clamp
    rec = {f: {"4": {"depth": {}, "depth+range": {"free": [100.0, 10], "1": [sq, 10]}}}
           for f, sq in (("a", 50.0), ("b", 300.0))}
    guard = {"a": {"4/guide2": _check(1.0, 2.0)}, "b": {"4/guide2": _check(3.0, 2.0)}}
    r = LF.guarded_ratio(rec, guard, row, 4, 1.0, ("guide2", "depth", 1.0), "primary+range")
    assert r == pytest.approx(((50.0 + 100.0) / 20) / (200.0 / 20))  # a: learned, b: DADA-free
    never = LF.guarded_ratio(rec, guard, row, 4, 0.0, ("guide2", "depth", 1.0), "primary+range")
    assert never == pytest.approx(1.0)  # gate 0: the model is DADA-free, nothing to guard
