"""``upsample_node``: synced RGB + camera_info + low-res depth in; depth, camera_info and a point
cloud at RGB resolution out (node name ``dada_upsample``).

Data flow (only this file wires ROS to the core)::

    subscriptions --decode/check--> Synchronizer --matched set--> LatestSlot --> worker thread
        (executor thread)             (approx. time)              (one slot)    FramePipeline.process
                                                                                 -> publish

* Each message is decoded and checked in its own callback, so a malformed message is rejected
  with its own reason before it can occupy a sync queue.
* The worker always takes the NEWEST matched set: a set that arrives while one is being solved
  replaces the waiting one (counted ``dropped_stale``). No queue grows without bound and the
  executor never blocks on the solver, so parameter services and diagnostics stay responsive.
* Parameter changes are validated in the on-set callback (refused with a reason, old value
  kept) and handed to the worker, which applies them before its next frame.
* Images are decoded / encoded with cv_bridge and clouds packed with sensor_msgs_py when those
  import, else in-package (:mod:`.ros_backends`; same output either way). The choice is in the
  start-up log line and in the ``input`` / ``output`` diagnostics (``image_backend``,
  ``pointcloud_backend``).
* Nothing a message contains can stop the node: every rejection is logged (throttled per
  reason), counted per reason in ``/diagnostics``, and processing goes on.
* Every input message is accounted for (``accounting`` in ``/diagnostics``): it becomes part of
  a published frame or gets exactly one counted fate -- a decode refusal (its reason), left a
  sync queue without a partner (``unmatched``, ``duplicate_stamp``, ``time_jump``,
  ``headerless``), its set replaced by a newer one (``stale``), its set refused (the refusal's
  reason, ``invalid_output``, ``solver_exception``) -- or is still pending (queued / in the
  worker). A subscription whose QoS cannot match a publisher is warned about and counted
  (``qos_incompatible``): it would otherwise receive nothing, silently.
* Stamps stepping back within ``jump_tolerance`` (jitter, reordering) are ordinary: the frame
  is processed and keeps the warm start (the pipeline sees a monotone stamp); beyond it the sync
  queues and the warm start are reset once.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
import traceback
from typing import Any, Callable

import numpy as np
import torch

from dada_ros.core.allocator import retain_freed_memory
from dada_ros.core.errors import DadaInputError
from dada_ros.core.fused_cpu import numba_threads, set_numba_threads
from dada_ros.core.methods import make_solver
from dada_ros.core.pipeline import FramePipeline
from dada_ros.core.solver import DadaSolver

from . import conversions as cv
from .diagnostics import Diagnostics, DiagnosticsPublisher, NodeStats, diagnostic_updater_available
from .frame_checks import Decoded, check_frame, decode_input, frame_id_mismatch
from .names import INPUT_TOPICS, NODE_NAME, OUTPUT_TOPICS
from .qos import AdaptiveSubscription
from .parameters import (DIAGNOSTICS_PERIOD_PARAM, PARAMS, PARAMS_BY_NAME, NodeSettings, descriptor,
                         validate_settings)
from .ros_backends import CloudPacker, ImageCodec
from .sync import Synchronizer

import rclpy  # noqa: E402  (after the ROS-free imports on purpose: they are the reusable part)
from rcl_interfaces.msg import SetParametersResult  # noqa: E402
from rclpy.exceptions import ParameterException  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.qos_overriding_options import QoSOverridingOptions  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField  # noqa: E402

INPUT_LABELS = {"rgb": "rgb image", "camera_info": "camera_info", "depth": "depth image"}  # in log lines
INPUT_KEYS = ("rgb", "camera_info", "depth")  # synchroniser input order
LOG_THROTTLE_S = 5.0
# No valid camera_info for this long while depth keeps coming = "camera_info missing".
CAMERA_INFO_TIMEOUT_S = 1.0
# How often qos_reliability: auto looks at the input topics' publishers (a graph query, ~0.1 ms).
QOS_POLL_S = 0.25


class LatestSlot:
    """A one-item mailbox: ``put`` replaces what is waiting (and says so), ``take`` waits."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._closed = False

    def put(self, item: Any) -> bool:
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float) -> Any:
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def _guarded(topic: str) -> Callable:
    """Wrap a subscription callback: an unexpected exception is counted and logged, never
    propagated (it would end the executor's spin and with it the node)."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def guarded(self: "UpsampleNode", msg: Any) -> None:
            self._tls.handed = False
            try:
                fn(self, msg)
            except Exception as exc:  # noqa: BLE001
                n = self.stats.count("callback_exception")
                if not getattr(self._tls, "handed", False):  # not queued yet: this is its fate
                    self.stats.drop_message(topic, "callback_exception")
                try:
                    self._log(f"callback_exception {topic}", f"unexpected error handling a {topic} message "
                              f"[callback_exception: {n}]: {exc!r}\n{traceback.format_exc()}", level="error")
                except Exception:  # noqa: BLE001
                    pass

        return guarded

    return wrap


def _qos(reliability: str, depth: int) -> QoSProfile:
    rel = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=rel,
                      durability=DurabilityPolicy.VOLATILE)


class UpsampleNode(Node):
    """The ``dada_upsample`` node (see the module docstring). ``kwargs`` go to ``rclpy.node.Node``
    (``namespace``, ``parameter_overrides``, ``context``, ``cli_args`` ...)."""

    def __init__(self, **kwargs: Any):
        super().__init__(NODE_NAME, **kwargs)
        # the node owns its process: it keeps freed frame buffers for the next frame (core/allocator.py)
        self._malloc = retain_freed_memory()
        self.stats = NodeStats()
        self._log_times: dict[str, float] = {}
        self._warned_once: set[str] = set()
        self._lock = threading.Lock()
        self._tls = threading.local()
        self._last_info_time: float | None = None
        self._reset_requested = False
        self._last_stamp: float | None = None  # of the last processed frame (monotone, see _process)

        # diagnostic_updater declares its own period parameter: then the node does not (one
        # parameter, one name either way) and reads the override the Updater will get
        native_diagnostics = diagnostic_updater_available()
        values = {}
        for spec in PARAMS:
            if spec.name == DIAGNOSTICS_PERIOD_PARAM and native_diagnostics:
                override = (getattr(self, "_parameter_overrides", {}) or {}).get(spec.name)
                values[spec.name] = override.value if override is not None else spec.default
                continue
            self.declare_parameter(spec.name, spec.default, descriptor(spec))
            values[spec.name] = self.get_parameter(spec.name).value
        self._warn_unknown_overrides()
        settings = NodeSettings.defaults().updated(values)
        validate_settings(settings)  # a bad start-up configuration fails loudly (main exits 1)
        self._settings = settings  # the accepted values (what the parameter server holds)
        self._pending: tuple[NodeSettings, DadaSolver | None] | None = None
        self._active = settings
        self.pipeline = FramePipeline(self._build_solver(settings), settings.warm_config(),
                                      settings.output_range_config())
        self._note_guard_caveat(self.pipeline.solver, settings.weights)
        self._apply_threads(settings)
        self.stats.set_rate(settings.expected_rate)

        # cv_bridge / sensor_msgs_py when importable, the in-package conversions otherwise
        self.images = ImageCodec(Image, warn=lambda text: self._warn_once("image_backend", text))
        self.clouds = CloudPacker(PointCloud2, PointField, warn=lambda text: self._warn_once("pointcloud_backend", text))

        # Outputs: REP-2003 (system default, reliable): a reliable publisher serves reliable AND
        # best-effort subscribers; the standard qos_overrides.* parameters apply.
        out_qos = _qos(settings.output_qos_reliability, 5)
        overrides = QoSOverridingOptions.with_default_policies
        self.pub_depth = self.create_publisher(Image, OUTPUT_TOPICS["depth"], out_qos, qos_overriding_options=overrides())
        self.pub_info = self.create_publisher(CameraInfo, OUTPUT_TOPICS["camera_info"], out_qos,
                                              qos_overriding_options=overrides())
        self.pub_points = self.create_publisher(PointCloud2, OUTPUT_TOPICS["points"], out_qos,
                                                qos_overriding_options=overrides())
        self.sync = Synchronizer(3, settings.queue_size, settings.slop, self._on_synced, self._on_time_jump,
                                 jump_tolerance=settings.jump_tolerance, on_drop=self._on_sync_drop)
        self.stats.queued = lambda: dict(zip(INPUT_KEYS, self.sync.queued()))
        given = getattr(self, "_parameter_overrides", {}) or {}
        self.inputs: dict[str, AdaptiveSubscription] = {}
        for key, cls, cb in (("rgb", Image, self._on_rgb), ("camera_info", CameraInfo, self._on_info),
                             ("depth", Image, self._on_depth)):
            override = f"qos_overrides.{self.resolve_topic_name(INPUT_TOPICS[key])}.subscription.reliability"
            self.inputs[key] = AdaptiveSubscription(
                self, cls, INPUT_TOPICS[key], cb, settings.qos_reliability,
                make_qos=lambda rel, depth: _qos(rel, depth or settings.qos_depth),
                events=functools.partial(_incompatible_qos_callbacks, self, key),
                on_switch=self._on_qos_switch, on_duplicate=lambda: self.stats.count("qos_handover_duplicate"),
                overriding_options=overrides(), fixed_by_override=override in given)
        self._qos_timer = self.create_timer(QOS_POLL_S, self._poll_qos)
        self._diag = Diagnostics(self.stats, loss_warn_fraction=settings.loss_warn_fraction, extra={
            "input": lambda: {**self.images.diagnostics(), "sync_backend": self.sync.backend,
                              "qos_reliability": settings.qos_reliability, "qos_depth": settings.qos_depth,
                              **{f"qos {k}": sub.describe() for k, sub in self.inputs.items()},
                              "qos_switches": sum(sub.switches for sub in self.inputs.values())},
            "output": lambda: {"image_backend": self.images.name, **self.clouds.diagnostics(),
                               "diagnostics_backend": self.diagnostics.backend},
        })
        self.diagnostics = DiagnosticsPublisher(self, self._diag, settings.diagnostics_period)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        # Compile / load every kernel before saying "ready": the first frame must not pay for it.
        warm_s = self.pipeline.warm_up()
        self._slot = LatestSlot()
        self._running = True
        self._worker = threading.Thread(target=self._work, name="dada_upsample_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"ready: method {settings.method} on {self.pipeline.solver.device}, warm start {settings.warm_start}, "
            f"sync {self.sync.backend} (queue {settings.queue_size}, slop {settings.slop} s), "
            f"diagnostics {self.diagnostics.backend}, images {self.images.name}, point clouds {self.clouds.name}, "
            f"input QoS {settings.qos_reliability}, output QoS {settings.output_qos_reliability}, "
            f"kernels warmed up in {warm_s:.2f} s, malloc tuning {self._malloc}; "
            f"inputs {', '.join(self.resolve_topic_name(t) for t in INPUT_TOPICS.values())}")
        for kind, backend in (("images", self.images), ("point clouds", self.clouds)):
            if backend.note and backend.name == "dada_ros":
                self.get_logger().info(f"{kind}: in-package conversion ({backend.note})")

    # ---------------------------------------------------------------- logging and counting
    def _log(self, key: str, text: str, level: str = "warn") -> None:
        """Log at most once per LOG_THROTTLE_S per ``key`` (per reason, unlike call-site throttling)."""
        now = time.monotonic()
        if now - self._log_times.get(key, -1e9) >= LOG_THROTTLE_S:
            self._log_times[key] = now
            # One call site per severity: rclpy refuses a severity change at the same call site.
            if level == "error":
                self.get_logger().error(text)
            else:
                self.get_logger().warn(text)

    def _reject(self, reason: str, text: str) -> None:
        n = self.stats.count(reason)
        self._log(reason, f"{text} -- dropped [{reason}: {n} so far]")

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned_once:
            self._warned_once.add(key)
            self.get_logger().warn(text)

    def _warn_unknown_overrides(self) -> None:
        # rclpy silently ignores overrides of undeclared names; a typo in the YAML deserves a word.
        overrides = getattr(self, "_parameter_overrides", {}) or {}
        known = set(PARAMS_BY_NAME) | {"use_sim_time", "start_type_description_service"}
        for name in overrides:
            if name not in known and not name.startswith(("qos_overrides.", "diagnostic_updater.")):
                self.get_logger().warn(f"unknown parameter {name!r} ignored (see config/upsample.yaml)")

    # ---------------------------------------------------------------- solver construction
    def _build_solver(self, s: NodeSettings) -> DadaSolver:
        """make_solver for ``s``; CUDA requested but absent -> CPU with one warning."""
        device = s.device
        if device.startswith("cuda") and not torch.cuda.is_available():
            self._warn_once("cuda", f"device {device!r} requested but torch sees no CUDA GPU: falling back to CPU")
            self.stats.count("cuda_unavailable")
            self.stats.notes["device"] = f"{device} requested but absent: running on CPU"
            device = "cpu"
        else:
            if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
                raise DadaInputError(f"device {device!r}: torch sees only {torch.cuda.device_count()} CUDA GPU(s)")
            self.stats.notes.pop("device", None)
        return make_solver(s.method, s.solver_config(device), kappa=s.kappa, form=s.coefficient_form,
                           weights=s.weights or None, guard=s.guard_config())

    def _note_guard_caveat(self, solver, weights: str) -> None:
        """When a solver becomes the running one: if its guard is no protection (self-supervised
        weights), say so once in the log and keep a standing /diagnostics note while it runs."""
        caveat = getattr(solver, "caveat", "")
        if caveat:
            self._warn_once(f"guard caveat {weights}", f"learned_guard: {caveat}")
            self.stats.notes["learned_guard"] = caveat
        else:
            self.stats.notes.pop("learned_guard", None)

    @staticmethod
    def _apply_threads(s: NodeSettings) -> None:
        if s.torch_threads > 0 and torch.get_num_threads() != s.torch_threads:
            torch.set_num_threads(s.torch_threads)

    def _on_set_parameters(self, params: list) -> SetParametersResult:
        """Validate a (possibly multi-parameter) change as a whole; refuse with the reason."""
        values = {p.name: p.value for p in params if p.name in PARAMS_BY_NAME}
        if not values:
            return SetParametersResult(successful=True)
        try:
            new = self._settings.updated(values)
            validate_settings(new)
            solver = self._build_solver(new) if new.solver_changed(self._settings) else None
            self.sync.set_params(new.queue_size, new.slop, new.jump_tolerance)
        except (DadaInputError, ValueError, TypeError) as exc:
            self.get_logger().warn(f"refused parameter change {values}: {exc}")
            return SetParametersResult(successful=False, reason=str(exc))
        except Exception as exc:  # noqa: BLE001 - e.g. a corrupt weights file inside the model loader
            self.get_logger().warn(f"refused parameter change {values}: {exc!r}")
            return SetParametersResult(successful=False, reason=f"{type(exc).__name__}: {exc}")
        with self._lock:
            prev_solver = self._pending[1] if self._pending else None
            self._pending = (new, solver or prev_solver)
        self._settings = new
        self.stats.set_rate(new.expected_rate)
        self._diag.loss_warn_fraction = new.loss_warn_fraction
        self.get_logger().info(f"parameters changed {values}: applied from the next frame")
        return SetParametersResult(successful=True)

    def _take_pending(self) -> NodeSettings:
        """Apply accepted parameter changes (worker thread, between frames)."""
        with self._lock:
            pending, self._pending = self._pending, None
            reset, self._reset_requested = self._reset_requested, False
        if pending is not None:
            settings, solver = pending
            if solver is not None:  # new solver: cold start, its kernels warmed before its first frame
                self.pipeline = FramePipeline(solver, settings.warm_config(), settings.output_range_config())
                self._note_guard_caveat(solver, settings.weights)
                self.pipeline.warm_up()
            else:
                self.pipeline.warm = settings.warm_config()
                self.pipeline.output_range = settings.output_range_config()
            self._apply_threads(settings)
            self._active = settings
        if reset:
            self.pipeline.reset()
            self._last_stamp = None
        return self._active

    # ---------------------------------------------------------------- input callbacks
    def _decode(self, kind: str, msg: Any) -> Decoded | None:
        """Count the message and run the node's checks (:mod:`.frame_checks`); None = dropped."""
        self.stats.message(kind)
        t0 = time.perf_counter()
        try:
            decoded = decode_input(kind, msg, self.images, on_inf_or_negative=self._on_inf_or_negative,
                                   on_out_of_range=self._on_out_of_range)
        except cv.ConversionError as exc:
            self.stats.drop_message(kind, exc.reason)
            self._reject(exc.reason, f"{INPUT_LABELS[kind]} on {INPUT_TOPICS[kind]}: {exc}")
            return None
        decoded.decode_ms = 1000 * (time.perf_counter() - t0)
        return decoded

    @_guarded("rgb")
    def _on_rgb(self, msg: Image) -> None:
        decoded = self._decode("rgb", msg)
        if decoded is not None:
            self._hand(0, decoded)

    @_guarded("camera_info")
    def _on_info(self, msg: CameraInfo) -> None:
        decoded = self._decode("camera_info", msg)
        if decoded is not None:
            self._last_info_time = time.monotonic()
            self._hand(1, decoded)

    @_guarded("depth")
    def _on_depth(self, msg: Image) -> None:
        decoded = self._decode("depth", msg)
        if decoded is None:
            return
        last_info = self._last_info_time
        if last_info is None or time.monotonic() - last_info > CAMERA_INFO_TIMEOUT_S:
            self.stats.count("camera_info_missing")
            self._log("camera_info_missing", f"no valid camera_info on {self.resolve_topic_name(INPUT_TOPICS['camera_info'])} "
                      "for depth frames: nothing can be synced or projected [camera_info_missing]")
        self._hand(2, decoded)

    def _hand(self, index: int, decoded: Decoded) -> None:
        """Into the synchroniser: from here its fate is the synchroniser's / the worker's (an
        exception before it got there leaves the fate to the callback guard)."""
        self.sync.add(index, decoded)
        self._tls.handed = True

    def _on_sync_drop(self, index: int, reason: str) -> None:
        self.stats.drop_message(INPUT_KEYS[index], reason)

    def _on_out_of_range(self, n_bad: int) -> None:
        # Not fatal either: such pixels are invalid (see conversions.DEPTH_MIN_M / DEPTH_MAX_M).
        n = self.stats.count("depth_out_of_range")
        self._log("depth_out_of_range", f"depth image has {n_bad} pixels outside {cv.DEPTH_MIN_M:g}..{cv.DEPTH_MAX_M:g} m, "
                  f"treated as invalid [depth_out_of_range: {n} frames so far]")

    def _on_incompatible_qos(self, key: str, event: Any) -> None:
        sub = self.inputs.get(key)
        policy = getattr(event, "last_policy_kind", "?")
        topic = self.resolve_topic_name(INPUT_TOPICS[key])
        if sub is not None and sub.mode == "auto":
            # not a fault: the next look at the graph follows the new publisher
            self.get_logger().info(f"a publisher on {topic} is incompatible with the {sub.reliability} "
                                   f"subscription ({policy}): adapting (qos_reliability auto)")
            return
        n = self.stats.count("qos_incompatible")
        rel = sub.reliability if sub is not None else self._settings.qos_reliability
        text = (f"the {INPUT_LABELS[key]} subscription ({rel}) cannot match a publisher on "
                f"{topic} (incompatible QoS policy {policy}): it receives NOTHING from it. "
                "qos_reliability: auto (the default) follows the publishers; best_effort hears any publisher "
                f"[qos_incompatible: {n}]")
        self.stats.notes[f"qos {key}"] = f"{key}: incompatible publisher QoS ({policy})"
        self._log(f"qos_incompatible {key}", text)

    def _on_qos_switch(self, topic: str, old: str | None, new: str, why: str) -> None:
        self.get_logger().info(f"input {self.resolve_topic_name(topic)}: subscription reliability {old} -> {new} "
                               f"({why}; qos_reliability auto)")

    def _poll_qos(self) -> None:
        """Timer (executor thread): follow the input topics' publishers (qos_reliability auto)."""
        for sub in self.inputs.values():
            try:
                sub.reevaluate()
            except Exception as exc:  # noqa: BLE001 - a graph query failing must not stop the node
                self._log("qos_poll", f"could not look up the publishers of {sub.topic}: {exc!r}")

    def _on_inf_or_negative(self, n_bad: int) -> None:
        # Not fatal: such pixels are simply invalid, but a driver that sends them is odd.
        n = self.stats.count("depth_inf_or_negative")
        self._log("depth_inf_or_negative", f"depth image has {n_bad} inf/negative pixels, "
                  f"treated as invalid [depth_inf_or_negative: {n} frames so far]")

    def _on_time_jump(self, reason: str) -> None:
        n = self.stats.count("time_jump")
        self.get_logger().warn(f"time went backwards ({reason}; bag loop or simulator reset?): sync queues "
                               f"cleared, warm start reset [time_jump: {n}]")
        with self._lock:
            self._reset_requested = True

    def _on_synced(self, rgb: Decoded, info: Decoded, depth: Decoded) -> None:
        self._tls.handed = True  # the message being added is in this set now, whatever follows
        self.stats.synced()
        self.stats.set_entered()
        if self._slot.put((rgb, info, depth)):
            self.stats.count("dropped_stale")
            self.stats.drop_set("stale")

    # ---------------------------------------------------------------- worker
    def _work(self) -> None:
        while self._running:
            item = self._slot.take(timeout=0.2)
            if item is None:
                continue
            try:
                self._process(*item)
            except DadaInputError as exc:
                reason = getattr(exc, "reason", "solver_input_error")
                self.stats.drop_set(reason)
                self._reject(reason, f"frame refused by the solver: {exc}")
            except Exception as exc:  # noqa: BLE001 - the node must survive anything one frame does
                self.stats.drop_set("solver_exception")
                n = self.stats.count("solver_exception")
                try:
                    self._log("solver_exception", f"exception while processing a frame [solver_exception: {n}]: "
                              f"{exc!r}\n{traceback.format_exc()}", level="error")
                except Exception:  # noqa: BLE001 - not even a logging failure may stop the worker
                    pass

    def _process(self, rgb: Decoded, info: Decoded, depth: Decoded) -> None:
        t0 = time.perf_counter()
        s = self._take_pending()
        set_numba_threads(s.torch_threads)  # per thread in numba: set here, in the worker
        # stamp -> worker start: DDS transport, decoding (in the callbacks), sync and queueing
        waited_ms = 1e-6 * (self.get_clock().now().nanoseconds - cv.stamp_to_nanoseconds(rgb.header.stamp))
        refused = check_frame(rgb, info, depth)
        if refused is not None:
            self.stats.drop_set(refused[0])
            self._reject(*refused)
            return
        self._check_frame_ids(rgb, info, depth)

        stamp = self._pipeline_stamp(cv.stamp_to_seconds(rgb.header.stamp), s.jump_tolerance)
        result = self.pipeline.process(rgb.array, depth.array, stamp)
        if not np.isfinite(result.depth).any():
            # nothing to publish (e.g. every pixel beyond max_fill_distance): a counted refusal,
            # never a silent all-NaN frame
            self.stats.drop_set("invalid_output")
            self._reject("invalid_output", "frame has no valid output pixel")
            return
        stages = latency_stages(result.stats, waited_ms, rgb.decode_ms + info.decode_ms + depth.decode_ms)
        self._publish(s, rgb, info, result.depth, t0, result.stats, stages)

    def _pipeline_stamp(self, stamp: float, tolerance: float) -> float:
        """The stamp the pipeline sees: a set older than the last processed one by no more than
        ``tolerance`` (stamp jitter, reordering: approximate-time output may go back a little)
        gets a stamp just after it, so the warm start is kept; a real jump back (beyond the
        tolerance; the synchroniser has also requested a reset) passes unchanged and the
        pipeline resets."""
        last = self._last_stamp
        if last is not None and last - tolerance <= stamp <= last:
            stamp = last + 1e-6
        self._last_stamp = stamp
        return stamp

    def _check_frame_ids(self, rgb: Decoded, info: Decoded, depth: Decoded) -> None:
        ids = frame_id_mismatch(rgb, info, depth)
        if ids is not None:
            self.stats.count("frame_id_mismatch")
            self._warn_once(f"frame_id {ids}", f"frame_id mismatch rgb {ids[0]!r}, camera_info {ids[1]!r}, "
                            f"depth {ids[2]!r}: depth must be registered to the rgb optical frame; publishing "
                            f"in {ids[0]!r} (warned once) [frame_id_mismatch]")

    def _publish(self, s: NodeSettings, rgb: Decoded, info: Decoded, depth_m: np.ndarray, t0: float,
                 stats: dict, stages: dict[str, float]) -> None:
        header = rgb.msg.header  # the output is on the rgb grid, at the rgb stamp
        t_out = time.perf_counter()
        self.pub_depth.publish(self.images.depth_message(depth_m, s.output_encoding, header))
        latency = (self.get_clock().now().nanoseconds - cv.stamp_to_nanoseconds(header.stamp)) * 1e-9
        info_out = info.msg
        info_out.header = header
        if (info_out.width, info_out.height) == (0, 0):
            info_out.width, info_out.height = depth_m.shape[1], depth_m.shape[0]
        self.pub_info.publish(info_out)
        t_cloud = time.perf_counter()
        if s.publish_points and self.pub_points.get_subscription_count() > 0:
            self.pub_points.publish(self.clouds.cloud(header, depth_m, info.intr, rgb.array if s.points_rgb else None,
                                                      s.points_decimation, s.points_organized))
        t_end = time.perf_counter()
        # The cloud goes out after the depth image: its time is not in the depth's latency.
        stages.update(t_depth_out_ms=1000 * (t_cloud - t_out), t_cloud_ms=1000 * (t_end - t_cloud))
        frame = {k: stats.get(k) for k in ("init_mode", "cold_reason", "iterations", "residual", "converged",
                                           "flow_ms", "mean_flow_px", "flow_tier", "warm_valid_fraction", "scale", "filled_fraction", "device",
                                           "range_outliers", "range_worst", "accept_ms", "warm_region_fraction",
                                           "solve_ms", "warm_declined_in_row", "guard", "prepare_overlapped",
                                           "prepare_wait_ms")}
        frame.update(method=s.method, frame_ms=1000 * (t_end - t0), numba_threads=numba_threads(), **stages)
        self.stats.published(latency, frame)

    # ---------------------------------------------------------------- shutdown
    def destroy_node(self) -> None:
        self._running = False
        if hasattr(self, "_slot"):
            self._slot.close()
            self._worker.join(timeout=30.0)
            self._close_accounting()
        super().destroy_node()

    def _close_accounting(self) -> None:
        """At shutdown: what is still queued is dropped (``shutdown``), a set still waiting for
        the worker too, and the per-topic balance goes to the log once."""
        try:
            self.sync.flush("shutdown")
            if self._slot.take(0.0) is not None:
                self.stats.drop_set("shutdown")
            bal = self.stats.balance()
            with self.stats.lock:
                dropped = {t: dict(d) for t, d in self.stats.ledger.dropped.items()}
            parts = [f"{t}: received {b['received']}, published {b['published']}, dropped "
                     f"{sum(dropped[t].values())} {dropped[t] or ''}, uncounted {b['uncounted']}" for t, b in bal.items()]
            self.get_logger().info("accounting at shutdown -- " + "; ".join(parts))
        except Exception:  # noqa: BLE001 - shutdown must not fail on a report
            pass


def _incompatible_qos_callbacks(node: UpsampleNode, key: str) -> Any:
    """SubscriptionEventCallbacks reporting an incompatible publisher (None where this rclpy
    has no QoS events: the subscription is then created without them)."""
    try:
        from rclpy.event_handler import SubscriptionEventCallbacks  # noqa: PLC0415
    except ImportError:  # pragma: no cover - rclpy before Iron
        try:
            from rclpy.qos_event import SubscriptionEventCallbacks  # noqa: PLC0415
        except ImportError:
            return None
    return SubscriptionEventCallbacks(incompatible_qos=lambda event: node._on_incompatible_qos(key, event))


def latency_stages(stats: dict, waited_ms: float, decode_ms: float) -> dict[str, float]:
    """Where a frame's time went before publishing (ms), from the pipeline's stats:
    ``t_input`` (stamp -> worker: transport, sync, queue; ``t_decode`` of it is decoding),
    ``t_align`` (warm-start optical flow + warp + acceptance test), ``t_features`` (guide features, coefficients,
    initialisation; with ``overlap_prepare`` only the part the alignment did not hide), ``t_loop`` (the diffusion-adjustment iterations) and ``t_other`` (the rest of
    the pipeline's bookkeeping: the output range, the young-pixel crops when enabled). The node
    adds ``t_depth_out`` and ``t_cloud`` when publishing."""
    solve = 1000 * float(stats.get("seconds", 0.0))
    loop = 1000 * float(stats.get("loop_seconds", 0.0))
    align = float(stats.get("flow_ms") or 0.0) + float(stats.get("accept_ms") or 0.0)
    frame = 1000 * float(stats.get("frame_seconds", 0.0))
    return {"t_input_ms": waited_ms, "t_decode_ms": decode_ms, "t_align_ms": align,
            "t_features_ms": max(0.0, solve - loop), "t_loop_ms": loop,
            "t_other_ms": max(0.0, frame - solve - align)}


def main(args: list[str] | None = None) -> int:
    """Console script ``upsample_node`` (``ros2 run dada_ros upsample_node``)."""
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor  # noqa: PLC0415

    from .transport_profile import apply_default_profile  # noqa: PLC0415

    profile_note = apply_default_profile()  # before the process's first DDS participant
    rclpy.init(args=args)
    try:
        node = UpsampleNode()
    except (DadaInputError, ValueError, ParameterException) as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"invalid configuration: {exc}")
        rclpy.try_shutdown()
        return 1
    node.get_logger().info("Fast DDS: " + (profile_note or "the package's large-data profile (64 MB shared-memory "
                                                         "segment: best-effort subscribers of large outputs lose nothing)"))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
