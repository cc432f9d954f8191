"""Grouped cross-validation by scene family and the ground-truth-free cross-scale check (issue 28)."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from dada_ros.core.errors import DadaInputError
from dada_ros.core.solver import DadaSolver, FreeGuide, SolverConfig
from dada_ros.learned import crossval as C
from dada_ros.learned import gate as G
from dada_ros.learned.datasets.realdata import default_root


# ----------------------------------------------------------------------------- folds
def test_rows_and_folds_keep_families_views_and_resolutions_together():
    rows = C.middlebury_rows()
    assert len(rows) == 28 and len({r.name for r in rows}) == 28
    assert sum(not r.in_sample for r in rows) == 18  # laundry + the 17 Middlebury 2006 scenes
    by = {r.name: r for r in rows}
    assert by["baby1 (third)"].files == ("baby1_view1", "baby1_view5")
    assert by["art (third)"].used == "train" and by["books (third)"].used == "val" and by["laundry (third)"].used == ""
    folds = C.grouped_folds(rows, 5)
    assert folds == C.grouped_folds(list(reversed(rows)), 5)  # deterministic, order-free
    assert sorted(set(folds.values())) == [0, 1, 2, 3, 4]
    for fam in ("baby", "bowling", "cloth", "lampshade", "rocks", "wood"):
        assert len({folds[r.name] for r in rows if r.group == fam}) == 1
    for scene in ("art", "books", "moebius"):  # the same scene at two resolutions: one fold
        assert folds[scene] == folds[f"{scene} (third)"]
    sizes = [sum(1 for f in folds.values() if f == k) for k in range(5)]
    assert max(sizes) - min(sizes) <= 2


def test_fold_plan_is_nested_and_keeps_families_apart():
    """Outer fold f: test = fold f, inner validation = fold f+1, train = the rest; no group on two
    sides, and every row is tested exactly once over the five plans."""
    rows = C.middlebury_rows(used={})
    folds = C.grouped_folds(rows, 5)
    tested = []
    for f in range(5):
        plan = C.fold_plan(rows, folds, f)
        assert {folds[r.name] for r in plan.test} == {f} and {folds[r.name] for r in plan.inner} == {(f + 1) % 5}
        sides = [{r.group for r in part} for part in (plan.train, plan.inner, plan.test)]
        assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
        assert len(plan.train) + len(plan.inner) + len(plan.test) == len(rows)
        assert "baby1_view5" in C.FoldPlan.files(plan.train + plan.inner + plan.test)
        tested += [r.name for r in plan.test]
    assert sorted(tested) == sorted(r.name for r in rows)
    with pytest.raises(ValueError, match="fold 5"):
        C.fold_plan(rows, folds, 5)


def _records(ratios: dict[str, dict[float, float]], check: dict[str, tuple[float, float]] | None = None) -> dict:
    """Fake per-file records: one file per row, MSE 1 for DADA-free and ``ratios[file][alpha]``."""
    out = {}
    for f, by in ratios.items():
        cell = {"free": [100.0, 100]} | {f"{a:g}": [100.0 * r, 100] for a, r in by.items()}
        errs = (check or {}).get(f, (1.0, 1.0))
        out[f] = {str(s): {"depth": cell, "disp": cell,
                           "check": {m: {"dada-free": errs[0], "dada": errs[1]} for m in C.CHECK_MODES}}
                  for s in C.SCALES}
    return out


def test_gate_choice_uses_only_the_training_folds_and_respects_the_worst_row():
    grid = (0.0, 0.5, 1.0)
    rows = [C.Row(n, (n,), n, "", "middlebury") for n in "abcd"]
    rec = _records({"a": {0.5: 0.9, 1.0: 0.7}, "b": {0.5: 0.9, 1.0: 0.7},
                    "c": {0.5: 0.95, 1.0: 1.10}, "d": {0.5: 1.5, 1.0: 2.0}})
    # d alone forbids any open gate; without d, c's 1.10 forbids 1.0 but not 0.5
    assert C.choose_alpha(rec, rows, 8, grid, 1.02) == 0.0
    assert C.choose_alpha(rec, rows[:3], 8, grid, 1.02) == 0.5
    assert C.choose_alpha(rec, rows[:2], 8, grid, 1.02) == 1.0
    folds = {"a": 0, "b": 1, "c": 2, "d": 3}
    cv = C.cross_validate_gate(rec, rows, folds, grid=grid, max_ratio=1.02)
    assert cv["gates"][3] == {4: 0.5, 8: 0.5, 16: 0.5}  # chosen on a, b, c
    assert cv["oof"]["d"][8] == pytest.approx(1.5)  # scored where it was not chosen
    assert cv["oof"]["a"][8] == 1.0  # fold 0's gate was shut by d
    # in-sample rows are left out of the choice unless asked for
    rows_in = [C.Row("a", ("a",), "a", "train", "middlebury")] + rows[1:3]
    assert C.cross_validate_gate(rec, rows_in, {"a": 0, "b": 1, "c": 1}, grid=grid)["gates"][0][8] == 0.5
    assert C.cross_validate_gate(rec, rows_in, {"a": 0, "b": 1, "c": 1}, grid=grid,
                                 choose_on_in_sample=True)["gates"][0][8] == 0.5
    assert C.geo_mean([0.5, 2.0]) == pytest.approx(1.0) and math.isnan(C.geo_mean([]))


def test_self_check_counts_right_picks_and_the_cost_of_the_picked_method():
    rows = [C.Row(n, (n,), n, "", "sensor") for n in "abc"]
    # a: dada better and picked; b: dada worse but picked (a costly wrong pick); c: dada worse, not picked
    rec = _records({"a": {0.5: 0.8}, "b": {0.5: 1.2}, "c": {0.5: 1.1}},
                   {"a": (2.0, 1.0), "b": (2.0, 1.0), "c": (1.0, 2.0)})
    sc = C.self_check(rec, rows, "source", {4: 0.5, 8: 0.5, 16: 0.5})
    v = sc["summary"][8]
    assert (v["n"], v["right"], v["picked_dada"], v["costly_wrong"]) == (3, 2, 2, 1)
    assert v["geo_picked"] == pytest.approx((0.8 * 1.2) ** (1 / 3))
    assert v["worst_picked"] == pytest.approx(1.2)


# ----------------------------------------------------------------------------- the cross-scale check
def test_cross_scale_pick():
    assert G.cross_scale_pick({"dada-free": 2.0, "dada": 1.0}) == "dada"
    assert G.cross_scale_pick({"dada-free": 1.0, "dada": 2.0}) == "dada-free"
    assert G.cross_scale_pick({"dada-free": 1.0, "dada": 0.99}, margin=0.95) == "dada-free"
    assert G.cross_scale_pick({"dada-free": 1.0, "dada": math.nan}) == "dada-free"
    with pytest.raises(DadaInputError, match="default"):
        G.cross_scale_pick({"dada": 1.0})


class _Const:
    """A fake solver: a constant depth at the guide's resolution."""

    def __init__(self, value):
        self.value = value

    def solve(self, guide, source):
        return SimpleNamespace(depth=np.full(guide.shape[:2], self.value, np.float32))


@pytest.mark.parametrize("mode", G.CROSS_SCALE_MODES)
def test_cross_scale_errors_score_each_solver_against_the_frames_own_source(step_edge_pair, mode):
    rgb, gt, src = step_edge_pair(size=(64, 64), scale=4)  # near 1 m, far 2 m; source 16 x 16
    src = src.copy()
    src[0, 0] = 0.0  # an invalid cell is neither used nor scored
    solvers = {"dada-free": DadaSolver(SolverConfig(), FreeGuide()), "dada": _Const(5.0)}
    e = G.cross_scale_errors(rgb, src, solvers, mode)
    valid = src[src > 0]
    assert e["dada"] == pytest.approx(float(np.mean((5.0 - valid) ** 2)), rel=1e-5)
    assert e["dada-free"] < 0.05 * e["dada"]  # DADA-free follows the colour edge
    assert G.cross_scale_pick(e) == "dada-free"
    with pytest.raises(DadaInputError, match="mode"):
        G.cross_scale_errors(rgb, src, solvers, "nope")
    with pytest.raises(DadaInputError, match="multiple"):
        G.cross_scale_errors(rgb[:, :63], src, solvers, mode)


def test_cross_scale_errors_odd_source_is_cropped(step_edge_pair):
    rgb, gt, src = step_edge_pair(size=(60, 68), scale=4)  # source 15 x 17: cropped to 14 x 16
    e = G.cross_scale_errors(rgb, src, {"dada-free": DadaSolver(SolverConfig(), FreeGuide())})
    assert math.isfinite(e["dada-free"])


# ----------------------------------------------------------------------------- on the shared real data
needs_data = pytest.mark.skipif(default_root() is None or not (default_root() / "middlebury2006_third").is_dir(),
                                reason="no ../shared/realdata (the project's workspace only)")


@needs_data
def test_score_file_on_a_real_scene():
    from dada_ros.learned.datasets.realdata import scene_path
    from dada_ros.learned.model import SHIPPED_PATH, load_checkpoint

    net, _, _ = load_checkpoint(str(SHIPPED_PATH))
    rec = C.score_file(scene_path(default_root(), "tsukuba"), (8,), (0.0, 1.0), G.gated_copy(net),
                       G.gated_copy(net), SolverConfig(), check_modes=("source",))
    cell = rec["8"]
    assert rec["unit"] == "disparity_px" and set(cell) == {"depth", "disp", "check"}
    assert set(cell["disp"]) == {"free", "1"} and cell["disp"]["free"][1] == cell["depth"]["free"][1] > 0
    assert 0.5 < (cell["disp"]["1"][0] / cell["disp"]["free"][0]) < 2.0
    assert set(cell["check"]["source"]) == {"dada-free", "dada"}
    # every row's files exist under the shared folder
    for r in C.middlebury_rows() + C.sensor_rows():
        for f in r.files:
            assert scene_path(default_root(), f).is_file()


def test_score_file_scores_the_node_clamp_beside_the_solver(tmp_path):
    """output_range given: every prediction is also scored after the node's output-range clamp
    ("+range" keys), and metric "primary+range" picks the clamped disparity of a disparity file."""
    from dada_ros.core.output_range import OutputRangeConfig
    from dada_ros.learned.model import GuideConfig, GuideNet

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    disp = (20 + 20 * (xx > 30) + 0.05 * yy).astype(np.float32)
    np.savez(tmp_path / "s.npz", rgb=rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), depth=disp,
             valid=np.ones((64, 64), bool), unit=np.array("disparity_px"), meta=np.array("{}"))
    net = G.gated_copy(GuideNet(GuideConfig()))
    rec = C.score_file(tmp_path / "s.npz", (8,), (0.0, 1.0), net, net, SolverConfig(), check_modes=(),
                       output_range=OutputRangeConfig())
    cell = rec["8"]
    assert set(cell) == {"depth", "disp", "depth+range", "disp+range", "check"}
    assert set(cell["disp+range"]) == {"free", "1"}
    records = {"s": rec}
    row = C.Row("s", ("s",), "s", "", "middlebury")
    assert C.metric_of(records, row, "primary+range") == "disp+range"
    assert C.metric_of(records, row) == "disp"
    assert math.isfinite(C.row_ratio(records, row, 8, 1.0, "primary+range"))
    plain = C.score_file(tmp_path / "s.npz", (8,), (0.0,), net, net, SolverConfig(), check_modes=())
    assert set(plain["8"]) == {"depth", "disp", "check"}
