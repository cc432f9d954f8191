"""The node's input checks without ROS (:mod:`dada_ros.ros.frame_checks`), as the node and the
replay tool both run them: reasons, payloads, in-package vs ImageCodec decoding."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from dada_ros.ros import conversions as cv
from dada_ros.ros import frame_checks as fc
from dada_ros.ros.ros_backends import ImageCodec


def header(frame_id: str = "cam") -> SimpleNamespace:
    return SimpleNamespace(frame_id=frame_id, stamp=SimpleNamespace(sec=1, nanosec=0))


def image(arr: np.ndarray, encoding: str, frame_id: str = "cam") -> SimpleNamespace:
    return SimpleNamespace(header=header(frame_id), **cv.image_fields(arr, encoding))


def info(w: int, h: int, frame_id: str = "cam") -> SimpleNamespace:
    return SimpleNamespace(header=header(frame_id), width=w, height=h, k=[50.0, 0, 16, 0, 50.0, 12, 0, 0, 1],
                           p=[50.0, 0, 16, 0, 0, 50.0, 12, 0, 0, 0, 1, 0])


def reason(fn, *args, **kwargs) -> str:
    with pytest.raises(cv.ConversionError) as exc:
        fn(*args, **kwargs)
    return exc.value.reason


@pytest.mark.parametrize("images", [None, ImageCodec(None, backend="dada_ros")], ids=["in-package", "codec"])
def test_decode_payloads_and_reasons(images) -> None:
    rgb = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    d = fc.decode_input("rgb", image(rgb[:, :, ::-1].copy(), "bgr8"), images)
    np.testing.assert_array_equal(d.array, rgb)
    assert d.header.frame_id == "cam" and d.intr is None
    depth = fc.decode_input("depth", image(np.array([[0, 1500]], np.uint16), "16UC1"), images)
    np.testing.assert_allclose(depth.array, [[np.nan, 1.5]])
    assert reason(fc.decode_input, "rgb", image(np.zeros((2, 2), np.float32), "32FC1"), images) == "unsupported_encoding"
    assert reason(fc.decode_input, "depth", image(np.zeros((2, 2), np.uint16), "16UC1"), images) == "all_invalid_depth"


def test_inf_or_negative_is_reported_before_the_all_invalid_refusal() -> None:
    seen: list[int] = []
    ok = fc.decode_depth(image(np.array([[1.0, np.inf, -1.0]], np.float32), "32FC1"), on_inf_or_negative=seen.append)
    assert seen == [2] and np.isfinite(ok.array).sum() == 1
    bad = image(np.array([[-1.0, -2.0]], np.float32), "32FC1")
    assert reason(fc.decode_depth, bad, on_inf_or_negative=seen.append) == "all_invalid_depth"
    assert seen == [2, 2]
    fc.decode_depth(image(np.array([[0, 7]], np.uint16), "16UC1"), on_inf_or_negative=seen.append)
    assert seen == [2, 2]


def test_camera_info() -> None:
    d = fc.decode_input("camera_info", info(32, 24))
    assert (d.intr.fx, d.intr.cx, d.array) == (50.0, 16.0, None)
    assert reason(fc.decode_camera_info, info(-1, 24)) == "bad_camera_info"
    with pytest.raises(ValueError):
        fc.decode_input("points", info(32, 24))


def test_frame_checks() -> None:
    rgb = fc.Decoded(header("cam"), None, np.zeros((24, 32, 3), np.uint8))
    depth = fc.Decoded(header("cam"), None, np.ones((6, 8), np.float32))
    assert fc.check_frame(rgb, fc.decode_camera_info(info(32, 24)), depth) is None
    assert fc.check_frame(rgb, fc.decode_camera_info(info(0, 0)), depth) is None
    assert fc.check_frame(rgb, fc.decode_camera_info(info(64, 48)), depth)[0] == "camera_info_size_mismatch"
    big = fc.Decoded(header("cam"), None, np.ones((6, 40), np.float32))
    assert fc.check_frame(rgb, fc.decode_camera_info(info(32, 24)), big)[0] == "depth_larger_than_rgb"
    assert fc.frame_id_mismatch(rgb, fc.decode_camera_info(info(32, 24)), depth) is None
    other = fc.decode_camera_info(info(32, 24, "other"))
    assert fc.frame_id_mismatch(rgb, other, depth) == ("cam", "other", "cam")
