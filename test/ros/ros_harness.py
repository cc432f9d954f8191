"""Helpers for the node tests: synthetic frames as real sensor_msgs, and a harness that runs the
node and a tester node on a real rclpy executor (real DDS pub/sub, no mocks).

Tests run in their own ROS domain (pid-based unless DADA_TEST_DOMAIN_ID is set) and discover
on localhost only, so parallel test runs on one machine do not hear each other.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Any, Callable

import numpy as np

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
DOMAIN_ID = int(os.environ.get("DADA_TEST_DOMAIN_ID", 100 + os.getpid() % 100))

import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from dada_ros.core.sequences import Frame, SequenceConfig, make_sequence  # noqa: E402
from dada_ros.ros import conversions as cv  # noqa: E402
from dada_ros.ros.node import INPUT_TOPICS, OUTPUT_TOPICS, UpsampleNode  # noqa: E402

GUIDE = (48, 64)  # (H, W): small on purpose, the CPU is shared
SOURCE = (12, 16)
# Fast solver settings for tests: a cold frame stops after at most 300 steps.
TEST_PARAMS = {"max_iterations": 300, "warm_iterations": 20, "torch_threads": 1, "warm_start": "flow",
               "qos_reliability": "reliable", "qos_depth": 1000, "output_qos_reliability": "reliable",
               "diagnostic_updater.period": 0.2}
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def make_frames(n: int, seed: int = 3) -> list[Frame]:
    cfg = SequenceConfig(seed=seed, size=GUIDE, source_shape=SOURCE, plan=(("pan", n),), tof=None, pan_step=0.02)
    return list(make_sequence(cfg))


def header(stamp_ns: int, frame_id: str = "cam_optical") -> Header:
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = stamp_ns // 10**9, stamp_ns % 10**9
    return h


def image(array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str = "cam_optical") -> Image:
    return cv.build_message(Image, header=header(stamp_ns, frame_id), **cv.image_fields(array, encoding))


def camera_info(K: np.ndarray, size: tuple[int, int], stamp_ns: int, frame_id: str = "cam_optical") -> CameraInfo:
    msg = CameraInfo(header=header(stamp_ns, frame_id), width=size[1], height=size[0], distortion_model="plumb_bob")
    msg.k = np.asarray(K, dtype=np.float64).reshape(9)
    msg.p = np.hstack([np.asarray(K, dtype=np.float64), np.zeros((3, 1))]).reshape(12)
    msg.r = np.eye(3).reshape(9)
    msg.d = np.zeros(5)
    return msg


def triple(frame: Frame, stamp_ns: int, depth_encoding: str = "32FC1", frame_id: str = "cam_optical") -> tuple:
    """(rgb, camera_info, depth) messages of one synthetic frame."""
    src = frame.source
    depth = cv.metres_to_depth_array(src, depth_encoding)
    return (image(frame.rgb, "rgb8", stamp_ns, frame_id), camera_info(frame.K_rgb, GUIDE, stamp_ns, frame_id),
            image(depth, depth_encoding, stamp_ns, frame_id))


class Harness:
    """The node under test plus a tester node (publishers of the inputs, subscribers of the
    outputs), spun by one executor in a background thread."""

    def __init__(self, context: Any, overrides: dict | None = None):
        params = dict(TEST_PARAMS)
        params.update(overrides or {})
        self.ns = "/t" + uuid.uuid4().hex[:10]
        self.context = context
        self.node = UpsampleNode(context=context, namespace=self.ns,
                                 parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        self.tester = rclpy.create_node("tester", namespace=self.ns, context=context)
        self.pubs = {k: self.tester.create_publisher(CameraInfo if k == "camera_info" else Image, t, RELIABLE)
                     for k, t in INPUT_TOPICS.items()}
        self.received: dict[str, list] = {k: [] for k in OUTPUT_TOPICS}
        self.diagnostics: list = []
        for k, t in OUTPUT_TOPICS.items():
            cls = {"depth": Image, "camera_info": CameraInfo, "points": PointCloud2}[k]
            self.tester.create_subscription(cls, t, lambda m, k=k: self.received[k].append(m), RELIABLE)
        from diagnostic_msgs.msg import DiagnosticArray

        self.tester.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.tester)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()
        assert self.wait(self._connected, 15.0), "publishers and subscribers did not discover each other"

    def _connected(self) -> bool:
        return (all(p.get_subscription_count() >= 1 for p in self.pubs.values())
                and self.node.pub_depth.get_subscription_count() >= 1
                and self.node.pub_points.get_subscription_count() >= 1
                and self.node.pub_info.get_subscription_count() >= 1)

    @staticmethod
    def wait(pred: Callable[[], bool], timeout: float = 20.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            time.sleep(0.01)
        return pred()

    def send(self, msgs: tuple, order: tuple[str, ...] = ("rgb", "camera_info", "depth")) -> None:
        by_key = dict(zip(("rgb", "camera_info", "depth"), msgs))
        for k in order:
            self.pubs[k].publish(by_key[k])

    def send_and_wait(self, msgs: tuple, timeout: float = 30.0) -> bool:
        """Send a triple; wait for its output AND for the node to have recorded the frame's stats
        (the subscriber can see the image before the worker has finished publishing)."""
        n = len(self.received["depth"])
        done = self.node.stats.outputs.count
        self.send(msgs)
        return self.wait(lambda: len(self.received["depth"]) > n and self.node.stats.outputs.count > done, timeout)

    def counter(self, reason: str) -> int:
        return self.node.stats.snapshot().get(reason, 0)

    def set_parameters(self, values: dict) -> list:
        """Call the node's real SetParameters service; returns the SetParametersResult list."""
        from rcl_interfaces.srv import SetParameters

        client = self.tester.create_client(SetParameters, f"{self.ns}/dada_upsample/set_parameters")
        assert client.wait_for_service(timeout_sec=10.0)
        req = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        fut = client.call_async(req)
        assert self.wait(fut.done, 15.0), "SetParameters timed out"
        self.tester.destroy_client(client)
        return list(fut.result().results)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self._thread.join(timeout=5.0)
        self.node.destroy_node()
        self.tester.destroy_node()


def init_context() -> Any:
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    return ctx
