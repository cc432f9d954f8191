"""The learned model's guard (core/guard.py) and the cross-scale measures it reads (core/cross_scale.py)."""

import math

import numpy as np
import pytest

from dada_ros.core.cross_scale import cross_scale_measures
from dada_ros.core.errors import DadaInputError
from dada_ros.core.guard import GuardConfig, GuardedSolver
from dada_ros.core.methods import make_solver
from dada_ros.core.solver import DadaSolver, FreeGuide, SolverConfig


def _solvers():
    """(sharp, blurred): DADA-free, and a near-isotropic diffusion (kappa 100) that smears edges."""
    cfg = SolverConfig(device="cpu")
    return DadaSolver(cfg, FreeGuide()), DadaSolver(cfg, FreeGuide(kappa=100.0))


@pytest.fixture
def frame(step_edge_pair):
    rgb, gt, src = step_edge_pair(size=(64, 64), scale=4)
    return rgb, src


def test_measures_are_depth_inverse_and_log_errors_against_the_source(step_edge_pair):
    rgb, _, src = step_edge_pair(size=(64, 64), scale=4)

    class Const:
        def solve(self, guide, source):
            from types import SimpleNamespace
            return SimpleNamespace(depth=np.full(guide.shape[:2], 1.5, np.float32))

    for mode, factor in (("guide", 2), ("source", 2), ("guide", 4), ("half", 2), ("half", 4)):
        m = cross_scale_measures(rgb, src, {"c": Const()}, mode, factor)["c"]
        v = src[src > 0].astype(np.float64)
        assert m["depth"] == pytest.approx(np.mean((1.5 - v) ** 2), rel=1e-5)
        assert m["inverse"] == pytest.approx(np.mean((1 / 1.5 - 1 / v) ** 2), rel=1e-5)
        assert m["log"] == pytest.approx(np.mean((math.log(1.5) - np.log(v)) ** 2), rel=1e-5)
    with pytest.raises(DadaInputError, match="too small"):
        cross_scale_measures(rgb, src, {"c": Const()}, "guide", 1)
    with pytest.raises(DadaInputError, match="multiple of 8"):
        cross_scale_measures(rgb, src, {"c": Const()}, "half", 8)  # ratio 4


@pytest.mark.parametrize("learned_is_sharp", [True, False])
@pytest.mark.parametrize("check_mode", ["guide", "half"])
def test_the_guard_keeps_the_learned_solver_only_where_it_predicts_the_source_better(frame, learned_is_sharp,
                                                                                      check_mode):
    rgb, src = frame
    sharp, blurred = _solvers()
    learned, free = (sharp, blurred) if learned_is_sharp else (blurred, sharp)
    g = GuardedSolver(learned, free, GuardConfig(every=1, check_mode=check_mode))
    res = g.solve(rgb, src)
    info = res.stats.guard
    assert info["checked"] and info["reason"] == "" and info["ms"] > 0
    assert (info["error_dada"] < info["error_free"]) == learned_is_sharp
    assert info["pick"] == ("dada" if learned_is_sharp else "dada-free")
    np.testing.assert_array_equal(res.depth, (learned if learned_is_sharp else free).solve(rgb, src).depth)
    # a margin the learned solver cannot beat sends even the sharp one to DADA-free
    strict = GuardedSolver(learned, free, GuardConfig(every=1, margin=1e-6))
    assert strict.solve(rgb, src).stats.guard["pick"] == "dada-free"


def test_checks_run_on_the_first_frame_every_n_frames_and_on_a_size_change(frame, step_edge_pair):
    rgb, src = frame
    sharp, blurred = _solvers()
    g = GuardedSolver(sharp, blurred, GuardConfig(every=3))
    checked = [g.solve(rgb, src).stats.guard["checked"] for _ in range(7)]
    assert checked == [True, False, False, True, False, False, True]
    rgb2, _, src2 = step_edge_pair(size=(64, 96), scale=4)
    assert g.solve(rgb2, src2).stats.guard["checked"]  # a new size
    once = GuardedSolver(sharp, blurred, GuardConfig(every=0))
    assert [once.solve(rgb, src).stats.guard["checked"] for _ in range(5)] == [True] + [False] * 4
    between = once.solve(rgb, src).stats.guard
    assert between["pick"] == "dada" and between["ms"] == 0.0 and math.isfinite(between["error_dada"])


def test_guard_off_always_runs_the_learned_solver_and_an_impossible_check_falls_back(frame):
    rgb, src = frame
    sharp, blurred = _solvers()
    off = GuardedSolver(blurred, sharp, GuardConfig(mode="off"))
    st = off.solve(rgb, src).stats.guard
    assert st["pick"] == "dada" and not st["checked"]
    tiny_rgb, tiny_src = rgb[:4, :8], src[:1, :2]  # one source row: no x2 coarser copy
    g = GuardedSolver(sharp, blurred, GuardConfig(every=1))
    st = g.solve(tiny_rgb, tiny_src).stats.guard
    assert st["pick"] == "dada-free" and st["reason"].startswith("check not possible")


def test_guard_config_refuses_bad_values_and_make_solver_guards_only_dada():
    for bad in (dict(mode="sometimes"), dict(check_mode="x"), dict(measure="abs"), dict(factor=1),
                dict(margin=0.0), dict(margin=math.inf), dict(every=-1)):
        with pytest.raises(DadaInputError):
            GuardConfig(**bad).validate()
    cfg = SolverConfig(device="cpu")
    assert isinstance(make_solver("dada-free", cfg, guard=GuardConfig()), DadaSolver)
    pytest.importorskip("dada_ros.learned.model")
    assert isinstance(make_solver("dada", cfg, guard=GuardConfig()), GuardedSolver)
    assert isinstance(make_solver("dada", cfg, guard=GuardConfig(mode="off")), DadaSolver)
    assert isinstance(make_solver("dada", cfg), DadaSolver)


def test_self_supervised_weights_carry_a_caveat_the_node_and_cli_report(tmp_path, step_edge_pair, capsys):
    """Weights adapted by cross-scale self-supervision were trained on the check's own signal: the
    guarded solver says so (the node logs it and keeps it in /diagnostics, the CLI warns)."""
    torch = pytest.importorskip("torch")
    learned = pytest.importorskip("dada_ros.learned.model")
    cfg = SolverConfig(device="cpu")
    assert make_solver("dada", cfg, guard=GuardConfig()).caveat == ""  # the shipped weights
    ck = torch.load(learned.SHIPPED_PATH, map_location="cpu", weights_only=False)
    ck["meta"] = {**ck.get("meta", {}), "train_config": {**ck["meta"].get("train_config", {}), "self_supervised": True}}
    adapted = tmp_path / "adapted.pt"
    torch.save(ck, adapted)
    guarded = make_solver("dada", cfg, weights=str(adapted), guard=GuardConfig())
    assert "self-supervision" in guarded.caveat and "guard" in guarded.caveat

    from dada_ros.cli.common import run_cli
    from dada_ros.cli.upsample import main

    rgb, _, src = step_edge_pair(size=(64, 64), scale=4)
    import cv2

    cv2.imwrite(str(tmp_path / "rgb.png"), rgb[:, :, ::-1])
    np.save(tmp_path / "src.npy", src)
    rc = run_cli("dada-upsample", main, ["--guide", str(tmp_path / "rgb.png"), "--source", str(tmp_path / "src.npy"),
                                         "--method", "dada", "--weights", str(adapted), "--out", str(tmp_path / "o.npy")])
    assert rc == 0 and "warning: these weights were trained by cross-scale self-supervision" in capsys.readouterr().err
