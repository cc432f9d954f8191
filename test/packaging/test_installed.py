"""dada_ros as a user gets it from ``pip install``: a wheel built from a CLEAN CLONE of the committed
HEAD (``pip wheel --no-deps --no-build-isolation``, no network), installed into a fresh virtual
environment WITHOUT the dev venv's editable install, then run from a directory outside the source
tree: the wheel holds every source file, every module imports from the install, the installed
``dada-upsample`` upsamples a file pair and the installed ``upsample_node`` answers one frame.

The clone sees only COMMITTED changes (DADA_PACKAGING_SOURCE=worktree builds the working tree
instead; see conftest.py). The fresh venv gets the dependencies (torch, numpy, the ROS wheels, ...)
from the dev venv as a plain path line in a .pth file: that runs none of the dev venv's .pth files,
so the editable finder of dada_ros stays off (checked) and the ROS wheels' library path is set by
the test (packaging_support.runtime_env).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from packaging_support import (DEPS_SITE, PACKAGE, bare_venv, clean_source, diff_message, import_all,
                               node_answers_one_frame, run, runtime_env, source_files, source_modules,
                               venv_site, wheel_files)

pytestmark = pytest.mark.packaging


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(source, wheel, venv, workdir): the clone, its wheel, a fresh venv with only that wheel
    installed (+ the dependency path), and an empty working directory outside the source."""
    base = tmp_path_factory.mktemp("installed")
    src = clean_source(base / "src")
    assert (src / "setup.py").is_file(), f"no setup.py in the source at {src}"
    dist = base / "dist"
    # --no-build-isolation: setuptools from the dev venv, no download. The build writes build/ and
    # *.egg-info into the clone, never into the checkout.
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "--quiet", "--wheel-dir", dist, src], 300, cwd=base)
    (wheel,) = dist.glob(f"{PACKAGE}-*.whl")
    venv = base / "venv"
    python = bare_venv(venv)
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
         "--no-index", "--quiet", wheel], 300, cwd=base)
    site = venv_site(venv)
    # A plain path line: the dependencies become importable, their .pth files do NOT run (no editable
    # finder for dada_ros, no ROS bootstrap re-exec).
    (site / "_dada_test_deps.pth").write_text(f"{DEPS_SITE}\n")
    work = base / "work"
    work.mkdir()
    return src, wheel, venv, work


def test_wheel_holds_every_source_file(installed):
    src, wheel, _, _ = installed
    expected, got = source_files(src), wheel_files(wheel)
    assert got == expected, diff_message(expected, got, wheel.name)
    from zipfile import ZipFile

    data = {n.split(".data/data/", 1)[1] for n in ZipFile(wheel).namelist() if ".data/data/" in n}
    assert data >= {"share/ament_index/resource_index/packages/dada_ros", "share/dada_ros/package.xml",
                    "share/dada_ros/launch/upsample.launch.py", "share/dada_ros/config/upsample.yaml"}, data
    print(f"\n{wheel.name}: {len(got)} package files = the source's {len(expected)}")


def test_every_module_imports_from_the_install(installed):
    src, _, venv, work = installed
    site = venv_site(venv)
    import_all(venv / "bin" / "python", site, work, runtime_env(0), source_modules(src))


def test_installed_dada_upsample_cli(installed):
    import cv2

    from dada_ros.core.scenes import make_sample

    _, _, venv, work = installed
    s = make_sample(seed=2, scale=8, size=(48, 64))
    cv2.imwrite(str(work / "rgb.png"), np.ascontiguousarray(s.rgb[:, :, ::-1]))
    np.save(work / "src.npy", s.source)
    run([venv / "bin" / "dada-upsample", "--guide", "rgb.png", "--source", "src.npy", "--out", "out.npy",
         "--device", "cpu", "--stats", "stats.json"], 180, cwd=work, env=runtime_env(0))
    out = np.load(work / "out.npy")
    assert out.shape == (48, 64) and out.dtype == np.float32
    assert np.isfinite(out).mean() > 0.9
    stats = json.loads((work / "stats.json").read_text())
    assert stats["method"] == "dada-free" and stats["scale"] == 8, stats


def test_installed_upsample_node_answers_one_frame(installed):
    pytest.importorskip("rclpy", reason="ROS 2 (rclpy) wheels not installed")
    from ros_harness import DOMAIN_ID

    _, _, venv, work = installed
    script = venv / "bin" / "upsample_node"
    assert script.is_file() and os.access(script, os.X_OK), f"no executable {script}"
    assert script.read_text().startswith(f"#!{venv / 'bin' / 'python'}"), script.read_text()[:200]
    result = node_answers_one_frame([script], runtime_env(DOMAIN_ID), work, work / "node.log")
    if not result["connected"]:
        pytest.skip("the installed upsample_node started and reported ready, but cross-process DDS "
                    "discovery does not work here, so no frame could be exchanged")
