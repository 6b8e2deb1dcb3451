"""What every benchmark records next to its numbers: versions, machine, date, command."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

import voidgrad as vg


def _git(*arguments: str) -> str | None:
    """The stripped output of ``git ARGUMENTS`` run in this folder; None if git fails."""
    try:
        completed = subprocess.run(
            ["git", *arguments],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip()


def git_commit() -> str | None:
    """The repository's HEAD commit, if this runs from a git checkout."""
    return _git("rev-parse", "HEAD") or None


def git_dirty() -> bool | None:
    """Whether the working tree differs from HEAD (the numbers then depend on it).

    Untracked files do not count. None if git is unavailable or this is no checkout.
    """
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


def _within_checkout(path: str) -> str:
    """``path`` relative to the repository when inside it: results name no machine's folders."""
    root = Path(__file__).resolve().parent.parent
    try:
        return Path(os.path.normpath(os.path.abspath(path))).relative_to(root).as_posix()
    except ValueError:
        return Path(path).name


def run_metadata(benchmark: str, measures: str, **settings: Any) -> dict[str, Any]:
    """The metadata block of a benchmark's JSON: what ran, where, when, with which settings."""
    return {
        "benchmark": benchmark,
        "measures": measures,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": [_within_checkout(sys.executable), *sys.argv],
        "voidgrad_version": vg.__version__,
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": list(os.getloadavg()),
        "settings": settings,
    }


def write_results(
    out: Path, benchmark: str, measures: str, results: list[Any], **settings: Any
) -> Path:
    """Write ``{"metadata": ..., "results": results}`` to ``out/<benchmark>.json``; print where."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{benchmark}.json"
    metadata = run_metadata(benchmark, measures, **settings)
    path.write_text(json.dumps({"metadata": metadata, "results": results}, indent=2))
    print(f"wrote {path}")
    return path
