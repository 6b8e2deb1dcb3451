"""Backends: how a batch of parameter rows becomes a list of outcomes.

A backend receives the whole batch at once and returns one :class:`Outcome`
per row, in row order. That contract is what lets a process pool or a Ray
cluster sit behind the same :class:`~voidgrad.Evaluator`: batches in, ordered
results out, one seed per row. Backends never judge the outputs; validation,
counting and the failure policy live in the Evaluator.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

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


@runtime_checkable
class Backend(Protocol):
    """Runs a black box on a batch of rows.

    ``seeds`` is ``None`` or one integer per row; a backend passes it to ``fn``
    as the keyword ``seed`` (the Evaluator only supplies seeds when ``fn``
    accepts one).

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
        >>> vg.Evaluator(lambda row: float(row.sum()), backend=Reversed())(torch.eye(3) * 2)
        tensor([2., 2., 2.])
    """

    def evaluate(
        self, fn: Callable[..., object], X: torch.Tensor, seeds: Sequence[int] | None
    ) -> list[Outcome]: ...

    def close(self) -> None: ...


class SerialBackend:
    """Calls ``fn(row)`` for each row in turn, in this process.

    Examples:
        >>> import torch, voidgrad as vg
        >>> ev = vg.Evaluator(lambda row, seed: seed, backend="serial", seed=0)  # fn(row) per row
        >>> seeds = ev(torch.zeros(3, 2))  # one derived seed per row, the same on every backend
        >>> seeds.shape, len(set(seeds.tolist()))
        (torch.Size([3]), 3)
    """

    def evaluate(
        self, fn: Callable[..., object], X: torch.Tensor, seeds: Sequence[int] | None
    ) -> list[Outcome]:
        outcomes = []
        for i, row in enumerate(X):
            kwargs = {} if seeds is None else {"seed": seeds[i]}
            start = time.perf_counter()
            try:
                value = fn(row, **kwargs)
            except Exception as error:  # failures are data: the Evaluator applies the policy
                outcomes.append(Outcome(error=error, seconds=time.perf_counter() - start))
            else:
                outcomes.append(Outcome(value=value, seconds=time.perf_counter() - start))
        return outcomes

    def close(self) -> None:
        pass


class VectorizedBackend:
    """Calls ``fn(X)`` once for the whole batch; ``fn`` returns ``[n, ...]``.

    Seeds, when used, arrive as an int64 tensor ``seed`` of shape ``[n]``. An
    exception fails every row of the batch.

    Examples:
        >>> import torch, voidgrad as vg
        >>> ev = vg.Evaluator(lambda X: X.pow(2).sum(1), backend="vectorized")  # fn(X) once
        >>> ev(torch.tensor([[1.0, 2.0], [3.0, 0.0]]))
        tensor([5., 9.])
        >>> ev.stats.evals  # still counted per row
        2
    """

    def evaluate(
        self, fn: Callable[..., object], X: torch.Tensor, seeds: Sequence[int] | None
    ) -> list[Outcome]:
        n = X.shape[0]
        kwargs = {} if seeds is None else {"seed": torch.as_tensor(seeds, dtype=torch.int64)}
        start = time.perf_counter()
        try:
            output = fn(X, **kwargs)
        except Exception as error:
            seconds = (time.perf_counter() - start) / n
            return [Outcome(error=error, seconds=seconds) for _ in range(n)]
        seconds = (time.perf_counter() - start) / n
        batch = as_output_tensor(output, detach=False)  # the Evaluator decides
        if batch.ndim == 0 or batch.shape[0] != n:
            raise ValueError(
                f"a vectorized black box must return an output with leading dimension {n} "
                f"(one per row of X); got shape {tuple(batch.shape)}"
            )
        return [Outcome(value=row, seconds=seconds) for row in batch]

    def close(self) -> None:
        pass
