"""The watchdog that owns a private Ray head, with a stand-in head (fast: no Ray needed).

The stand-in does what matters of ``ray start --head --block``: it starts a worker in
a process group of its own, as Ray starts its workers, and waits. Processes are read
from ``/proc`` (Linux); the helpers here also serve ``test_ray_loopback.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from voidgrad.evaluation.ray_backend import _WATCHDOG

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")

#: Generous: a private head is gone about 2 s after its owner; Ray's own agents take a minute.
GONE_WITHIN_SECONDS = 30.0


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has finished: only its exit status is left)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def descendants(root: int) -> set[int]:
    """Every live process below ``root`` in the process tree."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return {pid for pid in found if alive(pid)}


def wait_until_gone(pids: set[int]) -> set[int]:
    """Poll until none of ``pids`` runs, or the generous bound passes; what still runs."""
    deadline = time.monotonic() + GONE_WITHIN_SECONDS
    while {pid for pid in pids if alive(pid)} and time.monotonic() < deadline:
        time.sleep(0.2)
    return {pid for pid in pids if alive(pid)}


def kill_all(pids: set[int]) -> None:
    """Clean up after a failed test: these are processes this test started."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


#: A stand-in head: one worker in a process group of its own, then wait.
HEAD = (
    "import subprocess, sys, time;"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], process_group=0);"
    "time.sleep(600)"
)

#: An owner that starts the watchdog (argv: the temporary directory), then waits to be killed.
OWNER = f"""
import os, subprocess, sys, time
watchdog = [sys.executable, "-I", {str(_WATCHDOG)!r}, str(os.getpid()), sys.argv[1]]
subprocess.Popen(watchdog + [sys.executable, "-c", {HEAD!r}])
time.sleep(600)
"""


def wait_for_descendants(root: int, count: int) -> set[int]:
    """The live descendants of ``root`` once there are ``count`` (bounded wait)."""
    deadline = time.monotonic() + GONE_WITHIN_SECONDS
    while len(found := descendants(root)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(found) == count, found
    return found


def test_the_head_and_its_worker_die_with_the_owner_and_the_directory_goes() -> None:
    temp_dir = tempfile.mkdtemp(prefix="vg-watchdog-test-")
    owner = subprocess.Popen([sys.executable, "-c", OWNER, temp_dir])
    started: set[int] = set()
    try:
        started = wait_for_descendants(owner.pid, 3)  # watchdog, head, worker
        owner.kill()
        owner.wait()
        assert wait_until_gone(started) == set()
        assert not Path(temp_dir).exists()
    finally:
        owner.kill()
        owner.wait()
        kill_all({pid for pid in started if alive(pid)})


def test_sigterm_stops_the_head_and_its_worker_and_the_watchdog_exits() -> None:
    """What ``RayBackend.close()`` does: terminate the watchdog and wait for it."""
    temp_dir = tempfile.mkdtemp(prefix="vg-watchdog-test-")
    command = [sys.executable, "-I", str(_WATCHDOG), str(os.getpid()), temp_dir]
    watchdog = subprocess.Popen([*command, sys.executable, "-c", HEAD])
    started: set[int] = set()
    try:
        started = wait_for_descendants(watchdog.pid, 2)  # head, worker
        watchdog.terminate()
        assert watchdog.wait(timeout=GONE_WITHIN_SECONDS) == 0
        assert {pid for pid in started if alive(pid)} == set()  # gone before the wait returned
        assert not Path(temp_dir).exists()
    finally:
        watchdog.kill()
        watchdog.wait()
        kill_all({pid for pid in started if alive(pid)})
