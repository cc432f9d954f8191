"""dada_ros: guided depth super-resolution by deep anisotropic diffusion (DADA) for ROS 2.

The ``core`` subpackage is free of ROS imports (torch + numpy + OpenCV) and can be used from
plain Python; ``ros`` holds the rclpy node and ``cli`` the command-line entry points.
"""

import os as _os


def _libgomp_loaded() -> bool:
    """Whether the process has libgomp mapped already (then it has read its environment)."""
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as f:
            return "libgomp" in f.read()
    except OSError:
        return False


# Sharing a busy CPU (benchmarks/contention.py, doc/method.md "Sharing the CPU"): the fused loop
# is one OpenMP parallel sweep per application (~0.2-0.4 ms at 640x480), so a solve has 150-300
# barriers. libgomp's default lets a thread that reached a barrier SPIN up to 300000 times before
# it sleeps: with another busy process on the cores, the spinner keeps its core while the thread
# it waits for is descheduled. 300 spins (~1 us) cover an idle barrier's wait, then the thread
# sleeps and its core is free. It only works if it is in the environment before libgomp loads
# (torch's import), hence here; a value the user set is kept. If libgomp was loaded before this
# import, the loop warns once (core/fused_cpu.spin_setting_problem).
_SPIN_FROM_USER = "GOMP_SPINCOUNT" in _os.environ
_GOMP_PRELOADED = _libgomp_loaded()
_os.environ.setdefault("GOMP_SPINCOUNT", "300")

__version__ = "0.1.0"
