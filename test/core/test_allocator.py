"""core/allocator.py: the node and the CLIs keep freed frame buffers (glibc mallopt).

Each case runs in a fresh interpreter: the setting is process-wide and a fresh process is the only
way to see glibc's own default next to it.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc only")

# Prints the state string, then how many bytes an 8 MB malloc put into mmapped regions (mallinfo2's
# hblkhd): 0 when the block came from the heap.
PROBE = textwrap.dedent("""
    import ctypes, sys
    from dada_ros.core.allocator import retain_freed_memory
    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                   "fsmblks", "uordblks", "fordblks", "keepcost")]
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    state = retain_freed_memory() if sys.argv[1] == "apply" else "untouched"
    again = retain_freed_memory() if sys.argv[1] == "apply" else "untouched"
    before = libc.mallinfo2().hblkhd
    p = libc.malloc(8 * 1024 * 1024)
    mapped = libc.mallinfo2().hblkhd - before
    libc.free(ctypes.c_void_p(p))
    print(state, "|", again, "|", mapped)
""")


def probe(mode: str, **env: str) -> tuple[str, str, int]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES", "DADA_ROS_MALLOC_TUNING")}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env={**clean, **env}, capture_output=True, text=True,
                         timeout=120, check=True).stdout.strip().splitlines()[-1]
    state, again, mapped = (part.strip() for part in out.split("|"))
    return state, again, int(mapped)


def test_glibc_default_maps_a_large_block_and_the_setting_keeps_it_on_the_heap():
    assert probe("none")[2] >= 8 * 1024 * 1024  # what every frame's tensors paid before
    state, again, mapped = probe("apply")
    assert (state, again, mapped) == ("applied", "already applied", 0)


def test_the_environment_turns_it_off_and_a_users_glibc_setting_is_kept():
    state, _, mapped = probe("apply", DADA_ROS_MALLOC_TUNING="0")
    assert state.startswith("off") and mapped >= 8 * 1024 * 1024
    state, _, mapped = probe("apply", MALLOC_MMAP_THRESHOLD_="65536")
    assert state == "kept the user's glibc malloc settings" and mapped >= 8 * 1024 * 1024
    # GLIBC_TUNABLES without a malloc tunable is not a malloc setting
    assert probe("apply", GLIBC_TUNABLES="glibc.cpu.hwcaps=-AVX512F")[0] == "applied"


def test_every_command_line_tool_applies_it():
    code = ("from dada_ros.cli.common import run_cli\nfrom dada_ros.core import allocator\n"
            "run_cli('x', lambda argv: 0)\nprint(allocator.retain_freed_memory())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                         env={k: v for k, v in os.environ.items() if k != "DADA_ROS_MALLOC_TUNING"})
    assert out.stdout.strip().splitlines()[-1] == "already applied"
