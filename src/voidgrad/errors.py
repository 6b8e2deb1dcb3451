"""Exceptions raised by voidgrad."""

from __future__ import annotations


class BudgetExhausted(RuntimeError):  # noqa: N818 (the public name is fixed)
    """An Evaluator was asked for more evaluations than its budget allows.

    The batch that would have crossed the budget is not evaluated at all, so
    ``stats.evals`` never exceeds the budget.

    Examples:
        >>> import torch, voidgrad as vg
        >>> ev = vg.Evaluator(lambda x: float(x.sum()), budget=2)
        >>> try:
        ...     ev(torch.zeros(3, 1))
        ... except vg.BudgetExhausted as error:
        ...     print(error.budget, error.used, error.requested, ev.stats.evals)
        2 0 3 0
    """

    def __init__(self, budget: int, used: int, requested: int) -> None:
        self.budget = budget
        self.used = used
        self.requested = requested
        super().__init__(
            f"evaluation budget exhausted: budget={budget}, already used {used}, "
            f"a batch of {requested} more was requested"
        )


class EvaluationError(RuntimeError):
    """A call of the user's function failed or returned a non-finite output.

    ``row`` is the index of the offending parameter row in the batch and
    ``params`` that row itself, so the failure can be reproduced by hand.

    Examples:
        >>> import math, torch, voidgrad as vg
        >>> ev = vg.Evaluator(lambda x: math.log(float(x)))  # log of a negative number fails
        >>> try:
        ...     ev(torch.tensor([[1.0], [-1.0]]))
        ... except vg.EvaluationError as error:
        ...     print(error.row, error.params)
        1 tensor([-1.])
        >>> lenient = vg.Evaluator(lambda x: math.log(float(x)), on_error="nan")
        >>> lenient(torch.tensor([[1.0], [-1.0]]))  # float outputs come back as float64
        tensor([0., nan], dtype=torch.float64)
    """

    def __init__(self, message: str, row: int, params: object) -> None:
        self.row = row
        self.params = params
        super().__init__(message)


class EvaluationTimeout(TimeoutError):  # noqa: N818 (reads as what happened)
    """An evaluation ran past the Evaluator's ``timeout``; its worker was killed and replaced.

    Examples:
        >>> import time, torch, voidgrad as vg
        >>> with vg.Evaluator(lambda row: time.sleep(float(row)) or 0.0, backend="process",
        ...                   workers=1, timeout=0.5) as ev:
        ...     try:
        ...         ev(torch.tensor([[0.0], [10.0]]))  # the second row is killed after 0.5 s
        ...     except vg.EvaluationError as error:
        ...         print(error.row, type(error.__cause__).__name__)
        1 EvaluationTimeout
    """


class WorkerDied(RuntimeError):  # noqa: N818 (reads as what happened)
    """The worker running an evaluation died (a crash, ``os._exit``, a signal, the OOM killer).

    Examples:
        >>> import os, torch, voidgrad as vg
        >>> def crash(row):
        ...     if row[0] < 0:
        ...         os._exit(1)  # as if the renderer segfaulted
        ...     return row[0]
        >>> with vg.Evaluator(crash, backend="process", workers=1, on_error="nan") as ev:
        ...     print(ev(torch.tensor([[1.0], [-1.0], [2.0]])))  # a replacement worker carries on
        tensor([1., nan, 2.])
        >>> with vg.Evaluator(crash, backend="process", workers=1) as ev:
        ...     try:
        ...         ev(torch.tensor([[-1.0]]))
        ...     except vg.EvaluationError as error:
        ...         print(type(error.__cause__).__name__)
        WorkerDied
    """


class WorkerInitError(RuntimeError):
    """A worker's ``init`` callable raised or the worker could not start; nothing was evaluated.

    Examples:
        >>> import torch, voidgrad as vg
        >>> def load_scene():
        ...     raise FileNotFoundError("scene.xml")
        >>> ev = vg.Evaluator(lambda row: 0.0, backend="process", workers=1, init=load_scene)
        >>> try:
        ...     ev(torch.zeros(2, 1))
        ... except vg.WorkerInitError:
        ...     print("no worker could start:", ev.stats.evals, "evaluations")
        no worker could start: 0 evaluations
        >>> ev.close()
    """


class NumericalWarning(UserWarning):
    """A result was computed, but floating-point resolution has emptied or biased it.

    Issued as a warning, not an error, because the computation itself is valid
    and a long run should not die of it; the message names the argument to
    change (a perturbation below the spacing of floats at θ, for example).

    Examples:
        >>> import warnings, torch, voidgrad as vg
        >>> bb = vg.blackbox(lambda x: float(x.sum()), vg.FiniteDifferences(h=1e-30))
        >>> theta = torch.ones(2, dtype=torch.float64, requires_grad=True)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     bb(theta).backward()
        >>> caught[0].category.__name__
        'NumericalWarning'
        >>> print(caught[0].message)
        h=1e-30 is below the resolution of float64 at theta (|theta| up to 1) in 2 of 2
        coordinates: the perturbed points equal theta there, so the gradient estimate there is
        zero. Use a larger h or a wider dtype.
    """
