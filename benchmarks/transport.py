"""What the node receives under each QoS pairing: frames in / out / counted, per image size and rate.

A publisher in ANOTHER process (``python -m dada_ros.ros.fake_camera``: real DDS between
processes, as with a camera driver) sends
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


def run_pairing(size: str, rate: float, pub_qos: str, sub_qos: str, seconds: float, qos_depth: int,
                listen: str = "none", out_qos: str = "reliable") -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from dada_ros.ros.node import UpsampleNode

    ns = "/tr" + uuid.uuid4().hex[:8]
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    params = {"qos_reliability": sub_qos, "qos_depth": qos_depth, "output_qos_reliability": out_qos, "max_iterations": 20, "warm_start": "off", "torch_threads": 1,
              "device": "cpu", "publish_points": False}
    node = UpsampleNode(context=ctx, namespace=ns, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    proc = subprocess.run([sys.executable, "-m", "dada_ros.ros.fake_camera", "--ns", ns, "--size", size,
                           "--rate", str(rate), "--qos", pub_qos, "--seconds", str(seconds), "--listen", listen],
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
    return {"size": size, "rate": rate, "pub": pub_qos, "sub": sub_qos, "qos_depth": qos_depth, "sent": sent["sent"],
            "matched": sent["matched"], "listen": listen, "answered": sent.get("answered", -1), "balance": bal, "qos_incompatible": counters.get("qos_incompatible", 0)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="publishing time per pairing")
    ap.add_argument("--sizes", default="640x480,1280x720")
    ap.add_argument("--rates", default="5,30")
    ap.add_argument("--publishers", default="reliable,best_effort", help="publisher reliabilities to run")
    ap.add_argument("--subscriptions", default="reliable,best_effort", help="node qos_reliability values to run")
    ap.add_argument("--qos-depths", default="", help="node qos_depth values to run (default: the node's default)")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    from dada_ros.ros.parameters import PARAMS_BY_NAME

    depths = [int(d) for d in args.qos_depths.split(",")] if args.qos_depths else [PARAMS_BY_NAME["qos_depth"].default]
    rows = []
    print(f"{'size':>9} {'Hz':>3} {'publisher':>11} {'node sub':>11} {'depth':>5} {'match':>5} {'sent':>4} {'rgb in':>6} "
          f"{'info in':>7} {'depth in':>8} {'out':>4} {'counted':>7} {'pending':>7} {'uncounted':>9}", flush=True)
    for size in args.sizes.split(","):
        for rate in (float(r) for r in args.rates.split(",")):
            for pub, sub, depth in ((p, q, d) for p in args.publishers.split(",") for q in args.subscriptions.split(",")
                                    for d in depths):
                    r = run_pairing(size, rate, pub, sub, args.seconds, depth)
                    rows.append(r)
                    b = r["balance"]
                    counted = sum(b[t]["dropped"] for t in b)
                    print(f"{size:>9} {rate:3.0f} {pub:>11} {sub:>11} {depth:5d} {'yes' if r['matched'] else 'NO':>5} {r['sent']:4d} "
                          f"{b['rgb']['received']:6d} {b['camera_info']['received']:7d} {b['depth']['received']:8d} "
                          f"{b['rgb']['published']:4d} {counted:7d} {sum(b[t]['pending'] for t in b):7d} "
                          f"{sum(b[t]['uncounted'] for t in b):9d}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
