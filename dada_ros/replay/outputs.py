"""The output bag: what the node would have published, playable in RViz.

Topics: the inputs copied as recorded (``/rgb/image_rect_color``, ``/rgb/camera_info``,
``/depth/image_rect``), and for the primary method the node's outputs
``/depth_upsampled/image_rect`` (32FC1 metres by default), ``/depth_upsampled/camera_info``
(the RGB camera_info with the output stamp, as depth_image_proc/register does) and
``/depth_upsampled/points`` (depth_image_proc layout), encoded as the node would with its
``output_encoding`` / ``publish_points`` / ``points_rgb`` / ``points_decimation`` /
``points_organized`` parameters. ``all_methods`` adds
``/dada_replay/<method>/image_rect`` for every other method. Output messages are logged at the
input's bag time plus the method's processing time, as a live recording would see them.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..ros.conversions import Intrinsics, pack_point_cloud
from ..ros.parameters import NodeSettings
from . import messages as m
from .bag import BagWriter, RawMessage
from .topics import OUT_DEPTH, OUT_INFO, OUT_POINTS

def method_topic(key: str) -> str:
    """``dada-free:cold:100`` -> ``/dada_replay/dada_free_cold_100/image_rect``."""
    return "/dada_replay/" + re.sub(r"[^A-Za-z0-9_]", "_", key) + "/image_rect"


class OutputBag:
    """Writer of the output bag (see the module docstring)."""

    def __init__(self, path: Path, node: NodeSettings, storage: str = "mcap"):
        self.path = Path(path)
        self.node = node
        self.encoding = node.output_encoding
        self.bag = BagWriter(self.path, storage=storage)
        self.bag.open()

    def copy_input(self, raw: RawMessage) -> None:
        self.bag.write_raw(raw.topic, raw.msgtype, raw.data, raw.log_time_ns)

    def write_primary(self, depth: np.ndarray, rgb: np.ndarray, rgb_msg: Any, info_msg: Any, intr: Intrinsics,
                      stamp_ns: int, log_ns: int) -> None:
        """The node's three outputs for one frame (header = the RGB header, as the node does)."""
        hdr = m.header(stamp_ns, str(rgb_msg.header.frame_id))
        self.bag.write(OUT_DEPTH, m.depth_image(depth, self.encoding, hdr), log_ns)
        info = m.restamp_camera_info(info_msg, hdr)
        if (info.width, info.height) == (0, 0):
            info = replace(info, width=depth.shape[1], height=depth.shape[0])
        self.bag.write(OUT_INFO, info, log_ns)
        n = self.node
        if n.publish_points:
            cloud = pack_point_cloud(depth, intr, rgb if n.points_rgb else None, n.points_decimation,
                                     n.points_organized)
            self.bag.write(OUT_POINTS, m.point_cloud(cloud, hdr), log_ns)

    def write_method(self, key: str, depth: np.ndarray, frame_id: str, stamp_ns: int, log_ns: int) -> None:
        self.bag.write(method_topic(key), m.depth_image(depth, self.encoding, m.header(stamp_ns, frame_id)), log_ns)

    def close(self) -> dict[str, int]:
        counts = dict(self.bag.counts)
        self.bag.close()
        return counts
