"""The Ray backend: the process backend's contract on a Ray cluster.

Long-lived actors, one evaluation in flight per actor, so that set-up
(``init``) is paid once per actor and a failure is attributable to its row:

- an actor that dies (segfault, ``os._exit``, a lost node) is replaced and
  its row tried again, up to ``retries`` more times;
- an evaluation past ``timeout`` has its actor killed and replaced; the row
  fails with :class:`~voidgrad.EvaluationTimeout` (not retried);
- an exception raised by ``fn`` comes back and fails only its row.

``address=None`` starts a local Ray runtime (and shuts it down on
``close()``); an address (``"auto"``, ``"ray://head:10001"``) joins an
existing cluster, which ``close()`` leaves running. Ray is optional:
``pip install voidgrad[ray]``.
"""

from __future__ import annotations

import contextlib
import os
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from voidgrad.errors import WorkerInitError
from voidgrad.evaluation.backends import Outcome
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


def _shutdown(ray: Any, actors: list[_Actor], owns_runtime: bool) -> None:
    for actor in actors:
        with contextlib.suppress(Exception):  # an actor already gone, or Ray shut down
            ray.kill(actor.handle)
    actors.clear()
    if owns_runtime and ray.is_initialized():
        ray.shutdown()


class RayBackend:
    """Evaluates rows on Ray actors; see the module docstring.

    Args:
        workers: number of actors; default: the cluster's CPUs.
        init: called once in each actor (and each replacement) before its
            first evaluation.
        timeout: seconds one evaluation may take; ``None``: no limit.
        retries: how many more times a row is tried after its actor died.
        address: ``None`` for a local runtime, else the cluster to join.
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
        self._remote_class: Any = None
        self._finalizer: weakref.finalize | None = None
        #: Actors started so far, replacements included.
        self.started = 0

    def _connect(self) -> None:
        ray = self._ray
        if not ray.is_initialized():
            # Keep a local runtime on loopback and quiet; joining a cluster needs neither.
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            if self.address is None:
                cpus = max(os.cpu_count() or 1, self.workers or 1)
                ray.init(
                    num_cpus=cpus,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                    _node_ip_address="127.0.0.1",
                )
            else:
                ray.init(address=self.address, log_to_driver=False)
            self._owns_runtime = True
        if self.workers is None:
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote_class = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(
            _Evaluations
        )
        self._finalizer = weakref.finalize(self, _shutdown, ray, self._actors, self._owns_runtime)

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
        self, fn: Callable[..., object], X: torch.Tensor, seeds: Sequence[int] | None
    ) -> list[Outcome]:
        ray = self._ray
        self._ensure_pool()
        fn_ref = ray.put(fn)
        batch = PoolBatch(X.shape[0], self.retries, self.timeout)
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
        """Kill the actors; shut Ray down if this backend started it."""
        if self._finalizer is not None:
            self._finalizer()
        self._remote_class = None

    def __repr__(self) -> str:
        return (
            f"RayBackend(workers={self.workers}, timeout={self.timeout}, retries={self.retries}, "
            f"address={self.address!r})"
        )
