"""Latency of the ROS node per frame (header stamp -> publish), warm start (flow) vs cold.

Runs the real ``dada_upsample`` node in-process on a real rclpy graph, feeds it a generated
sequence (slow pan, ToF-like noise) at 160x120 -> 640x480 (x4) on the CPU, one frame at a time
(the next triple is sent when the previous output arrived, so every frame is processed and the
numbers are per-frame latency, not throughput), and prints the median over the frames. The
modes run side by side, frame i going to each mode's node in turn, so a shared machine's load
hits them alike.

Each frame is stamped with the node clock when it is sent, so stamp -> publish is the whole
path: DDS in, decode, sync, warm-start alignment, solve, encode, publish (depth + camera_info +
xyz cloud). ``warm_start_max_age`` is raised so that a slow CPU frame does not by itself make
the next frame "too old" for a warm start (the default 0.5 s assumes a faster device).

    python benchmarks/node_latency.py                 # 50 frames, flow then cold (off)
    python benchmarks/node_latency.py --frames 10 --modes flow
    python benchmarks/node_latency.py --block 10        # each node its own stream (alternating every 10 frames)
    python benchmarks/node_latency.py --modes off,off:method=dada,flow,flow:method=dada   # learned vs DADA-free

A mode is a ``warm_start`` value, optionally followed by node parameters ``:name=value`` (ints,
floats and true/false are converted), each mode its own node.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from contextlib import contextmanager

import numpy as np

import dada_ros  # noqa: F401  (before torch: the CPU threads' spin setting, dada_ros/__init__.py)
import torch  # noqa: E402

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from dada_ros.core.sequences import SequenceConfig, make_sequence  # noqa: E402
from dada_ros.ros import conversions as cv  # noqa: E402
from dada_ros.ros.diagnostics import LATENCY_STAGES  # noqa: E402
from dada_ros.ros.node import INPUT_TOPICS, OUTPUT_TOPICS, UpsampleNode  # noqa: E402

RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def messages(frame, stamp_ns: int) -> tuple[Image, CameraInfo, Image]:
    h = Header(frame_id="camera_color_optical_frame")
    h.stamp.sec, h.stamp.nanosec = stamp_ns // 10**9, stamp_ns % 10**9
    rgb = cv.build_message(Image, header=h, **cv.image_fields(frame.rgb, "rgb8"))
    depth = cv.build_message(Image, header=h, **cv.depth_image_fields(frame.source, "16UC1"))  # like a ToF driver
    H, W = frame.rgb.shape[:2]
    info = CameraInfo(header=h, width=W, height=H, distortion_model="plumb_bob")
    info.k = frame.K_rgb.reshape(9).astype(np.float64)
    info.p = np.hstack([frame.K_rgb, np.zeros((3, 1))]).reshape(12)
    info.r = np.eye(3).reshape(9)
    info.d = np.zeros(5)
    return rgb, info, depth


def _param_value(text: str):
    """'3' -> 3, '0.5' -> 0.5, 'true' -> True, anything else stays a string."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def mode_parameters(mode: str) -> dict:
    """'flow:method=dada:learned_schedule=per-ratio' -> {'warm_start': 'flow', 'method': 'dada', ...}."""
    warm, *extra = mode.split(":")
    params = {"warm_start": warm}
    for item in extra:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"mode {mode!r}: expected warm_start[:name=value...], got {item!r}")
        params[name] = _param_value(value)
    return params


class Runner:
    """One node (one mode: warm_start and node parameters) and its tester publishers/subscribers,
    on a shared executor."""

    def __init__(self, ctx, ex: SingleThreadedExecutor, mode: str, args):
        overrides = {"warm_start_max_age": args.max_age, "torch_threads": args.threads,
                     "device": "cpu", "qos_reliability": "reliable", "output_qos_reliability": "reliable",
                     **mode_parameters(mode)}
        ns = "/bench" + uuid.uuid4().hex[:8]
        self.mode, self.args = mode, args
        self.node = UpsampleNode(context=ctx, namespace=ns,
                                 parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        self.tester = rclpy.create_node("bench", namespace=ns, context=ctx)
        self.pubs = [self.tester.create_publisher(Image if k != "camera_info" else CameraInfo, t, RELIABLE)
                     for k, t in INPUT_TOPICS.items()]
        self.received: list[int] = []
        self.clouds: list[int] = []
        self.tester.create_subscription(Image, OUTPUT_TOPICS["depth"],
                                        lambda m: self.received.append(cv.stamp_to_nanoseconds(m.header.stamp)), RELIABLE)
        # a cloud subscriber, so the node packs and publishes the cloud as it would for a real user
        self.tester.create_subscription(PointCloud2, OUTPUT_TOPICS["points"],
                                        lambda m: self.clouds.append(cv.stamp_to_nanoseconds(m.header.stamp)), RELIABLE)
        ex.add_node(self.node)
        ex.add_node(self.tester)
        self.rows: list[dict] = []

    def connected(self) -> bool:
        return bool(all(p.get_subscription_count() for p in self.pubs) and self.node.pub_depth.get_subscription_count()
                    and self.node.pub_points.get_subscription_count())

    def frame(self, i: int, f) -> None:
        """Send one triple stamped now; wait for its output and the node's stats of it."""
        node = self.node
        done_before = node.stats.outputs.count
        stamp = node.get_clock().now().nanoseconds
        for p, m in zip(self.pubs, messages(f, stamp)):
            p.publish(m)
        deadline = time.monotonic() + self.args.frame_timeout
        # the subscriber may see the image before the node has recorded the frame's stats
        while time.monotonic() < deadline and not (stamp in self.received and node.stats.outputs.count > done_before):
            time.sleep(0.002)
        if stamp not in self.received:
            print(f"  {self.mode} frame {i}: no output within {self.args.frame_timeout} s", flush=True)
            return
        # The frame is over when its cloud is out too: the next triple (to this node or to the
        # other mode's node in the same process) must not be solved while this cloud is packed,
        # as a camera's next frame is not while the node keeps up with it.
        while self.args.wait_cloud and time.monotonic() < deadline and stamp not in self.clouds:
            time.sleep(0.002)
        last = dict(node.stats.last_frame)
        row = {"latency": node.stats.latencies[-1], "init_mode": last.get("init_mode"),
               "iterations": last.get("iterations"), "flow_ms": last.get("flow_ms") or 0.0,
               "solve_ms": last.get("solve_ms"), "cold_reason": last.get("cold_reason"),
               **{k: last.get(k, 0.0) for k in LATENCY_STAGES}}
        self.rows.append(row)
        if self.args.verbose:
            print(f"  {self.mode:4s} frame {i:2d}: {row['latency'] * 1000:8.1f} ms  {row['init_mode']:5s} "
                  f"{row['iterations']:5d} it  flow {row['flow_ms']:5.1f} ms  {row['cold_reason'] or ''}", flush=True)

    def result(self) -> dict:
        return {"mode": self.mode, "frames": self.rows, "drops": self.node.stats.snapshot()}

    def close(self) -> None:
        self.node.destroy_node()
        self.tester.destroy_node()


@contextmanager
def running_node(mode: str, args, domain_id: int):
    """One ``Runner`` (its own rclpy context, executor spun in a thread) until the block ends;
    yields it once its publishers and subscribers are connected. ``args``: max_age, threads,
    frame_timeout, verbose (see ``Runner``)."""
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    ex = SingleThreadedExecutor(context=ctx)
    runner = Runner(ctx, ex, mode, args)  # the node warms its kernels up here
    stop = threading.Event()
    th = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)],
                          daemon=True)
    th.start()
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and not runner.connected():
            time.sleep(0.05)
        yield runner
    finally:
        stop.set()
        th.join(timeout=5)
        runner.close()
        ex.shutdown(timeout_sec=5)
        rclpy.shutdown(context=ctx)


def run_interleaved(ctx, frames, modes: list[str], counts: dict[str, int], args) -> list[dict]:
    """Frames go to every mode's node in turn, so the modes are measured under the same load
    (the machine may be shared); each node processes its frames in order, so its warm start
    sees a proper sequence. ``args.block`` frames at a time: 1 (the default) = frame i to every
    node, then frame i + 1: each warm frame then follows another node's (cold) frame on the same
    cores, which evicts the previous frame's guide and depth from the caches (two nodes sharing
    a CPU); a block of N = frames i..i+N-1 to one node, then the same frames to the next: one
    node's stream as a robot runs it, the load still alternating every N frames."""
    ex = SingleThreadedExecutor(context=ctx)
    runners = [Runner(ctx, ex, m, args) for m in modes]
    spinning = threading.Event()
    spinning.set()

    def spin() -> None:
        while spinning.is_set():
            ex.spin_once(timeout_sec=0.05)

    th = threading.Thread(target=spin, daemon=True)
    th.start()
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and not all(r.connected() for r in runners):
            time.sleep(0.05)
        block = max(1, int(args.block))
        for start in range(0, len(frames), block):
            for r in runners:
                for i in range(start, min(start + block, counts[r.mode])):
                    r.frame(i, frames[i])
        return [r.result() for r in runners]
    finally:
        # Stop spinning, destroy the nodes (which detaches them from the executor), then shut the
        # executor down: shutting it down first leaves destroy_node poking a dead guard condition.
        spinning.clear()
        th.join(timeout=5)
        for r in runners:
            r.close()
        ex.shutdown(timeout_sec=5)


def summarise(res: dict) -> str:
    rows = res["frames"]
    if not rows:
        return f"{res['mode']}: no frames"
    lat = [r["latency"] * 1000 for r in rows]
    warm = [r["latency"] * 1000 for r in rows if r["init_mode"] not in ("cold", None)]
    modes = {m: sum(r["init_mode"] == m for r in rows) for m in {r["init_mode"] for r in rows}}
    its = statistics.median(r["iterations"] for r in rows)
    s = (f"{res['mode']:5s}: median stamp->publish {statistics.median(lat):8.1f} ms over {len(rows)} frames "
         f"(p90 {np.percentile(lat, 90):8.1f}, min {min(lat):7.1f}, max {max(lat):8.1f}); median iterations {its:.0f}; "
         f"init modes {modes}")
    if warm:
        s += (f"\n       warm frames only: median {statistics.median(warm):.1f} ms; median flow "
              f"{statistics.median(r['flow_ms'] for r in rows if r['init_mode'] == 'flow'):.1f} ms")
    return s


def split_table(results: list[dict]) -> str:
    """Median per stage (ms) for warm and cold frames of each mode: where the latency goes."""
    cols = [k[2:-3] for k in LATENCY_STAGES]
    lines = ["| mode | frames | latency | " + " | ".join(cols) + " |", "|---" * (len(cols) + 3) + "|"]
    for res in results:
        for kind in ("warm", "cold"):
            rows = [r for r in res["frames"] if (r["init_mode"] == "cold") == (kind == "cold")]
            if not rows:
                continue
            med = [statistics.median(r[k] for r in rows) for k in LATENCY_STAGES]
            lines.append(f"| {res['mode']} ({kind}) | {len(rows)} | {statistics.median(r['latency'] for r in rows) * 1000:.1f} | "
                         + " | ".join(f"{v:.1f}" for v in med) + " |")
    return ("median ms per stage (input = stamp -> worker incl. decode; depth_out = encode + publish depth "
            "and camera_info; cloud after the depth is out):\n" + "\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--cold-frames", type=int, default=None,
                    help="frames for the cold (off) mode; default --frames (a cold VGA frame takes ~0.5 min on 2 cores)")
    ap.add_argument("--modes", default="flow,off",
                    help="comma-separated warm_start values, each optionally with :name=value node parameters")
    ap.add_argument("--size", default="640x480", help="guide WxH")
    ap.add_argument("--source", default="160x120", help="depth WxH")
    ap.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    ap.add_argument("--max-age", type=float, default=60.0, help="warm_start_max_age for the run (s)")
    ap.add_argument("--frame-timeout", type=float, default=600.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--block", type=int, default=1,
                    help="frames sent to one node before the next mode's node gets the same frames (1: frame by "
                         "frame, two nodes sharing the cores; 10: each node's own stream, alternating every 10)")
    ap.add_argument("--no-wait-cloud", dest="wait_cloud", action="store_false",
                    help="send the next triple as soon as the depth is out (the frame's cloud, or the other "
                         "mode's, is then packed while the next frame is solved)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    W, H = (int(v) for v in args.size.split("x"))
    w, h = (int(v) for v in args.source.split("x"))
    torch.set_num_threads(args.threads)
    n_static = min(5, args.frames)
    plan = (("static", n_static),) + ((("pan", args.frames - n_static),) if args.frames > n_static else ())
    t0 = time.time()
    frames = list(make_sequence(SequenceConfig(seed=args.seed, size=(H, W), source_shape=(h, w), plan=plan)))
    print(f"{len(frames)} frames {w}x{h} -> {W}x{H} generated in {time.time() - t0:.1f} s; CPU, torch threads "
          f"{args.threads}, {os.cpu_count()} cores visible, load average {os.getloadavg()[0]:.1f}, "
          f"torch {torch.__version__}", flush=True)
    # One-time costs (a JIT-compiled CPU kernel, first torch/OpenCV calls) are not per-frame
    # latency: pay them on a tiny frame pair before the clock starts.
    from dada_ros.core.pipeline import FramePipeline
    from dada_ros.core.solver import DadaSolver, SolverConfig

    small = list(make_sequence(SequenceConfig(seed=1, size=(48, 64), source_shape=(12, 16), plan=(("pan", 2),))))
    warm_pipe = FramePipeline(DadaSolver(SolverConfig(device="cpu", max_iterations=50)))
    for k, f in enumerate(small):
        warm_pipe.process(f.rgb, f.source, f.stamp)
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx, domain_id=int(os.environ.get("ROS_DOMAIN_ID", 0)) or (200 + os.getpid() % 30))
    modes = [m.strip() for m in args.modes.split(",")]
    counts = {m: (args.cold_frames if (mode_parameters(m)["warm_start"] == "off" and args.cold_frames) else len(frames))
              for m in modes}
    t0 = time.time()
    try:
        results = run_interleaved(ctx, frames, modes, counts, args)
    finally:
        rclpy.shutdown(context=ctx)
    for res in results:
        print(summarise(res))
    print(split_table(results))
    print(f"[{time.time() - t0:.0f} s wall; load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores]")
    med = {r["mode"]: statistics.median(x["latency"] for x in r["frames"]) for r in results if r["frames"]}
    if len(med) > 1:
        first = next(iter(med))
        print("median latency / " + first + "'s: " + ", ".join(f"{m} {v / med[first]:.2f}" for m, v in med.items()))
    by = {r["mode"]: r for r in results}
    if "flow" in by and "off" in by and by["flow"]["frames"] and by["off"]["frames"]:
        f = statistics.median(r["latency"] for r in by["flow"]["frames"])
        c = statistics.median(r["latency"] for r in by["off"]["frames"])
        print(f"flow warm start vs cold: median latency {f * 1000:.0f} ms vs {c * 1000:.0f} ms ({c / f:.1f}x faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
