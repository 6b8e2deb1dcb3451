"""Exceptions raised by voidgrad."""

from __future__ import annotations


class BudgetExhausted(RuntimeError):  # noqa: N818 (the public name is fixed)
    """An Evaluator was asked for more evaluations than its budget allows.

    The batch that would have crossed the budget is not evaluated at all, so
    ``stats.evals`` never exceeds the budget.
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
    """

    def __init__(self, message: str, row: int, params: object) -> None:
        self.row = row
        self.params = params
        super().__init__(message)


class EvaluationTimeout(TimeoutError):  # noqa: N818 (reads as what happened)
    """An evaluation ran past the Evaluator's ``timeout``; its worker was killed and replaced."""


class WorkerDied(RuntimeError):  # noqa: N818 (reads as what happened)
    """The worker running an evaluation died (a crash, ``os._exit``, a signal, the OOM killer)."""


class WorkerInitError(RuntimeError):
    """A worker's ``init`` callable raised or the worker could not start; nothing was evaluated."""
