"""What the node receives under each QoS pairing: frames in / out / counted, per image size and rate.

A publisher in ANOTHER process (real DDS between processes, as with a camera driver) sends
rgb8 images, camera_info and x8 low-res 32FC1 depth with one stamp per frame at a fixed rate, with
reliable or best-effort QoS (KEEP_LAST 10, like most drivers). The real ``dada_upsample`` node runs
here with ``qos_reliability`` reliable or best_effort, cheap solver settings (the point is the
transport, not the solver: 20 cold steps, warm start off), and the table says, per pairing:

* sent: frames the publisher sent (per topic);
* rgb / info / depth in: messages the node received per topic;
* out: frames published; counted: messages with a counted fate other than being published
  (stale, unmatched, ...); pending: still queued at the end; uncounted: received - published -
  counted - pending (must be 0);
* matched: whether the subscription matched the publisher at all (a reliable subscription does not
  match a best-effort publisher: ROS 2 QoS compatibility; the node warns ``qos_incompatible``).

    python benchmarks/transport.py                 # 640x480 and 1280x720, 5 and 30 Hz, 3 s each
    python benchmarks/transport.py --seconds 5 --sizes 640x480 --rates 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 50))

import numpy as np  # noqa: E402

RELIABILITIES = ("reliable", "best_effort")


def _qos(reliability: str, depth: int = 10):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    rel = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=rel,
                      durability=DurabilityPolicy.VOLATILE)


def publisher(args: argparse.Namespace) -> int:
    """The driver-like publisher process: prints one JSON line with what it sent."""
    import rclpy
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header

    from dada_ros.ros import conversions as cv

    W, H = (int(v) for v in args.size.split("x"))
    rclpy.init()
    node = rclpy.create_node("fake_camera", namespace=args.ns)
    qos = _qos(args.pub_qos)
    pubs = {"rgb": node.create_publisher(Image, "rgb/image_rect_color", qos),
            "camera_info": node.create_publisher(CameraInfo, "rgb/camera_info", qos),
            "depth": node.create_publisher(Image, "depth/image_rect", qos)}
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and not all(p.get_subscription_count() for p in pubs.values()):
        time.sleep(0.05)
    matched = all(p.get_subscription_count() for p in pubs.values())
    time.sleep(0.3)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    depth = (1.0 + rng.random((H // 8, W // 8))).astype(np.float32)
    period = 1.0 / args.rate
    n = int(round(args.seconds * args.rate))
    t_next = time.monotonic()
    for i in range(n):
        stamp = node.get_clock().now().nanoseconds
        h = Header(frame_id="cam")
        h.stamp.sec, h.stamp.nanosec = stamp // 10**9, stamp % 10**9
        info = CameraInfo(header=h, width=W, height=H, distortion_model="plumb_bob")
        info.k = np.array([W, 0, W / 2, 0, W, H / 2, 0, 0, 1], np.float64)
        pubs["rgb"].publish(cv.build_message(Image, header=h, **cv.image_fields(rgb, "rgb8")))
        pubs["camera_info"].publish(info)
        pubs["depth"].publish(cv.build_message(Image, header=h, **cv.image_fields(depth, "32FC1")))
        t_next += period
        time.sleep(max(0.0, t_next - time.monotonic()))
    time.sleep(0.5)
    print(json.dumps({"sent": n, "matched": matched}), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


def run_pairing(size: str, rate: float, pub_qos: str, sub_qos: str, seconds: float) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from dada_ros.ros.node import UpsampleNode

    ns = "/tr" + uuid.uuid4().hex[:8]
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    params = {"qos_reliability": sub_qos, "max_iterations": 20, "warm_start": "off", "torch_threads": 1,
              "device": "cpu", "publish_points": False}
    node = UpsampleNode(context=ctx, namespace=ns, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    # compile / warm the solver first (numba JIT), so the first frame measures transport, not that
    node.pipeline.solver.solve(np.zeros((48, 64, 3), np.uint8), np.ones((6, 8), np.float32))
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--publisher", "--ns", ns, "--size", size,
                           "--rate", str(rate), "--pub-qos", pub_qos, "--seconds", str(seconds)],
                          capture_output=True, text=True, timeout=seconds + 60)
    time.sleep(1.0)  # let the worker finish the last frame
    try:
        sent = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        sent = {"sent": -1, "matched": False, "error": proc.stderr[-500:]}
    bal = node.stats.balance()
    counters = node.stats.snapshot()
    ex.shutdown(timeout_sec=5.0)
    th.join(5.0)
    node.destroy_node()
    rclpy.shutdown(context=ctx)
    return {"size": size, "rate": rate, "pub": pub_qos, "sub": sub_qos, "sent": sent["sent"],
            "matched": sent["matched"], "balance": bal, "qos_incompatible": counters.get("qos_incompatible", 0)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ns", default="/tr")
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--rate", type=float, default=5.0)
    ap.add_argument("--pub-qos", default="reliable", choices=RELIABILITIES)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--sizes", default="640x480,1280x720")
    ap.add_argument("--rates", default="5,30")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    if args.publisher:
        return publisher(args)
    rows = []
    print(f"{'size':>9} {'Hz':>3} {'publisher':>11} {'node sub':>11} {'match':>5} {'sent':>4} {'rgb in':>6} "
          f"{'info in':>7} {'depth in':>8} {'out':>4} {'counted':>7} {'pending':>7} {'uncounted':>9}", flush=True)
    for size in args.sizes.split(","):
        for rate in (float(r) for r in args.rates.split(",")):
            for pub in RELIABILITIES:
                for sub in RELIABILITIES:
                    r = run_pairing(size, rate, pub, sub, args.seconds)
                    rows.append(r)
                    b = r["balance"]
                    counted = sum(b[t]["dropped"] for t in b)
                    print(f"{size:>9} {rate:3.0f} {pub:>11} {sub:>11} {'yes' if r['matched'] else 'NO':>5} {r['sent']:4d} "
                          f"{b['rgb']['received']:6d} {b['camera_info']['received']:7d} {b['depth']['received']:8d} "
                          f"{b['rgb']['published']:4d} {counted:7d} {sum(b[t]['pending'] for t in b):7d} "
                          f"{sum(b[t]['uncounted'] for t in b):9d}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
