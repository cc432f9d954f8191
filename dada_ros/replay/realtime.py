"""``dada-replay --realtime``: play a bag at bag rate into the live ``upsample_node`` and score
what comes back -- the "rosbag replay" a robotics user does, with numbers.

Two child processes (rclpy re-executes the interpreter when imported, so none of it runs in this
one): the node itself (``python -m dada_ros.ros.node`` with the given parameters, on a private
ROS domain, localhost discovery; or an already running node with ``launch_node=False``), and
:mod:`.realtime_player`, which publishes the bag's inputs as recorded and records the node's
outputs into ``DIR/output_bag``. This process then matches outputs to inputs by stamp and writes
the same metrics.json / report as the offline replay, for one method (the node's):

* a published frame without an output is ``dropped`` (the node solves the newest set and drops
  stale ones when it falls behind: that is the live behaviour being measured);
* ``ms`` is the latency from publishing the RGB image to receiving the upsampled depth;
* errors against ground truth and consistency with the input depth as offline.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import DadaInputError
from ..ros.conversions import depth_image_to_metres, guide_image_to_rgb, stamp_to_nanoseconds
from ..ros.names import INPUT_TOPICS, NODE_NAME, OUTPUT_TOPICS, absolute
from .bag import BagReader
from .evaluate import (ReplayConfig, ReplayResult, check_no_output_bag, metrics_header, prepare_out_dir,
                       snapshot_indices)
from .groundtruth import StampedStream
from .report import Snapshot, write_report
from .scoring import MetricsLog, score_frame

NODE_INPUTS = {kind: absolute(topic) for kind, topic in INPUT_TOPICS.items()}
NODE_OUTPUTS = {kind: absolute(topic) for kind, topic in OUTPUT_TOPICS.items()}


@dataclass
class RealtimeConfig:
    replay: ReplayConfig
    rate: float = 1.0
    launch_node: bool = True
    node_params: dict = field(default_factory=dict)
    node_timeout: float = 60.0  # node start-up / last output wait, seconds
    idle_s: float | None = None  # stop waiting when nothing arrived for this long (default node_timeout)
    methods_given: bool = False  # the user passed --methods (ignored here: say so)


def _param_arg(name: str, value: object) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return f"{name}:={text}"


def _stop(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGINT (clean rclpy shutdown), then SIGKILL if it does not exit."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _tail(path: Path, n: int = 3) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])


def run_realtime(cfg: RealtimeConfig) -> ReplayResult:
    """Play ``cfg.replay.bag`` into the live node; returns the same result as the offline replay."""
    rc = cfg.replay
    rc.validate()
    if not cfg.rate > 0:
        raise DadaInputError(f"--rate must be > 0, got {cfg.rate}")
    out = prepare_out_dir(rc.out)
    with BagReader(rc.bag) as reader:
        bag_topics = reader.topics
        topics = rc.topics.resolve(bag_topics)
    out_bag = out / "output_bag"
    check_no_output_bag(out_bag)
    node = rc.settings.node
    key = node.method
    header = metrics_header(
        rc, "realtime", topics, bag_topics,
        methods={key: {"label": f"live upsample_node: {node.method}, warm_start {node.warm_start}, "
                                f"warm_iterations {node.warm_iterations or 'auto'}; ms = RGB published -> depth received",
                       "base": node.method, "mode": None, "every": 1, "available": True}},
        settings={"rate": cfg.rate, "launch_node": cfg.launch_node, "max_frames": rc.max_frames})
    node_params = dict(cfg.node_params)
    if cfg.launch_node:
        # Reliable transport unless asked otherwise: best-effort 1 MB images get lost in DDS under
        # load, and the replay is meant to measure the node, not UDP fragment loss.
        for name in ("qos_reliability", "output_qos_reliability"):
            node_params.setdefault(name, "reliable")
    header["node_parameters"].update(node_params)
    log = MetricsLog(out, header, [key])
    for note in topics.notes:
        log.note(note)
    if cfg.methods_given:
        log.note("--methods is ignored with --realtime: the live node runs its own method (parameters method, warm_start)")
    if cfg.launch_node:
        log.note(f"node launched with inputs {node_params['qos_reliability']} and outputs "
                 f"{node_params['output_qos_reliability']} QoS (the node's defaults: auto inputs, reliable outputs; set them with "
                 "--node-params qos_reliability:=best_effort,output_qos_reliability:=best_effort to include DDS loss)")
    env = dict(os.environ)
    if cfg.launch_node:
        env["ROS_DOMAIN_ID"] = str(random.randint(101, 199))  # a private graph for this replay
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    spec_path, timing_path = out / "realtime_spec.json", out / "realtime_timing.json"
    spec = {
        "bag": str(rc.bag), "inputs": NODE_INPUTS, "outputs": NODE_OUTPUTS,
        "bag_topics": {"rgb": topics.rgb, "camera_info": topics.rgb_info, "depth": topics.depth},
        "out_bag": str(out_bag), "timing": str(timing_path), "rate": cfg.rate, "storage": rc.bag_storage,
        "node_timeout": cfg.node_timeout, "idle_s": cfg.idle_s or cfg.node_timeout, "max_frames": rc.max_frames,
        "output_reliability": node_params.get("output_qos_reliability", "reliable") if cfg.launch_node
        else "best_effort",
    }
    spec_path.write_text(json.dumps(spec, indent=1))
    node_log = out / "node.log"
    node_proc = None
    status = "failed"
    failure: DadaInputError | None = None
    try:
        if cfg.launch_node:
            params = [a for k, v in node_params.items() for a in ("-p", _param_arg(k, v))]
            with open(node_log, "w") as fh:
                node_proc = subprocess.Popen([sys.executable, "-m", "dada_ros.ros.node", "--ros-args", *params],
                                             stdout=fh, stderr=subprocess.STDOUT, env=env)
        status = _play(spec_path, env, rc, node_proc, node_log)
    except KeyboardInterrupt:
        status = "interrupted"
    except DadaInputError as exc:
        failure = exc
        status = f"failed: {exc}"
    finally:
        _stop(node_proc)
    # whatever was recorded is scored and reported, also after a failure
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {"published": [], "received": []}
    snapshots = _score(rc, topics, timing, out_bag, log, key)
    log.close(status)
    report = write_report(out, log.data, snapshots)
    if failure is not None:
        raise failure
    return ReplayResult(log.data, out, report, out_bag if out_bag.exists() else None, status)


def parse_progress_line(line: str) -> tuple[str, int] | None:
    """``"P 12"`` -> ``("P", 12)``; ``None`` for anything else (a stray or garbled line)."""
    kind, _, n = line.strip().partition(" ")
    if kind not in ("P", "R") or not n.isdigit():
        return None
    return kind, int(n)


def _play(spec_path: Path, env: dict, rc: ReplayConfig, node_proc: subprocess.Popen | None, node_log: Path) -> str:
    from tqdm import tqdm

    player = subprocess.Popen([sys.executable, "-m", "dada_ros.replay.realtime_player", "--spec", str(spec_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    bar = tqdm(unit="frame", desc="dada-replay --realtime", disable=not rc.progress, file=sys.stderr)
    published = received = 0
    try:
        assert player.stdout is not None
        for line in player.stdout:
            parsed = parse_progress_line(line)
            if parsed is None:
                continue  # progress display only: the timing JSON is what gets scored
            kind, n = parsed
            if kind == "P":
                bar.update(max(n - published, 0))
                published = n
            else:
                received = n
            bar.set_postfix({"out": received, "dropped": max(published - received, 0)}, refresh=False)
        code = player.wait()
    except KeyboardInterrupt:
        _stop(player)
        raise
    finally:
        bar.close()
    err = (player.stderr.read() if player.stderr else "").strip()
    if code == 3:
        why = ""
        if node_proc is not None and node_proc.poll() is not None:
            why = f"; the node exited with code {node_proc.returncode}: {_tail(node_log)}"
        raise DadaInputError(f"{err.splitlines()[-1] if err else 'the node did not come up'}{why} (log: {node_log})")
    if code != 0:
        last = err.splitlines()[-1] if err else f"exit code {code}"
        raise DadaInputError(f"the realtime player failed: {last}")
    return "complete"


def _score(rc: ReplayConfig, topics, timing: dict, out_bag: Path, log: MetricsLog, key: str) -> list[Snapshot]:
    """Per published frame: the node's output (or a drop), latency, errors; returns report snapshots."""
    published = timing.get("published", [])
    arrivals = {r["stamp_ns"]: r["wall"] for r in timing.get("received", []) if r["topic"] == "depth"}
    outputs: dict[int, bytes] = {}
    if out_bag.exists():
        with BagReader(out_bag) as bag:
            for raw in bag.messages([NODE_OUTPUTS["depth"]]):
                outputs[stamp_to_nanoseconds(raw.decode().header.stamp)] = raw
    slop = rc.slop
    gt = StampedStream(rc.bag, topics.gt, tolerance_s=slop / 2) if topics.gt else None
    src = StampedStream(rc.bag, topics.depth, tolerance_s=slop)
    rgb_stream = StampedStream(rc.bag, topics.rgb, tolerance_s=slop / 2, convert=guide_image_to_rgb)
    got = [i for i, p in enumerate(published) if p["stamp_ns"] in outputs]
    picks = {got[j] for j in snapshot_indices(len(got), rc.snapshots, 1)} if got else set()
    snapshots: list[Snapshot] = []
    frames_without_gt = 0
    try:
        for i, p in enumerate(published):
            stamp = p["stamp_ns"]
            entry = {"index": i, "stamp": stamp * 1e-9, "methods": {}}
            raw = outputs.get(stamp)
            if raw is None:
                entry["methods"][key] = {"dropped": True}
                log.add_frame(entry)
                continue
            depth = depth_image_to_metres(raw.decode())
            truth = gt.lookup(stamp) if gt is not None else None
            if gt is not None and truth is None:
                frames_without_gt += 1
            source = src.lookup(stamp)
            scores = score_frame(depth, truth, source) if source is not None else score_frame(depth, truth, depth[:1, :1])
            rec = {"ms": (arrivals.get(stamp, p["wall"]) - p["wall"]) * 1e3, **scores}
            entry["gt"] = truth is not None
            entry["methods"][key] = rec
            if i in picks and source is not None:
                snapshots.append(Snapshot(i, stamp * 1e-9, rgb_stream.lookup(stamp), source, truth, {key: depth}))
            log.add_frame(entry)
    finally:
        for s in (gt, src, rgb_stream):
            if s is not None:
                s.close()
    n_pub, n_out = len(published), sum(1 for p in published if p["stamp_ns"] in outputs)
    diag = timing.get("diagnostics", {})
    where = drop_breakdown(diag, n_pub, n_out)
    log.update(input={"published_frames": n_pub, "received_outputs": n_out, "dropped": n_pub - n_out,
                      "drops_where": where, "frames_processed": n_out, "frames_without_gt": frames_without_gt,
                      "node_diagnostics": diag,
                      "output_messages": {k: sum(r["topic"] == k for r in timing.get("received", []))
                                          for k in NODE_OUTPUTS}})
    if n_pub:
        detail = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in where.items()) if where else "no node diagnostics seen"
        log.note(f"live node: {n_out} of {n_pub} published frames came back, {n_pub - n_out} dropped ({detail}); "
                 "the node solves the newest frame and drops stale ones when it falls behind the bag rate")
    log.update(output_bag={"path": str(out_bag), "topics": _bag_counts(out_bag)} if out_bag.exists() else None)
    return [s for s in snapshots if s.rgb is not None]


def _int(values: dict, key: str) -> int | None:
    try:
        return int(float(values[key]))
    except (KeyError, TypeError, ValueError):
        return None


def drop_breakdown(diag: dict, published: int, received: int) -> dict:
    """Where frames were lost, from the node's last /diagnostics: before the node (DDS input),
    in the node (by reason: dropped_stale = solver busy, ...), after it (DDS output)."""
    inp = (diag.get(f"{NODE_NAME}: input") or {}).get("values", {})
    outp = (diag.get(f"{NODE_NAME}: output") or {}).get("values", {})
    drops = (diag.get(f"{NODE_NAME}: drops") or {}).get("values", {})
    got_rgb, sent = _int(inp, "Messages received: rgb"), _int(outp, "Events since startup")
    out: dict = {}
    if got_rgb is not None:
        out["lost_before_node"] = max(published - got_rgb, 0)
    for reason, n in drops.items():
        if reason != "Total" and _int(drops, reason):
            out[f"node_{reason}"] = _int(drops, reason)
    if sent is not None:
        out["lost_after_node"] = max(sent - received, 0)
    return out


def _bag_counts(path: Path) -> dict:
    try:
        with BagReader(path) as bag:
            return {t.name: t.count for t in bag.topics.values()}
    except DadaInputError:
        return {}
