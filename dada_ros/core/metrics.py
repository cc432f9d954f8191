"""Accuracy metrics over valid ground truth, in the paper's units, and the consistency error.

Only pixels with finite, positive ground truth are scored. A prediction that is NaN where the
ground truth is valid is not scored either but lowers ``coverage``, which is always reported
next to the errors so a method cannot look good by leaving the hard pixels empty.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from .resample import Partition, Resampler, valid_source_mask


@dataclass
class DepthErrors:
    mse_cm2: float
    mae_cm: float
    rmse_cm: float
    coverage: float  # scored pixels / valid ground-truth pixels
    pixels: int  # scored pixels

    def as_dict(self) -> dict:
        return asdict(self)


def depth_errors(pred: np.ndarray, gt: np.ndarray) -> DepthErrors:
    """MSE (cm^2), MAE (cm), RMSE (cm) of ``pred`` vs ``gt`` (both metres, same shape)."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    gt_valid = valid_source_mask(gt)
    n_gt = int(gt_valid.sum())
    if n_gt == 0:
        raise ValueError("ground truth has no valid pixel: nothing to score")
    m = gt_valid & np.isfinite(pred)
    err_cm = (pred[m].astype(np.float64) - gt[m].astype(np.float64)) * 100.0
    if err_cm.size == 0:
        return DepthErrors(float("nan"), float("nan"), float("nan"), 0.0, 0)
    mse = float(np.mean(err_cm**2))
    return DepthErrors(mse, float(np.mean(np.abs(err_cm))), float(np.sqrt(mse)), m.sum() / n_gt, int(m.sum()))


def consistency_error(pred: np.ndarray, source: np.ndarray) -> float:
    """max |down(pred) - S| / S over valid source cells whose block is fully predicted.

    Relative, so one number serves any depth range; ~1e-6 for DADA (the paper's guarantee), far
    larger for filters that do not enforce it. NaN when no cell can be checked.
    """
    part = Partition(pred.shape, source.shape)
    res = Resampler(part, torch.device("cpu"))
    p = torch.from_numpy(np.ascontiguousarray(pred, dtype=np.float32))[None, None]
    down = res.down(p)[0, 0].numpy()
    ok = valid_source_mask(source) & np.isfinite(down)
    if not ok.any():
        return float("nan")
    return float(np.max(np.abs(down[ok] - source[ok]) / source[ok]))
