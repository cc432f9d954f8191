"""Packaging tests: dada_ros built from a clean clone and installed WITHOUT the editable install.

The dev .venv holds ``pip install -e .``, which finds the source tree: every other test passes even
when a built wheel or an ament_python install lacks modules. These tests build and install the
committed package and run it from outside the source tree. Select them with ``pytest -m packaging``.

What is built (``DADA_PACKAGING_SOURCE``):
    head      (default) ``git clone`` of this repository's committed HEAD: uncommitted changes are NOT
              seen; commit first
    worktree  a copy of the working tree's tracked and untracked-not-ignored files (for developing
              a packaging change before committing it)
"""

from __future__ import annotations

import sys
from pathlib import Path

# importlib import mode (setup.cfg) does not put test folders on sys.path: the helpers here and the
# ROS test harness (message builders) are imported by name.
HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent / "ros"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
