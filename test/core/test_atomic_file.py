"""Atomic replacement: the old file survives a failed write, no tmp file is left, names are unique."""

import pytest

from dada_ros.core.atomic_file import atomic_path


def test_success_replaces_and_leaves_no_tmp(tmp_path):
    target = tmp_path / "m.pt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".pt" and tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old"  # readers still see the old file mid-write
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_failure_keeps_the_old_file_and_removes_the_tmp(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_two_writers_get_different_tmp_names(tmp_path):
    with atomic_path(tmp_path / "a.npz") as t1, atomic_path(tmp_path / "a.npz") as t2:
        assert t1 != t2
        t1.write_text("1")
        t2.write_text("2")
    assert (tmp_path / "a.npz").read_text() == "1"  # the outer block renames last
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]
