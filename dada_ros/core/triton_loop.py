"""Triton kernels for the diffusion-adjustment loop on CUDA tensors (the GPU fast path).

Same algorithm and contract as :mod:`.fused_cpu`: the iterate is kept in factored form

    Y_t = U_t * up(R_t)        U_t = diffused image before adjustment, R_t = per-cell ratio

so one iteration is one pass over the full-resolution image plus a small pass over the cells:

1. ``_sweep_kernel``: read U_{t-1}, scaled on the fly by R_{t-1} of each pixel's cell (and of its
   four neighbours' cells), apply Eq. (1) with the two coefficient arrays lambda*cv (H-1, W) and
   lambda*ch (H, W-1), write U_t. A program owns one source-cell row x one tile of columns, so it
   also sums U_t down the rows of its cell row and writes one partial sum per pixel column
   (``colsum``, (B, h, W)).
2. ``_ratio_kernel``: per cell, add its columns' partial sums and set
   R_t = S / (down(U_t) + EPS) on valid cells and 1 elsewhere (the masked rule of :mod:`.loop`).

The cell reduction is split this way (column partials written by the owning program, then a tiny
second kernel) instead of float atomics: it is deterministic (same bits on every run), the
partials are only h*W floats (1/s of the image for a row ratio s), and no program ever races
another for an address. R has a single buffer: kernel 2 of step t runs after kernel 1 of step t
on the stream, and kernel 1 of step t+1 after that.

Every ``check_every`` steps ``_materialise_kernel`` forms Y_t = U_t * up(R_t), writes the max
relative change against the previous check per tile into a small buffer, and stores Y_t as the
new reference; the host reads one number per check interval (the only host sync). On CUDA the
steady interval (``check_every`` steps + the check) is captured once in a CUDA graph and replayed,
with plain launches as the fallback.

The kernels also run in Triton's CPU interpreter (``TRITON_INTERPRET=1`` set before triton is
imported), which is how the tests pin this loop to :func:`dada_ros.core.loop.run_loop`'s torch
backend on a machine without a GPU.
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
import torch

from .loop import EPS, LoopStats
from .resample import Resampler

try:  # triton is optional: without it CUDA tensors take the eager torch loop (same answer)
    import triton
    import triton.language as tl

    HAVE_TRITON = True
except Exception:  # pragma: no cover - ImportError, or a broken install failing at import
    HAVE_TRITON = False

# Interval captures must be replayed a few times to pay for themselves (a capture costs about one
# plain interval plus instantiation): capture only when this many full intervals remain.
GRAPH_MIN_INTERVALS = 3

# Multiply-adds contract to FMA (one rounding instead of two); stated explicitly because Triton
# 3.9 warns that its default changes in 3.10.
_OPTIONS = {"enable_fp_fusion": True}

_warned: set[str] = set()
_graphs_broken = False  # set after a failed capture, so later calls do not retry it


def warn_once(key: str, message: str) -> None:
    """Emit ``message`` as a RuntimeWarning the first time ``key`` is seen in this process."""
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def interpreter_mode() -> bool:
    """True when triton was imported with ``TRITON_INTERPRET=1`` (kernels run on CPU tensors)."""
    if not HAVE_TRITON:
        return False
    try:
        return bool(triton.knobs.runtime.interpret)
    except AttributeError:  # older triton without knobs: it reads the variable directly
        return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_available(y: torch.Tensor) -> bool:
    """True when :func:`run_loop_triton` can run on ``y``: float32, no autograd, triton present,
    and a CUDA tensor (or a CPU tensor under the interpreter)."""
    if not HAVE_TRITON or y.dtype != torch.float32 or y.requires_grad:
        return False
    return y.is_cuda or (y.device.type == "cpu" and interpreter_mode())


if HAVE_TRITON:

    @triton.jit
    def _sweep_kernel(u_in, u_out, r, colsum, lcv, lch, rows_start, cols, H, W, h, w,
                      BH: tl.constexpr, BW: tl.constexpr):
        """One diffusion step on the factored iterate; grid (column tiles, h, B)."""
        tj = tl.program_id(0)
        cr = tl.program_id(1)
        b = tl.program_id(2)
        j = tj * BW + tl.arange(0, BW)
        jm = j < W
        has_l = jm & (j >= 1)
        has_r = (j + 1) < W
        # Ratios of the cells of this cell row seen by each column (itself, left and right
        # neighbour pixel) and of the cell rows above and below: five small gathers per program.
        cj = tl.load(cols + j, mask=jm, other=0)
        cl = tl.load(cols + j - 1, mask=has_l, other=0)
        cn = tl.load(cols + j + 1, mask=has_r, other=0)
        rb = r + b * h * w
        r_c = tl.load(rb + cr * w + cj, mask=jm, other=1.0)
        r_l = tl.load(rb + cr * w + cl, mask=has_l, other=1.0)
        r_r = tl.load(rb + cr * w + cn, mask=has_r, other=1.0)
        r_up = tl.load(rb + tl.maximum(cr - 1, 0) * w + cj, mask=jm, other=1.0)
        r_dn = tl.load(rb + tl.minimum(cr + 1, h - 1) * w + cj, mask=jm, other=1.0)
        i0 = tl.load(rows_start + cr)
        i1 = tl.load(rows_start + cr + 1)
        ub_in = u_in + b * H * W
        ub_out = u_out + b * H * W
        lcvb = lcv + b * (H - 1) * W
        lchb = lch + b * H * (W - 1)
        acc = tl.zeros([BW], dtype=tl.float32)
        for c0 in range(i0, i1, BH):
            i = c0 + tl.arange(0, BH)
            im = i < i1
            m = im[:, None] & jm[None, :]
            m_up = m & (i >= 1)[:, None]
            m_dn = m & ((i + 1) < H)[:, None]
            m_l = im[:, None] & has_l[None, :]
            m_r = im[:, None] & has_r[None, :]
            off = i[:, None] * W + j[None, :]
            # The row above the first row of the cell row lies in the cell row above, the row
            # below its last row in the cell row below (cells are contiguous row ranges).
            ra = tl.where((i == i0)[:, None], r_up[None, :], r_c[None, :])
            rc = tl.where((i == i1 - 1)[:, None], r_dn[None, :], r_c[None, :])
            v = tl.load(ub_in + off, mask=m, other=0.0) * r_c[None, :]
            a = tl.load(ub_in + off - W, mask=m_up, other=0.0) * ra
            c = tl.load(ub_in + off + W, mask=m_dn, other=0.0) * rc
            left = tl.load(ub_in + off - 1, mask=m_l, other=0.0) * r_l[None, :]
            right = tl.load(ub_in + off + 1, mask=m_r, other=0.0) * r_r[None, :]
            # Missing links (image border) load as 0, so border pixels need no branch.
            k_up = tl.load(lcvb + off - W, mask=m_up, other=0.0)
            k_dn = tl.load(lcvb + off, mask=m_dn, other=0.0)
            offh = i[:, None] * (W - 1) + j[None, :]
            k_l = tl.load(lchb + offh - 1, mask=m_l, other=0.0)
            k_r = tl.load(lchb + offh, mask=m_r, other=0.0)
            nv = v + k_up * (a - v) + k_dn * (c - v) + k_l * (left - v) + k_r * (right - v)
            tl.store(ub_out + off, nv, mask=m)
            acc += tl.sum(tl.where(m, nv, 0.0), axis=0)
        tl.store(colsum + (b * h + cr) * W + j, acc, mask=jm)

    @triton.jit
    def _ratio_kernel(colsum, r, src0, invalid, inv_count, cols_start, W, h, w, max_cell_w, eps,
                      BC: tl.constexpr):
        """R = src0 / (down(U) + eps) + invalid per cell (src0 is 0, invalid 1 on empty cells,
        exactly the torch loop's formula); grid (cell-column tiles, h, B)."""
        tc = tl.program_id(0)
        cr = tl.program_id(1)
        b = tl.program_id(2)
        cc = tc * BC + tl.arange(0, BC)
        cm = cc < w
        js = tl.load(cols_start + cc, mask=cm, other=0)
        je = tl.load(cols_start + cc + 1, mask=cm, other=0)
        base = colsum + (b * h + cr) * W
        acc = tl.zeros([BC], dtype=tl.float32)
        for k in range(0, max_cell_w):
            jj = js + k
            acc += tl.load(base + jj, mask=cm & (jj < je), other=0.0)
        cell = (b * h + cr) * w + cc
        s = tl.load(src0 + cell, mask=cm, other=0.0)
        inv = tl.load(invalid + cell, mask=cm, other=1.0)
        ic = tl.load(inv_count + cr * w + cc, mask=cm, other=0.0)
        tl.store(r + cell, s / (acc * ic + eps) + inv, mask=cm)

    @triton.jit
    def _materialise_kernel(u, r, out, partial, rows, cols, H, W, h, w, eps,
                            CHECK: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr):
        """out = U * up(R); with CHECK, ``out`` holds the previous check's Y: write this tile's
        max |Y - prev| / (|Y| + eps) to ``partial`` and then Y into ``out``.
        Grid (column tiles, row tiles, B)."""
        tj = tl.program_id(0)
        ti = tl.program_id(1)
        b = tl.program_id(2)
        i = ti * TH + tl.arange(0, TH)
        j = tj * TW + tl.arange(0, TW)
        im = i < H
        jm = j < W
        m = im[:, None] & jm[None, :]
        ri = tl.load(rows + i, mask=im, other=0)
        cj = tl.load(cols + j, mask=jm, other=0)
        ratio = tl.load(r + b * h * w + ri[:, None] * w + cj[None, :], mask=m, other=1.0)
        off = b * H * W + i[:, None] * W + j[None, :]
        y = tl.load(u + off, mask=m, other=0.0) * ratio
        if CHECK:
            p = tl.load(out + off, mask=m, other=0.0)
            d = tl.abs(y - p) / (tl.abs(y) + eps)
            # NaN would be dropped by max: count it as an infinite change (never "converged").
            d = tl.where(d != d, float("inf"), d)
            d = tl.where(m, d, 0.0)
            pid = (b * tl.num_programs(1) + ti) * tl.num_programs(0) + tj
            tl.store(partial + pid, tl.max(tl.max(d, axis=1), axis=0))
        tl.store(out + off, y, mask=m)


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


class _TritonLoop:
    """Buffers, launch grids and launch helpers for one call of :func:`run_loop_triton`."""

    def __init__(self, y, source, valid, cv, ch, resampler: Resampler, lam: float) -> None:
        B, C, H, W = y.shape
        if C != 1:
            raise ValueError(f"the triton loop takes (B, 1, H, W) depth, got {tuple(y.shape)}")
        h, w = resampler.partition.source_shape
        if (H, W) != tuple(resampler.partition.guide_shape):
            raise ValueError(f"depth {H}x{W} does not match the resampler's guide {resampler.partition.guide_shape}")
        dev = y.device
        f32 = torch.float32
        self.shape = (B, H, W, h, w)
        # U ping-pong starts from a copy, so ``y`` is untouched until the final write: a failure
        # mid-run leaves the caller's start intact (run_loop's fallback reruns from it).
        self.u = [y.detach().to(f32).contiguous().clone(), torch.empty((B, 1, H, W), dtype=f32, device=dev)]
        self.prev = self.u[0].clone()  # Y_0 (R_0 = 1): reference of the first check
        self.r = torch.ones((B, h, w), dtype=f32, device=dev)
        self.colsum = torch.empty((B, h, W), dtype=f32, device=dev)
        dummy = self.r  # stands in for empty link arrays (H or W == 1): every load is masked off
        lcv = (cv * lam).to(f32).expand(B, 1, H - 1, W).contiguous()
        lch = (ch * lam).to(f32).expand(B, 1, H, W - 1).contiguous()
        self.lcv = lcv if lcv.numel() else dummy
        self.lch = lch if lch.numel() else dummy
        valid = valid.expand(B, 1, h, w)
        self.src0 = torch.where(valid, source.to(f32).expand(B, 1, h, w), torch.zeros((), dtype=f32, device=dev)).contiguous()
        self.invalid = (~valid).to(f32).contiguous()
        self.inv_count = resampler.inv_counts.to(device=dev, dtype=f32).contiguous()
        self.rows = resampler.rows.to(device=dev, dtype=torch.int32).contiguous()
        self.cols = resampler.cols.to(device=dev, dtype=torch.int32).contiguous()
        # Cell ranges and sizes from the partition on the host: reading them back from the device
        # would cost a sync per call.
        row_starts, col_starts = resampler.partition.cell_starts()
        self.rows_start = torch.as_tensor(row_starts, dtype=torch.int32, device=dev)
        self.cols_start = torch.as_tensor(col_starts, dtype=torch.int32, device=dev)
        cell_h = int(np.diff(row_starts).max())
        self.max_cell_w = int(np.diff(col_starts).max())
        # Sweep tile: one chunk covers a whole cell row up to 16 rows (taller cell rows loop over
        # chunks); about 512-2048 elements per program. Untuned: no GPU was available to time it.
        self.BH = min(_next_pow2(cell_h), 16)
        self.BW = min(_next_pow2(W), max(32, 2048 // self.BH), 128)
        self.sweep_warps = 4 if self.BH * self.BW <= 1024 else 8
        self.BC = min(_next_pow2(w), 128)
        self.TH, self.TW = min(_next_pow2(H), 8), min(_next_pow2(W), 128)
        self.grid_sweep = (triton.cdiv(W, self.BW), h, B)
        self.grid_ratio = (triton.cdiv(w, self.BC), h, B)
        self.grid_mat = (triton.cdiv(W, self.TW), triton.cdiv(H, self.TH), B)
        self.partial = torch.zeros(self.grid_mat[0] * self.grid_mat[1] * B, dtype=f32, device=dev)
        self.change = torch.zeros((), dtype=f32, device=dev)

    def step(self, k: int) -> None:
        """One iteration U[k] -> U[1-k] (and R updated in place)."""
        B, H, W, h, w = self.shape
        _sweep_kernel[self.grid_sweep](self.u[k], self.u[1 - k], self.r, self.colsum, self.lcv, self.lch,
                                       self.rows_start, self.cols, H, W, h, w,
                                       BH=self.BH, BW=self.BW, num_warps=self.sweep_warps, **_OPTIONS)
        _ratio_kernel[self.grid_ratio](self.colsum, self.r, self.src0, self.invalid, self.inv_count,
                                       self.cols_start, W, h, w, self.max_cell_w, EPS, BC=self.BC, **_OPTIONS)

    def check(self, k: int) -> None:
        """Max relative change of Y = U[k]*up(R) since the last check into ``self.change``."""
        B, H, W, h, w = self.shape
        _materialise_kernel[self.grid_mat](self.u[k], self.r, self.prev, self.partial, self.rows, self.cols,
                                           H, W, h, w, EPS, CHECK=True, TH=self.TH, TW=self.TW, **_OPTIONS)
        torch.amax(self.partial, dim=0, out=self.change)

    def interval(self, k: int, n: int) -> int:
        """``n`` steps then a check, starting from U[k]; returns the new index of U."""
        for _ in range(n):
            self.step(k)
            k = 1 - k
        self.check(k)
        return k

    def traffic(self) -> tuple[int, int]:
        """(bytes per step, bytes per check): every tensor each kernel reads or writes, counted
        once per launch (neighbour re-reads hit the cache; the R gathers count as the whole R)."""
        u, r = self.u[0].nbytes, self.r.nbytes
        sweep = 2 * u + self.lcv.nbytes + self.lch.nbytes + r + self.colsum.nbytes \
            + self.rows_start.nbytes + self.cols.nbytes
        ratio = self.colsum.nbytes + self.src0.nbytes + self.invalid.nbytes + self.inv_count.nbytes \
            + self.cols_start.nbytes + r
        check = 3 * u + r + self.rows.nbytes + self.cols.nbytes + 2 * self.partial.nbytes
        return sweep + ratio, check

    def write_result(self, k: int, y: torch.Tensor) -> None:
        """y <- U[k] * up(R) (through a contiguous float32 buffer when y is not one)."""
        B, H, W, h, w = self.shape
        out = y if (y.is_contiguous() and y.dtype == torch.float32) else torch.empty_like(self.u[k])
        _materialise_kernel[self.grid_mat](self.u[k], self.r, out, self.partial, self.rows, self.cols,
                                           H, W, h, w, EPS, CHECK=False, TH=self.TH, TW=self.TW, **_OPTIONS)
        if out is not y:
            y.copy_(out)


def _capture(loop: _TritonLoop, k: int, n: int) -> "torch.cuda.CUDAGraph | None":
    """CUDA graph of ``loop.interval(k, n)``, or None (warned once) when capture fails."""
    global _graphs_broken
    try:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loop.interval(k, n)
        return graph
    except Exception as exc:  # pragma: no cover - needs a GPU
        _graphs_broken = True
        torch.cuda.synchronize()
        warn_once("triton-graph", f"CUDA graph capture of the triton loop failed ({exc!r}); using plain launches")
        return None


def triton_traffic(y: torch.Tensor, source: torch.Tensor, valid: torch.Tensor, cv: torch.Tensor,
                   ch: torch.Tensor, resampler: Resampler, check_every: int = 25) -> float:
    """Bytes :func:`run_loop_triton` moves per iteration on these inputs (for roofline figures):
    one step plus 1/check_every of a check, from the buffers the kernels actually use."""
    step, check = _TritonLoop(y, source, valid, cv, ch, resampler, 1.0).traffic()
    return step + check / check_every


@torch.no_grad()
def run_loop_triton(y: torch.Tensor, source: torch.Tensor, valid: torch.Tensor, cv: torch.Tensor,
                    ch: torch.Tensor, resampler: Resampler, lam: float, iterations: int,
                    tol: float | None = None, check_every: int = 25, cuda_graph: bool = True) -> LoopStats:
    """Same contract as :func:`dada_ros.core.loop.run_loop` (result written into ``y``), in Triton.

    The batch runs together and stops when every item's max relative change over the last
    ``check_every`` steps is below ``tol``, exactly like the torch loop (``residual`` is the worst
    item's). ``cuda_graph``: replay the steady check interval from a CUDA graph (CUDA only; falls
    back to plain launches if capture fails).

    Raises:
        ValueError: when triton cannot run on ``y`` (see :func:`triton_available`) or shapes are wrong.
    """
    if not triton_available(y):
        raise ValueError("the triton backend needs triton and a CUDA float32 tensor (or TRITON_INTERPRET=1 on CPU)")
    if check_every < 1:
        raise ValueError(f"check_every must be >= 1, got {check_every}")
    t0 = time.perf_counter()
    stats = LoopStats()
    loop = _TritonLoop(y, source, valid, cv, ch, resampler, lam)
    use_graph = cuda_graph and y.is_cuda and not _graphs_broken
    graphs: dict[int, torch.cuda.CUDAGraph] = {}  # keyed by the U index an interval starts from
    k, it = 0, 0
    while it < iterations:
        n = min(check_every, iterations - it)
        # The first interval runs plainly: it JIT-compiles the kernels, which must not happen
        # inside a capture. Odd check_every swaps the U buffers, hence one graph per start index.
        if use_graph and it > 0 and n == check_every and (k in graphs or iterations - it >= GRAPH_MIN_INTERVALS * n):
            if k not in graphs:
                graph = _capture(loop, k, n)
                if graph is None:
                    use_graph = False
                else:
                    graphs[k] = graph
        if use_graph and k in graphs and n == check_every:
            graphs[k].replay()
            k = k if n % 2 == 0 else 1 - k
        else:
            k = loop.interval(k, n)
        it += n
        change = float(loop.change)  # the one host sync per check interval
        stats.iterations = it
        stats.residual = change
        stats.residual_history.append(change)
        if tol is not None and change < tol:
            stats.converged = True
            break
    loop.write_result(k, y)
    if y.is_cuda:
        torch.cuda.synchronize(y.device)
    stats.seconds = time.perf_counter() - t0
    return stats
