"""The Fast DDS profile the node's process uses for its own participant (see
``dada_ros/data/fastdds_large_data.xml`` for the measured reason: a large shared-memory segment,
so best-effort subscribers of the node's large outputs do not lose most frames).

Applied only where the user has not configured the middleware: no profiles file or builtin
transport setting in the environment, and Fast DDS as the RMW. It must run before the first
participant of the process is created (``rclpy.init`` / the first node), so ``main`` calls it
first thing.
"""

from __future__ import annotations

import os
from pathlib import Path

PROFILE = Path(__file__).resolve().parents[1] / "data" / "fastdds_large_data.xml"
USER_SETTINGS = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS")


def apply_default_profile(environ: dict | None = None) -> str | None:
    """Point Fast DDS at the shipped profile unless the user configured it; returns why not
    (a short text) or None when applied. ``environ`` defaults to ``os.environ``."""
    env = os.environ if environ is None else environ
    rmw = env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if not rmw.startswith("rmw_fastrtps"):
        return f"RMW {rmw}: middleware settings left as they are"
    given = [k for k in USER_SETTINGS if env.get(k)]
    if given:
        return f"{given[0]} is set: Fast DDS configured by the user"
    if not PROFILE.is_file():
        return f"{PROFILE} missing"
    env["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
    return None
