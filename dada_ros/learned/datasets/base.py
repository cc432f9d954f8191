"""What every dataset provides and how training/evaluation examples are cut from it.

A dataset is a sequence of :class:`RGBDScene` (full images: RGB uint8 and ground-truth depth in
metres, NaN where unknown). Examples follow the reference protocol (prs-eth/graph-super-
resolution, which DADA's code uses):

* source = block average over the VALID ground-truth pixels of each s x s cell (nanmean; a cell
  without one is invalid), exactly :func:`dada_ros.core.scenes.block_average`;
* Y0 / the network's depth input = the solver's own cold start (nearest hole fill, bicubic,
  clamped to the source range), so training sees what inference sees;
* training crops are random, flipped horizontally with p = 0.5, and rejected when less than 80 %
  of the ground truth or 90 % of the source cells are valid (as the authors do);
* evaluation uses non-overlapping tiles from the top-left corner (256 x 256 in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence

import numpy as np
import torch

from ...core.resample import fill_invalid_nearest, initial_upsample
from ...core.scenes import block_average


@dataclass
class RGBDScene:
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 metres, NaN = no ground truth
    name: str


class SceneSet(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> RGBDScene: ...


def depth_to_nan(depth: np.ndarray) -> np.ndarray:
    """float32 metres with every non-finite or <= 0 value replaced by NaN."""
    d = np.asarray(depth, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(d) & (d > 0), d, np.nan).astype(np.float32)


@dataclass
class Example:
    """One guided-upsampling example cut from a scene (numpy, what the solver would get)."""

    rgb: np.ndarray  # (H, W, 3) uint8
    gt: np.ndarray  # (H, W) float32 metres, NaN = unknown
    source: np.ndarray  # (h, w) float32 metres, NaN = invalid cell
    scale: int


def make_example(rgb: np.ndarray, gt: np.ndarray, scale: int, source: np.ndarray | None = None) -> Example:
    """Example with the protocol's block-average source (or the given one, e.g. ToF-like)."""
    H, W = gt.shape
    if H % scale or W % scale:
        raise ValueError(f"crop {H}x{W} is not a multiple of the scale {scale}")
    src = block_average(gt, (H // scale, W // scale)) if source is None else source
    return Example(rgb, gt, src, scale)


@dataclass
class Batch:
    """Training tensors for one batch (all on one device)."""

    rgb: torch.Tensor  # (B, 3, H, W) in [0, 1]
    gt: torch.Tensor  # (B, 1, H, W) metres, 0 where unknown
    gt_valid: torch.Tensor  # (B, 1, H, W) bool
    source: torch.Tensor  # (B, 1, h, w) metres, 0 where invalid
    valid: torch.Tensor  # (B, 1, h, w) bool
    y0: torch.Tensor  # (B, 1, H, W) the solver's cold start in metres
    scale: int

    def to(self, device: torch.device) -> "Batch":
        return Batch(*(t.to(device) for t in (self.rgb, self.gt, self.gt_valid, self.source, self.valid, self.y0)),
                     scale=self.scale)


def collate(examples: Sequence[Example]) -> Batch:
    """Stack examples of one size and scale into a :class:`Batch` (Y0 as the solver makes it)."""
    rgbs, gts, gvs, srcs, vals, y0s = [], [], [], [], [], []
    for ex in examples:
        gt_valid = np.isfinite(ex.gt) & (ex.gt > 0)
        valid = np.isfinite(ex.source) & (ex.source > 0)
        src = np.where(valid, ex.source, 0).astype(np.float32)
        filled, _ = fill_invalid_nearest(src, valid)
        y0s.append(initial_upsample(filled, ex.gt.shape, "bicubic"))
        rgbs.append(ex.rgb.astype(np.float32).transpose(2, 0, 1) / 255.0)
        gts.append(np.where(gt_valid, ex.gt, 0).astype(np.float32))
        gvs.append(gt_valid)
        srcs.append(src)
        vals.append(valid)

    def t(a, dtype=None):
        x = torch.from_numpy(np.ascontiguousarray(np.stack(a)))
        return x if dtype is None else x.to(dtype)

    return Batch(
        rgb=t(rgbs), gt=t(gts)[:, None], gt_valid=t(gvs)[:, None], source=t(srcs)[:, None],
        valid=t(vals)[:, None], y0=t(y0s)[:, None], scale=int(examples[0].scale),
    )


class CropSampler:
    """Random training crops from a :class:`SceneSet`: one scale per batch, flips, hole rejection.

    Args:
        scenes: the training scenes.
        crop: crop size (square), a multiple of every scale.
        scales: scale factors sampled uniformly per batch (scale-agnostic training).
        rng: numpy Generator (seeded by the trainer, stored for resume).
        source_fn: optional ``(gt_crop, rgb_crop, scale, rng) -> source`` (e.g. ToF-like noise) used
            with probability ``source_prob`` instead of the block average.
    """

    def __init__(self, scenes: SceneSet, crop: int, scales: Sequence[int], rng: np.random.Generator,
                 source_fn=None, source_prob: float = 0.0, min_gt_valid: float = 0.8, min_src_valid: float = 0.9):
        for s in scales:
            if crop % s:
                raise ValueError(f"crop {crop} is not a multiple of scale {s}")
        if len(scenes) == 0:
            raise ValueError("no training scenes")
        self.scenes, self.crop, self.scales, self.rng = scenes, crop, list(scales), rng
        self.source_fn, self.source_prob = source_fn, source_prob
        self.min_gt_valid, self.min_src_valid = min_gt_valid, min_src_valid

    def example(self, scale: int, tries: int = 32) -> Example:
        c = self.crop
        for _ in range(tries):
            sc = self.scenes[int(self.rng.integers(len(self.scenes)))]
            H, W = sc.depth.shape
            if H < c or W < c:
                continue
            i, j = int(self.rng.integers(H - c + 1)), int(self.rng.integers(W - c + 1))
            rgb, gt = sc.rgb[i:i + c, j:j + c], sc.depth[i:i + c, j:j + c]
            if self.rng.random() < 0.5:
                rgb, gt = rgb[:, ::-1], gt[:, ::-1]
            rgb, gt = np.ascontiguousarray(rgb), np.ascontiguousarray(gt)
            if np.isfinite(gt).mean() < self.min_gt_valid:
                continue
            src = None
            if self.source_fn is not None and self.rng.random() < self.source_prob:
                src = self.source_fn(gt, rgb, scale, self.rng)
            ex = make_example(rgb, gt, scale, src)
            valid = np.isfinite(ex.source) & (ex.source > 0)
            if valid.mean() < self.min_src_valid:
                continue
            return ex
        raise ValueError(f"no crop with enough valid depth after {tries} tries (crop {c}, scale {scale})")

    def batch(self, size: int) -> Batch:
        scale = self.scales[int(self.rng.integers(len(self.scales)))]
        return collate([self.example(scale) for _ in range(size)])


def tiles(scene: RGBDScene, tile: int | None) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Non-overlapping ``tile`` x ``tile`` crops from the top-left (None: the whole image)."""
    if tile is None:
        yield scene.name, scene.rgb, scene.depth
        return
    H, W = scene.depth.shape
    for i in range(0, H - tile + 1, tile):
        for j in range(0, W - tile + 1, tile):
            yield f"{scene.name}@{i},{j}", scene.rgb[i:i + tile, j:j + tile], scene.depth[i:i + tile, j:j + tile]
