"""The diffusion-adjustment iteration of Eq. (1)-(3) on torch tensors, with the masked adjustment.

Two implementations of the same step:

* :func:`diffusion_step` / :func:`adjust_step`: out-of-place and differentiable, for training
  (gradients flow into the coefficients through the unrolled steps) and as the readable reference;
* :func:`run_loop`: in place, allocation-free after set-up, with a convergence check; used for
  inference under ``torch.no_grad``. A test pins it to the reference steps. Its ``backend``
  argument routes CPU float32 tensors to the fused numba kernel (:mod:`.fused_cpu`) and CUDA
  float32 tensors to the Triton kernels (:mod:`.triton_loop`), both pinned to this loop by tests.

Masked adjustment (the rule real sensors need): with ``valid`` the (B, 1, h, w) mask of source
cells that carry a measurement (finite and > 0),

    ratio(cell) = S(cell) / down(Yhat)(cell)   if valid(cell)
                  1                            otherwise
    Y = Yhat * up(ratio)

so valid cells are matched exactly (``down(Y) == S``) and empty cells are left to diffusion,
which fills them from their neighbours along the guide's edges.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from .resample import Resampler

# Guards the division in the adjustment; far below any depth the solver works with (> 0.1).
EPS = 1e-8


def diffusion_step(y: torch.Tensor, lcv: torch.Tensor, lch: torch.Tensor) -> torch.Tensor:
    """One explicit step of Eq. (1), out of place.

    Args:
        y: (B, 1, H, W) current depth.
        lcv: (B, 1, H-1, W) lambda x vertical coefficients.
        lch: (B, 1, H, W-1) lambda x horizontal coefficients.
    Returns:
        (B, 1, H, W) y + lambda * sum_n c(p, n) (y(n) - y(p)), all fluxes from the same y (Jacobi).
    """
    fv = lcv * (y[:, :, 1:, :] - y[:, :, :-1, :])
    fh = lch * (y[:, :, :, 1:] - y[:, :, :, :-1])
    zrow = y.new_zeros(y.shape[0], y.shape[1], 1, y.shape[3])
    zcol = y.new_zeros(y.shape[0], y.shape[1], y.shape[2], 1)
    # Flux fv[i] flows from row i+1 into row i (and out of row i+1), likewise for columns.
    dv = torch.cat([fv, zrow], dim=2) - torch.cat([zrow, fv], dim=2)
    dh = torch.cat([fh, zcol], dim=3) - torch.cat([zcol, fh], dim=3)
    return y + dv + dh


def adjust_step(y: torch.Tensor, source: torch.Tensor, valid: torch.Tensor, resampler: Resampler) -> torch.Tensor:
    """Masked adjustment of Eq. (3), out of place; see the module docstring for the rule."""
    ratio = torch.where(valid, source / (resampler.down(y) + EPS), torch.ones_like(source))
    return y * resampler.up(ratio)


@dataclass
class LoopStats:
    """What one call of :func:`run_loop` did."""

    iterations: int = 0
    residual: float = float("nan")  # last max relative change per check interval (worst batch item)
    converged: bool = False
    seconds: float = 0.0
    residual_history: list[float] = field(default_factory=list)


def max_relative_change(y: torch.Tensor, y_prev: torch.Tensor) -> torch.Tensor:
    """Per batch item max |y - y_prev| / |y|, shape (B,)."""
    return ((y - y_prev).abs() / (y.abs() + EPS)).flatten(1).amax(dim=1)


# Set when the Triton loop failed once in this process: "auto" then stays on the torch loop.
_triton_failed = False


def _auto_wants_triton(y: torch.Tensor) -> bool:
    """Whether ``backend="auto"`` should try the Triton kernels: CUDA float32, triton importable."""
    if _triton_failed or not y.is_cuda:
        return False
    try:
        from .triton_loop import triton_available
    except Exception:  # a broken triton install must not take the solver down
        return False
    return triton_available(y)


def _mark_triton_failed() -> None:
    global _triton_failed
    _triton_failed = True


@torch.no_grad()
def run_loop(
    y: torch.Tensor,
    source: torch.Tensor,
    valid: torch.Tensor,
    cv: torch.Tensor,
    ch: torch.Tensor,
    resampler: Resampler,
    lam: float,
    iterations: int,
    tol: float | None = None,
    check_every: int = 25,
    backend: str = "auto",
) -> LoopStats:
    """Run up to ``iterations`` diffusion + adjustment steps on ``y`` IN PLACE.

    Args:
        y: (B, 1, H, W) positive start (Y0); overwritten with the result.
        source: (B, 1, h, w) low-resolution depth (any value where ``valid`` is False).
        valid: (B, 1, h, w) bool, cells that constrain the result.
        cv, ch: coefficients from :mod:`.coefficients`.
        resampler: down/up operators for this (H, W) <- (h, w) pair.
        lam: step size lambda in (0, 0.25).
        iterations: hard cap on the number of steps.
        tol: stop early once the max relative change of y over the last ``check_every`` steps is
            below ``tol`` for every batch item (None: run exactly ``iterations`` steps).
        check_every: steps between convergence checks.
        backend: ``"auto"`` (the fused numba kernel for CPU float32 tensors when numba is
            installed, the Triton kernels for CUDA float32 tensors when triton is installed, else
            torch), ``"torch"`` (this eager loop: CPU or CUDA), ``"fused"`` or ``"triton"``.
            ``"auto"`` never fails because of Triton: if its kernels fail (compile or launch), it
            warns once, runs the torch loop and stops trying Triton in this process. An explicit
            ``"fused"``/``"triton"`` raises instead.
    Returns:
        :class:`LoopStats`.
    """
    from .fused_cpu import fused_available, run_loop_fused  # fused_cpu imports this module

    if backend not in ("auto", "torch", "fused", "triton"):
        raise ValueError(f"unknown loop backend {backend!r}")
    if backend == "fused" or (backend == "auto" and fused_available(y)):
        if not fused_available(y):
            raise ValueError("the fused backend needs numba and a CPU float32 tensor")
        return run_loop_fused(y, source, valid, cv, ch, resampler, lam, iterations, tol, check_every)
    if backend == "triton":
        from .triton_loop import run_loop_triton  # imports triton: only when asked for

        return run_loop_triton(y, source, valid, cv, ch, resampler, lam, iterations, tol, check_every)
    if backend == "auto" and _auto_wants_triton(y):
        from .triton_loop import run_loop_triton, warn_once

        try:
            return run_loop_triton(y, source, valid, cv, ch, resampler, lam, iterations, tol, check_every)
        except Exception as exc:  # any compile/launch failure: the torch loop gives the same answer
            # run_loop_triton leaves y untouched until its last kernel, so the torch loop below
            # starts from the caller's Y0.
            _mark_triton_failed()
            warn_once("triton-loop", f"triton loop failed ({exc!r}); using the torch loop from now on")
    t0 = time.perf_counter()
    stats = LoopStats()
    lcv = cv * lam
    lch = ch * lam
    fv = torch.empty_like(lcv)
    fh = torch.empty_like(lch)
    # Invalid cells get ratio 1: precompute where the ratio comes from and what it is elsewhere.
    src = torch.where(valid, source, torch.zeros_like(source))
    invalid = (~valid).to(y.dtype)
    # The change per check interval is tracked even for a fixed count, so stats always say how
    # far from equilibrium the result is; it costs one copy every ``check_every`` steps.
    y_prev = y.clone()
    for it in range(1, iterations + 1):
        torch.sub(y[:, :, 1:, :], y[:, :, :-1, :], out=fv).mul_(lcv)
        torch.sub(y[:, :, :, 1:], y[:, :, :, :-1], out=fh).mul_(lch)
        y[:, :, :-1, :].add_(fv)
        y[:, :, 1:, :].sub_(fv)
        y[:, :, :, :-1].add_(fh)
        y[:, :, :, 1:].sub_(fh)
        # ratio = S / down(y) on valid cells, exactly 1 on invalid ones (src is 0 there).
        ratio = src / (resampler.down(y) + EPS) + invalid
        resampler.mul_up_(y, ratio)
        stats.iterations = it
        if it % check_every == 0 or it == iterations:
            change = float(max_relative_change(y, y_prev).max())
            stats.residual = change
            stats.residual_history.append(change)
            y_prev.copy_(y)
            if tol is not None and change < tol:
                stats.converged = True
                break
    if y.is_cuda:
        torch.cuda.synchronize(y.device)
    stats.seconds = time.perf_counter() - t0
    return stats
