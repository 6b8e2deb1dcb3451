"""Run a private Ray head for exactly as long as the process that started it.

:class:`~voidgrad.evaluation.RayBackend` runs this file as a script, by path and
with ``python -I`` (standard library only, so it starts in milliseconds and
needs neither torch nor voidgrad to be importable)::

    python -I _ray_watchdog.py OWNER_PID TEMP_DIR RAY_START_COMMAND...

It starts ``RAY_START_COMMAND`` (``ray start --head --block ...``) in a new
session, which every process of that head inherits: GCS, raylet, agents, and
the workers, which Ray puts in process groups of their own but not in sessions
of their own. It then waits until either

- its parent is no longer ``OWNER_PID`` (the owner died, ``kill -9`` included:
  the watchdog was re-parented), or
- it receives SIGTERM (``RayBackend.close()``), or
- the head exits by itself,

and then stops the head: SIGTERM to ``ray start`` (Ray's own ordered shutdown),
SIGKILL to whatever is left of the session after a grace period (Ray's dashboard
and runtime-env agents otherwise outlive their raylet by about a minute), and
removes ``TEMP_DIR``, the head's private temporary directory.

POSIX only (sessions and process groups). The session's members are found in
``/proc`` (Linux); elsewhere only the head's process group is killed, and
Ray's workers, in groups of their own, end by themselves once their raylet has.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time

#: How often the owner is checked: the longest a dead owner's head goes unnoticed.
POLL_SECONDS = 0.2
#: How long ``ray start`` gets to shut its processes down before they are killed.
GRACE_SECONDS = 10.0


def session_members(session: int) -> list[int]:
    """Live (non-zombie) processes of ``session``, read from ``/proc``.

    Empty where there is no ``/proc``; :func:`kill_session` then falls back to
    the head's process group, which misses only the workers.
    """
    members = []
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as stat:
                    # After the command name in parentheses: state ppid pgrp session ...
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:  # the process ended while we looked
                continue
            if fields[0] != "Z" and int(fields[3]) == session:
                members.append(int(name))
    return members


def kill_session(session: int) -> None:
    """SIGKILL every process of ``session`` (the head's session: no one else is in it).

    A session id is not reused while any process of the session is alive, so
    this cannot hit an unrelated process.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(session, signal.SIGKILL)
    for _ in range(50):  # a process may fork while we kill; a few rounds settle it
        members = session_members(session)
        if not members:
            return
        for pid in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def stop(head: subprocess.Popen[bytes], temp_dir: str) -> None:
    """Stop the head and everything it started, then remove its temporary directory."""
    if head.poll() is None:
        head.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(GRACE_SECONDS)
    kill_session(head.pid)
    head.wait()
    shutil.rmtree(temp_dir, ignore_errors=True)


def main(argv: list[str]) -> int:
    """Start the head, wait for the owner to die or ask to stop, stop the head."""
    owner, temp_dir, command = int(argv[0]), argv[1], argv[2:]
    stop_requested: list[int] = []  # filled by the SIGTERM handler; a flag without globals
    signal.signal(signal.SIGTERM, lambda signum, frame: stop_requested.append(signum))
    head = subprocess.Popen(command, start_new_session=True)
    try:
        while not stop_requested and os.getppid() == owner and head.poll() is None:
            time.sleep(POLL_SECONDS)
    finally:
        stop(head, temp_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
