import numpy as np
import pytest

from dada_ros.core.metrics import consistency_error, depth_errors


def test_errors_in_cm_over_valid_ground_truth_only():
    gt = np.array([[1.0, 2.0], [np.nan, 0.0]], np.float32)
    pred = np.array([[1.1, 1.9], [5.0, 7.0]], np.float32)
    e = depth_errors(pred, gt)
    assert e.pixels == 2 and e.coverage == 1.0
    assert e.mse_cm2 == pytest.approx(100.0, rel=1e-4)
    assert e.mae_cm == pytest.approx(10.0, rel=1e-4)
    assert e.rmse_cm == pytest.approx(10.0, rel=1e-4)


def test_nan_prediction_lowers_coverage_not_error():
    gt = np.ones((2, 2), np.float32)
    pred = np.array([[1.0, np.nan], [1.0, 1.0]], np.float32)
    e = depth_errors(pred, gt)
    assert e.coverage == 0.75 and e.mse_cm2 == 0.0


def test_metric_input_errors():
    with pytest.raises(ValueError, match="shape"):
        depth_errors(np.ones((2, 2)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="no valid pixel"):
        depth_errors(np.ones((2, 2)), np.zeros((2, 2)))


def test_consistency_error_relative_on_valid_cells():
    pred = np.ones((4, 4), np.float32)
    pred[:2, :2] = 3.0
    src = np.array([[3.0, 1.0], [0.0, 1.1]], np.float32)  # 0 = invalid cell, not checked
    assert consistency_error(pred, src) == pytest.approx(0.1 / 1.1, rel=1e-5)
