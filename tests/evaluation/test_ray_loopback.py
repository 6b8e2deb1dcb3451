"""A private Ray head stays on this machine and dies with its owner (slow: Ray takes seconds).

Processes and sockets are read from ``/proc`` (Linux): the Ray processes a backend
started are the new descendants of the process that started it, whatever their
process group or session.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

import voidgrad as vg
from tests.evaluation.test_ray_watchdog import alive, descendants, kill_all, wait_until_gone
from voidgrad.evaluation import RayBackend
from voidgrad.evaluation.ray_backend import _PrivateHead

ray = pytest.importorskip("ray")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc (Linux)"),
]


def listening_addresses() -> dict[int, str]:
    """Socket inode -> local address of every listening TCP socket (IPv4 and IPv6)."""
    listening = {}
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] != "0A":  # TCP_LISTEN
                    continue
                raw = bytes.fromhex(fields[1].split(":")[0])
                # The kernel prints each 32-bit word in host (little-endian) order.
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                listening[int(fields[9])] = socket.inet_ntop(family, words)
    return listening


def listeners_of(pids: set[int]) -> list[tuple[int, str]]:
    """(pid, local address) of every listening TCP socket the processes ``pids`` hold."""
    addresses = listening_addresses()
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inode = int(target[len("socket:[") : -1])
                        if inode in addresses:
                            found.append((pid, addresses[inode]))
    return found


def is_loopback(address: str) -> bool:
    parsed = ipaddress.ip_address(address)
    mapped = getattr(parsed, "ipv4_mapped", None)
    return (mapped or parsed).is_loopback


def test_the_address_parser_tells_loopback_from_the_rest() -> None:
    """The helper the next test relies on, on the forms ``/proc/net/tcp6`` shows."""
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.0.2.2")


def test_every_listener_of_a_private_head_is_on_loopback_and_close_stops_it() -> None:
    assert not ray.is_initialized()
    before = descendants(os.getpid())
    backend = RayBackend(workers=1)
    evaluator = vg.Evaluator(lambda row: row.sum(), backend=backend)
    started: set[int] = set()
    try:
        assert torch.equal(evaluator(torch.ones(2, 3)), torch.tensor([3.0, 3.0]))
        started = descendants(os.getpid()) - before
        # This process is Ray's driver: its own Ray listener counts too.
        listeners = listeners_of(started | {os.getpid()})
        assert len(listeners) >= 3, listeners  # GCS, raylet, driver, worker: not vacuous
        assert [(pid, a) for pid, a in listeners if not is_loopback(a)] == []
    finally:
        evaluator.close()
        left = wait_until_gone(started)
        kill_all(left)
    assert not left and not ray.is_initialized()


OWNER = """
import sys, time, torch
from voidgrad.evaluation import RayBackend
from voidgrad.evaluation.ray_backend import _PrivateHead
import voidgrad as vg
evaluator = vg.Evaluator(lambda row: row.sum(), backend=RayBackend(workers=1))
assert evaluator(torch.ones(1, 2)).item() == 2.0
print("ready", flush=True)
time.sleep(600)
"""


def test_a_private_head_dies_with_its_owner() -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER],
        stdout=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        text=True,
    )
    started: set[int] = set()
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "ready"  # EOF ("") if the owner failed
        started = descendants(owner.pid)
        assert len(started) >= 3  # GCS, raylet, a worker at least: the test is not vacuous
        owner.kill()
        owner.wait()
        left = wait_until_gone(started)
        assert not left, {pid: Path(f"/proc/{pid}/comm").read_text().strip() for pid in left}
    finally:
        owner.kill()
        owner.wait()
        kill_all({pid for pid in started if alive(pid)})


def test_a_cluster_joined_by_address_is_left_running() -> None:
    """A head the user started (here on loopback, as a user would) outlives close()."""
    assert not ray.is_initialized()
    with tempfile.TemporaryDirectory(prefix="vg-user-ray-") as temp_dir:
        command = [
            sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
            "--node-ip-address=127.0.0.1", "--port=0", "--num-cpus=1",
            "--include-dashboard=false", "--include-log-monitor=false",
            "--disable-usage-stats", f"--temp-dir={temp_dir}",
        ]  # fmt: skip
        user_head = subprocess.Popen(
            command,
            env={
                # As this process's Ray: a local ray.init earlier in it may have set "token".
                "RAY_AUTH_MODE": "disabled",
                **os.environ,
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        head_processes: set[int] = set()
        try:
            written = Path(temp_dir, "ray_current_cluster")
            deadline = time.monotonic() + 300
            while not (written.exists() and written.read_text().strip()):
                assert user_head.poll() is None
                assert time.monotonic() < deadline
                time.sleep(0.2)
            port = written.read_text().strip().rsplit(":", 1)[1]
            head_processes = descendants(user_head.pid)
            backend = RayBackend(workers=1, address=f"[::ffff:127.0.0.1]:{port}")
            with vg.Evaluator(lambda row: row.sum(), backend=backend) as evaluator:
                assert evaluator(torch.ones(1, 2)).item() == 2.0
            assert not ray.is_initialized()
            assert user_head.poll() is None
            assert all(alive(pid) for pid in head_processes)
        finally:
            head_processes |= descendants(user_head.pid)
            user_head.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                user_head.wait(30)
            kill_all({user_head.pid} | {pid for pid in head_processes if alive(pid)})
            user_head.wait()


def test_a_head_that_fails_to_start_is_a_named_error_and_leaves_nothing_behind() -> None:
    head = _PrivateHead(num_cpus=-1)  # `ray start` refuses a negative CPU count
    try:
        with pytest.raises(vg.WorkerInitError, match=r"stopped before it came up(?s:.*)CPU"):
            head.gcs_port()
    finally:
        head.stop()
    assert not Path(head.temp_dir).exists()


JOIN = """
import sys, ray
ray.init(address=sys.argv[1], log_to_driver=False)
print("joined", ray.cluster_resources().get("CPU"), flush=True)
"""


def join_from_another_process(address: str, environment: dict[str, str]) -> subprocess.Popen[str]:
    """A process that tries to join ``address`` as a driver (prints ``joined`` if it can)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    return subprocess.Popen(
        [sys.executable, "-c", JOIN, address],
        env={**clean, "OMP_NUM_THREADS": "1", **environment},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_private_head_requires_a_token_only_this_user_can_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unless RAY_AUTH_MODE says otherwise, another driver needs the head's token to join."""
    from ray._raylet import AuthenticationMode, get_authentication_mode

    from voidgrad.evaluation.ray_backend import _refresh_auth

    assert not ray.is_initialized()
    with monkeypatch.context() as patch:
        # Unset, as for a user who never heard of it (a local ray.init earlier may have set it).
        patch.delenv("RAY_AUTH_MODE", raising=False)
        environment = dict(os.environ)
        backend = RayBackend(workers=1)
        evaluator = vg.Evaluator(lambda row: row.sum(), backend=backend)
        joiners: list[subprocess.Popen[str]] = []
        try:
            assert torch.equal(evaluator(torch.ones(2, 3)), torch.tensor([3.0, 3.0]))
            assert dict(os.environ) == environment  # set for ray.init only, then restored
            head = backend._head
            assert head is not None and head.token_path is not None
            token = Path(head.token_path)
            assert token.parent == Path(head.temp_dir)
            assert stat.S_IMODE(token.stat().st_mode) == 0o600
            assert stat.S_IMODE(Path(head.temp_dir).stat().st_mode) == 0o700
            assert re.fullmatch(r"[0-9a-f]{64}", token.read_text())
            port = Path(head.ray_dir, "ray_current_cluster").read_text().strip().rsplit(":", 1)[1]
            address = f"[::ffff:127.0.0.1]:{port}"
            # Concurrently: a refused join takes Ray about 20 s of retries.
            joiners = [
                join_from_another_process(address, {"RAY_AUTH_MODE": "disabled"}),
                join_from_another_process(
                    address, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64}
                ),
                join_from_another_process(
                    address, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
                ),
            ]
            results = [joiner.communicate(timeout=300) for joiner in joiners]
            for (out, err), joiner in zip(results[:2], joiners[:2], strict=True):
                assert joiner.returncode != 0 and "joined" not in out, (out, err)
                assert "token" in err.lower(), err  # refused for want of the token
            out, err = results[2]
            assert joiners[2].returncode == 0 and "joined" in out, err  # with it: in
            # This process's own Ray still holds the token: later calls work.
            assert evaluator(torch.ones(1, 2)).item() == 2.0
        finally:
            for joiner in joiners:
                joiner.kill()
                joiner.wait()
            evaluator.close()
        assert not token.exists() and not Path(head.temp_dir).exists()
        assert dict(os.environ) == environment
        # Ray forgot the head's mode and token: back to what the environment says.
        assert get_authentication_mode() == AuthenticationMode.DISABLED
    _refresh_auth()  # as the restored environment says, for the tests that follow
