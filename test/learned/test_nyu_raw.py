"""The raw NYU frame registered to its RGB camera (``learned/datasets/nyu_raw.py``)."""

import cv2
import numpy as np
import pytest

from dada_ros.core.errors import DadaInputError
from dada_ros.learned.datasets import nyu_raw as N
from dada_ros.learned.datasets import realdata as R


def test_a_wall_lands_where_the_calibration_puts_it():
    """A wall at 2 m stays (about) 2 m deep, and a depth pixel moves onto the colour pixel that
    the calibration's rotation, translation and intrinsics give (checked on the image centre,
    where the lens distortion is negligible)."""
    z = 2.0
    depth = np.full((480, 640), z, np.float32)  # a fronto-parallel wall filling the depth image
    reg = N.register_depth(depth)
    ok = reg > 0
    assert 0.7 < ok.mean() < 1.0  # the colour camera sees more than the depth camera covers
    assert np.allclose(reg[ok], z, atol=0.01)
    # the depth camera's principal ray, through the calibration by hand
    p = N.R_TOOLBOX.T @ np.array([0.0, 0.0, z]) - N.T_TOOLBOX
    u = N.K_RGB[0, 0] * p[0] / p[2] + N.K_RGB[0, 2]
    v = N.K_RGB[1, 1] * p[1] / p[2] + N.K_RGB[1, 2]
    single = np.zeros_like(depth)
    cy, cx = int(round(N.K_DEPTH[1, 2])), int(round(N.K_DEPTH[0, 2]))
    single[cy - 1:cy + 2, cx - 1:cx + 2] = z  # a 3x3 patch: the undistortion keeps it (nearest)
    hit = np.argwhere(N.register_depth(single) > 0)
    assert hit.size and np.abs(hit.mean(axis=0) - [v, u]).max() < 2.0


def test_nearest_surface_wins_and_invalid_stays_invalid():
    depth = np.full((120, 160), 3.0, np.float32)
    depth[40:80, 60:100] = 1.0  # a near box in front of the wall
    depth[:, :10] = 0.0  # an invalid band
    depth[5, 5] = np.nan
    reg = N.register_depth(depth, (120, 160))
    assert np.isfinite(reg).all() and (reg >= 0).all()
    assert reg.max() <= 3.01 and reg[reg > 0].min() >= 0.99
    # the box covers the wall behind it: where both project, the 1 m surface is kept
    box = np.argwhere(np.isclose(reg, 1.0, atol=0.01))
    assert len(box) > 0.8 * 40 * 40 * (N.K_RGB[0, 0] / N.K_DEPTH[0, 0]) ** 2


def test_bad_depth_is_refused():
    with pytest.raises(DadaInputError, match="HxW"):
        N.register_depth(np.zeros((4, 4, 2), np.float32))


@pytest.mark.skipif(R.default_root() is None, reason="no ../shared/realdata (a user's clone has none)")
def test_the_real_frame_registers_onto_the_colour_edges():
    """The registered depth's discontinuities lie closer to the colour image's edges than the raw
    depth's (the MANIFEST's edge test: 1.9 px mean against 4.9)."""
    root = R.default_root()
    if not (root / N.SOURCE_FILE).is_file():
        pytest.skip("the raw NYU frame is not in this realdata folder")
    scene = N.read_registered(root)
    with np.load(root / N.SOURCE_FILE) as z:
        raw = np.where(z["valid"], z["depth"], np.nan)[: scene.depth.shape[0], : scene.depth.shape[1]]
    assert scene.rgb.shape[:2] == scene.depth.shape and scene.name == N.NAME
    assert 0.6 < np.isfinite(scene.depth).mean() < 0.9

    gray = cv2.cvtColor(scene.rgb, cv2.COLOR_RGB2GRAY)
    dist = cv2.distanceTransform((cv2.Canny(gray, 50, 150) == 0).astype(np.uint8), cv2.DIST_L2, 3)

    def edge_distance(d):
        ld = np.log(np.where(np.isfinite(d) & (d > 0), d, np.nan))
        e = np.zeros(d.shape, bool)
        e[:, 1:] |= np.abs(ld[:, 1:] - ld[:, :-1]) > 0.05
        e[1:] |= np.abs(ld[1:] - ld[:-1]) > 0.05
        e[:12] = e[-12:] = False
        e[:, :12] = e[:, -12:] = False
        return float(dist[e].mean())

    registered, unregistered = edge_distance(scene.depth), edge_distance(raw)
    assert registered < 2.5 and registered < 0.6 * unregistered
