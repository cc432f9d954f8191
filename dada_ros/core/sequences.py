"""Synthetic RGB-D sequences: a camera moving through a procedural scene, with a ToF-like sensor.

Deterministic from a seed. Each :class:`Frame` holds the RGB guide, full-resolution ground truth,
the low-resolution ToF-like source and the intrinsics of both grids, so the replay tool can write
a realistic bag (``rgb/*``, ``depth/*``, ``depth_gt/image_rect``) and the warm-start benchmark can
score each motion type separately.

Motion segments (``SEGMENTS``): ``static`` (camera still), ``pan`` (sideways translation),
``rotate`` (yaw), ``forward`` (translation along the optical axis), ``cut`` (one frame that jumps
to a different scene, after which the sequence continues there), and the hand-held / robot
motions the warm start must survive (issue 19):

* ``fast_rotate``: turning on the spot (``fast_yaw_step``, ~20 px/frame at 640x480) with a pitch wobble;
* ``shake``: hand-held jitter, a seeded random rotation and translation increment every frame;
* ``big_pan``: keyframe-like baselines (``big_pan_step`` metres sideways plus ``big_yaw_step``
  per frame): strong parallax and disocclusion;
* ``blur``: a fast pan whose RGB frames carry horizontal motion blur (length ``blur_px`` at 640 px);
* ``exposure``: a slow pan with a seeded exposure gain and white-balance change every frame
  (the RGB changes, the depth sensor does not);
* ``dynamic``: a slow pan while a sphere crosses the scene towards the camera (``dynamic_speed``);
* ``drop``: a pan with ``drop_every - 1`` of every ``drop_every`` frames lost: each delivered
  frame is ``drop_every`` steps further and its stamp ``drop_every / fps`` later.

Every random draw of these motions comes from its own generator (seeded from ``seed``), so the
older segments and the ToF noise of a plan without the new segments are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import cv2
import numpy as np

from .errors import DadaInputError
from .scenes import (Pose, Scene, Sphere, Texture, TofModel, intrinsics, random_scene, render, rotation,
                     scale_intrinsics, simulate_tof)

SEGMENTS = ("static", "pan", "rotate", "forward", "cut",
            "fast_rotate", "shake", "big_pan", "blur", "exposure", "dynamic", "drop")
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
    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)  # exposure x white balance applied to ``rgb``


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
    fast_yaw_step: float = 0.04  # radians per frame (fast_rotate: ~36 deg/s at 15 fps)
    shake_rotation: float = 0.012  # radians, sigma of each axis' increment per frame (shake)
    shake_translation: float = 0.01  # metres, sigma per axis per frame (shake)
    big_pan_step: float = 0.25  # metres per frame (big_pan) ...
    big_yaw_step: float = 0.05  # ... plus this yaw (radians) per frame
    blur_px: float = 12.0  # blur: motion-blur length in pixels at 640 px width (pan at 3x pan_step)
    exposure_range: tuple[float, float] = (0.6, 1.5)  # exposure: gain drawn in this range per frame
    white_balance: float = 0.12  # exposure: per-channel gain drawn in 1 +- this
    dynamic_speed: float = 0.08  # metres per frame of the moving sphere (dynamic)
    drop_every: int = 4  # drop: one frame delivered out of this many
    tof: TofModel | None = field(default_factory=TofModel)
    start_time: float = 1_700_000_000.0

    def validate(self) -> None:
        for name, n in self.plan:
            if name not in SEGMENTS:
                raise DadaInputError(f"unknown motion segment {name!r}; expected one of {SEGMENTS}")
            if n < 1:
                raise DadaInputError(f"segment {name!r} needs at least one frame, got {n}")
        if int(self.drop_every) != self.drop_every or self.drop_every < 1:
            raise DadaInputError(f"drop_every must be an integer >= 1, got {self.drop_every}")
        lo, hi = self.exposure_range
        if not 0 < lo <= hi:
            raise DadaInputError(f"exposure_range must be 0 < low <= high, got {self.exposure_range}")
        if not 0 <= self.white_balance < 1:
            raise DadaInputError(f"white_balance must be in [0, 1), got {self.white_balance}")
        if not self.blur_px >= 0:
            raise DadaInputError(f"blur_px must be >= 0, got {self.blur_px}")
        if self.source_shape[0] > self.size[0] or self.source_shape[1] > self.size[1]:
            raise DadaInputError(f"source {self.source_shape} larger than guide {self.size}")


@dataclass
class _Step:
    """One delivered frame of the plan: segment, pose, scene, clock tick and appearance."""

    segment: str
    pose: Pose
    scene_seed: int
    tick: int  # frame clock (frames at ``fps``; a drop segment advances it by drop_every)
    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    blur: float = 0.0  # horizontal motion-blur length in pixels at the guide size
    mover: int = -1  # index of the dynamic segment's frame (-1: no moving object)


def _poses(cfg: SequenceConfig) -> Iterator[_Step]:
    """Integrate the motion plan: one :class:`_Step` per delivered frame."""
    t = np.zeros(3)
    yaw = 0.0
    # Rotation other than yaw (pitch wobble, shake), right-multiplied: identity for the older
    # segments, so their poses are bit-for-bit what they were before these motions existed.
    extra = np.eye(3)
    scene_seed = cfg.seed
    tick = -1
    rng = np.random.default_rng(cfg.seed + 777_001)  # motion / appearance draws only (not the ToF's)
    k_px = cfg.size[1] / 640.0
    for name, n in cfg.plan:
        for j in range(n):
            gain, blur, mover = (1.0, 1.0, 1.0), 0.0, -1
            tick += 1
            R = rotation(yaw=yaw) @ extra
            if name in ("pan", "exposure", "dynamic"):
                t = t + R @ np.array([cfg.pan_step, 0.0, 0.0])
            elif name == "rotate":
                yaw += cfg.yaw_step
            elif name == "forward":
                t = t + R @ np.array([0.0, 0.0, cfg.forward_step])
            elif name == "cut":
                scene_seed += 1000
                t, yaw, extra = np.zeros(3), 0.0, np.eye(3)
            elif name == "fast_rotate":
                yaw += cfg.fast_yaw_step
                extra = extra @ rotation(pitch=0.3 * cfg.fast_yaw_step * np.cos(0.9 * j))
            elif name == "shake":
                d_rot = rng.normal(0.0, cfg.shake_rotation, 3)
                extra = extra @ rotation(yaw=d_rot[0], pitch=d_rot[1], roll=d_rot[2])
                t = t + R @ rng.normal(0.0, cfg.shake_translation, 3)
            elif name == "big_pan":
                t = t + R @ np.array([cfg.big_pan_step, 0.0, 0.0])
                yaw -= cfg.big_yaw_step  # turn towards the scene while sliding
            elif name == "blur":
                t = t + R @ np.array([3 * cfg.pan_step, 0.0, 0.0])
                blur = cfg.blur_px * k_px
            elif name == "drop":
                t = t + R @ np.array([cfg.drop_every * cfg.pan_step, 0.0, 0.0])
                tick += int(cfg.drop_every) - 1
            if name == "exposure":
                e = rng.uniform(*cfg.exposure_range)
                wb = 1.0 + rng.uniform(-cfg.white_balance, cfg.white_balance, 3)
                gain = tuple(float(e * g) for g in wb)
            elif name == "dynamic":
                mover = j
            R = rotation(yaw=yaw) @ extra
            yield _Step(name, Pose(R.copy(), t.copy()), scene_seed, tick, gain, blur, mover)


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
    scenes: dict[int, Scene] = {}
    for i, st in enumerate(_poses(cfg)):
        if st.scene_seed not in scenes:
            scenes[st.scene_seed] = random_scene(st.scene_seed)
        scene = scenes[st.scene_seed]
        if st.mover >= 0:
            scene = _with_mover(scene, st.pose, st.mover, cfg.dynamic_speed)
        rgb, depth = render(scene, K, (H, W), st.pose)
        gt = np.where(np.isfinite(depth), depth, np.nan).astype(np.float32)
        src = simulate_tof(gt, rgb, (h, w), cfg.tof, rng) if cfg.tof is not None else _clean_source(gt, (h, w))
        # Appearance changes after the ToF simulation: they are the colour camera's, not the scene's.
        rgb = _appearance(rgb, st.gain, st.blur)
        yield Frame(i, cfg.start_time + st.tick / cfg.fps, st.segment, rgb, gt, src, K, K_depth, st.scene_seed,
                    st.gain)


def _with_mover(scene: Scene, pose: Pose, j: int, speed: float) -> Scene:
    """The scene plus a sphere crossing in front of the camera: it starts 2.6 m ahead and 0.9 m to the
    left of the segment's first pose (camera frame), and moves right and towards the camera."""
    start = pose.t + pose.R @ np.array([-0.9, 0.1, 2.6])
    step = pose.R @ np.array([speed, 0.0, -0.4 * speed])
    tex = Texture(kind="checker", color_a=(0.9, 0.2, 0.15), color_b=(0.95, 0.85, 0.2), period=0.15, angle=0.4, seed=5)
    return Scene(scene.primitives + [Sphere(start + j * step, 0.35, tex)], scene.light, scene.ambient)


def _appearance(rgb: np.ndarray, gain: tuple[float, float, float], blur: float) -> np.ndarray:
    """Exposure / white-balance gain per channel, then a horizontal motion blur of ``blur`` px."""
    out = rgb
    if gain != (1.0, 1.0, 1.0):
        out = np.clip(out.astype(np.float32) * np.asarray(gain, np.float32) + 0.5, 0, 255).astype(np.uint8)
    n = int(round(blur))
    if n >= 2:
        kernel = np.full((1, n), 1.0 / n, np.float32)
        out = cv2.filter2D(out, -1, kernel, borderType=cv2.BORDER_REPLICATE)
    return out


def _clean_source(gt: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from .scenes import block_average

    return np.nan_to_num(block_average(gt, shape), nan=0.0)
