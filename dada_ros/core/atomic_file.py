"""Atomic file replacement: write beside the target under a name of this writer's own, then rename.

Readers never see a half-written file (a crash leaves the old one), and two writers of the same
target (two training runs sharing a scene cache, a replay and its report) cannot rename each
other's half-written file, which a shared tmp name allows.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a tmp path next to ``path`` (same suffix, so ``np.savez`` adds none); when the block
    succeeds it replaces ``path``; whatever happens, the tmp file does not outlive the block."""
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
