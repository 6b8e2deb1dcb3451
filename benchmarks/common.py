"""What every benchmark records next to its numbers: versions, machine, date, command."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

import voidgrad as vg


def git_commit() -> str | None:
    """The repository's HEAD commit, if this runs from a git checkout."""
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip() or None


def run_metadata(benchmark: str, measures: str, **settings: Any) -> dict[str, Any]:
    """The metadata block of a benchmark's JSON: what ran, where, when, with which settings."""
    return {
        "benchmark": benchmark,
        "measures": measures,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
        "voidgrad_version": vg.__version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": list(os.getloadavg()),
        "settings": settings,
    }
