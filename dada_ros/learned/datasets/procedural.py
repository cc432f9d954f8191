"""Unlimited synthetic training pairs from the procedural scene generator (:mod:`dada_ros.core.scenes`).

Scenes are identified by their seed; rendering a 256 x 256 scene takes ~0.5 s on one core, so a
training run renders a fixed pool once (optionally cached as .npz files) and cuts random crops,
scales and flips from it. Seed ranges keep the splits apart: training and validation seeds start
at :data:`TRAIN_SEED0` / :data:`VAL_SEED0`, far from the small seeds (0, 1, 2, ...) the tests,
benchmarks and synthetic sequences use, which are therefore held out.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ...core.atomic_file import atomic_path
from ...core.scenes import TofModel, intrinsics, random_scene, render, simulate_tof
from .base import RGBDScene, depth_to_nan

TRAIN_SEED0 = 10_000_000
VAL_SEED0 = 20_000_000


def render_scene(seed: int, size: tuple[int, int]) -> RGBDScene:
    H, W = size
    rgb, depth = render(random_scene(seed), intrinsics(W, H), (H, W))
    return RGBDScene(rgb, depth_to_nan(depth), f"seed{seed}_{H}x{W}")


class ProceduralScenes:
    """A pool of rendered scenes: ``seeds[i]`` at ``sizes[i % len(sizes)]``.

    Args:
        seeds: scene seeds.
        sizes: (H, W) render sizes cycled over the seeds (several sizes = several object scales
            in pixels, like cameras of different resolution).
        cache_dir: where rendered scenes are kept as ``seed<seed>_<H>x<W>.npz`` (None: memory only).
        lazy: render on first access instead of in the constructor.
    """

    def __init__(self, seeds: Sequence[int], sizes: Sequence[tuple[int, int]] = ((256, 256),),
                 cache_dir: str | os.PathLike | None = None, lazy: bool = False, progress: bool = False):
        self.seeds = [int(s) for s in seeds]
        self.sizes = [tuple(int(v) for v in s) for s in sizes]
        self.cache_dir = Path(cache_dir) if cache_dir else None
        if self.cache_dir:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._scenes: dict[int, RGBDScene] = {}
        if not lazy:
            it = range(len(self.seeds))
            if progress:
                from tqdm import tqdm

                it = tqdm(it, desc="rendering scenes", mininterval=10)
            for i in it:
                self[i]

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, index: int) -> RGBDScene:
        if index in self._scenes:
            return self._scenes[index]
        seed, size = self.seeds[index], self.sizes[index % len(self.sizes)]
        path = self.cache_dir / f"seed{seed}_{size[0]}x{size[1]}.npz" if self.cache_dir else None
        scene = None
        if path is not None and path.exists():
            try:
                with np.load(path) as z:
                    scene = RGBDScene(z["rgb"], z["depth"], f"seed{seed}_{size[0]}x{size[1]}")
            except (OSError, KeyError, ValueError):
                scene = None  # a torn cache file (crash while writing): render again
        if scene is None:
            scene = render_scene(seed, size)
            if path is not None:
                # Two training runs sharing one cache may render the same new seed at once.
                with atomic_path(path) as tmp:
                    np.savez(tmp, rgb=scene.rgb, depth=scene.depth)
        self._scenes[index] = scene
        return scene


def tof_source(gt: np.ndarray, rgb: np.ndarray, scale: int, rng: np.random.Generator,
               model: TofModel | None = None) -> np.ndarray:
    """ToF-like low-resolution source (noise, dropouts, flying pixels) for training augmentation;
    invalid cells are NaN."""
    H, W = gt.shape
    src = simulate_tof(gt, rgb, (H // scale, W // scale), model or TofModel(), rng)
    return np.where(src > 0, src, np.nan).astype(np.float32)
