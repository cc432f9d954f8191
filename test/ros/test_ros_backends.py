"""The node's conversion backends (dada_ros.ros.ros_backends): cv_bridge / sensor_msgs_py when
they import, the in-package conversions otherwise, with byte-identical results.

* Where the real libraries import (a ROS machine), the library path and the in-package path are
  compared on many inputs (``test_real_libraries_agree_with_the_fallback``).
* Here they do not: the selector must pick the fallback and say so in the log and diagnostics.
* To exercise the library branch anyway, small stand-ins implementing the documented API
  (``CvBridge.imgmsg_to_cv2(msg, "passthrough")`` / ``cv2_to_imgmsg(array, encoding, header)``;
  Jazzy's ``point_cloud2.create_cloud(header, fields, points, point_step)`` and
  ``dtype_from_fields``, packing point by point with ``struct`` in field order, height 1, width N,
  is_dense false) are put into ``sys.modules``; the tests check that the selector really calls
  them, in the helpers and in the running node, and that the results match the fallback.
"""

from __future__ import annotations

import array
import struct
import sys
import types

import numpy as np
import pytest

from dada_ros.ros import conversions as cv
from dada_ros.ros import ros_backends as rb
from dada_ros.ros.diagnostics import Diagnostics, NodeStats

Image = pytest.importorskip("sensor_msgs.msg").Image
from sensor_msgs.msg import PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

LIBRARY_MODULES = ("cv_bridge", "sensor_msgs_py", "sensor_msgs_py.point_cloud2")


# --------------------------------------------------------------------------------------------
# stand-ins with the documented API (only what the node calls)

_CV_ENCODINGS = {"rgb8": ("uint8", 3), "bgr8": ("uint8", 3), "rgba8": ("uint8", 4), "bgra8": ("uint8", 4),
                 "mono8": ("uint8", 1), "8UC1": ("uint8", 1), "mono16": ("uint16", 1), "16UC1": ("uint16", 1),
                 "32FC1": ("float32", 1)}
_CV_DEPTH = {"uint8": "8U", "uint16": "16U", "float32": "32F"}


def fake_cv_bridge(calls: list, decode=None) -> types.ModuleType:
    """A ``cv_bridge`` module: CvBridge with imgmsg_to_cv2 (passthrough) and cv2_to_imgmsg.
    ``decode(msg)`` replaces the decoding (to simulate a broken library)."""
    mod = types.ModuleType("cv_bridge")

    class CvBridgeError(TypeError):
        pass

    class CvBridge:
        def imgmsg_to_cv2(self, img_msg, desired_encoding="passthrough"):
            calls.append(("decode", img_msg.encoding, bool(img_msg.is_bigendian)))
            if decode is not None:
                return decode(img_msg)
            if desired_encoding != "passthrough" or img_msg.encoding not in _CV_ENCODINGS:
                raise CvBridgeError(f"stand-in: {img_msg.encoding} -> {desired_encoding}")
            name, n = _CV_ENCODINGS[img_msg.encoding]
            dtype = np.dtype(name).newbyteorder(">" if img_msg.is_bigendian else "<")
            h, w = img_msg.height, img_msg.width
            im = np.ndarray(shape=(h, img_msg.step // dtype.itemsize // n, n), dtype=dtype, buffer=img_msg.data)
            im = np.ascontiguousarray(im[:h, :w])
            im = im[:, :, 0] if n == 1 else im
            return im.astype(im.dtype.newbyteorder("="))  # the message's values, native order

        def cv2_to_imgmsg(self, cvim, encoding="passthrough", header=None):
            calls.append(("encode", encoding))
            cv_type = f"{_CV_DEPTH[cvim.dtype.name]}C{1 if cvim.ndim < 3 else cvim.shape[2]}"
            if encoding != "passthrough":
                name, n = _CV_ENCODINGS[encoding]
                if f"{_CV_DEPTH[name]}C{n}" != cv_type:
                    raise CvBridgeError(f"encoding {encoding} does not fit {cv_type}")
            msg = Image()
            msg.height, msg.width = cvim.shape[0], cvim.shape[1]
            if header is not None:
                msg.header = header
            msg.encoding = cv_type if encoding == "passthrough" else encoding
            msg.is_bigendian = cvim.dtype.byteorder == ">"
            msg.data.frombytes(cvim.tobytes())
            msg.step = len(msg.data) // msg.height
            return msg

    mod.CvBridge, mod.CvBridgeError = CvBridge, CvBridgeError
    return mod


_PF_FORMATS = {1: "b", 2: "B", 3: "h", 4: "H", 5: "i", 6: "I", 7: "f", 8: "d"}
_PF_DTYPES = {1: "i1", 2: "u1", 3: "<i2", 4: "<u2", 5: "<i4", 6: "<u4", 7: "<f4", 8: "<f8"}


def fake_point_cloud2(calls: list, with_point_step: bool = True, fail: bool = False) -> types.ModuleType:
    """A ``sensor_msgs_py.point_cloud2`` module: dtype_from_fields and create_cloud (Jazzy API)."""
    mod = types.ModuleType("sensor_msgs_py.point_cloud2")

    def dtype_from_fields(fields, point_step=None):
        spec = {"names": [f.name for f in fields], "formats": [_PF_DTYPES[f.datatype] for f in fields],
                "offsets": [f.offset for f in fields]}
        if point_step is not None:
            spec["itemsize"] = point_step
        return np.dtype(spec)

    def create_cloud(header, fields, points, point_step=None):
        calls.append(("create_cloud", [f.name for f in fields], point_step))
        if fail:
            raise AssertionError("stand-in failure")
        dtype = dtype_from_fields(fields, point_step)
        if isinstance(points, np.ndarray) and points.dtype.names is not None:
            # a structured array is taken as it lies in memory, gap bytes included (as Jazzy's is)
            assert points.dtype == dtype, "PointFields and structured NumPy array dtype do not match"
            shape, buf = points.shape, bytes(memoryview(points).cast("B"))
        else:  # any other iterable of points: packed point by point, in field order
            rows = [tuple(p) for p in points]
            shape, buf = (len(rows),), bytearray(len(rows) * dtype.itemsize)
            for i, point in enumerate(rows):
                for f, value in zip(fields, point):
                    struct.pack_into("<" + _PF_FORMATS[f.datatype], buf, i * dtype.itemsize + f.offset, value)
        # organised input: Jazzy's create_cloud sets height = shape[1], width = shape[0]
        height, width = (1, shape[0]) if len(shape) == 1 else (shape[1], shape[0])
        cloud = PointCloud2(header=header, height=height, width=width, is_dense=False,
                            is_bigendian=sys.byteorder != "little", fields=fields, point_step=dtype.itemsize,
                            row_step=dtype.itemsize * width)
        cloud.data = array.array("B", bytes(buf))
        return cloud

    if with_point_step:
        mod.create_cloud = create_cloud
    else:
        mod.create_cloud = lambda header, fields, points: create_cloud(header, fields, points)
    mod.dtype_from_fields = dtype_from_fields
    return mod


def install_fakes(monkeypatch, calls: list, bridge: types.ModuleType | None = None,
                  pc2: types.ModuleType | None = None) -> None:
    monkeypatch.setitem(sys.modules, "cv_bridge", bridge or fake_cv_bridge(calls))
    pc2 = pc2 or fake_point_cloud2(calls)
    pkg = types.ModuleType("sensor_msgs_py")
    pkg.point_cloud2 = pc2
    monkeypatch.setitem(sys.modules, "sensor_msgs_py", pkg)
    monkeypatch.setitem(sys.modules, "sensor_msgs_py.point_cloud2", pc2)


def hide_libraries(monkeypatch) -> None:
    """Make ``import cv_bridge`` / ``import sensor_msgs_py`` fail, even where they are installed."""
    for name in LIBRARY_MODULES:
        monkeypatch.setitem(sys.modules, name, None)


# --------------------------------------------------------------------------------------------
# comparison of the two paths


def header(stamp_ns: int = 1_700_000_000_123_456_789, frame_id: str = "cam_optical") -> Header:
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = stamp_ns // 10**9, stamp_ns % 10**9
    return h


def as_tuple(msg) -> tuple:
    """Every field of an Image / PointCloud2, data as bytes (so two messages compare exactly)."""
    head = (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id)
    if isinstance(msg, PointCloud2):
        fields = tuple((f.name, f.offset, f.datatype, f.count) for f in msg.fields)
        return head + (msg.height, msg.width, fields, bool(msg.is_bigendian), msg.point_step, msg.row_step,
                       bool(msg.is_dense), bytes(msg.data))
    return head + (msg.height, msg.width, msg.encoding, bool(msg.is_bigendian), msg.step, bytes(msg.data))


def raw_message(rng: np.random.Generator, encoding: str, pad: int, big: bool, h: int = 5, w: int = 7) -> Image:
    """An Image with random bytes (special float values mixed in for 32FC1), padded rows."""
    base, channels = cv.IMAGE_ENCODINGS[encoding]
    bpp = channels * np.dtype(base).itemsize
    step = w * bpp + pad
    data = rng.integers(0, 256, step * h, dtype=np.uint8)
    if encoding == "32FC1":
        vals = rng.choice(np.array([0.0, -1.0, np.nan, np.inf, -np.inf, 0.5, 2.25, 7.0], np.float32), (h, w))
        rows = data.reshape(h, step)
        rows[:, : w * 4] = vals.astype(">f4" if big else "<f4").view(np.uint8).reshape(h, w * 4)
    if encoding in ("16UC1", "mono16"):
        rows = data.reshape(h, step)
        rows[:, 0:2] = 0  # some invalid 0 mm pixels
    return cv.build_message(Image, header=header(), height=h, width=w, encoding=encoding, is_bigendian=int(big),
                            step=step, data=data.tobytes())


def same_array(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_paths_agree(lib: rb.ImageCodec, ref: rb.ImageCodec, lib_pc: rb.CloudPacker, ref_pc: rb.CloudPacker) -> None:
    """The library-backed helpers give exactly what the in-package ones give, on many inputs."""
    rng = np.random.default_rng(7)
    for enc in cv.GUIDE_ENCODINGS + cv.DEPTH_ENCODINGS + ("8UC1",):
        base, channels = cv.IMAGE_ENCODINGS[enc]
        bpp = channels * np.dtype(base).itemsize
        for pad in (0, 2 * bpp, 3):  # unpadded, padded by whole pixels, padded by odd bytes
            for big in ((False, True) if bpp > 1 or enc == "32FC1" else (False,)):
                msg = raw_message(rng, enc, pad, big)
                assert same_array(lib.decode(msg), ref.decode(msg)), (enc, pad, big)
                assert same_array(lib.decode(msg), cv.image_to_array(msg)), (enc, pad, big)
                if enc in cv.GUIDE_ENCODINGS:
                    assert same_array(lib.guide(msg), cv.guide_image_to_rgb(msg)), (enc, pad)
                if enc in cv.DEPTH_ENCODINGS:
                    (raw_a, m_a), (raw_b, m_b) = lib.depth(msg), ref.depth(msg)
                    assert same_array(raw_a, raw_b) and same_array(m_a, m_b), (enc, pad, big)
                    assert same_array(m_a, cv.depth_image_to_metres(msg)), (enc, pad, big)
    depth = rng.uniform(0.3, 80.0, (9, 11)).astype(np.float32)
    depth[0, :3] = [np.nan, 0.0, -2.0]
    depth[1, :2] = [np.inf, 1e-5]
    for enc in cv.OUTPUT_DEPTH_ENCODINGS:
        h = header(frame_id=f"out_{enc}")
        ours = cv.build_message(Image, header=h, **cv.depth_image_fields(depth, enc))
        assert as_tuple(lib.depth_message(depth, enc, h)) == as_tuple(ours) == as_tuple(ref.depth_message(depth, enc, h))
    rgb = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    assert as_tuple(lib.image_message(rgb, "rgb8", header())) == as_tuple(ref.image_message(rgb, "rgb8", header()))

    intr = cv.Intrinsics(31.0, 29.5, 10.25, 7.75)
    for full in (False, True):
        d = rng.uniform(0.2, 6.0, (16, 21)).astype(np.float32)
        if not full:
            d[rng.random(d.shape) < 0.25] = np.nan
            d[3, 4], d[5, 6] = 0.0, -1.0
        colours = rng.integers(0, 256, (16, 21, 3), dtype=np.uint8)
        for with_rgb in (False, True):
            for decimation in (1, 2, 3):
                for organized in (True, False):
                    args = (d, intr, colours if with_rgb else None, decimation, organized)
                    want = cv.pack_point_cloud(*args)
                    ours = as_tuple(cv.build_message(PointCloud2, header=header(), **want.message_fields(PointField)))
                    got = as_tuple(lib_pc.cloud(header(), *args))
                    assert got == ours == as_tuple(ref_pc.cloud(header(), *args)), (full, with_rgb, decimation, organized)
                    assert got[7] == (16 if not with_rgb else 32) and got[9] == want.is_dense


def package_backends() -> tuple[rb.ImageCodec, rb.CloudPacker]:
    return rb.ImageCodec(Image, backend="dada_ros"), rb.CloudPacker(PointCloud2, PointField, backend="dada_ros")


# --------------------------------------------------------------------------------------------
# tests


def test_auto_selection_follows_what_imports() -> None:
    bridge, why_not_bridge = rb.load_cv_bridge()
    pc2, why_not_pc2 = rb.load_point_cloud2()
    images, clouds = rb.ImageCodec(Image), rb.CloudPacker(PointCloud2, PointField)
    assert images.name == ("cv_bridge" if bridge is not None else "dada_ros")
    assert clouds.name == ("sensor_msgs_py" if pc2 is not None else "dada_ros")
    if bridge is None:  # the situation on this machine: the fallback, and why
        assert images.note == why_not_bridge and "cv_bridge" in images.note
        assert images.diagnostics()["image_backend"] == "dada_ros"
        assert images.diagnostics()["image_backend_note"] == why_not_bridge
    if pc2 is None:
        assert clouds.note == why_not_pc2 and "sensor_msgs_py" in clouds.note
        assert clouds.diagnostics()["pointcloud_backend"] == "dada_ros"
    with pytest.raises(ValueError, match="image backend"):
        rb.ImageCodec(Image, backend="opencv")


def test_real_libraries_agree_with_the_fallback() -> None:
    """Runs where cv_bridge / sensor_msgs_py are installed (a ROS machine)."""
    bridge, _ = rb.load_cv_bridge()
    pc2, _ = rb.load_point_cloud2()
    if bridge is None and pc2 is None:
        pytest.skip("neither cv_bridge nor sensor_msgs_py is importable here")
    lib = rb.ImageCodec(Image) if bridge is not None else package_backends()[0]
    lib_pc = rb.CloudPacker(PointCloud2, PointField) if pc2 is not None else package_backends()[1]
    ref, ref_pc = package_backends()
    assert_paths_agree(lib, ref, lib_pc, ref_pc)
    # a failing library call falls back without changing the result; record it as information
    print(f"\nbackends {lib.name}/{lib_pc.name}, fallbacks {lib.fallbacks.counts} {lib_pc.fallbacks.counts}")


def test_stand_in_libraries_are_called_and_agree_with_the_fallback(monkeypatch) -> None:
    calls: list = []
    install_fakes(monkeypatch, calls)
    lib, lib_pc = rb.ImageCodec(Image), rb.CloudPacker(PointCloud2, PointField)
    assert (lib.name, lib_pc.name) == ("cv_bridge", "sensor_msgs_py")
    assert lib.diagnostics()["image_backend"] == "cv_bridge"
    assert lib_pc.diagnostics()["pointcloud_backend"] == "sensor_msgs_py"
    calls.clear()  # the start-up probe
    ref, ref_pc = package_backends()
    assert_paths_agree(lib, ref, lib_pc, ref_pc)
    decoded = {(enc, big) for op, enc, big in (c for c in calls if c[0] == "decode")}
    # every encoding went through cv_bridge, big-endian 16/32-bit ones too
    assert {enc for enc, _ in decoded} == set(cv.GUIDE_ENCODINGS + cv.DEPTH_ENCODINGS + ("8UC1",))
    assert ("16UC1", True) in decoded and ("32FC1", True) in decoded
    assert {c[1] for c in calls if c[0] == "encode"} == {"32FC1", "16UC1", "rgb8"}
    clouds = [c for c in calls if c[0] == "create_cloud"]
    assert len(clouds) == 2 * 2 * 3 * 2
    assert {(tuple(c[1]), c[2]) for c in clouds} == {(("x", "y", "z"), 16), (("x", "y", "z", "rgb"), 32)}
    assert lib.fallbacks.total == 0 and lib_pc.fallbacks.total == 0


def test_library_failures_fall_back_with_the_package_reasons(monkeypatch) -> None:
    calls: list = []
    broken = {"on": False}
    real = fake_cv_bridge([])

    def decode(msg):
        if broken["on"]:
            raise RuntimeError("simulated cv_bridge failure")
        return real.CvBridge().imgmsg_to_cv2(msg)

    install_fakes(monkeypatch, calls, bridge=fake_cv_bridge(calls, decode=decode))
    warnings: list[str] = []
    lib = rb.ImageCodec(Image, warn=warnings.append)
    assert lib.name == "cv_bridge"
    rng = np.random.default_rng(3)

    # malformed messages never reach cv_bridge and raise the package's reason keys
    bad = {
        "unsupported_encoding": dict(height=2, width=2, encoding="yuv422", step=4, data=bytes(8)),
        "empty_image": dict(height=0, width=3, encoding="rgb8", step=0, data=b""),
        "step_mismatch": dict(height=2, width=2, encoding="16UC1", step=4, data=bytes(7)),
    }
    calls.clear()
    for reason, fields in bad.items():
        msg = cv.build_message(Image, **fields)
        with pytest.raises(cv.ConversionError) as got:
            lib.depth(msg) if fields["encoding"] == "16UC1" else lib.guide(msg)
        with pytest.raises(cv.ConversionError) as want:
            cv.depth_image_to_metres(msg) if fields["encoding"] == "16UC1" else cv.guide_image_to_rgb(msg)
        assert got.value.reason == want.value.reason == reason and str(got.value) == str(want.value)
    with pytest.raises(cv.ConversionError, match="unsupported") as exc:  # a depth encoding as a guide
        lib.guide(raw_message(rng, "32FC1", 0, False))
    assert exc.value.reason == "unsupported_encoding" and calls == []
    # rows padded by a non-whole number of pixels: decoded in-package (cv_bridge would mis-stride)
    msg = raw_message(rng, "bgra8", 3, False)
    assert same_array(lib.guide(msg), cv.guide_image_to_rgb(msg)) and calls == []

    # cv_bridge raising on a good message: same result, counted, warned once
    broken["on"] = True
    for enc in ("bgr8", "16UC1", "32FC1"):
        msg = raw_message(rng, enc, 0, False)
        out = lib.guide(msg) if enc == "bgr8" else lib.depth(msg)[1]
        want = cv.guide_image_to_rgb(msg) if enc == "bgr8" else cv.depth_image_to_metres(msg)
        assert same_array(out, want), enc
    assert lib.fallbacks.counts == {"decode": 3} and len(warnings) == 1 and "simulated" in warnings[0]
    assert "simulated" in lib.diagnostics()["image_backend_last_error"]
    assert lib.diagnostics()["image_backend_fallbacks"] == "3"
    # cv_bridge returning the wrong thing is caught as well
    broken["on"] = False
    monkeypatch.setattr(lib.bridge, "imgmsg_to_cv2", lambda m, desired_encoding="passthrough": np.zeros((1, 1), np.uint8))
    msg = raw_message(rng, "rgb8", 0, False)
    assert same_array(lib.guide(msg), cv.guide_image_to_rgb(msg)) and lib.fallbacks.counts["decode"] == 4

    # create_cloud failing: the in-package cloud, counted; bad arguments keep the package's error
    pc_warnings: list[str] = []
    install_fakes(monkeypatch, calls, pc2=fake_point_cloud2(calls, fail=True))
    packer = rb.CloudPacker(PointCloud2, PointField, warn=pc_warnings.append)
    assert packer.name == "sensor_msgs_py"
    d = rng.uniform(0.5, 3.0, (4, 5)).astype(np.float32)
    intr = cv.Intrinsics(5.0, 5.0, 2.0, 1.5)
    want = cv.build_message(PointCloud2, header=header(), **cv.pack_point_cloud(d, intr).message_fields(PointField))
    assert as_tuple(packer.cloud(header(), d, intr)) == as_tuple(want)
    assert packer.fallbacks.counts == {"pack": 1} and len(pc_warnings) == 1
    for args, reason in (((d, intr, None, 0), "bad_parameter"), ((d, intr, np.zeros((2, 2, 3), np.uint8)), "bad_shape")):
        with pytest.raises(cv.ConversionError) as exc:
            packer.cloud(header(), *args)
        assert exc.value.reason == reason


def test_unusable_libraries_are_not_selected(monkeypatch) -> None:
    calls: list = []
    # a cv_bridge that imports but decodes wrongly (transposed) fails the start-up probe
    install_fakes(monkeypatch, calls, bridge=fake_cv_bridge(calls, decode=lambda m: np.zeros((m.width, m.height), np.uint16)),
                  pc2=fake_point_cloud2(calls, with_point_step=False))
    images, clouds = rb.ImageCodec(Image), rb.CloudPacker(PointCloud2, PointField)
    assert images.name == "dada_ros" and "probe" in images.note and calls
    assert clouds.name == "dada_ros" and "point_step" in clouds.note
    assert clouds.diagnostics()["pointcloud_backend_note"] == clouds.note
    with pytest.raises(RuntimeError, match="point_step"):
        rb.CloudPacker(PointCloud2, PointField, backend="sensor_msgs_py")
    hide_libraries(monkeypatch)
    assert rb.ImageCodec(Image).name == "dada_ros"
    with pytest.raises(RuntimeError, match="not importable"):
        rb.ImageCodec(Image, backend="cv_bridge")


def test_diagnostics_extra_values() -> None:
    stats = NodeStats()
    diag = Diagnostics(stats, extra={"input": lambda: {"image_backend": "dada_ros"},
                                     "output": lambda: {"pointcloud_backend": "sensor_msgs_py"}})
    s = {x.name: dict(x.values) for x in diag.statuses("n")}
    assert s["n: input"]["image_backend"] == "dada_ros" and "pointcloud_backend" not in s["n: input"]
    assert s["n: output"]["pointcloud_backend"] == "sensor_msgs_py"
    assert "image_backend" not in s["n: solver"] and "image_backend" not in s["n: drops"]


def test_diagnostics_show_the_learned_guard() -> None:
    """method dada: the solver status carries the guard's pick, check and errors; DADA-free frames none."""
    stats = NodeStats()
    diag = Diagnostics(stats)
    stats.last_frame = {"method": "dada", "iterations": 300,
                        "guard": {"pick": "dada-free", "checked": True, "error_dada": 2e-4, "error_free": 1e-4,
                                  "reason": "", "ms": 512.5}}
    s = {x.name: dict(x.values) for x in diag.statuses("n")}["n: solver"]
    assert s["guard_pick"] == "dada-free" and s["guard_checked"] == "True" and s["guard_ms"] == "512.5"
    assert float(s["guard_error_dada"]) > float(s["guard_error_free"])
    stats.last_frame = {"method": "dada-free", "iterations": 150, "guard": {}}
    assert not any(k.startswith("guard") for k in {x.name: dict(x.values) for x in diag.statuses("n")}["n: solver"])


def test_node_reports_the_fallback(ros_context, monkeypatch, capfd) -> None:
    """Without the libraries (hidden even where installed) the node runs in-package and says so
    in its start-up log line and diagnostics."""
    from ros_harness import TEST_PARAMS
    from rclpy.parameter import Parameter

    from dada_ros.ros.node import UpsampleNode

    hide_libraries(monkeypatch)
    node = UpsampleNode(context=ros_context, namespace="/backends_fallback",
                        parameter_overrides=[Parameter(k, value=v) for k, v in TEST_PARAMS.items()])
    try:
        assert (node.images.name, node.clouds.name) == ("dada_ros", "dada_ros")
        s = {x.name: dict(x.values) for x in node.diagnostics.diagnostics.statuses(node.get_name())}
        assert s["dada_upsample: input"]["image_backend"] == "dada_ros"
        assert "not importable" in s["dada_upsample: input"]["image_backend_note"]
        assert s["dada_upsample: output"]["pointcloud_backend"] == "dada_ros"
        assert s["dada_upsample: output"]["image_backend"] == "dada_ros"
        assert s["dada_upsample: input"]["sync_backend"] == node.sync.backend
    finally:
        node.destroy_node()
    err = capfd.readouterr().err
    assert "images dada_ros, point clouds dada_ros" in err, err


def test_node_uses_stand_in_libraries_end_to_end(ros_context, monkeypatch) -> None:
    """The running node decodes, encodes and packs through the (stand-in) libraries, and what it
    publishes is byte for byte what the in-package path makes of the same data."""
    from ros_harness import GUIDE, Harness, image, make_frames, triple

    calls: list = []
    install_fakes(monkeypatch, calls)
    frame = make_frames(1)[0]
    h = Harness(ros_context, {"points_rgb": True, "points_decimation": 2})
    try:
        assert (h.node.images.name, h.node.clouds.name) == ("cv_bridge", "sensor_msgs_py")
        calls.clear()
        stamp = 1_700_000_500 * 10**9
        _, info, _ = triple(frame, stamp)
        bgr = image(np.ascontiguousarray(frame.rgb[:, :, ::-1]), "bgr8", stamp)
        depth = image(cv.metres_to_depth_array(frame.source, "16UC1"), "16UC1", stamp)
        assert h.send_and_wait((bgr, info, depth))
        assert h.wait(lambda: len(h.received["points"]) >= 1, 10)
        ops = {c[:2] for c in calls if c[0] != "create_cloud"}
        assert {("decode", "bgr8"), ("decode", "16UC1"), ("encode", "32FC1")} <= ops
        assert any(c[0] == "create_cloud" for c in calls)
        assert h.node.images.fallbacks.total == 0 and h.node.clouds.fallbacks.total == 0
        out, pc = h.received["depth"][-1], h.received["points"][-1]
        depth_m = cv.depth_image_to_metres(out)
        assert depth_m.shape == GUIDE and np.isfinite(depth_m).mean() > 0.9
        want_img = cv.build_message(Image, header=out.header, **cv.depth_image_fields(depth_m, "32FC1"))
        assert as_tuple(out) == as_tuple(want_img)
        want = cv.pack_point_cloud(depth_m, cv.camera_intrinsics(info), cv.guide_image_to_rgb(bgr), 2, True)
        want_pc = cv.build_message(PointCloud2, header=pc.header, **want.message_fields(PointField))
        assert as_tuple(pc) == as_tuple(want_pc)
        assert (pc.height, pc.width) == (GUIDE[0] // 2, GUIDE[1] // 2)
        assert h.wait(lambda: any(dict((v.key, v.value) for v in s.values).get("pointcloud_backend") == "sensor_msgs_py"
                                  for a in h.diagnostics for s in a.status), 5)
        assert any(dict((v.key, v.value) for v in s.values).get("image_backend") == "cv_bridge"
                   for a in h.diagnostics for s in a.status if s.name.endswith(": input"))
    finally:
        h.close()


def test_node_warns_when_the_guard_cannot_protect_self_supervised_weights(ros_context, tmp_path, capfd) -> None:
    """method dada with weights adapted by cross-scale self-supervision: the node says at start-up,
    and keeps saying in /diagnostics, that its cross-scale guard is no protection for them."""
    torch = pytest.importorskip("torch")
    learned = pytest.importorskip("dada_ros.learned.model")
    from ros_harness import TEST_PARAMS
    from rclpy.parameter import Parameter

    from dada_ros.ros.node import UpsampleNode

    ck = torch.load(learned.SHIPPED_PATH, map_location="cpu", weights_only=False)
    ck["meta"] = {**ck.get("meta", {}), "train_config": {**ck["meta"].get("train_config", {}), "self_supervised": True}}
    adapted = tmp_path / "adapted.pt"
    torch.save(ck, adapted)
    params = {**TEST_PARAMS, "method": "dada", "weights": str(adapted)}
    node = UpsampleNode(context=ros_context, namespace="/guard_caveat",
                        parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    try:
        assert "self-supervision" in node.stats.notes["learned_guard"]
        status = {x.name: x for x in node.diagnostics.diagnostics.statuses(node.get_name())}
        assert any("self-supervision" in x.message for x in status.values())
    finally:
        node.destroy_node()
    assert "learned_guard: these weights were trained by cross-scale self-supervision" in capfd.readouterr().err
