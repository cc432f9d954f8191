"""Cross-scale self-supervision: training pairs from RGB-D frames whose only depth is the sensor's.

A frame (RGB at H x W, sensor depth D at h x w) becomes the scene (RGB resized to h x w with area
averaging, D): the usual example protocol (:mod:`.base`) then block-averages D by the training
ratio r and asks for D itself. The model learns to upsample by r at the sensor's own resolution,
so it sees the camera's real colours, noise, dropouts and misregistration -- no ground truth
needed, and sparse or noisy depth counts (invalid pixels are simply not scored). It serves the
ratio H / h, so train at the ratios it will serve (and around them).

Sources of frames:

* :class:`SelfSupervisedScenes` wraps any scene set (``sensor_ratio`` k > 1 first emulates a
  sensor at 1/k of the RGB resolution by block-averaging the ground truth, so the idea can be
  measured on data that has ground truth);
* :func:`bag_frames` reads the node's synchronised (RGB, depth) sets from a rosbag2 bag with the
  replay tool's reader, decoders, checks and synchroniser (:mod:`dada_ros.replay`), so training
  sees exactly the frames the node would solve; :class:`BagScenes` turns a part of them into
  self-supervised scenes (e.g. the first half of a sequence for adaptation, the second scored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ...core.errors import DadaInputError
from ...core.scenes import block_average
from .base import RGBDScene, SceneSet, depth_to_nan


def self_supervised_scene(rgb: np.ndarray, depth: np.ndarray, name: str, multiple: int = 1) -> RGBDScene:
    """(RGB H x W x 3 uint8, sensor depth h x w metres, <= 0 / NaN invalid) -> the scene
    (RGB area-resized to h x w, depth), cropped from the top-left to a multiple of ``multiple``."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise DadaInputError(f"{name}: RGB must be uint8 HxWx3, got {rgb.dtype} {rgb.shape}")
    if depth.ndim != 2:
        raise DadaInputError(f"{name}: depth must be HxW, got {depth.shape}")
    h, w = depth.shape
    if h > rgb.shape[0] or w > rgb.shape[1]:
        raise DadaInputError(f"{name}: depth {w}x{h} is larger than the RGB {rgb.shape[1]}x{rgb.shape[0]}")
    small = rgb if (h, w) == rgb.shape[:2] else cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    H, W = h - h % multiple, w - w % multiple
    if H < multiple or W < multiple:
        raise DadaInputError(f"{name}: depth {w}x{h} is smaller than {multiple} pixels")
    return RGBDScene(np.ascontiguousarray(small[:H, :W]), np.ascontiguousarray(depth_to_nan(depth)[:H, :W]), name)


class SelfSupervisedScenes:
    """Self-supervised scenes of a scene set (see the module docstring).

    Args:
        scenes: scenes with depth at the RGB resolution (e.g. realdata, generated).
        sensor_ratio: k >= 1; the "sensor" depth is the ground truth block-averaged by k.
        multiple: crop each scene to a multiple of this (e.g. the largest training ratio).
    """

    def __init__(self, scenes: SceneSet, sensor_ratio: int = 1, multiple: int = 1):
        if int(sensor_ratio) != sensor_ratio or sensor_ratio < 1:
            raise DadaInputError(f"sensor_ratio must be an integer >= 1, got {sensor_ratio}")
        self.base, self.k, self.multiple = scenes, int(sensor_ratio), int(multiple)
        self._cache: dict[int, RGBDScene] = {}

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> RGBDScene:
        if index not in self._cache:
            sc = self.base[index]
            d = sc.depth
            if self.k > 1:
                H, W = d.shape[0] - d.shape[0] % self.k, d.shape[1] - d.shape[1] % self.k
                d = block_average(d[:H, :W], (H // self.k, W // self.k))
            self._cache[index] = self_supervised_scene(sc.rgb, d, f"{sc.name}/self-x{self.k}", self.multiple)
        return self._cache[index]


def bag_frames(path: str | Path, topics=None) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Every synchronised (RGB uint8 H x W x 3, depth float32 metres h x w, RGB stamp ns) set of a
    bag, as the node would receive them (its decoders, per-message checks, synchroniser and frame
    checks; a refused message or set is skipped). ``topics``: a
    :class:`~dada_ros.replay.topics.TopicMap` (default: the node's topics)."""
    from ...ros.conversions import ConversionError, stamp_to_nanoseconds
    from ...ros.frame_checks import INPUT_KINDS, check_frame
    from ...ros.parameters import NodeSettings
    from ...ros.sync import Synchronizer
    from ...replay.bag import BagReader
    from ...replay.evaluate import decode_input
    from ...replay.topics import TopicMap

    topics = topics or TopicMap()
    node = NodeSettings.defaults()
    matched: list[tuple] = []
    out: list[tuple[np.ndarray, np.ndarray, int]] = []
    with BagReader(path) as reader:
        topics = topics.resolve(reader.topics)
        kinds = dict(zip(topics.inputs(), INPUT_KINDS))
        order = {t: i for i, t in enumerate(topics.inputs())}
        sync = Synchronizer(3, node.queue_size, node.slop, callback=lambda *msgs: matched.append(msgs),
                            on_reset=lambda reason: None, backend="internal")
        for raw in reader.messages(topics.inputs()):
            try:
                decoded = decode_input(kinds[raw.topic], raw)
            except ConversionError:
                continue  # the node drops it too (counted by dada-replay, which reports it)
            sync.add(order[raw.topic], decoded)
            while matched:
                rgb_d, info_d, depth_d = matched.pop(0)
                if check_frame(rgb_d, info_d, depth_d) is None:
                    out.append((rgb_d.array, depth_d.array, stamp_to_nanoseconds(rgb_d.msg.header.stamp)))
    if not out:
        raise DadaInputError(f"bag {path}: no synchronised RGB + depth frame on {topics.rgb}, {topics.depth}")
    return out


def split_range(n: int, part: Sequence[float]) -> range:
    """Frames [round(a n), round(b n)) of ``n`` for ``part`` = (a, b) fractions, 0 <= a < b <= 1."""
    a, b = (float(v) for v in part)
    if not 0.0 <= a < b <= 1.0:
        raise DadaInputError(f"bag part must be fractions 0 <= start < stop <= 1, got {a}, {b}")
    return range(int(round(a * n)), max(int(round(a * n)) + 1, int(round(b * n))))


class BagScenes:
    """Self-supervised scenes from the frames ``part`` (fractions of the bag's synchronised sets)
    of a bag, cropped to a multiple of ``multiple``."""

    def __init__(self, path: str | Path, part: Sequence[float] = (0.0, 1.0), multiple: int = 1,
                 frames: list | None = None):
        frames = frames if frames is not None else bag_frames(path)
        self.indices = list(split_range(len(frames), part))
        self.path = Path(path)
        self.scenes = [self_supervised_scene(frames[i][0], frames[i][1], f"{self.path.name}#{i}", multiple)
                       for i in self.indices]

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> RGBDScene:
        return self.scenes[index]
