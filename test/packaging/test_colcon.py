"""The ament_python layout as ``colcon build`` installs it, from a clean clone of the committed HEAD
in a temporary workspace (ws/src/dada_ros; no symlink install): the node executable where
``ros2 run`` looks (lib/dada_ros), package.xml / launch / config under share/dada_ros, the ament
index marker, every module under lib/pythonX.Y/site-packages/dada_ros; then the installed
``upsample_node`` runs with PYTHONPATH = that site-packages + the dependency path (not the source
tree, not the editable install) and answers its first frame after "ready" about as fast as a
steady one.

Needs colcon (colcon-common-extensions + colcon-ros, in requirements.txt); skipped without it.
Only committed changes are seen (see conftest.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from packaging_support import (DEPS_SITE, PACKAGE, PY, assert_first_frame_warm, bare_venv, clean_source,
                               diff_message, import_all, installed_files, node_answers_frames, run, runtime_env,
                               source_files, source_modules)

pytestmark = pytest.mark.packaging

COLCON_MISSING = ("colcon is not installed in this venv (pip install colcon-common-extensions colcon-ros; "
                  "both are in requirements.txt)")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """(source, install prefix of dada_ros, workspace): ``colcon build`` of a clean clone."""
    pytest.importorskip("colcon_core", reason=COLCON_MISSING)
    pytest.importorskip("colcon_ros", reason=COLCON_MISSING)
    colcon = Path(sys.executable).parent / "colcon"
    if not colcon.is_file():
        pytest.skip(f"{COLCON_MISSING}: no {colcon}")
    ws = tmp_path_factory.mktemp("colcon_ws")
    src = clean_source(ws / "src" / PACKAGE)
    env = runtime_env(0)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["COLCON_HOME"] = str(ws / ".colcon_home")  # no user defaults / mixins
    run([colcon, "--log-base", ws / "log", "build", "--base-paths", ws / "src", "--build-base", ws / "build",
         "--install-base", ws / "install", "--event-handlers", "console_direct-",
         "desktop_notification-", "status-", "terminal_title-"], 300, cwd=ws, env=env)
    return src, ws / "install" / PACKAGE, ws


def site_of(prefix: Path) -> Path:
    return prefix / "lib" / PY / "site-packages"


def test_ament_layout(workspace, monkeypatch):
    src, prefix, _ = workspace
    node = prefix / "lib" / PACKAGE / "upsample_node"
    assert node.is_file() and os.access(node, os.X_OK), f"no executable {node}: ros2 run would not find it"
    assert node.read_text().startswith("#!"), node.read_text()[:200]
    share = prefix / "share" / PACKAGE
    for rel in ("package.xml", "launch/upsample.launch.py", "config/upsample.yaml"):
        assert (share / rel).is_file(), f"missing {share / rel}"
    marker = prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE
    assert marker.is_file(), f"no ament index marker {marker}"
    expected, got = source_files(src), installed_files(site_of(prefix))
    assert got == expected, diff_message(expected, got, str(site_of(prefix)))
    # ros2 run / launch resolve the package through the ament index
    from ament_index_python.packages import get_package_prefix, get_package_share_directory

    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    assert Path(get_package_prefix(PACKAGE)) == prefix
    assert Path(get_package_share_directory(PACKAGE)) == share
    print(f"\ncolcon install: {len(got)} package files = the source's {len(expected)}")


@pytest.fixture(scope="module")
def plain_python(workspace):
    """A bare interpreter (empty venv, no .pth of the dev venv) for the installed package."""
    _, _, ws = workspace
    return bare_venv(ws / "venv")


def test_every_module_imports_from_the_install(workspace, plain_python):
    src, prefix, ws = workspace
    env = runtime_env(0, pythonpath=[site_of(prefix), DEPS_SITE])
    work = ws / "work"
    work.mkdir(exist_ok=True)
    import_all(plain_python, site_of(prefix), work, env, source_modules(src))


def test_installed_upsample_node_answers_first_frame_warm(workspace, plain_python):
    pytest.importorskip("rclpy", reason="ROS 2 (rclpy) wheels not installed")
    from ros_harness import DOMAIN_ID

    _, prefix, ws = workspace
    work = ws / "work"
    work.mkdir(exist_ok=True)
    env = runtime_env(DOMAIN_ID, pythonpath=[site_of(prefix), DEPS_SITE])
    # The script's own shebang is the dev venv's python, whose .pth files would switch the editable
    # install on; the bare interpreter runs the same installed script without it.
    result = node_answers_frames([plain_python, prefix / "lib" / PACKAGE / "upsample_node"], env, work,
                                 work / "node.log")
    if not result["connected"]:
        pytest.skip("the colcon-installed upsample_node started and reported ready, but cross-process DDS "
                    "discovery does not work here, so no frame could be exchanged")
    assert_first_frame_warm(result, "colcon-installed upsample_node")
