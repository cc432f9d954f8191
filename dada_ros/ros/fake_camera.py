"""A driver-like publisher of rgb8 images, camera_info and x8 low-res 32FC1 depth (one stamp per
frame, a fixed rate, reliable or best-effort QoS, KEEP_LAST 10 like most camera drivers), for
measuring what the node receives across processes (benchmarks/transport.py, the QoS tests).

    python -m dada_ros.ros.fake_camera --ns /cam --size 640x480 --rate 30 --qos best_effort --seconds 3

Waits up to ``--wait`` seconds for a subscriber on every topic (an incompatible subscriber never
appears), publishes, then prints one JSON line: ``{"sent": frames, "matched": bool}`` (with ``--listen``
also ``"answered"``: how many of its stamps came back on ``depth_upsampled/image_rect``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

import numpy as np

RELIABILITIES = ("reliable", "best_effort")


def qos_profile(reliability: str, depth: int = 10):
    """KEEP_LAST ``depth``, volatile, ``reliability`` (reliable | best_effort)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    rel = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=rel,
                      durability=DurabilityPolicy.VOLATILE)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ns", default="/")
    ap.add_argument("--size", default="640x480", help="WxH of the rgb image (depth is W/8 x H/8)")
    ap.add_argument("--rate", type=float, default=5.0)
    ap.add_argument("--qos", default="reliable", choices=RELIABILITIES)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--wait", type=float, default=10.0, help="seconds to wait for subscribers")
    ap.add_argument("--listen", default="none", choices=RELIABILITIES + ("none",),
                    help="also subscribe to the node's depth output with this reliability and report "
                         "the stamps answered (a downstream consumer such as RViz)")
    ap.add_argument("--linger", type=float, default=3.0, help="seconds to wait for the last answers")
    args = ap.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header

    from dada_ros.ros import conversions as cv

    W, H = (int(v) for v in args.size.split("x"))
    rclpy.init()
    node = rclpy.create_node("fake_camera", namespace=args.ns)
    qos = qos_profile(args.qos)
    pubs = {"rgb": node.create_publisher(Image, "rgb/image_rect_color", qos),
            "camera_info": node.create_publisher(CameraInfo, "rgb/camera_info", qos),
            "depth": node.create_publisher(Image, "depth/image_rect", qos)}
    answered: set[int] = set()
    listener = executor = spinner = None
    if args.listen != "none":
        from rclpy.executors import SingleThreadedExecutor

        listener = node.create_subscription(
            Image, "depth_upsampled/image_rect",
            lambda m: answered.add(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec), qos_profile(args.listen))
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline and not (
            all(p.get_subscription_count() for p in pubs.values())
            and (listener is None or node.count_publishers(listener.topic_name) > 0)):
        time.sleep(0.05)
    matched = all(p.get_subscription_count() for p in pubs.values())
    time.sleep(0.3)  # let the match settle on both sides
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    depth = (1.0 + rng.random((H // 8, W // 8))).astype(np.float32)
    n = int(round(args.seconds * args.rate))
    t_next = time.monotonic()
    stamps = []
    for _ in range(n):
        stamp = node.get_clock().now().nanoseconds
        stamps.append(stamp)
        h = Header(frame_id="cam")
        h.stamp.sec, h.stamp.nanosec = stamp // 10**9, stamp % 10**9
        info = CameraInfo(header=h, width=W, height=H, distortion_model="plumb_bob")
        info.k = np.array([W, 0, W / 2, 0, W, H / 2, 0, 0, 1], np.float64)
        pubs["rgb"].publish(cv.build_message(Image, header=h, **cv.image_fields(rgb, "rgb8")))
        pubs["camera_info"].publish(info)
        pubs["depth"].publish(cv.build_message(Image, header=h, **cv.image_fields(depth, "32FC1")))
        t_next += 1.0 / args.rate
        time.sleep(max(0.0, t_next - time.monotonic()))
    time.sleep(0.5)  # reliable: give retransmissions their time before the writer goes
    report = {"sent": n, "matched": matched}
    if listener is not None:
        end = time.monotonic() + args.linger
        while time.monotonic() < end and not set(stamps) <= set(answered):
            time.sleep(0.05)
        report["answered"] = len(set(stamps) & set(answered))
    print(json.dumps(report), flush=True)
    if executor is not None:  # stop spinning before the context goes (else: abort at exit)
        executor.shutdown(timeout_sec=5.0)
        spinner.join(timeout=5.0)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
