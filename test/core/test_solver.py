import dataclasses
import math

import numpy as np
import pytest
import torch

from dada_ros.core.coefficients import coefficients_paper
from dada_ros.core.errors import DadaInputError
from dada_ros.core.fused_cpu import HAVE_NUMBA, numba_threads, set_numba_threads
from dada_ros.core.loop import adjust_step, diffusion_step, run_loop
from dada_ros.core.metrics import consistency_error, depth_errors
from dada_ros.core.methods import run_method
from dada_ros.core.resample import Partition, Resampler
from dada_ros.core.scenes import TofModel, block_average, make_sample
from dada_ros.core.schedule import chebyshev_defaults
from dada_ros.core.solver import DadaSolver, FreeGuide, SolverConfig, coarse_shapes, upsample_depth

CPU = torch.device("cpu")


@pytest.mark.parametrize("guide_shape,source_shape", [((96, 96), (12, 12)), ((96, 128), (35, 45)), ((90, 120), (23, 31))])
def test_consistency_exact_with_holes_any_ratio(guide_shape, source_shape, with_holes):
    s = make_sample(seed=5, size=guide_shape, source_shape=source_shape)
    src = with_holes(np.nan_to_num(s.source, nan=0.0))
    res = upsample_depth(s.rgb, src, SolverConfig(iterations=300, max_fill_distance=np.inf))
    assert res.depth.shape == guide_shape
    assert np.isfinite(res.depth).all()
    assert consistency_error(res.depth, src) < 1e-5


def test_dada_free_beats_bicubic_x8_x16():
    for scale in (8, 16):
        for seed in (21, 22):
            s = make_sample(seed=seed, scale=scale, size=(128, 128))
            dada, _ = run_method("dada-free", s.rgb, s.source)
            bic, _ = run_method("bicubic", s.rgb, s.source)
            e_d, e_b = depth_errors(dada, s.gt), depth_errors(bic, s.gt)
            assert e_d.mse_cm2 < 0.8 * e_b.mse_cm2, (scale, seed, e_d, e_b)


def test_constant_scene_stays_constant():
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)  # textured guide
    src = np.full((8, 8), 2.5, np.float32)
    res = upsample_depth(rgb, src, SolverConfig(iterations=500))
    np.testing.assert_allclose(res.depth, 2.5, rtol=1e-5)


def test_step_edge_aligned_with_colour_edge_stays_sharp(step_edge_pair):
    rgb, gt, src = step_edge_pair(size=(64, 64), scale=8, col=35)  # edge inside a block
    res = upsample_depth(rgb, src, SolverConfig())
    bic, _ = run_method("bicubic", rgb, src)
    # Both sides of the edge come back at their true depth (within 2 cm), unlike bicubic.
    assert np.abs(res.depth - gt).max() < 0.02
    assert np.abs(bic - gt).max() > 0.2


def test_warm_start_from_converged_answer_is_much_faster():
    s = make_sample(seed=3, scale=8, size=(96, 96))
    # the loop from its own fixed point: with the cold coefficients (a warm depth feature would
    # move the fixed point, tested below)
    solver = DadaSolver(SolverConfig(schedule="plain", tol=1e-4, warm_depth_feature=False))
    cold = solver.solve(s.rgb, s.source)
    warm = solver.solve(s.rgb, s.source, init=cold.depth)
    assert cold.stats.converged and warm.stats.converged
    assert warm.stats.iterations * 10 <= cold.stats.iterations
    assert np.nanmax(np.abs(warm.depth - cold.depth)) < 0.01


def test_warm_start_takes_dada_free_depth_feature_from_its_y0():
    s = make_sample(seed=3, scale=8, size=(96, 96))
    solver = DadaSolver(SolverConfig())
    y0 = np.nan_to_num(s.gt, nan=np.nanmedian(s.gt)).astype(np.float32)  # a prior with the true edges
    y0[:16] = np.nan  # no prior there: the cold Y0 fills it, in the solve and in the feature
    warm = solver.solve(s.rgb, s.source, init=y0, iterations=40)
    assert warm.stats.warm_start and warm.stats.warm_depth_feature
    # the same solve as one whose coefficients were made from (guide, Y0 filled with the cold Y0)
    off = DadaSolver(SolverConfig(warm_depth_feature=False))
    pre = off.prepare(s.rgb, s.source)
    filled = np.where(np.isfinite(y0), y0, pre.y_cold).astype(np.float32)
    cv, ch = FreeGuide().coefficients_from_inputs(pre.rgb, filled, torch.device("cpu"))
    ref = off.solve(s.rgb, s.source, init=y0, iterations=40, prepared=dataclasses.replace(pre, cv=cv, ch=ch))
    np.testing.assert_array_equal(warm.depth, ref.depth)
    # what it is for: the prior's depth edges, which up(S) blurs, hold the diffusion back there
    plain = off.solve(s.rgb, s.source, init=y0, iterations=40)
    assert not plain.stats.warm_depth_feature
    assert depth_errors(warm.depth, s.gt).mse_cm2 < depth_errors(plain.depth, s.gt).mse_cm2
    assert consistency_error(warm.depth, s.source) < 1e-4
    # the paper's form has no depth feature; a cold solve keeps the cold one
    paper = DadaSolver(SolverConfig(), FreeGuide(form="paper"))
    assert not paper.solve(s.rgb, s.source, init=y0, iterations=5).stats.warm_depth_feature
    assert not solver.solve(s.rgb, s.source).stats.warm_depth_feature


@pytest.mark.parametrize("backend", ["torch", "fused"])
@pytest.mark.parametrize("tol", [None, 1e-12])
def test_fast_loop_matches_reference_steps(backend, tol, loop_problem):
    res, src, valid, y0, cv, ch = loop_problem(seed=4, size=(40, 56), source_shape=(9, 13))
    y_ref = y0.clone()
    for _ in range(50):
        y_ref = adjust_step(diffusion_step(y_ref, 0.24 * cv, 0.24 * ch), src, valid, res)
    y_fast = y0.clone()
    stats = run_loop(y_fast, src, valid, cv, ch, res, 0.24, iterations=50, tol=tol, check_every=7, backend=backend)
    assert stats.iterations == 50 and len(stats.residual_history) == 8  # checks at 7, 14, .., 49, 50
    assert torch.allclose(y_fast, y_ref, rtol=1e-5, atol=1e-6)
    # the convergence check measures the same thing: max relative change per check interval
    y_chk, want = y0.clone(), []
    for n in (7,) * 7 + (1,):
        before = y_chk.clone()
        run_loop(y_chk, src, valid, cv, ch, res, 0.24, iterations=n, backend="torch")
        want.append(float(((y_chk - before).abs() / y_chk.abs()).max()))
    np.testing.assert_allclose(stats.residual_history, want, rtol=1e-3, atol=1e-9)


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("threads", [1, 2])
def test_fused_loop_same_answer_for_any_thread_count(threads, monkeypatch, loop_problem):
    """The fused sweep splits cell rows into one chunk per thread; each cell row reads only the
    previous step, so 1, 2 or 5 chunks (5 > threads: uneven chunks) give bit-identical results."""
    import dada_ros.core.fused_cpu as fused_cpu

    res, src, valid, y0, cv, ch = loop_problem(seed=5, size=(48, 72), source_shape=(11, 17))
    before = numba_threads()
    set_numba_threads(threads)
    results = []
    for chunks in (1, 2, 5):
        monkeypatch.setattr(fused_cpu.numba, "get_num_threads", lambda c=chunks: c)
        y = y0.clone()
        run_loop(y, src, valid, cv, ch, res, 0.24, iterations=30, backend="fused")
        results.append(y)
    set_numba_threads(before)
    assert all(torch.equal(results[0], r) for r in results[1:])


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("size,source_shape", [((48, 64), (12, 16)), ((40, 56), (9, 13))])
def test_numba_adjustment_equals_the_torch_one(size, source_shape):
    """The weighted run's start / end adjustment in one numba kernel (any ratio, invalid cells,
    batch 2) gives the torch expression's answer and down(y) = S on valid cells."""
    from dada_ros.core.fused_cpu import adjust_fused_
    from dada_ros.core.loop import adjust_

    res = Resampler(Partition(size, source_shape), CPU)
    g = torch.Generator().manual_seed(3)
    y = torch.rand(2, 1, *size, generator=g) + 0.5
    src = torch.rand(2, 1, *source_shape, generator=g) + 1
    valid = torch.rand(2, 1, *source_shape, generator=g) > 0.2
    want = adjust_(y.clone(), torch.where(valid, src, torch.zeros_like(src)), (~valid).float(), res)
    got = adjust_fused_(y.clone(), src, valid, res)
    assert torch.allclose(got, want, rtol=2e-6, atol=0)
    assert torch.allclose(res.down(got)[valid], src[valid], rtol=2e-6, atol=0)
    cells = res.down(y) / res.down(got)  # invalid cells: untouched (ratio 1)
    assert torch.allclose(cells[~valid], torch.ones_like(cells[~valid]), rtol=1e-6, atol=0)


@pytest.mark.parametrize("backend", ["torch", "fused"])
def test_loop_batch_equals_individual_runs(backend):
    part = Partition((32, 32), (4, 4))
    res = Resampler(part, CPU)
    g = torch.Generator().manual_seed(0)
    src = torch.rand(2, 1, 4, 4, generator=g) + 1
    valid = torch.ones_like(src, dtype=torch.bool)
    cv, ch = torch.rand(2, 1, 31, 32, generator=g), torch.rand(2, 1, 32, 31, generator=g)
    y = res.up(src)
    batch = y.clone()
    run_loop(batch, src, valid, cv, ch, res, 0.2, iterations=40, backend=backend)
    for b in range(2):
        single = y[b:b + 1].clone()
        run_loop(single, src[b:b + 1], valid[b:b + 1], cv[b:b + 1], ch[b:b + 1], res, 0.2, iterations=40,
                 backend="torch")
        assert torch.allclose(single, batch[b:b + 1], atol=1e-6)


def test_tolerance_stop_and_stats():
    s = make_sample(seed=6, scale=4, size=(64, 64))
    res = upsample_depth(s.rgb, s.source, SolverConfig(schedule="plain", tol=1e-3, check_every=10))
    st = res.stats
    assert st.converged and st.residual < 1e-3 and st.iterations % 10 == 0
    assert st.iterations < 8000 and st.seconds >= st.loop_seconds > 0
    assert st.scale == 4 and st.integer_factor == 4 and st.schedule == "plain"
    for schedule in ("plain", "chebyshev"):
        fixed = upsample_depth(s.rgb, s.source, SolverConfig(schedule=schedule, iterations=37)).stats
        assert fixed.iterations == 37 and np.isfinite(fixed.residual) and fixed.schedule == schedule
    # The default: the per-ratio budget of the semi-iteration, no tolerance.
    default = upsample_depth(s.rgb, s.source).stats
    assert default.schedule == "chebyshev" and default.iterations == chebyshev_defaults(4.0)[1]


def test_coarse_to_fine_reaches_same_fixed_point():
    s = make_sample(seed=8, scale=8, size=(64, 64))
    assert coarse_shapes((64, 64), (8, 8)) == [(16, 16), (32, 32)]
    cfg = dict(schedule="plain", tol=1e-6, max_iterations=20000)
    plain = upsample_depth(s.rgb, s.source, SolverConfig(**cfg))
    c2f = upsample_depth(s.rgb, s.source, SolverConfig(**cfg, coarse_to_fine=True))
    assert len(c2f.stats.coarse_iterations) == 2
    assert np.abs(plain.depth - c2f.depth).max() < 5e-3


def test_paper_form_and_kappa_option():
    s = make_sample(seed=9, scale=8, size=(64, 64))
    a = upsample_depth(s.rgb, s.source, SolverConfig(iterations=200), guide_model=FreeGuide(form="paper"))
    b = upsample_depth(s.rgb, s.source, SolverConfig(iterations=200), guide_model=FreeGuide(kappa=0.1))
    assert consistency_error(a.depth, s.source) < 1e-5 and consistency_error(b.depth, s.source) < 1e-5
    rgb = torch.rand(1, 3, 8, 8)
    cv, ch = coefficients_paper(rgb)
    assert cv.shape == (1, 1, 7, 8) and ch.shape == (1, 1, 8, 7)
    assert float(cv.min()) > 0 and float(cv.max()) <= 1


def test_holes_far_from_data_are_nan_and_near_ones_filled():
    rgb = np.full((64, 64, 3), 128, np.uint8)
    src = np.full((16, 16), 2.0, np.float32)
    src[:, 8:] = 0.0  # right half: no return
    res = upsample_depth(rgb, src, SolverConfig(iterations=100, max_fill_distance=3))
    assert np.isfinite(res.depth[:, :32 + 12]).all()  # within 3 cells of data
    assert np.isnan(res.depth[:, -16:]).all()  # 5+ cells away
    assert 0.5 < res.stats.filled_fraction < 1


def test_noisy_tof_source_still_consistent_and_better_than_bicubic():
    s = make_sample(seed=12, scale=8, size=(128, 128), tof=TofModel())
    dada, st = run_method("dada-free", s.rgb, s.source)
    bic, _ = run_method("bicubic", s.rgb, s.source)
    assert consistency_error(dada, s.source) < 1e-5
    assert depth_errors(dada, s.gt).mse_cm2 < depth_errors(bic, s.gt).mse_cm2


@pytest.mark.parametrize("kwargs,match", [
    ({"lam": 0.25}, "lambda"), ({"lam": 0.0}, "lambda"), ({"iterations": 0}, "iterations"),
    ({"tol": -1.0}, "tol"), ({"tol": float("nan")}, "tol"), ({"device": "tpu"}, "device"),
    ({"init": "magic"}, "init"), ({"check_every": 0}, "check_every"),
    ({"warm_depth_feature": "no"}, "warm_depth_feature"), ({"warm_depth_feature": None}, "warm_depth_feature"),
])
def test_bad_config_rejected(kwargs, match):
    with pytest.raises(DadaInputError, match=match):
        SolverConfig(**kwargs).validate()


def test_bad_inputs_rejected():
    rgb = np.zeros((32, 32, 3), np.uint8)
    good = np.ones((8, 8), np.float32)
    cases = [
        (rgb, np.zeros((8, 8), np.float32), "no valid pixel"),
        (rgb, np.full((8, 8), np.nan, np.float32), "no valid pixel"),
        (rgb, np.ones((64, 64), np.float32), "larger than guide"),
        (rgb, np.ones((8, 8, 3), np.float32), "single-channel"),
        (np.zeros((0, 0, 3), np.uint8), good, "empty"),
        (np.zeros((32, 32, 2), np.uint8), good, "guide must be"),
        (np.full((32, 32, 3), np.nan, np.float32), good, "NaN"),
        (np.full((32, 32, 3), 7.0, np.float32), good, r"\[0, 1\]"),
        (rgb, np.array([["a"] * 8] * 8), "numeric"),
    ]
    for guide, src, match in cases:
        with pytest.raises(DadaInputError, match=match):
            upsample_depth(guide, src, SolverConfig(iterations=1))
    with pytest.raises(DadaInputError, match="initial depth"):
        upsample_depth(rgb, good, SolverConfig(iterations=1), init=np.ones((16, 16)))
    with pytest.raises(DadaInputError, match="kappa"):
        FreeGuide(kappa=-1.0)
    with pytest.raises(DadaInputError, match="iterations"):
        DadaSolver(SolverConfig(iterations=5)).solve(rgb, good, iterations=0)


def test_cuda_request_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the error path does not apply")
    with pytest.raises(DadaInputError, match="CUDA"):
        DadaSolver(SolverConfig(device="cuda"))


def test_block_average_any_ratio_ignores_invalid():
    gt = np.array([[1, 1, 3, np.nan], [1, 1, 3, 3]], np.float32)
    np.testing.assert_allclose(block_average(gt, (1, 2)), [[1.0, 3.0]])
    gt2 = np.full((5, 7), 2.0, np.float32)
    assert block_average(gt2, (2, 3)).shape == (2, 3)


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
def test_fused_convergence_check_value_and_nan():
    """The vectorised check (integer max over the bits of non-negative ratios) returns the float
    max relative change, copies Y into prev, and lets a NaN win (it must never pass a tolerance)."""
    from dada_ros.core.fused_cpu import _check_change, region_spans

    def check(u, rx, z, a, b, semi, rows, prev, chunks, region=None, pack=True):
        """_check_change unmasked, or with ``region`` (H, W): through its packed spans, or read at
        every pixel (``pack`` False: a large region)"""
        if region is None:
            none = (np.zeros((0, 2), np.int64), np.zeros(1, np.int64), np.zeros(u.shape[0] + 1, np.int64))
            return _check_change(u, rx, z, a, b, semi, rows, prev, chunks, u, False, False, *none)
        spans, row_spans, span_off, pixels = region_spans(region)
        packed = (lambda img: np.ascontiguousarray(img.reshape(-1)[pixels])[None]) if pack else (lambda img: img)
        return _check_change(u, rx, packed(z), a, b, semi, rows, prev, chunks, packed(region), True, pack,
                             spans, span_off, row_spans)

    rng = np.random.default_rng(0)
    u = (rng.random((10, 12)) + 1).astype(np.float32)
    rx = (rng.random((3, 12)) + 0.5).astype(np.float32)
    rows = np.repeat(np.arange(3), [4, 3, 3]).astype(np.int64)
    prev = (rng.random((10, 12)) + 1).astype(np.float32)
    z = (rng.random((10, 12)) + 1).astype(np.float32)
    a, b = np.float32(1.7), np.float32(-0.7)
    y = u * rx[rows]
    want = float((np.abs(y - prev) / y).max())
    got, abs_max = check(u, rx, z, a, b, False, rows, prev.copy(), 3)
    assert float(got) == pytest.approx(want, rel=1e-6)
    assert float(abs_max) == float(np.abs(y).max())  # the divergence guard's range, same pass
    p = prev.copy()
    check(u, rx, z, a, b, False, rows, p, 2)
    np.testing.assert_array_equal(p, y)
    # The weighted recurrence's iterate a*U*R + b*Z.
    y_semi = a * y + b * z
    p = prev.copy()
    got, abs_max = check(u, rx, z, a, b, True, rows, p, 2)
    assert float(got) == pytest.approx(float((np.abs(y_semi - prev) / np.abs(y_semi)).max()), rel=1e-5)
    assert float(abs_max) == pytest.approx(float(np.abs(y_semi).max()), rel=1e-6)
    np.testing.assert_allclose(p, y_semi, rtol=1e-6)
    # ... only inside a region (Schedule.region): U*R + b*m*(Z - U*R), plain where m = 0.
    m = (rng.random((10, 12)) > 0.5).astype(np.float32)
    y_region = y + b * m * (z - y)
    p = prev.copy()
    got = float(check(u, rx, z, a, b, True, rows, p, 2, m)[0])
    assert got == pytest.approx(float((np.abs(y_region - prev) / np.abs(y_region)).max()), rel=1e-5)
    np.testing.assert_allclose(p, y_region, rtol=1e-6)
    q = prev.copy()  # the same region read at every pixel (not packed) gives the same iterate
    assert float(check(u, rx, z, a, b, True, rows, q, 2, m, pack=False)[0]) == got
    np.testing.assert_array_equal(q, p)
    u[4, 5] = np.nan
    assert np.isnan(check(u, rx, z, a, b, False, rows, prev.copy(), 1)).all()
    u[4, 5] = -np.inf
    assert check(u, rx, z, a, b, False, rows, prev.copy(), 2)[1] == np.inf


def test_spin_setting_is_in_force_when_dada_ros_comes_first() -> None:
    """dada_ros sets GOMP_SPINCOUNT before libgomp loads (a busy CPU otherwise stalls the loop at
    its barriers: doc/method.md "Sharing the CPU"); importing torch first is reported."""
    import subprocess
    import sys

    from dada_ros.core.fused_cpu import spin_setting_problem

    assert spin_setting_problem() is None  # this suite imports dada_ros first (test/conftest.py)
    code = ("import torch, dada_ros\nfrom dada_ros.core.fused_cpu import spin_setting_problem\n"
            "print(spin_setting_problem() is not None)")
    env = {k: v for k, v in __import__("os").environ.items() if k != "GOMP_SPINCOUNT"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.strip() == "True", out.stderr[-2000:]


@pytest.mark.skipif(not HAVE_NUMBA, reason="the one-pass coefficient kernel needs numba")
@pytest.mark.skipif(not HAVE_NUMBA, reason="the one-pass kernels need numba")
@pytest.mark.parametrize("shape", [(480, 640), (37, 53), (2, 2), (1, 5)])
def test_free_coefficients_from_the_inputs_equal_features_then_coefficients(shape):
    """DADA-free's CPU preparation makes the coefficients from the guide and Y0 in one pass, with no
    feature tensor: bit-identical to free_features then coefficients_from_features (so every
    DADA-free answer is unchanged), and the solver's preparation takes that path."""
    from dada_ros.core import coefficients as coef

    rng = np.random.default_rng(3)
    guide8 = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    rgb = coef.guide_to_unit_float(guide8)
    depth = (0.2 + 6 * rng.random(shape)).astype(np.float32)
    for kappa in (0.03, 0.1):
        want = coef.coefficients_from_features(
            coef.free_features(torch.from_numpy(rgb).permute(2, 0, 1)[None], torch.from_numpy(depth)[None, None]), kappa)
        got = coef.free_coefficients_from_inputs(rgb, depth, kappa)
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.dtype == torch.float32 and torch.equal(g, w)
    with pytest.raises(DadaInputError):
        coef.free_coefficients_from_inputs(rgb[..., :2], depth)
    if min(shape) >= 8:
        src = (1 + rng.random((shape[0] // 4, shape[1] // 4))).astype(np.float32)
        g8 = np.ascontiguousarray(guide8[: src.shape[0] * 4, : src.shape[1] * 4])
        fast = DadaSolver(SolverConfig(device="cpu")).prepare(g8, src)
        slow = DadaSolver(SolverConfig(device="cpu", coarse_to_fine=True)).prepare(g8, src)
        assert fast.features is None and slow.features is not None  # coarse-to-fine needs the features
        assert torch.equal(fast.cv, slow.cv) and torch.equal(fast.ch, slow.ch)


@pytest.mark.parametrize("shape", [(1, 4, 37, 53), (2, 4, 2, 2), (1, 4, 480, 640)])
def test_one_pass_coefficients_equal_the_torch_expressions(shape):
    """DADA-free's coefficients on the CPU come from one numba pass, bit-identical to the torch
    expressions (which training and the GPU keep), and a gradient still flows where one is asked for."""
    from dada_ros.core import coefficients as coef

    f = torch.rand(shape, generator=torch.Generator().manual_seed(1)) * 3
    kappa = 0.03
    fused = coef.coefficients_from_features(f, kappa)
    assert coef._fused_applies(f, kappa)
    xv = (f[:, :, 1:, :] - f[:, :, :-1, :]).abs().mean(dim=1, keepdim=True)
    xh = (f[:, :, :, 1:] - f[:, :, :, :-1]).abs().mean(dim=1, keepdim=True)
    for got, x in zip(fused, (xv, xh)):
        want = 1.0 / (1.0 + x * x / kappa ** 2)
        assert got.shape == want.shape and got.dtype == torch.float32
        assert torch.equal(got, want)  # bit-identical: a shut gate stays exactly DADA-free
    # an underflowing kappa^2 divides by zero the IEEE way in both (inf / NaN), not with an exception
    tiny = coef.coefficients_from_features(f, 1e-30)
    for got, x in zip(tiny, (xv, xh)):
        torch.testing.assert_close(got, 1.0 / (1.0 + x * x / 1e-60), rtol=0, atol=0, equal_nan=True)
    g = f.clone().requires_grad_(True)
    assert not coef._fused_applies(g, kappa)
    # a learned kappa in training keeps the torch expressions; at inference (no gradient) the kernel
    log_k = torch.tensor(math.log(kappa), requires_grad=True)
    assert not coef._fused_applies(f, log_k.exp())
    with torch.no_grad():
        assert coef._fused_applies(f, log_k.exp())
    # a learned guide's C channels at inference: the kernel, equal to torch to float rounding (the
    # channel mean may be summed in another order there)
    f7 = torch.rand(1, 7, 31, 45, generator=torch.Generator().manual_seed(2)) * 3
    assert coef._fused_applies(f7, torch.tensor(kappa))
    got7 = coef.coefficients_from_features(f7, torch.tensor(kappa))
    xv7 = (f7[:, :, 1:, :] - f7[:, :, :-1, :]).abs().mean(dim=1, keepdim=True)
    torch.testing.assert_close(got7[0], 1.0 / (1.0 + xv7 * xv7 / kappa ** 2), rtol=1e-5, atol=1e-6)
    cv, ch = coef.coefficients_from_features(g, kappa)
    (cv.sum() + ch.sum()).backward()
    assert g.grad is not None and torch.isfinite(g.grad).all()
