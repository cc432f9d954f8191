"""The training forward pass of DADA: features once, N_pre steps without gradient, N_grad with.

As in the paper and the authors' code:

1. features and coefficients are computed ONCE per sample from F(RGB, up(S));
2. a random number (0..N_pre) of diffusion-adjustment steps runs without gradient (here the
   solver's own in-place loop, :func:`dada_ros.core.loop.run_loop`), starting from Y0;
3. N_grad steps run out of place (:func:`~dada_ros.core.loop.diffusion_step`,
   :func:`~dada_ros.core.loop.adjust_step`); the loss gradient reaches F and kappa ONLY through
   these steps (the state entering them is detached).

With ``schedule`` (e.g. the solver's default Chebyshev semi-iteration,
:meth:`~dada_ros.core.schedule.Schedule.for_ratio`) the WHOLE solve the node runs (~100-200
applications) carries the gradient instead: no N_pre / N_grad split, the model is trained on
exactly the state inference returns.

Memory grows linearly with N_grad (each step keeps a few full-resolution tensors for backward).
``segment=k`` wraps every k steps in activation checkpointing: only the state between segments
is kept and each segment is recomputed during backward -- memory ~ (N_grad / k + k) states for
~1.5x the compute (``benchmarks/learned.py`` measures peak memory vs N_grad).
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from ..core.loop import adjust_step, diffusion_step, run_loop
from ..core.resample import Partition, Resampler
from ..core.schedule import Schedule
from ..core.solver import POSITIVITY_FLOOR
from .datasets.base import Batch


def _steps(y: torch.Tensor, lcv: torch.Tensor, lch: torch.Tensor, source: torch.Tensor, valid: torch.Tensor,
           res: Resampler, n: int) -> torch.Tensor:
    for _ in range(n):
        y = adjust_step(diffusion_step(y, lcv, lch), source, valid, res)
    return y


def _weighted_steps(y: torch.Tensor, prev: torch.Tensor, lcv: torch.Tensor, lch: torch.Tensor,
                    source: torch.Tensor, valid: torch.Tensor, res: Resampler,
                    weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The schedule's recurrence y_{k+1} = w (T(y_k) - y_{k-1}) + y_{k-1}, out of place."""
    for w in weights.tolist():
        t = adjust_step(diffusion_step(y, lcv, lch), source, valid, res)
        y, prev = w * (t - prev) + prev, y
    return y, prev


def _scheduled_solve(y: torch.Tensor, lcv: torch.Tensor, lch: torch.Tensor, source: torch.Tensor,
                     valid: torch.Tensor, res: Resampler, schedule: Schedule, segment: int) -> torch.Tensor:
    """The whole solve with gradient: adjust Y0, the recurrence, a final adjustment (as
    :func:`dada_ros.core.loop.run_loop` does with a weighted schedule)."""
    y = adjust_step(y, source, valid, res)
    prev = y
    weights = torch.as_tensor(schedule.weights)
    k = segment if segment and segment < len(weights) else len(weights)
    for i in range(0, len(weights), k):
        if k < len(weights):
            y, prev = checkpoint(_weighted_steps, y, prev, lcv, lch, source, valid, res, weights[i:i + k],
                                 use_reentrant=False)
        else:
            y, prev = _weighted_steps(y, prev, lcv, lch, source, valid, res, weights[i:i + k])
    return adjust_step(y, source, valid, res)


def unrolled_solve(net, batch: Batch, n_pre: int, n_grad: int, lam: float = 0.24, segment: int = 0,
                   schedule: Schedule | None = None) -> torch.Tensor:
    """Differentiable DADA on a batch -> prediction (B, 1, H, W) in metres.

    Args:
        net: a :class:`~dada_ros.learned.model.GuideNet` (``net(rgb, y0, ratio)`` -> features,
            ``net.coefficients``).
        batch: tensors on the net's device.
        n_pre: steps without gradient (the caller draws it at random for training).
        n_grad: steps with gradient (>= 0; 0 returns the no-grad result, no gradient path).
        segment: activation checkpointing every ``segment`` steps (0: off).
        schedule: differentiate through this whole schedule instead (``n_pre`` / ``n_grad``
            are then ignored).
    """
    H, W = batch.rgb.shape[-2:]
    h, w = batch.source.shape[-2:]
    part = Partition((H, W), (h, w))
    res = Resampler(part, batch.rgb.device)
    feats = net(batch.rgb, batch.y0, part.scale)
    cv, ch = net.coefficients(feats)
    # Positivity guard of the solver (shift when a depth is near zero), per batch.
    src_valid = batch.source[batch.valid]
    offset = POSITIVITY_FLOOR if src_valid.numel() and float(src_valid.min()) <= POSITIVITY_FLOOR else 0.0
    source = torch.where(batch.valid, batch.source + offset, torch.zeros_like(batch.source))
    y = (batch.y0 + offset).detach().clone().contiguous()
    if schedule is not None:
        return _scheduled_solve(y, cv * lam, ch * lam, source, batch.valid, res, schedule, segment) - offset
    if n_pre > 0:
        run_loop(y, source, batch.valid, cv.detach(), ch.detach(), res, lam, int(n_pre), tol=None, check_every=10**9)
    lcv, lch = cv * lam, ch * lam
    if segment and segment < n_grad:
        done = 0
        while done < n_grad:
            k = min(segment, n_grad - done)
            y = checkpoint(_steps, y, lcv, lch, source, batch.valid, res, k, use_reentrant=False)
            done += k
    else:
        y = _steps(y, lcv, lch, source, batch.valid, res, int(n_grad))
    return y - offset


def masked_l1(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean |pred - gt| over valid ground-truth pixels (metres)."""
    n = valid.sum().clamp_min(1)
    return ((pred - gt).abs() * valid).sum() / n


def masked_mse_cm2(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    n = valid.sum().clamp_min(1)
    return (((pred - gt) * 100.0) ** 2 * valid).sum() / n
