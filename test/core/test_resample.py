import numpy as np
import pytest
import torch

from dada_ros.core.errors import DadaInputError
from dada_ros.core.resample import (Partition, Resampler, cell_index, fill_invalid_nearest,
                                    initial_upsample, valid_source_mask)

CPU = torch.device("cpu")


def numpy_down(y, rows, cols, h, w):
    out = np.zeros((h, w))
    cnt = np.zeros((h, w))
    for v in range(y.shape[0]):
        for u in range(y.shape[1]):
            out[rows[v], cols[u]] += y[v, u]
            cnt[rows[v], cols[u]] += 1
    return out / cnt


@pytest.mark.parametrize("fine,coarse", [(640, 160), (640, 224), (480, 172), (17, 5), (7, 7)])
def test_cell_index_is_monotone_partition(fine, coarse):
    idx = cell_index(fine, coarse)
    assert idx[0] == 0 and idx[-1] == coarse - 1
    assert np.all(np.diff(idx) >= 0) and np.all(np.diff(idx) <= 1)
    counts = np.bincount(idx, minlength=coarse)
    assert counts.min() >= np.floor(fine / coarse) and counts.max() <= np.ceil(fine / coarse)


def test_integer_factor_matches_block_mean_and_general_path():
    part = Partition((32, 48), (4, 6))
    assert part.integer_factor == 8
    y = torch.rand(2, 1, 32, 48)
    fast = Resampler(part, CPU)
    ref = y.reshape(2, 1, 4, 8, 6, 8).mean(dim=(3, 5))
    assert torch.allclose(fast.down(y), ref, atol=1e-6)
    # The general index path must agree with the reshape fast path.
    general = Resampler(part, CPU)
    general.factor = None
    assert torch.allclose(general.down(y), ref, atol=1e-6)
    x = torch.rand(2, 1, 4, 6)
    assert torch.equal(general.up(x), fast.up(x))


def test_non_integer_down_matches_numpy_reference():
    part = Partition((20, 29), (7, 10))
    assert part.integer_factor is None
    y = np.random.default_rng(0).random((20, 29)).astype(np.float32)
    res = Resampler(part, CPU)
    got = res.down(torch.from_numpy(y)[None, None])[0, 0].numpy()
    want = numpy_down(y, cell_index(20, 7), cell_index(29, 10), 7, 10)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_mul_up_in_place_equals_up_product():
    for part in (Partition((16, 24), (4, 6)), Partition((17, 23), (5, 7))):
        res = Resampler(part, CPU)
        y = torch.rand(1, 1, *part.guide_shape)
        r = torch.rand(1, 1, *part.source_shape)
        want = y * res.up(r)
        assert torch.allclose(res.mul_up_(y.clone(), r), want)


def test_partition_rejects_bad_sizes():
    with pytest.raises(DadaInputError, match="larger than guide"):
        Partition((10, 10), (20, 5))
    with pytest.raises(DadaInputError, match="empty"):
        Partition((10, 10), (0, 5))


def test_valid_mask_and_nearest_fill():
    s = np.array([[1.0, 0.0, np.nan], [np.inf, -1.0, 3.0]], np.float32)
    valid = valid_source_mask(s)
    assert valid.tolist() == [[True, False, False], [False, False, True]]
    filled, dist = fill_invalid_nearest(np.where(valid, s, 0), valid)
    assert filled[0, 0] == 1.0 and filled[1, 2] == 3.0 and filled[0, 1] in (1.0, 3.0)
    assert filled[0, 2] == 3.0 and filled[1, 0] == 1.0
    assert dist[0, 0] == 0 and dist[0, 1] == pytest.approx(1.0)
    with pytest.raises(DadaInputError, match="no valid pixel"):
        fill_invalid_nearest(s, np.zeros_like(valid))


def test_initial_upsample_is_positive_and_in_range():
    src = np.array([[1.0, 5.0], [5.0, 1.0]], np.float32)
    for mode in ("bicubic", "nearest", "bilinear"):
        up = initial_upsample(src, (16, 16), mode)
        assert up.shape == (16, 16) and up.min() >= 1.0 and up.max() <= 5.0
    with pytest.raises(DadaInputError):
        initial_upsample(src, (16, 16), "lanczos")


def test_hole_fills_keep_valid_cells_and_fill_holes_sensibly():
    from dada_ros.core.resample import fill_holes, fill_invalid_average, fill_invalid_guided

    # A 1-D ramp with a gap: rim averaging and the harmonic (uniform colour) fill interpolate it.
    src = np.tile(np.linspace(1.0, 2.0, 9, dtype=np.float32), (3, 1))
    valid = np.ones_like(src, bool)
    valid[:, 3:6] = False
    grey = np.full(src.shape + (3,), 0.5, np.float32)
    guided = fill_invalid_guided(src, valid, grey)
    np.testing.assert_allclose(guided[valid], src[valid])
    np.testing.assert_allclose(guided, src, atol=1e-5)  # harmonic = linear across a uniform gap
    avg = fill_invalid_average(src, valid)
    gap = avg[:, 3:6]
    assert np.all((gap > 1.24) & (gap < 1.76)) and np.all(np.diff(gap, axis=1) > 0)  # between the rims, rising
    # A hole beside a colour edge is filled from its own colour's side, not from the nearest cell.
    src2 = np.where(np.arange(8)[None, :] < 4, 1.0, 3.0).astype(np.float32).repeat(6, 0)
    rgb = np.zeros(src2.shape + (3,), np.float32)
    rgb[:, 4:] = 1.0  # the far surface is white
    valid2 = np.ones_like(src2, bool)
    valid2[1:5, 3:6] = False  # hole across the edge: columns 3 (near, black) and 4-5 (far, white)
    out = fill_invalid_guided(src2, valid2, rgb)
    assert np.all(np.abs(out[1:5, 3] - 1.0) < 0.1) and np.all(np.abs(out[1:5, 4:6] - 3.0) < 0.1)
    filled, dist = fill_holes(src2, valid2, "guided", rgb)
    np.testing.assert_array_equal(filled, out)
    assert dist[2, 4] > 0 and dist[0, 0] == 0
    with pytest.raises(DadaInputError):
        fill_holes(src2, valid2, "guided")  # needs the cell colours
    with pytest.raises(DadaInputError):
        fill_holes(src2, valid2, "magic")


def test_cell_means_is_the_numpy_down():
    part = Partition((9, 10), (4, 3))
    img = np.random.default_rng(1).random((9, 10, 3)).astype(np.float32)
    res = Resampler(part, torch.device("cpu"))
    want = res.down(torch.from_numpy(img).permute(2, 0, 1)[None]).numpy()[0].transpose(1, 2, 0)
    np.testing.assert_allclose(part.cell_means(img), want, rtol=1e-5)


@pytest.mark.parametrize("guide,source", [((480, 640), (60, 80)), ((480, 640), (120, 160)), ((96, 128), (12, 16)),
                                          ((480, 640), (172, 224))])
def test_cell_means_fast_path_matches_the_float64_cell_sums(guide, source):
    """The integer-ratio path (OpenCV area resize) agrees with the exact float64 sums, for
    depth-like values, 0/1 masks and colour."""
    part = Partition(guide, source)
    rng = np.random.default_rng(3)
    depth = (0.3 + 8 * rng.random(guide)).astype(np.float32)
    mask = rng.random(guide) < 0.3
    rgb = rng.random((*guide, 3)).astype(np.float32)
    for img in (depth, mask, rgb):
        sizes = part.cell_sizes()
        sums = part.cell_sums(img)
        want = sums / (sizes if sums.ndim == 2 else sizes[..., None])
        got = part.cell_means(img)
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)
    # a cell with one marked pixel of 64 is still > 0 (the warm run's region test relies on it)
    one = np.zeros(guide, bool)
    one[5, 7] = True
    assert (part.cell_means(one) > 0).sum() == 1


@pytest.mark.parametrize("guide,source", [((480, 640), (60, 80)), ((480, 640), (120, 160)), ((48, 64), (6, 8)),
                                          ((480, 640), (172, 224)), ((9, 10), (4, 3))])
def test_cell_extrema_match_fmin_fmax_and_ignore_nan(guide, source):
    part = Partition(guide, source)
    rng = np.random.default_rng(4)
    y = (0.3 + 8 * rng.random(guide)).astype(np.float32)
    y[rng.random(guide) < 0.2] = np.nan
    H, W = guide
    y[: H // source[0] + 1, : W // source[1] + 1] = np.nan  # at least one all-NaN cell
    y[-1, -1] = np.inf  # an infinite pixel is a value, not a gap
    rs, cs = part.cell_starts()
    with np.errstate(invalid="ignore"):
        want_max = np.fmax.reduceat(np.fmax.reduceat(y, rs[:-1], axis=0), cs[:-1], axis=1)
        want_min = np.fmin.reduceat(np.fmin.reduceat(y, rs[:-1], axis=0), cs[:-1], axis=1)
    cmin, cmax = part.cell_extrema(y)
    assert np.isnan(cmin[0, 0]) and np.isnan(cmax[0, 0])
    assert cmax[-1, -1] == np.inf
    np.testing.assert_array_equal(cmax, want_max)
    np.testing.assert_array_equal(cmin, want_min)
