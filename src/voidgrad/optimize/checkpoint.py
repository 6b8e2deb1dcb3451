"""Checkpoints moved to :mod:`voidgrad.run.checkpoint`, with the run loop that writes them.

This module keeps the names users import from here working.
"""

from voidgrad.run.checkpoint import (
    FORMAT,
    CheckpointError,
    fingerprint,
    load_checkpoint,
    save_checkpoint,
)

__all__ = ["FORMAT", "CheckpointError", "fingerprint", "load_checkpoint", "save_checkpoint"]
