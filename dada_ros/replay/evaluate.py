"""The offline replay: bag -> node synchroniser -> node frame pipeline per method -> scores -> files.

Messages are read in bag (receive) order and handled as ``upsample_node`` handles them: each one is
decoded and checked on arrival with the node's own checks (:mod:`dada_ros.ros.frame_checks`: a bad
message is dropped with the node's reason before it can occupy a sync queue), fed to
:class:`dada_ros.ros.sync.Synchronizer` with the node's three inputs (RGB, RGB camera_info, depth),
queue size and slop; every matched set gets the node's frame checks and goes to each method's
runner (DADA methods: the node's :class:`~dada_ros.core.pipeline.FramePipeline` with the node's
solver and warm-start settings), at the RGB stamp. Unlike the live node, which solves only the
newest set and drops the others when it falls behind, the offline replay processes every matched
set (so frames_in == frames_out); ``--realtime`` measures the live behaviour. Each frame is scored
against the ground truth with the same stamp and persisted at once (:class:`~.scoring.MetricsLog`);
the primary method's outputs go to the output bag; a few frames are kept for the report figures.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..core.errors import DadaInputError
from ..ros import frame_checks
from ..ros.conversions import ConversionError, stamp_to_nanoseconds
from ..ros.frame_checks import INPUT_KINDS, Decoded, check_frame
from ..ros.parameters import PARAMS, NodeSettings, validate_settings
from ..ros.sync import Synchronizer
from .bag import BagReader, RawMessage, TopicInfo
from .groundtruth import GroundTruthStream
from .methods import MethodRunner, MethodSpec, RunnerSettings, build_runners
from .outputs import OutputBag
from .report import Snapshot, ordinal, write_report
from .scoring import MetricsLog, frame_record, score_frame
from .topics import TopicMap

def decode_input(kind: str, raw: RawMessage) -> Decoded:
    """Deserialize one input message and check it as the node's subscription callbacks do
    (:func:`dada_ros.ros.frame_checks.decode_input`, in-package conversions).

    Raises:
        ConversionError: with the node's reason (``unsupported_encoding``, ``step_mismatch``,
            ``bad_camera_info``, ``all_invalid_depth``, ...); ``undecodable`` for bad CDR.
    """
    try:
        msg = raw.decode()
    except Exception as exc:  # noqa: BLE001 - corrupt bytes are a counted drop, not a crash
        raise ConversionError("undecodable", f"cannot deserialize {raw.topic} ({raw.msgtype}): {exc}") from exc
    return frame_checks.decode_input(kind, msg)


@dataclass
class ReplayConfig:
    """Everything one offline replay needs (the CLI fills it from its arguments)."""

    bag: Path
    out: Path
    methods: list[MethodSpec]
    topics: TopicMap = field(default_factory=TopicMap)
    settings: RunnerSettings = field(default_factory=RunnerSettings)
    cold_every: int = 1  # equilibrium-cold methods run on every N-th frame only (stateless: exact)
    max_frames: int | None = None
    write_bag: bool = True
    bag_storage: str = "mcap"
    bag_all_methods: bool = False
    snapshots: int = 4
    report: bool = True  # report.md and its figures (the slow part of a short bag)
    progress: bool = True
    command: str = ""
    on_frame: Callable[[], None] | None = None  # called after each frame (progress of parallel replays)

    def validate(self) -> None:
        if int(self.cold_every) != self.cold_every or self.cold_every < 1:
            raise DadaInputError(f"--cold-every must be an integer >= 1, got {self.cold_every}")
        if self.max_frames is not None and self.max_frames < 1:
            raise DadaInputError(f"--max-frames must be >= 1, got {self.max_frames}")
        validate_settings(self.settings.node)

    @property
    def slop(self) -> float:
        return float(self.settings.node.slop)


@dataclass
class ReplayResult:
    metrics: dict
    out: Path
    report: Path | None
    output_bag: Path | None
    status: str


def _node_params(node: NodeSettings) -> dict:
    """The node parameters in effect, by their ROS names (``lambda``, not ``lam``)."""
    return {p.name: getattr(node, p.field) for p in PARAMS}


def metrics_header(cfg: ReplayConfig, mode: str, topics: TopicMap, bag_topics: dict[str, TopicInfo],
                   methods: dict, settings: dict) -> dict:
    """The head of metrics.json (what ran, on what, how), offline and ``--realtime`` alike."""
    return {
        "tool": "dada-replay", "mode": mode, "bag": str(cfg.bag), "command": cfg.command,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host_cpus": os.cpu_count(),
        "topics": {"rgb": topics.rgb, "rgb_info": topics.rgb_info, "depth": topics.depth, "gt": topics.gt},
        "bag_topics": {t.name: {"type": t.msgtype, "count": t.count} for t in bag_topics.values()},
        "methods": methods,
        "settings": settings,
        "node_parameters": _node_params(cfg.settings.node),
    }


def check_no_output_bag(path: Path) -> None:
    """Refuse to run into an existing output bag (rosbag2 never overwrites one)."""
    if path.exists():
        raise DadaInputError(f"{path} exists already; remove it or use another --out")


def prepare_out_dir(out: Path) -> Path:
    """Create ``out`` (and parents) and prove it is writable, with a one-line error otherwise."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise DadaInputError(f"output folder {out} is not writable: {exc.strerror or exc}") from exc
    return out


def _warn(msg: str) -> None:
    print(f"dada-replay: warning: {msg}", file=sys.stderr)


def on_schedule(index: int, every: int) -> bool:
    """Frames a subsampled method runs on: the middle of each block of ``every`` frames
    (8, 24, 40, ... for 16), so it never spends its budget on frame 0, where every cold start
    and every warm method's first frame give the same answer."""
    return index % every == every // 2


def snapshot_indices(n_frames: int, count: int, align: int) -> set[int]:
    """``count`` frame indices spread over the sequence, on the ``align`` schedule (so the
    subsampled cold method appears in every figure), never the very first frame."""
    slots = [i for i in range(n_frames) if on_schedule(i, align) and i > 0] or list(range(n_frames))
    if count <= 0 or not slots:
        return set()
    if count >= len(slots):
        return set(slots)
    return {slots[int(round(k * (len(slots) - 1) / (count - 1)))] if count > 1 else slots[-1]
            for k in range(count)}


class _Replay:
    """State of one offline run (kept in one object so the frame handler stays short)."""

    def __init__(self, cfg: ReplayConfig, topics: TopicMap, expected: int, log: MetricsLog,
                 runners: list[MethodRunner], gt: GroundTruthStream | None, outbag: OutputBag | None):
        self.cfg, self.topics, self.log, self.runners, self.gt, self.outbag = cfg, topics, log, runners, gt, outbag
        self.expected = expected
        usable = [r for r in runners if r.error is None]
        dada = [r for r in usable if r.spec.is_dada and not r.spec.stateless]
        self.primary: MethodRunner | None = (dada or usable or [None])[0]
        align = cfg.cold_every if any(r.spec.equilibrium_cold for r in runners) else 1
        self.snap_at = snapshot_indices(expected, cfg.snapshots, align)
        self.snapshots: list[Snapshot] = []
        self.dropped: Counter = Counter()
        self.frames_without_gt = 0
        self.index = 0
        self.bar: Any = None
        self.sync: Synchronizer | None = None
        self.messages: Counter = Counter()

    def scheduled(self, runner: MethodRunner, index: int) -> bool:
        return not runner.spec.equilibrium_cold or on_schedule(index, self.cfg.cold_every)

    def reject(self, reason: str, text: str) -> None:
        """A dropped message or set, counted per reason like the node's diagnostics."""
        self.dropped[reason] += 1
        self.log.note(f"dropped ({reason}): {text}")

    def frame(self, rgb_d: Decoded, info_d: Decoded, depth_d: Decoded, log_ns: int) -> None:
        t_frame = time.perf_counter()
        refused = check_frame(rgb_d, info_d, depth_d)
        if refused is not None:
            self.reject(*refused)
            return
        rgb, source, intr = rgb_d.array, depth_d.array, info_d.intr
        rgb_msg, info_msg, depth_msg = rgb_d.msg, info_d.msg, depth_d.msg
        index = self.index
        self.index += 1
        stamp_ns = stamp_to_nanoseconds(rgb_msg.header.stamp)
        gt = self.gt.lookup(stamp_ns) if self.gt is not None else None
        if self.gt is not None and gt is None:
            self.frames_without_gt += 1
        if gt is not None and gt.shape != rgb.shape[:2]:
            self.log.note(f"ground truth {gt.shape[1]}x{gt.shape[0]} does not match the RGB grid "
                          f"{rgb.shape[1]}x{rgb.shape[0]}: not scored")
            gt = None
        entry: dict[str, Any] = {"index": index, "stamp": stamp_ns * 1e-9,
                                 "depth_stamp": stamp_to_nanoseconds(depth_msg.header.stamp) * 1e-9,
                                 "gt": gt is not None, "methods": {}}
        outputs: dict[str, np.ndarray] = {}
        for runner in self.runners:
            key = runner.spec.key
            if not self.scheduled(runner, index):
                entry["methods"][key] = {"skipped": True}
                continue
            try:
                pred, stats = runner.process(rgb, source, stamp_ns * 1e-9)
            except DadaInputError as exc:
                entry["methods"][key] = {"error": str(exc)}
                continue
            except Exception as exc:  # noqa: BLE001 - one broken method must not end the replay
                entry["methods"][key] = {"error": f"internal error {type(exc).__name__}: {exc}"}
                continue
            entry["methods"][key] = frame_record(stats, score_frame(pred, gt, source))
            outputs[key] = pred
            if self.outbag is not None:
                out_log = log_ns + int(stats["ms"] * 1e6)
                if runner is self.primary:
                    self.outbag.write_primary(pred, rgb, rgb_msg, info_msg, intr, stamp_ns, out_log)
                elif self.cfg.bag_all_methods:
                    self.outbag.write_method(key, pred, str(rgb_msg.header.frame_id), stamp_ns, out_log)
        entry["frame_ms"] = (time.perf_counter() - t_frame) * 1e3
        if index in self.snap_at:
            self.snapshots.append(Snapshot(index, stamp_ns * 1e-9, rgb, source, gt, outputs))
        self.log.add_frame(entry)
        if self.bar is not None:
            if self.primary is not None:  # the primary method's numbers for the frame just done
                rec = entry["methods"].get(self.primary.spec.key, {})
                post = {"it": rec.get("iterations", "-")}
                if "mse_cm2" in rec:
                    post["mse"] = f"{rec['mse_cm2']:.1f}"
                self.bar.set_postfix(post, refresh=False)
            self.bar.update(1)
        if self.cfg.on_frame is not None:
            self.cfg.on_frame()


def run_replay(cfg: ReplayConfig) -> ReplayResult:
    """Replay ``cfg.bag`` offline; writes metrics.json, frames.jsonl, the output bag and the report."""
    cfg.validate()
    out = prepare_out_dir(cfg.out)
    out_bag_path = out / "output_bag"
    if cfg.write_bag:  # before anything in ``out`` is overwritten
        check_no_output_bag(out_bag_path)
    with BagReader(cfg.bag) as reader:
        bag_topics = reader.topics
        topics = cfg.topics.resolve(bag_topics)
        expected = _expected_frames(cfg, topics, bag_topics)
        runners = build_runners(cfg.methods, cfg.settings)
        header = metrics_header(
            cfg, "offline", topics, bag_topics,
            methods={r.spec.key: {"label": r.spec.label(cfg.settings.node), "base": r.spec.base,
                                  "mode": r.spec.mode, "iterations": r.spec.iterations,
                                  "every": cfg.cold_every if r.spec.equilibrium_cold else 1,
                                  "available": r.error is None} for r in runners},
            settings={"device": cfg.settings.device, "cold_every": cfg.cold_every, "max_frames": cfg.max_frames,
                      "torch_threads": torch.get_num_threads()})
        log = MetricsLog(out, header, [s.key for s in cfg.methods])
        for note in reader.notes:  # a damaged bag: what was lost (BagReader warned already)
            log.note(note)
        for note in topics.notes:
            log.note(note)
            _warn(note)
        for r in runners:
            if r.error is not None:
                text = f"method {r.spec.key} not run: {r.error}"
                log.note(text)
                _warn(text)
        if cfg.cold_every > 1 and any(r.spec.equilibrium_cold for r in runners):
            first = cfg.cold_every // 2
            log.note(f"equilibrium cold-start methods are scored on every {ordinal(cfg.cold_every)} frame only "
                     f"(frames {first}, {first + cfg.cold_every}, {first + 2 * cfg.cold_every}, ...): they are "
                     "stateless, so those frames are exactly what an every-frame run gives")
        gt = GroundTruthStream(cfg.bag, topics.gt, tolerance_s=cfg.slop / 2) if topics.gt else None
        outbag = None
        status = "failed"
        failure: DadaInputError | None = None
        state: _Replay | None = None
        try:
            if cfg.write_bag:
                outbag = OutputBag(out_bag_path, cfg.settings.node, cfg.bag_storage)
            state = _Replay(cfg, topics, expected, log, runners, gt, outbag)
            status = _stream(reader, topics, cfg, state)
        except KeyboardInterrupt:
            status = "interrupted"
            _warn("interrupted: partial results kept")
        except DadaInputError as exc:  # e.g. a bag truncated half-way: keep and report what was done
            failure = exc
            status = f"failed: {exc}"
        finally:
            if state is not None and state.bar is not None:
                state.bar.close()
            out_counts = outbag.close() if outbag is not None else {}
            if gt is not None:
                gt.close()
            if state is not None:
                _finish_counters(log, state, gt, status)
            log.update(output_bag={"path": str(out_bag_path), "topics": out_counts} if outbag else None)
            log.close(status)
    report = write_report(out, log.data, state.snapshots if state else []) if cfg.report else None
    if failure is not None:
        _warn(f"partial results written to {out}")
        raise failure
    return ReplayResult(log.data, out, report, out_bag_path if outbag else None, status)


def _expected_frames(cfg: ReplayConfig, topics: TopicMap, bag_topics: dict[str, TopicInfo]) -> int:
    counts = {t: bag_topics[t].count for t in topics.inputs()}
    expected = min(counts[topics.rgb], counts[topics.depth])
    return min(expected, cfg.max_frames) if cfg.max_frames else expected


def expected_frames(cfg: ReplayConfig) -> int:
    """Frames the replay of ``cfg.bag`` will offer (from the bag's metadata; progress totals)."""
    with BagReader(cfg.bag) as reader:
        return _expected_frames(cfg, cfg.topics.resolve(reader.topics), reader.topics)


def _stream(reader: BagReader, topics: TopicMap, cfg: ReplayConfig, state: _Replay) -> str:
    from tqdm import tqdm

    kinds = dict(zip(topics.inputs(), INPUT_KINDS))
    order = {t: i for i, t in enumerate(topics.inputs())}
    matched: list[tuple] = []
    resets: list[str] = []
    node = cfg.settings.node
    sync = Synchronizer(3, node.queue_size, node.slop, callback=lambda *msgs: matched.append(msgs),
                        on_reset=resets.append, backend="internal")
    state.sync = sync
    state.bar = tqdm(total=state.expected, unit="frame", desc="dada-replay", disable=not cfg.progress,
                     file=sys.stderr, dynamic_ncols=True)
    for raw in reader.messages(topics.inputs()):
        state.messages[raw.topic] += 1
        if state.outbag is not None:
            state.outbag.copy_input(raw)
        try:
            decoded = decode_input(kinds[raw.topic], raw)
        except ConversionError as exc:
            state.reject(exc.reason, f"{kinds[raw.topic]} message on {raw.topic}: {exc}")
            continue
        sync.add(order[raw.topic], decoded)
        for reason in resets:
            state.log.note(f"time went backwards ({reason}): sync queues cleared, warm start reset")
            for r in state.runners:
                if r.pipeline is not None:
                    r.pipeline.reset()
        resets.clear()
        while matched:
            state.frame(*matched.pop(0), log_ns=raw.log_time_ns)
        if cfg.max_frames and state.index >= cfg.max_frames:
            return "complete (stopped at --max-frames)"
    return "complete"


def _finish_counters(log: MetricsLog, state: _Replay, gt: GroundTruthStream | None, status: str) -> None:
    """Input-side counters: messages per topic, sync matches, frames without a partner."""
    sync = state.sync
    messages = dict(state.messages)
    matched = sync.counters.matched if sync is not None else 0
    unmatched = {t: n - matched for t, n in messages.items() if n > matched}
    info = {
        "messages": messages, "synchronised_sets": matched, "frames_processed": state.index,
        "without_partner": unmatched, "sync_evicted": sync.counters.evicted if sync else 0,
        "sync_time_resets": sync.counters.time_resets if sync else 0,
        "dropped": dict(state.dropped),
        "frames_without_gt": state.frames_without_gt, "gt_unreadable": dict(gt.bad) if gt else {},
    }
    log.update(input=info)
    for topic, n in unmatched.items():
        text = f"{n} message(s) on {topic} had no partner within {state.cfg.slop * 1e3:.0f} ms and were not processed"
        log.note(text)
        _warn(text)
    if state.frames_without_gt and gt is not None:
        text = f"{state.frames_without_gt} frame(s) had no ground truth with the same stamp: not scored"
        log.note(text)
        _warn(text)
    if state.index == 0 and status.startswith("complete"):
        text = "no frame could be synchronised: check the stamps of the input topics"
        log.note(text)
        _warn(text)


__all__ = ["ReplayConfig", "ReplayResult", "run_replay", "expected_frames", "prepare_out_dir", "metrics_header",
           "check_no_output_bag",
           "decode_input", "check_frame"]
