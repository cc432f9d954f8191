"""Validation of the arrays that enter the solver and the baselines, with user-facing messages."""

from __future__ import annotations

import numpy as np

from .coefficients import guide_to_unit_float
from .errors import DadaInputError
from .resample import Partition, valid_source_mask


def check_source(source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Low-resolution depth (h, w) in metres -> (float32 depth with invalid set to 0, valid mask).

    0, negative, NaN and inf mean "no measurement". Raises on wrong shape/dtype or when no cell is
    valid.
    """
    s = np.asarray(source)
    if s.ndim == 3 and s.shape[2] == 1:
        s = s[:, :, 0]
    if s.ndim != 2:
        raise DadaInputError(f"depth must be a single-channel HxW image, got shape {s.shape}")
    if s.size == 0:
        raise DadaInputError("depth image is empty")
    if not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)):
        raise DadaInputError(f"depth must be numeric, got dtype {s.dtype}")
    s = s.astype(np.float32)
    valid = valid_source_mask(s)
    if not valid.any():
        raise DadaInputError("depth has no valid pixel (all 0, NaN, inf or negative): nothing to upsample")
    return np.where(valid, s, 0.0).astype(np.float32), valid


def check_pair(guide: np.ndarray, source: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, Partition]:
    """Validate a guide/source pair -> (guide in [0, 1] float32 HxWx3, source, valid, partition)."""
    g = np.asarray(guide)
    if g.size == 0:
        raise DadaInputError("guide image is empty")
    rgb = guide_to_unit_float(g)
    src, valid = check_source(source)
    part = Partition(rgb.shape[:2], src.shape)
    return rgb, src, valid, part


def check_init(init: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    """A warm-start Y0 must be (H, W) at guide resolution; invalid pixels are allowed (they take
    the cold initialisation)."""
    if init is None:
        return None
    y0 = np.asarray(init)
    if y0.ndim == 3 and y0.shape[2] == 1:
        y0 = y0[:, :, 0]
    if y0.shape != tuple(shape):
        raise DadaInputError(f"initial depth has shape {y0.shape}, expected the guide size {tuple(shape)}")
    if not np.issubdtype(y0.dtype, np.number):
        raise DadaInputError(f"initial depth must be numeric, got dtype {y0.dtype}")
    return y0.astype(np.float32, copy=False)  # the solver reads it (its Y0 is a new array)
