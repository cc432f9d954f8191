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

The answer is the same as the torch backend of :func:`dada_ros.core.loop.run_loop` up to float
rounding (tests pin both to the reference recurrence); :class:`FusedLoop` has the backend
contract of :class:`dada_ros.core.loop.TorchLoop` and ``run_loop`` uses it for CPU float32
tensors when numba is importable.
"""

from __future__ import annotations

import os
import stat
import tempfile
import warnings

import numpy as np
import torch

try:  # numba is optional: without it the torch loop runs (slower, same answer)
    import numba
    from numba import njit, prange

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only on installs without numba
    HAVE_NUMBA = False


# Where the compiled kernels are cached. ``@njit(cache=True)`` picks a cache location when a
# function is DECORATED (numba/core/caching.py: FunctionCache.__init__ tries the locators in order:
# numba.config.CACHE_DIR when set, then ``__pycache__`` beside the source when writable, then the
# user-wide ~/.cache/numba) and raises "cannot cache function ...: no locator available" when none
# is writable, so the import of this module fails. An installed package meets exactly that: a ROS
# node run as a service user with a read-only HOME, from a read-only site-packages / install space.
# So, before the kernels below are decorated (and only when the package folder is not writable and
# the user chose no NUMBA_CACHE_DIR), point numba.config.CACHE_DIR at a dada_ros cache of this user.
# Setting the config attribute works although numba was imported (and its config read) above: the
# locator reads config.CACHE_DIR at decoration time, and numba's reload_config() re-reads the
# environment only when a NUMBA_* variable changed. It is process-wide: a function decorated later
# in this process is cached there too (dada_ros.core.warm_start's kernels: when imported after this).
#   NUMBA_CACHE = None   numba's own choice (the user's NUMBA_CACHE_DIR, or __pycache__ here)
#                 a path the directory set here
#                 ""     nowhere writable: the kernels are compiled in every process (a warning)
NUMBA_CACHE: str | None = None


def _can_cache_in(path: str) -> bool:
    """The test numba's locators make (caching.py, _CacheLocator.ensure_cache_path): create the
    folder, write a temporary file in it. A permission check would be wrong: root writes into a
    mode 0555 folder, and nobody writes on a read-only mount."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def _private_dir(path: str) -> bool:
    """``path`` is a directory of this user that nobody else may write (created 0700 if missing).
    The shared temp folder needs it: numba's cache files are pickles and machine code that this
    process would load and run, so a folder another user created (or can write) is refused."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return False
    try:
        st = os.lstat(path)  # a symlink is not followed: refused below
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_mode & 0o022:
        return False
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return False
    return _can_cache_in(path)


def _choose_numba_cache() -> str | None:
    """The cache folder to set (see above): None = leave numba's choice, "" = none writable."""
    if numba.config.CACHE_DIR:  # the user's NUMBA_CACHE_DIR (or .numba_config.yaml): theirs
        return None
    if _can_cache_in(os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__")):
        return None  # a source checkout, or an install this user may write: numba's default
    xdg = os.environ.get("XDG_CACHE_HOME", "")  # a relative one is ignored (XDG base directory spec)
    base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    user_dir = os.path.join(base, "dada_ros", "numba")
    if os.path.isabs(user_dir) and _can_cache_in(user_dir):  # no HOME nor passwd entry: "~" stays relative
        return user_dir
    try:
        uid = os.getuid() if hasattr(os, "getuid") else os.getlogin()
        tmp_dir = os.path.join(tempfile.gettempdir(), f"dada_ros-numba-{uid}")
    except OSError:  # gettempdir(): no usable temp folder at all (FileNotFoundError)
        return ""
    return tmp_dir if _private_dir(tmp_dir) else ""


if HAVE_NUMBA:
    NUMBA_CACHE = _choose_numba_cache()
    if NUMBA_CACHE:
        numba.config.CACHE_DIR = NUMBA_CACHE
    elif NUMBA_CACHE == "":
        # Better a compile in every process (the node warms its kernels before "ready") than an
        # import that fails.
        warnings.warn("dada_ros: no writable folder for numba's kernel cache (the package folder, "
                      "$XDG_CACHE_HOME or ~/.cache, the temp folder): the kernels are compiled in every "
                      "process; set NUMBA_CACHE_DIR to a writable folder to cache them", RuntimeWarning,
                      stacklevel=2)
        _numba_njit = njit

        def njit(*args, **kwargs):  # noqa: F811 - the same decorator without the cache
            kwargs["cache"] = False
            return _numba_njit(*args, **kwargs)


from .loop import EPS
from .resample import Resampler

if HAVE_NUMBA:

    EPS32 = np.float32(EPS)

    @njit(cache=True, inline="always")
    def _form_row(dst, off, u, r, z, a, b, semi, m, masked, packed, spans, span_off, s0, s1):
        """dst[off:off+W] = the iterate's row: U*R (plain) or a*U*R + b*Z (weighted recurrence, Z
        and ``m`` rows of the image); with ``masked`` the weights apply in the region only:
        U*R + b*m*(Z - U*R) there (the same as a*U*R + b*Z where m = 1, as a + b = 1), U*R elsewhere.
        A masked row's region lies in its spans ``spans[s0:s1]`` ((k, 2) column ranges; bounds, not
        a slice: a slice is a new array whose reference count the threads would update), and Z and
        ``m`` are then PACKED: the span pixels of the whole image one after another, span s from
        ``span_off[s]`` on. The warm start's region is a few thin strips of cold cells; read in
        place, its Z and region pixels were one or two cache lines per row of three full images
        (misses the prefetcher does not foresee), which cost ~40% of a step. A region of more than
        PACKED_MAX_FRACTION of the image is not ``packed``: the weights at every pixel of the row
        (the span loop does not vectorise; over half an image it cost 2.3x a plain step)."""
        if semi and masked and not packed:  # a large region: Z and m are image rows
            for j in range(u.shape[0]):
                ur = u[j] * r[j]
                dst[j + off] = ur + b * m[j] * (z[j] - ur)
        elif semi and masked:
            for j in range(u.shape[0]):
                dst[j + off] = u[j] * r[j]
            for s in range(s0, s1):
                j0 = spans[s, 0]
                base = span_off[s] - j0
                for j in range(j0, spans[s, 1]):
                    ur = u[j] * r[j]
                    dst[j + off] = ur + b * m[base + j] * (z[base + j] - ur)
        elif semi:
            for j in range(u.shape[0]):
                dst[j + off] = a * (u[j] * r[j]) + b * z[j]
        else:
            for j in range(u.shape[0]):
                dst[j + off] = u[j] * r[j]

    @njit(cache=True, inline="always")
    def _cell_ratios(ro, acc_row, cols, src_row, valid_row, inv_row):
        """One cell row's adjustment ratios: ``ro[c] = S / (mean of the row's column sums
        ``acc_row`` over cell c + EPS)`` on valid cells, 1 on invalid ones."""
        for cc in range(ro.shape[0]):
            ro[cc] = 0.0
        for j in range(acc_row.shape[0]):
            ro[cols[j]] += acc_row[j]
        for cc in range(ro.shape[0]):
            if valid_row[cc]:
                ro[cc] = src_row[cc] / (ro[cc] * inv_row[cc] + EPS)
            else:
                ro[cc] = 1.0

    @njit(parallel=True, cache=True, fastmath=False, error_model="numpy")
    def _sweep(u_in, rx_in, z, wa, wb, semi, y_out, u_out, r_out, rx_out, lcv_p, lch_p, cols, row_start,
               src, valid, inv_count, chunks, region, masked, packed, spans, span_off, row_spans):
        """One application. ``rx_in`` (h, W) are the ratios R_{t-1} already expanded to pixel
        columns (each cell row's ratios repeated over its columns), so the inner loops read them
        without a gather; the sweep writes R_t both per cell (``r_out``, h x w) and expanded
        (``rx_out``). lcv_p (H+1, W) / lch_p (H, W+1) are lambda*c padded with zero links at the
        borders, so the inner loop has no branches and vectorises.

        With ``semi`` the input iterate is y = wa*U*R + wb*Z (wa = w of the last application, wb = 1 - wa,
        Z = the iterate two applications back): it is formed row by row on the fly, diffused,
        and also written to ``y_out`` (each row once, by the chunk that owns its cell row), which
        the recurrence needs two applications later. Without ``semi`` it is U*R (the plain loop).
        With ``masked`` (a region schedule) and ``packed``, Z, ``y_out`` and ``region`` are the packed
        (1, P) buffers of the region's spans (``spans``, ``span_off``, ``row_spans``: see _form_row).

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
                ia = max(i0 - 1, 0)
                p = 0 if packed else ia  # the packed buffers' one row, or the image row
                _form_row(buf[ka], 1, u_in[ia], r_up, z[p], wa, wb, semi, region[p], masked, packed,
                          spans, span_off, row_spans[ia], row_spans[ia + 1])
                p = 0 if packed else i0  # the packed buffers' one row, or the image row
                _form_row(buf[kb], 1, u_in[i0], r_cur, z[p], wa, wb, semi, region[p], masked, packed,
                          spans, span_off, row_spans[i0], row_spans[i0 + 1])
                for i in range(i0, i1):
                    kc = 3 - ka - kb
                    rc = r_dn if i == i1 - 1 else r_cur
                    ic = min(i + 1, H - 1)
                    p = 0 if packed else ic
                    _form_row(buf[kc], 1, u_in[ic], rc, z[p], wa, wb, semi, region[p], masked, packed,
                              spans, span_off, row_spans[ic], row_spans[ic + 1])
                    if semi:  # row i of the input iterate, kept for the recurrence (where it is read)
                        bb = buf[kb]
                        if packed:  # as Z (see _form_row)
                            yo = y_out[0]
                            for sp in range(row_spans[i], row_spans[i + 1]):
                                j0 = spans[sp, 0]
                                base = span_off[sp] - j0
                                for j in range(j0, spans[sp, 1]):
                                    yo[base + j] = bb[j + 1]
                        else:
                            yo = y_out[i]
                            for j in range(W):
                                yo[j] = bb[j + 1]
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
                _cell_ratios(ro, acc_row, cols, src[cr], valid[cr], inv_count[cr])
                rxo = rx_out[cr]
                for j in range(W):
                    rxo[j] = ro[cols[j]]

    @njit(parallel=True, cache=True)
    def _materialise(u, rx, z, a, b, semi, rows, out, region, masked, packed, spans, span_off, row_spans):
        """out = the iterate: U * up(R), or a*U*up(R) + b*Z with ``semi`` (see :func:`_form_row`)."""
        H, W = u.shape
        for i in prange(H):
            p = np.int64(0) if packed else np.int64(i)  # the packed buffers' one row, or row i
            _form_row(out[i], 0, u[i], rx[rows[i]], z[p], a, b, semi, region[p], masked, packed,
                      spans, span_off, row_spans[i], row_spans[i + 1])

    @njit(parallel=True, cache=True, error_model="numpy")
    def _check_change(u, rx, z, a, b, semi, rows, prev, chunks, region, masked, packed, spans, span_off, row_spans):
        """Convergence check in one pass: max |Y - prev| / |Y| with Y the iterate (U * up(R), or
        a*U*up(R) + b*Z with ``semi``), then prev <- Y. Returns (that max, max |Y|) as float32:
        the second is the divergence guard's range test without another pass over the image.

        Written for the vector units: ``error_model="numpy"`` makes the division plain IEEE (numba's
        default tests every divisor for zero, which stops vectorisation: 5x slower), and the maxima
        are taken over the int32 bit patterns of the non-negative values, which order like the
        floats (numba's float max reduction does not vectorise). A NaN wins both maxima (its bit
        pattern is above +inf's), so a NaN never passes the tolerance nor the guard."""
        H, W = u.shape
        chunk_max = np.zeros(chunks, dtype=np.int32)
        chunk_abs = np.zeros(chunks, dtype=np.int32)
        for ck in prange(chunks):
            d = np.empty(W, np.float32)
            di = d.view(np.int32)
            e = np.empty(W, np.float32)
            ei = e.view(np.int32)
            yrow = np.empty(W, np.float32)
            m = np.int32(0)
            ma = np.int32(0)
            for i in range(ck * H // chunks, (ck + 1) * H // chunks):
                p = 0 if packed else i  # the packed buffers' one row, or row i
                _form_row(yrow, 0, u[i], rx[rows[i]], z[p], a, b, semi, region[p], masked, packed,
                          spans, span_off, row_spans[i], row_spans[i + 1])
                pi = prev[i]
                for j in range(W):
                    y = yrow[j]
                    d[j] = abs(y - pi[j]) / (abs(y) + EPS32)
                    e[j] = abs(y)
                    pi[j] = y
                for j in range(W):
                    m = max(m, di[j])
                    ma = max(ma, ei[j])
            chunk_max[ck] = m
            chunk_abs[ck] = ma
        out = np.empty(2, np.int32)
        out[0] = chunk_max.max()
        out[1] = chunk_abs.max()
        return out.view(np.float32)


    @njit(parallel=True, cache=True, error_model="numpy")
    def _adjust_kernel(y, src, valid, row_start, cols, inv_count, chunks):
        """y *= up(S / down(y)) in place (ratio 1 on invalid cells): the masked adjustment in two
        passes over the image, cell rows split into ``chunks`` as in :func:`_sweep` (float32
        column sums, as there)."""
        H, W = y.shape
        h, w = src.shape
        for ck in prange(chunks):
            acc_row = np.empty(W, np.float32)
            ratio = np.empty(w, np.float32)
            for cr in range(ck * h // chunks, (ck + 1) * h // chunks):
                i0 = row_start[cr]
                i1 = row_start[cr + 1]
                acc_row[:] = 0.0
                for i in range(i0, i1):
                    yi = y[i]
                    for j in range(W):
                        acc_row[j] += yi[j]
                _cell_ratios(ratio, acc_row, cols, src[cr], valid[cr], inv_count[cr])
                for i in range(i0, i1):
                    yi = y[i]
                    for j in range(W):
                        yi[j] *= ratio[cols[j]]


def _cell_arrays(resampler: Resampler) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """What the kernels read of a partition: the first guide row of each cell row (h + 1,), the
    cell column of each guide column (W,), 1 / pixels per cell (h, w) float64, and the chunks (one
    per numba thread of the calling thread, at most one per cell row)."""
    h = resampler.partition.source_shape[0]
    return (resampler.partition.cell_starts()[0].astype(np.int64), resampler.cols.cpu().numpy().astype(np.int64),
            resampler.inv_counts.cpu().numpy().astype(np.float64), min(h, max(1, numba.get_num_threads())))


def adjust_fused_(y: torch.Tensor, source: torch.Tensor, valid: torch.Tensor, resampler: Resampler) -> torch.Tensor:
    """In-place masked adjustment ``y *= up(S / down(y))`` of a CPU float32 (B, 1, H, W) tensor in one
    numba kernel: what :func:`dada_ros.core.loop.adjust_` does in torch (two reshaped means and a
    broadcast product cost ~0.9 ms at 640x480 x4 on two threads; this ~0.2 ms). A weighted run pays
    it twice per solve (Y0 and the end), warm frames included."""
    row_start, cols, inv, chunks = _cell_arrays(resampler)
    for b in range(y.shape[0]):
        _adjust_kernel(y[b, 0].numpy(), np.ascontiguousarray(source[b, 0].numpy(), dtype=np.float32),
                       np.ascontiguousarray(valid[b, 0].numpy()), row_start, cols, inv, chunks)
    return y


def fused_available(y: torch.Tensor) -> bool:
    """True when the fused kernel can run this loop (CPU float32, no autograd, numba present)."""
    return HAVE_NUMBA and y.device.type == "cpu" and y.dtype == torch.float32 and not y.requires_grad


if HAVE_NUMBA:

    @njit(cache=True)
    def _spans_kernel(region, merge_gap, spans, row_spans):
        """Fill ``spans`` / ``row_spans`` (see :func:`region_spans`); returns the span count (with
        ``spans`` too short: the count it needs, nothing written past its end)."""
        H, W = region.shape
        n = spans.shape[0]
        k = 0
        for i in range(H):
            row_spans[i] = k
            stop = 0  # end of this row's last span
            j = 0
            while j < W:
                if region[i, j] == 0:
                    j += 1
                    continue
                start = j
                while j < W and region[i, j] != 0:
                    j += 1
                if k > row_spans[i] and start - stop < merge_gap:
                    if k - 1 < n:
                        spans[k - 1, 1] = j  # close to the previous span of this row: one span
                else:
                    if k < n:
                        spans[k, 0] = start
                        spans[k, 1] = j
                    k += 1
                stop = j
        row_spans[H] = k
        return k


# A region schedule's weights are applied in packed spans when the region covers at most this
# share of the image (the warm start's cold cells: ~1%), else at every pixel (see _form_row).
PACKED_MAX_FRACTION = 0.25


def region_spans(region: np.ndarray, merge_gap: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where a region schedule's weights apply, as the fused sweep reads it: ``spans`` (k, 2)
    [start, stop) column ranges, row i's being ``spans[row_spans[i]:row_spans[i + 1]]``
    (``row_spans`` (H + 1,)), that hold every nonzero pixel of ``region`` (H, W); ``span_off``
    (k + 1,) where each span starts in the packed buffers (see ``_form_row``) and ``pixels`` (P,)
    the flat image index of every packed position. Runs of a row closer than ``merge_gap``
    columns are one span (a span costs a loop start; the pixels between keep their weight 0)."""
    H, W = region.shape
    row_spans = np.zeros(H + 1, np.int64)
    spans = np.zeros((max(H, 1), 2), np.int64)  # one span a row is the common case (a strip)
    k = _spans_kernel(region, merge_gap, spans, row_spans)
    if k > spans.shape[0]:
        spans = np.zeros((k, 2), np.int64)
        _spans_kernel(region, merge_gap, spans, row_spans)
    spans = spans[:k]
    lengths = spans[:, 1] - spans[:, 0]
    span_off = np.zeros(k + 1, np.int64)
    np.cumsum(lengths, out=span_off[1:])
    rows = np.repeat(np.arange(H, dtype=np.int64), np.diff(row_spans))
    pixels = np.arange(span_off[-1], dtype=np.int64) + np.repeat(rows * W + spans[:, 0] - span_off[:-1], lengths)
    return spans, row_spans, span_off, pixels


class _FusedItem:
    """The buffers of one batch item: the factored iterate (U, R) and, for a weighted schedule,
    the materialised iterates the recurrence needs (three, rotating: the one a sweep writes, the
    one it reads as Z, and the one the next sweep reads)."""

    def __init__(self, yb: np.ndarray, h: int, w: int, semi: bool, pixels: np.ndarray | None = None) -> None:
        H, W = yb.shape
        self.u = [yb.copy(), np.empty_like(yb)]
        self.r = np.ones((h, w), np.float32)  # R_t per cell (written by the sweep, read only there)
        self.rx = [np.ones((h, W), np.float32), np.ones((h, W), np.float32)]  # R expanded to columns
        # Z starts as Y0 everywhere: its weight is 0 until it holds a real iterate, but 0 * garbage
        # could be NaN. A region schedule keeps them packed (``pixels``: see region_spans).
        if semi and pixels is not None:
            self.ys = [yb.reshape(-1)[pixels][None] for _ in range(3)]
        else:
            self.ys = [yb.copy() for _ in range(3)] if semi else [np.empty((1, 1), np.float32)] * 3
        self.ref = yb.copy()
        self.k = 0  # index of the current U / rx
        self.sweeps = 0


class FusedLoop:
    """The fused numba backend (one memory pass per application); same contract as
    :class:`dada_ros.core.loop.TorchLoop`. Batch items run one after another."""

    def __init__(self, y, source, valid, cv, ch, resampler: Resampler, lam: float, semi: bool,
                 region: np.ndarray | None = None) -> None:
        warn_spin_setting_once()
        self.semi = semi
        # Region schedule (Schedule.region, (H, W), the same for every batch item): weights only
        # where it is nonzero; plain: never masked.
        self.masked = bool(semi and region is not None)
        self.packed = False
        spans = None  # (spans, row_spans, span_off, pixels) of a packed region (region_spans)
        if self.masked:
            # a region of every pixel is the unmasked schedule; only a small one is packed (_form_row)
            region = np.asarray(region)
            n_region = np.count_nonzero(region)
            self.masked = n_region < region.size
            self.packed = self.masked and n_region <= PACKED_MAX_FRACTION * region.size
            if self.packed:
                spans = region_spans(region)
        self.rows = resampler.rows.cpu().numpy().astype(np.int64)
        h, w = resampler.partition.source_shape
        self.row_start, self.cols, self.inv_count, self.chunks = _cell_arrays(resampler)
        self.items = []
        self.w_last = 1.0  # weight of the last application: how the current iterate is formed
        self.abs_max: float | None = None  # max |iterate| at the last change() (the divergence guard's test)
        for b in range(y.shape[0]):
            yb = y[b, 0].numpy()
            H, W = yb.shape
            # lambda * c written straight into the padded arrays (a torch product and np.zeros
            # first cost ~0.5 ms a solve at 640x480: a tenth of a warm frame's loop set-up)
            lam32 = np.float32(lam)
            lcv = np.empty((H + 1, W), np.float32)
            lcv[0] = lcv[H] = 0.0  # zero links above row 0 and below row H-1
            np.multiply(cv[b if cv.shape[0] > 1 else 0, 0].detach().numpy(), lam32, out=lcv[1:H])
            lch = np.empty((H, W + 1), np.float32)
            lch[:, 0] = lch[:, W] = 0.0
            np.multiply(ch[b if ch.shape[0] > 1 else 0, 0].detach().numpy(), lam32, out=lch[:, 1:W])
            src = np.ascontiguousarray(source[b, 0].numpy(), dtype=np.float32)
            vb = np.ascontiguousarray(valid[b, 0].numpy())
            if self.packed:  # the region's spans; its values, Z and the iterates packed (_form_row)
                it = _FusedItem(yb, h, w, semi, spans[3])
                it.region = np.ascontiguousarray(region.reshape(-1)[spans[3]], dtype=np.float32)[None]
                it.spans, it.row_spans, it.span_off = spans[:3]
            else:  # no row has spans; a large region is read at every pixel, else U stands in (never read)
                it = _FusedItem(yb, h, w, semi)
                it.region = np.ascontiguousarray(region, dtype=np.float32) if self.masked else it.u[0]
                it.spans, it.span_off = np.zeros((0, 2), np.int64), np.zeros(1, np.int64)
                it.row_spans = np.zeros(H + 1, np.int64)
            self.items.append((it, lcv, lch, src, vb))

    def _form(self, it: _FusedItem) -> tuple[np.ndarray, np.float32, np.float32]:
        """(Z, a, b) that form the current iterate a*U*R + b*Z: Z is the iterate written two
        sweeps ago (index sweeps - 1 mod 3)."""
        z = it.ys[(it.sweeps - 1) % 3] if self.semi else it.u[it.k]  # plain: a shape-safe dummy
        return z, np.float32(self.w_last), np.float32(1.0 - self.w_last)

    def steps(self, weights: np.ndarray) -> None:
        w_start = self.w_last
        for it, lcv, lch, src, vb in self.items:
            self.w_last = w_start
            for w in weights:
                it.sweeps += 1
                k = it.k
                # plain: Z and y_out are never touched; U stands in for them (same shape)
                z = it.ys[(it.sweeps - 2) % 3] if self.semi else it.u[k]
                y_out = it.ys[it.sweeps % 3] if self.semi else it.u[k]
                a = np.float32(self.w_last)
                _sweep(it.u[k], it.rx[k], z, a, np.float32(1.0 - self.w_last), self.semi, y_out,
                       it.u[1 - k], it.r, it.rx[1 - k], lcv, lch, self.cols, self.row_start, src, vb,
                       self.inv_count, self.chunks, it.region, self.masked, self.packed, it.spans, it.span_off,
                       it.row_spans)
                it.k = 1 - k
                self.w_last = float(w)

    def change(self) -> float:
        """Max relative change since the last check; also sets ``abs_max`` (max |iterate| over the
        batch, NaN if any is NaN), which the loop's divergence guard reads instead of a pass of its own."""
        changes, abs_max = [], []
        for it, *_ in self.items:
            z, a, b = self._form(it)
            c, m = _check_change(it.u[it.k], it.rx[it.k], z, a, b, self.semi, self.rows, it.ref, self.chunks,
                                 it.region, self.masked, self.packed, it.spans, it.span_off, it.row_spans)
            changes.append(float(c))
            abs_max.append(float(m))
        self.abs_max = float(np.max(abs_max))  # a NaN wins
        return float(np.max(changes))  # a NaN wins: never "converged"

    def result(self, y: torch.Tensor) -> None:
        for b, (it, *_) in enumerate(self.items):
            z, a, bb = self._form(it)
            _materialise(it.u[it.k], it.rx[it.k], z, a, bb, self.semi, self.rows, y[b, 0].numpy(), it.region,
                         self.masked, self.packed, it.spans, it.span_off, it.row_spans)


def spin_setting_problem() -> str | None:
    """Why the loop may stall on a busy CPU in this process, or None: the short barrier spin that
    :mod:`dada_ros` sets (``GOMP_SPINCOUNT``) did not take effect because libgomp (torch) was
    loaded before ``dada_ros`` was imported, or the environment asks for long / active spinning."""
    import dada_ros  # noqa: PLC0415

    if os.environ.get("OMP_WAIT_POLICY", "").strip().lower() == "active":
        return "OMP_WAIT_POLICY=active: threads spin at every barrier of the loop"
    if dada_ros._GOMP_PRELOADED and not dada_ros._SPIN_FROM_USER:
        return ("torch (libgomp) was imported before dada_ros, so GOMP_SPINCOUNT=300 could not take effect: on a "
                "busy CPU the loop may stall at its barriers (measured up to 5x). Import dada_ros first or "
                "export GOMP_SPINCOUNT=300")
    try:
        if int(os.environ.get("GOMP_SPINCOUNT", "300")) > 10_000:
            return f"GOMP_SPINCOUNT={os.environ['GOMP_SPINCOUNT']}: long spinning at the loop's barriers"
    except ValueError:
        pass
    return None


_warned_spin = False


def warn_spin_setting_once() -> None:
    """One RuntimeWarning per process when :func:`spin_setting_problem` finds one."""
    global _warned_spin
    if not _warned_spin:
        _warned_spin = True
        problem = spin_setting_problem()
        if problem:
            warnings.warn(problem, RuntimeWarning, stacklevel=3)


def threading_summary() -> str:
    """The fused loop's threading layer and wait settings, for benchmark headers and logs."""
    if not HAVE_NUMBA:
        return "numba absent (torch loop)"
    try:
        layer = numba.threading_layer()
    except ValueError:  # not initialised before the first parallel call
        layer = f"{numba.config.THREADING_LAYER} (not started)"
    env = ", ".join(f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ)
    return f"numba threading layer {layer}" + (f" ({env})" if env else "")


def numba_threads() -> int:
    """Threads the fused kernel uses when called from this thread (0 without numba)."""
    return numba.get_num_threads() if HAVE_NUMBA else 0


def set_numba_threads(n: int) -> None:
    """Threads of the fused kernel for calls made FROM THE CALLING THREAD (numba's setting is
    thread-local, so a node must call this in its worker thread). ``n <= 0`` leaves the default.

    On a shared CPU every application's parallel sweep waits for its slowest thread; how long a
    waiting thread spins before it sleeps decides whether that costs a CPU share or a stall
    (``GOMP_SPINCOUNT``, set in :mod:`dada_ros`; ``benchmarks/contention.py``)."""
    if HAVE_NUMBA and n > 0:
        numba.set_num_threads(min(int(n), numba.config.NUMBA_NUM_THREADS))
