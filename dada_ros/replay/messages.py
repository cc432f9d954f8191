"""rosbags (Jazzy) message builders on top of :mod:`dada_ros.ros.conversions`.

Pixels, camera-info scaling and point-cloud packing all come from the node's conversions; this
module only wraps their field dicts into ``rosbags`` dataclasses (which need every field).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ros import conversions as conv
from .bag import msg_class


def header(stamp_ns: int, frame_id: str) -> Any:
    """std_msgs/Header at ``stamp_ns``."""
    Time = msg_class("builtin_interfaces/msg/Time")
    Header = msg_class("std_msgs/msg/Header")
    return Header(stamp=Time(sec=int(stamp_ns) // 1_000_000_000, nanosec=int(stamp_ns) % 1_000_000_000),
                  frame_id=frame_id)


def image(array: np.ndarray, encoding: str, hdr: Any) -> Any:
    """sensor_msgs/Image holding ``array`` (raw pixels in ``encoding``)."""
    return conv.build_message(msg_class("sensor_msgs/msg/Image"), header=hdr, **conv.image_fields(array, encoding))


def depth_image(depth_m: np.ndarray, encoding: str, hdr: Any) -> Any:
    """sensor_msgs/Image of a metric depth map published as ``encoding`` (32FC1 / 16UC1)."""
    return conv.build_message(msg_class("sensor_msgs/msg/Image"), header=hdr,
                              **conv.depth_image_fields(depth_m, encoding))


def camera_info(K: np.ndarray, width: int, height: int, hdr: Any) -> Any:
    """sensor_msgs/CameraInfo of a rectified pinhole camera (no distortion, P = [K | 0])."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    P = np.zeros((3, 4))
    P[:, :3] = K
    roi = msg_class("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return conv.build_message(
        msg_class("sensor_msgs/msg/CameraInfo"), header=hdr, height=int(height), width=int(width),
        distortion_model="plumb_bob", d=np.zeros(5), k=K.reshape(-1), r=np.eye(3).reshape(-1), p=P.reshape(-1),
        binning_x=0, binning_y=0, roi=roi)


def restamp_camera_info(info: Any, hdr: Any) -> Any:
    """A copy of CameraInfo ``info`` with header ``hdr`` (the node publishes the RGB info this way)."""
    roi = info.roi
    roi_copy = msg_class("sensor_msgs/msg/RegionOfInterest")(
        x_offset=int(roi.x_offset), y_offset=int(roi.y_offset), height=int(roi.height), width=int(roi.width),
        do_rectify=bool(roi.do_rectify))
    return conv.build_message(
        msg_class("sensor_msgs/msg/CameraInfo"), header=hdr, height=int(info.height), width=int(info.width),
        distortion_model=str(info.distortion_model), d=np.asarray(info.d, np.float64),
        k=np.asarray(info.k, np.float64), r=np.asarray(info.r, np.float64), p=np.asarray(info.p, np.float64),
        binning_x=int(info.binning_x), binning_y=int(info.binning_y), roi=roi_copy)


def point_cloud(packed: conv.PackedCloud, hdr: Any) -> Any:
    """sensor_msgs/PointCloud2 from a :class:`~dada_ros.ros.conversions.PackedCloud`."""
    return conv.build_message(msg_class("sensor_msgs/msg/PointCloud2"), header=hdr,
                              **packed.message_fields(msg_class("sensor_msgs/msg/PointField")))
