"""Synthetic RGB-D sequences: a camera moving through a procedural scene, with a ToF-like sensor.

Deterministic from a seed. Each :class:`Frame` holds the RGB guide, full-resolution ground truth,
the low-resolution ToF-like source and the intrinsics of both grids, so the replay tool can write
a realistic bag (``rgb/*``, ``depth/*``, ``depth_gt/image_rect``) and the warm-start benchmark can
score each motion type separately.

Motion segments (``SEGMENTS``): ``static`` (camera still), ``pan`` (sideways translation),
``rotate`` (yaw), ``forward`` (translation along the optical axis), ``cut`` (one frame that jumps
to a different scene, after which the sequence continues there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from .errors import DadaInputError
from .scenes import Pose, TofModel, intrinsics, random_scene, render, rotation, scale_intrinsics, simulate_tof

SEGMENTS = ("static", "pan", "rotate", "forward", "cut")
DEFAULT_PLAN = (("static", 6), ("pan", 18), ("rotate", 14), ("forward", 14), ("cut", 1), ("pan", 11))


@dataclass
class Frame:
    index: int
    stamp: float  # seconds
    segment: str
    rgb: np.ndarray  # (H, W, 3) uint8
    gt: np.ndarray  # (H, W) float32 metres, NaN = no ground truth
    source: np.ndarray  # (h, w) float32 metres, 0 = no return
    K_rgb: np.ndarray  # 3x3
    K_depth: np.ndarray  # 3x3, the same camera at the source resolution (registered depth)
    scene_seed: int


@dataclass
class SequenceConfig:
    seed: int = 0
    size: tuple[int, int] = (480, 640)  # guide (H, W)
    source_shape: tuple[int, int] = (120, 160)  # ToF (h, w); (172, 224) for a non-integer ratio
    fps: float = 15.0
    plan: tuple[tuple[str, int], ...] = DEFAULT_PLAN
    pan_step: float = 0.012  # metres per frame
    yaw_step: float = 0.004  # radians per frame
    forward_step: float = 0.02  # metres per frame
    tof: TofModel | None = field(default_factory=TofModel)
    start_time: float = 1_700_000_000.0

    def validate(self) -> None:
        for name, n in self.plan:
            if name not in SEGMENTS:
                raise DadaInputError(f"unknown motion segment {name!r}; expected one of {SEGMENTS}")
            if n < 1:
                raise DadaInputError(f"segment {name!r} needs at least one frame, got {n}")
        if self.source_shape[0] > self.size[0] or self.source_shape[1] > self.size[1]:
            raise DadaInputError(f"source {self.source_shape} larger than guide {self.size}")


def _poses(cfg: SequenceConfig) -> Iterator[tuple[str, Pose, int]]:
    """(segment, camera pose, scene seed) per frame, integrating the motion plan."""
    t = np.zeros(3)
    yaw = 0.0
    scene_seed = cfg.seed
    for name, n in cfg.plan:
        for _ in range(n):
            if name == "pan":
                t = t + rotation(yaw=yaw) @ np.array([cfg.pan_step, 0.0, 0.0])
            elif name == "rotate":
                yaw += cfg.yaw_step
            elif name == "forward":
                t = t + rotation(yaw=yaw) @ np.array([0.0, 0.0, cfg.forward_step])
            elif name == "cut":
                scene_seed += 1000
                t, yaw = np.zeros(3), 0.0
            yield name, Pose(rotation(yaw=yaw), t.copy()), scene_seed


def sequence_length(cfg: SequenceConfig) -> int:
    return sum(n for _, n in cfg.plan)


def make_sequence(cfg: SequenceConfig | None = None) -> Iterator[Frame]:
    """Render the sequence frame by frame (a generator: 640x480 frames take ~0.5 s each)."""
    cfg = cfg or SequenceConfig()
    cfg.validate()
    H, W = cfg.size
    h, w = cfg.source_shape
    K = intrinsics(W, H)
    K_depth = scale_intrinsics(K, w / W, h / H)
    rng = np.random.default_rng(cfg.seed + 424242)
    scenes: dict[int, object] = {}
    for i, (name, pose, scene_seed) in enumerate(_poses(cfg)):
        if scene_seed not in scenes:
            scenes[scene_seed] = random_scene(scene_seed)
        rgb, depth = render(scenes[scene_seed], K, (H, W), pose)
        gt = np.where(np.isfinite(depth), depth, np.nan).astype(np.float32)
        src = simulate_tof(gt, rgb, (h, w), cfg.tof, rng) if cfg.tof is not None else _clean_source(gt, (h, w))
        yield Frame(i, cfg.start_time + i / cfg.fps, name, rgb, gt, src, K, K_depth, scene_seed)


def _clean_source(gt: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from .scenes import block_average

    return np.nan_to_num(block_average(gt, shape), nan=0.0)
