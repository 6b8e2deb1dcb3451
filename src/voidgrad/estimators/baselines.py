r"""Baselines for the score-function estimator.

A baseline b_i is subtracted from each cost before it multiplies the score,

    ĝ = (1/N) Σ_i (f(z_i) − b_i) ∇_θ log p(z_i | θ).

Because E[∇_θ log p(z|θ)] = 0, the estimator stays unbiased whenever b_i is
independent of z_i: a constant, a statistic of *earlier* batches (moving
average), or of the *other* samples of the batch (leave-one-out). A baseline
that looks at z_i itself biases the estimate. A learned baseline b(θ) = m_ψ(θ),
a network of the distribution's parameters, is independent of z_i too.
Baselines are separate objects, so any estimator that uses one can take any of
them.

A baseline learns only when told to, after the estimate that used it: either
by gradient steps on its :meth:`~Baseline.fit_loss` (:meth:`~Baseline.step`)
or from the batch's statistics (:meth:`~Baseline.update`).
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution

from voidgrad.estimators.protocol import step_auxiliary
from voidgrad.validation import check_positive


class Baseline(ABC):
    """Maps the costs ``[N, ...]`` of a batch to baselines of the same shape.

    ``dist`` is the distribution the costs were sampled from; baselines that
    depend on its parameters (:class:`Learned`) read it, the others ignore it.

    Examples:
        >>> import torch, voidgrad as vg
        >>> class Median(vg.baselines.Baseline):  # NOT unbiased: entry i sees cost i
        ...     def __call__(self, costs, dist=None):
        ...         return costs.median(0).values.expand_as(costs)
        >>> Median()(torch.tensor([1.0, 2.0, 9.0]))
        tensor([2., 2., 2.])
    """

    #: The fewest samples this baseline needs.
    min_samples: int = 1

    @abstractmethod
    def __call__(self, costs: torch.Tensor, dist: Distribution | None = None) -> torch.Tensor:
        """Baselines for ``costs``; entry i must not depend on cost i."""

    def fit_loss(
        self, costs: torch.Tensor, dist: Distribution | None = None
    ) -> torch.Tensor | None:
        """The loss a batch trains the baseline on, in its parameters' graph; None if none."""
        return None

    def step(self, loss: torch.Tensor) -> None:  # noqa: B027 (only fitted baselines step)
        """One training step on a :meth:`fit_loss`."""

    def update(self, costs: torch.Tensor, dist: Distribution | None = None) -> None:
        """Learn from a batch's costs after its estimate is formed: a step on its fit loss."""
        loss = self.fit_loss(costs, dist)
        if loss is not None:
            self.step(loss)

    def state_dict(self) -> dict[str, Any]:
        """What the baseline has learned: tensors and numbers only."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027 (stateless)
        """Continue from a :meth:`state_dict`."""


class Constant(Baseline):
    """b_i = c, a fixed number. Unbiased.

    Examples:
        >>> import torch, voidgrad as vg
        >>> vg.baselines.Constant(0.5)(torch.tensor([1.0, 2.0]))
        tensor([0.5000, 0.5000])
    """

    def __init__(self, value: float) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"value must be a finite number; got {value!r}")
        self.value = float(value)

    def __call__(self, costs: torch.Tensor, dist: Distribution | None = None) -> torch.Tensor:
        return torch.full_like(costs, self.value)

    def __repr__(self) -> str:
        return f"Constant({self.value})"


class MovingAverage(Baseline):
    r"""Bias-corrected exponential moving average of the mean cost of earlier batches.

    m_t = β m_{t−1} + (1 − β) mean(costs_t),  b = m_t / (1 − β^t)  (0 before the
    first batch). It uses earlier batches only, so the estimate stays unbiased.

    Examples:
        >>> import torch, voidgrad as vg
        >>> baseline = vg.baselines.MovingAverage(decay=0.9)
        >>> baseline(torch.tensor([1.0, 3.0]))  # 0 before the first batch
        tensor([0., 0.])
        >>> baseline.update(torch.tensor([1.0, 3.0]))
        >>> round(baseline.value, 6)  # bias-corrected: the first batch's mean
        2.0
    """

    def __init__(self, decay: float = 0.9) -> None:
        if isinstance(decay, bool) or not (isinstance(decay, int | float) and 0 <= decay < 1):
            raise ValueError(f"decay must be a number in [0, 1); got {decay!r}")
        self.decay = float(decay)
        self.average = 0.0
        self.batches = 0

    @property
    def value(self) -> float:
        """The bias-corrected average, 0 before any batch."""
        if self.batches == 0:
            return 0.0
        return self.average / (1 - self.decay**self.batches)

    def __call__(self, costs: torch.Tensor, dist: Distribution | None = None) -> torch.Tensor:
        return torch.full_like(costs, self.value)

    def update(self, costs: torch.Tensor, dist: Distribution | None = None) -> None:
        self.average = self.decay * self.average + (1 - self.decay) * float(costs.mean())
        self.batches += 1

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average, "batches": self.batches}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        average, batches = state.get("average"), state.get("batches")
        if not isinstance(average, float) or not isinstance(batches, int) or batches < 0:
            raise ValueError(
                "a MovingAverage state holds a float 'average' and an int 'batches' >= 0; "
                f"got {dict(state)!r}"
            )
        self.average, self.batches = average, batches

    def __repr__(self) -> str:
        return f"MovingAverage(decay={self.decay})"


class LeaveOneOut(Baseline):
    r"""b_i = (1/(N−1)) Σ_{j≠i} f(z_j): the mean of the other samples. Unbiased; N ≥ 2.

    With it, (1/N) Σ_i (f_i − b_i) = 0 exactly, and the estimator equals
    (1/(N−1)) Σ_i (f_i − mean(f)) ∇ log p(z_i).

    Examples:
        >>> import torch, voidgrad as vg
        >>> vg.baselines.LeaveOneOut()(torch.tensor([1.0, 2.0, 6.0]))  # the mean of the others
        tensor([4.0000, 3.5000, 1.5000])
    """

    min_samples = 2

    def __call__(self, costs: torch.Tensor, dist: Distribution | None = None) -> torch.Tensor:
        n = costs.shape[0]
        return (costs.sum(0, keepdim=True) - costs) / (n - 1)

    def __repr__(self) -> str:
        return "LeaveOneOut()"


def default_features(dist: Distribution) -> torch.Tensor:
    """The logits of a discrete distribution, else its mean."""
    return dist.logits if hasattr(dist, "logits") else dist.mean


class Learned(Baseline):
    r"""A network of the distribution's parameters, fitted to the costs by squared error.

    b_i = m_ψ(x) for every sample i, with x = ``features(dist)`` (detached; by
    default the logits of a discrete distribution, else its mean). After each
    batch, one optimizer step on ψ minimizes

        (1/R) Σ_r (m_ψ(x)_r − (1/N) Σ_i f(z_i)_r)²

    over the R rows of the cost batch, so m_ψ tracks E[f | θ] (NVIL's
    baseline). It sees θ, never z_i: unbiased.

    A freshly initialized module predicts about 0; where costs are large
    (an ELBO of 150 nats), start its output bias near the typical cost, or
    the first hundreds of steps are spent climbing to it.

    Args:
        module: maps the features ``x`` to one baseline per independent
            expectation: ``[]`` or ``[1]`` for costs ``[N]``, ``[B]`` or
            ``[B, 1]`` for costs ``[N, B]``.
        lr: learning rate of the default optimizer, Adam.
        optimizer: ``optimizer(parameters)`` makes the optimizer instead.
        features: maps the distribution to the module's input.

    Examples:
        >>> import torch, voidgrad as vg
        >>> _ = torch.manual_seed(0)
        >>> baseline = vg.baselines.Learned(torch.nn.Linear(1, 1), lr=0.1)  # b = m_ψ(features)
        >>> dist = torch.distributions.Normal(torch.tensor([1.0]), 1.0)  # features: its mean
        >>> for _ in range(200):  # fit to costs whose mean is 3
        ...     baseline.update(torch.full((8,), 3.0), dist)
        >>> baseline(torch.zeros(8), dist).shape, round(baseline(torch.zeros(8), dist)[0].item(), 1)
        (torch.Size([8]), 3.0)
    """

    def __init__(
        self,
        module: nn.Module,
        lr: float = 1e-2,
        *,
        optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
        features: Callable[[Distribution], torch.Tensor] = default_features,
    ) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module; got {type(module).__name__}")
        parameters = list(module.parameters())
        if not parameters:
            raise ValueError("module has no parameters to learn")
        if not callable(features):
            raise TypeError(
                f"features must map a distribution to a tensor; got {type(features).__name__}"
            )
        lr = check_positive("lr", lr)
        self.module = module
        self.features = features
        self.optimizer = (
            torch.optim.Adam(parameters, lr=lr) if optimizer is None else optimizer(parameters)
        )

    def _predict(self, costs: torch.Tensor, dist: Distribution | None) -> torch.Tensor:
        if dist is None:
            raise ValueError("a Learned baseline needs the distribution the costs came from")
        x = self.features(dist).detach()
        try:
            prediction = self.module(x.to(next(self.module.parameters()).dtype))
        except Exception as error:  # the user's module: say what it was given and why
            raise ValueError(
                f"the baseline module {type(self.module).__name__} failed on features of shape "
                f"{tuple(x.shape)} (by default the logits of a discrete distribution, else its "
                f"mean): {type(error).__name__}: {error}"
            ) from error
        rows = costs.shape[1:]
        if prediction.numel() != rows.numel():
            raise ValueError(
                f"the baseline module must return one value per expectation, {tuple(rows)} "
                f"(or with a trailing 1); got shape {tuple(prediction.shape)}"
            )
        return prediction.reshape(rows).to(costs.dtype)

    def __call__(self, costs: torch.Tensor, dist: Distribution | None = None) -> torch.Tensor:
        with torch.no_grad():
            return self._predict(costs, dist).expand_as(costs)

    def fit_loss(self, costs: torch.Tensor, dist: Distribution | None = None) -> torch.Tensor:
        with torch.enable_grad():
            return (self._predict(costs, dist) - costs.detach().mean(0)).pow(2).mean()

    def step(self, loss: torch.Tensor) -> None:
        parameters: list[torch.Tensor] = [p for p in self.module.parameters() if p.requires_grad]
        step_auxiliary(self.optimizer, parameters, loss)

    def state_dict(self) -> dict[str, Any]:
        return {
            "module": {k: v.clone() for k, v in self.module.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not {"module", "optimizer"} <= set(state):
            raise ValueError(
                f"a Learned baseline's state holds 'module' and 'optimizer'; got {sorted(state)}"
            )
        self.module.load_state_dict(state["module"])
        # A copy: the optimizer would otherwise share (and step) the state's tensors.
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))

    def __repr__(self) -> str:
        return f"Learned({type(self.module).__name__})"


_NAMED: dict[str, type[Baseline]] = {
    "moving_average": MovingAverage,
    "leave_one_out": LeaveOneOut,
}


def make_baseline(baseline: str | Baseline | None) -> Baseline | None:
    """A Baseline from ``None``, a Baseline, or a name: 'moving_average', 'leave_one_out'."""
    if baseline is None or isinstance(baseline, Baseline):
        return baseline
    if isinstance(baseline, str) and baseline in _NAMED:
        return _NAMED[baseline]()
    raise ValueError(
        f"baseline must be None, a vg.baselines.Baseline or one of {sorted(_NAMED)}; "
        f"got {baseline!r}"
    )
