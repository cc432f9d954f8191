"""dada_ros as a user gets it from ``pip install``: a wheel built from a CLEAN CLONE of the committed
HEAD (``pip wheel --no-deps --no-build-isolation``, no network), installed into a fresh virtual
environment WITHOUT the dev venv's editable install, then run from a directory outside the source
tree: the wheel holds every source file, every module imports from the install, the installed
``dada-upsample`` upsamples a file pair, a solve from a READ-ONLY install caches its numba kernels in
the user's cache folder (or a private temp folder) and the next process loads them, and the
installed ``upsample_node`` answers its first frame after "ready" about as fast as a steady one.

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

from packaging_support import (DEPS_SITE, PACKAGE, assert_first_frame_warm, bare_venv, clean_source, diff_message,
                               import_all, node_answers_frames, read_only_package, run, runtime_env, source_files,
                               source_modules, tree_state, venv_site, wheel_files)

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


# One solve in a fresh process of the installed package: where numba cached the kernels, the first
# solve's time (a kernel compile or cache load is in it). NUMBA_DEBUG_CACHE=1 makes numba print
# "[cache] data saved to ..." / "[cache] data loaded from ..." for each kernel.
SOLVE = r"""
import json, sys, time
import numpy as np
from dada_ros.core.solver import DadaSolver, SolverConfig
rng = np.random.default_rng(0)
rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
src = (1.0 + rng.random((6, 8))).astype(np.float32)
src[0, 0] = np.nan
solver = DadaSolver(SolverConfig(device="cpu"))
t0 = time.perf_counter()
out = solver.solve(rgb, src).depth
first_s = time.perf_counter() - t0
from dada_ros.core import fused_cpu
assert fused_cpu.__file__.startswith(sys.argv[1]), fused_cpu.__file__
assert out.shape == (48, 64) and np.isfinite(out).mean() > 0.9
print("RESULT", json.dumps({"first_solve_s": first_s, "numba_cache": fused_cpu.NUMBA_CACHE,
                            "sweep_cache": fused_cpu._sweep._cache.cache_path}))
"""


@pytest.mark.parametrize("home", ["writable", "unwritable"])
def test_read_only_install_caches_kernels_for_the_user(installed, tmp_path, home):
    """A read-only install (a service user's node, a root-owned site-packages): numba cannot cache
    beside the source, so dada_ros/core/fused_cpu.py points it at $XDG_CACHE_HOME/dada_ros/numba, or,
    with HOME and XDG_CACHE_HOME unwritable too (numba alone: "no locator available", the import
    fails), at a private folder in the temp folder. The second process loads every kernel from there."""
    pytest.importorskip("numba", reason="numba not installed: nothing to cache")
    _, _, venv, work = installed
    site = venv_site(venv)
    env = {k: v for k, v in runtime_env(0).items() if not k.startswith("NUMBA_")}
    env["NUMBA_DEBUG_CACHE"] = "1"
    if home == "writable":
        env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "xdg"))
        cache = tmp_path / "xdg" / "dada_ros" / "numba"
    else:
        blocker = tmp_path / "a_file"  # nothing can be created below a regular file, not even by root
        blocker.write_text("")
        env.update(HOME=str(blocker / "home"), XDG_CACHE_HOME=str(blocker / "xdg"), TMPDIR=str(tmp_path / "tmp"))
        (tmp_path / "tmp").mkdir()
        cache = tmp_path / "tmp" / f"dada_ros-numba-{os.getuid()}"
    python = venv / "bin" / "python"
    package_before = tree_state(site / PACKAGE)
    runs = []
    with read_only_package(site / PACKAGE, tmp_path / "pycache_aside") as how:
        for _ in range(2):
            r = run([python, "-c", SOLVE, str(site)], 300, cwd=work, env=env)
            result = json.loads(next(line for line in r.stdout.splitlines() if line.startswith("RESULT "))[7:])
            runs.append((r.stdout, result, tree_state(cache) if cache.is_dir() else {}))
    (out1, res1, cache1), (out2, res2, cache2) = runs
    print(f"\nread-only install ({how}), HOME {home}: kernels cached in {cache}; first solve "
          f"{res1['first_solve_s']:.2f} s (compiles), in the next process {res2['first_solve_s']:.2f} s (cache loads)")
    assert res1["numba_cache"] == str(cache), res1
    assert res1["sweep_cache"].startswith(str(cache)), res1
    names = sorted(cache1)
    assert any(n.endswith(".nbi") for n in names) and any(n.endswith(".nbc") for n in names), names
    assert "[cache] data saved to" in out1, out1[-3000:]
    # The second process compiled nothing: it loaded every kernel, saved none, touched no cache file.
    assert "[cache] data loaded from" in out2 and "[cache] data saved to" not in out2, out2[-3000:]
    assert cache2 == cache1, "the second process rewrote cache files: it did not load from the cache"
    assert tree_state(site / PACKAGE) == package_before, "the read-only install was written to"


def test_installed_upsample_node_answers_first_frame_warm(installed):
    pytest.importorskip("rclpy", reason="ROS 2 (rclpy) wheels not installed")
    from ros_harness import DOMAIN_ID

    _, _, venv, work = installed
    script = venv / "bin" / "upsample_node"
    assert script.is_file() and os.access(script, os.X_OK), f"no executable {script}"
    assert script.read_text().startswith(f"#!{venv / 'bin' / 'python'}"), script.read_text()[:200]
    result = node_answers_frames([script], runtime_env(DOMAIN_ID), work, work / "node.log")
    if not result["connected"]:
        pytest.skip("the installed upsample_node started and reported ready (its kernels warmed up before), but "
                    "cross-process DDS discovery does not work here, so no frame could be exchanged")
    assert_first_frame_warm(result, "installed upsample_node")
