"""Atomic checkpoints that load with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only, so
loading it cannot run code. It is written to a temporary file in the same
directory, flushed to disk, then renamed over the old one: a run killed at any
moment leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The state saved at ``path``, or None if there is no checkpoint yet."""
    target = Path(path)
    if not target.exists():
        return None
    state = torch.load(target, weights_only=True)
    if not isinstance(state, dict) or "format" not in state:
        raise ValueError(f"{target} is not a voidgrad checkpoint")
    return state


def check_same_run(
    saved: dict[str, Any], header: dict[str, Any], path: str | os.PathLike[str] | None
) -> None:
    """Raise unless ``saved`` was written by a run with the same ``header`` (its identity)."""
    for key, value in header.items():
        if saved.get(key) != value:
            raise ValueError(
                f"the checkpoint {path} belongs to another run ({key}={saved.get(key)!r}, this "
                f"run has {key}={value!r}); use another path or delete it"
            )


def bytes_to_tensor(data: bytes) -> torch.Tensor:
    """Opaque bytes (an optimizer's own serialized state) as a uint8 tensor."""
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()


def tensor_to_bytes(tensor: torch.Tensor) -> bytes:
    return bytes(tensor.numpy().tobytes())
