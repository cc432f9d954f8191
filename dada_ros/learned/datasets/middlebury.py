"""Middlebury stereo 2005, 2006 and 2014 as RGB-D scenes (the paper's protocol).

Expected layout (the "full size, two-view" downloads, as in prs-eth/graph-super-resolution)::

    data_dir/2014/<Scene>-perfect/{im0.png, im1.png, disp0.pfm, disp1.pfm, calib.txt}
    data_dir/2005/<Scene>/{view1.png, view5.png, disp1.png, disp5.png, dmin.txt}
    data_dir/2006/<Scene>/{view1.png, view5.png, disp1.png, disp5.png, dmin.txt}

Depth in metres:

* 2014: ``f * baseline / (d + doffs)`` with f = cam0[0, 0] (px), baseline (mm) and doffs from
  calib.txt; unknown disparities (inf in the PFM) become NaN. ``-imperfect`` scenes are skipped.
* 2005/2006: 8-bit disparity PNGs (0 = unknown) of the full-size images, shifted by dmin (the
  images are cropped to the joint field of view): ``3740 px * 160 mm / (d + dmin)``.

Both views of a scene are used. Splits (fixed by the authors): validation = Moebius, Lampshade1,
Lampshade2, Shelves, Playtable; test = Reindeer, Bowling1, Bowling2, Adirondack, Motorcycle;
training = all the others.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from ...core.errors import DadaInputError
from .base import RGBDScene, depth_to_nan

VAL_2005_2006 = ("Moebius", "Lampshade1", "Lampshade2")
VAL_2014 = ("Shelves-perfect", "Playtable-perfect")
TEST_2005_2006 = ("Reindeer", "Bowling1", "Bowling2")
TEST_2014 = ("Adirondack-perfect", "Motorcycle-perfect")
F_2005_2006 = 3740.0  # px, full size
BASELINE_2005_2006 = 160.0  # mm


def read_pfm(path: str | Path) -> np.ndarray:
    """A single-channel PFM (``Pf``) -> float32 (H, W), rows top to bottom."""
    with open(path, "rb") as fh:
        header = fh.readline().decode("latin-1").strip()
        if header not in ("Pf", "PF"):
            raise DadaInputError(f"{path}: not a PFM file (header {header!r})")
        dims = fh.readline().decode("latin-1")
        while dims.startswith("#"):
            dims = fh.readline().decode("latin-1")
        m = re.match(r"^\s*(\d+)\s+(\d+)\s*$", dims)
        if not m:
            raise DadaInputError(f"{path}: malformed PFM size line {dims!r}")
        width, height = int(m.group(1)), int(m.group(2))
        scale = float(fh.readline().decode("latin-1").strip())
        channels = 3 if header == "PF" else 1
        data = np.fromfile(fh, dtype="<f4" if scale < 0 else ">f4")
    if data.size != width * height * channels:
        raise DadaInputError(f"{path}: PFM holds {data.size} values, expected {width * height * channels}")
    img = data.reshape(height, width, channels)[::-1]  # PFM stores the bottom row first
    return np.ascontiguousarray(img[:, :, 0] if channels == 1 else img.mean(axis=2)).astype(np.float32)


def write_pfm(path: str | Path, image: np.ndarray) -> None:
    """Write a single-channel float32 PFM (little endian); used by tests to build fixtures."""
    img = np.asarray(image, dtype="<f4")
    with open(path, "wb") as fh:
        fh.write(f"Pf\n{img.shape[1]} {img.shape[0]}\n-1.0\n".encode("latin-1"))
        fh.write(np.ascontiguousarray(img[::-1]).tobytes())


def read_calib(path: str | Path) -> dict[str, str]:
    """Middlebury 2014 calib.txt -> {key: value string}."""
    out = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    for key in ("cam0", "doffs", "baseline"):
        if key not in out:
            raise DadaInputError(f"{path}: calib.txt lacks {key!r}")
    return out


def depth_2014(disp: np.ndarray, calib: dict[str, str]) -> np.ndarray:
    """Depth in metres from a 2014 disparity map and its calibration."""
    f = float(calib["cam0"].strip("[]").replace(";", " ").split()[0])
    baseline, doffs = float(calib["baseline"]), float(calib["doffs"])
    with np.errstate(divide="ignore", invalid="ignore"):
        depth_mm = f * baseline / (disp.astype(np.float64) + doffs)
    return depth_to_nan(depth_mm / 1000.0)


def depth_2005_2006(disp: np.ndarray, dmin: float) -> np.ndarray:
    d = disp.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth_mm = np.where(d > 0, BASELINE_2005_2006 * F_2005_2006 / (d + dmin), np.nan)
    return depth_to_nan(depth_mm / 1000.0)


def _in_split(name: str, split: str, val: tuple, test: tuple) -> bool:
    if split == "val":
        return name in val
    if split == "test":
        return name in test
    return name not in val and name not in test


def _read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DadaInputError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class MiddleburyScenes:
    """Middlebury scenes of one split; loaded lazily (full-size 2014 images are ~3000x2000)."""

    def __init__(self, data_dir: str | Path, split: str = "train", years=("2005", "2006", "2014")):
        root = Path(data_dir)
        if not root.is_dir():
            raise DadaInputError(f"Middlebury directory {str(root)!r} does not exist")
        self.items: list[tuple[str, Path, int]] = []  # (year, scene dir, view)
        for year in years:
            ydir = root / year
            if not ydir.is_dir():
                continue
            for scene in sorted(p for p in ydir.iterdir() if p.is_dir()):
                if year == "2014":
                    if scene.name.endswith("-imperfect") or not _in_split(scene.name, split, VAL_2014, TEST_2014):
                        continue
                    views = [v for v in (0, 1) if (scene / f"disp{v}.pfm").exists() and (scene / f"im{v}.png").exists()]
                else:
                    if not _in_split(scene.name, split, VAL_2005_2006, TEST_2005_2006):
                        continue
                    views = [v for v in (1, 5) if (scene / f"disp{v}.png").exists() and (scene / f"view{v}.png").exists()]
                self.items.extend((year, scene, v) for v in views)
        if not self.items:
            raise DadaInputError(f"no Middlebury {split} scenes under {str(root)!r} (expected <year>/<scene>/...)")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> RGBDScene:
        year, scene, view = self.items[index]
        if year == "2014":
            rgb = _read_rgb(scene / f"im{view}.png")
            depth = depth_2014(read_pfm(scene / f"disp{view}.pfm"), read_calib(scene / "calib.txt"))
        else:
            rgb = _read_rgb(scene / f"view{view}.png")
            disp = cv2.imread(str(scene / f"disp{view}.png"), cv2.IMREAD_UNCHANGED)
            if disp is None:
                raise DadaInputError(f"cannot read {scene / f'disp{view}.png'}")
            if disp.ndim == 3:
                disp = disp[:, :, 0]
            try:
                dmin = float((scene / "dmin.txt").read_text().split()[0])
            except (OSError, IndexError, ValueError) as exc:
                raise DadaInputError(f"{scene}: cannot read dmin.txt ({exc})") from exc
            depth = depth_2005_2006(disp, dmin)
        if rgb.shape[:2] != depth.shape:
            raise DadaInputError(f"{scene} view {view}: image {rgb.shape[:2]} and disparity {depth.shape} differ in size")
        return RGBDScene(rgb, depth, f"{year}/{scene.name}/view{view}")
