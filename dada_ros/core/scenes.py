"""Procedural RGB-D scenes: ray-cast 3-D primitives with textures, seeded and reproducible.

A scene is a list of 3-D primitives (planes, boxes, spheres) with procedural textures attached to
their surfaces, so the same scene renders consistently from any camera pose (sequences, optical
flow). Rendering returns an RGB image (uint8) and the metric z-depth (float32 metres) in the ROS
optical frame (x right, y down, z forward; pixel (u, v) = column, row).

What the scenes contain, on purpose (the cases guided upsampling must get right):

* depth edges that coincide with colour edges (a textured box in front of a wall),
* depth edges WITHOUT a colour edge (an untextured box with the wall's colour, parallel to it),
* colour edges WITHOUT a depth edge (painted stripes/checkers on flat walls),
* slanted planes (floor, a tilted board) and curved surfaces (spheres), untextured regions.

Sensor simulation (:func:`simulate_tof`) turns ground truth into a low-resolution ToF-like
source: area integration over each sensor pixel (which produces mixed/flying pixels at depth
edges), depth-dependent noise, dropouts on dark surfaces and beyond the maximum range.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .errors import DadaInputError


# ----------------------------------------------------------------------------- textures
@dataclass
class Texture:
    """Colour as a function of 2-D surface coordinates (metres along the surface)."""

    kind: str  # flat | checker | stripes | noise
    color_a: tuple[float, float, float]
    color_b: tuple[float, float, float] = (0.0, 0.0, 0.0)
    period: float = 0.3  # metres
    angle: float = 0.0  # stripe direction, radians
    seed: int = 0

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ca = np.asarray(self.color_a, np.float32)
        cb = np.asarray(self.color_b, np.float32)
        if self.kind == "flat":
            return np.broadcast_to(ca, a.shape + (3,)).copy()
        if self.kind == "checker":
            m = (np.floor(a / self.period) + np.floor(b / self.period)) % 2
        elif self.kind == "stripes":
            t = a * np.cos(self.angle) + b * np.sin(self.angle)
            m = np.floor(t / self.period) % 2
        elif self.kind == "noise":
            m = _value_noise(a / self.period, b / self.period, self.seed)
        else:
            raise DadaInputError(f"unknown texture kind {self.kind!r}")
        m = m.astype(np.float32)[..., None]
        return (1 - m) * ca + m * cb


def _value_noise(x: np.ndarray, y: np.ndarray, seed: int, size: int = 64) -> np.ndarray:
    """Smooth 2-D value noise in [0, 1] (bilinear lattice interpolation, periodic)."""
    grid = np.random.default_rng(seed).random((size, size)).astype(np.float32)
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)  # smoothstep
    i0, j0 = x0.astype(np.int64) % size, y0.astype(np.int64) % size
    i1, j1 = (i0 + 1) % size, (j0 + 1) % size
    top = grid[j0, i0] * (1 - fx) + grid[j0, i1] * fx
    bot = grid[j1, i0] * (1 - fx) + grid[j1, i1] * fx
    return top * (1 - fy) + bot * fy


# ----------------------------------------------------------------------------- primitives
def _basis(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors spanning the plane orthogonal to ``normal``."""
    n = normal / np.linalg.norm(normal)
    helper = np.array([0.0, 1.0, 0.0]) if abs(n[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = np.cross(n, helper)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(n, e1)


@dataclass
class Plane:
    point: np.ndarray
    normal: np.ndarray
    texture: Texture

    def intersect(self, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ray parameter t (inf on miss), surface normal and colour for rays o + t d (N, 3)."""
        n = self.normal / np.linalg.norm(self.normal)
        denom = d @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            t = ((self.point - o) @ n) / denom
        t = np.where((np.abs(denom) > 1e-9) & (t > 1e-6), t, np.inf)
        p = o + np.where(np.isfinite(t), t, 0)[:, None] * d
        e1, e2 = _basis(n)
        rel = p - self.point
        return t, np.broadcast_to(n, d.shape), self.texture(rel @ e1, rel @ e2)


@dataclass
class Sphere:
    center: np.ndarray
    radius: float
    texture: Texture

    def intersect(self, o, d):
        oc = o - self.center
        a = np.einsum("ij,ij->i", d, d)
        b = 2 * (d @ oc) if oc.ndim == 1 else 2 * np.einsum("ij,ij->i", d, oc)
        c = (oc @ oc if oc.ndim == 1 else np.einsum("ij,ij->i", oc, oc)) - self.radius**2
        disc = b * b - 4 * a * c
        sq = np.sqrt(np.maximum(disc, 0))
        t = (-b - sq) / (2 * a)
        t = np.where((disc > 0) & (t > 1e-6), t, np.inf)
        p = o + np.where(np.isfinite(t), t, 0)[:, None] * d
        nrm = (p - self.center) / self.radius
        lon = np.arctan2(nrm[:, 0], nrm[:, 2]) * self.radius
        lat = np.arcsin(np.clip(nrm[:, 1], -1, 1)) * self.radius
        return t, nrm, self.texture(lon, lat)


@dataclass
class Box:
    center: np.ndarray
    half: np.ndarray  # half extents along the box axes
    rotation: np.ndarray  # 3x3, columns = box axes in world
    texture: Texture

    def intersect(self, o, d):
        R = self.rotation
        ol = (o - self.center) @ R  # world -> box frame (R orthonormal)
        dl = d @ R
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / np.where(np.abs(dl) < 1e-12, 1e-12, dl)
            t1 = (-self.half - ol) * inv
            t2 = (self.half - ol) * inv
        tmin = np.minimum(t1, t2)
        tmax = np.maximum(t1, t2)
        tn = tmin.max(axis=1)
        tf = tmax.min(axis=1)
        hit = (tn <= tf) & (tn > 1e-6)
        t = np.where(hit, tn, np.inf)
        axis = tmin.argmax(axis=1)
        pl = ol + np.where(hit, tn, 0)[:, None] * dl
        sign = np.sign(np.take_along_axis(pl, axis[:, None], 1))[:, 0]
        nl = np.zeros_like(pl)
        nl[np.arange(len(pl)), axis] = sign
        # Face coordinates: the two box axes other than the face normal.
        u_ax = (axis + 1) % 3
        v_ax = (axis + 2) % 3
        a = np.take_along_axis(pl, u_ax[:, None], 1)[:, 0]
        b = np.take_along_axis(pl, v_ax[:, None], 1)[:, 0]
        return t, nl @ R.T, self.texture(a, b)


@dataclass
class Scene:
    primitives: list = field(default_factory=list)
    light: np.ndarray = field(default_factory=lambda: np.array([0.3, -0.6, -0.75]))  # towards the light
    ambient: float = 0.55


# ----------------------------------------------------------------------------- cameras
def intrinsics(width: int, height: int, hfov_deg: float = 60.0) -> np.ndarray:
    """Pinhole K (3x3) with square pixels and the principal point at the image centre."""
    f = 0.5 * width / np.tan(np.radians(hfov_deg) / 2)
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]], dtype=np.float64)


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """K of the same camera after resizing the image by (sx, sy) (image_proc/resize convention,
    with the half-pixel-centre alignment cv2.resize uses)."""
    K2 = K.astype(np.float64).copy()
    K2[0, 0] *= sx
    K2[1, 1] *= sy
    K2[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K2[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return K2


def rotation(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Camera-to-world rotation in the optical frame: yaw about y (down), pitch about x, roll about z."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    Rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return Ry @ Rx @ Rz


@dataclass
class Pose:
    """Camera pose: world point = R @ camera point + t."""

    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    t: np.ndarray = field(default_factory=lambda: np.zeros(3))


def render(scene: Scene, K: np.ndarray, size: tuple[int, int], pose: Pose | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast ``scene`` -> (rgb uint8 (H, W, 3), z-depth float32 (H, W), inf where nothing is hit).

    Args:
        K: 3x3 intrinsics; size: (H, W); pose: camera pose (identity by default).
    """
    pose = pose or Pose()
    H, W = size
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
    d = d_cam @ pose.R.T  # unit z in the camera frame, so ray t equals z-depth
    o = np.asarray(pose.t, np.float64)
    best = np.full(len(d), np.inf)
    color = np.zeros((len(d), 3), np.float32)
    normal = np.zeros((len(d), 3))
    for prim in scene.primitives:
        t, n, c = prim.intersect(o, d)
        closer = t < best
        best = np.where(closer, t, best)
        color[closer] = c[closer]
        normal[closer] = n[closer]
    light = scene.light / np.linalg.norm(scene.light)
    shade = scene.ambient + (1 - scene.ambient) * np.abs(normal @ light)
    rgb = np.clip(color * shade[:, None], 0, 1)
    rgb[~np.isfinite(best)] = 0
    return (rgb.reshape(H, W, 3) * 255 + 0.5).astype(np.uint8), best.reshape(H, W).astype(np.float32)


# ----------------------------------------------------------------------------- random scenes
def _rand_color(rng: np.random.Generator, dark_ok: bool = True) -> tuple[float, float, float]:
    lo = 0.05 if dark_ok else 0.3
    return tuple(float(x) for x in rng.uniform(lo, 0.95, 3))


def _rand_texture(rng: np.random.Generator) -> Texture:
    kind = rng.choice(["flat", "flat", "checker", "stripes", "noise"])
    return Texture(
        kind=str(kind), color_a=_rand_color(rng), color_b=_rand_color(rng),
        period=float(rng.uniform(0.08, 0.5)), angle=float(rng.uniform(0, np.pi)), seed=int(rng.integers(1 << 30)),
    )


def random_scene(seed: int) -> Scene:
    """A room-like scene: back wall, floor, optional side wall, 3-7 objects; reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    wall_tex = _rand_texture(rng)
    prims: list = [
        Plane(np.array([0.0, 0.0, rng.uniform(4.5, 7.0)]), np.array([0.0, 0.0, -1.0]), wall_tex),
        Plane(np.array([0.0, rng.uniform(1.0, 1.6), 0.0]), np.array([0.0, -1.0, 0.0]), _rand_texture(rng)),
    ]
    if rng.random() < 0.6:
        side = rng.choice([-1.0, 1.0])
        prims.append(Plane(np.array([side * rng.uniform(2.0, 3.5), 0, 0]), np.array([-side, 0.0, rng.uniform(-0.3, 0.3)]),
                           _rand_texture(rng)))
    for _ in range(int(rng.integers(3, 8))):
        kind = rng.choice(["box", "box", "sphere", "board"])
        z = rng.uniform(1.2, 4.2)
        x = rng.uniform(-0.45, 0.45) * z
        y = rng.uniform(-0.3, 0.35) * z
        c = np.array([x, y, z])
        # One object in four copies the wall's texture: a depth edge without a colour edge.
        tex = wall_tex if rng.random() < 0.25 else _rand_texture(rng)
        if kind == "sphere":
            prims.append(Sphere(c, float(rng.uniform(0.15, 0.6)), tex))
        elif kind == "box":
            yaw = 0.0 if tex is wall_tex else float(rng.uniform(-0.8, 0.8))
            prims.append(Box(c, rng.uniform(0.1, 0.55, 3), rotation(yaw=yaw), tex))
        else:  # slanted thin board
            R = rotation(yaw=float(rng.uniform(-1, 1)), pitch=float(rng.uniform(-0.9, 0.9)))
            prims.append(Box(c, np.array([rng.uniform(0.3, 0.8), rng.uniform(0.3, 0.8), 0.02]), R, tex))
    return Scene(prims)


# ----------------------------------------------------------------------------- sensor models
def block_average(depth: np.ndarray, source_shape: tuple[int, int]) -> np.ndarray:
    """Low-resolution depth by averaging the valid pixels of each cell (the reference protocol:
    nanmean over the block); a cell without valid pixel is NaN. Works for any ratio (the same
    partition as the solver's down operator)."""
    from .resample import Partition

    h, w = source_shape
    valid = np.isfinite(depth) & (depth > 0)
    flat = Partition(depth.shape, source_shape).cell_ids()
    sums = np.bincount(flat, np.where(valid, depth, 0).ravel(), h * w)
    cnt = np.bincount(flat, valid.ravel().astype(np.float64), h * w)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (sums / cnt).reshape(h, w)
    return out.astype(np.float32)


@dataclass
class TofModel:
    """ToF-like degradations of a low-resolution depth image."""

    noise_rel: float = 0.005  # sigma = noise_rel * z ...
    noise_quad: float = 0.0015  # ... + noise_quad * z^2 (metres)
    dropout: float = 0.01  # random missing cells
    dark_dropout: float = 0.5  # probability of losing a cell on very dark surfaces
    max_range: float = 8.0  # beyond: no return (0)
    flying: bool = True  # keep mixed-depth cells at edges (area integration) instead of snapping


def simulate_tof(gt: np.ndarray, rgb: np.ndarray, source_shape: tuple[int, int], model: TofModel,
                 rng: np.random.Generator) -> np.ndarray:
    """Low-resolution ToF-like depth (metres, 0 = no return) from full-resolution ground truth.

    Area integration over each sensor cell gives the mixed ("flying") pixels real ToF shows at
    depth edges; ``flying=False`` takes the median instead (a sharper sensor).
    """
    gt = np.where(np.isfinite(gt), gt, np.inf)
    finite_gt = np.where(np.isfinite(gt), gt, np.nan)
    if model.flying:
        src = block_average(finite_gt, source_shape)
    else:
        src = cv2.resize(np.nan_to_num(finite_gt, nan=0), source_shape[::-1], interpolation=cv2.INTER_NEAREST)
    z = np.nan_to_num(src, nan=0.0)
    sigma = model.noise_rel * z + model.noise_quad * z * z
    z = z + rng.standard_normal(z.shape).astype(np.float32) * sigma
    lum = cv2.resize(rgb.mean(axis=2).astype(np.float32) / 255.0, source_shape[::-1], interpolation=cv2.INTER_AREA)
    drop = rng.random(z.shape) < model.dropout
    drop |= (lum < 0.08) & (rng.random(z.shape) < model.dark_dropout)
    drop |= (z > model.max_range) | ~np.isfinite(src)
    z[drop] = 0.0
    return np.maximum(z, 0).astype(np.float32)


@dataclass
class Sample:
    """One guided-upsampling example."""

    rgb: np.ndarray  # (H, W, 3) uint8
    gt: np.ndarray  # (H, W) float32 metres, NaN = no ground truth
    source: np.ndarray  # (h, w) float32 metres, 0/NaN = invalid
    K: np.ndarray  # 3x3 intrinsics of the RGB / output grid
    seed: int
    scale: float


def make_sample(seed: int, scale: int | float = 8, size: tuple[int, int] = (256, 256),
                source_shape: tuple[int, int] | None = None, tof: TofModel | None = None) -> Sample:
    """Render ``random_scene(seed)`` and make its low-resolution source.

    Without ``tof`` the source is the block average of the ground truth (the paper's protocol);
    with it, a ToF-like degraded source. ``source_shape`` overrides ``size / scale`` (use it for a
    non-integer ratio).
    """
    H, W = size
    if source_shape is None:
        if H % scale or W % scale:
            raise DadaInputError(f"size {size} is not a multiple of scale {scale}; pass source_shape")
        source_shape = (int(H // scale), int(W // scale))
    K = intrinsics(W, H)
    rgb, depth = render(random_scene(seed), K, size)
    gt = np.where(np.isfinite(depth), depth, np.nan).astype(np.float32)
    if tof is None:
        src = block_average(gt, source_shape)
    else:
        src = simulate_tof(gt, rgb, source_shape, tof, np.random.default_rng(seed + 7919))
    return Sample(rgb, gt, src, K, seed, float(np.sqrt(H * W / (source_shape[0] * source_shape[1]))))
