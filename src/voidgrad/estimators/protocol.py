r"""The one protocol every estimator follows: it asks, the caller evaluates, it is told.

    query = estimator.ask(params)                    # points or samples, and their seeds
    values = evaluator(query.inputs, query.seeds)    # the caller evaluates: counted, parallel
    estimate = estimator.tell(query, values)         # the estimate, and auxiliary losses
    estimator.update(estimate)                       # the caller steps the estimator's parts

For a black box F, ``params`` are θ (``[B, d]``), the query's inputs the
points x_{b,i} (``[B, M, d]``) and the estimate a value and a
vector-Jacobian product. For an expectation E_{z~p(z|θ)}[f(z)], ``params``
are the distribution and the sample count, the inputs the samples z_i and
the estimate a surrogate loss whose gradient is the estimator's. Both
families are the same mathematics (Gaussian smoothing of F is the score
function of N(θ, σ²I)), and share this protocol, its seeding and its state.

Rules every estimator keeps:

* **It never evaluates.** Every value comes back through :meth:`Estimator.tell`,
  so the caller's Evaluator counts it.
* **Nothing trains in ask or tell.** A learned part (a control variate c_φ,
  a learned baseline, a surrogate h_φ) reports its training loss in
  ``Estimate.auxiliary``; the caller decides whether and when to step it
  with :meth:`Estimator.update`. Asking and telling twice trains nothing.
* **Seeded replay.** The estimator draws from its own generator, seeded by
  ``seed``; a query carries one seed per evaluation (``query.seeds``) so a
  noisy F replays too. :meth:`Estimator.state_dict` holds everything a
  resumed run needs, as tensors, numbers and strings only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import torch

from voidgrad.validation import check_seed

if TYPE_CHECKING:
    from voidgrad.estimators.regenerated import RegeneratedPoints

#: Seeds handed to F lie in [0, 2**31 − 1), so that any F can pass them on to NumPy.
SEED_HIGH = 2**31 - 1


#: What a query's inputs are: a tensor, or points made on demand.
Inputs = TypeVar("Inputs", torch.Tensor, "RegeneratedPoints")


@dataclass(frozen=True)
class Query(Generic[Inputs]):
    """What an estimator asks to have evaluated.

    Attributes:
        inputs: the points ``[B, M, d]`` (black boxes) or the samples
            ``[N, *sample_shape]`` (distributions) to evaluate; for a
            smoothing estimator that regenerates its offsets, points made on
            demand (:class:`~voidgrad.estimators.regenerated.RegeneratedPoints`,
            read with ``rows(start, stop)``).
        seeds: ``int64``, one per evaluation (``[B, M]`` or ``[N]``): passed to
            F if it takes a ``seed``, so that a noisy F replays.
        differentiable: whether the values must stay differentiable in the
            inputs (pathwise and relaxed estimators differentiate f).
        context: whatever :meth:`Estimator.tell` needs besides the values
            (offsets, relaxed samples); private to the estimator that asked.
    """

    inputs: Inputs
    seeds: torch.Tensor
    differentiable: bool = False
    context: Any = None


@dataclass
class Estimate:
    """What an estimator makes of the values it was told.

    Attributes:
        value: the estimated value: F(θ) smoothed, ``[B, *out]``, or the
            Monte Carlo mean of f.
        vjp: black boxes: ``vjp(v)`` returns the estimated vector-Jacobian
            product ``[B, d]`` for the incoming gradient ``v`` (``[B, *out]``)
            and the estimated trace of its covariance per row (``[B]``, or
            None where unknown). None for distributions.
        loss: distributions: the surrogate loss, whose value is ``value``
            and whose gradient with respect to the distribution's parameters
            is the estimate. None for black boxes.
        auxiliary: training losses of the estimator's own learned parts, by
            name (``"control"``, ``"baseline"``, ``"surrogate"``): scalars
            differentiable in those parts' parameters, for
            :meth:`Estimator.update`. Empty when nothing is learned.
        stats: numbers worth logging (a control coefficient, ‖ĝ‖²).
    """

    value: torch.Tensor
    vjp: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]] | None = None
    loss: torch.Tensor | None = None
    auxiliary: dict[str, torch.Tensor] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)


class Estimator(ABC):
    """Base of every estimator: a seeded random stream, ask/tell, update and state.

    Args:
        seed: seeds the estimator's own generator, so that a run replays bit
            for bit; ``None`` draws a seed from torch's default generator.
    """

    #: Whether E[ĝ] is exactly the gradient the estimator's docstring names (of
    #: the smoothed objective, for smoothing); the contract tests check it
    #: against closed forms for every registered estimator that claims it.
    unbiased: bool = False

    def __init__(self, seed: int | None) -> None:
        seed = check_seed(seed)
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)

    @abstractmethod
    def ask(self, params: Any, *args: Any) -> Query:
        """The evaluations the estimate at ``params`` needs."""

    @abstractmethod
    def tell(self, query: Query, values: torch.Tensor) -> Estimate:
        """The estimate from the values of ``query.inputs``; trains nothing."""

    def update(self, estimate: Estimate) -> None:  # noqa: B027 (most estimators learn nothing)
        """Step the estimator's learned parts on ``estimate.auxiliary``; a no-op by default."""

    def step(self) -> None:  # noqa: B027 (an optional hook, not abstract)
        """Advance per-step state (such as a sigma schedule); a no-op by default."""

    def state_dict(self) -> dict[str, Any]:
        """The estimator's evolving state, tensors, numbers and strings only."""
        return {"generator": self._generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state_dict`."""
        generator = state["generator"]
        if not isinstance(generator, torch.Tensor) or generator.dtype != torch.uint8:
            raise ValueError("the estimator's state holds no generator state (a uint8 tensor)")
        self._generator.set_state(generator)

    def draw_seeds(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Seeds ``[*shape]`` for the evaluations of a query, from the estimator's stream."""
        return torch.randint(0, SEED_HIGH, shape, generator=self._generator, dtype=torch.int64)


def step_auxiliary(
    optimizer: torch.optim.Optimizer, parameters: list[torch.Tensor], loss: torch.Tensor
) -> None:
    """One ``optimizer`` step on ``parameters`` along the gradient of ``loss`` alone.

    Gradients are taken with ``torch.autograd.grad``, so nothing else the loss
    depends on (θ, the distribution's parameters) receives a ``.grad``; a loss
    with no path to the parameters leaves them as they are.
    """
    if not loss.requires_grad:
        return
    grads = torch.autograd.grad(loss, parameters, allow_unused=True)
    for parameter, grad in zip(parameters, grads, strict=True):
        parameter.grad = None if grad is None else grad.detach()
    optimizer.step()
