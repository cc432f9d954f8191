"""Child process of ``dada-replay --realtime``: play a bag into the live node, record its outputs.

Run as ``python -m dada_ros.replay.realtime_player --spec SPEC.json`` (rclpy re-executes the
interpreter at import, so it lives in its own process and file). It

1. waits until the node subscribes to the three inputs (else exits 3 with one line on stderr);
2. publishes the bag's RGB, camera_info and depth messages as recorded (serialized bytes, original
   header stamps, like ``ros2 bag play``) at bag rate x ``rate``;
3. records everything the node publishes on its three outputs into an output bag (like
   ``ros2 bag record``) and the last ``/diagnostics`` message;
4. writes a timing JSON: wall time each RGB stamp was published, each output's stamp and arrival.

Progress goes to stdout as ``P <published frames>`` / ``R <received depth images>`` lines.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import threading
import time
from pathlib import Path


_PROGRESS_LOCK = threading.Lock()


def emit_progress(kind: str, n: int, stream=None) -> None:
    """Write one ``<kind> <n>`` progress line in a single write under a lock.

    The subscription thread ("R") and the publishing loop ("P") both report; ``print`` writes the
    text and its newline separately, so two threads could interleave them into ``P 12R 6``.
    """
    stream = sys.stdout if stream is None else stream
    with _PROGRESS_LOCK:
        stream.write(f"{kind} {int(n)}\n")
        stream.flush()


def cdr_header_stamp(data: bytes) -> int:
    """Header stamp (ns) of a serialized message whose first field is a std_msgs/Header."""
    little = data[1] in (1, 3)  # CDR_LE / PL_CDR_LE encapsulation
    sec, nsec = struct.unpack_from("<iI" if little else ">iI", data, 4)
    return sec * 1_000_000_000 + nsec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True, help="JSON: bag, inputs, outputs, out_bag, timing, rate, timeouts")
    spec = json.loads(Path(ap.parse_args(argv).spec).read_text())

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from dada_ros.replay.bag import BagReader, BagWriter
    from dada_ros.ros.names import NODE_NAME

    try:
        from diagnostic_msgs.msg import DiagnosticArray
    except ImportError:  # pragma: no cover - diagnostics are optional for the replay
        DiagnosticArray = None

    reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
    best_effort = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.BEST_EFFORT,
                             durability=DurabilityPolicy.VOLATILE)
    # A best-effort subscription receives from any publisher, but only best effort: match a node
    # launched with reliable outputs with a reliable subscription, so DDS loses nothing.
    out_qos = reliable if spec.get("output_reliability") == "reliable" else best_effort
    rclpy.init()
    node = rclpy.create_node("dada_replay_player")
    types = {"rgb": Image, "camera_info": CameraInfo, "depth": Image}
    out_types = {"depth": (Image, "sensor_msgs/msg/Image"), "camera_info": (CameraInfo, "sensor_msgs/msg/CameraInfo"),
                 "points": (PointCloud2, "sensor_msgs/msg/PointCloud2")}
    pubs = {k: node.create_publisher(types[k], spec["inputs"][k], reliable) for k in types}
    lock = threading.Lock()
    received: list[dict] = []
    diagnostics: dict = {}
    writer = BagWriter(spec["out_bag"], storage=spec.get("storage", "mcap"))
    writer.open()

    closed = threading.Event()

    def on_output(kind: str, topic: str, msgtype: str):
        def cb(data: bytes) -> None:
            now = time.time()
            with lock:
                if closed.is_set():
                    return
                writer.write_raw(topic, msgtype, data, time.time_ns())
                received.append({"topic": kind, "stamp_ns": cdr_header_stamp(data), "wall": now})
                if kind == "depth":
                    emit_progress("R", sum(r['topic'] == 'depth' for r in received))
        return cb

    subs = {}
    for kind, (cls, msgtype) in out_types.items():
        topic = spec["outputs"][kind]
        subs[kind] = node.create_subscription(cls, topic, on_output(kind, topic, msgtype), out_qos, raw=True)
    if DiagnosticArray is not None:
        def on_diag(msg) -> None:
            for st in msg.status:
                if NODE_NAME in st.name:
                    diagnostics[st.name] = {"level": int.from_bytes(st.level, "little") if isinstance(st.level, bytes)
                                            else int(st.level), "message": st.message,
                                            "values": {kv.key: kv.value for kv in st.values}}
        node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, reliable)

    ex = SingleThreadedExecutor()
    ex.add_node(node)
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()
    timing: dict = {"published": [], "received": received, "diagnostics": diagnostics, "node_seen": False}
    code = 0
    try:
        deadline = time.monotonic() + float(spec["node_timeout"])

        def connected() -> bool:
            return all(p.get_subscription_count() for p in pubs.values()) and subs["depth"].get_publisher_count() > 0

        while time.monotonic() < deadline and not connected():
            time.sleep(0.05)
        if not all(p.get_subscription_count() for p in pubs.values()):
            missing = [spec["inputs"][k] for k, p in pubs.items() if not p.get_subscription_count()]
            print(f"no upsample_node subscribed to {', '.join(missing)} within {spec['node_timeout']:.0f} s",
                  file=sys.stderr, flush=True)
            return 3
        timing["node_seen"] = True
        if not subs["depth"].get_publisher_count():
            print(f"warning: nothing publishes {spec['outputs']['depth']} yet", file=sys.stderr, flush=True)
        time.sleep(0.3)
        kinds = {spec["bag_topics"][k]: k for k in types}
        rate = float(spec["rate"])
        t0 = first = None
        n = 0
        with BagReader(spec["bag"]) as bag:
            for raw in bag.messages(list(kinds)):
                if first is None:
                    first, t0 = raw.log_time_ns, time.monotonic()
                wait = t0 + (raw.log_time_ns - first) * 1e-9 / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                kind = kinds[raw.topic]
                pubs[kind].publish(raw.data)
                if kind == "rgb":
                    n += 1
                    timing["published"].append({"stamp_ns": cdr_header_stamp(raw.data), "wall": time.time()})
                    emit_progress("P", n)
                if spec.get("max_frames") and n >= spec["max_frames"] and kind == "depth":
                    break
        # wait for the last outputs: until the newest frame came back, or nothing new arrived for
        # idle_s (the node may have dropped it), capped by node_timeout
        end = time.monotonic() + float(spec["node_timeout"])
        last_count, last_change = -1, time.monotonic()
        last_stamp = timing["published"][-1]["stamp_ns"] if timing["published"] else None
        while time.monotonic() < end:
            with lock:
                count = len(received)
                done = any(r["stamp_ns"] == last_stamp and r["topic"] == "depth" for r in received)
            if done:
                break
            if count != last_count:
                last_count, last_change = count, time.monotonic()
            elif time.monotonic() - last_change > float(spec["idle_s"]):
                break
            time.sleep(0.05)
        time.sleep(float(spec.get("diagnostics_wait_s", 1.2)))  # one more diagnostics period
    except KeyboardInterrupt:
        code = 130
    finally:
        with lock:
            closed.set()
            writer.close()
            Path(spec["timing"]).write_text(json.dumps(timing))
        ex.shutdown(timeout_sec=2)
        spin.join(timeout=5)
        node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
