"""The two kinds of ``vg.minimize`` run, as algorithms of the one run loop (:mod:`voidgrad.run`).

:class:`GradientDescent`: each step asks the estimator for points, evaluates
them through the Evaluator, and steps a ``torch.optim`` optimizer along the
estimated gradient::

    loss = blackbox(theta)            # ask -> Evaluator -> tell (the estimator's evaluations)
    estimator.update(estimate)        # its learned parts (ZeroGrads' surrogate), by the loop
    loss.backward()                   # theta.grad = the estimated gradient
    optimizer.step(); estimator.step(); scheduler.step()

:class:`DerivativeFree`: each step asks a library optimizer (pycma,
nevergrad, ...) for a batch, evaluates it, and tells it the losses
(:mod:`voidgrad.optimize.dfo`).

Both spend their budget in evaluations and report the lowest single
evaluation through a :class:`~voidgrad.optimize.best.BestPoint`; no
evaluation is spent on logging.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from voidgrad.blackbox import blackbox
from voidgrad.estimators import BlackBoxEstimator
from voidgrad.evaluation.evaluator import Evaluator
from voidgrad.optimize.best import BestPoint, saved_tensor
from voidgrad.optimize.result import History, StepRecord
from voidgrad.registry import OPTIMIZERS
from voidgrad.run import Algorithm, RunState, Stop
from voidgrad.validation import check_positive

OptimizerSpec = str | Callable[[Iterable[torch.Tensor], float], torch.optim.Optimizer]
LrSchedule = Callable[[torch.optim.Optimizer], Any]


class MinimizeAlgorithm(Algorithm):
    """What both kinds of ``vg.minimize`` run share: the Evaluator, the best point, the check.

    Attributes:
        evaluator: the Evaluator every evaluation goes through.
        best: the lowest evaluation so far (the run's answer).
    """

    kind = "vg.minimize"
    history_type = History

    def __init__(self, evaluator: Evaluator, best: BestPoint) -> None:
        self.evaluator = evaluator
        self.best = best

    @abstractmethod
    def x_last(self) -> torch.Tensor:
        """The method's final iterate or recommendation."""

    def resumed(self, state: RunState, path: Path) -> None:
        self.best.check_again(self.evaluator, path)


class GradientDescent(MinimizeAlgorithm):
    """A torch optimizer on θ along a black-box estimator's gradient.

    Attributes:
        theta: the parameters (a leaf tensor that requires grad).
        estimator: the gradient estimator.
        optimizer: the ``torch.optim`` optimizer stepping θ.
        scheduler: the learning-rate scheduler, if any.
        best: the lowest evaluation so far.
        cost: evaluations per step.
        hold_when_flat: advance the estimator's per-step state (its σ
            schedule) only on steps whose gradient estimate is not exactly 0,
            so that a kernel that sees no change of the loss (a plateau)
            keeps its width until it does.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        x0: torch.Tensor,
        estimator: BlackBoxEstimator,
        optimizer: OptimizerSpec,
        lr: float,
        lr_schedule: LrSchedule | None,
        best: BestPoint,
        *,
        hold_when_flat: bool = False,
    ) -> None:
        super().__init__(evaluator, best)
        self.estimator = estimator
        self.hold_when_flat = hold_when_flat
        self.cost = estimator.evaluations(x0.numel())
        self.theta = x0.clone().requires_grad_(True)
        self.optimizer = make_optimizer(optimizer, self.theta, lr)
        self.scheduler = None if lr_schedule is None else lr_schedule(self.optimizer)
        self._loss = blackbox(evaluator.fn, estimator, evaluator=evaluator, train=False)

    def step(self, state: RunState) -> StepRecord | Stop:
        if state.spent + self.cost > state.budget:
            return Stop(f"budget of {state.budget} evaluations spent (one step costs {self.cost})")
        before = self.evaluator.stats.evals
        self.optimizer.zero_grad()
        loss = self._loss(self.theta).sum()  # per-output losses are minimized in sum
        estimate = self._loss.last_estimate
        assert estimate is not None
        # Between tell and the backward pass: ZeroGrads' reference estimate ∇h(θ) is read
        # from the surrogate fitted on this step's samples.
        self.estimator.update(estimate)
        loss.backward()
        assert self.theta.grad is not None
        grad_norm = float(self.theta.grad.norm())
        self.optimizer.step()
        if grad_norm > 0 or not self.hold_when_flat:
            self.estimator.step()
        if self.scheduler is not None:
            self.scheduler.step()
        state.spent += self.evaluator.stats.evals - before
        return StepRecord(
            step=state.step + 1,
            evals=state.spent,
            loss=float(loss.detach()),
            best=self.best.loss,
            seconds=state.seconds,
            grad_norm=grad_norm,
            variance=estimate.stats.get("variance"),
            surrogate_r2=estimate.stats.get("r2"),
        )

    def x_last(self) -> torch.Tensor:
        """The current iterate."""
        return self.theta.detach()

    def state_dict(self) -> dict[str, Any]:
        return {
            "theta": self.theta.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
            "estimator": self.estimator.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            **self.best.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        with torch.no_grad():
            self.theta.copy_(saved_tensor(state, "theta", self.theta))
        self.optimizer.load_state_dict(state["optimizer"])
        self.estimator.load_state_dict(state["estimator"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.best.load_state_dict(state)


class DerivativeFree(MinimizeAlgorithm):
    """A library optimizer's ask/tell loop, through the Evaluator.

    ``start(x0, budget=..., workers=...)`` builds the adapter (the registry's
    ``Method.make`` for the method gives it); it is called on first use, so
    that a damaged or foreign checkpoint is named before a missing optional
    library is.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        x0: torch.Tensor,
        method: str,
        start: Callable[..., Any],
        budget: int,
        best: BestPoint,
    ) -> None:
        super().__init__(evaluator, best)
        self.x0 = x0
        self.method = method
        self.start = start
        self.budget = budget
        self._adapter: Any = None

    @property
    def adapter(self) -> Any:
        """The library optimizer's adapter (see :mod:`voidgrad.optimize.dfo`)."""
        if self._adapter is None:
            workers = getattr(self.evaluator.backend, "workers", None) or 1
            self._adapter = self.start(self.x0.double(), budget=self.budget, workers=workers)
        return self._adapter

    def step(self, state: RunState) -> StepRecord | Stop:
        X = self.adapter.ask(state.remaining) if state.remaining > 0 else None
        if X is None:
            if state.step == 0:
                raise ValueError(
                    f"budget {state.budget} is too small for one batch of {self.method!r}"
                )
            stopped = getattr(self.adapter, "stop_reason", None)
            return Stop(stopped or f"budget of {state.budget} evaluations spent")
        before = self.evaluator.stats.evals
        Y = self.evaluator(X.to(self.x0.dtype))
        self.adapter.tell(X, Y.double())
        state.spent += self.evaluator.stats.evals - before
        finite = Y[torch.isfinite(Y)]
        return StepRecord(
            step=state.step + 1,
            evals=state.spent,
            loss=float(finite.min()) if finite.numel() else math.nan,
            best=self.best.loss,
            seconds=state.seconds,
        )

    def x_last(self) -> torch.Tensor:
        """The adapter's own recommendation."""
        return self.adapter.recommendation().to(self.x0.dtype)

    def state_dict(self) -> dict[str, Any]:
        return {"adapter": self.adapter.state(), **self.best.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.adapter.restore(state["adapter"])  # replays the log: no evaluation
        self.best.load_state_dict(state)

    def close(self) -> None:
        close = getattr(self._adapter, "close", None)
        if close is not None:
            close()


def make_optimizer(spec: OptimizerSpec, theta: torch.Tensor, lr: float) -> torch.optim.Optimizer:
    """The optimizer ``spec`` names (or builds) for θ, with learning rate ``lr``."""
    check_positive("lr", lr)  # finite: lr=inf turns theta into NaN on the first step
    if isinstance(spec, str):
        if spec not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {spec!r}; known: {sorted(OPTIMIZERS)}, or pass a callable "
                "optimizer(params, lr)"
            )
        factory: Callable[..., torch.optim.Optimizer] = OPTIMIZERS[spec]
        return factory([theta], lr=lr)
    if not callable(spec):
        raise TypeError(f"optimizer must be a name or a callable; got {type(spec).__name__}")
    built = spec([theta], lr)
    if not isinstance(built, torch.optim.Optimizer):
        raise TypeError(f"optimizer(params, lr) must return a torch.optim.Optimizer; got {built!r}")
    return built
