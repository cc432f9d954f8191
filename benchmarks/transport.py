"""What arrives under each QoS pairing: driver -> node -> downstream subscriber, frames counted.

A driver-like publisher in ANOTHER process (``python -m dada_ros.ros.fake_camera``: real DDS
between processes) sends rgb8 images, camera_info and x8 low-res 32FC1 depth with one stamp per
frame at a fixed rate, reliable or best-effort (KEEP_LAST 10, like most drivers), with Fast DDS's
defaults or with the package's profile (``--driver-profile``); in the same process a downstream
subscriber (reliable like RViz's default, or best-effort) listens to the node's depth output.
The real ``dada_upsample`` node runs here with its default QoS (``qos_reliability`` auto,
reliable outputs; other values with ``--subscriptions``), its process with the package's Fast DDS
profile as ``upsample_node`` has, and cheap solver settings (20 cold steps, warm start off: the
point is the transport). Per pairing:

* sent: frames the driver sent; rgb / depth in: messages the node received;
* out: frames the node published; answered: of the sent stamps, how many the downstream
  subscriber received;
* counted: messages with a counted fate other than being published (stale, unmatched, ...);
  pending: still queued at the end; uncounted: received - published - counted - pending (must be 0);
* match: whether the node's subscription matched the driver at all.

    python benchmarks/transport.py                          # 640x480 at 5 Hz, every pairing
    python benchmarks/transport.py --sizes 1280x720 --rates 5,30 --subscriptions auto,reliable,best_effort
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

from dada_ros.ros.transport_profile import PROFILE, apply_default_profile  # noqa: E402

RELIABILITIES = ("reliable", "best_effort")


def run_pairing(size: str, rate: float, pub_qos: str, sub_qos: str, seconds: float, qos_depth: int,
                listen: str = "none", out_qos: str = "reliable", driver_profile: bool = False) -> dict:
    """One pairing. ``listen``: the reliability of a downstream subscriber of the node's depth
    output in the driver's process ("none": no such subscriber); ``driver_profile``: the driver
    runs with the package's Fast DDS profile (else Fast DDS defaults). The node's process has
    the profile, as ``upsample_node`` does."""
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
    env = dict(os.environ)
    env.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)
    if driver_profile:
        env["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
    proc = subprocess.run([sys.executable, "-m", "dada_ros.ros.fake_camera", "--ns", ns, "--size", size,
                           "--rate", str(rate), "--qos", pub_qos, "--seconds", str(seconds), "--listen", listen],
                          capture_output=True, text=True, timeout=seconds + 60, env=env)
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
            "matched": sent["matched"], "listen": listen, "driver_profile": driver_profile, "answered": sent.get("answered", -1), "balance": bal, "qos_incompatible": counters.get("qos_incompatible", 0)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="publishing time per pairing")
    ap.add_argument("--sizes", default="640x480")
    ap.add_argument("--rates", default="5")
    ap.add_argument("--publishers", default="reliable,best_effort", help="publisher reliabilities to run")
    ap.add_argument("--subscriptions", default="auto", help="node qos_reliability values to run")
    ap.add_argument("--listeners", default="reliable,best_effort",
                    help="reliabilities of a downstream subscriber of the node's output (none: no subscriber)")
    ap.add_argument("--driver-profile", default="no,yes", help="driver with the package's Fast DDS profile: no,yes")
    ap.add_argument("--qos-depths", default="", help="node qos_depth values to run (default: the node's default)")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    from dada_ros.ros.parameters import PARAMS_BY_NAME

    depths = [int(d) for d in args.qos_depths.split(",")] if args.qos_depths else [PARAMS_BY_NAME["qos_depth"].default]
    rows = []
    print(f"node process Fast DDS: {apply_default_profile() or 'the package profile'}", flush=True)
    print("| size | Hz | publisher | driver profile | node sub | output subscriber | match | sent | rgb in | depth in | "
          "out | answered | counted | pending | uncounted |\n|" + "---|" * 15, flush=True)
    for size in args.sizes.split(","):
        for rate in (float(r) for r in args.rates.split(",")):
            for pub, sub, depth, listen, prof in ((p, q, d, ls, pr) for p in args.publishers.split(",")
                                                   for q in args.subscriptions.split(",") for d in depths
                                                   for ls in args.listeners.split(",")
                                                   for pr in args.driver_profile.split(",")):
                r = run_pairing(size, rate, pub, sub, args.seconds, depth, listen, driver_profile=prof == "yes")
                rows.append(r)
                b = r["balance"]
                counted = sum(b[t]["dropped"] for t in b)
                print(f"| {size} | {rate:.0f} | {pub} | {prof} | {sub} | {listen} | {'yes' if r['matched'] else 'NO'} | "
                      f"{r['sent']} | {b['rgb']['received']} | {b['depth']['received']} | {b['rgb']['published']} | "
                      f"{r['answered'] if r['answered'] >= 0 else '-'} | {counted} | {sum(b[t]['pending'] for t in b)} | "
                      f"{sum(b[t]['uncounted'] for t in b)} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
