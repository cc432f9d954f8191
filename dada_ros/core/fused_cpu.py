"""Fused CPU kernel for the diffusion-adjustment loop (numba), one memory pass per iteration.

The eager torch loop touches the full-resolution image about nine times per iteration (two
differences, two products, four slice updates, the block mean and the broadcast product); the loop
is memory-bound, so that is where the time goes. This kernel keeps the iterate in factored form

    Y_t = U_t * up(R_t)        U_t = diffused image before adjustment, R_t = per-cell ratio

and computes one step as a single sweep: read U_{t-1} (scaled on the fly by the small, cached
R_{t-1}), apply Eq. (1) with the two coefficient arrays, write U_t and accumulate its cell sums,
then derive R_t = S / down(U_t) on valid cells (1 elsewhere: the masked rule of :mod:`.loop`).
Sweeps are parallel over contiguous chunks of source-cell rows, one chunk per thread, so every
thread owns its cell sums (no atomics). R is also kept expanded to pixel columns (h x W), so the
inner loops read it without an index gather.

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

    EPS32 = np.float32(EPS)

    @njit(parallel=True, cache=True, fastmath=False, error_model="numpy")
    def _sweep(u_in, rx_in, u_out, r_out, rx_out, lcv_p, lch_p, cols, row_start, src, valid, inv_count, chunks):
        """One step. ``rx_in`` (h, W) are the ratios R_{t-1} already expanded to pixel columns
        (each cell row's ratios repeated over its columns), so the inner loops read them without a
        gather; the sweep writes R_t both per cell (``r_out``, h x w) and expanded (``rx_out``).
        lcv_p (H+1, W) / lch_p (H, W+1) are lambda*c padded with zero links at the borders, so
        the inner loop has no branches and vectorises.

        Cell rows are split into ``chunks`` contiguous ranges, one per thread: each chunk
        allocates its scratch rows once (a per-cell-row allocation cost ~10% of a step at x4).
        Every cell row reads only the inputs, so the result does not depend on ``chunks``."""
        H, W = u_in.shape
        h, w = src.shape
        for ck in prange(chunks):
            c0 = ck * h // chunks
            c1 = (ck + 1) * h // chunks
            # Rows i-1, i, i+1 of Y = U * up(R) in a 3-row ring: each row is scaled once. Padded
            # by one column so the horizontal neighbours of the border pixels exist.
            buf = np.empty((3, W + 2), np.float32)
            # float32 column sums over a cell row's <= s rows: the cell sum is float32 anyway,
            # and float64 here cost ~15% of the sweep.
            acc_row = np.empty(W, np.float32)
            for cr in range(c0, c1):
                r_cur = rx_in[cr]
                r_up = rx_in[max(cr - 1, 0)]
                r_dn = rx_in[min(cr + 1, h - 1)]
                acc_row[:] = 0.0
                i0 = row_start[cr]
                i1 = row_start[cr + 1]
                ka = 0
                kb = 1
                ua = u_in[max(i0 - 1, 0)]
                ub = u_in[i0]
                for j in range(W):
                    buf[ka, j + 1] = ua[j] * r_up[j]
                    buf[kb, j + 1] = ub[j] * r_cur[j]
                for i in range(i0, i1):
                    kc = 3 - ka - kb
                    rc = r_dn if i == i1 - 1 else r_cur
                    uc = u_in[min(i + 1, H - 1)]
                    for j in range(W):
                        buf[kc, j + 1] = uc[j] * rc[j]
                    buf[kb, 0] = buf[kb, 1]
                    buf[kb, W + 1] = buf[kb, W]
                    a = buf[ka]
                    b = buf[kb]
                    c = buf[kc]
                    lv0 = lcv_p[i]
                    lv1 = lcv_p[i + 1]
                    lh = lch_p[i]
                    out = u_out[i]
                    for j in range(W):
                        v = b[j + 1]
                        nv = (v + lv0[j] * (a[j + 1] - v) + lv1[j] * (c[j + 1] - v)
                              + lh[j] * (b[j] - v) + lh[j + 1] * (b[j + 2] - v))
                        out[j] = nv
                        acc_row[j] += nv
                    ka = kb
                    kb = kc
                ro = r_out[cr]
                for cc in range(w):
                    ro[cc] = 0.0
                for j in range(W):
                    ro[cols[j]] += acc_row[j]
                for cc in range(w):
                    if valid[cr, cc]:
                        ro[cc] = src[cr, cc] / (ro[cc] * inv_count[cr, cc] + EPS)
                    else:
                        ro[cc] = 1.0
                rxo = rx_out[cr]
                for j in range(W):
                    rxo[j] = ro[cols[j]]

    @njit(parallel=True, cache=True)
    def _materialise(u, rx, rows, out):
        H, W = u.shape
        for i in prange(H):
            r = rx[rows[i]]
            for j in range(W):
                out[i, j] = u[i, j] * r[j]

    @njit(parallel=True, cache=True, error_model="numpy")
    def _check_change(u, rx, rows, prev, chunks):
        """Convergence check in one pass: max |Y - prev| / |Y| with Y = U * up(R), then prev <- Y.

        Written for the vector units: ``error_model="numpy"`` makes the division plain IEEE (numba's
        default tests every divisor for zero, which stops vectorisation: 5x slower), and the max
        is taken over the int32 bit patterns of the non-negative ratios, which order like the
        floats (numba's float max reduction does not vectorise). A NaN ratio wins the max, so a
        NaN never passes the tolerance."""
        H, W = u.shape
        chunk_max = np.zeros(chunks, dtype=np.int32)
        for ck in prange(chunks):
            d = np.empty(W, np.float32)
            di = d.view(np.int32)
            m = np.int32(0)
            for i in range(ck * H // chunks, (ck + 1) * H // chunks):
                r = rx[rows[i]]
                ui = u[i]
                pi = prev[i]
                for j in range(W):
                    y = ui[j] * r[j]
                    d[j] = abs(y - pi[j]) / (abs(y) + EPS32)
                    pi[j] = y
                for j in range(W):
                    m = max(m, di[j])
            chunk_max[ck] = m
        out = np.empty(1, np.int32)
        out[0] = chunk_max.max()
        return out.view(np.float32)[0]


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
        r = np.ones((h, w), np.float32)  # R_t per cell (written by the sweep, read only there)
        rx = [np.ones((h, W), np.float32), np.ones((h, W), np.float32)]  # R expanded to columns
        prev = yb.copy()
        chunks = min(h, max(1, numba.get_num_threads()))
        k = 0
        for it in range(1, iterations + 1):
            _sweep(u[k], rx[k], u[1 - k], r, rx[1 - k], lcv, lch, cols, row_start, src, vb, inv_count, chunks)
            k = 1 - k
            if it % check_every == 0 or it == iterations:
                change = float(_check_change(u[k], rx[k], rows, prev, chunks))
                if b == 0:  # the history follows the first batch item
                    stats.residual_history.append(change)
                residuals[b] = change
                if tol is not None and change < tol:
                    break
        stats.iterations = max(stats.iterations, it)
        _materialise(u[k], rx[k], rows, yb)
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
