"""The node end to end over real rclpy pub/sub: outputs, live parameters, diagnostics."""

from __future__ import annotations

import numpy as np
import pytest

from dada_ros.ros import conversions as cv
from ros_harness import GUIDE, Harness, make_frames, triple

T0 = 1_700_000_000 * 10**9
DT = 66_666_667  # 15 Hz


@pytest.fixture(scope="module")
def frames():
    return make_frames(5)


def test_end_to_end_outputs(ros_context, frames) -> None:
    h = Harness(ros_context, {"points_rgb": True})
    try:
        n = len(frames)
        modes = []
        for i, f in enumerate(frames):
            assert h.send_and_wait(triple(f, T0 + i * DT)), f"no output for frame {i}"
            modes.append((h.node.stats.last_frame["init_mode"], h.node.stats.last_frame["cold_reason"]))
        assert h.wait(lambda: len(h.received["points"]) >= n and len(h.received["camera_info"]) >= n, 10)
        depths, clouds, infos = h.received["depth"], h.received["points"], h.received["camera_info"]
        assert len(depths) == len(clouds) == len(infos) == n
        for i, (d, pc, ci) in enumerate(zip(depths, clouds, infos)):
            stamp = T0 + i * DT
            assert (d.height, d.width, d.encoding) == (GUIDE[0], GUIDE[1], "32FC1")
            assert cv.stamp_to_nanoseconds(d.header.stamp) == stamp and d.header.frame_id == "cam_optical"
            assert cv.stamp_to_nanoseconds(ci.header.stamp) == stamp and (ci.height, ci.width) == GUIDE
            assert cv.stamp_to_nanoseconds(pc.header.stamp) == stamp and pc.header.frame_id == "cam_optical"
            depth = cv.depth_image_to_metres(d)
            assert np.isfinite(depth).mean() > 0.9
            # a useful answer: close to the ground truth where there is one
            gt = frames[i].gt
            ok = np.isfinite(gt) & np.isfinite(depth)
            assert np.median(np.abs(depth[ok] - gt[ok])) < 0.05
            # the cloud back-projects to the published depth with camera_info K
            pts = cv.pointcloud2_to_array(pc)
            assert pts.shape == GUIDE and [f.name for f in pc.fields] == ["x", "y", "z", "rgb"]
            assert pc.point_step == 32 and pc.is_dense == bool(np.isfinite(depth).all())
            K = np.asarray(ci.k).reshape(3, 3)
            v, u = np.mgrid[0:GUIDE[0], 0:GUIDE[1]]
            np.testing.assert_allclose(pts["z"], depth, rtol=1e-6, equal_nan=True)
            np.testing.assert_allclose(pts["x"], (u - K[0, 2]) * depth / K[0, 0], rtol=1e-5, atol=1e-6, equal_nan=True)
            np.testing.assert_allclose(pts["y"], (v - K[1, 2]) * depth / K[1, 1], rtol=1e-5, atol=1e-6, equal_nan=True)
            rgb_bits = pts["rgb"].view("<u4")
            c = frames[i].rgb[5, 7].astype(np.uint32)
            assert rgb_bits[5, 7] == (c[0] << 16 | c[1] << 8 | c[2])
        # frames 1.. are warm-started by optical flow (the default policy) unless the pipeline's
        # acceptance gate sends one cold (on these tiny 64x48 frames it does, for a reason)
        assert modes[0][0] == "cold" and "flow" in [m for m, _ in modes[1:]], modes
        assert all(m == "flow" or r for m, r in modes[1:]), modes
        assert h.counter("dropped_stale") == 0
        # the latency split: every stage recorded, and the stages before the depth went out fit
        # inside the measured stamp -> publish latency (they are disjoint intervals of it)
        from dada_ros.ros.diagnostics import LATENCY_STAGES

        last, latency_ms = h.node.stats.last_frame, 1000 * h.node.stats.latencies[-1]
        assert all(last[k] >= 0 for k in LATENCY_STAGES) and last["t_loop_ms"] > 0 and last["t_decode_ms"] > 0
        before_out = sum(last[k] for k in ("t_input_ms", "t_align_ms", "t_features_ms", "t_loop_ms", "t_other_ms"))
        assert before_out <= latency_ms + 1.0
        assert last["t_decode_ms"] <= last["t_input_ms"] + 1.0
        # torch_threads also set the fused kernel's threads, in the worker thread that runs it
        from dada_ros.core.fused_cpu import HAVE_NUMBA

        assert last["numba_threads"] == (1 if HAVE_NUMBA else 0)
        # diagnostics: the six statuses, named like diagnostic_updater names them
        assert h.wait(lambda: any(len(a.status) == 6 for a in h.diagnostics), 5)
        names = {s.name for s in h.diagnostics[-1].status}
        assert names == {f"dada_upsample: {t}" for t in ("input", "output", "latency", "solver", "drops",
                                                         "accounting")}
    finally:
        h.close()


def test_set_parameters_changes_behaviour_and_refuses_bad_values(ros_context, frames) -> None:
    h = Harness(ros_context)
    try:
        assert h.send_and_wait(triple(frames[0], T0))
        assert h.received["depth"][-1].encoding == "32FC1"
        res = h.set_parameters({"output_encoding": "16UC1", "warm_start": "off", "points_decimation": 2})
        assert all(r.successful for r in res), [r.reason for r in res]
        assert h.send_and_wait(triple(frames[1], T0 + DT))
        out = h.received["depth"][-1]
        assert out.encoding == "16UC1" and out.step == GUIDE[1] * 2
        mm = cv.image_to_array(out)
        assert mm.dtype == np.uint16 and np.median(mm[mm > 0]) > 100  # millimetres
        assert h.node.stats.last_frame["init_mode"] == "cold"  # warm start off took effect
        assert h.wait(lambda: len(h.received["points"]) >= 2, 5)
        assert (h.received["points"][-1].height, h.received["points"][-1].width) == (GUIDE[0] // 2, GUIDE[1] // 2)

        bad = {"lambda": 0.25, "kappa": -1.0, "device": "gpu", "weights": "/nonexistent/model.pt",
               "slop": 0.0, "warm_start": "sometimes", "qos_depth": 3, "learned_guard": "sometimes",
               "learned_guard_every": -1}
        for name, value in bad.items():
            (r,) = h.set_parameters({name: value})
            assert not r.successful, name
            assert r.reason, name
        reasons = {name: h.set_parameters({name: value})[0].reason for name, value in bad.items()}
        assert "lambda" in reasons["lambda"] and "kappa" in reasons["kappa"] and "gpu" in reasons["device"]
        assert "does not exist" in reasons["weights"]
        # the old values stay
        assert h.node.get_parameter("lambda").value == pytest.approx(0.24)
        assert h.node.get_parameter("device").value == "auto"
        # method dada: refused with the loader's reason while the learned model (or its shipped
        # checkpoint) is missing; once it exists the switch is accepted and frames still flow
        (r,) = h.set_parameters({"method": "dada"})
        if r.successful:
            assert h.send_and_wait(triple(frames[3], T0 + 3 * DT), timeout=120)
            assert h.node.stats.last_frame["method"] == "dada"
            guard = h.node.stats.last_frame["guard"]  # the default learned_guard checked this first frame
            assert guard["checked"] and guard["pick"] in ("dada", "dada-free") and guard["ms"] > 0, guard
            (r,) = h.set_parameters({"method": "dada-free"})
            assert r.successful
        else:
            assert r.reason and ("learned" in r.reason or "model" in r.reason), r.reason
            assert h.node.get_parameter("method").value == "dada-free"
        # still working after the refusals
        assert h.send_and_wait(triple(frames[2], T0 + 2 * DT))
    finally:
        h.close()


def test_cuda_requested_without_gpu_falls_back_to_cpu(ros_context, frames) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the fallback is not exercised")
    h = Harness(ros_context, {"device": "cuda"})
    try:
        assert h.node.pipeline.solver.device.type == "cpu"
        assert h.counter("cuda_unavailable") == 1
        assert h.send_and_wait(triple(frames[0], T0))
        (r,) = h.set_parameters({"device": "cuda:0"})  # accepted, still on CPU, still one warning
        assert r.successful
        assert h.send_and_wait(triple(frames[1], T0 + DT))
        assert h.node.pipeline.solver.device.type == "cpu"
    finally:
        h.close()


def test_newest_frame_only_drops_stale(ros_context, frames) -> None:
    """A burst faster than the solver: every set gets an answer or is counted dropped-stale,
    and the newest set is always processed."""
    h = Harness(ros_context, {"warm_start": "off"})
    try:
        n = 6
        for i in range(n):
            h.send(triple(frames[i % len(frames)], T0 + i * DT))
        last = T0 + (n - 1) * DT
        assert h.wait(lambda: any(cv.stamp_to_nanoseconds(d.header.stamp) == last for d in h.received["depth"]), 60)
        assert h.wait(lambda: len(h.received["depth"]) + h.counter("dropped_stale") == n, 10)
        stamps = [cv.stamp_to_nanoseconds(d.header.stamp) for d in h.received["depth"]]
        assert stamps == sorted(stamps)
    finally:
        h.close()


def test_other_encodings_non_integer_ratio_and_missing_camera_info(ros_context, frames) -> None:
    """bgra8 guide with padded rows, 16UC1 depth in mm at a non-integer ratio (64/18 x 48/14);
    depth + rgb without camera_info is counted and waits; the late camera_info completes the set."""
    from dada_ros.core.scenes import block_average
    from ros_harness import camera_info, header
    from sensor_msgs.msg import Image

    h = Harness(ros_context, {"points_organized": False})
    try:
        f = frames[0]
        stamp = T0 + 7 * DT
        bgra = np.concatenate([f.rgb[:, :, ::-1], np.full(f.rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
        rows = np.concatenate([bgra.reshape(GUIDE[0], -1), np.zeros((GUIDE[0], 12), np.uint8)], axis=1)
        rgb = Image(header=header(stamp), height=GUIDE[0], width=GUIDE[1], encoding="bgra8", step=rows.shape[1],
                    data=rows.tobytes())
        src = block_average(f.gt, (14, 18))
        depth = Image(header=header(stamp), **cv.depth_image_fields(np.nan_to_num(src), "16UC1"))
        h.pubs["rgb"].publish(rgb)
        h.pubs["depth"].publish(depth)
        assert h.wait(lambda: h.counter("camera_info_missing") >= 1, 10)
        assert h.received["depth"] == []
        h.pubs["camera_info"].publish(camera_info(f.K_rgb, GUIDE, stamp))
        assert h.wait(lambda: len(h.received["depth"]) == 1, 30)
        out = cv.depth_image_to_metres(h.received["depth"][0])
        assert out.shape == GUIDE
        ok = np.isfinite(f.gt) & np.isfinite(out)
        assert np.median(np.abs(out[ok] - f.gt[ok])) < 0.05
        assert h.wait(lambda: len(h.received["points"]) == 1, 10)
        pc = h.received["points"][0]
        n_valid = int(np.isfinite(out).sum())
        assert (pc.height, pc.width) == (1, n_valid) and pc.is_dense  # invalid points dropped
    finally:
        h.close()
