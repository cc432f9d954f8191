"""DIML RGB-D, indoor, high resolution (Kinect v2, 16-bit depth PNGs in mm), as RGB-D scenes.

Expected layout (the indoor download extracted into ``data_dir/{train,test}``, as in
prs-eth/graph-super-resolution)::

    data_dir/train/HR/<scene>/color/<name>_c.png
    data_dir/train/HR/<scene>/depth_filled/<name>_depth_filled.png   (uint16, mm, 0 = unknown)
    data_dir/test/HR/...

Splits (the authors' protocol): ``val`` = the last 10 % of the (sorted) frames of every training
scene, ``train`` = the first 90 %, ``test`` = every test frame (1440 / 169 / 503 images).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ...core.errors import DadaInputError
from .base import RGBDScene, depth_to_nan

TRAIN_RATIO = 0.9


def depth_path(color: Path) -> Path:
    stem = color.stem[:-2] if color.stem.endswith("_c") else color.stem
    return color.parent.parent / "depth_filled" / f"{stem}_depth_filled.png"


class DIMLScenes:
    def __init__(self, data_dir: str | Path, split: str = "train", resolution: str = "HR"):
        root = Path(data_dir)
        base = root / ("train" if split in ("train", "val") else "test") / resolution
        if not base.is_dir():
            raise DadaInputError(f"DIML: {str(base)!r} does not exist (expected <data_dir>/{{train,test}}/{resolution}/<scene>)")
        self.files: list[tuple[Path, Path]] = []
        for scene in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
            colors = sorted(p for p in (scene / "color").glob("*.png") if not p.name.startswith("."))
            cut = int(len(colors) * TRAIN_RATIO)
            sel = colors[:cut] if split == "train" else colors[cut:] if split == "val" else colors
            self.files.extend((c, depth_path(c)) for c in sel)
        if not self.files:
            raise DadaInputError(f"DIML: no {split} frames under {str(base)!r}")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> RGBDScene:
        color, dpath = self.files[index]
        bgr = cv2.imread(str(color), cv2.IMREAD_COLOR)
        depth = cv2.imread(str(dpath), cv2.IMREAD_UNCHANGED)
        if bgr is None:
            raise DadaInputError(f"cannot read {color}")
        if depth is None:
            raise DadaInputError(f"cannot read the depth of {color.name}: {dpath}")
        if depth.dtype != np.uint16 or depth.ndim != 2:
            raise DadaInputError(f"{dpath}: expected a 16-bit single-channel PNG in mm, got {depth.dtype} {depth.shape}")
        if depth.shape != bgr.shape[:2]:
            raise DadaInputError(f"{color.name}: image {bgr.shape[:2]} and depth {depth.shape} differ in size")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return RGBDScene(rgb, depth_to_nan(depth.astype(np.float32) / 1000.0), f"diml/{color.parent.parent.name}/{color.stem}")
