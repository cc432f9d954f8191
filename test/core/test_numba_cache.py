"""Where numba caches the fused kernels when the package folder is not writable (dada_ros/core/fused_cpu.py).

``@njit(cache=True)`` raises at decoration time ("no locator available") when neither ``__pycache__``
beside the source nor ~/.cache/numba is writable: an installed dada_ros run by a service user with a
read-only HOME could not even import. Each case imports a COPY of the package in a fresh interpreter
(numba picks the location at decoration, once per process) and reads where each kernel's cache went.
Nothing is compiled here; test/packaging/test_installed.py runs solves from a read-only install.

The read-only copy is ``chmod -R a-w``. Root (or CAP_DAC_OVERRIDE) writes into a mode 0555 folder
anyway: when a probe write succeeds, ``core/__pycache__`` is made a regular FILE instead (numba's
``os.makedirs`` of it fails, as on a read-only install). An unwritable HOME / XDG_CACHE_HOME / temp
folder lies under a regular file, which stops root too.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba", reason="numba not installed: the torch loop runs, nothing is cached")

REPO = Path(__file__).resolve().parents[2]
KERNELS = ("_form_row", "_cell_ratios", "_sweep", "_materialise", "_check_change", "_adjust_kernel")

# Run in a fresh interpreter: argv[1] = the folder holding the package copy, argv[2] = "numba-first"
# to import numba and compile a function before dada_ros (the config is already read then), argv[3]
# = a tempfile.tempdir to force ("" = none), argv[4] = a dada_ros module to import first ("" = none).
PROBE = r"""
import importlib, json, os, sys, tempfile, warnings
sys.path.insert(0, sys.argv[1])
if sys.argv[3]:
    tempfile.tempdir = sys.argv[3]
if sys.argv[2] == "numba-first":
    import numba
    assert numba.njit(lambda x: x + 1)(1) == 2
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    if sys.argv[4]:
        importlib.import_module(sys.argv[4])
    from dada_ros.core import fused_cpu
import numba
assert fused_cpu.__file__.startswith(sys.argv[1]), fused_cpu.__file__
paths = {}
for name in %r:
    cache = getattr(fused_cpu, name)._cache
    paths[name] = getattr(cache, "cache_path", None) or type(cache).__name__
ws = sys.modules.get("dada_ros.core.warm_start")
for name in ("_select_numba", "_fill_numba") if ws is not None and ws.HAVE_NUMBA else ():
    cache = getattr(ws, name)._cache
    paths["warm_start." + name] = getattr(cache, "cache_path", None) or type(cache).__name__
print(json.dumps({"NUMBA_CACHE": fused_cpu.NUMBA_CACHE, "CACHE_DIR": numba.config.CACHE_DIR, "paths": paths,
                  "warnings": [str(w.message) for w in caught if "numba" in str(w.message)]}))
""" % (KERNELS,)


def package_copy(dest: Path, writable: bool) -> Path:
    """dada_ros (sources only) copied under ``dest``; returns ``dest``. Not ``writable``: read-only."""
    shutil.copytree(REPO / "dada_ros", dest / "dada_ros", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if not writable:
        make_read_only(dest)
    return dest


def make_read_only(root: Path) -> str:
    """``chmod -R a-w`` ``root``; where that does not stop this process (root), also block numba's
    in-tree cache folder of dada_ros/core with a file. Returns which was needed."""
    core = root / "dada_ros" / "core"
    for p in sorted([root, *root.rglob("*")], reverse=True):
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        (core / ".write_probe").write_text("")
    except OSError:
        return "chmod"
    (core / ".write_probe").unlink()
    shutil.rmtree(core / "__pycache__", ignore_errors=True)
    (core / "__pycache__").write_text("a file: numba can make no cache folder here\n")
    return "chmod + __pycache__ file (writes are not stopped by permissions for this user)"


def restore_writable(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)


def probe(pkg_root: Path, env_over: dict, numba_first: bool = False, tempdir: str = "", first: str = "") -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NUMBA_") and k not in ("XDG_CACHE_HOME", "PYTHONPATH", "TMPDIR")}
    env.update(PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1", **env_over)
    r = subprocess.run([sys.executable, "-c", PROBE, str(pkg_root), "numba-first" if numba_first else "-", tempdir,
                        first],
                       capture_output=True, text=True, timeout=180, env=env, cwd=pkg_root)
    assert r.returncode == 0, f"the import failed (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture
def unwritable(tmp_path):
    """A path nobody can create (under a regular file), root included."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    return blocker / "below"


@pytest.fixture
def read_only_copy(tmp_path):
    root = package_copy(tmp_path / "site", writable=False)
    yield root
    restore_writable(root)


def assert_all_under(result: dict, folder: Path) -> None:
    for name, path in result["paths"].items():
        assert Path(path).parent == folder, f"{name} caches in {path}, not in {folder}/<subfolder>: {result}"


def test_writable_package_keeps_numbas_default(tmp_path):
    root = package_copy(tmp_path / "site", writable=True)
    result = probe(root, {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert result["NUMBA_CACHE"] is None and result["CACHE_DIR"] == "", result
    for name, path in result["paths"].items():
        assert Path(path) == root / "dada_ros" / "core" / "__pycache__", (name, result)
    assert not (tmp_path / "xdg").exists()


@pytest.mark.parametrize("numba_first", [False, True], ids=["dada_ros-first", "numba-imported-first"])
def test_read_only_package_caches_in_xdg_cache_home(tmp_path, read_only_copy, numba_first):
    xdg = tmp_path / "xdg"
    result = probe(read_only_copy, {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(xdg)},
                   numba_first=numba_first)
    assert result["NUMBA_CACHE"] == result["CACHE_DIR"] == str(xdg / "dada_ros" / "numba"), result
    assert_all_under(result, xdg / "dada_ros" / "numba")
    assert not result["warnings"], result


def test_read_only_package_without_xdg_caches_in_home_cache(tmp_path, read_only_copy):
    home = tmp_path / "home"
    result = probe(read_only_copy, {"HOME": str(home), "XDG_CACHE_HOME": "relative/is/ignored"})
    assert_all_under(result, home / ".cache" / "dada_ros" / "numba")


def test_unwritable_home_falls_back_to_a_private_temp_folder(tmp_path, read_only_copy, unwritable):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    # Without the fallback numba finds no locator: its user-wide ~/.cache/numba is under the file too.
    result = probe(read_only_copy, {"HOME": str(unwritable / "home"), "XDG_CACHE_HOME": str(unwritable / "xdg"),
                                    "TMPDIR": str(tmp)})
    folder = tmp / f"dada_ros-numba-{os.getuid()}"
    assert result["NUMBA_CACHE"] == str(folder), result
    assert_all_under(result, folder)
    st = folder.stat()
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.getuid(), oct(st.st_mode)


@pytest.mark.parametrize("case", ["group-writable", "symlink", "no-temp-folder"])
def test_no_safe_folder_compiles_without_cache(tmp_path, read_only_copy, unwritable, case):
    """A temp folder another user could write (or a symlink planted there) is refused: numba would
    load and run the pickles and machine code in it. With no folder at all the import still works."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    folder = tmp / f"dada_ros-numba-{os.getuid()}"
    tempdir = ""
    if case == "group-writable":
        folder.mkdir()
        folder.chmod(0o777)
    elif case == "symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        folder.symlink_to(tmp_path / "elsewhere")
    else:
        tempdir = str(unwritable / "tmp")
    result = probe(read_only_copy, {"HOME": str(unwritable / "home"), "XDG_CACHE_HOME": str(unwritable / "xdg"),
                                    "TMPDIR": str(tmp)}, tempdir=tempdir)
    assert result["NUMBA_CACHE"] == "" and result["CACHE_DIR"] == "", result
    assert set(result["paths"].values()) == {"NullCache"}, result
    assert result["warnings"] and "NUMBA_CACHE_DIR" in result["warnings"][0], result
    if case == "symlink":
        assert not any((tmp_path / "elsewhere").iterdir()), "wrote through the symlink"


def test_users_numba_cache_dir_is_kept(tmp_path, read_only_copy):
    mine = tmp_path / "mine"
    result = probe(read_only_copy, {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "xdg"),
                                    "NUMBA_CACHE_DIR": str(mine)})
    assert result["NUMBA_CACHE"] is None and result["CACHE_DIR"] == str(mine), result
    assert_all_under(result, mine)
    assert not (tmp_path / "xdg").exists()


@pytest.mark.parametrize("first", ["dada_ros.core.warm_start", "dada_ros.core.pipeline"])
def test_warm_start_kernels_cache_there_too(tmp_path, read_only_copy, unwritable, first):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    result = probe(read_only_copy, {"HOME": str(unwritable / "home"), "XDG_CACHE_HOME": str(unwritable / "xdg"),
                                    "TMPDIR": str(tmp)}, first=first)
    assert {"warm_start._select_numba", "warm_start._fill_numba"} <= set(result["paths"]), result
    assert_all_under(result, tmp / f"dada_ros-numba-{os.getuid()}")
