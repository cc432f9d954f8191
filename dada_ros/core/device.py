"""Device selection shared by the CLI, the node and training."""

from __future__ import annotations

import torch

from .errors import DadaInputError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available else CPU; 'cuda' without a GPU is an error (callers that
    must keep running, like the node, catch it and fall back to CPU with a warning)."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise DadaInputError(f"unknown device {name!r}; expected one of {', '.join(DEVICES)} (or cuda:N)")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DadaInputError(f"device {name!r} requested but torch sees no CUDA GPU")
    return torch.device(name)


def set_cpu_threads(n: int) -> None:
    """CPU threads for BOTH torch and the fused numba loop, for work run from the calling thread
    (numba's setting is per thread). ``n <= 0`` leaves the defaults.

    Setting only torch's is a trap: the loop's parallel sweep then still uses every core, and two
    such processes on a shared CPU stall each other on every sweep (a training measured 16x slower).
    """
    if n > 0:
        from .fused_cpu import set_numba_threads

        torch.set_num_threads(int(n))
        set_numba_threads(int(n))
