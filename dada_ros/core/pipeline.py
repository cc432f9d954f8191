"""Per-frame video pipeline: warm-start policy + solver, shared by the ROS node and the replay tool.

``FramePipeline.process`` takes one synchronised frame (RGB guide, low-res depth in metres, stamp
in seconds) and decides how to initialise the solver:

* ``off``   (cold): Y0 from the source alone, the equilibrium policy of :class:`SolverConfig`;
* ``naive``: Y0 = previous output as is, ``warm_iterations`` steps;
* ``flow``  (default): Y0 = previous output warped by optical flow (:func:`align_previous`),
  ``warm_iterations`` steps. A short fixed budget on purpose: a tolerance would walk the warm
  answer back to the single-frame equilibrium and throw away the fused detail.

Any reason to distrust the previous frame falls back to a cold start and is reported in
``stats["cold_reason"]``: no previous frame, size change, time going backwards, a gap over
``max_age``, a scene cut (flow failed / photometric error), or a warm Y0 whose block means
disagree with the new source (the first adjustment ratio far from 1).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .errors import DadaInputError
from .inputs import check_pair
from .resample import Resampler
from .solver import DadaSolver
from .warm_start import AlignConfig, align_previous

WARM_MODES = ("off", "naive", "flow")


@dataclass
class WarmConfig:
    mode: str = "flow"
    warm_iterations: int = 100
    max_age: float = 0.5  # seconds between frames beyond which the previous output is stale
    # Median |down(Y0) / S - 1| over valid cells above this means the previous output does not fit
    # the new measurement (a cut, a 1-frame glitch): start cold rather than leave a ghost.
    max_init_ratio_error: float = 0.1
    align: AlignConfig | None = None

    def validate(self) -> None:
        if self.mode not in WARM_MODES:
            raise DadaInputError(f"warm start mode must be one of {', '.join(WARM_MODES)}, got {self.mode!r}")
        if int(self.warm_iterations) != self.warm_iterations or self.warm_iterations < 1:
            raise DadaInputError(f"warm_iterations must be an integer >= 1, got {self.warm_iterations}")
        if not self.max_age > 0:
            raise DadaInputError(f"warm_start_max_age must be > 0 seconds, got {self.max_age}")
        if not self.max_init_ratio_error > 0:
            raise DadaInputError(f"max_init_ratio_error must be > 0, got {self.max_init_ratio_error}")


@dataclass
class FrameResult:
    depth: np.ndarray  # (H, W) float32 metres, NaN = no estimate
    stats: dict


def init_ratio_error(y0: np.ndarray, source: np.ndarray) -> float:
    """Median over valid, covered source cells of |down(Y0) / S - 1| (NaN in Y0 = not covered)."""
    _, src, valid, part = check_pair(np.zeros(y0.shape + (3,), np.uint8), source)
    res = Resampler(part, torch.device("cpu"))
    down = res.down(torch.from_numpy(np.ascontiguousarray(y0, dtype=np.float32))[None, None])[0, 0].numpy()
    ok = valid & np.isfinite(down)
    if not ok.any():
        return float("inf")
    return float(np.median(np.abs(down[ok] / src[ok] - 1.0)))


class FramePipeline:
    """Holds the previous frame and applies the warm-start policy; see the module docstring."""

    def __init__(self, solver: DadaSolver, warm: WarmConfig | None = None):
        self.solver = solver
        self.warm = warm or WarmConfig()
        self.warm.validate()
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (bag loop, simulator reset, parameter change)."""
        self._prev_depth: np.ndarray | None = None
        self._prev_guide: np.ndarray | None = None
        self._prev_stamp: float | None = None

    def _warm_init(self, rgb: np.ndarray, source: np.ndarray, stamp: float) -> tuple[np.ndarray | None, dict]:
        info: dict = {"init_mode": "cold", "cold_reason": "", "flow_ms": 0.0, "warm_valid_fraction": 0.0}
        mode = self.warm.mode
        if mode == "off":
            info["cold_reason"] = "warm start off"
            return None, info
        if self._prev_depth is None:
            info["cold_reason"] = "no previous frame"
            return None, info
        if self._prev_depth.shape != rgb.shape[:2]:
            info["cold_reason"] = "image size changed"
            return None, info
        dt = stamp - self._prev_stamp
        if dt <= 0:
            info["cold_reason"] = f"time went backwards or repeated ({dt:+.3f} s)"
            return None, info
        if dt > self.warm.max_age:
            info["cold_reason"] = f"previous frame too old ({dt:.3f} s > {self.warm.max_age} s)"
            return None, info
        if mode == "naive":
            y0 = self._prev_depth
            info["warm_valid_fraction"] = float(np.isfinite(y0).mean())
        else:
            y0, valid, align = align_previous(self._prev_depth, self._prev_guide, rgb, self.warm.align)
            info["flow_ms"] = align.flow_ms
            info["warm_valid_fraction"] = align.valid_fraction
            info["photometric_error"] = align.photometric_error
            if align.cut:
                info["cold_reason"] = f"scene cut: {align.reason}"
                return None, info
        ratio_err = init_ratio_error(y0, source)
        info["init_ratio_error"] = ratio_err
        if ratio_err > self.warm.max_init_ratio_error:
            info["cold_reason"] = f"previous output disagrees with the new depth (median ratio error {ratio_err:.2f})"
            return None, info
        info["init_mode"] = mode
        return y0, info

    def process(self, rgb: np.ndarray, source: np.ndarray, stamp: float) -> FrameResult:
        """Upsample one frame; ``source`` in metres (0/NaN invalid), ``stamp`` in seconds."""
        t0 = time.perf_counter()
        if self._prev_stamp is not None and stamp <= self._prev_stamp:
            # A bag loop or simulator reset: nothing from the old timeline applies any more.
            self.reset()
            reset_reason = "time went backwards: warm-start state reset"
        else:
            reset_reason = ""
        y0, info = self._warm_init(rgb, source, stamp)
        if reset_reason:
            info["cold_reason"] = reset_reason
        if y0 is None:
            res = self.solver.solve(rgb, source)
        else:
            res = self.solver.solve(rgb, source, init=y0, iterations=int(self.warm.warm_iterations))
        self._prev_depth = res.depth
        self._prev_guide = rgb
        self._prev_stamp = stamp
        stats = res.stats.as_dict()
        stats.update(info)
        stats["frame_seconds"] = time.perf_counter() - t0
        return FrameResult(res.depth, stats)
