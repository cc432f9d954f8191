import numpy as np
import pytest

from dada_ros.core.baselines import BASELINES, run_baseline
from dada_ros.core.errors import DadaInputError
from dada_ros.core.metrics import depth_errors
from dada_ros.core.methods import METHODS, run_method


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_shapes_and_accuracy(name, sample_x8):
    s = sample_x8
    out, secs = run_baseline(name, s.rgb, s.source)
    assert out.shape == s.gt.shape and out.dtype == np.float32 and secs >= 0
    # Every peer is a sane upsampler: far better than predicting the mean depth everywhere.
    mean_only = np.full_like(s.gt, np.nanmean(s.gt))
    assert depth_errors(out, s.gt).rmse_cm < 0.5 * depth_errors(mean_only, s.gt).rmse_cm


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_non_integer_ratio_and_holes(name):
    rgb = np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    src = np.full((17, 23), 1.5, np.float32)
    src[0, 0] = 0
    src[:, -11:] = np.nan  # 9+ cells from any data on the right: NaN out
    out, _ = run_baseline(name, rgb, src)
    assert out.shape == (50, 70)
    assert np.isfinite(out[:, :20]).all() and np.isnan(out[:, -5:]).all()


def test_unknown_method_and_warm_start_for_baseline_rejected(sample_x8):
    with pytest.raises(DadaInputError, match="unknown"):
        run_baseline("lanczos", sample_x8.rgb, sample_x8.source)
    with pytest.raises(DadaInputError, match="unknown method"):
        run_method("magic", sample_x8.rgb, sample_x8.source)
    with pytest.raises(DadaInputError, match="warm start"):
        run_method("bicubic", sample_x8.rgb, sample_x8.source, init=sample_x8.gt)
    assert set(METHODS) >= {"dada-free", "dada", "bicubic", "nearest", "jbf", "guided", "fgs"}
