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

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch

from .resample import Partition, Resampler
from .schedule import DIVERGED_FACTOR, Schedule

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
    diverged: bool = False  # a weighted run ran away (see run_loop): y holds the caller's Y0


def max_relative_change(y: torch.Tensor, y_prev: torch.Tensor) -> torch.Tensor:
    """Per batch item max |y - y_prev| / |y|, shape (B,)."""
    return ((y - y_prev).abs() / (y.abs() + EPS)).flatten(1).amax(dim=1)


# Set when the Triton loop failed once in this process: "auto" then stays on the torch loop.
_triton_failed = False


# Result of the one-time self-test of the Triton loop, per device.
_triton_agrees_on: dict[str, bool] = {}


def _auto_wants_triton(y: torch.Tensor) -> bool:
    """Whether ``backend="auto"`` should try the Triton kernels: CUDA float32, triton importable,
    and the self-test on this device passed."""
    if _triton_failed or not y.is_cuda:
        return False
    try:
        from .triton_loop import run_loop_triton, triton_available

        return triton_available(y) and triton_agrees(y.device, run_loop_triton)
    except Exception:  # a broken triton install must not take the solver down
        return False


def triton_agrees(device: torch.device, run: Callable[..., LoopStats]) -> bool:
    """One-time self-test per device before ``auto`` trusts the Triton loop: 60 applications on a
    small problem (non-integer ratio, an empty cell), plain and Chebyshev, must match the torch
    loop to 1e-4 relative. The kernels are pinned to the torch loop in Triton's CPU interpreter
    by the tests, but a GPU, its driver or compiler can still differ; a mismatch or an error warns
    once and ``auto`` stays on the torch loop (same answer, slower). ``run`` has the signature of
    :func:`~dada_ros.core.triton_loop.run_loop_triton` (plus ``schedule=``)."""
    key = str(device)
    if key not in _triton_agrees_on:
        g = torch.Generator().manual_seed(0)
        res = Resampler(Partition((24, 36), (5, 7)), device)
        src = (torch.rand(1, 1, 5, 7, generator=g) + 1).to(device)
        valid = torch.ones_like(src, dtype=torch.bool)
        valid[0, 0, 2, 3] = False
        cv = torch.rand(1, 1, 23, 36, generator=g).to(device)
        ch = torch.rand(1, 1, 24, 35, generator=g).to(device)
        y0 = res.up(src).contiguous()
        diff, why = 0.0, ""
        try:
            for schedule in (Schedule.plain(60), Schedule.chebyshev(60, 0.01)):
                got, want = y0.clone(), y0.clone()
                run(got, src, valid, cv, ch, res, 0.24, None, schedule=schedule)
                run_loop(want, src, valid, cv, ch, res, 0.24, backend="torch", schedule=schedule)
                diff = max(diff, float(((got - want).abs() / want.abs()).max()))
        except Exception as exc:  # noqa: BLE001 - any failure means: do not use it
            diff, why = math.nan, repr(exc)
        else:
            why = f"max relative difference {diff:.2e}"
        ok = math.isfinite(diff) and diff < 1e-4
        if not ok:
            warnings.warn(f"the Triton loop failed its self-test on {key} ({why}); using the torch loop",
                          RuntimeWarning, stacklevel=2)
        _triton_agrees_on[key] = ok
    return _triton_agrees_on[key]


def _mark_triton_failed() -> None:
    global _triton_failed
    _triton_failed = True


def adjust_(y: torch.Tensor, src0: torch.Tensor, invalid: torch.Tensor, resampler: Resampler) -> torch.Tensor:
    """In-place masked adjustment ``y *= up(S / down(y))`` (ratio 1 on invalid cells: ``src0`` is
    0 and ``invalid`` 1 there), the in-place form of :func:`adjust_step`."""
    ratio = src0 / (resampler.down(y) + EPS) + invalid
    return resampler.mul_up_(y, ratio)


class LoopBackend(Protocol):
    """What the driver needs from a backend: apply T with the given weights, report the change."""

    def steps(self, weights: np.ndarray) -> None:
        """Run one application per weight (the recurrence of :mod:`.schedule`)."""

    def change(self) -> float:
        """Max relative change of the iterate since the previous check (worst batch item); the
        current iterate becomes the new reference."""

    def result(self, y: torch.Tensor) -> None:
        """Write the current iterate into ``y``."""


class TorchLoop:
    """The eager torch backend: in place on ``y``, allocation-free after set-up.

    Plain schedules run T in place on ``y`` itself; a weighted schedule keeps the previous
    iterate and a scratch image (three images in all) and rotates them. ``region`` (B, 1, H, W)
    0/1: the weights apply where it is 1, plain steps where it is 0 (Schedule.region)."""

    def __init__(self, y, source, valid, cv, ch, resampler: Resampler, lam: float, semi: bool,
                 region: torch.Tensor | None = None) -> None:
        self.y = y
        self.region = region
        self.wmap = torch.empty_like(y) if region is not None else None
        self.res = resampler
        self.lcv, self.lch = cv * lam, ch * lam
        self.fv, self.fh = torch.empty_like(self.lcv), torch.empty_like(self.lch)
        # Invalid cells get ratio 1: precompute where the ratio comes from and what it is elsewhere.
        self.src0 = torch.where(valid, source, torch.zeros_like(source))
        self.invalid = (~valid).to(y.dtype)
        self.ref = y.clone()
        self.prev = y.clone() if semi else None
        self.tmp = torch.empty_like(y) if semi else None

    def apply_t_(self, y: torch.Tensor) -> None:
        """y <- T(y) in place: one diffusion step (Jacobi) then the masked adjustment."""
        fv, fh = self.fv, self.fh
        torch.sub(y[:, :, 1:, :], y[:, :, :-1, :], out=fv).mul_(self.lcv)
        torch.sub(y[:, :, :, 1:], y[:, :, :, :-1], out=fh).mul_(self.lch)
        y[:, :, :-1, :].add_(fv)
        y[:, :, 1:, :].sub_(fv)
        y[:, :, :, :-1].add_(fh)
        y[:, :, :, 1:].sub_(fh)
        adjust_(y, self.src0, self.invalid, self.res)

    def steps(self, weights: np.ndarray) -> None:
        for w in weights:
            if self.prev is None:
                self.apply_t_(self.y)
                continue
            t = self.tmp
            t.copy_(self.y)
            self.apply_t_(t)
            if self.region is None:
                t.sub_(self.prev).mul_(float(w)).add_(self.prev)  # w (T(y_k) - y_{k-1}) + y_{k-1}
            else:
                torch.mul(self.region, float(w) - 1.0, out=self.wmap).add_(1.0)
                t.sub_(self.prev).mul_(self.wmap).add_(self.prev)
            self.prev, self.y, self.tmp = self.y, t, self.prev

    def change(self) -> float:
        change = float(max_relative_change(self.y, self.ref).max())
        self.ref.copy_(self.y)
        return change

    def result(self, y: torch.Tensor) -> None:
        if self.y is not y:
            y.copy_(self.y)


def drive(backend: LoopBackend, schedule: Schedule,
          observe: Callable[[int, LoopBackend], None] | None = None,
          guard: Callable[[LoopBackend], bool] | None = None) -> LoopStats:
    """Walk ``schedule`` on ``backend``: the weights chunk by chunk, a check after each chunk,
    the stop rule at every check. The change per check interval is tracked even for a fixed
    budget, so stats always say how far from equilibrium the result is. ``observe(n, backend)``
    is called at every check (benchmarks record the error along the trajectory with it), after
    ``guard(backend)``, whose False stops the run as diverged."""
    stats = LoopStats()
    for chunk in schedule.chunks():
        backend.steps(chunk)
        stats.iterations += len(chunk)
        change = backend.change()
        stats.residual = change
        stats.residual_history.append(change)
        if guard is not None and not guard(backend):
            stats.diverged = True
            break
        if observe is not None:
            observe(stats.iterations, backend)
        if schedule.should_stop(change):
            stats.converged = True
            break
    return stats


@torch.no_grad()
def run_loop(
    y: torch.Tensor,
    source: torch.Tensor,
    valid: torch.Tensor,
    cv: torch.Tensor,
    ch: torch.Tensor,
    resampler: Resampler,
    lam: float,
    iterations: int | None = None,
    tol: float | None = None,
    check_every: int = 25,
    backend: str = "auto",
    schedule: Schedule | None = None,
    observe: Callable[[int, torch.Tensor], None] | None = None,
) -> LoopStats:
    """Run the diffusion-adjustment loop on ``y`` IN PLACE.

    Args:
        y: (B, 1, H, W) positive start (Y0); overwritten with the result.
        source: (B, 1, h, w) low-resolution depth (any value where ``valid`` is False).
        valid: (B, 1, h, w) bool, cells that constrain the result.
        cv, ch: coefficients from :mod:`.coefficients`.
        resampler: down/up operators for this (H, W) <- (h, w) pair.
        lam: step size lambda in (0, 0.25).
        iterations, tol, check_every: the plain loop (``Schedule.plain``): at most ``iterations``
            steps, stopping once the max relative change of y over the last ``check_every`` steps
            is below ``tol`` for every batch item (None: exactly ``iterations`` steps).
        backend: ``"auto"`` (the fused numba kernel for CPU float32 tensors when numba is
            installed, the Triton kernels for CUDA float32 tensors when triton is installed, else
            torch), ``"torch"`` (the eager loop: CPU or CUDA), ``"fused"`` or ``"triton"``.
            ``"auto"`` never fails because of Triton: if its kernels fail (compile or launch), it
            warns once, runs the torch loop and stops trying Triton in this process. An explicit
            ``"fused"``/``"triton"`` raises instead.
        schedule: a :class:`~dada_ros.core.schedule.Schedule` (e.g. the Chebyshev
            semi-iteration); replaces ``iterations`` / ``tol`` / ``check_every``. With a
            ``region`` the weights apply there only (plain steps elsewhere); the Triton kernels
            have no region, so such a run takes the torch loop on CUDA. A weighted
            schedule first adjusts Y0 (so every iterate satisfies down(y) = S) and ends with one
            adjustment (float drift); the plain loop's last step already is one. If it diverges
            (an iterate beyond ``DIVERGED_FACTOR`` x the largest source depth, or not finite, at a
            check) the run stops, ``y`` is the
            caller's Y0 again and the stats say ``diverged`` (the solver then runs the plain loop).
        observe: ``observe(n, y_n)`` at every check with the result the loop would return after
            n applications (a scratch tensor: copy it to keep it).
    Returns:
        :class:`LoopStats`.
    """
    from .fused_cpu import FusedLoop, adjust_fused_, fused_available  # fused_cpu imports this module

    if backend not in ("auto", "torch", "fused", "triton"):
        raise ValueError(f"unknown loop backend {backend!r}")
    if schedule is None:
        if iterations is None:
            raise ValueError("run_loop needs iterations or a schedule")
        schedule = Schedule.plain(int(iterations), tol, check_every)
    t0 = time.perf_counter()
    semi = not schedule.is_plain
    src0 = torch.where(valid, source, torch.zeros_like(source))
    invalid = (~valid).to(y.dtype)
    y_start = y.clone() if semi else None  # restored if the weighted run diverges
    use_fused = backend == "fused" or (backend == "auto" and fused_available(y))
    if use_fused and not fused_available(y):
        raise ValueError("the fused backend needs numba and a CPU float32 tensor")

    def adjust(t: torch.Tensor) -> None:
        """The masked adjustment of a weighted run's start and end (numba with the fused loop)."""
        if use_fused:
            adjust_fused_(t, source, valid, resampler)
        else:
            adjust_(t, src0, invalid, resampler)

    if semi:
        adjust(y)
    args = (y, source, valid, cv, ch, resampler, lam, semi)
    stats = None
    scratch = torch.empty_like(y) if (observe is not None or semi) else None
    limit = DIVERGED_FACTOR * float(src0.max()) if semi else 0.0  # a host sync: weighted runs only

    def check_range(impl: LoopBackend) -> bool:
        """The iterate is finite and within ``limit``: the fused backend measured max |iterate| in
        its change check (the same pass; a separate one cost ~0.7 ms a check at 640x480, 7 checks a
        cold frame); the others are tested here (into ``scratch``)."""
        abs_max = getattr(impl, "abs_max", None)  # a backend that measured it (the fused one)
        if abs_max is not None:
            return bool(abs_max <= limit)  # NaN compares False
        impl.result(scratch)
        lo, hi = torch.aminmax(scratch)  # NaN propagates and +-inf exceeds the limit: one pass
        return bool(-limit <= float(lo)) and bool(float(hi) <= limit)

    def report(n: int, impl: LoopBackend) -> None:
        """``observe`` the result after n applications (a weighted run's iterate only lacks the
        final adjustment)."""
        impl.result(scratch)
        if semi:
            adjust(scratch)
        observe(n, scratch)

    guard = check_range if semi else None
    watch = report if observe is not None else None

    region = None  # Schedule.region (H, W) bool (a plain schedule needs none)
    if schedule.region is not None and semi:
        if tuple(np.shape(schedule.region)) != tuple(y.shape[-2:]):
            raise ValueError(f"schedule region {np.shape(schedule.region)} does not match the image "
                             f"{tuple(y.shape[-2:])}")
        region = schedule.region
        if backend == "triton" or (backend == "auto" and _auto_wants_triton(y)):
            backend = "torch"  # the Triton kernels have no region (CUDA runs the torch loop then)
    if use_fused:
        impl = FusedLoop(*args, region=region)
    elif backend == "triton":
        from .triton_loop import TritonLoop, triton_available  # imports triton: only when asked for

        if not triton_available(y):
            raise ValueError("the triton backend needs triton and a CUDA float32 tensor "
                             "(or TRITON_INTERPRET=1 on CPU)")
        impl = TritonLoop(*args)
    elif backend == "auto" and _auto_wants_triton(y):
        from .triton_loop import TritonLoop, warn_once

        try:
            impl = TritonLoop(*args)
            stats = drive(impl, schedule, watch, guard)
        except Exception as exc:  # any compile/launch failure: the torch loop gives the same answer
            # TritonLoop works on copies and leaves y untouched until result(), so the torch
            # loop below starts from the caller's Y0.
            _mark_triton_failed()
            warn_once("triton-loop", f"triton loop failed ({exc!r}); using the torch loop from now on")
            impl, stats = TorchLoop(*args), None
    else:
        wmask = None  # the torch loop's region: a (B, 1, H, W) 0/1 map (the fused loop reads the bool map's spans)
        if region is not None:
            wmask = torch.from_numpy(np.ascontiguousarray(region, dtype=np.float32)).to(y.device)
            wmask = wmask.expand(y.shape[0], 1, *region.shape).contiguous()
        impl = TorchLoop(*args, region=wmask)
    if stats is None:
        stats = drive(impl, schedule, watch, guard)
    if stats.diverged:
        y.copy_(y_start)
    else:
        impl.result(y)
        if semi:
            adjust(y)
    if y.is_cuda:
        torch.cuda.synchronize(y.device)
    stats.seconds = time.perf_counter() - t0
    return stats
