"""Descriptor ranges == what validation accepts; degenerate values refused with a reason (also
through the real SetParameters service); one diagnostics period parameter."""

from __future__ import annotations

import numpy as np
import pytest

from dada_ros.core.errors import DadaInputError
from dada_ros.core.solver import ITERATIONS_LIMIT
from dada_ros.ros.parameters import (DIAGNOSTICS_PERIOD_PARAM, KAPPA_MIN, NODE_MAX_ITERATIONS,
                                     NODE_MAX_WARM_ITERATIONS, PARAMS, NodeSettings, descriptor,
                                     validate_settings)

RANGED = [p for p in PARAMS if p.int_range is not None or p.float_range is not None]


def _ok(name: str, value) -> bool:
    try:
        validate_settings(NodeSettings.defaults().updated({name: value}))
        return True
    except DadaInputError:
        return False


@pytest.mark.parametrize("spec", RANGED, ids=lambda p: p.name)
def test_descriptor_range_is_exactly_what_validation_accepts(spec) -> None:
    pytest.importorskip("rcl_interfaces")
    d = descriptor(spec)
    if spec.int_range is not None:
        lo, hi = d.integer_range[0].from_value, d.integer_range[0].to_value
        assert (lo, hi) == spec.int_range
        assert _ok(spec.name, lo) and _ok(spec.name, hi)
        assert not _ok(spec.name, lo - 1) and not _ok(spec.name, hi + 1)
    else:
        lo, hi = d.floating_point_range[0].from_value, d.floating_point_range[0].to_value
        assert (lo, hi) == spec.float_range
        assert _ok(spec.name, float(lo)) and _ok(spec.name, float(hi))
        below = lo - max(abs(lo) * 1e-3, 1e-12)
        above = hi + max(abs(hi) * 1e-3, 1e-12)
        assert not _ok(spec.name, below) and not _ok(spec.name, above)


def test_open_intervals_and_bounds_are_documented_choices() -> None:
    by = {p.name: p for p in PARAMS}
    assert by["lambda"].float_range == (1e-6, 0.2499)  # inside the core's open (0, 0.25)
    assert by["kappa"].float_range[0] == KAPPA_MIN
    assert by["max_iterations"].int_range == (1, NODE_MAX_ITERATIONS) and NODE_MAX_ITERATIONS <= ITERATIONS_LIMIT
    # 0 = the warm schedule's own budget (core.pipeline.WARM_BUDGETS)
    assert by["warm_iterations"].int_range == by["warm_slow_iterations"].int_range == (0, NODE_MAX_WARM_ITERATIONS)
    assert by["slop"].float_range[0] == 1e-9


@pytest.mark.parametrize("change,words", [
    ({"slop": 4e-10}, "slop"), ({"kappa": 5e-324}, "kappa"), ({"max_iterations": 1_000_000}, "max_iterations"),
    ({"warm_iterations": 1_000_000}, "warm_iterations"), ({"lambda": 0.0}, "lambda"), ({"lambda": 0.25}, "lambda"),
    ({"output_range": "clip"}, "output_range"), ({"jump_tolerance": -1.0}, "jump_tolerance"),
    ({"loss_warn_fraction": 1.5}, "loss_warn_fraction"),
])
def test_degenerate_values_refused_with_a_reason(change: dict, words: str) -> None:
    with pytest.raises(DadaInputError, match=words):
        validate_settings(NodeSettings.defaults().updated(change))


def test_smallest_accepted_kappa_still_gives_finite_output() -> None:
    from dada_ros.core.methods import make_solver
    from dada_ros.core.solver import SolverConfig

    rgb = np.full((32, 32, 3), 128, np.uint8)
    rgb[:, 16:] = 30  # flat regions: neighbour differences of exactly 0
    src = 1.0 + np.random.default_rng(0).random((8, 8)).astype(np.float32)

    def finite(kappa: float) -> float:
        solver = make_solver("dada-free", SolverConfig(device="cpu", max_iterations=30), kappa=kappa)
        return float(np.isfinite(solver.solve(rgb, src).depth).mean())

    assert finite(KAPPA_MIN) == 1.0
    # below the node's bound the core's float32 kappa^2 underflows: 0/0 = NaN everywhere, which
    # is why the node refuses such values
    assert finite(1e-30) == 0.0 and not _ok("kappa", 1e-30) and not _ok("kappa", 5e-324)


def test_refusals_through_the_real_set_parameters_service(ros_context) -> None:
    from ros_harness import Harness

    h = Harness(ros_context)
    try:
        names = set(h.node._parameters)
        assert DIAGNOSTICS_PERIOD_PARAM in names and "diagnostics_period" not in names
        for values in ({"slop": 4e-10}, {"kappa": 5e-324}, {"max_iterations": 1_000_000}, {"lambda": 0.25},
                       {"warm_iterations": NODE_MAX_WARM_ITERATIONS + 1}):
            (res,) = h.set_parameters(values)
            assert not res.successful and res.reason, values
        (res,) = h.set_parameters({"lambda": 0.2499})
        assert res.successful
        (res,) = h.set_parameters({"slop": 1e-9})
        assert res.successful
        assert h.node.get_parameter("lambda").value == 0.2499
    finally:
        h.close()


class _StandInUpdater:
    """What upstream diagnostic_updater.Updater does with the period: declares
    ``diagnostic_updater.period`` itself (an override wins) and runs a timer."""

    def __init__(self, node, period: float = 1.0):
        self.period = node.declare_parameter("diagnostic_updater.period", period).value
        self.tasks = []
        self.timer = node.create_timer(self.period, lambda: None)

    def setHardwareID(self, hwid: str) -> None:  # noqa: N802 - upstream's name
        self.hwid = hwid

    def add(self, name, fn) -> None:
        self.tasks.append((name, fn))


def test_with_diagnostic_updater_there_is_one_period_parameter(ros_context, monkeypatch) -> None:
    import types

    from ros_harness import Harness

    mod = types.ModuleType("diagnostic_updater")
    mod.Updater = _StandInUpdater
    monkeypatch.setitem(__import__("sys").modules, "diagnostic_updater", mod)
    h = Harness(ros_context, {DIAGNOSTICS_PERIOD_PARAM: 0.3})
    try:
        assert h.node.diagnostics.backend == "diagnostic_updater"
        names = [n for n in h.node._parameters if "period" in n]
        assert names == [DIAGNOSTICS_PERIOD_PARAM]  # declared once, by the Updater
        assert h.node.diagnostics.updater.period == 0.3 and h.node._settings.diagnostics_period == 0.3
    finally:
        h.close()
