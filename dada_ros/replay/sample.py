"""The sample bag: a synthetic moving-camera RGB-D sequence written like a real camera driver would.

Topics (all stamped, frame ``camera_color_optical_frame``; depth is registered to the RGB camera):

* ``/rgb/image_rect_color`` rgb8 640x480 and ``/rgb/camera_info``;
* ``/depth/image_rect`` 16UC1 millimetres (0 = no return) 160x120, ToF-like (noise, flying pixels,
  holes) and ``/depth/camera_info`` (the same camera at the depth resolution);
* ``/depth_gt/image_rect`` 32FC1 metres (NaN = none) at the RGB resolution, stamped like the RGB.

The depth stamps trail the RGB stamps by a few milliseconds (two sensors, no hardware trigger) and
each message is logged a little after its stamp, so the replay exercises the approximate-time
synchroniser as a live camera would. Deterministic from the seed (see
:mod:`dada_ros.core.sequences` for the motion plan: static, pan, rotate, forward, a cut, pan).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..core.errors import DadaInputError
from ..core.sequences import DEFAULT_PLAN, SequenceConfig, make_sequence, sequence_length
from ..ros.conversions import metres_to_depth_array
from . import messages as m
from .bag import BagWriter
from .topics import TopicMap

FRAME_ID = "camera_color_optical_frame"


@dataclass
class SampleConfig:
    """What :func:`write_sample_bag` renders."""

    frames: int = sequence_length(SequenceConfig())  # 64: the whole default plan
    size: tuple[int, int] = (480, 640)  # RGB (H, W)
    source_shape: tuple[int, int] = (120, 160)  # ToF (h, w)
    seed: int = 0
    fps: float = 15.0
    depth_delay_s: float = 0.004  # depth stamp - RGB stamp
    rgb_latency_s: float = 0.012  # bag (receive) time - stamp
    depth_latency_s: float = 0.021
    drop_depth: tuple[int, ...] = ()  # frame indices whose depth message is left out (tests)
    storage: str = "mcap"
    plan: tuple[tuple[str, int], ...] = DEFAULT_PLAN  # motion plan, cut/extended to ``frames``

    def sequence_config(self) -> SequenceConfig:
        if self.frames < 1:
            raise DadaInputError(f"a sample bag needs at least 1 frame, got {self.frames}")
        return SequenceConfig(seed=self.seed, size=tuple(self.size), source_shape=tuple(self.source_shape),
                              fps=self.fps, plan=truncate_plan(tuple(self.plan), self.frames))


def truncate_plan(plan: tuple[tuple[str, int], ...], frames: int) -> tuple[tuple[str, int], ...]:
    """The first ``frames`` frames of ``plan``; longer requests repeat the last segment."""
    out: list[tuple[str, int]] = []
    left = frames
    for name, n in plan:
        if left <= 0:
            break
        out.append((name, min(n, left)))
        left -= n
    if left > 0:
        out.append((plan[-1][0], left))
    return tuple(out)


def write_sample_bag(path: str | Path, config: SampleConfig | None = None, topics: TopicMap | None = None,
                     progress: Callable[[int, int], None] | None = None) -> dict:
    """Render the sequence and write it as a rosbag2 bag at ``path`` (must not exist).

    Returns a summary dict: frames, topics with counts, segments per frame, size in bytes.
    """
    cfg = config or SampleConfig()
    seq = cfg.sequence_config()
    seq.validate()
    topics = topics or TopicMap()
    depth_info_topic = topics.depth.rsplit("/", 1)[0] + "/camera_info"
    H, W = seq.size
    h, w = seq.source_shape
    segments: list[str] = []
    with BagWriter(path, storage=cfg.storage) as bag:
        for frame in make_sequence(seq):
            # Integer nanoseconds from the frame index: float seconds near 1.7e9 lose ~200 ns.
            t_rgb = int(round(seq.start_time * 1e9)) + int(round(frame.index * 1e9 / seq.fps))
            t_depth = t_rgb + int(round(cfg.depth_delay_s * 1e9))
            hdr_rgb = m.header(t_rgb, FRAME_ID)
            hdr_depth = m.header(t_depth, FRAME_ID)
            log_rgb = t_rgb + int(round(cfg.rgb_latency_s * 1e9))
            log_depth = t_depth + int(round(cfg.depth_latency_s * 1e9))
            batch = [
                (log_rgb, topics.rgb, m.image(frame.rgb, "rgb8", hdr_rgb)),
                (log_rgb, topics.rgb_info, m.camera_info(frame.K_rgb, W, H, hdr_rgb)),
            ]
            if topics.gt is not None:
                batch.append((log_rgb, topics.gt, m.depth_image(frame.gt, "32FC1", hdr_rgb)))
            if frame.index not in cfg.drop_depth:
                mm = metres_to_depth_array(frame.source, "16UC1")
                batch.append((log_depth, topics.depth, m.image(mm, "16UC1", hdr_depth)))
                batch.append((log_depth, depth_info_topic, m.camera_info(frame.K_depth, w, h, hdr_depth)))
            for log_ns, topic, msg in sorted(batch, key=lambda b: b[0]):
                bag.write(topic, msg, log_ns)
            segments.append(frame.segment)
            if progress is not None:
                progress(frame.index + 1, cfg.frames)
        counts = dict(bag.counts)
    size = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
    return {"path": str(path), "frames": len(segments), "rgb_size": [W, H], "depth_size": [w, h],
            "topics": counts, "segments": segments, "bytes": size, "storage": cfg.storage, "seed": cfg.seed}
