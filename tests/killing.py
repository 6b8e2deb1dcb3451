"""Kill -9 a run mid-way: the helper the resume-after-SIGKILL tests share.

Each test's script runs a job with a checkpoint and saves its result; the
test starts it, kills it with SIGKILL once the checkpoint shows enough steps,
resumes it, and compares with an uninterrupted run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch


def start_script(
    script: str, checkpoint: str, out: Path, delay: float = 0.0, **environment: str
) -> subprocess.Popen[bytes]:
    """Run ``script`` with arguments ``checkpoint`` ("-" for none) and ``out``, on one thread.

    ``delay`` (the script's ``DELAY``) slows the run that is to be killed.
    """
    env = {**os.environ, "DELAY": str(delay), "OMP_NUM_THREADS": "1", **environment}
    return subprocess.Popen([sys.executable, "-c", script, checkpoint, str(out)], env=env)


def kill_after(
    process: subprocess.Popen[bytes], checkpoint: Path, steps: int, timeout: float = 120
) -> dict[str, Any]:
    """SIGKILL ``process`` once its checkpoint holds ``steps`` steps; the loop state it left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = torch.load(checkpoint, weights_only=True) if checkpoint.exists() else None
        if state is not None and state["loop"]["step"] >= steps:
            break
        time.sleep(0.05)
    process.kill()
    process.wait(timeout=30)
    return torch.load(checkpoint, weights_only=True)["loop"]
