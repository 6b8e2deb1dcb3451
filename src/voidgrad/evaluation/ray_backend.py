"""The Ray backend: the process backend's contract on a Ray cluster.

Long-lived actors, one evaluation in flight per actor, so that set-up
(``init``) is paid once per actor and a failure is attributable to its row:

- an actor that dies (segfault, ``os._exit``, a lost node) is replaced and
  its row tried again, up to ``retries`` more times;
- an evaluation past ``timeout`` has its actor killed and replaced; the row
  fails with :class:`~voidgrad.EvaluationTimeout` (not retried);
- an exception raised by ``fn`` comes back and fails only its row.

``address=None`` starts a private Ray head on this machine and stops it on
``close()``; an address (``"auto"``, ``"ray://head:10001"``) joins an existing
cluster, which ``close()`` leaves running. Ray is optional:
``pip install voidgrad[ray]``.

The private head stays on this machine and dies with its owner:

- Every TCP listener it opens (GCS, raylet, workers, runtime-env agent, and
  this process's own Ray driver) is bound to 127.0.0.1. Ray binds its
  listeners to loopback only when its node address is ``127.0.0.1``, and on
  Linux ``ray.init`` rewrites that address to the machine's routable one
  unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` was set before ``ray`` was
  imported; so the head runs in its own process (``ray start --head``) with
  that variable in its environment only, and this process connects to it as
  a driver. Ray's dashboard is not started; its dashboard agent listens on no
  TCP port. Nothing is left on the routable address (see
  ``docs/guide/wrapping.md`` for what ``ss -ltnp`` shows).
- Its Unix sockets, logs and session files live in a private temporary
  directory (mode 0700), removed when the head stops; nothing is written to
  ``/tmp/ray``, so ``address="auto"`` elsewhere never finds this head. (Ray
  makes the directory it is given world-writable, so it is given a
  subdirectory of the private one.)
- It requires a token: when ``RAY_AUTH_MODE`` is not set, the head runs with
  ``RAY_AUTH_MODE=token`` and a fresh random token (``secrets.token_hex(32)``)
  in a file of mode 0600 inside that 0700 directory, so that another local
  user cannot join it. This process presents the token while ``ray.init``
  connects: Ray reads the mode and the token when asked (``RayConfig`` and
  ``AuthenticationTokenLoader``, both refreshed here) and keeps them until
  they are refreshed again, so ``RAY_AUTH_MODE`` and ``RAY_AUTH_TOKEN_PATH``
  are set only for the duration of the call (other threads of this process
  see them meanwhile) and then restored; ``close()`` refreshes both again
  from the restored environment. A ``RAY_AUTH_MODE`` set in the environment
  is followed as it is (``token``: both sides use Ray's usual token, as for
  any cluster; ``disabled``: no token).
- A watchdog process owns the head: it stops the head's whole process
  session (workers and agents included) and removes its directory when this
  process exits, ``close()`` is called, or this process is killed (``kill
  -9`` included; noticed within 0.2 s). A cluster joined by address is never
  stopped.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from voidgrad.errors import WorkerInitError
from voidgrad.evaluation.backends import Outcome, Tally
from voidgrad.evaluation.batch import PoolBatch
from voidgrad.evaluation.process import check_pool_options


def import_ray() -> Any:
    """The ``ray`` module, or an ImportError that says what to install."""
    try:
        import ray
    except ImportError as error:
        raise ImportError(
            "backend='ray' needs Ray, which is optional: pip install 'voidgrad[ray]'"
        ) from error
    return ray


class _Evaluations:
    """The actor body: set up once, then evaluate rows one at a time."""

    def __init__(self, init: Callable[[], object] | None, threads: int) -> None:
        torch.set_num_threads(threads)
        if init is not None:
            init()

    def ready(self) -> bool:
        return True

    def run(
        self, fn: Callable[..., object], row: torch.Tensor, seed: int | None
    ) -> tuple[object, BaseException | None, float]:
        kwargs = {} if seed is None else {"seed": seed}
        start = time.perf_counter()
        try:
            return fn(row, **kwargs), None, time.perf_counter() - start
        except Exception as error:  # failures are data: the Evaluator applies the policy
            return None, error, time.perf_counter() - start


@dataclass
class _Actor:
    handle: Any
    task: int | None = None
    ref: Any = None
    deadline: float | None = None


#: The watchdog script that runs a private head (standard library only; see its docstring).
_WATCHDOG = Path(__file__).with_name("_ray_watchdog.py")
#: Seconds a private head may take to start: about 6 s on an idle machine, far more on a busy one.
_START_SECONDS = 300.0
#: What the private head's processes need in their environment, and only they.
_HEAD_ENVIRONMENT = {
    # Keep the node address 127.0.0.1 instead of rewriting it to the routable address:
    # Ray binds GCS, raylet, worker and agent listeners to loopback only for that address.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # Stop at once on SIGTERM instead of first waiting up to 30 s for the node to drain.
    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
}
#: The environment variables Ray's token authentication reads.
_AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def _token_auth_supported() -> bool:
    """Whether this Ray has token authentication with the refreshable state used here."""
    raylet = importlib.import_module("ray._raylet")  # not in its type stubs: looked up
    return hasattr(raylet, "AuthenticationTokenLoader") and hasattr(raylet, "Config")


def _refresh_auth() -> None:
    """Make this process's Ray read its authentication mode and token from the environment again.

    Ray caches the mode in ``RayConfig`` (read when ``ray`` is imported) and the token in
    the ``AuthenticationTokenLoader`` singleton (read when first needed). The config is
    refreshed first: a Ray thread that reloads the token in between then sees the new mode
    (Ray's own ``reset_auth_token_state`` does the same, in the same order).
    """
    raylet = importlib.import_module("ray._raylet")
    raylet.Config.initialize("")
    raylet.AuthenticationTokenLoader.instance().reset_cache()


@contextlib.contextmanager
def _presenting_token(token_path: str | None) -> Iterator[None]:
    """Make this process's Ray use the private head's token, with the environment as it was after.

    ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH`` are set (and ``RAY_AUTH_TOKEN``,
    which would take precedence, hidden) only while the block runs: ``ray.init`` reads
    them when it connects, and the core worker it starts keeps what it read. Without a
    token path, nothing is changed.
    """
    if token_path is None:
        yield
        return
    saved = {name: os.environ.get(name) for name in _AUTH_VARIABLES}
    os.environ.pop("RAY_AUTH_TOKEN", None)
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = token_path
    try:
        _refresh_auth()
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _PrivateHead:
    """A Ray head on loopback, run by a watchdog that stops it when its owner goes.

    The head (``ray start --head --block``) is a child of the watchdog, which is a
    child of this process; see ``_ray_watchdog.py`` for how the head is stopped.
    """

    def __init__(self, num_cpus: int) -> None:
        self.owner = os.getpid()
        #: Private (0700) and kept so: Ray makes its own temporary directory world-writable
        #: (0777), so that is ``ray_dir``, inside this one, which nobody else can enter.
        self.temp_dir = tempfile.mkdtemp(prefix="voidgrad-ray-")
        self.ray_dir = os.path.join(self.temp_dir, "ray")
        # Anonymous, so that it outlives the directory the watchdog removes on a failed
        # start; open as long as the head runs (closed by stop()), hence no `with`.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        environment = {**os.environ, **_HEAD_ENVIRONMENT}
        #: The head's token file (0600, in the 0700 directory), or None: the user's mode is used.
        self.token_path: str | None = None
        if "RAY_AUTH_MODE" not in os.environ and _token_auth_supported():
            self.token_path = self._write_token()
            environment.pop("RAY_AUTH_TOKEN", None)  # it would take precedence over the file
            environment.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=self.token_path)
        else:  # the user's mode (or a Ray without token authentication), as it is
            environment.setdefault("RAY_AUTH_MODE", "disabled")
        head = [
            sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
            "--node-ip-address=127.0.0.1", "--port=0", f"--num-cpus={num_cpus}",
            "--include-dashboard=false", "--include-log-monitor=false",
            "--disable-usage-stats", f"--temp-dir={self.ray_dir}",
        ]  # fmt: skip
        self._watchdog = subprocess.Popen(
            [sys.executable, "-I", str(_WATCHDOG), str(self.owner), self.temp_dir, *head],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Out of the terminal's process group: Ctrl-C goes to the driver, which
            # decides whether to close; the head is stopped by the watchdog only.
            start_new_session=True,
        )

    def _write_token(self) -> str:
        """A fresh random token in a new file that only this user can read; its path."""
        path = os.path.join(self.temp_dir, "auth_token")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        descriptor = os.open(path, flags, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32))
        return path

    def gcs_port(self) -> int:
        """Wait for the head to come up; the port of its GCS, or a WorkerInitError."""
        written = Path(self.ray_dir, "ray_current_cluster")  # by `ray start`, once it is up
        deadline = time.monotonic() + _START_SECONDS
        while time.monotonic() < deadline and self._watchdog.poll() is None:
            with contextlib.suppress(FileNotFoundError):
                # Exactly 127.0.0.1: anything else (or a half-written file) is not ready.
                found = re.fullmatch(r"127\.0\.0\.1:(\d+)\s*", written.read_text())
                if found:
                    return int(found.group(1))
            time.sleep(0.1)
        if self._watchdog.poll() is None:
            what = f"did not come up within {_START_SECONDS:g} s"
        else:
            what = "stopped before it came up"
        raise WorkerInitError(f"the local Ray head {what}; `ray start` said:\n{self._output()}")

    def _output(self, limit: int = 4000) -> str:
        """The end of what the watchdog and `ray start` wrote (read without moving their offset)."""
        size = os.fstat(self._log.fileno()).st_size
        start = max(0, size - limit)
        return os.pread(self._log.fileno(), size - start, start).decode(errors="replace")

    def stop(self) -> None:
        """Stop the head and wait for the watchdog to finish (at most its grace period)."""
        if os.getpid() != self.owner:  # a forked child's copy: the head is not its own
            return
        if self._watchdog.poll() is None:
            self._watchdog.terminate()
        self._watchdog.wait()
        self._log.close()


def _driver_address(ray: Any, port: int) -> str:
    """The private head's GCS address, written so that ``ray.init`` keeps it on loopback.

    ``ray.init`` replaces ``127.0.0.1``, ``localhost`` and ``::1`` in an address by what
    ``ray.util.get_node_ip_address()`` reports: the routable address on Linux, where the
    head does not listen. The IPv4-mapped IPv6 form names the same loopback socket and is
    left as it is; plain ``127.0.0.1`` is used where Ray keeps loopback (macOS, Windows,
    or ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` set before ``ray`` was imported).
    """
    if ray.util.get_node_ip_address() == "127.0.0.1":
        return f"127.0.0.1:{port}"
    return f"[::ffff:127.0.0.1]:{port}"


def _shutdown(
    ray: Any, actors: list[_Actor], owns_runtime: bool, head: _PrivateHead | None = None
) -> None:
    for actor in actors:
        with contextlib.suppress(Exception):  # an actor already gone, or Ray shut down
            ray.kill(actor.handle)
    actors.clear()
    if owns_runtime and ray.is_initialized():
        ray.shutdown()
    if head is not None:
        if head.token_path is not None and os.getpid() == head.owner:
            # Forget the head's token before its file goes, so that a later ray.init in
            # this process reads the mode and token its environment names.
            _refresh_auth()
        head.stop()


class RayBackend:
    """Evaluates rows on Ray actors; see the module docstring.

    Args:
        workers: number of actors; default: the cluster's CPUs.
        init: called once in each actor (and each replacement) before its
            first evaluation.
        timeout: seconds one evaluation may take; ``None``: no limit.
        retries: how many more times a row is tried after its actor died.
        address: ``None`` for a private head on this machine (loopback only, joined with
            a token of its own unless ``RAY_AUTH_MODE`` is set, stopped with this backend
            or its process; see the module docstring), else the cluster to join.
        threads: torch threads in each actor.

    Examples:
        Two actors on a local runtime (``address="auto"`` would join a running
        cluster instead); this example runs in ``tests/evaluation/test_ray.py``,
        since starting Ray takes seconds:

        >>> import torch, voidgrad as vg
        >>> from voidgrad.evaluation import RayBackend
        >>> backend = RayBackend(workers=2, timeout=60, retries=1)
        >>> with vg.Evaluator(lambda row: row.sum(), backend=backend) as evaluator:
        ...     evaluator(torch.arange(6.0).reshape(3, 2)).tolist()
        [1.0, 5.0, 9.0]
        >>> backend.started
        2
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        init: Callable[[], object] | None = None,
        timeout: float | None = None,
        retries: int = 0,
        address: str | None = None,
        threads: int = 1,
    ) -> None:
        check_pool_options(workers, init, timeout, retries, threads)
        if address is not None and not isinstance(address, str):
            raise TypeError(f"ray_address must be a string or None; got {type(address).__name__}")
        self._ray = import_ray()
        self.workers = workers
        self.init = init
        self.timeout = None if timeout is None else float(timeout)
        self.retries = retries
        self.address = address
        self.threads = threads
        self._actors: list[_Actor] = []
        self._owns_runtime = False
        self._head: _PrivateHead | None = None
        self._remote_class: Any = None
        self._finalizer: weakref.finalize | None = None
        #: Actors started so far, replacements included.
        self.started = 0

    def _connect(self) -> None:
        ray = self._ray
        self._owns_runtime = not ray.is_initialized()
        if self._owns_runtime and self.address is None:
            self._head = self._start_private_head()
        elif self._owns_runtime:
            ray.init(address=self.address, log_to_driver=False)
        if self.workers is None:
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote_class = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(
            _Evaluations
        )
        self._finalizer = weakref.finalize(
            self, _shutdown, ray, self._actors, self._owns_runtime, self._head
        )

    def _start_private_head(self) -> _PrivateHead:
        """Start a private head on loopback and connect this process to it as its driver."""
        head = _PrivateHead(num_cpus=max(os.cpu_count() or 1, self.workers or 1))
        try:
            address = _driver_address(self._ray, head.gcs_port())
            try:
                with _presenting_token(head.token_path):
                    self._ray.init(address=address, log_to_driver=False, configure_logging=False)
            except Exception as error:
                raise WorkerInitError(
                    f"could not connect to the local Ray head at {address}: {error}"
                ) from error
        except BaseException:
            if head.token_path is not None:
                if self._ray.is_initialized():
                    self._ray.shutdown()
                _refresh_auth()
            head.stop()
            raise
        return head

    def _spawn(self) -> _Actor:
        handle = self._remote_class.remote(self.init, self.threads)
        self.started += 1
        return _Actor(handle=handle)

    def _await_ready(self, actors: list[_Actor]) -> None:
        try:
            self._ray.get([actor.handle.ready.remote() for actor in actors], timeout=600)
        except Exception as error:
            raise WorkerInitError(f"a Ray actor failed to start: {error}") from error

    def _ensure_pool(self) -> None:
        if self._remote_class is None:
            self._connect()
        assert self.workers is not None
        missing = self.workers - len(self._actors)
        free = self._ray.available_resources().get("CPU", 0.0)
        if missing > free:
            raise WorkerInitError(
                f"{missing} Ray actors of one CPU each do not fit: the cluster has {free:g} CPUs "
                "free; ask for fewer workers or close other evaluators"
            )
        fresh = [self._spawn() for _ in range(missing)]
        if fresh:
            try:
                self._await_ready(fresh)
            except BaseException:
                _shutdown(self._ray, fresh, owns_runtime=False)
                raise
        self._actors.extend(fresh)

    def _replace(self, actor: _Actor) -> None:
        with contextlib.suppress(Exception):  # already dead
            self._ray.kill(actor.handle)
        replacement = self._spawn()
        self._actors[self._actors.index(actor)] = replacement
        self._await_ready([replacement])

    def evaluate(
        self,
        fn: Callable[..., object],
        X: torch.Tensor,
        seeds: Sequence[int] | None,
        *,
        tally: Tally | None = None,
    ) -> list[Outcome]:
        ray = self._ray
        self._ensure_pool()
        fn_ref = ray.put(fn)
        # The rows sent stay in the tally if Ctrl-C interrupts the batch: the Evaluator counts them.
        batch = PoolBatch(X.shape[0], self.retries, self.timeout, tally)
        try:
            while batch.waiting or any(a.task is not None for a in self._actors):
                for actor in self._actors:
                    if actor.task is None and batch.waiting:
                        index, actor.deadline = batch.take()
                        seed = None if seeds is None else seeds[index]
                        actor.ref = actor.handle.run.remote(fn_ref, X[index].clone(), seed)
                        actor.task = index
                self._collect(batch)
        except BaseException:
            _shutdown(ray, self._actors, owns_runtime=False)
            raise
        return batch.outcomes()

    def _collect(self, batch: PoolBatch) -> None:
        ray = self._ray
        busy = [a for a in self._actors if a.task is not None]
        deadlines = [a.deadline for a in busy if a.deadline is not None]
        wait_for = None if not deadlines else max(0.0, min(deadlines) - time.monotonic())
        ready, _ = ray.wait([a.ref for a in busy], num_returns=1, timeout=wait_for)
        ready_ids = {ref.hex() for ref in ready}
        for actor in busy:
            index = actor.task
            assert index is not None
            if actor.ref.hex() in ready_ids:
                actor.task = actor.deadline = None
                try:
                    value, error, seconds = ray.get(actor.ref)
                except ray.exceptions.RayActorError as died:
                    self._replace(actor)
                    batch.died(index, f"the Ray actor died: {type(died).__name__}")
                else:
                    batch.finished(index, value, error, seconds)
            elif actor.deadline is not None and time.monotonic() >= actor.deadline:
                actor.task = actor.deadline = None
                self._replace(actor)
                batch.timed_out(index)

    def close(self) -> None:
        """Kill the actors; disconnect from Ray and stop the head if this backend started them."""
        if self._finalizer is not None:
            self._finalizer()
        self._remote_class = None
        self._head = None

    def __repr__(self) -> str:
        return (
            f"RayBackend(workers={self.workers}, timeout={self.timeout}, retries={self.retries}, "
            f"address={self.address!r})"
        )
