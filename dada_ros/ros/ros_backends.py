"""Image <-> numpy and PointCloud2 packing for the node: the ROS libraries when importable, the
in-package :mod:`.conversions` otherwise, with the same observable behaviour.

* :class:`ImageCodec` decodes with ``cv_bridge.CvBridge().imgmsg_to_cv2(msg, "passthrough")``
  and encodes with ``cv2_to_imgmsg`` (backend ``"cv_bridge"``), else with
  :func:`.conversions.image_to_array` / :func:`.conversions.image_fields` (``"dada_ros"``).
  cv_bridge only does the raw pixel work. The package's conventions apply on top either way:
  the encodings accepted, the size / ``step`` / data-length checks with the reason keys the node
  counts (checked BEFORE cv_bridge sees the message), 16UC1 mm -> m, 0 / NaN / inf / negative
  invalid, rgb ordering for bgr8 / rgba8 / bgra8 / mono8.
* :class:`CloudPacker` builds clouds with ``sensor_msgs_py.point_cloud2.create_cloud(header,
  fields, points, point_step)`` from a structured array of
  ``point_cloud2.dtype_from_fields(fields, point_step)`` (backend ``"sensor_msgs_py"``), else
  with :func:`.conversions.pack_point_cloud` (``"dada_ros"``). Same fields, offsets and
  point_step as depth_image_proc (x, y, z FLOAT32 @0, 4, 8, point_step 16; + rgb @16, point_step
  32). create_cloud always returns height 1 (an organised 2-D array gets height and width
  swapped) and is_dense false, so the grid, row_step and is_dense are set afterwards, as the
  in-package packer sets them.

Where the library path would differ from the in-package one, the in-package path runs:

* a message whose ``step`` is not a whole number of pixels (cv_bridge would read the padded rows
  at the wrong stride);
* any exception from the library, or a result of the wrong shape / type / size (e.g. cv_bridge's
  big-endian path calls ``ndarray.newbyteorder``, which numpy 2 removed). Such a frame is NOT
  dropped: it is converted in-package, counted in :attr:`ImageCodec.fallbacks` /
  :attr:`CloudPacker.fallbacks` (reported in diagnostics) and warned about once.

A library that imports but fails a start-up probe, a sensor_msgs_py without create_cloud's
``point_step`` argument (before Jazzy) and a big-endian host select ``"dada_ros"``; ``note``
says why. Nothing ROS is imported at module level; the message classes are passed in.
"""

from __future__ import annotations

import inspect
import sys
import threading
from typing import Any, Callable, Sequence

import numpy as np

from . import conversions as cv

PACKAGE_BACKEND = "dada_ros"
CV_BRIDGE = "cv_bridge"
SENSOR_MSGS_PY = "sensor_msgs_py"

Warn = Callable[[str], None]


class _Fallbacks:
    """Thread-safe per-operation counters of library failures; ``warn`` on the first of each."""

    def __init__(self, library: str, warn: Warn | None):
        self.library = library
        self.warn = warn
        self.counts: dict[str, int] = {}
        self.last_error = ""
        self._lock = threading.Lock()

    def record(self, op: str, why: str) -> None:
        with self._lock:
            n = self.counts[op] = self.counts.get(op, 0) + 1
            self.last_error = f"{op}: {why}"
        if n == 1 and self.warn is not None:
            self.warn(f"{self.library} failed to {op} ({why}); using the in-package conversion for such "
                      "messages (same result; counted in diagnostics, warned once)")

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())


def _backend_diagnostics(kind: str, name: str, note: str, fallbacks: _Fallbacks) -> dict[str, str]:
    """``<kind>_backend`` (the backend in use), ``<kind>_backend_fallbacks`` (library failures
    converted in-package), ``_note`` (why not the library) and ``_last_error`` where there are some."""
    out = {f"{kind}_backend": name, f"{kind}_backend_fallbacks": str(fallbacks.total)}
    if note and name == PACKAGE_BACKEND:
        out[f"{kind}_backend_note"] = note
    if fallbacks.last_error:
        out[f"{kind}_backend_last_error"] = fallbacks.last_error
    return out


def load_cv_bridge() -> tuple[Any, str]:
    """``(CvBridge(), "")``, or ``(None, why not)``."""
    try:
        from cv_bridge import CvBridge  # noqa: PLC0415

        return CvBridge(), ""
    except ImportError as exc:
        return None, f"cv_bridge not importable ({exc})"
    except Exception as exc:  # noqa: BLE001 - a broken install (cv2, the boost module) is "not usable"
        return None, f"cv_bridge imported but CvBridge() failed: {exc!r}"


def load_point_cloud2() -> tuple[Any, str]:
    """``(sensor_msgs_py.point_cloud2, "")`` when it can build depth_image_proc's padded layout,
    or ``(None, why not)``."""
    try:
        from sensor_msgs_py import point_cloud2  # noqa: PLC0415
    except ImportError as exc:
        return None, f"sensor_msgs_py not importable ({exc})"
    except Exception as exc:  # noqa: BLE001
        return None, f"sensor_msgs_py.point_cloud2 failed to import: {exc!r}"
    if sys.byteorder != "little":
        return None, "big-endian host (create_cloud would pack big-endian; clouds are published little-endian)"
    create = getattr(point_cloud2, "create_cloud", None)
    if create is None or not callable(getattr(point_cloud2, "dtype_from_fields", None)):
        return None, "sensor_msgs_py.point_cloud2 has no create_cloud / dtype_from_fields"
    try:
        has_step = "point_step" in inspect.signature(create).parameters
    except (TypeError, ValueError):
        has_step = False
    if not has_step:
        return None, "sensor_msgs_py create_cloud has no point_step argument (older than Jazzy): no padded layout"
    return point_cloud2, ""


# --------------------------------------------------------------------------------------------
# images


class ImageCodec:
    """sensor_msgs/Image <-> numpy for the node (see the module doc).

    ``image_cls``: the Image message class (for outputs and the start-up probe). ``backend``:
    ``"auto"`` (cv_bridge when importable and working), ``"cv_bridge"`` (the same, but a
    missing library is an error) or ``"dada_ros"``. ``warn`` is called once per kind of
    library failure.
    """

    def __init__(self, image_cls: Any, backend: str = "auto", warn: Warn | None = None):
        if backend not in ("auto", CV_BRIDGE, PACKAGE_BACKEND):
            raise ValueError(f"image backend must be auto, {CV_BRIDGE} or {PACKAGE_BACKEND}, got {backend!r}")
        self.image_cls = image_cls
        self.bridge: Any = None
        self.note = "in-package conversion requested" if backend == PACKAGE_BACKEND else ""
        if backend != PACKAGE_BACKEND:
            bridge, why = load_cv_bridge()
            if bridge is not None:
                why = self._probe(bridge)
            if why and backend == CV_BRIDGE:
                raise RuntimeError(why)
            self.bridge = None if why else bridge
            self.note = why
        self.name = CV_BRIDGE if self.bridge is not None else PACKAGE_BACKEND
        self.fallbacks = _Fallbacks(CV_BRIDGE, warn)

    def _probe(self, bridge: Any) -> str:
        """'' when the bridge decodes and encodes a tiny 16UC1 / 32FC1 image right, else why not."""
        try:
            msg = cv.build_message(self.image_cls, **cv.image_fields(np.array([[1, 65535]], np.uint16), "16UC1"))
            got = self._checked(bridge.imgmsg_to_cv2(msg, desired_encoding="passthrough"), msg, *cv.check_image_layout(msg))
            if got is None or got.tolist() != [[1, 65535]]:
                return f"cv_bridge imported but decoded a probe image wrongly ({got!r})"
            arr = np.array([[1.5, -2.0]], np.float32)
            out = bridge.cv2_to_imgmsg(arr, encoding="32FC1")
            if not self._same_image(out, cv.image_fields(arr, "32FC1")):
                return "cv_bridge imported but encoded a probe image wrongly"
        except Exception as exc:  # noqa: BLE001
            return f"cv_bridge imported but failed a probe conversion: {exc!r}"
        return ""

    # ---- decoding
    @staticmethod
    def _checked(arr: Any, msg: Any, dtype: np.dtype, channels: int) -> np.ndarray | None:
        """cv_bridge's array as an own, native-order copy, or None when it is not what the
        message holds (wrong shape or pixel type)."""
        if not isinstance(arr, np.ndarray):
            return None
        h, w = int(msg.height), int(msg.width)
        shape = (h, w) if channels == 1 else (h, w, channels)
        if arr.shape != shape or arr.dtype.kind != dtype.kind or arr.dtype.itemsize != dtype.itemsize:
            return None
        return arr.astype(dtype.newbyteorder("="), copy=True)

    def decode(self, msg: Any, encodings: Sequence[str] | None = None) -> np.ndarray:
        """Raw pixels as :func:`.conversions.image_to_array` returns them (same errors and reasons)."""
        dtype, channels = cv.check_image_layout(msg, encodings)  # the package's checks and reason keys
        if self.bridge is not None and int(msg.step) % (dtype.itemsize * channels) == 0:
            try:
                arr = self._checked(self.bridge.imgmsg_to_cv2(msg, desired_encoding="passthrough"), msg, dtype, channels)
                if arr is not None:
                    return arr
                self.fallbacks.record("decode", f"unexpected array for a {msg.encoding} image")
            except Exception as exc:  # noqa: BLE001
                self.fallbacks.record("decode", repr(exc))
        return cv.image_to_array(msg, encodings)

    def depth(self, msg: Any) -> tuple[np.ndarray, np.ndarray]:
        """A depth Image -> (raw pixels, (H, W) float32 metres with NaN invalid), as
        :func:`.conversions.depth_image_to_metres` (16UC1 / mono16 mm, 32FC1 m)."""
        raw = self.decode(msg, cv.DEPTH_ENCODINGS)
        return raw, cv.depth_array_to_metres(raw)

    def guide(self, msg: Any) -> np.ndarray:
        """A guide Image -> (H, W, 3) uint8 RGB, as :func:`.conversions.guide_image_to_rgb`."""
        return cv.guide_array_to_rgb(self.decode(msg, cv.GUIDE_ENCODINGS), str(msg.encoding))

    # ---- encoding
    @staticmethod
    def _same_image(msg: Any, fields: dict) -> bool:
        try:
            return (int(msg.height), int(msg.width), str(msg.encoding), bool(msg.is_bigendian), int(msg.step)) == (
                fields["height"], fields["width"], fields["encoding"], False, fields["step"]) and \
                len(msg.data) == fields["data"].size
        except Exception:  # noqa: BLE001
            return False

    def image_message(self, array: np.ndarray, encoding: str, header: Any) -> Any:
        """An Image of ``array`` (little-endian, unpadded), as ``build_message(Image, header=header,
        **image_fields(array, encoding))`` gives it."""
        fields = cv.image_fields(array, encoding)  # the package's checks (encoding, shape)
        if self.bridge is not None:
            base, channels = cv.IMAGE_ENCODINGS[encoding]
            shape = (fields["height"], fields["width"]) + ((channels,) if channels > 1 else ())
            arr = fields["data"].view("<" + base).reshape(shape)  # little-endian, unpadded
            try:
                msg = self.bridge.cv2_to_imgmsg(arr, encoding=encoding, header=header)
                if self._same_image(msg, fields):
                    return msg
                self.fallbacks.record("encode", f"unexpected message for a {encoding} image")
            except Exception as exc:  # noqa: BLE001
                self.fallbacks.record("encode", repr(exc))
        return cv.build_message(self.image_cls, header=header, **fields)

    def depth_message(self, depth_m: np.ndarray, encoding: str, header: Any) -> Any:
        """A depth Image of metric ``depth_m`` in ``encoding`` (32FC1 m NaN invalid / 16UC1 mm 0 invalid)."""
        return self.image_message(cv.metres_to_depth_array(depth_m, encoding), encoding, header)

    def diagnostics(self) -> dict[str, str]:
        return _backend_diagnostics("image", self.name, self.note, self.fallbacks)


# --------------------------------------------------------------------------------------------
# point clouds


class CloudPacker:
    """PointCloud2 building for the node (see the module doc); ``backend`` is ``"auto"``,
    ``"sensor_msgs_py"`` or ``"dada_ros"``."""

    def __init__(self, cloud_cls: Any, field_cls: Any, backend: str = "auto", warn: Warn | None = None):
        if backend not in ("auto", SENSOR_MSGS_PY, PACKAGE_BACKEND):
            raise ValueError(f"point cloud backend must be auto, {SENSOR_MSGS_PY} or {PACKAGE_BACKEND}, got {backend!r}")
        self.cloud_cls, self.field_cls = cloud_cls, field_cls
        self.pc2: Any = None
        self.note = "in-package packer requested" if backend == PACKAGE_BACKEND else ""
        if backend != PACKAGE_BACKEND:
            self.pc2, self.note = load_point_cloud2()
            if self.pc2 is None and backend == SENSOR_MSGS_PY:
                raise RuntimeError(self.note)
        self.name = SENSOR_MSGS_PY if self.pc2 is not None else PACKAGE_BACKEND
        self.fallbacks = _Fallbacks(SENSOR_MSGS_PY, warn)

    def cloud(self, header: Any, depth: np.ndarray, intr: cv.Intrinsics, rgb: np.ndarray | None = None,
              decimation: int = 1, organized: bool = True) -> Any:
        """A PointCloud2 as ``build_message(PointCloud2, header=header, **pack_point_cloud(depth,
        intr, rgb, decimation, organized).message_fields(PointField))`` gives it (same errors)."""
        if self.pc2 is not None:
            layout, point_step = cv.point_cloud_layout(rgb is not None)
            fields = [cv.build_message(self.field_cls, name=n, offset=o, datatype=t, count=c) for n, o, t, c in layout]
            try:
                dtype = self.pc2.dtype_from_fields(fields, point_step)
            except Exception as exc:  # noqa: BLE001
                dtype = None
                self.fallbacks.record("pack", repr(exc))
            if dtype is not None:
                # the package's geometry and checks (ConversionError propagates, as in-package)
                rec, is_dense = cv.point_cloud_records(depth, intr, rgb, decimation, organized, dtype=dtype)
                height, width = rec.shape
                try:
                    msg = self.pc2.create_cloud(header, fields, np.ascontiguousarray(rec).reshape(-1),
                                                point_step=point_step)
                    # create_cloud: height 1, is_dense false; set the (organised) grid as depth_image_proc does
                    msg.height, msg.width, msg.row_step = int(height), int(width), int(width) * point_step
                    msg.is_dense = is_dense
                    if int(msg.point_step) == point_step and not msg.is_bigendian and \
                            len(msg.data) == height * width * point_step:
                        return msg
                    self.fallbacks.record("pack", "unexpected point_step / byte order / size")
                except Exception as exc:  # noqa: BLE001
                    self.fallbacks.record("pack", repr(exc))
        packed = cv.pack_point_cloud(depth, intr, rgb, decimation, organized)
        return cv.build_message(self.cloud_cls, header=header, **packed.message_fields(self.field_cls))

    def diagnostics(self) -> dict[str, str]:
        return _backend_diagnostics("pointcloud", self.name, self.note, self.fallbacks)
