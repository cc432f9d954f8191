"""Down/up operators between the guide grid (H, W) and the source grid (h, w), for any ratio.

The paper's down operator is the average over each s x s block and its up operator is
nearest-neighbour replication. Real sensor pairs rarely have an integer ratio (224x172 ToF vs
640x480 RGB), so this module generalises both with a *partition* of the guide grid:

    guide pixel (v, u) belongs to source cell (floor((v + 0.5) * h / H), floor((u + 0.5) * w / W)),

i.e. to the cell that contains the pixel centre. ``down`` is the mean over the pixels of a cell
and ``up`` copies a cell value to all its pixels. For an integer ratio this is exactly the
paper's block average / nearest up; for a non-integer ratio the cells are 2 or 3 pixels wide.
Because every pixel lies in exactly one cell, the multiplicative adjustment of Eq. (3) makes
``down(Y) == S`` exact in one step for any ratio, which is the paper's consistency guarantee.

Shapes: tensors are (B, 1, H, W) on the guide grid and (B, 1, h, w) on the source grid.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .errors import DadaInputError


@functools.lru_cache(maxsize=64)
def cell_index(fine: int, coarse: int) -> np.ndarray:
    """Index of the coarse cell that contains the centre of each fine pixel, shape (fine,).

    Cached per (fine, coarse) and read-only (a frame asks for the same few a dozen times: 0.3 ms
    of a 640x480 warm frame); copy it before writing to it."""
    centres = (np.arange(fine, dtype=np.float64) + 0.5) * coarse / fine
    idx = np.minimum(np.floor(centres).astype(np.int64), coarse - 1)
    idx.flags.writeable = False
    return idx


@dataclass(frozen=True)
class Partition:
    """Assignment of guide pixels (H, W) to source cells (h, w); see the module docstring."""

    guide_shape: tuple[int, int]
    source_shape: tuple[int, int]

    def __post_init__(self) -> None:
        (H, W), (h, w) = self.guide_shape, self.source_shape
        if min(H, W, h, w) < 1:
            raise DadaInputError(f"empty image: guide {H}x{W}, source {h}x{w} (rows x cols)")
        if h > H or w > W:
            raise DadaInputError(
                f"source {h}x{w} is larger than guide {H}x{W} (rows x cols): the source must be the "
                "low-resolution depth and the guide the high-resolution image"
            )

    @property
    def integer_factor(self) -> int | None:
        """The block size s when H = s*h and W = s*w (the paper's case), else None."""
        (H, W), (h, w) = self.guide_shape, self.source_shape
        if H % h == 0 and W % w == 0 and H // h == W // w:
            return H // h
        return None

    @property
    def scale(self) -> float:
        """Mean linear resolution ratio guide/source (e.g. 4.0 for 640x480 from 160x120)."""
        (H, W), (h, w) = self.guide_shape, self.source_shape
        return float(np.sqrt((H / h) * (W / w)))

    def rows(self, device: torch.device) -> torch.Tensor:
        return torch.tensor(cell_index(self.guide_shape[0], self.source_shape[0]), device=device)  # a copy: the index is shared

    def cols(self, device: torch.device) -> torch.Tensor:
        return torch.tensor(cell_index(self.guide_shape[1], self.source_shape[1]), device=device)

    def expand(self, cells: np.ndarray) -> np.ndarray:
        """numpy ``up``: copy each value of an (h, w) cell array to its guide pixels -> (H, W)."""
        (H, W), (h, w) = self.guide_shape, self.source_shape
        # two takes: ~4x faster than cells[np.ix_(rows, cols)] at 640x480 (it runs on every frame)
        return np.take(np.take(cells, cell_index(H, h), axis=0), cell_index(W, w), axis=1)

    def cell_starts(self) -> tuple[np.ndarray, np.ndarray]:
        """First guide row / column of each source cell, plus the end: int64 arrays of shape
        (h + 1,) and (w + 1,). Cells are contiguous ranges (the index arrays are non-decreasing),
        so ``np.diff`` of these gives the cell sizes."""
        (H, W), (h, w) = self.guide_shape, self.source_shape
        return (np.searchsorted(cell_index(H, h), np.arange(h + 1)),
                np.searchsorted(cell_index(W, w), np.arange(w + 1)))

    def cell_ids(self) -> np.ndarray:
        """Flat index ``row * w + col`` of the source cell of every guide pixel, (H * W,) int64 in
        row-major pixel order: the key for ``np.bincount`` sums over cells."""
        (H, W), (h, w) = self.guide_shape, self.source_shape
        return (cell_index(H, h)[:, None] * w + cell_index(W, w)[None, :]).ravel()

    def cell_sums(self, image: np.ndarray) -> np.ndarray:
        """float64 sum of an (H, W) or (H, W, C) guide-grid image over each cell -> (h, w[, C]).

        Cells are contiguous row and column ranges, so two ``np.add.reduceat`` do it (5x faster
        than a ``bincount`` over cell ids at 640x480 x8)."""
        rs, cs = self.cell_starts()
        img = np.asarray(image, dtype=np.float64)
        return np.add.reduceat(np.add.reduceat(img, rs[:-1], axis=0), cs[:-1], axis=1)

    def cell_sizes(self) -> np.ndarray:
        """(h, w) int64: the number of guide pixels in each cell."""
        rs, cs = self.cell_starts()
        return np.outer(np.diff(rs), np.diff(cs))

    def cell_means(self, image: np.ndarray) -> np.ndarray:
        """numpy ``down``: mean of an (H, W) or (H, W, C) guide-grid image over each cell, float32.

        An integer ratio takes OpenCV's area resize (its exact block-average path, float32
        accumulation: within 1e-6 relative of the float64 sums, and 5-10x faster at 640x480; it
        runs several times on every warm frame); other ratios the float64 cell sums."""
        img = np.asarray(image)
        k = self.integer_factor
        if k is not None and img.ndim in (2, 3) and (img.ndim == 2 or img.shape[2] <= 4):
            h, w = self.source_shape
            return cv2.resize(np.ascontiguousarray(img, dtype=np.float32), (w, h), interpolation=cv2.INTER_AREA)
        sizes = self.cell_sizes()
        sums = self.cell_sums(img)
        return (sums / (sizes if sums.ndim == 2 else sizes[..., None])).astype(np.float32)

    def cell_extrema(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-cell (min, max) of an (H, W) float image ignoring NaN -> two (h, w) float32 arrays,
        NaN for a cell whose pixels are all NaN.

        An integer ratio takes a k x k OpenCV dilation / erosion sampled once per cell (NaN read as
        -inf / +inf): about 3x faster than two ``np.fmax.reduceat`` at 640x480, on every frame."""
        y = np.asarray(image, dtype=np.float32)
        k = self.integer_factor
        if k is None:
            rs, cs = self.cell_starts()
            with np.errstate(invalid="ignore"):
                return (np.fmin.reduceat(np.fmin.reduceat(y, rs[:-1], axis=0), cs[:-1], axis=1),
                        np.fmax.reduceat(np.fmax.reduceat(y, rs[:-1], axis=0), cs[:-1], axis=1))
        nan = np.isnan(y)
        kernel = np.ones((k, k), np.uint8)
        out = []
        for fill, op in ((np.inf, cv2.erode), (-np.inf, cv2.dilate)):
            # anchor (0, 0): the result at a cell's first pixel covers exactly that cell
            e = op(np.where(nan, np.float32(fill), y), kernel, anchor=(0, 0),
                   borderType=cv2.BORDER_REPLICATE)[::k, ::k].copy()
            e[e == fill] = np.nan
            out.append(e)
        return out[0], out[1]

    def counts(self, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Number of guide pixels per source cell, shape (h, w)."""
        row_starts, col_starts = self.cell_starts()
        return torch.as_tensor(np.outer(np.diff(row_starts), np.diff(col_starts)), dtype=dtype, device=device)


class Resampler:
    """Fast ``down``/``up`` for one partition on one device (index tensors built once)."""

    def __init__(self, partition: Partition, device: torch.device, dtype: torch.dtype = torch.float32):
        self.partition = partition
        self.factor = partition.integer_factor
        self.rows = partition.rows(device)
        self.cols = partition.cols(device)
        self.inv_counts = 1.0 / partition.counts(device, dtype)

    def down(self, y: torch.Tensor) -> torch.Tensor:
        """Mean of (B, C, H, W) over each source cell -> (B, C, h, w)."""
        (h, w) = self.partition.source_shape
        B, C, H, W = y.shape
        s = self.factor
        if s is not None:
            # Reshape-based block mean: no pooling kernel, no temporary at full resolution.
            return y.reshape(B, C, h, s, w, s).mean(dim=(3, 5))
        cols_sum = y.new_zeros(B, C, H, w).index_add_(3, self.cols, y)
        cells = y.new_zeros(B, C, h, w).index_add_(2, self.rows, cols_sum)
        return cells * self.inv_counts

    def up(self, x: torch.Tensor) -> torch.Tensor:
        """Copy each source cell of (B, C, h, w) to its guide pixels -> (B, C, H, W)."""
        s = self.factor
        if s is not None:
            return x.repeat_interleave(s, dim=2).repeat_interleave(s, dim=3)
        return x.index_select(2, self.rows).index_select(3, self.cols)

    def mul_up_(self, y: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
        """In place ``y *= up(ratio)`` without materialising up(ratio) for integer factors."""
        s = self.factor
        if s is not None:
            B, C, H, W = y.shape
            h, w = self.partition.source_shape
            y.view(B, C, h, s, w, s).mul_(ratio.view(B, C, h, 1, w, 1))
            return y
        return y.mul_(self.up(ratio))


def valid_source_mask(source: np.ndarray) -> np.ndarray:
    """True where a depth value carries information: finite and > 0 (0, NaN, inf, < 0 = no data)."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(source) & (source > 0)


def fill_invalid_nearest(source: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill invalid cells with the nearest valid cell's value (Euclidean, in cells).

    Returns (filled, distance) where distance is 0 on valid cells and the distance in cells to the
    nearest valid cell elsewhere. Raises if no cell is valid.
    """
    if not valid.any():
        raise DadaInputError("depth has no valid pixel (all 0, NaN or inf): nothing to upsample")
    invalid = (~valid).astype(np.uint8)
    # OpenCV's labelled distance transform gives, for each zero of `invalid`'s complement, the
    # label of the nearest valid pixel: exactly a nearest-neighbour fill in one C pass.
    dist, labels = cv2.distanceTransformWithLabels(
        invalid, cv2.DIST_L2, cv2.DIST_MASK_PRECISE, labelType=cv2.DIST_LABEL_PIXEL
    )
    valid_values = np.zeros(int(labels.max()) + 1, dtype=np.float64)
    valid_labels = labels[valid]
    valid_values[valid_labels] = source[valid]
    filled = valid_values[labels].astype(np.float32)
    filled[valid] = source[valid]
    return filled, dist.astype(np.float32)


HOLE_FILLS = ("layered", "guided", "average", "nearest")
# Relative depth gap between the near and the far side of a hole's rim above which the layered
# fill treats the hole as an occlusion shadow (see fill_invalid_layered).
LAYER_GAP = 0.05
# A pixel of an occlusion hole takes one side's depth only when its colour is closer to that side's
# rim colour by this factor (1 + margin); otherwise it keeps the averaging fill (see layered_y0).
COLOUR_MARGIN = 1.0  # chosen leave-one-source-out in benchmarks/holes.py (candidates 1, 2)
# ... and only where the two sides' rim colours differ by more than this (mean absolute channel
# difference, colours in [0, 1]): two sides of one colour tell nothing.
COLOUR_CONTRAST = 0.2  # chosen leave-one-source-out (candidates 0, 0.1, 0.2): 0.2 in every fold
# Edge stop of the guided fill on the cell-mean colours (guide in [0, 1]); see fill_invalid_guided.
GUIDED_FILL_KAPPA = 0.05


def fill_invalid_average(source: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill invalid cells from the outside in: each pass gives every invalid cell that touches a
    known cell (3x3) the mean of its known neighbours, until all cells are known.

    Unlike the nearest fill (one neighbour's value copied across the hole, which makes a step
    where two surfaces meet inside it), this blends the hole's rim, so Y0 inside a hole is a
    smooth guess between the surfaces around it; measured inside real holes it is closer to the
    truth (README: "Holes"). Raises if no cell is valid.
    """
    if not valid.any():
        raise DadaInputError("depth has no valid pixel (all 0, NaN or inf): nothing to upsample")
    # every cell is reached: the 3x3 steps connect the whole grid
    return _average_from(source, valid, np.ones_like(valid))


def _average_from(value: np.ndarray, seeds: np.ndarray, todo: np.ndarray) -> np.ndarray:
    """Repeated 3x3 averaging started from the ``seeds`` only and spreading through the ``todo``
    cells only: each pass gives every open cell that touches a known one the mean of its known
    neighbours. Returns float32 ``value`` with the seeds kept, the reached ``todo`` cells set and
    0 elsewhere (cells no seed reaches)."""
    known = seeds.astype(np.float32)
    value = np.where(seeds, value, 0.0).astype(np.float32)
    open_ = todo & ~seeds
    kernel = np.ones((3, 3), np.float32)
    while open_.any():
        # Unnormalised 3x3 sums of the known values and of the known mask (zero padding).
        sums = cv2.filter2D(value * known, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        counts = cv2.filter2D(known, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        rim = open_ & (counts > 0.5)
        if not rim.any():
            break
        value[rim] = sums[rim] / counts[rim]
        known[rim] = 1.0
        open_ &= ~rim
    return value


def _far_split(depths: np.ndarray, gap: float) -> float | None:
    """Otsu split of rim depths in log depth: the threshold above which a rim cell is on the far
    side, or None when the two classes' mean depths differ by less than ``1 + gap`` (one layer)."""
    z = np.sort(np.log(depths.astype(np.float64)))
    n = len(z)
    if n < 2 or z[-1] - z[0] < np.log1p(gap):
        return None
    c = np.cumsum(z)
    k = np.arange(1, n)
    m0, m1 = c[:-1] / k, (c[-1] - c[:-1]) / (n - k)
    between = k * (n - k) * (m1 - m0) ** 2
    i = int(np.argmax(between))
    if m1[i] - m0[i] < np.log1p(gap):
        return None
    return float(np.exp(0.5 * (z[i] + z[i + 1])))


def occlusion_holes(source: np.ndarray, valid: np.ndarray, gap: float | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The holes that look like occlusion shadows, and the two sides of their rims.

    Per hole (8-connected invalid cells) the valid cells touching it are split in two by depth
    (Otsu on log depth). A hole is an occlusion hole when the far class is deeper than the near
    one by more than ``gap`` (relative) and the hole does not touch the image border (a border
    band is the sensor's field of view, not a shadow). Returns boolean (h, w) masks: the cells of
    occlusion holes, their near rim cells, their far rim cells.
    """
    gap = LAYER_GAP if gap is None else gap
    h, w = valid.shape
    holes = ~valid
    todo = np.zeros((h, w), bool)
    near, far = np.zeros(h * w, bool), np.zeros(h * w, bool)
    n, labels = cv2.connectedComponents(holes.astype(np.uint8), connectivity=8)
    if n <= 1:
        return todo, near.reshape(h, w), far.reshape(h, w)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    src = np.where(valid, source, 0.0).astype(np.float32).ravel()
    pad = np.pad(labels, 1)
    pairs = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            lab = pad[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
            m = valid & (lab > 0)
            pairs.append(np.stack([lab[m], np.flatnonzero(m)], axis=1))
    pairs = np.unique(np.concatenate(pairs), axis=0)  # (hole label, rim cell), sorted by label
    bounds = np.searchsorted(pairs[:, 0], np.arange(1, n + 1))
    occl = np.zeros(n, bool)
    for lab in range(1, n):
        cells = pairs[bounds[lab - 1]:bounds[lab], 1]
        if len(cells) < 2 or lab in border:
            continue
        d = src[cells]
        thr = _far_split(d, gap)
        if thr is None:
            continue
        near[cells[d < thr]] = True
        far[cells[d >= thr]] = True
        occl[lab] = True
    return occl[labels], near.reshape(h, w), far.reshape(h, w)


def fill_invalid_layered(source: np.ndarray, valid: np.ndarray, gap: float | None = None) -> np.ndarray:
    """Cell-level layered fill: occlusion holes (:func:`occlusion_holes`) filled by averaging from
    their FAR rim only, every other hole by plain neighbour averaging (:func:`fill_invalid_average`).
    The solver's ``layered`` Y0 refines this per pixel (:func:`layered_y0`)."""
    out = fill_invalid_average(source, valid)
    todo, near, _ = occlusion_holes(source, valid, gap)
    if todo.any():
        seeds = valid & ~near
        far = _average_from(np.where(valid, source, 0.0), seeds, todo | seeds)
        out[todo] = far[todo]
    return out


def layered_y0(source: np.ndarray, valid: np.ndarray, part: "Partition", rgb01: np.ndarray,
               init: str = "bicubic", gap: float | None = None, margin: float | None = None) -> np.ndarray:
    """Y0 (H, W) of the ``layered`` hole fill.

    Everywhere but in occlusion holes (:func:`occlusion_holes`) it is the neighbour-averaging Y0
    of the authors' reference (:func:`fill_invalid_average` + :func:`initial_upsample`), so the
    pixels of valid cells start exactly as there. In an occlusion hole each pixel takes either the
    far side's depth or the near side's (each spread into the hole by averaging from that side's
    rim cells only) by its colour: the side whose rim colour (cell means, spread the same way) is
    closer to the pixel's colour. A shadow seen by the camera shows the background, so its pixels
    go to the far side; the foreground pixels of a cell that straddles the edge stay near.
    """
    avg = fill_invalid_average(source, valid)
    y = initial_upsample(avg, part.guide_shape, init)
    todo, near, far = occlusion_holes(source, valid, gap)
    if not todo.any():
        return y
    src = np.where(valid, source, 0.0).astype(np.float32)
    cell_rgb = part.cell_means(rgb01)
    sides = []
    for blocked in (far, near):
        seeds = valid & ~blocked
        reach = todo | seeds
        depth = _average_from(src, seeds, reach)
        colour = np.stack([_average_from(cell_rgb[..., c], seeds, reach) for c in range(3)], axis=-1)
        sides.append((depth, colour))
    (dn, cn), (df, cf) = sides
    pix = part.expand(todo)
    rgb_h = rgb01[pix]
    rows, cols = np.nonzero(pix)
    (H, W), (h, w) = part.guide_shape, part.source_shape
    ci, cj = cell_index(H, h)[rows], cell_index(W, w)[cols]
    dist_far = np.abs(rgb_h - cf[ci, cj]).mean(axis=-1)
    dist_near = np.abs(rgb_h - cn[ci, cj]).mean(axis=-1)
    m = 1.0 + (COLOUR_MARGIN if margin is None else margin)
    distinct = np.abs(cf[ci, cj] - cn[ci, cj]).mean(axis=-1) > COLOUR_CONTRAST
    y[pix] = np.where(distinct & (dist_far * m < dist_near), df[ci, cj],
                      np.where(distinct & (dist_near * m < dist_far), dn[ci, cj], y[pix]))
    return y.astype(np.float32)


def fill_invalid_guided(source: np.ndarray, valid: np.ndarray, cell_rgb: np.ndarray,
                        kappa: float = GUIDED_FILL_KAPPA) -> np.ndarray:
    """Fill invalid cells with the colour-guided harmonic interpolation of the valid ones.

    On the source grid, every invalid cell takes the weighted mean of its four neighbours, with
    the DADA-free edge weight c = 1 / (1 + (x / kappa)^2) of the cell-mean colours
    (x = mean absolute channel difference, colours in [0, 1]): the low-resolution version of what
    the diffusion does at full resolution, so a hole is filled from the surface of its own colour
    rather than from whatever lies nearest. Solved exactly (one sparse linear system over the
    hole cells; valid cells are fixed), which also makes it smooth where the colour is flat.

    Args:
        source, valid: (h, w) depth and its valid mask (at least one valid cell).
        cell_rgb: (h, w, 3) guide averaged over each cell, float in [0, 1].
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.linalg import spsolve

    if not valid.any():
        raise DadaInputError("depth has no valid pixel (all 0, NaN or inf): nothing to upsample")
    h, w = valid.shape
    out = np.where(valid, source, 0.0).astype(np.float64)
    holes = ~valid
    n = int(holes.sum())
    index = np.full((h, w), -1, np.int64)
    index[holes] = np.arange(n)
    rows, cols, vals = [], [], []
    diag = np.zeros(n)
    rhs = np.zeros(n)
    for axis in (0, 1):  # links between each cell and its neighbour below / to the right
        a = (slice(0, h - 1), slice(None)) if axis == 0 else (slice(None), slice(0, w - 1))
        b = (slice(1, h), slice(None)) if axis == 0 else (slice(None), slice(1, w))
        x = np.abs(cell_rgb[a] - cell_rgb[b]).mean(axis=-1)
        c = 1.0 / (1.0 + (x / kappa) ** 2)
        for p, q in ((a, b), (b, a)):  # each link enters the equation of both its ends
            ip, iq = index[p], index[q]
            m = ip >= 0
            np.add.at(diag, ip[m], c[m])
            hole_q = m & (iq >= 0)
            rows.append(ip[hole_q])
            cols.append(iq[hole_q])
            vals.append(-c[hole_q])
            known_q = m & (iq < 0)
            np.add.at(rhs, ip[known_q], c[known_q] * out[q][known_q])
    A = csr_matrix((np.concatenate(vals + [diag]), (np.concatenate(rows + [np.arange(n)]),
                                                    np.concatenate(cols + [np.arange(n)]))), shape=(n, n))
    out[holes] = spsolve(A, rhs)
    return out.astype(np.float32)


def fill_holes(source: np.ndarray, valid: np.ndarray, mode: str = "guided",
               cell_rgb: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Hole-free source for Y0 plus each cell's distance (in cells) to the nearest valid one.

    ``mode``: ``"guided"`` (:func:`fill_invalid_guided`; needs ``cell_rgb``, the guide averaged
    over each cell), ``"average"`` (:func:`fill_invalid_average`) or ``"nearest"``
    (:func:`fill_invalid_nearest`). Valid cells keep their value in all three.
    """
    if mode not in HOLE_FILLS:
        raise DadaInputError(f"unknown hole fill {mode!r}; expected one of {HOLE_FILLS}")
    nearest, dist = fill_invalid_nearest(source, valid)
    if mode == "nearest" or valid.all():
        return nearest, dist
    if mode == "layered":
        return fill_invalid_layered(source, valid), dist
    if mode == "guided":
        if cell_rgb is None or cell_rgb.shape[:2] != valid.shape:
            raise DadaInputError("the guided hole fill needs the guide averaged over each cell")
        return fill_invalid_guided(source, valid, cell_rgb), dist
    return fill_invalid_average(source, valid), dist


def resize(image: np.ndarray, shape: tuple[int, int], interpolation: int) -> np.ndarray:
    """cv2.resize to (rows, cols) with half-pixel-centre alignment (cell centres line up)."""
    H, W = shape
    if image.shape[:2] == (H, W):
        return image.copy()
    return cv2.resize(image, (W, H), interpolation=interpolation)


def initial_upsample(filled_source: np.ndarray, shape: tuple[int, int], mode: str = "bicubic") -> np.ndarray:
    """Y0 from a hole-free source: bicubic (the paper) or nearest, clamped to the source range.

    Bicubic overshoots at depth edges; clamping to [min, max] of the source keeps Y0 positive,
    which the multiplicative adjustment needs.
    """
    interp = {"bicubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR}
    if mode not in interp:
        raise DadaInputError(f"unknown init mode {mode!r}; expected one of {sorted(interp)}")
    if mode == "nearest":
        return Partition(shape, filled_source.shape[:2]).expand(filled_source).astype(np.float32)
    up = resize(filled_source.astype(np.float32), shape, interp[mode])
    return np.clip(up, float(filled_source.min()), float(filled_source.max())).astype(np.float32)
