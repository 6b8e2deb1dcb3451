"""What ``vg.minimize`` returns: the answer, the counts, and a per-step history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from voidgrad.run.records import Records

if TYPE_CHECKING:
    from voidgrad.optimize.auto import AutoChoice


@dataclass(frozen=True)
class StepRecord:
    """One step of a run.

    Attributes:
        step: 1-based step number.
        evals: evaluations of ``fn`` so far (every evaluation, retries excluded).
        loss: the step's loss estimate: for gradient methods the estimator's
            value (for smoothing, the mean over the perturbed points, i.e. the
            smoothed loss), for derivative-free methods the best loss of the
            step's batch. No extra evaluation is spent on it.
        best: the lowest loss of any single evaluation so far.
        seconds: wall time since the run started (summed over resumed parts).
        grad_norm: ‖ĝ‖ of the step's gradient estimate (gradient methods).
        variance: the estimator's own estimate of tr Cov(ĝ), where it has one.
        surrogate_r2: a learned surrogate's R² on the step's samples before
            it was fitted to them (ZeroGrads' ``stats["r2"]``), where there is one.

    Examples:
        >>> import voidgrad as vg
        >>> records = []
        >>> result = vg.minimize(lambda x: float((x**2).sum()), [1.0], method="fd", budget=10,
        ...                      lr=0.1, callback=records.append, progress=False)
        >>> record = records[-1]
        >>> record.step, record.evals, record.best <= 1.0  # the best loss so far
        (5, 10, True)
    """

    step: int
    evals: int
    loss: float
    best: float
    seconds: float
    grad_norm: float | None = None
    variance: float | None = None
    surrogate_r2: float | None = None


class History(Records[StepRecord]):
    """The per-step records of a ``vg.minimize`` run, oldest first.

    Examples:
        >>> import voidgrad as vg
        >>> result = vg.minimize(lambda x: float((x**2).sum()), [1.0], method="fd",
        ...                      budget=20, lr=0.1, progress=False)
        >>> history = result.history  # one StepRecord per step
        >>> len(history), history[0].step, history[-1].evals
        (10, 1, 20)
        >>> history.column("evals")[:3]
        [2, 4, 6]
    """

    record_type = StepRecord


@dataclass
class OptimizeResult:
    """The outcome of ``vg.minimize``.

    Attributes:
        x: the point with the lowest loss of any evaluation.
        fun: that loss.
        x_last: the method's final iterate (gradient methods) or its own
            recommendation (derivative-free methods).
        nevals: evaluations of ``fn`` spent, within the budget.
        nsteps: optimization steps taken.
        history: per-step records.
        method: the method asked for (``"auto"``, or the one named).
        message: why the run stopped.
        choice: for ``method="auto"``, what it chose and why (an
            :class:`~voidgrad.optimize.auto.AutoChoice`: ``choice.method``,
            ``.options``, ``.reason``, ``.probe``); None for a named method.

    Examples:
        >>> import voidgrad as vg
        >>> result = vg.minimize(lambda x: float((x**2).sum()), [1.0, 1.0], method="spsa",
        ...                      budget=100, lr=0.1, c=0.01, progress=False)
        >>> result.method, result.nevals, result.nsteps  # SPSA: two evaluations per step
        ('spsa', 100, 50)
        >>> result.fun < 2.0 and result.fun == min(result.history.column("best"))
        True
    """

    x: torch.Tensor
    fun: float
    x_last: torch.Tensor
    nevals: int
    nsteps: int
    history: History
    method: str
    message: str
    choice: AutoChoice | None = None

    def __repr__(self) -> str:
        chose = "" if self.choice is None else f", chose={self.choice.method!r}"
        return (
            f"OptimizeResult(method={self.method!r}{chose}, fun={self.fun:.6g}, "
            f"nevals={self.nevals}, nsteps={self.nsteps}, message={self.message!r})"
        )
