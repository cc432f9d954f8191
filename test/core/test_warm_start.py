"""Video warm start: alignment (flow + colour-guided selection + fill), the per-frame pipeline policy."""

from dataclasses import replace

import cv2
import numpy as np
import pytest

from dada_ros.core import warm_accept as wa
from dada_ros.core import warm_start as ws
from dada_ros.core.errors import DadaInputError
from dada_ros.core.metrics import consistency_error, depth_errors
from dada_ros.core.pipeline import WARM_DELTA_FACTOR, FramePipeline, WarmConfig, refine_young
from dada_ros.core.resample import Partition, valid_source_mask
from dada_ros.core.sequences import SequenceConfig, make_sequence
from dada_ros.core.scenes import TofModel, block_average, intrinsics, random_scene, render, simulate_tof
from dada_ros.core.schedule import Schedule, chebyshev_defaults
from dada_ros.core.guard import GuardConfig, GuardedSolver
from dada_ros.core.solver import DadaSolver, FreeGuide, SolverConfig


def translation_sequence(seed=2, size=(96, 128), scale=8, step=2, n=6, tof=None):
    """Pure translation: crops of one wide render, ``step`` px further right each frame."""
    H, W = size
    rgb_b, d_b = render(random_scene(seed), intrinsics(W + step * n, H), (H, W + step * n))
    gt_b = np.where(np.isfinite(d_b), d_b, np.nan).astype(np.float32)
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n + 1):
        rgb = np.ascontiguousarray(rgb_b[:, i * step:i * step + W])
        gt = np.ascontiguousarray(gt_b[:, i * step:i * step + W])
        shape = (H // scale, W // scale)
        src = (np.nan_to_num(block_average(gt, shape)) if tof is None else simulate_tof(gt, rgb, shape, tof, rng))
        frames.append((rgb, gt, src))
    return frames


def moving_square(x0, size=(64, 96), seed=0):
    """Textured background at 3 m with a green patch at columns 30..37 (hidden while the square
    covers it), a red square at 1 m whose left edge is at column ``x0``."""
    H, W = size
    rng = np.random.default_rng(seed)
    rgb = cv2.resize((rng.random((8, 12, 3)) * 120 + 60).astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST)
    rgb[20:44, 30:38] = (20, 200, 40)
    depth = np.full((H, W), 3.0, np.float32)
    rgb[20:44, x0:x0 + 24] = (230, 30, 30)
    depth[20:44, x0:x0 + 24] = 1.0
    return rgb, depth


@pytest.fixture(scope="module")
def solver():
    return DadaSolver(SolverConfig(device="cpu"))


@pytest.fixture(scope="module")
def quick():
    """Cold frames capped at 400 steps: for tests of the policy, not of the accuracy."""
    return DadaSolver(SolverConfig(device="cpu", max_iterations=400))


@pytest.fixture(scope="module")
def translation(solver):
    frames = translation_sequence()
    cold = [solver.solve(rgb, src) for rgb, _, src in frames]
    # The same budget of plain steps from the cold start (iterations=100 alone is the Chebyshev
    # semi-iteration, which at 100 applications already is the cold equilibrium).
    cold100 = [solver.solve(rgb, src, schedule=Schedule.plain(100)) for rgb, _, src in frames]
    return frames, cold, cold100


def mean_mse(outs, frames):
    return float(np.mean([depth_errors(o.depth, gt).mse_cm2 for o, (_, gt, _) in zip(outs[1:], frames[1:])]))


def test_flow_warm_start_beats_cold_at_equal_budget_and_the_equilibrium(translation, solver):
    frames, cold, cold100 = translation
    pipe = FramePipeline(solver, WarmConfig(mode="flow", warm_iterations=100, slow_motion_px=0.0))  # a fixed budget
    outs = [pipe.process(rgb, src, 0.1 * i) for i, (rgb, _, src) in enumerate(frames)]
    assert [o.stats["init_mode"] for o in outs] == ["cold"] + ["flow"] * (len(frames) - 1)
    assert all(o.stats["iterations"] == 100 for o in outs[1:])
    flow, eq, c100 = mean_mse(outs, frames), mean_mse(cold, frames), mean_mse(cold100, frames)
    assert flow < 0.95 * eq, (flow, eq)  # measured 0.87 x the cold equilibrium
    assert flow < 0.5 * c100, (flow, c100)
    # Naive (no alignment) loses to the cold equilibrium under motion: why it is not the default,
    # and the acceptance test sees it (every naive frame starts cold).
    everything = wa.AcceptConfig(motion_model=False, reject_cell_error=1e9, max_median_error=1e9,
                                 min_tracked_fraction=0.0, max_reject_fraction=1.0)
    forced = FramePipeline(solver, WarmConfig(mode="naive", warm_iterations=100, accept=everything,
                                              max_init_ratio_error=1e9))
    f_outs = [forced.process(rgb, src, 0.1 * i) for i, (rgb, _, src) in enumerate(frames)]
    assert mean_mse(f_outs, frames) > eq
    naive = FramePipeline(solver, WarmConfig(mode="naive", warm_iterations=100))
    n_outs = [naive.process(rgb, src, 0.1 * i) for i, (rgb, _, src) in enumerate(frames)]
    # (rejected cells everywhere: more to cold-initialise than a cold frame costs, or too many;
    # after two declines in a row the backoff skips the test)
    assert all(o.stats["init_mode"] == "cold" and ("cold-initialised" in o.stats["cold_reason"]
                                                   or "disagrees" in o.stats["cold_reason"]
                                                   or "backing off" in o.stats["cold_reason"]
                                                   or "view moved" in o.stats["cold_reason"]) for o in n_outs[1:])
    assert mean_mse(n_outs, frames) == eq


def test_down_y_equals_s_exactly_on_warm_frames_with_noise_and_holes(quick):
    solver = quick
    frames = translation_sequence(seed=3, n=3, tof=TofModel(noise_quad=0.0, dropout=0.1))
    pipe = FramePipeline(solver, WarmConfig(mode="flow", warm_iterations=40))
    for i, (rgb, _, src) in enumerate(frames):
        out = pipe.process(rgb, src, 0.1 * i)
        if i:
            assert out.stats["init_mode"] == "flow"
            assert consistency_error(out.depth, src) < 1e-5


def test_validity_mask_excludes_disoccluded_pixels_and_never_ghosts():
    (r0, d0), (r1, d1) = moving_square(30), moving_square(38)
    strip = np.zeros(d0.shape, bool)
    strip[20:44, 30:38] = True  # square before, background now
    for preset, var in ((cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, None), (cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, None),
                        (cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, 0)):  # the default: medium, no variational refinement
        a = ws.align_frames(d0, r0, r1, ws.AlignConfig(preset=preset, variational_iterations=var))
        # The revealed patch was not visible in the previous frame: nothing there can be tracked,
        # and the fill does not leak the square's (or anything's) depth into it.
        assert not a.valid[strip].any()
        assert np.isnan(a.y0[strip]).all()
        assert a.valid[~strip].mean() > 0.95
        # Whatever is tracked or filled carries the right surface's depth: no foreground ghost.
        known = np.isfinite(a.y0)
        assert np.abs(a.y0 - d1)[known].max() < 1e-6
        assert np.all(a.source_index[~a.valid] == -1) and np.all(a.source_index[a.valid] >= 0)


def test_scene_cut_falls_back_to_cold(quick):
    solver = quick
    a = translation_sequence(seed=2, n=1)
    b = translation_sequence(seed=7, n=1)
    pipe = FramePipeline(solver, WarmConfig(mode="flow", warm_iterations=50))
    pipe.process(a[0][0], a[0][2], 0.0)
    out = pipe.process(b[0][0], b[0][2], 0.1)
    assert out.stats["init_mode"] == "cold" and out.stats["cold_reason"].startswith("scene cut")
    np.testing.assert_array_equal(out.depth, solver.solve(b[0][0], b[0][2]).depth)  # exactly the cold answer
    after = pipe.process(b[1][0], b[1][2], 0.2)
    assert after.stats["init_mode"] == "flow"


def test_one_frame_depth_glitch_leaves_no_ghost(quick):
    solver = quick
    frames = translation_sequence(seed=2, n=3)
    pipe = FramePipeline(solver, WarmConfig(mode="flow", warm_iterations=50))
    pipe.process(frames[0][0], frames[0][2], 0.0)
    glitch = pipe.process(frames[1][0], frames[1][2] * 1.5, 0.1)
    assert glitch.stats["init_mode"] == "cold" and "disagrees" in glitch.stats["cold_reason"]
    back = pipe.process(frames[2][0], frames[2][2], 0.2)
    assert back.stats["init_mode"] == "cold" and "disagrees" in back.stats["cold_reason"]


def test_pipeline_fallbacks_and_modes(quick):
    solver = quick
    (rgb, _, src), (rgb1, _, src1) = translation_sequence(seed=2, n=1)
    pipe = FramePipeline(solver, WarmConfig(mode="flow", warm_iterations=20, max_age=0.5))
    assert pipe.process(rgb, src, 1.0).stats["cold_reason"] == "no previous frame"
    assert "too old" in pipe.process(rgb1, src1, 2.0).stats["cold_reason"]
    assert "backwards" in pipe.process(rgb1, src1, 1.5).stats["cold_reason"]
    small = pipe.process(rgb[:64, :64], src[:8, :8], 1.6).stats
    assert small["cold_reason"] == "image size changed"
    # Seeded previous frame (the CLI's --init / --init-guide); naive needs no guide, flow does.
    prev = solver.solve(rgb, src, iterations=200).depth
    pipe = FramePipeline(solver, WarmConfig(mode="flow", warm_iterations=20))
    pipe.set_previous(prev, None, 0.0)
    assert pipe.process(rgb1, src1, 0.1).stats["cold_reason"] == "no previous guide to align with"
    pipe = FramePipeline(solver, WarmConfig(mode="naive", warm_iterations=20))
    pipe.set_previous(prev, None, 0.0)
    st = pipe.process(rgb, src, 0.1).stats  # the same view again: the unaligned prior fits
    assert st["init_mode"] == "naive" and st["iterations"] == 20 and st["warm_start"]
    pipe = FramePipeline(solver, WarmConfig(mode="off"))
    pipe.set_previous(prev, rgb, 0.0)
    assert pipe.process(rgb1, src1, 0.1).stats["cold_reason"] == "warm start off"


def test_young_pixels_get_refined_and_stats_count_the_work(quick):
    solver = quick
    frames = translation_sequence(seed=2, n=3, step=6)
    pipe = FramePipeline(solver, WarmConfig(mode="flow", warm_iterations=30, refine_iterations=60))
    stats = [pipe.process(rgb, src, 0.1 * i).stats for i, (rgb, _, src) in enumerate(frames)]
    warm = stats[1:]
    assert all(s["init_mode"] == "flow" for s in warm)
    assert any(s["refine_fraction"] > 0 for s in warm)  # the band entering at the right border
    for s in warm:
        assert s["effective_iterations"] == pytest.approx(s["iterations"] + s["refine_iterations"] * s["refine_fraction"])
        assert s["refine_fraction"] < 0.6
    off = FramePipeline(solver, WarmConfig(mode="flow", warm_iterations=30, refine_iterations=0))
    st = [off.process(rgb, src, 0.1 * i).stats for i, (rgb, _, src) in enumerate(frames)]
    assert all(s["refine_fraction"] == 0 and s["effective_iterations"] == s["iterations"] for s in st)


def test_refine_young_writes_only_young_tiles_any_ratio(quick):
    solver = quick
    frames = translation_sequence(seed=2, n=0, size=(90, 120))
    rgb, gt, _ = frames[0]
    src = np.nan_to_num(block_average(gt, (23, 31)))  # non-integer ratio
    y0 = solver.solve(rgb, src, iterations=10).depth
    young = np.zeros(y0.shape, bool)
    young[:, -10:] = True
    y, refined, solved, work = refine_young(solver, rgb, src, y0, young, iterations=50)
    assert refined[:, -10:].all() and solved > 0 and work == 50.0 * solved
    np.testing.assert_array_equal(y[~refined], y0[~refined])
    assert np.isfinite(y).all()


@pytest.mark.skipif(not ws.HAVE_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("noise", [1.0, 8.0, 64.0])
def test_numba_and_numpy_selection_and_fill_agree(noise):
    rng = np.random.default_rng(int(noise))
    H, W = 40, 56
    depth = (rng.random((H, W)) + 1).astype(np.float32)
    depth[rng.random((H, W)) < 0.05] = np.nan
    a = (rng.random((H, W, 3)) * 255).astype(np.uint8)
    b = np.clip(a + rng.normal(0, noise, a.shape), 0, 255).astype(np.uint8)
    flow = (rng.random((H, W, 2)) * 8 - 4).astype(np.float32)
    for accept, max_score in ((0.0, np.inf), (0.02, np.inf), (0.02, 0.05)):
        r_nb = ws.select_warp(depth, a, b, flow, 2, 0.005, accept, use_numba=True, max_score=max_score)
        r_np = ws.select_warp(depth, a, b, flow, 2, 0.005, accept, use_numba=False, max_score=max_score)
        for x, y in zip(r_nb, r_np):
            np.testing.assert_array_equal(x, y)
        far = ~(r_nb[1] <= max_score)  # above max_score: no selection, the score still reported
        assert np.isnan(r_nb[0][far]).all() and (r_nb[2][far] == -1).all()
        assert (r_nb[2][~far & np.isfinite(r_nb[1])] >= 0).all()
    if noise == 64.0:
        assert 0 < far.mean() < 1  # the threshold cut some pixels and kept others
    ok = rng.random((H, W)) > 0.3
    f_nb = ws.guided_fill(np.where(ok, depth, np.nan), ok, b, 0.1, 5, use_numba=True)
    f_np = ws.guided_fill(np.where(ok, depth, np.nan), ok, b, 0.1, 5, use_numba=False)
    for x, y in zip(f_nb, f_np):
        np.testing.assert_array_equal(x, y)
    for i, j in zip(ws._holes_numba(ok), np.nonzero(~ok)):
        np.testing.assert_array_equal(i, j)
    # in place: the caller's own arrays are filled (and only when asked)
    y_own, ok_own = np.where(ok, depth, np.nan).astype(np.float32), ok.copy()
    ws.guided_fill(y_own, ok_own, b, 0.1, 5)
    np.testing.assert_array_equal(ok_own, ok)
    f_in = ws.guided_fill(y_own, ok_own, b, 0.1, 5, in_place=True)
    assert f_in[0] is y_own and f_in[1] is ok_own
    np.testing.assert_array_equal(y_own, f_nb[0])
    np.testing.assert_array_equal(ok_own, f_nb[1])


def test_selection_picks_the_colour_matching_side_of_an_edge():
    # Previous frame: left half red at 1 m, right half blue at 2 m; a flow that points one pixel
    # too far right at the edge must not carry the blue depth onto a red pixel.
    H, W = 8, 16
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:, :8] = (220, 30, 30)
    rgb[:, 8:] = (30, 30, 220)
    depth = np.where(np.arange(W) < 8, 1.0, 2.0).astype(np.float32)[None].repeat(H, 0)
    flow = np.zeros((H, W, 2), np.float32)
    flow[:, :, 0] = 1.0
    y, _, _ = ws.select_warp(depth, rgb, rgb, flow, radius=1)
    np.testing.assert_array_equal(y[:, :8], 1.0)
    near, _ = ws._remap_warp(depth, flow, "nearest")
    assert (near[:, 7] == 2.0).all()  # plain nearest sampling does


def test_align_rejects_bad_inputs_and_config():
    rgb, d = moving_square(30)
    with pytest.raises(DadaInputError, match="same size"):
        ws.align_frames(d, rgb, rgb[:32])
    with pytest.raises(DadaInputError, match="same size"):
        ws.align_previous(d[:32], rgb, rgb)
    with pytest.raises(DadaInputError, match="HxW"):
        ws.align_frames(d[..., None].repeat(2, 2), rgb, rgb)
    for bad in (dict(flow_scale=0), dict(warp="cubic"), dict(search_radius=9), dict(max_color_error=-1),
                dict(variational_iterations=-1), dict(variational_iterations=1.5)):
        with pytest.raises(DadaInputError):
            ws.align_frames(d, rgb, rgb, ws.AlignConfig(**bad))
    for bad in (dict(mode="fast"), dict(warm_iterations=0), dict(refine_iterations=-1), dict(refine_min_fraction=0)):
        with pytest.raises(DadaInputError):
            WarmConfig(**bad).validate()


def test_align_previous_keeps_its_contract():
    (r0, d0), (r1, _) = moving_square(30), moving_square(32)
    y0, valid, info = ws.align_previous(d0, r0, r1)
    assert y0.shape == d0.shape and y0.dtype == np.float32 and valid.dtype == bool
    assert not info.cut and 0.9 < info.valid_fraction <= 1 and info.flow_ms > 0
    assert set(info.as_dict()) >= {"flow_ms", "valid_fraction", "photometric_error", "cut", "reason"}
    # Float and uint16 guides are accepted too.
    y1, _, _ = ws.align_previous(d0, r0.astype(np.float32) / 255, (r1.astype(np.uint16) * 257))
    assert np.isfinite(y1).mean() > 0.9


def test_failed_flow_is_reported_as_a_cut_and_the_frame_starts_cold(quick):
    solver = quick
    rng = np.random.default_rng(0)
    rgb = (rng.random((8, 8, 3)) * 255).astype(np.uint8)  # too small for DIS
    a = ws.align_frames(np.ones((8, 8), np.float32), rgb, rgb)
    assert a.info.cut and a.info.reason.startswith("optical flow failed") and not a.valid.any()
    pipe = FramePipeline(solver, WarmConfig(mode="flow", warm_iterations=10))
    src = np.full((2, 2), 2.0, np.float32)
    pipe.process(rgb, src, 0.0)
    st = pipe.process(rgb, src, 0.1).stats
    assert st["init_mode"] == "cold" and "optical flow failed" in st["cold_reason"]


# ----------------------------------------------------------------------------- acceptance (issue 19)


def test_acceptance_keeps_an_aligned_prior_and_rejects_a_large_motion_one():
    frames = translation_sequence(seed=2, size=(96, 128), n=6, step=2)
    (r0, g0, _), (r1, _, s1), (r6, _, s6) = frames[0], frames[1], frames[6]
    prev = np.nan_to_num(g0, nan=3.0)
    # 2 px motion, aligned by the flow: the prior fits almost everywhere.
    a = ws.align_frames(prev, r0, r1)
    good = wa.accept_prior(a.y0, s1, a.valid)
    assert good.accepted, good.reason
    assert good.median_error < 0.01 and good.cold_fraction < 0.1
    # The same prior unaligned 12 px later (a large motion the flow never saw): the edges are in
    # the wrong cells, the test sees it and the frame starts cold.
    bad = wa.accept_prior(prev, s6)
    assert not bad.accepted and "disagrees" in bad.reason
    assert bad.rejected_fraction > good.rejected_fraction


def test_acceptance_cold_initialises_only_the_cells_where_the_prior_is_wrong():
    rng = np.random.default_rng(0)
    H, W, s = 96, 128, 8
    gt = (2.0 + 0.3 * rng.random((H, W))).astype(np.float32)
    gt[:, 64:] += 1.0  # a depth edge
    src = block_average(gt, (H // s, W // s))
    prior = gt.copy()
    prior[32:48, 16:40] = 1.2  # a ghost (a moving object that left): 2 x 3 cells
    prior[80:88, 120:128] = np.nan  # a disocclusion without prior: 1 cell
    acc = wa.accept_prior(prior, src)
    assert acc.accepted, acc.reason
    ghost = np.zeros((H, W), bool)
    ghost[32:48, 16:40] = True
    assert acc.cold_pixels[ghost].all() and np.isnan(acc.y0[ghost]).all()
    assert acc.cold_pixels[80:88, 120:128].all()
    # Kept elsewhere, exactly (the motion fit of an unmoved prior is the identity to 1e-3) ...
    keep = ~acc.cold_pixels
    assert keep.mean() > 0.8
    np.testing.assert_allclose(acc.y0[keep], prior[keep], rtol=2e-3)
    # ... and the rejection reaches at most one dilation ring of cells around the ghost.
    allowed = np.zeros((H, W), bool)
    allowed[24:56, 8:48] = True  # the ghost's cells and one ring of cells around them
    allowed[80:88, 120:128] = True  # the cell without prior (not dilated: it was not tested)
    assert not acc.cold_pixels[~allowed].any()
    assert np.isnan(acc.cell_error).sum() == 1  # only the cell without prior was not tested


def test_acceptance_corrects_the_depth_change_of_a_forward_motion():
    frames = translation_sequence(seed=4, size=(96, 128), n=0)
    _, gt, src = frames[0]
    prev = np.nan_to_num(gt, nan=3.0) + 0.15  # the previous frame saw everything 15 cm farther
    on = wa.accept_prior(prev, src)
    assert on.accepted and abs(on.motion[3] + 0.15) < 0.02 and abs(on.motion[0] - 1) < 0.02
    off = wa.accept_prior(prev, src, config=wa.AcceptConfig(motion_model=False))
    assert not off.accepted and off.median_error > 0.02


def test_acceptance_config_and_inputs_are_checked():
    for bad in (dict(reject_cell_error=0), dict(cell_coverage=2), dict(dilate_cells=-1), dict(max_median_error=np.inf)):
        with pytest.raises(DadaInputError):
            wa.accept_prior(np.ones((16, 16)), np.ones((2, 2)), config=wa.AcceptConfig(**bad))
    with pytest.raises(DadaInputError):
        wa.accept_prior(np.ones((16, 16, 2)), np.ones((2, 2)))
    none = wa.accept_prior(np.full((16, 16), np.nan), np.ones((2, 2)))
    assert not none.accepted and "tracked" in none.reason


class PlainWarmRun(FramePipeline):
    """The warm run without its Chebyshev region: plain steps everywhere (the comparison)."""

    def _warm_schedule(self, iterations, scale):
        return Schedule.plain(iterations)


def test_a_warm_frame_is_one_solve_whose_cold_cells_converge_within_the_budget(quick):
    solver = quick
    frames = translation_sequence(seed=2, size=(96, 128), n=1, step=2)
    (r0, g0, s0), (r1, g1, s1) = frames
    prev = solver.solve(r0, s0).depth.copy()
    prev[24:56, 8:40] = 1.0  # a ghost in the previous output
    calls = []

    class Counting(DadaSolver):
        def solve(self, *a, **k):
            calls.append(k.get("schedule"))
            return super().solve(*a, **k)

    counting = Counting(solver.config)
    # the ghost covers ~19% of this small image: above the default max_cold_area, which the next
    # test checks; here the region's convergence is the subject
    # the "plain" warm schedule (a learned guide's): plain steps on the kept prior
    pipe = FramePipeline(counting, WarmConfig(mode="flow", warm_iterations=20, max_cold_area=0.7, warm_schedule="plain"))
    pipe.set_previous(prev, r0, 0.0)
    st = pipe.process(r1, s1, 0.1).stats
    assert st["init_mode"] == "flow", st["cold_reason"]
    assert len(calls) == 1 and calls[0].region is not None  # ONE solve, with a region
    assert st["accept_rejected_fraction"] > 0.05 and 0 < st["warm_region_fraction"] < 0.7
    assert st["iterations"] == st["effective_iterations"] == 20
    region = calls[0].region
    assert region[24:56, 12:40].all() and not region.all()  # the ghost's cells, not the whole frame
    off = PlainWarmRun(solver, WarmConfig(mode="flow", warm_iterations=20, max_cold_area=0.7, warm_schedule="plain"))
    off.set_previous(prev, r0, 0.0)
    out_off = off.process(r1, s1, 0.1)
    out_on = pipe.previous()[0]
    box = (slice(24, 56), slice(12, 40))
    e_on = np.nanmean((out_on[box] - g1[box]) ** 2)
    e_off = np.nanmean((out_off.depth[box] - g1[box]) ** 2)
    assert e_on < 0.5 * e_off  # the ghost region converged instead of 20 plain steps from bicubic
    assert consistency_error(out_on, s1) < 1e-4
    # away from the region the warm run is the plain one: the kept prior's detail is not walked
    # away (near it, the converging region pulls its neighbours along)
    far = cv2.distanceTransform((~region).astype(np.uint8), cv2.DIST_L2, 3) > 16
    assert far.mean() > 0.3
    np.testing.assert_allclose(out_on[far], out_off.depth[far], rtol=0.01)


def test_a_large_cold_area_starts_cold_without_a_solve_of_the_prior(quick):
    """More cold-initialised cells than max_cold_area: the warm run would not converge them, so the
    frame is a cold one (one solve, the cold schedule) and says why; below it, the warm run."""
    solver = quick
    (r0, g0, s0), (r1, g1, s1) = translation_sequence(seed=2, size=(96, 128), n=1, step=2)
    prev = solver.solve(r0, s0).depth.copy()
    prev[24:56, 8:40] = 1.0  # a ghost: ~19% of the image becomes cold cells
    calls = []

    class Counting(DadaSolver):
        def solve(self, *a, **k):
            calls.append(k.get("schedule"))
            return super().solve(*a, **k)

    pipe = FramePipeline(Counting(solver.config), WarmConfig(mode="flow", warm_iterations=20))
    assert pipe.warm.max_cold_area < 0.19
    pipe.set_previous(prev, r0, 0.0)
    st = pipe.process(r1, s1, 0.1).stats
    assert st["init_mode"] == "cold" and "a cold frame is better" in st["cold_reason"]
    assert len(calls) == 1 and calls[0] is None and st["iterations"] > 20  # the solver's own schedule
    assert st["warm_declined_in_row"] == 1
    calls.clear()
    pipe.set_previous(solver.solve(r0, s0).depth, r0, 0.0)  # no ghost: a few cold cells at most
    st = pipe.process(r1, s1, 0.1).stats
    assert st["init_mode"] == "flow", st["cold_reason"]
    assert st["warm_region_fraction"] <= pipe.warm.max_cold_area


def test_exposure_change_is_compensated_and_a_large_one_starts_cold(quick):
    frames = translation_sequence(seed=2, size=(96, 128), n=1, step=2)
    (r0, g0, _), (r1, _, s1) = frames
    dark = np.clip(r1.astype(np.float32) * 0.8, 0, 255).astype(np.uint8)
    bright = np.clip(r1.astype(np.float32) * 1.3, 0, 255).astype(np.uint8)
    prev = np.nan_to_num(g0, nan=3.0)
    plain = ws.align_frames(prev, r0, dark, ws.AlignConfig(compensate_exposure=False))
    comp = ws.align_frames(prev, r0, dark)
    assert 0.75 < comp.info.exposure_gain[0] < 0.85 and plain.info.exposure_gain == (1.0, 1.0, 1.0)
    assert comp.info.valid_fraction > max(plain.info.valid_fraction, 0.9)
    pipe = FramePipeline(quick, WarmConfig(mode="flow", warm_iterations=10))
    slight = np.clip(r1.astype(np.float32) * 0.95, 0, 255).astype(np.uint8)
    pipe.set_previous(prev, r0, 0.0)
    st = pipe.process(slight, s1, 0.1).stats
    assert st["init_mode"] == "flow" and 0.93 < st["exposure_gain"][1] < 0.97
    for changed in (dark, bright):  # the prior was solved on a guide of another contrast: cold
        pipe.set_previous(prev, r0, 0.0)
        st = pipe.process(changed, s1, 0.1).stats
        assert st["init_mode"] == "cold" and st["cold_reason"].startswith("exposure changed")


def test_handheld_sequences_are_seeded_and_do_what_they_say():
    cfg = SequenceConfig(seed=3, size=(48, 64), source_shape=(6, 8), tof=None,
                         plan=(("static", 1), ("exposure", 2), ("drop", 2), ("dynamic", 2), ("shake", 1), ("blur", 1)))
    a, b = list(make_sequence(cfg)), list(make_sequence(cfg))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.rgb, y.rgb)
        assert x.gain == y.gain and x.stamp == y.stamp
    assert [f.segment for f in a] == ["static", "exposure", "exposure", "drop", "drop", "dynamic", "dynamic", "shake", "blur"]
    assert a[1].gain != (1.0, 1.0, 1.0) and a[3].gain == (1.0, 1.0, 1.0)
    dt = np.diff([f.stamp for f in a])
    np.testing.assert_allclose(dt[2:4], cfg.drop_every / cfg.fps, rtol=1e-5)  # into and within the drop segment
    np.testing.assert_allclose(dt[4:], 1 / cfg.fps, rtol=1e-5)
    # The moving sphere changes the depth between the two dynamic frames more than the pan alone.
    assert np.nanmax(np.abs(a[6].gt - a[5].gt)) > 0.5
    with pytest.raises(DadaInputError):
        SequenceConfig(plan=(("drop", 1),), drop_every=0).validate()


def test_backoff_skips_the_flow_after_declined_warm_starts_and_an_accepted_one_resets_it(quick):
    """Where warm starts keep being declined the frames stop paying the flow: after two declines
    in a row 1, 2, 4, ... frames (at most max_backoff_frames) start cold without trying; a single
    decline (a cut) costs nothing; a reset or an accepted warm start clears the count."""
    solver = quick
    scenes = [translation_sequence(seed=s, n=1)[0] for s in range(3, 16)]  # a cut at every frame
    pipe = FramePipeline(solver, WarmConfig(mode="flow", warm_iterations=20, max_backoff_frames=4))
    tried = []
    for i, (rgb, _, src) in enumerate(scenes):
        st = pipe.process(rgb, src, 0.1 * i).stats
        assert st["init_mode"] == "cold"
        tried.append(st["flow_ms"] > 0)
        if not tried[-1] and i > 0:
            assert st["cold_reason"].startswith("warm start backing off")
    # frame 0 has no previous; declines at 1, 2 -> skip 1; 4 -> skip 2; 7 -> skip 4 (cap); 12 -> skip 4
    assert [i for i, t in enumerate(tried) if t] == [1, 2, 4, 7, 12]
    np.testing.assert_array_equal(pipe.process(*scenes[0][::2], 2.0).depth, solver.solve(*scenes[0][::2]).depth)
    # a smooth sequence after the cuts: the first attempt is accepted and the count is cleared
    pipe.reset()
    frames = translation_sequence(seed=2, n=3)
    stats = [pipe.process(rgb, src, 3.0 + 0.1 * i).stats for i, (rgb, _, src) in enumerate(frames)]
    assert [s["init_mode"] for s in stats] == ["cold", "flow", "flow", "flow"]
    assert stats[-1]["warm_declined_in_row"] == 0
    off = FramePipeline(solver, WarmConfig(mode="flow", warm_iterations=20, max_backoff_frames=0))
    flows = [off.process(rgb, src, 0.1 * i).stats["flow_ms"] for i, (rgb, _, src) in enumerate(scenes[:5])]
    assert flows[0] == 0 and all(f > 0 for f in flows[1:])
    with pytest.raises(DadaInputError):
        WarmConfig(max_backoff_frames=-1).validate()
    with pytest.raises(DadaInputError):
        WarmConfig(region_delta_factor=0.0).validate()


def test_naive_warm_start_only_reuses_a_static_view(quick):
    """The unaligned previous output fits a static view; on a moving one its kept cells carry
    edges a few pixels off: rejected cells there mean the view moved and the frame starts cold."""
    solver = quick
    frames = translation_sequence(seed=2, n=2, step=1)
    pipe = FramePipeline(solver, WarmConfig(mode="naive", warm_iterations=20, max_backoff_frames=0))
    (rgb0, _, src0), (rgb1, _, src1), _ = frames
    pipe.process(rgb0, src0, 0.0)
    moved = pipe.process(rgb1, src1, 0.1).stats
    assert moved["init_mode"] == "cold" and "view moved" in moved["cold_reason"], moved["cold_reason"]
    assert moved["accept_rejected_fraction"] > 0.02
    static = pipe.process(rgb1, src1, 0.2).stats  # the same view again
    assert static["init_mode"] == "naive" and static["accept_rejected_fraction"] <= 0.02
    with pytest.raises(DadaInputError):
        WarmConfig(naive_max_rejected=1.5).validate()


def test_the_warm_region_delta_follows_the_guide():
    """4 x the solver's delta with DADA-free, 1 x with a learned guide (whose schedule follows
    8000 plain steps), an explicit factor wins; no region: plain steps ("plain" warm schedule) or
    the warm semi-iteration everywhere ("chebyshev", DADA-free's)."""
    solver = DadaSolver(SolverConfig(device="cpu"))
    pipe = FramePipeline(solver, WarmConfig(mode="flow"))
    pipe._region = None
    whole = pipe._warm_schedule(50, 8.0)
    # warm_delta None: WARM_DELTA_FACTOR x the solver's per-ratio delta
    assert whole.region is None and not whole.is_plain
    assert whole.delta == pytest.approx(WARM_DELTA_FACTOR * chebyshev_defaults(8.0)[0])
    pipe.warm.warm_delta = 0.003
    assert pipe._warm_schedule(50, 8.0).delta == 0.003
    pipe.warm.warm_delta = None
    pipe._region = np.ones((48, 64), bool)  # DADA-free's semi-iteration: no region, whatever the cold cells
    assert pipe._warm_schedule(50, 8.0).region is None
    pipe._region = None
    pipe.warm.warm_schedule = "plain"
    assert pipe._warm_schedule(50, 8.0).is_plain
    pipe._region = np.zeros((48, 64), bool)
    pipe._region[:8, :8] = True
    free = pipe._warm_schedule(50, 8.0)
    assert len(free) == 50 and free.region is pipe._region
    assert free.delta == pytest.approx(4 * solver.schedule_for(8.0).delta)
    learned = DadaSolver(SolverConfig(device="cpu"))
    learned.guide_model = object()  # any guide that is not DADA-free
    pipe.solver = learned
    assert pipe._warm_schedule(50, 8.0).delta == pytest.approx(learned.schedule_for(8.0).delta)
    pipe.warm.region_delta_factor = 2.0
    assert pipe._warm_schedule(50, 8.0).delta == pytest.approx(2 * learned.schedule_for(8.0).delta)


def test_alignment_measures_how_far_the_view_moved():
    for step in (2, 6):
        frames = translation_sequence(seed=3, size=(96, 128), step=step, n=1)
        (rgb0, gt0, _), (rgb1, _, _) = frames
        al = ws.align_frames(np.nan_to_num(gt0, nan=3.0), rgb0, rgb1)
        # a pure translation by `step` px: the mean |flow| is that, up to the flow's own error
        assert abs(al.info.mean_flow_px - step) < 0.35 * step, (step, al.info.mean_flow_px)


def test_a_slow_motion_frame_runs_the_slow_budget_and_a_fast_one_the_full_budget(quick):
    frames = translation_sequence(seed=2, step=2, n=2)
    # None: DADA-free's own threshold (5 px), which a 2 px/frame translation is under
    for px, its, slow_its, expect in ((10.0, 30, 12, 12), (10.0, 8, 12, 8), (1.0, 30, 12, 30), (0.0, 30, 12, 30),
                                      (None, 30, 12, 12)):
        pipe = FramePipeline(quick, WarmConfig(mode="flow", warm_iterations=its, slow_motion_px=px,
                                               slow_motion_iterations=slow_its, max_age=1e9))
        ran = [pipe.process(rgb, src, float(i)).stats for i, (rgb, _, src) in enumerate(frames)]
        warm = [st for st in ran if st["init_mode"] == "flow"]
        assert warm, [st["cold_reason"] for st in ran]
        for st in warm:
            assert 1.0 < st["mean_flow_px"] < 3.0
            assert st["iterations"] == expect, (px, its, slow_its, st["iterations"])
    # naive has no flow: always warm_iterations
    pipe = FramePipeline(quick, WarmConfig(mode="naive", warm_iterations=20, slow_motion_px=1e6,
                                           slow_motion_iterations=5))
    rgb, _, src = frames[0]
    pipe.set_previous(quick.solve(rgb, src, iterations=200).depth, None, 0.0)
    st = pipe.process(rgb, src, 0.1).stats
    assert st["init_mode"] == "naive" and st["iterations"] == 20
    for bad in (dict(slow_motion_iterations=0), dict(slow_motion_px=-1.0), dict(slow_motion_px=float("nan"))):
        with pytest.raises(DadaInputError):
            WarmConfig(**bad).validate()


def test_the_depth_motion_fit_solves_the_least_squares_problem():
    rng = np.random.default_rng(0)
    h, w = 30, 40
    d = rng.uniform(1.0, 6.0, (h, w)).astype(np.float32)
    x, y = wa._coords(h, w)
    truth = (1.03, 0.02, -0.01, 0.05)
    s = (d * (truth[0] + truth[1] * x + truth[2] * y) + truth[3]).astype(np.float32)
    s_out = s.copy()
    s_out[:3] *= 1.5  # outlier rows (a moving object): the robust rounds drop them
    ok = np.ones((h, w), bool)
    for src in (s, s_out):
        fit = wa.fit_depth_motion(d, src, ok)
        assert np.allclose(fit, truth, atol=2e-4), fit
        if wa.HAVE_NUMBA:  # the numba rounds: the same robust fit (normal equations summed in another order)
            np.testing.assert_allclose(wa.fit_depth_motion(d, src, ok, use_numba=False), fit, rtol=1e-9, atol=1e-12)
    # degenerate: every cell the same depth at the same place -> the SVD path, no exception
    flat = np.zeros((h, w), bool)
    flat[5, 5:20] = True
    fit = wa.fit_depth_motion(np.full((h, w), 2.0, np.float32), np.full((h, w), 2.2, np.float32), flat)
    assert np.isfinite(fit).all()
    assert abs(2.0 * (fit[0] + fit[1] * x[5, 10] + fit[2] * y[5, 10]) + fit[3] - 2.2) < 1e-4


@pytest.mark.skipif(not wa.HAVE_NUMBA, reason="numba not installed")
def test_numba_and_numpy_acceptance_agree():
    frames = translation_sequence(seed=5, size=(96, 128), step=3, n=1, tof=TofModel())
    (rgb0, gt0, _), (rgb1, _, src1) = frames
    al = ws.align_frames(np.nan_to_num(gt0, nan=3.0), rgb0, rgb1)
    prior = al.y0.copy()
    prior[40:60, 50:90] *= 1.3  # a wrong patch: its cells are rejected
    prior[:5] = -1.0  # non-positive prior pixels: cold
    cases = [(prior, src1, al.valid, None), (prior * 1.05 + 0.1, src1, None, None),  # a depth motion to fit
             (prior, src1, None, wa.AcceptConfig(motion_model=False)),
             (np.where(np.arange(128) < 40, np.nan, prior), src1, None, None),  # too few pixels tracked
             # a depth offset to fit (b < 0) and a few near-zero prior pixels: the motion could make a
             # pixel <= 0, so the moved prior gets a pass of its own (the numba path's fallback)
             (np.where((np.arange(128) % 31 == 0) & (np.arange(96)[:, None] % 29 == 0), 1e-3, prior + 0.05),
              src1, None, None)]
    n_accepted = 0
    for y0, src, tracked, cfg in cases:
        a = wa.accept_prior(y0, src, tracked, cfg, use_numba=True)
        n_accepted += a.accepted
        b = wa.accept_prior(y0, src, tracked, cfg, use_numba=False)
        assert (a.accepted, a.reason[:40]) == (b.accepted, b.reason[:40])
        np.testing.assert_array_equal(a.cold_pixels, b.cold_pixels)
        if a.accepted:  # the warm run's region: every cell that holds a cold pixel
            cells = Partition(y0.shape, src.shape).cell_sums(a.cold_pixels) > 0
            np.testing.assert_array_equal(a.cold_cells, cells)
            np.testing.assert_array_equal(b.cold_cells, cells)
        np.testing.assert_allclose(a.y0, b.y0, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(a.cell_error, b.cell_error, atol=1e-5)
        assert a.rejected_fraction == pytest.approx(b.rejected_fraction, abs=1e-9)
        assert a.cold_fraction == pytest.approx(b.cold_fraction, abs=1e-9)
        assert np.allclose(a.motion, b.motion, atol=1e-4)
        # the coarse ratio test: median |down(Y0) / S - 1| over valid cells wholly covered
        fin = np.isfinite(y0) & (y0 > 0)
        part = Partition(y0.shape, src.shape)
        whole = valid_source_mask(src) & (part.cell_sums(~fin) == 0)
        with np.errstate(divide="ignore", invalid="ignore"):  # invalid source cells (0): not in ``whole``
            ref = np.median(np.abs(part.cell_sums(np.where(fin, y0, 0.0)) / part.cell_sizes() / src - 1.0)[whole])
        assert a.ratio_error == pytest.approx(ref, rel=1e-5)
        assert b.ratio_error == pytest.approx(ref, rel=1e-5)
    assert n_accepted >= 2
    assert wa.accept_prior(prior, src1, use_numba=True).rejected_fraction > 0.01
    no_cover = np.full_like(prior, np.nan)
    no_cover[:, ::2] = 2.0  # no cell wholly covered: no ratio to test
    assert wa.accept_prior(no_cover, src1).ratio_error == np.inf
    # max_ratio_error: a prior off by 50% everywhere is declined by the coarse test, before the fit
    off = wa.accept_prior(prior * 1.5, src1, max_ratio_error=0.1)
    assert not off.accepted and "median ratio error" in off.reason and off.ratio_error > 0.1
    assert off.motion == (1.0, 0.0, 0.0, 0.0) and np.isnan(off.cell_error).all()
    fits = wa.accept_prior(prior, src1, max_ratio_error=0.1)
    assert fits.ratio_error <= 0.1 and fits.accepted == wa.accept_prior(prior, src1).accepted
    with pytest.raises(DadaInputError, match="tracked"):
        wa.accept_prior(prior, src1, np.ones((3, 3), bool))


def test_the_preparation_beside_the_alignment_gives_the_same_frames(quick):
    """overlap_prepare computes the solve's preparation (checks, cold Y0, coefficients) on a second
    thread while the previous frame is aligned: every frame, warm, declined (a cut) or cold, is
    bit for bit the one of the serial pipeline, and the stats say which ran how."""
    frames = translation_sequence(seed=2, n=3) + translation_sequence(seed=7, n=1)  # a cut at frame 4
    pipes = {flag: FramePipeline(quick, WarmConfig(mode="flow", warm_iterations=20, overlap_prepare=flag))
             for flag in (True, False)}
    modes = []
    for i, (rgb, _, src) in enumerate(frames):
        a, b = (pipes[f].process(rgb, src, 0.1 * i) for f in (True, False))
        np.testing.assert_array_equal(a.depth, b.depth)
        assert a.stats["init_mode"] == b.stats["init_mode"]
        assert a.stats["prepare_overlapped"] == (i > 0) and not b.stats["prepare_overlapped"]
        assert b.stats["prepare_wait_ms"] == 0.0 and a.stats["prepare_seconds"] > 0
        # the frame's time splits into alignment + solve (with what it waited for) + the rest
        assert a.stats["seconds"] * 1000 <= a.stats["frame_seconds"] * 1000 + 1e-6
        modes.append(a.stats["init_mode"])
    assert modes == ["cold", "flow", "flow", "flow", "cold", "flow"]
    assert pipes[True].overlaps_prepare() and not pipes[False].overlaps_prepare()
    # off: nothing to overlap; a solver without a preparation step never overlaps
    off = FramePipeline(quick, WarmConfig(mode="off", overlap_prepare=True))
    assert not any(off.process(rgb, src, 0.1 * i).stats["prepare_overlapped"] for i, (rgb, _, src) in enumerate(frames[:2]))

    class NoPrepare:
        device = quick.device

    assert not FramePipeline(NoPrepare(), WarmConfig(mode="flow", overlap_prepare=True)).overlaps_prepare()
    # behind the guard: the worker decides (checking when due) and prepares with the picked solver
    blurred = DadaSolver(SolverConfig(device="cpu", max_iterations=400), FreeGuide(kappa=100.0))
    guarded = {flag: FramePipeline(GuardedSolver(quick, blurred, GuardConfig(every=2)),
                                   WarmConfig(mode="flow", warm_iterations=20, overlap_prepare=flag))
               for flag in (True, False)}
    for i, (rgb, _, src) in enumerate(frames):
        a, b = (guarded[f].process(rgb, src, 0.1 * i) for f in (True, False))
        np.testing.assert_array_equal(a.depth, b.depth)
        assert a.stats["guard"]["checked"] == b.stats["guard"]["checked"] == (i % 2 == 0)
        assert a.stats["guard"]["pick"] == b.stats["guard"]["pick"]
        assert a.stats["prepare_overlapped"] == (i > 0)
    with pytest.raises(DadaInputError):
        WarmConfig(overlap_prepare="yes").validate()


def test_bad_input_fails_the_same_with_the_preparation_beside_the_alignment(quick):
    """A malformed source raises the solver's own error, and the worker is not left running."""
    frames = translation_sequence(seed=2, n=1)
    for flag in (True, False):
        pipe = FramePipeline(quick, WarmConfig(mode="flow", warm_iterations=20, overlap_prepare=flag))
        rgb, _, src = frames[0]
        pipe.process(rgb, src, 0.0)
        bad = np.full_like(frames[1][2], np.nan)  # no valid cell
        with pytest.raises(DadaInputError):
            pipe.process(frames[1][0], bad, 0.1)
        ref = FramePipeline(quick, WarmConfig(mode="flow", warm_iterations=20, overlap_prepare=False))
        ref.process(rgb, src, 0.0)  # the failed frame changed nothing: the next one warm-starts as usual
        np.testing.assert_array_equal(pipe.process(frames[1][0], frames[1][2], 0.2).depth,
                                      ref.process(frames[1][0], frames[1][2], 0.2).depth)


def test_a_prepared_frame_belongs_to_its_own_inputs(quick):
    """DadaSolver.solve(prepared=...) is solve() itself, and refuses a preparation of other arrays."""
    rgb, _, src = translation_sequence(seed=2, n=1)[0]
    pre = quick.prepare(rgb, src)
    np.testing.assert_array_equal(quick.solve(rgb, src, prepared=pre).depth, quick.solve(rgb, src).depth)
    # prepared for a warm solve: the cold coefficients are left out (the warm depth feature makes
    # its own) and made by the solve when the frame starts cold after all, the same frame
    warm_pre = quick.prepare(rgb, src, warm=True)
    assert warm_pre.cv is None and warm_pre.ch is None and pre.cv is not None
    np.testing.assert_array_equal(quick.solve(rgb, src, prepared=warm_pre).depth, quick.solve(rgb, src).depth)
    no_feature = DadaSolver(SolverConfig(device="cpu", max_iterations=400, warm_depth_feature=False))
    assert no_feature.prepare(rgb, src, warm=True).cv is not None  # its warm solve uses the cold ones
    with pytest.raises(DadaInputError, match="other guide"):
        quick.solve(rgb, src.copy(), prepared=pre)
    other = DadaSolver(SolverConfig(device="cpu", max_iterations=400), FreeGuide(kappa=100.0))
    with pytest.raises(DadaInputError, match="another solver"):
        other.solve(rgb, src, prepared=pre)


def test_the_age_map_is_carried_only_for_the_young_pixel_refinement(quick):
    """Without refinement (the default) no per-pixel age is kept (it cost 5 ms a VGA frame); with
    it the age follows the pixels: a warm frame's kept pixels are older than its budget."""
    frames = translation_sequence(seed=2, n=2)
    off = FramePipeline(quick, WarmConfig(mode="flow", warm_iterations=20))
    on = FramePipeline(quick, WarmConfig(mode="flow", warm_iterations=20, refine_iterations=30, mature_iterations=10))
    for i, (rgb, _, src) in enumerate(frames):
        a, b = off.process(rgb, src, 0.1 * i), on.process(rgb, src, 0.1 * i)
        assert off.previous()[3] is None
        if i == 0:
            assert on.previous()[3] is None  # a cold frame: every pixel mature
        else:
            assert a.stats["init_mode"] == b.stats["init_mode"] == "flow"
            age = on.previous()[3]
            assert age.shape == rgb.shape[:2] and (age >= 20).all() and np.isinf(age).any()


def test_the_flow_is_cheap_on_slow_motion_and_precise_beyond():
    """AlignConfig's two tiers: the cheap preset's flow is kept when the view moved at most
    cheap_max_px, else the precise preset's flow is used (and the alignment says which)."""
    from dataclasses import replace

    f0, f1 = list(make_sequence(SequenceConfig(seed=2, size=(240, 320), source_shape=(30, 40),
                                               plan=(("static", 1), ("pan", 1)))))
    a8, b8 = ws._rgb8(f1.rgb), ws._rgb8(f0.rgb)
    cfg = ws.AlignConfig()
    cheap = ws._flow(a8, b8, replace(cfg, preset=cfg.cheap_preset, cheap_preset=None))
    precise = ws._flow(a8, b8, replace(cfg, cheap_preset=None))
    assert (cheap[3], precise[3]) == ("precise", "precise")  # one tier only: "precise" names the preset used
    assert 0.5 < cheap[2] <= ws.CHEAP_FLOW_MAX_PX  # cheap_max_px None: this limit outside a pipeline
    fl, photo, moved, tier = ws._flow(a8, b8, cfg)
    assert tier == "cheap" and moved == cheap[2] and photo == cheap[1]
    np.testing.assert_array_equal(fl, cheap[0])
    far = replace(cfg, cheap_max_px=0.5 * cheap[2])  # the same pair counts as a far move
    fl, photo, moved, tier = ws._flow(a8, b8, far)
    assert tier == "precise" and moved == precise[2]
    np.testing.assert_array_equal(fl, precise[0])
    assert not np.array_equal(cheap[0], precise[0])  # two different flows: the test can tell them apart
    prev = np.full((240, 320), 2.0, np.float32)
    assert ws.align_frames(prev, f0.rgb, f1.rgb, far).info.flow_tier == "precise"
    assert ws.align_frames(prev, f0.rgb, f1.rgb).info.flow_tier == "cheap"
    # In the pipeline the cheap tier follows the slow-motion threshold (DADA-free: 5 px; 0 = off,
    # as with a learned guide): the frames of the slow-motion budget get the cheap flow.
    src = np.full((30, 40), 2.0, np.float32)
    for px, want in ((None, "cheap"), (0.0, "precise")):
        pipe = FramePipeline(DadaSolver(SolverConfig(device="cpu", max_iterations=5)),
                             WarmConfig(mode="flow", slow_motion_px=px, max_age=10.0))
        pipe.set_previous(prev, f0.rgb, 0.0)
        assert pipe.process(f1.rgb, src, 0.1).stats["flow_tier"] == want



def test_the_acceptance_dilates_two_cells_with_a_learned_guide_and_one_with_dada_free():
    """AcceptConfig.dilate_cells None: 1 with DADA-free, 2 with any other guide (a frame drop's
    learned warm start kept a prior 1.045x cold with 1); a value the user gives is kept."""

    class Learned:  # any guide that is not DADA-free's own (features and coefficients: DADA-free's)
        def __init__(self):
            self.free = FreeGuide()

        def features(self, rgb, depth, scale=None):
            return self.free.features(rgb, depth, scale)

        def coefficients(self, feats):
            return self.free.coefficients(feats)

    free = FramePipeline(DadaSolver(SolverConfig(device="cpu")), WarmConfig(mode="flow"))
    learned = FramePipeline(DadaSolver(SolverConfig(device="cpu"), guide_model=Learned()), WarmConfig(mode="flow"))
    assert free._accept_config().dilate_cells is None  # accept_prior's own default: FREE_DILATE_CELLS
    assert learned._accept_config().dilate_cells == wa.LEARNED_DILATE_CELLS == 2
    mine = FramePipeline(DadaSolver(SolverConfig(device="cpu"), guide_model=Learned()),
                         WarmConfig(mode="flow", accept=wa.AcceptConfig(dilate_cells=0)))
    assert mine._accept_config().dilate_cells == 0
    # the dilation the default gives: one bad cell rejects its 3x3 (1) or 5x5 (2) neighbourhood
    src = np.full((12, 12), 2.0, np.float32)
    prior = np.full((96, 96), 2.0, np.float32)
    prior[48:56, 48:56] = 3.0  # cell (6, 6) disagrees with the source
    for dilate, cells in ((None, 9), (1, 9), (2, 25)):
        acc = wa.accept_prior(prior, src, config=wa.AcceptConfig(dilate_cells=dilate, motion_model=False))
        assert acc.rejected_fraction == pytest.approx(cells / 144)


def test_dada_free_warm_frames_run_the_semi_iteration_toward_their_own_equilibrium(quick):
    """With DADA-free (the warm Y0 is its depth feature) a warm frame's schedule is the
    semi-iteration with ``warm_delta`` over the whole image (the cold-initialised cells included),
    30 applications; with a learned guide (no warm depth feature) plain steps. It ends nearer the
    frame's own equilibrium than the plain run of the same budget."""
    from dada_ros.core.pipeline import WARM_BUDGETS, WARM_DELTA_FACTOR, resolve_warm_schedule
    from dada_ros.core.schedule import chebyshev_weights

    solver = quick
    frames = translation_sequence(seed=2, size=(96, 128), n=1, step=2)
    (r0, g0, s0), (r1, g1, s1) = frames
    prev = solver.solve(r0, s0).depth.copy()
    prev[24:56, 8:40] = 1.0  # a ghost: cells the acceptance starts cold
    calls = []

    class Counting(DadaSolver):
        def solve(self, *a, **k):
            calls.append((k.get("schedule"), k.get("init")))
            return super().solve(*a, **k)

    pipe = FramePipeline(Counting(solver.config), WarmConfig(mode="flow", max_cold_area=0.7))
    assert pipe.warm_schedule_kind() == "chebyshev" and pipe.warm_budgets() == WARM_BUDGETS["chebyshev"]
    pipe.set_previous(prev, r0, 0.0)
    st = pipe.process(r1, s1, 0.1).stats
    assert st["init_mode"] == "flow", st["cold_reason"]
    (schedule, y0), = calls  # one solve
    n = WARM_BUDGETS["chebyshev"][0]
    assert st["iterations"] == len(schedule) == n and schedule.region is None  # every pixel, cold ones too
    scale = r1.shape[0] / s1.shape[0]
    np.testing.assert_array_equal(schedule.weights, chebyshev_weights(n, WARM_DELTA_FACTOR * chebyshev_defaults(scale)[0]))
    assert 0.05 < st["warm_region_fraction"] < 0.7  # the ghost's cells started cold
    # toward the equilibrium of this frame's warm coefficients: nearer than the plain run
    target = solver.solve(r1, s1, init=y0, schedule=Schedule.plain(6000)).depth
    plain = solver.solve(r1, s1, init=y0, schedule=Schedule.plain(n)).depth
    out = pipe.previous()[0]
    assert np.abs(out - target).mean() < 0.5 * np.abs(plain - target).mean()
    assert consistency_error(out, s1) < 1e-4
    # no warm depth feature (a learned guide, or switched off): plain steps, their own budgets
    cfg = WarmConfig(mode="flow")
    assert resolve_warm_schedule(cfg, False) == ("plain", *WARM_BUDGETS["plain"])
    no_feature = DadaSolver(replace(solver.config, warm_depth_feature=False))
    assert FramePipeline(no_feature, cfg).warm_schedule_kind() == "plain"
    assert resolve_warm_schedule(WarmConfig(warm_schedule="plain", warm_iterations=12), True) == ("plain", 12, 12)
    with pytest.raises(DadaInputError):
        WarmConfig(warm_delta=0.0).validate()
