"""Classical upsamplers behind the solver's signature: ``(guide, source) -> (H, W) metres``.

These are the peers users know: interpolation (bicubic, nearest) and OpenCV's ximgproc joint
bilateral filter, guided filter and fast global smoother (opencv-contrib). The filters take the
bicubic upsampling of the hole-filled source as the image to filter and the RGB guide as the
edge map. Pixels farther than ``max_fill_distance`` source cells from any measurement are NaN,
exactly as in the solver, so coverage is comparable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from .errors import DadaInputError
from .inputs import check_pair
from .resample import fill_invalid_nearest, initial_upsample


@dataclass
class BaselineParams:
    """Filter settings, tuned on generated scenes at x8 (``benchmarks/quality.py``)."""

    jbf_diameter: int = -1  # -1: derived from sigma_space
    jbf_sigma_color: float = 12.0  # guide intensity units (0..255)
    jbf_sigma_space_cells: float = 0.75  # spatial sigma in source cells (scales with the ratio)
    guided_radius_cells: float = 1.0
    guided_eps: float = (0.02 * 255) ** 2
    fgs_lambda: float = 60.0
    fgs_sigma_color: float = 8.0
    max_fill_distance: float = 8.0


def _prepare(guide: np.ndarray, source: np.ndarray, params: BaselineParams, mode: str):
    rgb, src, valid, part = check_pair(guide, source)
    filled, dist = fill_invalid_nearest(src, valid)
    up = initial_upsample(filled, part.guide_shape, mode)
    guide8 = (rgb * 255 + 0.5).astype(np.uint8)
    far = part.expand(dist) > params.max_fill_distance
    return guide8, up, part.scale, far


def _finish(out: np.ndarray, far: np.ndarray) -> np.ndarray:
    out = out.astype(np.float32)
    out[far] = np.nan
    return out


def bicubic(guide, source, params: BaselineParams | None = None) -> np.ndarray:
    p = params or BaselineParams()
    _, up, _, far = _prepare(guide, source, p, "bicubic")
    return _finish(up, far)


def nearest(guide, source, params: BaselineParams | None = None) -> np.ndarray:
    p = params or BaselineParams()
    _, up, _, far = _prepare(guide, source, p, "nearest")
    return _finish(up, far)


def joint_bilateral(guide, source, params: BaselineParams | None = None) -> np.ndarray:
    p = params or BaselineParams()
    g, up, scale, far = _prepare(guide, source, p, "bicubic")
    sigma_space = max(1.0, p.jbf_sigma_space_cells * scale)
    # OpenCV wants the joint image in the source's depth (float32), still on the 0..255 scale.
    out = cv2.ximgproc.jointBilateralFilter(g.astype(np.float32), up, p.jbf_diameter, p.jbf_sigma_color, sigma_space)
    return _finish(out, far)


def guided(guide, source, params: BaselineParams | None = None) -> np.ndarray:
    p = params or BaselineParams()
    g, up, scale, far = _prepare(guide, source, p, "bicubic")
    radius = max(1, int(round(p.guided_radius_cells * scale)))
    out = cv2.ximgproc.guidedFilter(g, up, radius, p.guided_eps)
    return _finish(out, far)


def fast_global_smoother(guide, source, params: BaselineParams | None = None) -> np.ndarray:
    p = params or BaselineParams()
    g, up, _, far = _prepare(guide, source, p, "bicubic")
    out = cv2.ximgproc.fastGlobalSmootherFilter(g, up, p.fgs_lambda, p.fgs_sigma_color)
    return _finish(out, far)


BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "bicubic": bicubic,
    "nearest": nearest,
    "jbf": joint_bilateral,
    "guided": guided,
    "fgs": fast_global_smoother,
}


def run_baseline(name: str, guide: np.ndarray, source: np.ndarray,
                 params: BaselineParams | None = None) -> tuple[np.ndarray, float]:
    """Run baseline ``name`` -> (depth (H, W) metres, seconds)."""
    if name not in BASELINES:
        raise DadaInputError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")
    t0 = time.perf_counter()
    out = BASELINES[name](guide, source, params)
    return out, time.perf_counter() - t0
