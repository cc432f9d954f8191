"""Real RGB-D frames in the ``realdata`` npz layout (``../shared/realdata`` in this project's
workspace; never shipped, never committed), as RGB-D scenes.

Each ``<source_tag>/<scene>.npz`` holds ``rgb`` uint8 (H, W, 3), ``depth`` float32 (metres, or
disparity in pixels when ``unit == "disparity_px"``), ``valid`` bool (H, W), ``unit`` and ``meta``
(JSON: source repository, licence, caveats). See the folder's MANIFEST.md.

Disparity scenes (the seven Middlebury 2001-2005 scenes) ship no metric calibration (and the
2005 copies lack the disparity offset), so metric depth cannot be recovered. They are turned into
a positive depth-like quantity in "metres" by the rule every figure of this project states:

    z = REFERENCE_DEPTH_M * median(d) / d        (an assumed f*B per scene: median depth 2 m)

i.e. ``f*B = 2 m x median disparity``: an indoor, Kinect-like depth range (about 1-4 m on these
scenes), which is the range DADA-free's depth feature (metres x 0.89) and the learned model were
built for. MSE of such a scene is in "cm^2" of z; it is never pooled with metric scenes in one
figure (:func:`unit_of` tells them apart).

Splits over the seven dense real scenes (fixed before any model was trained or selected; the
MANIFEST's suggestion): ``val`` = teddy, books, venus; ``train`` = tsukuba, cones, art, moebius.
``test`` = the caveated real frames (KITTI 2012 sparse LiDAR, RGB ~6 cm off the ground-truth
camera; NYU raw, depth NOT registered to the RGB): never used for training or selection, and
scored with their caveats in mind. ``all`` = the seven dense scenes. The rendered ICL-NUIM frames
are synthetic and are only returned when asked for by name (``scenes=``).

Every image is cropped from the top-left to a multiple of ``multiple`` (default 16, so x4, x8 and
x16 all tile the whole frame).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ...core.errors import DadaInputError
from .base import RGBDScene

REFERENCE_DEPTH_M = 2.0
DENSE_REAL = {
    "tsukuba": "middlebury2001_msgnet", "venus": "middlebury2001_msgnet",
    "cones": "middlebury2003", "teddy": "middlebury2003",
    "art": "middlebury2005_msgnet", "books": "middlebury2005_msgnet", "moebius": "middlebury2005_msgnet",
}
CAVEATED_REAL = {"000070_10": "kitti_stereo2012_sparse", "nyu_raw_sample": "open3d_testdata_unregistered"}
SPLITS = {
    "train": ("tsukuba", "cones", "art", "moebius"),
    "val": ("teddy", "books", "venus"),
    "test": ("000070_10", "nyu_raw_sample"),
    "all": ("tsukuba", "venus", "cones", "teddy", "art", "books", "moebius"),
}
UNITS = ("m", "disparity_px")
# Where the project's workspace keeps the data: ../shared/realdata next to the repository.
DEFAULT_ROOT = Path(__file__).resolve().parents[3].parent / "shared" / "realdata"


def default_root() -> Path | None:
    """``$DADA_REALDATA`` or ``../shared/realdata`` beside the repository, when it exists."""
    env = os.environ.get("DADA_REALDATA")
    p = Path(env) if env else DEFAULT_ROOT
    return p if p.is_dir() else None


def disparity_to_depth(disp: np.ndarray, valid: np.ndarray, reference_m: float = REFERENCE_DEPTH_M) -> np.ndarray:
    """Disparity (px) -> depth-like z = reference_m x median(d) / d over ``valid & d > 0``; NaN elsewhere."""
    ok = valid & np.isfinite(disp) & (disp > 0)
    if not ok.any():
        raise DadaInputError("disparity map has no valid pixel")
    fb = reference_m * float(np.median(disp[ok]))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, fb / disp, np.nan).astype(np.float32)


def read_npz(path: str | Path, multiple: int = 16) -> tuple[RGBDScene, dict]:
    """One realdata file -> (scene with depth in metres or depth-like z, NaN = unknown; meta dict
    with ``unit`` and, for disparity, the assumed ``f_times_b``)."""
    path = Path(path)
    if not path.is_file():
        raise DadaInputError(f"realdata file {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("rgb", "depth", "valid", "unit") if k not in z.files]
            if missing:
                raise DadaInputError(f"{path}: not a realdata npz (lacks {missing})")
            rgb, depth, valid, unit = z["rgb"], z["depth"], z["valid"], str(z["unit"])
            meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
    except DadaInputError:
        raise
    except (OSError, ValueError) as exc:
        raise DadaInputError(f"{path}: unreadable npz ({exc})") from exc
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DadaInputError(f"{path}: rgb must be uint8 HxWx3, got {rgb.dtype} {rgb.shape}")
    if depth.shape != rgb.shape[:2] or valid.shape != depth.shape:
        raise DadaInputError(f"{path}: rgb {rgb.shape[:2]}, depth {depth.shape}, valid {valid.shape} differ")
    if unit not in UNITS:
        raise DadaInputError(f"{path}: unknown unit {unit!r}; expected one of {UNITS}")
    valid = valid.astype(bool) & np.isfinite(depth) & (depth > 0)
    info = {"unit": unit, "source": path.parent.name, "licence": meta.get("licence", ""),
            "real": bool(meta.get("real", False))}
    if unit == "disparity_px":
        z_m = disparity_to_depth(depth.astype(np.float32), valid)
        info["f_times_b"] = REFERENCE_DEPTH_M * float(np.median(depth[valid]))
    else:
        z_m = np.where(valid, depth, np.nan).astype(np.float32)
    H, W = (s - s % multiple for s in depth.shape)
    if H < multiple or W < multiple:
        raise DadaInputError(f"{path}: {depth.shape} is smaller than {multiple} pixels")
    scene = RGBDScene(np.ascontiguousarray(rgb[:H, :W]), np.ascontiguousarray(z_m[:H, :W]), path.stem)
    return scene, info


def unit_of(info: dict) -> str:
    """The unit of a scene's MSE: ``"m"`` (metric) or ``"z"`` (depth-like from disparity)."""
    return "z" if info["unit"] == "disparity_px" else "m"


def scene_path(root: Path, name: str) -> Path:
    tag = DENSE_REAL.get(name) or CAVEATED_REAL.get(name)
    if tag is None:
        hits = sorted(root.glob(f"*/{name}.npz"))
        if len(hits) != 1:
            raise DadaInputError(f"realdata: no single scene named {name!r} under {str(root)!r}")
        return hits[0]
    return root / tag / f"{name}.npz"


class RealDataScenes:
    """The scenes of one split (or the named ``scenes``), loaded once, in split order.

    Args:
        data_dir: the realdata folder (None: :func:`default_root`).
        split: ``train`` | ``val`` | ``test`` | ``all`` (see the module docstring).
        scenes: explicit scene names instead of a split (e.g. ``["livingroom_seq_00000"]``).
        multiple: crop H and W down to a multiple of this.
    """

    def __init__(self, data_dir: str | Path | None = None, split: str = "train",
                 scenes: Sequence[str] | None = None, multiple: int = 16):
        root = Path(data_dir) if data_dir else default_root()
        if root is None or not root.is_dir():
            raise DadaInputError(f"realdata folder {str(root or DEFAULT_ROOT)!r} does not exist "
                                 "(pass --data-dir or set DADA_REALDATA)")
        if scenes is None:
            if split not in SPLITS:
                raise DadaInputError(f"realdata split must be one of {sorted(SPLITS)}, got {split!r}")
            scenes = SPLITS[split]
        self.root, self.split, self.names = root, split, list(scenes)
        self.scenes: list[RGBDScene] = []
        self.info: list[dict] = []
        for name in self.names:
            sc, info = read_npz(scene_path(root, name), multiple)
            self.scenes.append(sc)
            self.info.append(info)
        units = {unit_of(i) for i in self.info}
        self.unit = units.pop() if len(units) == 1 else "mixed"

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> RGBDScene:
        return self.scenes[index]

    def describe(self) -> str:
        """One line for figure titles: which scenes, split and unit rule."""
        rule = (f"disparity -> z = {REFERENCE_DEPTH_M:g} m x median(d) / d" if self.unit != "m" else "metric depth")
        return f"realdata {self.split} split ({', '.join(self.names)}; {rule})"
