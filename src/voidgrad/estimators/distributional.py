r"""The protocol of estimators for expectations over distributions.

For L(θ) = E_{z~p(z|θ)}[f(z)] an estimator draws N samples, evaluates f
through an Evaluator and returns a *surrogate loss*: a tensor whose value is
the Monte Carlo mean (1/N) Σ_i f(z_i) and whose gradient with respect to θ is
the estimator's gradient. Written as

    loss = value + (s − stop_gradient(s)),

with s a differentiable expression whose gradient is the estimate, it composes
with everything autograd does: sums of terms, networks producing θ, optimizers.

Costs may keep leading batch dimensions of the distribution: with
``dist.batch_shape = (B, D)`` and f returning ``[N, B]``, each of the B rows is
an independent expectation over its D variables and the loss has shape [B].
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

import torch
from torch.distributions import Distribution

from voidgrad.estimators.base import check_seed

#: Evaluates f on a batch of samples ``[N, ...]``; returns costs ``[N, *cost_batch]``.
Evaluate = Callable[..., torch.Tensor]


class DistributionEstimator(ABC):
    """Base of the estimators that ``vg.expectation`` accepts.

    Args:
        seed: with a seed, samples are drawn from a private stream, so a run
            replays bit for bit; ``None`` samples from torch's global generator,
            as ``dist.sample()`` does.

    Examples:
        >>> import torch, voidgrad as vg
        >>> class Shift(vg.DistributionEstimator):  # z = μ + noise, the noise held fixed
        ...     def loss(self, evaluate, dist, samples):
        ...         with self.sampling():  # the private stream when seeded
        ...             noise = dist.sample((samples,)) - dist.mean.detach()
        ...         return evaluate(dist.mean + noise, differentiable=True).mean(0)
        >>> mu = torch.tensor([2.0], requires_grad=True)
        >>> dist = torch.distributions.Normal(mu, 1.0)
        >>> vg.expectation(lambda z: 3 * z[:, 0], dist, 100, estimator=Shift()).backward()
        >>> mu.grad
        tensor([3.0000])
        >>> same = [vg.expectation(lambda z: z[:, 0], dist, 4, estimator=Shift(seed=7)).item()
        ...         for _ in range(2)]
        >>> same[0] == same[1]  # seeded: the same samples
        True
    """

    #: The fewest samples the estimator can work with.
    min_samples: int = 1

    def __init__(self, seed: int | None = None) -> None:
        seed = check_seed(seed)
        self._generator = None if seed is None else torch.Generator().manual_seed(seed)

    @abstractmethod
    def loss(self, evaluate: Evaluate, dist: Distribution, samples: int) -> torch.Tensor:
        """The surrogate loss for ``samples`` draws from ``dist``."""

    @contextlib.contextmanager
    def sampling(self) -> Iterator[None]:
        """Draw from the private stream, leaving torch's global generator as it was.

        torch.distributions cannot take a generator, so the global one is
        forked: seeded from the private stream inside, restored on exit. A
        subclass draws its samples inside ``with self.sampling():`` so that
        ``seed=`` replays it; without a seed this does nothing.
        """
        if self._generator is None:
            yield
            return
        seed = int(torch.randint(0, 2**62, (1,), generator=self._generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield


def joint_log_prob(dist: Distribution, z: torch.Tensor, cost_batch_dims: int) -> torch.Tensor:
    """log p(z) summed over the batch dimensions that the costs do not keep.

    Returns ``[N, *dist.batch_shape[:cost_batch_dims]]``.
    """
    log_prob = dist.log_prob(z)
    kept = 1 + cost_batch_dims
    return log_prob.sum(tuple(range(kept, log_prob.ndim))) if log_prob.ndim > kept else log_prob


def surrogate_loss(value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """``value`` in the forward pass, the gradient of ``surrogate`` in the backward pass."""
    return value.detach() + (surrogate - surrogate.detach())


def parameter_surrogate(
    grads: list[torch.Tensor], params: list[torch.Tensor], cost_batch_dims: int
) -> torch.Tensor:
    """Σ_k ⟨ĝ_k, p_k⟩ per independent expectation: its gradient routes ĝ_k into p_k.

    For estimators that compute the gradient ĝ_k with respect to the
    distribution's parameter tensors p_k themselves (``[*batch, ...]``);
    autograd carries it on to whatever produced p_k. Returns
    ``[*batch[:cost_batch_dims]]``.
    """
    total: torch.Tensor | int = 0
    for grad, param in zip(grads, params, strict=True):
        product = grad.detach() * param
        total = total + product.sum(tuple(range(cost_batch_dims, product.ndim)))
    assert isinstance(total, torch.Tensor)
    return total


def check_connected(z: torch.Tensor, costs: torch.Tensor, estimator: str) -> None:
    """Raise unless ``costs`` depend on the samples ``z`` in the autograd graph."""
    if z.requires_grad and not costs.requires_grad:
        raise ValueError(
            f"f's output is not connected to the samples in the autograd graph; {estimator} "
            "differentiates f, so f must be built from differentiable torch operations "
            "(use vg.ScoreFunction, vg.RELAX or vg.DisARM for a black-box f)"
        )


def gradient_parameters(dist: Distribution) -> list[torch.Tensor]:
    """The parameter tensors of ``dist`` (its ``arg_constraints``) that are in the graph."""
    params: list[torch.Tensor] = []
    for name in dist.arg_constraints:
        value = getattr(dist, name, None)
        fresh = not any(value is seen for seen in params)
        if isinstance(value, torch.Tensor) and value.requires_grad and fresh:
            params.append(value)
    return params
