"""Image / CameraInfo / PointCloud2 <-> numpy, on plain objects, rclpy messages and rosbags messages."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from dada_ros.ros import conversions as cv


def img(arr: np.ndarray, encoding: str, pad: int = 0, big: bool = False) -> SimpleNamespace:
    """A duck-typed Image with ``pad`` bytes of padding per row and the chosen byte order."""
    a = np.asarray(arr)
    if a.ndim == 2:
        a = a[:, :, None]
    h, w, c = a.shape
    a = a.astype(a.dtype.newbyteorder(">" if big else "<"))
    row = a.reshape(h, w * c).view(np.uint8).reshape(h, -1)
    rows = np.concatenate([row, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return SimpleNamespace(height=h, width=w, encoding=encoding, is_bigendian=int(big),
                           step=rows.shape[1], data=rows.reshape(-1).tobytes())


def test_module_imports_no_ros() -> None:
    code = ("import sys; "
            "import dada_ros.ros.conversions, dada_ros.ros.frame_checks, dada_ros.ros.names, dada_ros.ros.sync; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('rclpy', 'sensor_msgs', 'std_msgs')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("pad", [0, 3, 8])
@pytest.mark.parametrize("big", [False, True])
def test_16uc1_mm_step_padding_and_endianness(pad: int, big: bool) -> None:
    mm = np.array([[0, 1000, 2500], [65535, 1, 300]], np.uint16)
    depth = cv.depth_image_to_metres(img(mm, "16UC1", pad, big))
    assert depth.dtype == np.float32 and depth.shape == (2, 3)
    assert np.isnan(depth[0, 0])
    np.testing.assert_allclose(depth[0, 1:], [1.0, 2.5], rtol=1e-6)
    np.testing.assert_allclose(depth[1], [65.535, 0.001, 0.3], rtol=1e-6)


@pytest.mark.parametrize("pad", [0, 4])
@pytest.mark.parametrize("big", [False, True])
def test_32fc1_metres_invalid_values(pad: int, big: bool) -> None:
    m = np.array([[1.5, 0.0, np.nan], [np.inf, -2.0, 0.25]], np.float32)
    depth = cv.depth_image_to_metres(img(m, "32FC1", pad, big))
    assert np.isnan(depth[0, 1:]).all() and np.isnan(depth[1, :2]).all()
    np.testing.assert_allclose([depth[0, 0], depth[1, 2]], [1.5, 0.25])


@pytest.mark.parametrize("enc,order", [("rgb8", [0, 1, 2]), ("bgr8", [2, 1, 0]), ("rgba8", [0, 1, 2]), ("bgra8", [2, 1, 0])])
def test_guide_encodings(enc: str, order: list[int]) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (3, 5, 3), dtype=np.uint8)
    stored = rgb[:, :, order]
    if enc.endswith("a8"):
        stored = np.concatenate([stored, np.full((3, 5, 1), 7, np.uint8)], axis=2)
    out = cv.guide_image_to_rgb(img(stored, enc, pad=5))
    np.testing.assert_array_equal(out, rgb)


def test_mono8_guide_is_replicated() -> None:
    g = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = cv.guide_image_to_rgb(img(g, "mono8", pad=2))
    assert out.shape == (3, 4, 3) and (out == g[:, :, None]).all()


@pytest.mark.parametrize("msg,reason", [
    (SimpleNamespace(height=2, width=2, encoding="yuv422", is_bigendian=0, step=4, data=bytes(8)), "unsupported_encoding"),
    (SimpleNamespace(height=0, width=2, encoding="rgb8", is_bigendian=0, step=6, data=b""), "empty_image"),
    (SimpleNamespace(height=2, width=2, encoding="rgb8", is_bigendian=0, step=5, data=bytes(10)), "step_mismatch"),
    (SimpleNamespace(height=2, width=2, encoding="rgb8", is_bigendian=0, step=6, data=bytes(11)), "step_mismatch"),
    (SimpleNamespace(height=2, width=2, encoding="rgb8", is_bigendian=0, step=6, data=bytes(13)), "step_mismatch"),
])
def test_bad_images_raise_with_reason(msg: SimpleNamespace, reason: str) -> None:
    with pytest.raises(cv.ConversionError) as exc:
        cv.guide_image_to_rgb(msg)
    assert exc.value.reason == reason


def test_depth_rejects_colour_encoding() -> None:
    with pytest.raises(cv.ConversionError) as exc:
        cv.depth_image_to_metres(img(np.zeros((2, 2, 3), np.uint8), "rgb8"))
    assert exc.value.reason == "unsupported_encoding"


def test_output_depth_roundtrip_16uc1_and_32fc1() -> None:
    d = np.array([[0.0004, 1.2344, np.nan], [70.0, -1.0, 0.0]], np.float32)
    f16 = cv.depth_image_fields(d, "16UC1")
    assert f16["encoding"] == "16UC1" and f16["step"] == 6 and f16["is_bigendian"] == 0
    mm = np.frombuffer(f16["data"].tobytes(), "<u2").reshape(2, 3)
    np.testing.assert_array_equal(mm, [[1, 1234, 0], [65535, 0, 0]])
    f32 = cv.depth_image_fields(d, "32FC1")
    back = cv.depth_image_to_metres(SimpleNamespace(**f32))
    assert np.isnan(back[0, 2]) and np.isnan(back[1, 1:]).all()
    np.testing.assert_allclose(back[0, :2], d[0, :2])


def test_camera_intrinsics_from_p_then_k_and_zero_refused() -> None:
    k = [500.0, 0, 320, 0, 510, 240, 0, 0, 1]
    info = SimpleNamespace(k=k, p=[0.0] * 12, width=640, height=480)
    i = cv.camera_intrinsics(info)
    assert (i.fx, i.fy, i.cx, i.cy) == (500, 510, 320, 240)
    info.p = [400.0, 0, 300, 0, 0, 410, 200, 0, 0, 0, 1, 0]
    i = cv.camera_intrinsics(info)
    assert (i.fx, i.fy, i.cx, i.cy) == (400, 410, 300, 200)
    with pytest.raises(cv.ConversionError) as exc:
        cv.camera_intrinsics(SimpleNamespace(k=[0.0] * 9, p=[0.0] * 12))
    assert exc.value.reason == "bad_camera_info"
    with pytest.raises(cv.ConversionError):
        cv.camera_intrinsics(SimpleNamespace(k=[np.nan] * 9, p=[0.0] * 12))


def test_scale_camera_info_follows_image_proc_resize() -> None:
    roi = SimpleNamespace(x_offset=10, y_offset=4, width=100, height=50, do_rectify=False)
    info = SimpleNamespace(width=160, height=120, k=[100.0, 0, 80, 0, 100, 60, 0, 0, 1],
                           p=[100.0, 0, 80, 5, 0, 100, 60, 0, 0, 0, 1, 0], d=[0.1] * 5,
                           r=np.eye(3).ravel(), distortion_model="plumb_bob", binning_x=0, binning_y=0, roi=roi)
    out = cv.scale_camera_info_fields(info, 640, 480)
    np.testing.assert_allclose(out["k"], [400, 0, 320, 0, 400, 240, 0, 0, 1])
    np.testing.assert_allclose(out["p"], [400, 0, 320, 20, 0, 400, 240, 0, 0, 0, 1, 0])
    assert out["roi"]["x_offset"] == 40 and out["roi"]["height"] == 200
    np.testing.assert_allclose(out["d"], [0.1] * 5)


def test_point_cloud_layout_and_back_projection() -> None:
    depth = np.array([[1.0, 2.0, np.nan], [0.0, 4.0, 5.0]], np.float32)
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]], np.uint8)
    intr = cv.Intrinsics(fx=2.0, fy=4.0, cx=1.0, cy=0.5)
    packed = cv.pack_point_cloud(depth, intr, rgb)
    assert packed.point_step == 32 and packed.row_step == 3 * 32 and (packed.height, packed.width) == (2, 3)
    assert [f[:2] for f in packed.fields] == [("x", 0), ("y", 4), ("z", 8), ("rgb", 16)]
    assert all(f[2] == 7 and f[3] == 1 for f in packed.fields) and not packed.is_bigendian
    assert packed.is_dense is False
    fields = [SimpleNamespace(name=n, offset=o, datatype=t, count=c) for n, o, t, c in packed.fields]
    msg = SimpleNamespace(height=packed.height, width=packed.width, fields=fields, is_bigendian=False,
                          point_step=packed.point_step, row_step=packed.row_step, data=packed.data.tobytes())
    arr = cv.pointcloud2_to_array(msg)
    np.testing.assert_allclose(arr["z"][0, :2], [1.0, 2.0])
    np.testing.assert_allclose(arr["x"][1, 2], (2 - 1.0) * 5.0 / 2.0)
    np.testing.assert_allclose(arr["y"][1, 2], (1 - 0.5) * 5.0 / 4.0)
    assert np.isnan(arr["x"][0, 2]) and np.isnan(arr["z"][1, 0])
    bits = arr["rgb"].view("<u4")
    assert bits[0, 0] == 0xFF0000 and bits[0, 1] == 0x00FF00 and bits[1, 2] == 0x070809
    # raw little-endian bytes of the first point's colour: B, G, R, 0
    assert list(packed.data[16:20]) == [0, 0, 255, 0]


def test_point_cloud_xyz_decimation_and_unorganized() -> None:
    depth = np.full((5, 7), 2.0, np.float32)
    depth[0, 0] = np.nan
    intr = cv.Intrinsics(fx=10.0, fy=10.0, cx=3.0, cy=2.0)
    packed = cv.pack_point_cloud(depth, intr, decimation=2)
    assert (packed.height, packed.width, packed.point_step) == (3, 4, 16)
    fields = [SimpleNamespace(name=n, offset=o, datatype=t, count=c) for n, o, t, c in packed.fields]
    arr = cv.pointcloud2_to_array(SimpleNamespace(height=3, width=4, fields=fields, is_bigendian=False,
                                                  point_step=16, row_step=64, data=packed.data))
    # kept pixels are full-resolution columns 0, 2, 4, 6 -> x = (u - cx) z / fx
    np.testing.assert_allclose(arr["x"][1], (np.array([0, 2, 4, 6]) - 3.0) * 2.0 / 10.0)
    flat = cv.pack_point_cloud(depth, intr, organized=False)
    assert flat.height == 1 and flat.width == 34 and flat.is_dense


def test_stamps() -> None:
    f = cv.seconds_to_stamp_fields(1_700_000_000.123456789)
    assert f["sec"] == 1_700_000_000 and abs(f["nanosec"] - 123456789) < 300
    assert cv.stamp_to_nanoseconds(SimpleNamespace(sec=2, nanosec=5)) == 2_000_000_005
    assert cv.stamp_to_seconds(SimpleNamespace(sec=2, nanosec=500_000_000)) == 2.5


def test_rclpy_messages_roundtrip() -> None:
    """The builders produce real sensor_msgs objects, and the readers read them back."""
    sensor_msgs = pytest.importorskip("sensor_msgs.msg")
    d = np.linspace(0.5, 3.0, 12, dtype=np.float32).reshape(3, 4)
    msg = cv.build_message(sensor_msgs.Image, **cv.depth_image_fields(d, "32FC1"))
    assert isinstance(msg, sensor_msgs.Image) and msg.step == 16
    np.testing.assert_allclose(cv.depth_image_to_metres(msg), d)
    packed = cv.pack_point_cloud(d, cv.Intrinsics(5.0, 5.0, 2.0, 1.0))
    pc = cv.build_message(sensor_msgs.PointCloud2, **packed.message_fields(sensor_msgs.PointField))
    assert pc.fields[2].name == "z" and pc.fields[2].datatype == sensor_msgs.PointField.FLOAT32
    np.testing.assert_allclose(cv.pointcloud2_to_array(pc)["z"], d)


def test_rosbags_messages_roundtrip() -> None:
    typesys = pytest.importorskip("rosbags.typesys")
    ts = typesys.get_typestore(typesys.Stores.ROS2_JAZZY)
    Image, Header, Time = (ts.types[n] for n in ("sensor_msgs/msg/Image", "std_msgs/msg/Header", "builtin_interfaces/msg/Time"))
    header = Header(stamp=Time(sec=3, nanosec=0), frame_id="cam")
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    msg = cv.build_message(Image, header=header, **cv.image_fields(rgb, "rgb8"))
    raw = ts.serialize_cdr(msg, Image.__msgtype__)
    back = ts.deserialize_cdr(raw, Image.__msgtype__)
    np.testing.assert_array_equal(cv.guide_image_to_rgb(back), rgb)
    assert cv.stamp_to_seconds(back.header.stamp) == 3.0
