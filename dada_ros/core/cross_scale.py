"""Ground-truth-free check of a solver on one frame: how well it predicts the frame's own source
from a coarser copy of it (cross-scale self-validation).

The learned model's guard (:mod:`.guard`) runs it to decide, per frame or every N frames, whether
the learned guide or DADA-free serves the camera better; ``benchmarks/learned_folds.py --guard``
measures how often it picks the better one, out of fold. Core only (numpy, OpenCV, the solver).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import DadaInputError

CROSS_SCALE_MODES = ("source", "guide", "half")
CROSS_SCALE_MEASURES = ("depth", "inverse", "log")


def _coarser(source: np.ndarray, factor: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(the source cropped to a multiple of ``factor`` in height and width, NaN = invalid; its
    ``factor`` x ``factor`` block average over valid cells, NaN where a block has none)."""
    from .scenes import block_average

    k = int(factor)
    h, w = source.shape[0] - source.shape[0] % k, source.shape[1] - source.shape[1] % k
    if k < 2 or h < k or w < k:
        raise DadaInputError(f"source {source.shape} is too small for a x{factor} coarser copy (factor >= 2)")
    src = np.asarray(source, dtype=np.float32)[:h, :w]
    src = np.where(np.isfinite(src) & (src > 0), src, np.nan).astype(np.float32)
    return src, block_average(src, (h // k, w // k))


def _measures(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Mean squared error of depth, of inverse depth and of log depth over the pixels where both
    are finite and the truth is > 0 (a prediction <= 0 counts at 1e-4 in the inverse and the
    log, as the training loss clamps it). NaN when no pixel qualifies."""
    m = np.isfinite(truth) & (truth > 0) & np.isfinite(pred)
    if not m.any():
        return {k: math.nan for k in CROSS_SCALE_MEASURES}
    p, t = pred[m].astype(np.float64), truth[m].astype(np.float64)
    pc = np.maximum(p, 1e-4)
    return {"depth": float(np.mean((p - t) ** 2)), "inverse": float(np.mean((1.0 / pc - 1.0 / t) ** 2)),
            "log": float(np.mean((np.log(pc) - np.log(t)) ** 2))}


def cross_scale_measures(rgb: np.ndarray, source: np.ndarray, solvers: dict, mode: str = "source",
                         factor: int = 2) -> dict[str, dict[str, float]]:
    """Ground-truth-free errors of each solver on one frame: how well it predicts the frame's own
    source from a ``factor`` x coarser copy of it.

    The source (h x w, 0 or NaN = invalid) is cropped to a multiple of ``factor`` and
    block-averaged over its valid cells (the protocol's down operator); then

    * ``mode="source"`` (cheap): each solver upsamples that coarser copy ``factor`` x with the
      guide area-resized to the source's grid, and is scored against the source;
    * ``mode="guide"``: each solver upsamples it to the full guide (ratio ``factor`` x the real
      one), its output is block-averaged back to the source's grid and scored against the source;
    * ``mode="half"``: each solver upsamples it at the REAL ratio onto the guide area-resized by
      1 / ``factor`` (a ratio-conditioned network runs where it was trained; 1 / factor^2 of the
      pixels), block-averaged back to the source's grid (the ratio must be a multiple of
      ``factor``).

    Args:
        rgb: the guide (H, W, 3) uint8, H and W an integer multiple of the source's.
        source: (h, w) depth.
        solvers: ``{name: DadaSolver}`` (e.g. ``{"dada-free": ..., "dada": ...}``).
        mode: ``"source"``, ``"guide"`` or ``"half"``.
        factor: the extra downsampling, an integer >= 2.

    Returns:
        ``{name: {"depth", "inverse", "log": mean squared error over the valid source cells}}``
        (depth in the source's unit squared; NaN for a solver that left every such cell
        unpredicted).
    """
    import cv2

    from .scenes import block_average

    if mode not in CROSS_SCALE_MODES:
        raise DadaInputError(f"cross-scale mode must be one of {CROSS_SCALE_MODES}, got {mode!r}")
    H, W = rgb.shape[:2]
    h0, w0 = source.shape
    if H % h0 or W % w0 or H // h0 != W // w0:
        raise DadaInputError(f"guide {H}x{W} is not an integer multiple of the source {h0}x{w0}")
    ratio = H // h0
    if mode == "half" and ratio % int(factor):
        raise DadaInputError(f"cross-scale mode half needs a ratio that is a multiple of {factor}, got {ratio}")
    src, coarse = _coarser(source, factor)
    h, w = src.shape
    if not np.isfinite(src).any() or not np.isfinite(coarse).any():
        raise DadaInputError("the source has no valid cell")
    coarse0 = np.nan_to_num(coarse, nan=0.0)
    guide = np.ascontiguousarray(rgb[: h * ratio, : w * ratio])
    if mode == "source":
        guide = cv2.resize(guide, (w, h), interpolation=cv2.INTER_AREA)
    elif mode == "half":
        k = int(factor)
        guide = cv2.resize(guide, (w * ratio // k, h * ratio // k), interpolation=cv2.INTER_AREA)
    out = {}
    for name, solver in solvers.items():
        pred = solver.solve(guide, coarse0).depth
        if mode != "source":
            pred = block_average(pred, (h, w))
        out[name] = _measures(pred, src)
    return out


def cross_scale_errors(rgb: np.ndarray, source: np.ndarray, solvers: dict, mode: str = "source",
                       factor: int = 2) -> dict[str, float]:
    """:func:`cross_scale_measures`' depth MSE alone: ``{name: mean squared error}``."""
    return {n: m["depth"] for n, m in cross_scale_measures(rgb, source, solvers, mode, factor).items()}


def cross_scale_pick(errors: dict[str, float], default: str = "dada-free", margin: float = 1.0) -> str:
    """The method a frame should use by its :func:`cross_scale_errors`: the one with the lowest
    error, unless it is not below ``margin`` x ``default``'s (then ``default``; NaN never wins)."""
    if default not in errors:
        raise DadaInputError(f"errors lack the default method {default!r}")
    best = min((e, n) for n, e in errors.items() if math.isfinite(e)) if any(
        math.isfinite(e) for e in errors.values()) else (math.nan, default)
    ref = errors[default]
    if best[1] == default or not math.isfinite(ref) or best[0] < margin * ref:
        return best[1] if math.isfinite(best[0]) else default
    return default
