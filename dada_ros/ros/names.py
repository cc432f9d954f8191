"""The node's name and topic names, without importing ROS: ``upsample_node`` uses them, and the
replay tool (offline output bag, ``--realtime``) reads and writes the same topics."""

from __future__ import annotations

NODE_NAME = "dada_upsample"
# Relative names, so a namespace and remappings apply (the launch file remaps them).
INPUT_TOPICS = {"rgb": "rgb/image_rect_color", "camera_info": "rgb/camera_info", "depth": "depth/image_rect"}
OUTPUT_TOPICS = {"depth": "depth_upsampled/image_rect", "camera_info": "depth_upsampled/camera_info",
                 "points": "depth_upsampled/points"}


def absolute(name: str) -> str:
    """``rgb/image_rect_color`` -> ``/rgb/image_rect_color`` (the name in the root namespace, as
    names in bags are)."""
    name = name.strip()
    return name if name.startswith("/") else "/" + name
