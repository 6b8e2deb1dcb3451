"""The bookkeeping of one batch on a pool of workers, shared by the process and Ray backends.

Rows wait in a queue; a worker takes one at a time. Each row ends in one
:class:`~voidgrad.evaluation.backends.Outcome`: its value or exception, a
timeout, or, when its worker died more than ``retries`` times, a
:class:`~voidgrad.WorkerDied`. A row whose worker died with tries left goes
back to the front of the queue. A :class:`~voidgrad.evaluation.backends.Tally`,
when given, follows the batch as it runs, so the rows that ran are counted
even when the batch is interrupted.
"""

from __future__ import annotations

import time
from collections import deque

from voidgrad.errors import EvaluationTimeout, WorkerDied
from voidgrad.evaluation.backends import Outcome, Tally


class PoolBatch:
    """The rows of one ``evaluate`` call: which wait, how often each was tried, how each ended."""

    def __init__(
        self, n: int, retries: int, timeout: float | None, tally: Tally | None = None
    ) -> None:
        self.retries = retries
        self.timeout = timeout
        self.tally = Tally() if tally is None else tally
        self._queue = deque(range(n))
        self._attempts = [0] * n
        self._outcomes: list[Outcome | None] = [None] * n

    @property
    def waiting(self) -> bool:
        """Whether rows wait for a worker."""
        return bool(self._queue)

    def take(self) -> tuple[int, float | None]:
        """The next row to run, counted as one attempt, and its deadline (monotonic seconds)."""
        index = self._queue.popleft()
        self.tally.started(first_try=self._attempts[index] == 0)
        self._attempts[index] += 1
        return index, None if self.timeout is None else time.monotonic() + self.timeout

    def finished(
        self, index: int, value: object, error: BaseException | None, seconds: float
    ) -> None:
        """The worker returned a value, or the exception ``fn`` raised."""
        self.tally.seconds += seconds
        self._outcomes[index] = Outcome(
            value=value, error=error, seconds=seconds, attempts=self._attempts[index]
        )

    def died(self, index: int, cause: str) -> None:
        """The row's worker died: try the row again, or record the death once tries run out."""
        if self._attempts[index] <= self.retries:
            self._queue.appendleft(index)
        else:
            self._outcomes[index] = Outcome(error=WorkerDied(cause), attempts=self._attempts[index])

    def timed_out(self, index: int) -> None:
        """The row ran past the timeout (its worker is killed by the caller); not retried."""
        self.tally.seconds += float(self.timeout or 0.0)
        self._outcomes[index] = Outcome(
            error=EvaluationTimeout(f"the evaluation ran past the {self.timeout} s timeout"),
            seconds=float(self.timeout or 0.0),
            attempts=self._attempts[index],
        )

    def outcomes(self) -> list[Outcome]:
        """One outcome per row, in row order."""
        return [outcome for outcome in self._outcomes if outcome is not None]
