"""Reading guides and depth maps from files, with the unit conventions of the CLI.

* guide: any 8/16-bit colour or grey image OpenCV reads (returned RGB);
* depth ``.npy``: float metres; ``.png`` (16-bit): millimetres; ``.tif/.tiff``: float = metres,
  16-bit integer = millimetres. 0 / NaN = invalid everywhere.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from .errors import DadaInputError

DEPTH_SUFFIXES = (".npy", ".png", ".tif", ".tiff")


def _exists(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise DadaInputError(f"{what} file not found: {path}")


def read_guide(path: str) -> np.ndarray:
    """RGB guide (H, W, 3) uint8/uint16 from an image file."""
    _exists(path, "guide")
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DadaInputError(f"cannot read guide image {path} (not an image OpenCV can decode)")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise DadaInputError(f"guide {path} has unsupported shape {img.shape}")
    if img.dtype not in (np.uint8, np.uint16):
        raise DadaInputError(f"guide {path} has unsupported pixel type {img.dtype} (8 or 16-bit expected)")
    return cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB)


def read_depth(path: str) -> np.ndarray:
    """Depth (h, w) float32 metres; invalid pixels keep their 0 / NaN."""
    _exists(path, "depth")
    ext = os.path.splitext(path)[1].lower()
    if ext not in DEPTH_SUFFIXES:
        raise DadaInputError(f"depth file {path}: unsupported type {ext!r}; use {', '.join(DEPTH_SUFFIXES)}")
    if ext == ".npy":
        try:
            d = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DadaInputError(f"cannot read depth {path}: {exc}") from exc
        if not np.issubdtype(d.dtype, np.number):
            raise DadaInputError(f"depth {path} must hold numbers, got dtype {d.dtype}")
        return _single_channel(d, path).astype(np.float32)
    d = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if d is None:
        raise DadaInputError(f"cannot read depth image {path} (not an image OpenCV can decode)")
    d = _single_channel(d, path)
    if ext == ".png" and d.dtype != np.uint16:
        raise DadaInputError(f"depth PNG {path} must be 16-bit millimetres, got {d.dtype}")
    if np.issubdtype(d.dtype, np.integer):
        return d.astype(np.float32) / 1000.0
    return d.astype(np.float32)


def _single_channel(d: np.ndarray, path: str) -> np.ndarray:
    if d.ndim == 3 and d.shape[2] == 1:
        d = d[:, :, 0]
    if d.ndim != 2:
        raise DadaInputError(f"depth {path} must be a single-channel image, got shape {d.shape}")
    return d


def write_depth_npy(path: str, depth: np.ndarray) -> None:
    """Write float32 metres to ``path`` (.npy), creating no directories silently."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise DadaInputError(f"output directory does not exist: {parent}")
    try:
        np.save(path, depth.astype(np.float32), allow_pickle=False)
    except OSError as exc:
        raise DadaInputError(f"cannot write {path}: {exc}") from exc
