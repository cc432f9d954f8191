"""The loop schedule (core/schedule.py) and every CPU backend against the reference recurrence.

The Triton backend is pinned to the torch backend on the same schedules in test_triton_loop.py
(Triton's CPU interpreter runs in a subprocess there).
"""

import math
import re

import numpy as np
import pytest
import torch

from dada_ros.core.errors import DadaInputError
from dada_ros.core.fused_cpu import HAVE_NUMBA
from dada_ros.core.loop import adjust_step, diffusion_step, run_loop
from dada_ros.core.metrics import consistency_error
from dada_ros.core.schedule import (CHEBYSHEV_TABLE, HOLE_TABLE, Schedule, chebyshev_defaults,
                                    chebyshev_weights)
from dada_ros.core.solver import DadaSolver, SolverConfig


BACKENDS = ["torch"] + (["fused"] if HAVE_NUMBA else [])


def chebyshev_polynomial(k: int, x: float) -> float:
    return math.cosh(k * math.acosh(x))


def test_weights_are_the_chebyshev_ratios():
    """w_1 = 1 and w_{k+1} = 2 T_k(1/rho) / (rho T_{k+1}(1/rho)) (Golub & Varga), from the recurrence."""
    delta = 0.01
    rho = 1 - delta
    w = chebyshev_weights(40, delta)
    want = [1.0] + [2 * chebyshev_polynomial(k, 1 / rho) / (rho * chebyshev_polynomial(k + 1, 1 / rho))
                    for k in range(1, 40)]
    np.testing.assert_allclose(w, want, rtol=1e-10)
    assert np.all(w[1:] > 1) and np.all(w < 2)
    assert w[-1] == pytest.approx(2 / (1 + math.sqrt(1 - rho**2)), rel=1e-3)  # the limit omega


def test_schedule_parts_and_refusals():
    s = Schedule.chebyshev(60, 1e-3, check_every=25)
    assert len(s) == 60 and not s.is_plain
    assert [len(c) for c in s.chunks()] == [25, 25, 10]
    assert np.array_equal(np.concatenate(s.chunks()), s.weights)
    assert Schedule.plain(7).is_plain and not Schedule.plain(7).should_stop(0.0)
    assert Schedule.plain(7, tol=1e-3).should_stop(1e-4) and not Schedule.plain(7, tol=1e-3).should_stop(1e-2)
    for bad in (lambda: chebyshev_weights(5, 0.0), lambda: chebyshev_weights(5, 1.0),
                lambda: Schedule.plain(0), lambda: Schedule.plain(5, tol=-1.0),
                lambda: Schedule.plain(5, check_every=0), lambda: Schedule("heavy-ball", np.ones(3)),
                lambda: chebyshev_defaults(float("nan"))):
        with pytest.raises(DadaInputError):
            bad()


def test_per_ratio_defaults_follow_the_table_and_interpolate():
    for scale, delta, budget in CHEBYSHEV_TABLE:
        assert chebyshev_defaults(scale) == pytest.approx((delta, budget))
    # Between anchors: in between; beyond them: the end rows.
    (s0, d0, n0), (s1, d1, n1) = CHEBYSHEV_TABLE[1], CHEBYSHEV_TABLE[2]
    d, n = chebyshev_defaults(math.sqrt(s0 * s1))
    assert min(d0, d1) <= d <= max(d0, d1) and min(n0, n1) <= n <= max(n0, n1)
    assert chebyshev_defaults(2.0) == chebyshev_defaults(CHEBYSHEV_TABLE[0][0])
    assert chebyshev_defaults(2.8) == chebyshev_defaults(CHEBYSHEV_TABLE[0][0])
    assert chebyshev_defaults(100.0) == chebyshev_defaults(CHEBYSHEV_TABLE[-1][0])


def test_the_hole_table_follows_8000_plain_steps_at_x4_and_x8_and_keeps_the_dense_rows_beyond():
    for scale, delta, budget in HOLE_TABLE:
        assert chebyshev_defaults(scale, holes=True) == pytest.approx((delta, budget))
    m = Schedule.matching_plain(8000, 175)
    for scale in (4.0, 8.0):
        assert chebyshev_defaults(scale, holes=True) == pytest.approx((m.delta, len(m)))
    for scale in (16.0, 32.0, 100.0):
        assert chebyshev_defaults(scale, holes=True) == chebyshev_defaults(scale)
    assert np.array_equal(Schedule.for_ratio(4.0, holes=True).weights, m.weights)


def test_a_source_with_holes_gets_the_hole_table_and_a_dense_one_the_dense_table():
    from dada_ros.core.scenes import make_sample

    s = make_sample(seed=5, size=(64, 96), scale=4)
    dense = np.nan_to_num(s.source, nan=0.0)
    assert (dense > 0).all()
    holed = dense.copy()
    holed[5:9, 6:12] = 0.0
    solver = DadaSolver(SolverConfig(device="cpu"))
    assert solver.solve(s.rgb, dense).stats.iterations == chebyshev_defaults(4.0)[1] == 150
    assert solver.solve(s.rgb, holed).stats.iterations == chebyshev_defaults(4.0, holes=True)[1] == 175
    assert solver.schedule_for(4.0, holes=True).delta == pytest.approx(HOLE_TABLE[0][1])
    assert solver.schedule_for(4.0, 30, holes=True).delta == pytest.approx(HOLE_TABLE[0][1])  # fixed count


def test_inside_a_hole_the_hole_table_lands_nearer_the_8000_step_reference_than_the_dense_table():
    """The hole's interior has no adjustment: the dense table's schedule (chosen on dense sources)
    leaves it further from what the authors' 8000 plain steps give than the hole table does."""
    from dada_ros.core.resample import Partition
    from dada_ros.core.scenes import make_sample

    s = make_sample(seed=7, size=(96, 128), scale=4)
    src = np.nan_to_num(s.source, nan=0.0)
    src[6:18, 8:20] = 0.0  # a 48 x 48 px hole
    solver = DadaSolver(SolverConfig(device="cpu", max_fill_distance=np.inf))
    ref = solver.solve(s.rgb, src, schedule=Schedule.plain(8000)).depth
    new = solver.solve(s.rgb, src).depth
    old = solver.solve(s.rgb, src, schedule=Schedule.for_ratio(4.0)).depth
    hole = Partition(ref.shape, src.shape).expand(src <= 0)
    d_new = float(np.sqrt(np.mean((new - ref)[hole] ** 2)))
    d_old = float(np.sqrt(np.mean((old - ref)[hole] ** 2)))
    assert d_new < 0.5 * d_old, (d_new, d_old)


def reference_recurrence(y0, src, valid, cv, ch, res, lam, weights, region=None):
    """The schedule's recurrence written out with the out-of-place reference steps, in float64:
    adjust Y0, y_{k+1} = w_{k+1} (T(y_k) - y_{k-1}) + y_{k-1}, one final adjustment; with a
    ``region`` the weight is w_{k+1} there and 1 (a plain step) elsewhere."""
    d = torch.float64
    src, cv, ch = src.to(d), cv.to(d), ch.to(d)
    m = torch.ones_like(y0, dtype=d) if region is None else torch.from_numpy(region).to(d).expand_as(y0)

    def T(y):
        return adjust_step(diffusion_step(y, cv * lam, ch * lam), src, valid, res)

    y = adjust_step(y0.to(d), src, valid, res)
    prev = y
    for w in weights:
        y, prev = (1 + (w - 1) * m) * (T(y) - prev) + prev, y
    return adjust_step(y, src, valid, res)


REGION = np.zeros((40, 52), bool)
REGION[5:23, 9:40] = True  # not aligned with the cells: the adjustment mixes both kinds of pixel
REGION[30:, :7] = True  # 30% of the image: the fused loop reads it at every pixel
SMALL_REGION = np.zeros((40, 52), bool)  # 5%: the fused loop packs its spans (fused_cpu._form_row)
SMALL_REGION[5:9, 9:20] = True
SMALL_REGION[30:, :3] = True
SMALL_REGION[12, 30:33] = SMALL_REGION[12, 37] = True  # two runs of a row, merged into one span


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["chebyshev", "plain", "region", "small-region"])
def test_backends_follow_the_reference_recurrence(backend, kind, loop_problem):
    """Holes, a non-integer ratio and a batch of two with different coefficients; ``region``:
    the Chebyshev weights in part of the image, plain steps elsewhere (Schedule.region)."""
    res, src, valid, y0, cv, ch = loop_problem(seed=4, size=(40, 52), source_shape=(11, 15))
    res2, src2, valid2, y02, cv2, ch2 = loop_problem(seed=5, size=(40, 52), source_shape=(11, 15))
    src, valid, y0 = torch.cat([src, src2]), torch.cat([valid, valid2]), torch.cat([y0, y02])
    cv, ch = torch.cat([cv, cv2]), torch.cat([ch, ch2])
    schedule = {"chebyshev": Schedule.chebyshev(45, 2e-3, check_every=10), "plain": Schedule.plain(45, None, 10),
                "region": Schedule.chebyshev(45, 2e-3, check_every=10, region=REGION),
                "small-region": Schedule.chebyshev(45, 2e-3, check_every=10, region=SMALL_REGION)}[kind]
    want = reference_recurrence(y0, src, valid, cv, ch, res, 0.24, schedule.weights, schedule.region)
    if kind.endswith("region"):  # the region matters: inside it differs from plain steps, outside from Chebyshev
        plain = reference_recurrence(y0, src, valid, cv, ch, res, 0.24, np.ones(45))
        cheb = reference_recurrence(y0, src, valid, cv, ch, res, 0.24, schedule.weights)
        inside = torch.from_numpy(schedule.region)
        assert float((want - plain).abs()[:, :, inside].max()) > 1e-3
        assert float((want - cheb).abs()[:, :, ~inside].max()) > 1e-3
    y = y0.clone()
    stats = run_loop(y, src, valid, cv, ch, res, 0.24, backend=backend, schedule=schedule)
    assert stats.iterations == 45 and len(stats.residual_history) == 5
    assert float((want - y0).abs().max()) > 1e-2  # it moved: the comparison means something
    rel = float(((y.double() - want).abs() / want.abs()).max())
    assert rel < 2e-5, rel


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_full_region_is_the_unmasked_schedule_and_a_wrong_one_is_refused(backend, loop_problem):
    res, src, valid, y0, cv, ch = loop_problem(seed=4, size=(40, 52), source_shape=(11, 15))
    base = Schedule.chebyshev(30, 2e-3)
    full = Schedule.chebyshev(30, 2e-3, region=np.ones((40, 52), bool))
    a, b = y0.clone(), y0.clone()
    run_loop(a, src, valid, cv, ch, res, 0.24, backend=backend, schedule=base)
    run_loop(b, src, valid, cv, ch, res, 0.24, backend=backend, schedule=full)
    assert float(((a - b).abs() / a.abs()).max()) < 2e-5  # float32 rounding of another formula
    with pytest.raises(ValueError, match="region"):
        run_loop(y0.clone(), src, valid, cv, ch, res, 0.24, backend=backend,
                 schedule=Schedule.chebyshev(30, 2e-3, region=np.ones((40, 51), bool)))
    with pytest.raises(DadaInputError):
        Schedule.chebyshev(30, 2e-3, region=np.ones((40, 52), np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_semi_iteration_reaches_the_equilibrium_far_sooner(backend, loop_problem):
    res, src, valid, y0, cv, ch = loop_problem(seed=7, size=(32, 32), source_shape=(8, 8))
    eq = y0.clone()
    run_loop(eq, src, valid, cv, ch, res, 0.24, 20000, backend=backend)  # converged: 40000 moves it < 2e-5
    plain, semi = y0.clone(), y0.clone()
    run_loop(plain, src, valid, cv, ch, res, 0.24, 200, backend=backend)
    run_loop(semi, src, valid, cv, ch, res, 0.24, backend=backend, schedule=Schedule.chebyshev(200, 1e-3))
    err_plain = float((plain - eq).abs().max())
    err_semi = float((semi - eq).abs().max())
    assert err_semi * 10 < err_plain, (err_semi, err_plain)


def test_solver_default_is_consistent_with_holes_and_warm_start(with_holes):
    """down(Y) == S on every valid cell for the default schedule, cold and warm-started."""
    from dada_ros.core.scenes import make_sample

    s = make_sample(seed=11, size=(90, 120), source_shape=(23, 31))
    src = with_holes(np.nan_to_num(s.source, nan=0.0))
    solver = DadaSolver(SolverConfig(max_fill_distance=np.inf))
    cold = solver.solve(s.rgb, src)
    assert cold.stats.schedule == "chebyshev"
    assert cold.stats.iterations == chebyshev_defaults(cold.stats.scale, holes=True)[1]
    assert consistency_error(cold.depth, src) < 1e-5
    warm = solver.solve(s.rgb, src, init=cold.depth * 1.05, iterations=20)
    assert warm.stats.warm_start and warm.stats.iterations == 20
    assert consistency_error(warm.depth, src) < 1e-5


def test_a_runaway_recurrence_is_caught_and_the_solver_falls_back(loop_problem, monkeypatch):
    """Weights above 2 make the recurrence grow without bound: the guard stops it, y is the caller's
    Y0 again, and the solver reruns a semi-iteration with twice the applications (capped by
    max_iterations), then, if that runs away too, the plain loop (said in the stats)."""
    res, src, valid, y0, cv, ch = loop_problem(seed=3, size=(32, 40), source_shape=(8, 10))
    runaway = Schedule("chebyshev", np.full(200, 2.6), check_every=10)
    y = y0.clone()
    stats = run_loop(y, src, valid, cv, ch, res, 0.24, schedule=runaway)
    assert stats.diverged and stats.iterations < 200
    assert torch.equal(y, y0)
    from dada_ros.core.scenes import make_sample

    s = make_sample(seed=2, size=(64, 64), scale=8)
    solver = DadaSolver(SolverConfig(max_iterations=400))
    monkeypatch.setattr(solver, "schedule_for", lambda *a, **k: runaway)
    out = solver.solve(s.rgb, s.source)
    assert re.fullmatch(r"diverged after \d+ applications: 400 applications following 8000 plain steps",
                        out.stats.fallback), out.stats.fallback
    assert out.stats.schedule == "chebyshev" and out.stats.iterations == 400
    assert np.isfinite(out.depth).all() and consistency_error(out.depth, s.source) < 1e-5
    reference = DadaSolver(SolverConfig(max_iterations=400)).solve(
        s.rgb, s.source, schedule=Schedule.matching_plain(8000, 400))
    np.testing.assert_allclose(out.depth, reference.depth, rtol=1e-6)  # the retry started from Y0 again
    monkeypatch.setattr(Schedule, "matching_plain", classmethod(lambda cls, *a, **k: runaway))
    out = solver.solve(s.rgb, s.source)
    assert re.fullmatch(r"diverged after \d+ applications, and with 400: plain loop", out.stats.fallback)
    assert out.stats.schedule == "plain"
    assert np.isfinite(out.depth).all() and consistency_error(out.depth, s.source) < 1e-5


def test_a_learned_guide_gets_the_schedule_that_follows_8000_plain_steps():
    from dada_ros.core.schedule import LEARNED_APPLICATIONS
    from dada_ros.core.scenes import make_sample
    from dada_ros.core.solver import FreeGuide

    class Learned:  # any guide model that is not DADA-free
        def __init__(self):
            self.free = FreeGuide()

        def features(self, rgb, depth, scale=None):
            return self.free.features(rgb, depth, scale)

        def coefficients(self, feats):
            cv, ch = self.free.coefficients(feats)
            return cv * 0.5, ch * 0.5  # weaker links, as a learned guide's

    s = make_sample(seed=4, size=(64, 64), scale=8)
    st = DadaSolver(SolverConfig(), guide_model=Learned()).solve(s.rgb, s.source).stats
    assert st.schedule == "chebyshev" and st.iterations == LEARNED_APPLICATIONS
    sched = Schedule.matching_plain(8000, 300)
    assert sched.delta == pytest.approx(300**2 / (2 * 8000**2))


def test_learned_schedule_per_ratio_gives_a_learned_guide_the_dada_free_table():
    """``learned_schedule="per-ratio"``: a learned guide runs DADA-free's per-ratio table (dense and
    hole rows, fixed counts honoured), the schedule `dada-train --solve full` trains through;
    DADA-free is the same under either value; an unknown value is refused with the choices."""
    from dada_ros.core.schedule import LEARNED_APPLICATIONS

    learned = DadaSolver(SolverConfig(device="cpu", learned_schedule="per-ratio"))
    learned.guide_model = object()  # any guide that is not DADA-free
    for scale, holes in ((4.0, False), (8.0, True), (16.0, False)):
        delta, budget = chebyshev_defaults(scale, holes)
        sched = learned.schedule_for(scale, holes=holes)
        assert (len(sched), sched.delta) == (budget, pytest.approx(delta))
    assert len(learned.schedule_for(8.0, 40)) == 40
    matching = DadaSolver(SolverConfig(device="cpu"))
    matching.guide_model = object()
    assert len(matching.schedule_for(8.0)) == LEARNED_APPLICATIONS
    shorter = DadaSolver(SolverConfig(device="cpu", learned_applications=120, max_iterations=100))
    shorter.guide_model = object()
    assert len(shorter.schedule_for(8.0)) == 100  # learned_applications, capped by max_iterations
    shorter.config.max_iterations = 8000
    sched = shorter.schedule_for(8.0)
    assert len(sched) == 120 and sched.delta == pytest.approx(120**2 / (2 * 8000**2))
    with pytest.raises(DadaInputError, match="learned_applications must be an integer"):
        SolverConfig(learned_applications=0).validate()
    free_a = DadaSolver(SolverConfig(device="cpu", learned_schedule="per-ratio")).schedule_for(8.0)
    free_b = DadaSolver(SolverConfig(device="cpu")).schedule_for(8.0)
    assert (len(free_a), free_a.delta) == (len(free_b), free_b.delta)
    with pytest.raises(DadaInputError, match="learned_schedule must be one of matching, per-ratio"):
        SolverConfig(learned_schedule="fast").validate()


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed (the spans serve the fused loop only)")
def test_region_spans_hold_every_region_pixel_and_pack_them_row_by_row():
    """The fused sweep's view of a region (fused_cpu.region_spans): each row's spans cover its
    region pixels and nothing of other rows, runs closer than the gap are merged, the packed
    order is row-major, and many spans a row (more spans than rows) are all kept."""
    from dada_ros.core.fused_cpu import region_spans

    rng = np.random.default_rng(3)
    for region in (rng.random((30, 50)) > 0.8, np.zeros((6, 9), bool), np.tile(np.arange(100) % 10 == 0, (4, 1))):
        spans, row_spans, span_off, pixels = region_spans(region, merge_gap=4)
        H, W = region.shape
        assert row_spans[0] == 0 and row_spans[-1] == len(spans) == len(span_off) - 1
        covered = np.zeros_like(region)
        for i in range(H):
            for a, b in spans[row_spans[i]:row_spans[i + 1]]:
                assert 0 <= a < b <= W and region[i, a] and region[i, b - 1]  # a span starts and ends on the region
                covered[i, a:b] = True
            row = spans[row_spans[i]:row_spans[i + 1]]
            assert np.all(row[1:, 0] - row[:-1, 1] >= 4)  # closer runs were merged
        assert np.all(covered[region])
        np.testing.assert_array_equal(pixels, np.flatnonzero(covered))  # packed row by row, span by span
        np.testing.assert_array_equal(np.diff(span_off), spans[:, 1] - spans[:, 0])
    assert len(region_spans(np.tile(np.arange(100) % 10 == 0, (4, 1)))[0]) == 40  # 10 a row, gap 9 >= 8
