"""Keep a frame's freed buffers in the process (glibc malloc), so the next frame does not fault
its pages in again.

Why: glibc serves an allocation above its mmap threshold (128 KiB at start) with fresh pages from
the kernel and gives them back on free, and it returns free memory at the top of a heap beyond
its trim threshold. A 640x480 float32 channel is 1.2 MB: the tensors of a frame (the feature
network's activations, the features, the coefficients) come and go every frame, and glibc's
dynamic thresholds do not settle on such a mix. In steady state the shipped learned guide's
forward pass at 640x480 still faulted in 11 MB per frame (2706 page faults, each a kernel trap and
a zeroed page) without this setting, and none with it. Measured (session 10, ``python
benchmarks/allocator.py --rounds 6``, 2-core VM, the five RealSense frames at x4 and x8, one torch
thread): a learned solve 0.93x (idle) and 0.90x (one busy process) of the time without it, a
DADA-free solve 0.95x / 1.00x, the peak resident memory 636 -> 650 MB. doc/method.md "Memory allocator".

The setting is process-wide, so the library never makes it on import: the node and the command
line tools call :func:`retain_freed_memory` once at start (``DADA_ROS_MALLOC_TUNING=0`` in the
environment turns it off, e.g. for an A/B measurement), and so may any program that uses the core.
A threshold the user set through glibc's own environment (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES``) is kept.
"""

from __future__ import annotations

import ctypes
import os
import platform

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Blocks up to this size come from the heap and are reused (glibc's own maximum for the dynamic
# threshold, 32 MiB on 64-bit: a 1280x720 frame's 13-channel feature tensor, 48 MB, still maps).
MMAP_THRESHOLD = 32 * 1024 * 1024
# Free memory at the top of the heap is given back to the kernel only beyond this (twice the
# threshold, so one freed block of the largest size does not by itself trigger a trim).
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD
OPT_OUT = "DADA_ROS_MALLOC_TUNING"
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")

_applied: str | None = None


def retain_freed_memory() -> str:
    """Raise glibc's mmap and trim thresholds for this process (idempotent).

    Returns what happened, for the log: ``"applied"``, ``"already applied"``, or why not
    (not glibc, turned off by the environment, the user's own glibc setting kept, mallopt refused).
    """
    global _applied
    if _applied is not None:
        return "already applied" if _applied == "applied" else _applied
    if os.environ.get(OPT_OUT, "1").strip().lower() in ("0", "false", "off", "no"):
        _applied = f"off ({OPT_OUT}={os.environ[OPT_OUT]})"
    elif any(k in os.environ and (k != "GLIBC_TUNABLES" or "malloc" in os.environ[k]) for k in USER_SETTINGS):
        _applied = "kept the user's glibc malloc settings"
    elif platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        _applied = "not glibc: nothing to do"
    else:
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        except (OSError, AttributeError) as exc:
            ok, why = False, str(exc)
        else:
            why = "mallopt returned 0"
        _applied = "applied" if ok else f"not applied ({why})"
    return _applied
