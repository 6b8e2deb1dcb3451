"""The process backend: a pool of long-lived worker processes on this machine.

Each worker owns one pipe and holds at most one evaluation at a time, so the
parent always knows which row a worker holds. That is what makes failures
recoverable:

- a worker that dies (segfault, ``os._exit``, the OOM killer) is replaced,
  and the row it held is tried again, up to ``retries`` more times;
- an evaluation that runs past ``timeout`` has its worker killed and
  replaced; the row fails with :class:`EvaluationTimeout` (it is not retried:
  a black box that hangs once usually hangs again);
- an exception raised by ``fn`` is sent back and fails only its row.

``fn`` and ``init`` travel with cloudpickle, so functions and lambdas defined
in a script or notebook work. ``fn`` is pickled once per batch and sent to a
worker only when those bytes differ from the ones it last received: a backend
reused by several Evaluators always runs the function each one gives it (a
freed function's ``id`` can be reused, its bytes are compared instead), and a
callable whose state changed between batches runs with its new state. Each
worker evaluates its own copy of a row, so a black box that writes into its
argument cannot change the caller's tensors. Workers pin torch to ``threads`` threads (one
by default: several workers each running a full thread pool oversubscribe
the cores), ignore SIGINT (Ctrl-C is the parent's to handle), and on Linux
die with their parent. ``close()``, garbage collection and interpreter exit
all stop them.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import pickle
import signal
import sys
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

import cloudpickle
import torch

from voidgrad.errors import WorkerInitError
from voidgrad.evaluation.backends import Outcome, Tally
from voidgrad.evaluation.batch import PoolBatch


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no orphans, even after kill -9)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def check_pool_options(
    workers: object, init: object, timeout: object, retries: object, threads: object
) -> None:
    """Validate the options every pooled backend takes; raise naming the bad one."""

    def is_int(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if workers is not None and not (is_int(workers) and workers > 0):  # type: ignore[operator]
        raise ValueError(f"workers must be a positive int or None; got {workers!r}")
    if init is not None and not callable(init):
        raise TypeError(f"init must be callable or None; got {type(init).__name__}")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
    ):
        raise ValueError(f"timeout must be a number of seconds > 0 or None; got {timeout!r}")
    if not (is_int(retries) and retries >= 0):  # type: ignore[operator]
        raise ValueError(f"retries must be a non-negative int; got {retries!r}")
    if not (is_int(threads) and threads > 0):  # type: ignore[operator]
        raise ValueError(f"threads must be a positive int; got {threads!r}")


def _portable_error(error: BaseException) -> BaseException:
    """The exception itself if it pickles, else a RuntimeError carrying its text."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


def _worker_main(conn: Connection, init: bytes | None, threads: int) -> None:
    """Run evaluations sent over ``conn`` until told to stop or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    torch.set_num_threads(threads)
    if init is not None:
        try:
            cloudpickle.loads(init)()
        except Exception as error:
            conn.send_bytes(pickle.dumps(("init_failed", _portable_error(error))))
            return
    conn.send_bytes(pickle.dumps(("ready",)))
    fn: Callable[..., object] | None = None
    while True:
        try:
            message = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if message[0] == "stop":
            return
        _, fn_bytes, index, row, seed = message
        if fn_bytes is not None:
            fn = cloudpickle.loads(fn_bytes)
        assert fn is not None
        kwargs = {} if seed is None else {"seed": seed}
        start = time.perf_counter()
        try:
            value = fn(row, **kwargs)
            reply = pickle.dumps(("done", index, value, None, time.perf_counter() - start))
        except Exception as error:
            reply = pickle.dumps(
                ("done", index, None, _portable_error(error), time.perf_counter() - start)
            )
        conn.send_bytes(reply)


@dataclass
class _Worker:
    process: Any
    conn: Connection
    fn_token: int | None = None
    task: int | None = None
    deadline: float | None = None
    started: float = field(default=0.0)


_POLL = 0.2
"""Longest wait for a worker's event, in seconds (see ``_collect``)."""


def _stop_all(workers: list[_Worker]) -> None:
    """Stop worker processes: politely, then by SIGKILL. Safe to call twice."""
    for worker in workers:
        with contextlib.suppress(OSError, ValueError):
            worker.conn.send_bytes(pickle.dumps(("stop",)))
    deadline = time.monotonic() + 1.0
    for worker in workers:
        worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(timeout=5)
        with contextlib.suppress(OSError):
            worker.conn.close()
    workers.clear()


class ProcessBackend:
    """Evaluates rows in a pool of worker processes; see the module docstring.

    Args:
        workers: number of processes; default: the CPUs this process may use.
        init: called once in each worker (and each replacement) before its
            first evaluation, e.g. to load a scene into a module global.
        timeout: seconds one evaluation may take; ``None``: no limit.
        retries: how many more times a row is tried after its worker died.
        threads: torch threads in each worker.
        start_method: ``"fork"`` (fast start, the default on Linux),
            ``"forkserver"`` or ``"spawn"`` (each worker imports torch anew).

    Examples:
        >>> import torch, voidgrad as vg
        >>> from voidgrad.evaluation import ProcessBackend
        >>> ev = vg.Evaluator(lambda row: row.sum(), backend=ProcessBackend(workers=2))
        >>> ev(torch.arange(8.0).reshape(4, 2))  # rows come back in row order
        tensor([ 1.,  5.,  9., 13.])
        >>> ev.close()
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        init: Callable[[], object] | None = None,
        timeout: float | None = None,
        retries: int = 0,
        threads: int = 1,
        start_method: str | None = None,
    ) -> None:
        check_pool_options(workers, init, timeout, retries, threads)
        if workers is None:
            workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
            workers = workers or os.cpu_count() or 1
        methods = multiprocessing.get_all_start_methods()
        start_method = start_method or ("fork" if "fork" in methods else "spawn")
        if start_method not in methods:
            raise ValueError(f"start_method must be one of {methods}; got {start_method!r}")
        self.workers = workers
        self.timeout = None if timeout is None else float(timeout)
        self.retries = retries
        self.threads = threads
        self._context: Any = multiprocessing.get_context(start_method)
        self._init = None if init is None else cloudpickle.dumps(init)
        self._pool: list[_Worker] = []
        # The pickled fn of the latest batch and a token that names those bytes; a worker that
        # holds the token holds that fn. Tokens only grow, so one never names two functions.
        self._fn_bytes: bytes | None = None
        self._fn_token = 0
        self._finalizer = weakref.finalize(self, _stop_all, self._pool)
        #: Workers started so far, replacements included.
        self.started = 0

    # -- the pool ----------------------------------------------------------------------------

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main, args=(child, self._init, self.threads), daemon=True
        )
        process.start()
        child.close()
        self.started += 1
        return _Worker(process=process, conn=parent, started=time.monotonic())

    def _await_ready(self, worker: _Worker) -> None:
        if not wait([worker.conn, worker.process.sentinel], timeout=600):
            raise WorkerInitError("a worker did not start within 600 s")
        try:
            message = pickle.loads(worker.conn.recv_bytes())
        except (EOFError, OSError):
            raise WorkerInitError(
                f"a worker died while starting (exit code {worker.process.exitcode})"
            ) from None
        if message[0] == "init_failed":
            raise WorkerInitError(f"init raised {message[1]!r} in a worker") from message[1]

    def _ensure_pool(self) -> None:
        fresh = [self._spawn() for _ in range(self.workers - len(self._pool))]
        try:
            for worker in fresh:
                self._await_ready(worker)
        except BaseException:
            _stop_all(fresh)
            raise
        self._pool.extend(fresh)

    def _replace(self, worker: _Worker) -> None:
        """Kill ``worker`` and start another in its place."""
        index = self._pool.index(worker)
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5)
        with contextlib.suppress(OSError):
            worker.conn.close()
        replacement = self._spawn()
        self._pool[index] = replacement
        try:
            self._await_ready(replacement)
        except BaseException:
            self._pool.remove(replacement)
            _stop_all([replacement])
            raise

    # -- evaluation -----------------------------------------------------------------------------

    def _use(self, fn: Callable[..., object]) -> None:
        """Make ``fn``, as it is now, the function that workers run."""
        try:
            fn_bytes = cloudpickle.dumps(fn)
        except Exception as error:
            raise TypeError(
                "fn must be picklable with cloudpickle to run in worker processes; "
                f"pickling it raised {type(error).__name__}: {error}"
            ) from error
        if fn_bytes != self._fn_bytes:
            self._fn_bytes = fn_bytes
            self._fn_token += 1

    def _send(self, worker: _Worker, batch: PoolBatch, X, seeds) -> None:
        payload = None if worker.fn_token == self._fn_token else self._fn_bytes
        index, worker.deadline = batch.take()
        seed = None if seeds is None else seeds[index]
        row = X[index].clone()  # a view would pickle all of X
        worker.conn.send_bytes(pickle.dumps(("eval", payload, index, row, seed)))
        worker.fn_token = self._fn_token
        worker.task = index

    def evaluate(
        self,
        fn: Callable[..., object],
        X: torch.Tensor,
        seeds: Sequence[int] | None,
        *,
        tally: Tally | None = None,
    ) -> list[Outcome]:
        self._use(fn)
        self._ensure_pool()
        batch = PoolBatch(X.shape[0], self.retries, self.timeout, tally)
        try:
            while batch.waiting or any(w.task is not None for w in self._pool):
                for worker in self._pool:
                    if worker.task is None and batch.waiting:
                        self._send(worker, batch, X, seeds)
                self._collect(batch)
        except BaseException:
            # Ctrl-C or an internal error: the pool's state is unknown; start afresh next time.
            # The rows already sent stay in the tally: the Evaluator counts them.
            _stop_all(self._pool)
            raise
        return batch.outcomes()

    def _collect(self, batch: PoolBatch) -> None:
        """Wait for the next event (a result, a death, a timeout) and record it."""
        busy = [w for w in self._pool if w.task is not None]
        deadlines = [w.deadline for w in busy if w.deadline is not None]
        # Wake at least every _POLL seconds: a Ctrl-C that the kernel hands to another thread
        # (torch's, a library's) only sets a flag, which the main thread acts on when it runs.
        wait_for = min([_POLL, *(d - time.monotonic() for d in deadlines)])
        wait_for = max(0.0, wait_for)
        handles = [w.conn for w in busy] + [w.process.sentinel for w in busy]
        ready = set(wait(handles, timeout=wait_for))
        for worker in busy:
            index = worker.task
            assert index is not None
            hung_up = False
            if worker.conn in ready:
                try:
                    _, done, value, error, seconds = pickle.loads(worker.conn.recv_bytes())
                except (EOFError, OSError):
                    hung_up = True  # the worker is dying: handled as a death below
                else:
                    assert done == index
                    batch.finished(index, value, error, seconds)
                    worker.task = worker.deadline = None
                    continue
            if hung_up or worker.process.sentinel in ready or not worker.process.is_alive():
                worker.process.join(timeout=5)
                code = worker.process.exitcode
                worker.task = worker.deadline = None
                self._replace(worker)
                batch.died(index, f"the worker process died (exit code {code})")
            elif worker.deadline is not None and time.monotonic() >= worker.deadline:
                worker.task = worker.deadline = None
                self._replace(worker)
                batch.timed_out(index)

    def close(self) -> None:
        """Stop every worker; a later evaluation starts a fresh pool."""
        _stop_all(self._pool)

    def pids(self) -> list[int]:
        """Process ids of the live workers (for monitoring and tests)."""
        return [w.process.pid for w in self._pool if w.process.is_alive()]

    def __repr__(self) -> str:
        return (
            f"ProcessBackend(workers={self.workers}, timeout={self.timeout}, "
            f"retries={self.retries})"
        )
