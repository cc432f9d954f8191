"""Tiles of an evaluation scored in worker processes (``dada-eval --jobs N``).

The parent reads the scenes and cuts the tiles (cheap), N spawned workers run every method on
them (:func:`~dada_ros.learned.evaluate.score_tile`, the serial code), and the scores come back in
tile order, so :func:`~dada_ros.learned.evaluate.evaluate` pools exactly what a serial run pools.
At most ``2 N`` tiles are in flight: a large dataset never sits in memory whole. Each worker builds
its own solvers once and gets ``threads / N`` torch/numba threads (at least one).
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import multiprocessing as mp
from typing import Iterable, Iterator, Sequence

import torch

from ..core.solver import SolverConfig
from .datasets.base import RGBDScene, tiles
from .evaluate import SourceFn, TileScore, make_solvers, score_tile

_WORKER: dict = {}


def _init(rows: list[str], models: dict[str, str], config: SolverConfig, weights: str | None,
          source_fn: SourceFn | None, scales: list[int], threads: int) -> None:
    from ..core.device import set_cpu_threads

    set_cpu_threads(threads)
    methods = [r for r in rows if r not in models]
    _WORKER.update(solvers=make_solvers(methods, models, config, weights), rows=rows, models=models,
                   source_fn=source_fn, scales=scales)


def _score(name: str, rgb, gt) -> list[TileScore] | None:
    w = _WORKER
    return score_tile(name, rgb, gt, w["scales"], w["rows"], w["models"], w["solvers"], w["source_fn"])


def scored_tiles_parallel(scenes: Iterable[RGBDScene], tile: int | None, scales: Sequence[int], rows: Sequence[str],
                          models: dict[str, str], config: SolverConfig, weights: str | None,
                          source_fn: SourceFn | None, jobs: int) -> Iterator[tuple[str, str, list[TileScore]]]:
    """What :func:`~dada_ros.learned.evaluate.scored_tiles` yields, the scoring done by ``jobs`` workers."""
    # Built once here too, so that a bad checkpoint is one clear error, not a broken pool.
    make_solvers([r for r in rows if r not in models], models, config, weights)
    threads = max(1, torch.get_num_threads() // jobs)
    ctx = mp.get_context("spawn")  # torch's and numba's thread pools do not survive a fork
    init = (list(rows), dict(models), config, weights, source_fn, [int(s) for s in scales], threads)
    with cf.ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init, initargs=init) as pool:
        window: collections.deque = collections.deque()
        for scene in scenes:
            for name, rgb, gt in tiles(scene, tile):
                window.append((scene.name, name, pool.submit(_score, name, rgb, gt)))
                while len(window) >= 2 * jobs:
                    yield from _done(window.popleft())
        while window:
            yield from _done(window.popleft())


def _done(item) -> Iterator[tuple[str, str, list[TileScore]]]:
    scene_name, name, fut = item
    scores = fut.result()
    if scores is not None:
        yield scene_name, name, scores


__all__ = ["scored_tiles_parallel"]
