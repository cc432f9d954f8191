"""Helpers shared by the command-line tools: one-line errors, no tracebacks for user mistakes."""

from __future__ import annotations

import json
import sys
from typing import Callable

from ..core.allocator import retain_freed_memory
from ..core.errors import DadaInputError


def run_cli(prog: str, main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Call ``main``; a :class:`DadaInputError` or I/O error becomes one line on stderr, exit 2.
    The process keeps its freed frame buffers (:func:`~dada_ros.core.allocator.retain_freed_memory`)."""
    retain_freed_memory()
    try:
        return main(argv)
    except (DadaInputError, OSError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def write_json(path: str, data: dict) -> None:
    try:
        with open(path, "w") as fh:
            json.dump(data, fh, indent=2, default=float)
    except OSError as exc:
        raise DadaInputError(f"cannot write {path}: {exc}") from exc
