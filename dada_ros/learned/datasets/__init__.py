"""Datasets for training and evaluating the learned guide.

* ``generated``: the procedural scene generator (:mod:`.procedural`), unlimited and offline;
* ``middlebury``: Middlebury 2005, 2006 and 2014 (disparity + calibration -> depth), :mod:`.middlebury`;
* ``nyuv2``: the NYU Depth v2 labeled .mat, :mod:`.nyuv2`;
* ``diml``: DIML indoor HR, 16-bit depth PNGs, :mod:`.diml`;
* ``realdata``: real RGB-D frames in the project's npz layout (``../shared/realdata``: seven
  Middlebury scenes, disparity -> depth-like z; a fixed train/val split), :mod:`.realdata`.

Every loader returns a sequence of :class:`~.base.RGBDScene` (RGB uint8, depth in metres with
NaN where unknown) for a split (``train``, ``val``, ``test``) that follows the paper's protocol.
Nothing here downloads: point ``data_dir`` at the files you have.
"""

from __future__ import annotations

from ...core.errors import DadaInputError
from .base import RGBDScene, SceneSet

DATASETS = ("generated", "middlebury", "nyuv2", "diml", "realdata")


def open_dataset(name: str, data_dir: str | None, split: str, **kwargs) -> SceneSet:
    if name == "realdata":  # its own splits (train / val / test / all), checked there
        from .realdata import RealDataScenes

        return RealDataScenes(data_dir, split, **kwargs)
    if split not in ("train", "val", "test"):
        raise DadaInputError(f"split must be train, val or test, got {split!r}")
    if name == "middlebury":
        from .middlebury import MiddleburyScenes

        return MiddleburyScenes(data_dir, split, **kwargs)
    if name == "nyuv2":
        from .nyuv2 import NYUv2Scenes

        return NYUv2Scenes(data_dir, split, **kwargs)
    if name == "diml":
        from .diml import DIMLScenes

        return DIMLScenes(data_dir, split, **kwargs)
    raise DadaInputError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS[1:])} (or generated)")


__all__ = ["DATASETS", "RGBDScene", "SceneSet", "open_dataset"]
