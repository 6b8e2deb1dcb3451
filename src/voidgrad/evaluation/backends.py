"""Backends: how a batch of parameter rows becomes a list of outcomes.

A backend receives the whole batch at once and returns one :class:`Outcome`
per row, in row order. That contract is what lets a process pool or a Ray
cluster sit behind the same :class:`~voidgrad.Evaluator`: batches in, ordered
results out, one seed per row. Backends never judge the outputs; validation,
counting and the failure policy live in the Evaluator.

Every backend gives ``fn`` its own copy of the inputs: a black box that writes
into its argument (``x.mul_(0)``) changes only that copy, never the caller's
parameters or samples. The pooled backends copy by sending the rows to
another process; the in-process backends here clone them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from voidgrad.evaluation.outputs import as_output_tensor


@dataclass(frozen=True)
class Outcome:
    """What one evaluation produced: a value or the exception it raised.

    ``attempts`` counts the tries it took (more than one when a backend
    retried it after its worker died).

    Examples:
        >>> import torch
        >>> from voidgrad.evaluation import Outcome, SerialBackend
        >>> X = torch.tensor([[2.0], [0.0]])
        >>> outcomes = SerialBackend().evaluate(lambda row: 1 / float(row), X, seeds=None)
        >>> outcomes[0].value, outcomes[0].error is None
        (0.5, True)
        >>> type(outcomes[1].error).__name__, outcomes[1].attempts
        ('ZeroDivisionError', 1)
    """

    value: object = None
    error: BaseException | None = None
    seconds: float = 0.0
    attempts: int = 1


@dataclass
class Tally:
    """What a batch has used so far, kept up to date by the backend while the batch runs.

    The :class:`~voidgrad.Evaluator` passes one to a backend whose ``evaluate``
    has a ``tally`` keyword, and reads it only when ``evaluate`` does not
    return (Ctrl-C, a ``SystemExit`` raised by ``fn``, an error after ``fn``
    ran): the rows that ran are then still counted, so a budget never
    under-counts. ``rows``: rows started (the one running when the batch
    ended included); ``attempts``: tries, retries included; ``seconds``:
    time inside ``fn``.

    Examples:
        >>> import torch
        >>> from voidgrad.evaluation import SerialBackend, Tally
        >>> def interrupted(row):
        ...     if row[0] == 2:
        ...         raise KeyboardInterrupt
        ...     return 0.0
        >>> tally = Tally()
        >>> try:
        ...     SerialBackend().evaluate(interrupted, torch.arange(5.0)[:, None], None, tally=tally)
        ... except KeyboardInterrupt:
        ...     print(tally.rows, tally.attempts)
        3 3
    """

    rows: int = 0
    attempts: int = 0
    seconds: float = 0.0

    def started(self, rows: int = 1, first_try: bool = True) -> None:
        """``rows`` rows begin a try (a first one unless ``first_try`` is false)."""
        self.rows += rows if first_try else 0
        self.attempts += rows


@runtime_checkable
class Backend(Protocol):
    """Runs a black box on a batch of rows.

    ``seeds`` is ``None`` or one integer per row; a backend passes it to ``fn``
    as the keyword ``seed`` (the Evaluator only supplies seeds when ``fn``
    accepts one). A backend must not let ``fn`` write into ``X``: hand it
    copies. A backend whose ``evaluate`` also takes a keyword ``tally`` (a
    :class:`Tally`) keeps it up to date, so the Evaluator counts the rows that
    ran even when the batch ends early; one without it is counted by the
    outcomes it returns.

    Examples:
        >>> import torch, voidgrad as vg
        >>> from voidgrad.evaluation import Backend, Outcome
        >>> class Reversed:  # evaluates the rows in reverse order, returns them in row order
        ...     def evaluate(self, fn, X, seeds):
        ...         return [Outcome(value=fn(row)) for row in X.flip(0)][::-1]
        ...     def close(self):
        ...         pass
        >>> isinstance(Reversed(), Backend)
        True
        >>> vg.Evaluator(lambda row: row.sum(), backend=Reversed())(torch.eye(3) * 2)
        tensor([2., 2., 2.])
    """

    def evaluate(
        self, fn: Callable[..., object], X: torch.Tensor, seeds: Sequence[int] | None
    ) -> list[Outcome]: ...

    def close(self) -> None: ...


class SerialBackend:
    """Calls ``fn`` on a copy of each row in turn, in this process.

    Each call gets a fresh copy of its row, and what it returns is copied at
    once, so a black box that reuses one output buffer (a renderer filling
    the same image every call) still gives every row its own output.

    Examples:
        >>> import torch, voidgrad as vg
        >>> ev = vg.Evaluator(lambda row, seed: seed, backend="serial", seed=0)  # fn(row) per row
        >>> seeds = ev(torch.zeros(3, 2))  # one derived seed per row, the same on every backend
        >>> seeds.shape, len(set(seeds.tolist()))
        (torch.Size([3]), 3)
    """

    def evaluate(
        self,
        fn: Callable[..., object],
        X: torch.Tensor,
        seeds: Sequence[int] | None,
        *,
        tally: Tally | None = None,
    ) -> list[Outcome]:
        tally = Tally() if tally is None else tally
        outcomes = []
        for i, row in enumerate(X):
            kwargs = {} if seeds is None else {"seed": seeds[i]}
            tally.started()
            value, error, seconds = _call(fn, row.clone(), kwargs, tally)
            outcomes.append(Outcome(value=_snapshot(value), error=error, seconds=seconds))
        return outcomes

    def close(self) -> None:
        pass


class VectorizedBackend:
    """Calls ``fn`` once on a copy of the whole batch; ``fn`` returns ``[n, ...]``.

    Seeds, when used, arrive as a fresh int64 tensor ``seed`` of shape ``[n]``.
    An exception fails every row of the batch. An output that is not
    ``[n, ...]`` raises the error :meth:`shape_error` words, whatever the
    failure policy.

    Examples:
        >>> import torch, voidgrad as vg
        >>> ev = vg.Evaluator(lambda X: X.pow(2).sum(1), backend="vectorized")  # fn(X) once
        >>> ev(torch.tensor([[1.0, 2.0], [3.0, 0.0]]))
        tensor([5., 9.])
        >>> ev.stats.evals  # still counted per row
        2
    """

    def evaluate(
        self,
        fn: Callable[..., object],
        X: torch.Tensor,
        seeds: Sequence[int] | None,
        *,
        tally: Tally | None = None,
    ) -> list[Outcome]:
        tally = Tally() if tally is None else tally
        n = X.shape[0]
        kwargs: dict[str, object] = {}
        if seeds is not None:
            kwargs["seed"] = torch.as_tensor(seeds, dtype=torch.int64).clone()
        tally.started(n)
        output, error, seconds = _call(fn, X.clone(), kwargs, tally)
        if error is not None:
            return [Outcome(error=error, seconds=seconds / n) for _ in range(n)]
        batch = as_output_tensor(output, detach=False, where=f" for a batch of {n} rows")
        if batch.ndim == 0 or batch.shape[0] != n:
            raise self.shape_error(output, tuple(batch.shape), X)
        return [Outcome(value=row, seconds=seconds / n) for row in batch]

    def shape_error(self, output: object, shape: tuple[int, ...], X: torch.Tensor) -> ValueError:
        """The error for an ``output`` of ``shape``, returned for the batch ``X``, not ``[n, ...]``.

        A caller that has its own names for ``fn`` and its rows overrides it
        (``vg.expectation`` speaks of ``f``, samples and costs ``[N]``).
        """
        n = X.shape[0]
        return ValueError(
            f"a vectorized black box must return an output with leading dimension {n} "
            f"(one per row of X); got shape {shape}"
        )

    def close(self) -> None:
        pass


def _call(
    fn: Callable[..., object], arg: object, kwargs: Mapping[str, object], tally: Tally
) -> tuple[object, Exception | None, float]:
    """``fn(arg, **kwargs)``: its value or the exception it raised, and the seconds it took.

    The seconds reach ``tally`` even when a ``BaseException`` (Ctrl-C) ends the call.
    """
    start = time.perf_counter()
    try:
        value, error = fn(arg, **kwargs), None
    except Exception as caught:  # failures are data: the Evaluator applies the policy
        value, error = None, caught
    finally:
        seconds = time.perf_counter() - start
        tally.seconds += seconds
    return value, error, seconds


def _snapshot(value: object) -> object:
    """A copy of a returned tensor or array (the black box may write into it again later)."""
    if isinstance(value, torch.Tensor):
        return value.clone()  # keeps the autograd graph of a differentiable call
    if isinstance(value, np.ndarray):
        return value.copy()
    return value  # numbers and NumPy scalars cannot change
