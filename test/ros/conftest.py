"""Fixtures of the ROS tests: one rclpy context per test module (real middleware)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from dada_ros.ros.transport_profile import apply_default_profile

# What upsample_node's main() does first: the in-process nodes of the tests get the same
# middleware settings as the installed node. Subprocess peers (fake_camera) drop it unless a
# test gives it to them (a driver does not have it).
PROFILE_NOTE = apply_default_profile()

# The tests import their helpers as `ros_harness`; pytest runs in importlib mode (setup.cfg),
# which does not put test folders on sys.path, so do it here.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="module")
def ros_context():
    pytest.importorskip("rclpy", reason="ROS 2 (rclpy) wheels not installed")
    import rclpy

    from ros_harness import init_context

    torch.set_num_threads(1)  # the test machine is shared; the node's torch_threads is 1 too
    ctx = init_context()
    yield ctx
    rclpy.shutdown(context=ctx)
