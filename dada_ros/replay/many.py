"""Offline replays of many bags, one bag per worker process (``dada-replay --bag A B C --jobs N``).

A bag's frames stay in order inside one process (the warm start carries state from frame to
frame); bags are independent, so N of them run at once. Each worker runs exactly
:func:`~dada_ros.replay.evaluate.run_replay` on its bag, so every bag's files (metrics.json,
frames.jsonl, report, output bag) are what a serial run writes: the same scores, frame for frame,
at the same thread count (timings differ). Workers are spawned, not forked (torch's and numba's
thread pools do not survive a fork), and get ``cpus / N`` threads each unless ``--threads`` says
otherwise. One progress bar counts the frames of all bags; a bag that fails (unreadable,
truncated) is reported and does not stop the others.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import queue as queue_mod
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from ..core.errors import DadaInputError
from .evaluate import ReplayConfig, ReplayResult, expected_frames, run_replay


@dataclass
class BagOutcome:
    """One bag's replay: its result, or why it failed."""

    bag: Path
    out: Path
    result: ReplayResult | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return (self.result is not None and self.result.status.startswith("complete")
                and bool((self.result.metrics.get("input") or {}).get("frames_processed")))


def bag_out_dirs(bags: list[Path], out: Path) -> list[Path]:
    """OUT/<bag name> for each bag (a bag file's name without its suffix); names must differ."""
    names = [Path(b).stem if Path(b).is_file() else Path(b).name for b in bags]
    seen: dict[str, Path] = {}
    for name, bag in zip(names, bags):
        if name in seen:
            raise DadaInputError(f"bags {seen[name]} and {bag} would both write {out / name}: give them distinct names")
        seen[name] = bag
    return [Path(out) / n for n in names]


_FRAMES = None  # the worker's queue to the parent's progress bar


def _init_worker(frames, threads: int) -> None:
    global _FRAMES
    _FRAMES = frames
    from ..core.device import set_cpu_threads

    set_cpu_threads(threads)


def _tick() -> None:
    _FRAMES.put(1)


def _replay(cfg: ReplayConfig) -> BagOutcome:
    """Replay one bag (in a worker or here); a bad bag becomes an outcome with its reason."""
    try:
        return BagOutcome(cfg.bag, cfg.out, result=run_replay(cfg))
    except DadaInputError as exc:
        return BagOutcome(cfg.bag, cfg.out, error=str(exc))


def _work(cfg: ReplayConfig) -> BagOutcome:
    return _replay(replace(cfg, progress=False, on_frame=_tick))


def run_many(cfgs: list[ReplayConfig], jobs: int, threads: int | None = None,
             progress: bool = True) -> list[BagOutcome]:
    """Replay every config's bag, ``jobs`` at a time; outcomes in the order of ``cfgs``.

    ``jobs == 1`` replays them one after the other in this process (each with its own progress
    bar, as a single ``dada-replay`` does). ``threads``: torch/numba threads per worker
    (None: the CPUs divided among the workers).
    """
    if jobs < 1:
        raise DadaInputError(f"--jobs must be >= 1, got {jobs}")
    if jobs == 1 or len(cfgs) == 1:
        outcomes = []
        for c in cfgs:
            outcomes.append(_replay(c))
            if outcomes[-1].result is not None and outcomes[-1].result.status == "interrupted":
                break  # Ctrl-C ends the run, not only the bag being replayed
        return outcomes
    from tqdm import tqdm

    jobs = min(jobs, len(cfgs))
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    ctx = mp.get_context("spawn")
    frames = ctx.Queue()
    total = 0
    for c in cfgs:
        try:
            total += expected_frames(c)
        except DadaInputError:
            pass  # its worker reports why
    outcomes: list[BagOutcome | None] = [None] * len(cfgs)
    with tqdm(total=total, unit="frame", desc=f"dada-replay x{jobs}", disable=not progress, file=sys.stderr,
              dynamic_ncols=True) as bar, \
            cf.ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(frames, threads)) as pool:
        pending = {pool.submit(_work, c): i for i, c in enumerate(cfgs)}
        try:
            while pending:
                done, _ = cf.wait(pending, timeout=0.25, return_when=cf.FIRST_COMPLETED)
                _drain(frames, bar)
                for fut in done:
                    i = pending.pop(fut)
                    try:
                        outcomes[i] = fut.result()
                    except Exception as exc:  # noqa: BLE001 - a crashed worker fails its bag only
                        outcomes[i] = BagOutcome(cfgs[i].bag, cfgs[i].out, error=f"worker failed: {exc!r}")
                    bar.set_postfix(bags=f"{sum(o is not None for o in outcomes)}/{len(cfgs)}", refresh=False)
        except KeyboardInterrupt:
            for fut in pending:
                fut.cancel()
            raise
        _drain(frames, bar)
    return [o for o in outcomes if o is not None]


def _drain(frames, bar) -> None:
    n = 0
    while True:
        try:
            n += frames.get_nowait()
        except queue_mod.Empty:
            break
    if n:
        bar.update(n)


def pooled_summary(outcomes: list[BagOutcome]) -> dict:
    """Per method over all bags: scored frames, and MSE / MAE as the mean over every scored frame
    (each bag's summary is the mean over its frames, so this is their frame-weighted mean)."""
    acc: dict[str, dict[str, float]] = {}
    for o in outcomes:
        if o.result is None:
            continue
        for method, s in (o.result.metrics.get("summary") or {}).items():
            n = int(s.get("frames_scored") or 0)
            if not n or s.get("mse_cm2") is None:
                continue
            a = acc.setdefault(method, {"frames_scored": 0, "mse": 0.0, "mae": 0.0, "bags": 0})
            a["frames_scored"] += n
            a["mse"] += float(s["mse_cm2"]) * n
            a["mae"] += float(s["mae_cm"]) * n
            a["bags"] += 1
    return {m: {"bags": a["bags"], "frames_scored": a["frames_scored"], "mse_cm2": a["mse"] / a["frames_scored"],
                "mae_cm": a["mae"] / a["frames_scored"]} for m, a in acc.items()}


def bags_report(outcomes: list[BagOutcome], jobs: int) -> dict:
    """What OUT/bags.json holds: each bag's status and summary, and the pooled summary."""
    bags = []
    for o in outcomes:
        entry = {"bag": str(o.bag), "out": str(o.out), "ok": o.ok}
        if o.result is not None:
            m = o.result.metrics
            entry.update(status=o.result.status, frames=(m.get("input") or {}).get("frames_processed", 0),
                         summary={k: {f: v.get(f) for f in ("frames_scored", "mse_cm2", "mae_cm", "mean_iterations")}
                                  for k, v in (m.get("summary") or {}).items()})
        else:
            entry.update(status=f"failed: {o.error}")
        bags.append(entry)
    return {"tool": "dada-replay", "jobs": jobs, "bags": bags, "pooled": pooled_summary(outcomes)}


def format_pooled(report: dict) -> str:
    """The console table of :func:`bags_report`'s pooled summary."""
    ok = sum(b["ok"] for b in report["bags"])
    lines = [f"dada-replay: {ok}/{len(report['bags'])} bags complete; pooled over their scored frames:"]
    for m, s in report["pooled"].items():
        lines.append(f"  {m:<22} {s['frames_scored']:>6} frames  {s['bags']:>3} bags  MSE {s['mse_cm2']:.2f} cm^2  "
                     f"MAE {s['mae_cm']:.2f} cm")
    for b in report["bags"]:
        if not b["ok"]:
            lines.append(f"  {b['bag']}: {b['status']}")
    return "\n".join(lines)


__all__ = ["BagOutcome", "bag_out_dirs", "run_many", "pooled_summary", "bags_report", "format_pooled"]
