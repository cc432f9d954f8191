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
