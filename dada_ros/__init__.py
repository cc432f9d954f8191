"""dada_ros: guided depth super-resolution by deep anisotropic diffusion (DADA) for ROS 2.

The ``core`` subpackage is free of ROS imports (torch + numpy + OpenCV) and can be used from
plain Python; ``ros`` holds the rclpy node and ``cli`` the command-line entry points.
"""

import os as _os

# Sharing a busy CPU (benchmarks/contention.py, doc/method.md "Sharing the CPU"): the fused loop
# is one OpenMP parallel sweep per application (~0.2-0.4 ms at 640x480), so a solve has 150-300
# barriers. libgomp's default lets a thread that reached a barrier SPIN up to 300000 times before
# it sleeps: with another busy process on the cores, the spinner keeps its core while the thread
# it waits for is descheduled, and every barrier becomes a scheduler time slice (measured on 2
# cores, one busy process: up to 8.5x slower solves, 5.9x with two). 300 spins (~1 us) cover an
# idle barrier's wait and then sleep, so a waiting core is free for the thread it waits for:
# idle time unchanged, 1.8-1.9x with one busy process, 1.9-3.1x with two. It must be in the
# environment before libgomp loads (torch's import), hence here; a value the user set is kept.
_os.environ.setdefault("GOMP_SPINCOUNT", "300")

__version__ = "0.1.0"
