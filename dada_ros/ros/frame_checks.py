"""The input checks of ``upsample_node``, without importing ROS: the node and the replay tool
(:mod:`dada_ros.replay.evaluate`) both run them, so a message or frame the node drops is dropped
by the replay with the same reason key.

Per message (on arrival, before it can occupy a sync queue):
    ``decode_input(kind, msg, images=None, on_inf_or_negative=None) -> Decoded``
        ``kind`` is ``"rgb"``, ``"camera_info"`` or ``"depth"``; dispatches to
    ``decode_rgb(msg, images)``         (H, W, 3) uint8 RGB
    ``decode_camera_info(msg)``         intrinsics; a negative size is ``bad_camera_info``
    ``decode_depth(msg, images, on_inf_or_negative)``
                                        (h, w) float32 metres; no valid pixel at all is
                                        ``all_invalid_depth``; float inf / negative pixels (not
                                        fatal: they are invalid) are reported to
                                        ``on_inf_or_negative(count)`` first, finite ones outside
                                        [DEPTH_MIN_M, DEPTH_MAX_M] (3e38 m, 1e-30 m: invalid
                                        too) to ``on_out_of_range(count)``
    All raise :class:`~.conversions.ConversionError` with the reason the node counts
    (``unsupported_encoding``, ``empty_image``, ``step_mismatch``, ``bad_camera_info``,
    ``all_invalid_depth``, ...). ``images`` decodes the pixels: the node's
    :class:`~.ros_backends.ImageCodec` (cv_bridge when importable; same output), or ``None`` for
    the in-package :mod:`.conversions`.

Per matched set (before solving):
    ``check_frame(rgb, info, depth) -> (reason, text) | None``
        ``depth_larger_than_rgb``, ``camera_info_size_mismatch``: the set is refused
    ``frame_id_mismatch(rgb, info, depth) -> (rgb_id, info_id, depth_id) | None``
        not a refusal (the node publishes in the rgb frame and warns)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import conversions as cv

INPUT_KINDS = ("rgb", "camera_info", "depth")


@dataclass
class Decoded:
    """A received message with its decoded payload; ``header`` is what the synchroniser reads."""

    header: Any
    msg: Any
    array: np.ndarray | None = None  # rgb (H, W, 3) uint8 / depth (h, w) float32 metres
    intr: cv.Intrinsics | None = None  # camera_info
    decode_ms: float = 0.0  # time spent decoding and checking it (the node's latency split)


def decode_rgb(msg: Any, images: Any = None) -> Decoded:
    """A guide Image -> Decoded with (H, W, 3) uint8 RGB."""
    rgb = images.guide(msg) if images is not None else cv.guide_image_to_rgb(msg)
    return Decoded(msg.header, msg, rgb)


def decode_camera_info(msg: Any) -> Decoded:
    """A CameraInfo -> Decoded with its intrinsics (``bad_camera_info`` when unusable)."""
    intr = cv.camera_intrinsics(msg)
    if int(msg.width) < 0 or int(msg.height) < 0:
        raise cv.ConversionError("bad_camera_info", "negative size")
    return Decoded(msg.header, msg, None, intr)


def count_inf_or_negative(raw: np.ndarray) -> int:
    """Float depth pixels that are inf or negative (0 for integer depth)."""
    if raw.dtype.kind != "f":
        return 0
    return int(np.count_nonzero(np.isinf(raw) | (raw < 0)))


def count_out_of_range(raw: np.ndarray) -> int:
    """Float depth pixels that are finite and > 0 but outside [DEPTH_MIN_M, DEPTH_MAX_M] (0 for
    integer depth: 1 mm .. 65.5 m is always in range)."""
    if raw.dtype.kind != "f":
        return 0
    with np.errstate(invalid="ignore", over="ignore"):
        r = raw.astype(np.float64)
        return int(np.count_nonzero(np.isfinite(r) & (r > 0) & ((r < cv.DEPTH_MIN_M) | (r > cv.DEPTH_MAX_M))))


def decode_depth(msg: Any, images: Any = None, on_inf_or_negative: Callable[[int], None] | None = None,
                 on_out_of_range: Callable[[int], None] | None = None) -> Decoded:
    """A depth Image -> Decoded with (h, w) float32 metres, NaN invalid (out-of-range values too:
    reported to ``on_out_of_range(count)``; a frame with none left valid is ``all_invalid_depth``)."""
    if images is not None:
        raw, depth = images.depth(msg)
    else:
        raw = cv.image_to_array(msg, cv.DEPTH_ENCODINGS)
        depth = cv.depth_array_to_metres(raw)
    n_bad = count_inf_or_negative(raw)
    if n_bad and on_inf_or_negative is not None:
        on_inf_or_negative(n_bad)
    n_range = count_out_of_range(raw)
    if n_range and on_out_of_range is not None:
        on_out_of_range(n_range)
    if not np.isfinite(depth).any():
        raise cv.ConversionError("all_invalid_depth", "depth image has no valid pixel (all 0 / NaN / inf / "
                                 f"outside {cv.DEPTH_MIN_M:g}..{cv.DEPTH_MAX_M:g} m)")
    return Decoded(msg.header, msg, depth)


def decode_input(kind: str, msg: Any, images: Any = None,
                 on_inf_or_negative: Callable[[int], None] | None = None,
                 on_out_of_range: Callable[[int], None] | None = None) -> Decoded:
    """Decode and check one input message of ``kind`` (one of :data:`INPUT_KINDS`)."""
    if kind == "rgb":
        return decode_rgb(msg, images)
    if kind == "camera_info":
        return decode_camera_info(msg)
    if kind == "depth":
        return decode_depth(msg, images, on_inf_or_negative, on_out_of_range)
    raise ValueError(f"input kind must be one of {', '.join(INPUT_KINDS)}, got {kind!r}")


def check_frame(rgb: Decoded, info: Decoded, depth: Decoded) -> tuple[str, str] | None:
    """The per-set size checks before solving -> (reason, text) of a refusal, or None."""
    H, W = rgb.array.shape[:2]
    h, w = depth.array.shape
    if h > H or w > W:
        return "depth_larger_than_rgb", (f"depth {w}x{h} is larger than rgb {W}x{H}: "
                                         "this node upsamples a low-resolution depth onto the rgb grid")
    iw, ih = int(info.msg.width), int(info.msg.height)
    if (iw, ih) != (0, 0) and (iw, ih) != (W, H):
        return "camera_info_size_mismatch", f"camera_info is for {iw}x{ih} but the rgb image is {W}x{H}"
    return None


def frame_id_mismatch(rgb: Decoded, info: Decoded, depth: Decoded) -> tuple[str, str, str] | None:
    """The three frame_ids when they are not all the same (reason ``frame_id_mismatch``), else None."""
    ids = (rgb.header.frame_id, info.header.frame_id, depth.header.frame_id)
    return ids if len(set(ids)) > 1 else None
