"""Fused CPU kernel for the diffusion-adjustment loop (numba), one memory pass per iteration.

The eager torch loop touches the full-resolution image about nine times per iteration (two
differences, two products, four slice updates, the block mean and the broadcast product); the loop
is memory-bound, so that is where the time goes. This kernel keeps the iterate in factored form

    Y_t = U_t * up(R_t)        U_t = diffused image before adjustment, R_t = per-cell ratio

and computes one step as a single sweep: read U_{t-1} (scaled on the fly by the small, cached
R_{t-1}), apply Eq. (1) with the two coefficient arrays, write U_t and accumulate its cell sums,
then derive R_t = S / down(U_t) on valid cells (1 elsewhere: the masked rule of :mod:`.loop`).
Sweeps are parallel over rows of source cells, so every thread owns its cell sums (no atomics).

The answer is the same as :func:`dada_ros.core.loop.run_loop` up to float rounding (a test pins
it); :func:`run_loop_fused` has the same contract and is used for CPU tensors when numba is
importable.
"""

from __future__ import annotations

import time

import numpy as np
import torch

try:  # numba is optional: without it the torch loop runs (slower, same answer)
    import numba
    from numba import njit, prange

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only on installs without numba
    HAVE_NUMBA = False

from .loop import EPS, LoopStats
from .resample import Resampler

if HAVE_NUMBA:

    @njit(parallel=True, cache=True, fastmath=False)
    def _sweep(u_in, r_in, u_out, r_out, lcv_p, lch_p, rows, cols, row_start, src, valid, inv_count):
        """One step. lcv_p (H+1, W) / lch_p (H, W+1) are lambda*c padded with zero links at the
        borders, so the inner loop has no branches and vectorises."""
        H, W = u_in.shape
        h, w = src.shape
        for cr in prange(h):
            # Ratios of this cell row and its neighbours, expanded to pixel columns once.
            r_cur = np.empty(W, np.float32)
            r_up = np.empty(W, np.float32)
            r_dn = np.empty(W, np.float32)
            above = max(cr - 1, 0)
            below = min(cr + 1, h - 1)
            for j in range(W):
                r_cur[j] = r_in[cr, cols[j]]
                r_up[j] = r_in[above, cols[j]]
                r_dn[j] = r_in[below, cols[j]]
            # Rows i-1, i, i+1 of Y = U * up(R) in a 3-row ring: each row is scaled once. Padded
            # by one column so the horizontal neighbours of the border pixels exist.
            buf = np.empty((3, W + 2), np.float32)
            # float32 column sums over a cell row's <= s rows: the cell sum is float32 anyway,
            # and float64 here cost ~15% of the sweep.
            acc_row = np.zeros(W, np.float32)
            i0 = row_start[cr]
            i1 = row_start[cr + 1]
            ia = max(i0 - 1, 0)
            ka = 0
            kb = 1
            for j in range(W):
                buf[ka, j + 1] = u_in[ia, j] * r_up[j]
                buf[kb, j + 1] = u_in[i0, j] * r_cur[j]
            for i in range(i0, i1):
                kc = 3 - ka - kb
                ic = min(i + 1, H - 1)
                rc = r_dn if i == i1 - 1 else r_cur
                for j in range(W):
                    buf[kc, j + 1] = u_in[ic, j] * rc[j]
                buf[kb, 0] = buf[kb, 1]
                buf[kb, W + 1] = buf[kb, W]
                a = buf[ka]
                b = buf[kb]
                c = buf[kc]
                for j in range(W):
                    v = b[j + 1]
                    nv = (v + lcv_p[i, j] * (a[j + 1] - v) + lcv_p[i + 1, j] * (c[j + 1] - v)
                          + lch_p[i, j] * (b[j] - v) + lch_p[i, j + 1] * (b[j + 2] - v))
                    u_out[i, j] = nv
                    acc_row[j] += nv
                ka = kb
                kb = kc
            for cc in range(w):
                r_out[cr, cc] = 0.0
            for j in range(W):
                r_out[cr, cols[j]] += acc_row[j]
            for cc in range(w):
                if valid[cr, cc]:
                    r_out[cr, cc] = src[cr, cc] / (r_out[cr, cc] * inv_count[cr, cc] + EPS)
                else:
                    r_out[cr, cc] = 1.0

    @njit(parallel=True, cache=True)
    def _materialise(u, r, rows, cols, out):
        H, W = u.shape
        for i in prange(H):
            for j in range(W):
                out[i, j] = u[i, j] * r[rows[i], cols[j]]

    @njit(parallel=True, cache=True)
    def _check_change(u, r, rows, cols, prev):
        """Convergence check in one pass: max |Y - prev| / |Y| with Y = U * up(R), then prev <- Y."""
        H, W = u.shape
        row_max = np.zeros(H, dtype=np.float64)
        for i in prange(H):
            m = 0.0
            for j in range(W):
                y = u[i, j] * r[rows[i], cols[j]]
                d = abs(y - prev[i, j]) / (abs(y) + EPS)
                if d > m:
                    m = d
                prev[i, j] = y
            row_max[i] = m
        return row_max.max()


def fused_available(y: torch.Tensor) -> bool:
    """True when the fused kernel can run this loop (CPU float32, no autograd, numba present)."""
    return HAVE_NUMBA and y.device.type == "cpu" and y.dtype == torch.float32 and not y.requires_grad


@torch.no_grad()
def run_loop_fused(y: torch.Tensor, source: torch.Tensor, valid: torch.Tensor, cv: torch.Tensor,
                   ch: torch.Tensor, resampler: Resampler, lam: float, iterations: int,
                   tol: float | None = None, check_every: int = 25) -> LoopStats:
    """Same contract as :func:`dada_ros.core.loop.run_loop` (in place on ``y``), fused on CPU.

    Batch items run one after another and each stops at its own convergence; ``iterations`` in
    the stats is the largest count, ``residual`` the worst item's.
    """
    t0 = time.perf_counter()
    stats = LoopStats()
    rows = resampler.rows.cpu().numpy().astype(np.int64)
    cols = resampler.cols.cpu().numpy().astype(np.int64)
    h, w = resampler.partition.source_shape
    row_start = resampler.partition.cell_starts()[0].astype(np.int64)
    inv_count = resampler.inv_counts.cpu().numpy().astype(np.float64)
    residuals = np.zeros(y.shape[0])
    for b in range(y.shape[0]):
        yb = y[b, 0].numpy()  # shares memory: results land in y
        H, W = yb.shape
        lcv = np.zeros((H + 1, W), np.float32)  # zero links above row 0 and below row H-1
        lcv[1:H] = (cv[b, 0] * lam).numpy()
        lch = np.zeros((H, W + 1), np.float32)
        lch[:, 1:W] = (ch[b, 0] * lam).numpy()
        src = np.ascontiguousarray(source[b, 0].numpy(), dtype=np.float32)
        vb = np.ascontiguousarray(valid[b, 0].numpy())
        u = [yb.copy(), np.empty_like(yb)]
        r = [np.ones((h, w), np.float32), np.ones((h, w), np.float32)]
        prev = yb.copy()
        k = 0
        for it in range(1, iterations + 1):
            _sweep(u[k], r[k], u[1 - k], r[1 - k], lcv, lch, rows, cols, row_start, src, vb, inv_count)
            k = 1 - k
            if it % check_every == 0 or it == iterations:
                change = float(_check_change(u[k], r[k], rows, cols, prev))
                if b == 0:  # the history follows the first batch item
                    stats.residual_history.append(change)
                residuals[b] = change
                if tol is not None and change < tol:
                    break
        stats.iterations = max(stats.iterations, it)
        _materialise(u[k], r[k], rows, cols, yb)
    stats.residual = float(residuals.max())
    stats.converged = tol is not None and bool((residuals < tol).all())
    stats.seconds = time.perf_counter() - t0
    return stats


def numba_threads() -> int:
    """Threads the fused kernel uses when called from this thread (0 without numba)."""
    return numba.get_num_threads() if HAVE_NUMBA else 0


def set_numba_threads(n: int) -> None:
    """Threads of the fused kernel for calls made FROM THE CALLING THREAD (numba's setting is
    thread-local, so a node must call this in its worker thread). ``n <= 0`` leaves the default.

    Fewer threads than cores matters on a shared CPU: every iteration of the parallel sweep waits
    for its slowest thread, so one descheduled thread stalls the whole loop."""
    if HAVE_NUMBA and n > 0:
        numba.set_num_threads(min(int(n), numba.config.NUMBA_NUM_THREADS))
