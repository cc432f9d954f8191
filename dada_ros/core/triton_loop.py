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
    def _sweep_kernel(u_in, u_out, r, colsum, lcv, lch, rows_start, cols, z, y_out, wa, wb, H, W, h, w,
                      SEMI: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr):
        """One diffusion step on the factored iterate; grid (column tiles, h, B).

        With SEMI the input iterate is wa*U*R + wb*Z (the weighted recurrence of
        :mod:`.schedule`; Z = the iterate two applications back); this program also stores its
        own pixels of that iterate to ``y_out`` for the recurrence two applications later."""
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
            if SEMI:
                zb = z + b * H * W
                v = wa * v + wb * tl.load(zb + off, mask=m, other=0.0)
                a = wa * a + wb * tl.load(zb + off - W, mask=m_up, other=0.0)
                c = wa * c + wb * tl.load(zb + off + W, mask=m_dn, other=0.0)
                left = wa * left + wb * tl.load(zb + off - 1, mask=m_l, other=0.0)
                right = wa * right + wb * tl.load(zb + off + 1, mask=m_r, other=0.0)
                tl.store(y_out + b * H * W + off, v, mask=m)
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
    def _materialise_kernel(u, r, z, out, partial, rows, cols, H, W, h, w, eps, wa, wb,
                            SEMI: tl.constexpr, CHECK: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr):
        """out = Y, the iterate: U * up(R), or wa*U*up(R) + wb*Z with SEMI; with CHECK, ``out``
        holds the previous check's Y: write this tile's max |Y - prev| / (|Y| + eps) to
        ``partial`` and then Y into ``out``.
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
        if SEMI:
            y = wa * y + wb * tl.load(z + off, mask=m, other=0.0)
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


class TritonLoop:
    """The Triton backend: buffers, launch grids and launches for one loop call; same contract as
    :class:`dada_ros.core.loop.TorchLoop` (steps / change / result)."""

    def __init__(self, y, source, valid, cv, ch, resampler: Resampler, lam: float, semi: bool = False) -> None:
        B, C, H, W = y.shape
        if C != 1:
            raise ValueError(f"the triton loop takes (B, 1, H, W) depth, got {tuple(y.shape)}")
        h, w = resampler.partition.source_shape
        if (H, W) != tuple(resampler.partition.guide_shape):
            raise ValueError(f"depth {H}x{W} does not match the resampler's guide {resampler.partition.guide_shape}")
        dev = y.device
        f32 = torch.float32
        self.shape = (B, H, W, h, w)
        self.semi = semi
        # U ping-pong starts from a copy, so ``y`` is untouched until the final write: a failure
        # mid-run leaves the caller's start intact (run_loop's fallback reruns from it).
        self.u = [y.detach().to(f32).contiguous().clone(), torch.empty((B, 1, H, W), dtype=f32, device=dev)]
        self.prev = self.u[0].clone()  # Y_0 (R_0 = 1): reference of the first check
        # The weighted recurrence's materialised iterates (rotating; see fused_cpu._FusedItem).
        # They start as Y0: their weight is 0 until they hold an iterate, but 0 * garbage is NaN.
        self.ys = [self.u[0].clone() for _ in range(3)] if semi else [self.u[0]] * 3
        self.k, self.sweeps, self.w_last = 0, 0, 1.0
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
        self.change_t = torch.zeros((), dtype=f32, device=dev)
        self.use_graph = y.is_cuda and not _graphs_broken
        self.graphs: dict[tuple[int, int], "torch.cuda.CUDAGraph"] = {}  # (U index, steps) -> graph
        self.seen: set[tuple[int, int]] = set()

    def _sweep(self, w: float) -> None:
        """One application: U[k] -> U[1-k] (R updated in place), then the iterate's weight is w."""
        B, H, W, h, w_ = self.shape
        k = self.k
        self.sweeps += 1
        z = self.ys[(self.sweeps - 2) % 3]
        y_out = self.ys[self.sweeps % 3]
        _sweep_kernel[self.grid_sweep](self.u[k], self.u[1 - k], self.r, self.colsum, self.lcv, self.lch,
                                       self.rows_start, self.cols, z, y_out, self.w_last, 1.0 - self.w_last,
                                       H, W, h, w_, SEMI=self.semi, BH=self.BH, BW=self.BW,
                                       num_warps=self.sweep_warps, **_OPTIONS)
        _ratio_kernel[self.grid_ratio](self.colsum, self.r, self.src0, self.invalid, self.inv_count,
                                       self.cols_start, W, h, w_, self.max_cell_w, EPS, BC=self.BC, **_OPTIONS)
        self.k = 1 - k
        self.w_last = float(w)

    def steps(self, weights: np.ndarray) -> None:
        n = len(weights)
        key = (self.k, n)
        # Plain chunks (all weights 1, no state but U and R) replay a CUDA graph: the first one of
        # a kind runs plainly (it JIT-compiles the kernels, which must not happen inside a
        # capture), the second is captured, later ones replay. Odd lengths swap U, hence the key.
        if self.use_graph and not self.semi and key in self.seen and key not in self.graphs:
            graph = _capture(self, n)
            if graph is None:
                self.use_graph = False
            else:
                self.graphs[key] = graph
        if key in self.graphs:
            self.graphs[key].replay()
            self.k = self.k if n % 2 == 0 else 1 - self.k
            self.sweeps += n
            return
        self.seen.add(key)
        for w in weights:
            self._sweep(w)

    def _materialise(self, out: torch.Tensor, check: bool) -> None:
        B, H, W, h, w = self.shape
        z = self.ys[(self.sweeps - 1) % 3]
        _materialise_kernel[self.grid_mat](self.u[self.k], self.r, z, out, self.partial, self.rows, self.cols,
                                           H, W, h, w, EPS, self.w_last, 1.0 - self.w_last, SEMI=self.semi,
                                           CHECK=check, TH=self.TH, TW=self.TW, **_OPTIONS)

    def change(self) -> float:
        """Max relative change of the iterate since the last check (the one host sync per check)."""
        self._materialise(self.prev, check=True)
        torch.amax(self.partial, dim=0, out=self.change_t)
        return float(self.change_t)

    def traffic(self) -> tuple[int, int]:
        """(bytes per step, bytes per check): every tensor each kernel reads or writes, counted
        once per launch (neighbour re-reads hit the cache; the R gathers count as the whole R)."""
        u, r = self.u[0].nbytes, self.r.nbytes
        sweep = (4 if self.semi else 2) * u + self.lcv.nbytes + self.lch.nbytes + r + self.colsum.nbytes \
            + self.rows_start.nbytes + self.cols.nbytes
        ratio = self.colsum.nbytes + self.src0.nbytes + self.invalid.nbytes + self.inv_count.nbytes \
            + self.cols_start.nbytes + r
        check = (4 if self.semi else 3) * u + r + self.rows.nbytes + self.cols.nbytes + 2 * self.partial.nbytes
        return sweep + ratio, check

    def result(self, y: torch.Tensor) -> None:
        """y <- the iterate (through a contiguous float32 buffer when y is not one)."""
        out = y if (y.is_contiguous() and y.dtype == torch.float32) else torch.empty_like(self.u[self.k])
        self._materialise(out, check=False)
        if out is not y:
            y.copy_(out)


def _capture(loop: TritonLoop, n: int) -> "torch.cuda.CUDAGraph | None":
    """CUDA graph of ``n`` plain applications from the current U, or None (warned once) when
    capture fails. Capturing records the launches without running them, so the loop's host-side
    counters are restored afterwards."""
    global _graphs_broken
    k, sweeps = loop.k, loop.sweeps
    try:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(n):
                loop._sweep(1.0)
        return graph
    except Exception as exc:  # pragma: no cover - needs a GPU
        _graphs_broken = True
        torch.cuda.synchronize()
        warn_once("triton-graph", f"CUDA graph capture of the triton loop failed ({exc!r}); using plain launches")
        return None
    finally:
        loop.k, loop.sweeps = k, sweeps


def triton_traffic(y: torch.Tensor, source: torch.Tensor, valid: torch.Tensor, cv: torch.Tensor,
                   ch: torch.Tensor, resampler: Resampler, check_every: int = 25, semi: bool = False) -> float:
    """Bytes the Triton loop moves per application on these inputs (for roofline figures):
    one step plus 1/check_every of a check, from the buffers the kernels actually use."""
    step, check = TritonLoop(y, source, valid, cv, ch, resampler, 1.0, semi).traffic()
    return step + check / check_every


@torch.no_grad()
def run_loop_triton(y: torch.Tensor, source: torch.Tensor, valid: torch.Tensor, cv: torch.Tensor,
                    ch: torch.Tensor, resampler: Resampler, lam: float, iterations: int | None,
                    tol: float | None = None, check_every: int = 25, schedule=None) -> LoopStats:
    """``run_loop(..., backend="triton")``: the plain loop, or ``schedule``.

    Raises:
        ValueError: when triton cannot run on ``y`` (see :func:`triton_available`) or shapes are wrong.
    """
    from .loop import run_loop

    return run_loop(y, source, valid, cv, ch, resampler, lam, iterations, tol, check_every, backend="triton",
                    schedule=schedule)
