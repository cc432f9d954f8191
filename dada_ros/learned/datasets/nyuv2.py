"""NYU Depth v2 (labeled subset, 1449 RGB-D frames, Kinect, in-painted depth) as RGB-D scenes.

Expected files (as in prs-eth/graph-super-resolution)::

    data_dir/nyu_depth_v2_labeled.mat   (or pass the .mat itself as data_dir)
    data_dir/split_idc.json             {"train": [...], "val": [...], "test": [...]} (849/300/300)

The official .mat is MATLAB v7.3 (HDF5) and needs ``h5py``; a v5 .mat (e.g. re-saved, or the
tests' fixtures) is read with ``scipy.io.loadmat``. Both store the arrays in MATLAB order; this
loader returns images (480, 640, 3) uint8 and depth (480, 640) metres (0 -> NaN).

Without split_idc.json the split is positional (first 849 / next 300 / last 300 of the file,
clipped to its length) and a warning says so -- it is NOT the paper's split.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from ...core.errors import DadaInputError
from .base import RGBDScene, depth_to_nan

MAT_NAME = "nyu_depth_v2_labeled.mat"
SPLIT_NAME = "split_idc.json"
POSITIONAL_SPLIT = (849, 300, 300)


def _load_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """-> (images (N, H, W, 3) uint8, depths (N, H, W) float32 metres)."""
    try:
        import scipy.io
    except ImportError as exc:  # pragma: no cover - scipy is a requirement
        raise DadaInputError("reading NYUv2 needs scipy (pip install scipy)") from exc
    try:
        m = scipy.io.loadmat(str(path), variable_names=["images", "depths"])
        images, depths = m["images"], m["depths"]  # (H, W, 3, N), (H, W, N)
        if images.ndim == 3:
            images, depths = images[..., None], depths[..., None]
        return np.ascontiguousarray(images.transpose(3, 0, 1, 2)), np.ascontiguousarray(depths.transpose(2, 0, 1))
    except NotImplementedError:
        pass  # MATLAB v7.3 = HDF5
    except KeyError as exc:
        raise DadaInputError(f"{path}: no {exc} array: not the NYUv2 labeled .mat") from exc
    except ValueError as exc:
        raise DadaInputError(f"{path}: not a readable .mat file ({exc})") from exc
    try:
        import h5py
    except ImportError as exc:
        raise DadaInputError(f"{path} is a MATLAB v7.3 (HDF5) file: reading it needs h5py (pip install h5py)") from exc
    with h5py.File(path, "r") as f:
        if "images" not in f or "depths" not in f:
            raise DadaInputError(f"{path}: no images/depths arrays: not the NYUv2 labeled .mat")
        images = np.array(f["images"])  # (N, 3, W, H)
        depths = np.array(f["depths"])  # (N, W, H)
    return np.ascontiguousarray(images.transpose(0, 3, 2, 1)), np.ascontiguousarray(depths.transpose(0, 2, 1))


class NYUv2Scenes:
    def __init__(self, data_dir: str | Path, split: str = "train", split_file: str | Path | None = None):
        p = Path(data_dir)
        mat = p if p.is_file() else p / MAT_NAME
        if not mat.exists():
            raise DadaInputError(f"NYUv2: {str(mat)!r} does not exist")
        self.images, self.depths = _load_mat(mat)
        if self.images.shape[:3] != self.depths.shape or self.images.shape[-1] != 3:
            raise DadaInputError(f"{mat}: images {self.images.shape} and depths {self.depths.shape} do not match")
        n = len(self.images)
        sf = Path(split_file) if split_file else mat.parent / SPLIT_NAME
        if sf.exists():
            try:
                idx = json.loads(sf.read_text())[split]
            except (KeyError, ValueError) as exc:
                raise DadaInputError(f"{sf}: no {split!r} list ({exc})") from exc
        else:
            warnings.warn(f"NYUv2: {sf} not found; using a positional {POSITIONAL_SPLIT} split, not the paper's")
            a, b, _ = POSITIONAL_SPLIT
            bounds = {"train": (0, a), "val": (a, a + b), "test": (a + b, n)}[split]
            idx = list(range(min(bounds[0], n), min(bounds[1], n)))
        idx = [int(i) for i in idx]
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise DadaInputError(f"{sf}: indices {bad[:5]} outside 0..{n - 1}")
        self.indices = idx

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> RGBDScene:
        i = self.indices[index]
        return RGBDScene(self.images[i].astype(np.uint8), depth_to_nan(self.depths[i]), f"nyuv2/{i}")
