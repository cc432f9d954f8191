"""sensor_msgs <-> numpy, without importing ROS: the node and the replay tool share these.

Every function reads message fields by name (duck typing), so it works the same on rclpy
messages, on ``rosbags`` messages (same field names, ``data`` as a numpy array) and on any simple
object with those attributes. Builders never import a message class: the caller passes it.

Public API (names are stable; the replay tool imports them):

Images
    ``image_to_array(msg) -> ndarray``           raw pixels (H, W) or (H, W, C), native byte
                                                  order, read through ``step`` and ``is_bigendian``
    ``check_image_layout(msg, encodings)``       the checks of ``image_to_array`` alone (encoding,
                                                  size, step, data length); (dtype, channels)
    ``depth_image_to_metres(msg) -> ndarray``    (H, W) float32 metres, NaN = invalid;
                                                  16UC1/mono16 mm (0 invalid), 32FC1 m (0, NaN,
                                                  inf, negative invalid)
    ``guide_image_to_rgb(msg) -> ndarray``       (H, W, 3) uint8 RGB from rgb8/bgr8/rgba8/bgra8/mono8
    ``depth_array_to_metres(raw)`` / ``guide_array_to_rgb(raw, encoding)``
                                                  the same conventions applied to already decoded
                                                  pixels (the node's cv_bridge path uses them)
    ``metres_to_depth_array(depth, encoding)``   metres -> 32FC1 (NaN invalid) or 16UC1 (mm,
                                                  rounded, clamped to 1..65535, invalid 0)
    ``image_fields(array, encoding) -> dict``    height/width/encoding/is_bigendian/step/data for
                                                  a little-endian, unpadded image
    ``depth_image_fields(depth_m, encoding)``    both of the above in one call
Camera info
    ``camera_intrinsics(info) -> Intrinsics``    fx, fy, cx, cy from P (as image_geometry does),
                                                  else K; raises on zero / non-finite values
    ``scale_camera_info_fields(info, w, h)``     image_proc/resize semantics, as a dict
Point clouds (depth_image_proc point_cloud_xyz / point_cloud_xyzrgb layout)
    ``depth_to_points(depth, intr, decimation)`` (h', w', 3) float32 XYZ, NaN for invalid
    ``pack_point_cloud(depth, intr, rgb=None, decimation=1, organized=True) -> PackedCloud``
    ``point_cloud_layout(with_rgb)``             (fields, point_step) of that layout
    ``point_cloud_records(depth, intr, ...)``    the points as a structured array + is_dense (for
                                                  packers such as sensor_msgs_py's create_cloud)
    ``pointcloud2_to_array(msg) -> ndarray``     structured (H, W) array with the cloud's fields
    ``pack_rgb_float(rgb) -> ndarray``           the float32 whose bits are 0x00RRGGBB
Messages
    ``build_message(msg_cls, **fields)``         an rclpy or rosbags message from field values
    ``point_fields(packed, field_cls)``          PointField objects for a :class:`PackedCloud`
    ``stamp_to_seconds(stamp)`` / ``stamp_to_nanoseconds(stamp)`` / ``seconds_to_stamp_fields(t)``

Errors are :class:`ConversionError` (a :class:`~dada_ros.core.errors.DadaInputError`) with a
short machine-readable ``reason`` (e.g. ``"unsupported_encoding"``) that the node counts in its
diagnostics, and a message a user can act on.

Conventions (see shared ros-conventions.md): ``step`` may exceed ``width * pixel size``;
``is_bigendian`` is honoured; outputs are little-endian and unpadded. A float depth of 0.0 is
treated as invalid (depth_image_proc would make it a point at the origin; drivers mean "no data").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from dada_ros.core.errors import DadaInputError

# encoding -> (numpy dtype without byte order, channels)
IMAGE_ENCODINGS: dict[str, tuple[str, int]] = {
    "rgb8": ("u1", 3),
    "bgr8": ("u1", 3),
    "rgba8": ("u1", 4),
    "bgra8": ("u1", 4),
    "mono8": ("u1", 1),
    "8UC1": ("u1", 1),
    "16UC1": ("u2", 1),
    "mono16": ("u2", 1),
    "32FC1": ("f4", 1),
}
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")
GUIDE_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
OUTPUT_DEPTH_ENCODINGS = ("32FC1", "16UC1")

# sensor_msgs/PointField datatypes
POINTFIELD_FLOAT32 = 7
_POINTFIELD_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}


class ConversionError(DadaInputError):
    """A message that cannot be converted; ``reason`` is a short counter key."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


# --------------------------------------------------------------------------------------------
# time


def stamp_to_nanoseconds(stamp: Any) -> int:
    """builtin_interfaces/Time (``sec``, ``nanosec``) -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def stamp_to_seconds(stamp: Any) -> float:
    """builtin_interfaces/Time -> float seconds."""
    return stamp_to_nanoseconds(stamp) * 1e-9


def seconds_to_stamp_fields(t: float) -> dict:
    """Float seconds -> ``{"sec": int, "nanosec": int}`` (nanosec in [0, 1e9))."""
    ns = int(round(t * 1e9))
    return {"sec": ns // 1_000_000_000, "nanosec": ns % 1_000_000_000}


# --------------------------------------------------------------------------------------------
# images


def _data_bytes(data: Any) -> np.ndarray:
    """``data`` of any message flavour (bytes, array.array, numpy, list) as a flat uint8 array."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(memoryview(data), dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def check_image_layout(msg: Any, encodings: Sequence[str] | None = None) -> tuple[np.dtype, int]:
    """Check a sensor_msgs/Image's encoding, size, ``step`` and data length without decoding it.

    Returns the pixel ``dtype`` in the message's byte order and the channel count. Raises exactly
    what :func:`image_to_array` raises for the same message (it calls this first).
    """
    return _checked_layout(msg, encodings)[:2]


def _checked_layout(msg: Any, encodings: Sequence[str] | None) -> tuple[np.dtype, int, np.ndarray]:
    enc = str(msg.encoding)
    if enc not in IMAGE_ENCODINGS or (encodings is not None and enc not in encodings):
        allowed = ", ".join(encodings if encodings is not None else IMAGE_ENCODINGS)
        raise ConversionError("unsupported_encoding", f"unsupported image encoding {enc!r}; expected one of {allowed}")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ConversionError("empty_image", f"empty image ({w}x{h}, encoding {enc})")
    base, channels = IMAGE_ENCODINGS[enc]
    order = ">" if (msg.is_bigendian and base != "u1") else "<"
    dtype = np.dtype(order + base)
    row_bytes = w * channels * dtype.itemsize
    if step < row_bytes:
        raise ConversionError("step_mismatch", f"step {step} < width x pixel size = {row_bytes} ({w} px, {enc})")
    data = _data_bytes(msg.data)
    if data.size != step * h:
        raise ConversionError(
            "step_mismatch", f"image data has {data.size} bytes, expected step x height = {step} x {h} = {step * h}")
    return dtype, channels, data


def image_to_array(msg: Any, encodings: Sequence[str] | None = None) -> np.ndarray:
    """Pixels of a sensor_msgs/Image as (H, W) or (H, W, C) in native byte order (a copy).

    Reads row by row through ``step`` (rows may be padded) and honours ``is_bigendian``.

    Raises:
        ConversionError: ``unsupported_encoding`` (or not in ``encodings``), ``empty_image``,
            ``step_mismatch`` (step < width x pixel size, or data shorter / longer than
            step x height).
    """
    dtype, channels, data = _checked_layout(msg, encodings)
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = w * channels * dtype.itemsize
    rows = data.reshape(h, step)[:, :row_bytes]
    arr = np.ascontiguousarray(rows).view(dtype).reshape(h, w, channels)
    arr = arr.astype(dtype.newbyteorder("="), copy=True)
    return arr[:, :, 0] if channels == 1 else arr


# Physically meaningful depth (metres): a float pixel outside [DEPTH_MIN_M, DEPTH_MAX_M] is
# invalid, like 0 / NaN / inf. 0.1 mm is below any sensor's resolution, 10 km beyond any depth
# camera or lidar this node is for; values like 3e38 m or 1e-30 m are a driver's garbage and
# would overflow / underflow the solver's squares and ratios (all-NaN output).
DEPTH_MIN_M = 1e-4
DEPTH_MAX_M = 1e4


def depth_array_to_metres(raw: np.ndarray) -> np.ndarray:
    """Raw depth pixels (H, W) -> float32 metres, NaN = invalid: unsigned integers are mm
    (x 0.001), floats are metres; 0, NaN, +-inf, negative values and values outside
    [DEPTH_MIN_M, DEPTH_MAX_M] are invalid. A new array."""
    raw = np.asarray(raw)
    if raw.dtype.kind == "u":
        depth = raw.astype(np.float32) * np.float32(0.001)
    else:
        depth = raw.astype(np.float32)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(depth) | (depth < DEPTH_MIN_M) | (depth > DEPTH_MAX_M)
    depth[bad] = np.nan
    return depth


def depth_image_to_metres(msg: Any) -> np.ndarray:
    """A depth Image (16UC1 / mono16 mm or 32FC1 m) -> (H, W) float32 metres, NaN = invalid.

    0, NaN, +-inf, negative values and values outside [DEPTH_MIN_M, DEPTH_MAX_M] are invalid
    (a float 0.0 too, unlike depth_image_proc).
    """
    return depth_array_to_metres(image_to_array(msg, DEPTH_ENCODINGS))


def guide_array_to_rgb(raw: np.ndarray, encoding: str) -> np.ndarray:
    """Raw guide pixels of ``encoding`` (rgb8, bgr8, rgba8, bgra8: (H, W, C); mono8: (H, W))
    -> (H, W, 3) uint8 RGB (a new array)."""
    raw = np.asarray(raw)
    if encoding == "mono8":
        return np.repeat(raw[:, :, None], 3, axis=2)
    if encoding in ("bgr8", "bgra8"):
        return np.ascontiguousarray(raw[:, :, 2::-1])
    return np.ascontiguousarray(raw[:, :, :3])


def guide_image_to_rgb(msg: Any) -> np.ndarray:
    """A colour / mono Image (rgb8, bgr8, rgba8, bgra8, mono8) -> (H, W, 3) uint8 RGB."""
    return guide_array_to_rgb(image_to_array(msg, GUIDE_ENCODINGS), str(msg.encoding))


def metres_to_depth_array(depth: np.ndarray, encoding: str = "32FC1") -> np.ndarray:
    """(H, W) metres (non-finite / <= 0 invalid) -> array ready for ``encoding``.

    32FC1: float32 metres, NaN for invalid. 16UC1: uint16 mm, rounded, clamped to 1..65535
    (so a valid depth never becomes the invalid 0), invalid -> 0.
    """
    d = np.asarray(depth, dtype=np.float32)
    if d.ndim != 2:
        raise ConversionError("bad_shape", f"depth must be (H, W), got shape {d.shape}")
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(d) & (d > 0)
    if encoding == "32FC1":
        return np.where(valid, d, np.float32(np.nan)).astype(np.float32)
    if encoding in ("16UC1", "mono16"):
        mm = np.clip(np.rint(np.where(valid, d, 0.0) * 1000.0), 1, 65535)
        return np.where(valid, mm, 0).astype(np.uint16)
    raise ConversionError("unsupported_encoding", f"output depth encoding must be one of {OUTPUT_DEPTH_ENCODINGS}, got {encoding!r}")


def image_fields(array: np.ndarray, encoding: str) -> dict:
    """Fields of a little-endian, unpadded sensor_msgs/Image holding ``array`` (no header).

    ``data`` is a flat uint8 numpy array (accepted by rclpy and required by rosbags).
    """
    if encoding not in IMAGE_ENCODINGS:
        raise ConversionError("unsupported_encoding", f"unsupported image encoding {encoding!r}")
    base, channels = IMAGE_ENCODINGS[encoding]
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] != channels:
        raise ConversionError("bad_shape", f"array of shape {np.asarray(array).shape} does not fit {encoding}")
    a = np.ascontiguousarray(a, dtype=np.dtype("<" + base))
    h, w = a.shape[:2]
    return {
        "height": h,
        "width": w,
        "encoding": encoding,
        "is_bigendian": 0,
        "step": w * channels * a.dtype.itemsize,
        "data": a.reshape(-1).view(np.uint8),
    }


def depth_image_fields(depth_m: np.ndarray, encoding: str = "32FC1") -> dict:
    """Image fields (no header) for a metric depth map published as ``encoding``."""
    return image_fields(metres_to_depth_array(depth_m, encoding), encoding)


# --------------------------------------------------------------------------------------------
# camera info


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole parameters in pixels of one image grid (u = column, v = row, no half-pixel shift)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int = 0
    height: int = 0

    def scaled(self, sx: float, sy: float) -> "Intrinsics":
        """The same camera on a grid resized by (sx, sy) (image_proc/resize semantics)."""
        return Intrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy,
                          int(round(self.width * sx)), int(round(self.height * sy)))

    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)


def _field(msg: Any, lower: str, upper: str) -> Any:
    """ROS 2 names CameraInfo fields k/p/d/r; ROS 1 style objects use K/P/D/R."""
    v = getattr(msg, lower, None)
    return getattr(msg, upper, None) if v is None else v


def camera_intrinsics(info: Any) -> Intrinsics:
    """fx, fy, cx, cy of a sensor_msgs/CameraInfo.

    Taken from P (what image_geometry / depth_image_proc use; equal to K for a rectified mono
    camera) when P is set, else from K.

    Raises:
        ConversionError: ``bad_camera_info`` when K and P are both unset (K[0] == 0 means
            uncalibrated), malformed, or hold non-finite / non-positive focal lengths.
    """
    try:
        k = np.asarray(_field(info, "k", "K"), dtype=np.float64).reshape(-1)
        p = np.asarray(_field(info, "p", "P"), dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ConversionError("bad_camera_info", f"camera_info K/P unreadable: {exc}") from exc
    if p.size == 12 and np.all(np.isfinite(p)) and p[0] != 0:
        fx, fy, cx, cy = p[0], p[5], p[2], p[6]
    elif k.size == 9 and np.all(np.isfinite(k)) and k[0] != 0:
        fx, fy, cx, cy = k[0], k[4], k[2], k[5]
    else:
        raise ConversionError("bad_camera_info", "camera_info has zero (uncalibrated) or malformed K and P")
    if not (math.isfinite(fx) and math.isfinite(fy) and fx > 0 and fy > 0 and math.isfinite(cx) and math.isfinite(cy)):
        raise ConversionError("bad_camera_info", f"camera_info focal lengths must be finite and > 0, got fx={fx}, fy={fy}")
    return Intrinsics(float(fx), float(fy), float(cx), float(cy), int(getattr(info, "width", 0) or 0),
                      int(getattr(info, "height", 0) or 0))


def scale_camera_info_fields(info: Any, width: int, height: int) -> dict:
    """CameraInfo fields (no header) for the same camera resized to ``width`` x ``height``.

    image_proc/resize semantics: K[0], K[2], P[0], P[2], P[3] x sx; K[4], K[5], P[5], P[6] x sy;
    roi scaled; D, R, binning and distortion model unchanged. ``info.width``/``height`` must be set.
    ``roi`` comes back as a dict of RegionOfInterest fields (build that message yourself).
    """
    w0, h0 = int(info.width), int(info.height)
    if w0 <= 0 or h0 <= 0:
        raise ConversionError("bad_camera_info", f"camera_info size {w0}x{h0} cannot be scaled")
    sx, sy = width / w0, height / h0
    k = np.array(_field(info, "k", "K"), dtype=np.float64).reshape(9)
    p = np.array(_field(info, "p", "P"), dtype=np.float64).reshape(12)
    k[[0, 2]] *= sx
    k[[4, 5]] *= sy
    p[[0, 2, 3]] *= sx
    p[[5, 6]] *= sy
    out = {
        "height": int(height),
        "width": int(width),
        "distortion_model": getattr(info, "distortion_model", ""),
        "d": np.array(_field(info, "d", "D"), dtype=np.float64),
        "k": k,
        "r": np.array(_field(info, "r", "R"), dtype=np.float64).reshape(9),
        "p": p,
        "binning_x": int(getattr(info, "binning_x", 0)),
        "binning_y": int(getattr(info, "binning_y", 0)),
    }
    roi = getattr(info, "roi", None)
    if roi is not None:
        out["roi"] = {
            "x_offset": int(round(roi.x_offset * sx)), "y_offset": int(round(roi.y_offset * sy)),
            "width": int(round(roi.width * sx)), "height": int(round(roi.height * sy)),
            "do_rectify": bool(roi.do_rectify),
        }
    return out


# --------------------------------------------------------------------------------------------
# point clouds


def depth_to_points(depth: np.ndarray, intr: Intrinsics, decimation: int = 1) -> np.ndarray:
    """Back-project (H, W) metres to (ceil(H/d), ceil(W/d), 3) float32 XYZ in the optical frame.

    X = (u - cx) Z / fx, Y = (v - cy) Z / fy with u, v the FULL-resolution column / row of each
    kept pixel (every ``decimation``-th, starting at 0), so decimation never shifts points.
    Invalid depth (non-finite or <= 0) gives NaN x, y, z.
    """
    if int(decimation) != decimation or decimation < 1:
        raise ConversionError("bad_parameter", f"decimation must be an integer >= 1, got {decimation}")
    d = int(decimation)
    z = np.asarray(depth, dtype=np.float32)[::d, ::d]
    with np.errstate(invalid="ignore"):
        z = np.where(np.isfinite(z) & (z > 0), z, np.float32(np.nan))
    v = np.arange(0, depth.shape[0], d, dtype=np.float32)[:, None]
    u = np.arange(0, depth.shape[1], d, dtype=np.float32)[None, :]
    x = (u - np.float32(intr.cx)) * z / np.float32(intr.fx)
    y = (v - np.float32(intr.cy)) * z / np.float32(intr.fy)
    return np.stack([x, y, z], axis=-1).astype(np.float32)


def pack_rgb_float(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) float32 whose bit pattern is the uint32 0x00RRGGBB (PCL style)."""
    c = np.asarray(rgb, dtype=np.uint32)
    packed = (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]
    return packed.astype("<u4").view("<f4")


@dataclass
class PackedCloud:
    """Everything of a sensor_msgs/PointCloud2 but the header (``fields``: name, offset,
    datatype, count tuples)."""

    height: int
    width: int
    fields: list[tuple[str, int, int, int]]
    is_bigendian: bool
    point_step: int
    row_step: int
    data: np.ndarray  # flat uint8
    is_dense: bool

    def message_fields(self, field_cls: Any) -> dict:
        """Field values for ``build_message(PointCloud2, header=..., **cloud.message_fields(PointField))``."""
        return {
            "height": self.height, "width": self.width, "fields": point_fields(self, field_cls),
            "is_bigendian": self.is_bigendian, "point_step": self.point_step, "row_step": self.row_step,
            "data": self.data, "is_dense": self.is_dense,
        }


def point_cloud_layout(with_rgb: bool) -> tuple[list[tuple[str, int, int, int]], int]:
    """``(fields, point_step)`` of depth_image_proc's clouds: (name, offset, datatype, count)
    tuples x@0 y@4 z@8 [rgb@16] FLOAT32, point_step 16 (XYZ) or 32 (XYZRGB)."""
    fields = [("x", 0, POINTFIELD_FLOAT32, 1), ("y", 4, POINTFIELD_FLOAT32, 1), ("z", 8, POINTFIELD_FLOAT32, 1)]
    if with_rgb:
        return fields + [("rgb", 16, POINTFIELD_FLOAT32, 1)], 32
    return fields, 16


def _padded_cloud_dtype(with_rgb: bool) -> np.dtype:
    fields: list[tuple[str, str]] = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("_pad0", "<f4")]
    if with_rgb:
        fields += [("rgb", "<f4"), ("_pad1", "<f4"), ("_pad2", "<f4"), ("_pad3", "<f4")]
    return np.dtype(fields)


def point_cloud_records(depth: np.ndarray, intr: Intrinsics, rgb: np.ndarray | None = None,
                        decimation: int = 1, organized: bool = True,
                        dtype: np.dtype | None = None) -> tuple[np.ndarray, bool]:
    """The points of :func:`pack_point_cloud` as a structured (height, width) array, and
    ``is_dense``.

    ``dtype``: a structured dtype with float32 fields ``x``, ``y``, ``z`` (and ``rgb`` when
    ``rgb`` is given) at the offsets of :func:`point_cloud_layout`, itemsize = point_step (e.g.
    ``sensor_msgs_py.point_cloud2.dtype_from_fields(fields, point_step)``); every other byte is 0.
    Default: the same layout with named padding fields.
    """
    pts = depth_to_points(depth, intr, decimation)
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape[:2] != np.asarray(depth).shape[:2] or rgb.ndim != 3 or rgb.shape[2] < 3:
            raise ConversionError("bad_shape", f"rgb {rgb.shape} does not match depth {np.asarray(depth).shape}")
    colours = None if rgb is None else pack_rgb_float(rgb[:: int(decimation), :: int(decimation), :3])
    valid = np.isfinite(pts[..., 2])
    if not organized:  # select before filling: indexing a structured array need not copy its gap bytes
        pts = pts[valid][None, :]
        colours = None if colours is None else colours[valid][None, :]
    rec = np.zeros(pts.shape[:2], dtype=_padded_cloud_dtype(rgb is not None) if dtype is None else dtype)
    rec["x"], rec["y"], rec["z"] = pts[..., 0], pts[..., 1], pts[..., 2]
    if colours is not None:
        rec["rgb"] = colours
    return rec, (bool(valid.all()) if organized else True)


def pack_point_cloud(depth: np.ndarray, intr: Intrinsics, rgb: np.ndarray | None = None,
                     decimation: int = 1, organized: bool = True) -> PackedCloud:
    """Depth (H, W) metres [+ RGB (H, W, 3) uint8] -> a PointCloud2 payload, depth_image_proc layout.

    XYZ: x@0 y@4 z@8 FLOAT32, point_step 16. XYZRGB: plus rgb@16 FLOAT32, point_step 32.
    ``organized``: keep the (decimated) grid with NaN points for invalid depth, like
    depth_image_proc; otherwise drop invalid points (height 1). ``is_dense`` is true exactly
    when the cloud holds no NaN point.
    """
    rec, is_dense = point_cloud_records(depth, intr, rgb, decimation, organized)
    fields, point_step = point_cloud_layout(rgb is not None)
    height, width = rec.shape
    return PackedCloud(
        height=int(height), width=int(width), fields=fields, is_bigendian=False, point_step=point_step,
        row_step=int(width) * point_step, data=np.ascontiguousarray(rec).reshape(-1).view(np.uint8),
        is_dense=is_dense,
    )


def point_fields(packed: PackedCloud, field_cls: Any) -> list:
    """sensor_msgs/PointField objects (of ``field_cls``) for ``packed.fields``."""
    return [build_message(field_cls, name=n, offset=o, datatype=t, count=c) for n, o, t, c in packed.fields]


def pointcloud2_to_array(msg: Any) -> np.ndarray:
    """A PointCloud2 -> structured (height, width) array with one named column per field."""
    names, formats, offsets = [], [], []
    for f in msg.fields:
        if int(f.datatype) not in _POINTFIELD_DTYPES:
            raise ConversionError("bad_pointcloud", f"unknown PointField datatype {f.datatype}")
        base = (">" if msg.is_bigendian else "<") + _POINTFIELD_DTYPES[int(f.datatype)]
        names.append(str(f.name))
        formats.append((base, (int(f.count),)) if int(f.count) > 1 else base)
        offsets.append(int(f.offset))
    dt = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": int(msg.point_step)})
    h, w = int(msg.height), int(msg.width)
    raw = _data_bytes(msg.data)
    if raw.size != int(msg.row_step) * h or int(msg.row_step) < w * int(msg.point_step):
        raise ConversionError("bad_pointcloud", f"cloud data {raw.size} bytes != row_step {msg.row_step} x height {h}")
    rows = raw.reshape(h, int(msg.row_step))[:, : w * int(msg.point_step)]
    return np.ascontiguousarray(rows).view(dt).reshape(h, w)


# --------------------------------------------------------------------------------------------
# message construction


def _is_rosbags_class(msg_cls: Any) -> bool:
    return hasattr(msg_cls, "__dataclass_fields__") and "__msgtype__" in getattr(msg_cls, "__dataclass_fields__", {})


def build_message(msg_cls: Any, **fields: Any) -> Any:
    """A message of ``msg_cls`` with ``fields`` set.

    rclpy classes are built empty and assigned (missing fields keep their defaults); rosbags
    classes (frozen-ish dataclasses) are called with all fields, so pass every field there.
    Nested dicts are not converted: build nested messages (header, roi) first.
    """
    if _is_rosbags_class(msg_cls):
        return msg_cls(**fields)
    msg = msg_cls()
    for name, value in fields.items():
        if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 1:
            # rclpy's uint8[] setter checks a numpy array element by element (~0.7 s for a
            # 640x480 cloud); bytes go through array.array.frombytes, a copy (~5 ms).
            value = value.tobytes()
        setattr(msg, name, value)
    return msg
