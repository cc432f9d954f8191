"""What every dataset provides and how training/evaluation examples are cut from it.

A dataset is a sequence of :class:`RGBDScene` (full images: RGB uint8 and ground-truth depth in
metres, NaN where unknown). Examples follow the reference protocol (prs-eth/graph-super-
resolution, which DADA's code uses):

* source = block average over the VALID ground-truth pixels of each s x s cell (nanmean; a cell
  without one is invalid), exactly :func:`dada_ros.core.scenes.block_average`;
* Y0 / the network's depth input = the solver's own cold start (hole fill by rim averaging, bicubic,
  clamped to the source range), so training sees what inference sees;
* training crops are random, flipped horizontally with p = 0.5, and rejected when less than 80 %
  of the ground truth or 90 % of the source cells are valid (as the authors do);
* evaluation uses non-overlapping tiles from the top-left corner (256 x 256 in the paper).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence

import numpy as np
import torch

from ...core.resample import fill_holes, initial_upsample
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
        filled, _ = fill_holes(src, valid, "average")  # the solver's default Y0 hole fill
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


@dataclass(frozen=True)
class CropKey:
    """Where a training crop came from, enough to cut it again: scene, top-left corner, flip,
    whether its source was the alternative (e.g. ToF-like) one, and the offset (dy, dx) of the
    depth crop against the RGB crop (misregistration augmentation; 0, 0: registered)."""

    scene: int
    i: int
    j: int
    flip: bool
    alt_source: bool
    dy: int = 0
    dx: int = 0


def sampling_problem(scales: Sequence[int], scale_weights: Sequence[float] | None, hard_prob: float,
                     hard_pool: int, misregister_px: int = 0, misregister_prob: float = 0.0) -> str | None:
    """Why these :class:`CropSampler` settings are invalid, or None (shared with the trainer's
    config check, which reports it before any scene is rendered)."""
    if not 0 <= hard_prob <= 1 or hard_pool < 1:
        return f"hard_prob must be in [0, 1] and hard_pool >= 1, got {hard_prob}, {hard_pool}"
    if scale_weights is not None and (len(scale_weights) != len(scales) or min(scale_weights) < 0
                                      or sum(scale_weights) <= 0):
        return (f"scale_weights {list(scale_weights)} must be one non-negative weight per scale "
                f"{list(scales)}, not all zero")
    if int(misregister_px) != misregister_px or misregister_px < 0 or not 0 <= misregister_prob <= 1:
        return (f"misregister_px must be an integer >= 0 and misregister_prob in [0, 1], got "
                f"{misregister_px}, {misregister_prob}")
    return None


class CropSampler:
    """Random training crops from a :class:`SceneSet`: one scale per batch, flips, hole rejection,
    and optional hard-example replay.

    Args:
        scenes: the training scenes.
        crop: crop size (square), a multiple of every scale.
        scales: scale factors sampled uniformly per batch (scale-agnostic training).
        rng: numpy Generator (seeded by the trainer, stored for resume).
        source_fn: optional ``(gt_crop, rgb_crop, scale, rng) -> source`` (e.g. ToF-like noise) used
            with probability ``source_prob`` instead of the block average.
        hard_prob: probability that an example is re-cut from the pool of the highest-loss crops
            seen so far at that scale (fed by :meth:`record`); 0 disables it.
        hard_pool: crops kept per scale in that pool.
        scale_weights: relative frequency of each scale (None: uniform).
        misregister_px, misregister_prob: with probability ``misregister_prob`` a crop's depth
            (truth and source) is cut ``dy, dx`` pixels away from its RGB, each drawn uniformly in
            [-misregister_px, misregister_px]: a real sensor's depth is registered to its colour
            camera to a pixel or a few, not exactly, and a model trained on exact registration
            learns to put depth edges on colour edges (0: off).

    Why the replay: the metric that matters (MSE pooled over scenes) is dominated by a few rare
    configurations -- an object with the texture of the wall behind it, a thin object in front of
    a far wall -- where a model that learned "texture edges are not depth edges" fails badly.
    Uniform crops show them too rarely for the loss to weigh them.
    """

    def __init__(self, scenes: SceneSet, crop: int, scales: Sequence[int], rng: np.random.Generator,
                 source_fn=None, source_prob: float = 0.0, min_gt_valid: float = 0.8, min_src_valid: float = 0.9,
                 hard_prob: float = 0.0, hard_pool: int = 256, scale_weights: Sequence[float] | None = None,
                 misregister_px: int = 0, misregister_prob: float = 0.0):
        for s in scales:
            if crop % s:
                raise ValueError(f"crop {crop} is not a multiple of scale {s}")
        if len(scenes) == 0:
            raise ValueError("no training scenes")
        problem = sampling_problem(scales, scale_weights, hard_prob, hard_pool, misregister_px, misregister_prob)
        if problem:
            raise ValueError(problem)
        self.scenes, self.crop, self.scales, self.rng = scenes, crop, list(scales), rng
        self.source_fn, self.source_prob = source_fn, source_prob
        self.min_gt_valid, self.min_src_valid = min_gt_valid, min_src_valid
        self.hard_prob, self.hard_pool = hard_prob, hard_pool
        self.misregister_px, self.misregister_prob = int(misregister_px), float(misregister_prob)
        w = np.asarray(scale_weights if scale_weights is not None else [1.0] * len(self.scales), float)
        self.scale_p = w / w.sum()
        self.hard: dict[int, list[tuple[float, CropKey]]] = {s: [] for s in self.scales}
        self.last_keys: list[CropKey] = []

    def cut(self, key: CropKey, scale: int) -> Example | None:
        """The example for ``key`` at ``scale``; None if it has too little valid depth."""
        c = self.crop
        sc = self.scenes[key.scene]
        di, dj = key.i + key.dy, key.j + key.dx
        rgb, gt = sc.rgb[key.i:key.i + c, key.j:key.j + c], sc.depth[di:di + c, dj:dj + c]
        if gt.shape != (c, c) or min(di, dj) < 0:  # a shifted depth crop beyond the scene
            return None
        if key.flip:
            rgb, gt = rgb[:, ::-1], gt[:, ::-1]
        rgb, gt = np.ascontiguousarray(rgb), np.ascontiguousarray(gt)
        if np.isfinite(gt).mean() < self.min_gt_valid:
            return None
        src = self.source_fn(gt, rgb, scale, self.rng) if key.alt_source and self.source_fn is not None else None
        ex = make_example(rgb, gt, scale, src)
        valid = np.isfinite(ex.source) & (ex.source > 0)
        return ex if valid.mean() >= self.min_src_valid else None

    def example(self, scale: int, tries: int = 32) -> Example:
        return self._example(scale, tries)[0]

    def _example(self, scale: int, tries: int = 32) -> tuple[Example, CropKey]:
        pool = self.hard.get(scale, [])
        if pool and self.hard_prob > 0 and self.rng.random() < self.hard_prob:
            key = pool[int(self.rng.integers(len(pool)))][1]
            ex = self.cut(key, scale)
            if ex is not None:
                return ex, key
        c = self.crop
        for _ in range(tries):
            n = int(self.rng.integers(len(self.scenes)))
            H, W = self.scenes[n].depth.shape
            dy = dx = 0
            if self.misregister_px and self.rng.random() < self.misregister_prob:
                dy, dx = (int(v) for v in self.rng.integers(-self.misregister_px, self.misregister_px + 1, 2))
            if H < c + abs(dy) or W < c + abs(dx):
                continue
            # both the RGB crop at (i, j) and the depth crop at (i + dy, j + dx) inside the scene
            key = CropKey(n, int(self.rng.integers(max(0, -dy), H - c - max(0, dy) + 1)),
                          int(self.rng.integers(max(0, -dx), W - c - max(0, dx) + 1)),
                          bool(self.rng.random() < 0.5),
                          self.source_fn is not None and bool(self.rng.random() < self.source_prob), dy, dx)
            ex = self.cut(key, scale)
            if ex is not None:
                return ex, key
        raise ValueError(f"no crop with enough valid depth after {tries} tries (crop {c}, scale {scale})")

    def batch(self, size: int) -> Batch:
        """A batch at one random scale; its crops' keys are left in ``last_keys`` for :meth:`record`."""
        scale = self.scales[int(self.rng.choice(len(self.scales), p=self.scale_p))]
        pairs = [self._example(scale) for _ in range(size)]
        self.last_keys = [k for _, k in pairs]
        return collate([e for e, _ in pairs])

    def record(self, scale: int, keys: Sequence[CropKey], losses: Sequence[float]) -> None:
        """Offer crops and their losses to the hard pool of ``scale`` (it keeps the highest; a crop
        already there gets its newest loss, so one the model has learned drops out)."""
        if self.hard_prob <= 0:
            return
        pool = {k: v for v, k in self.hard[scale]}
        pool.update({k: float(v) for k, v in zip(keys, losses)})
        best = sorted(pool.items(), key=lambda kv: kv[1], reverse=True)[: self.hard_pool]
        self.hard[scale] = [(v, k) for k, v in best]

    def pool_state(self) -> str:
        """The hard pools as JSON (checkpoint resume state)."""
        return json.dumps({str(s): [[v, [k.scene, k.i, k.j, k.flip, k.alt_source, k.dy, k.dx]] for v, k in pool]
                           for s, pool in self.hard.items()})

    def load_pool_state(self, state: str) -> None:
        for s, pool in json.loads(state).items():
            if int(s) in self.hard:
                # 5 fields: a state saved before the misregistration offsets (registered crops)
                self.hard[int(s)] = [(float(v), CropKey(int(k[0]), int(k[1]), int(k[2]), bool(k[3]), bool(k[4]),
                                                        *(int(x) for x in k[5:7])))
                                     for v, k in pool]


def tiles(scene: RGBDScene, tile: int | None) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Non-overlapping ``tile`` x ``tile`` crops from the top-left (None: the whole image)."""
    if tile is None:
        yield scene.name, scene.rgb, scene.depth
        return
    H, W = scene.depth.shape
    for i in range(0, H - tile + 1, tile):
        for j in range(0, W - tile + 1, tile):
            yield f"{scene.name}@{i},{j}", scene.rgb[i:i + tile, j:j + tile], scene.depth[i:i + tile, j:j + tile]


class MixedScenes:
    """Two scene sets sampled about equally often however many scenes each has (a uniform index
    over this set draws from ``a`` with probability ``a_fraction``): e.g. a few real scenes
    beside many procedural ones, so the real ones are not drowned."""

    def __init__(self, a: SceneSet, b: SceneSet, a_fraction: float = 0.5):
        if not 0 < a_fraction < 1 or len(a) == 0 or len(b) == 0:
            raise ValueError(f"mixing needs two non-empty sets and a fraction in (0, 1), got {a_fraction}")
        self.a, self.b = a, b
        # n_a slots for a, len(b) for b, with n_a / (n_a + len(b)) ~= a_fraction
        self.n_a = max(len(a), int(round(a_fraction / (1 - a_fraction) * len(b))))

    def __len__(self) -> int:
        return self.n_a + len(self.b)

    def __getitem__(self, index: int) -> RGBDScene:
        return self.a[index % len(self.a)] if index < self.n_a else self.b[index - self.n_a]
