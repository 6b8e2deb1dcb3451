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
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import TypeGuard

import torch
from torch.autograd.graph import Node
from torch.distributions import Distribution, Transform, TransformedDistribution, constraints

from voidgrad.validation import check_seed

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
    return sum_trailing(dist.log_prob(z), 1 + cost_batch_dims)


def sum_trailing(tensor: torch.Tensor, keep: int) -> torch.Tensor:
    """``tensor`` summed over every dimension after its first ``keep``."""
    return tensor.sum(tuple(range(keep, tensor.ndim))) if tensor.ndim > keep else tensor


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
        total = total + sum_trailing(grad.detach() * param, cost_batch_dims)
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


def held_tensors(dist: Distribution) -> list[torch.Tensor]:
    """Every tensor ``dist`` holds, once each, in a fixed order.

    Its own attributes and those of the distributions and transforms inside
    it (the ``base_dist`` of ``Independent`` and ``TransformedDistribution``,
    a transform's ``loc`` and ``scale``, a mixture's components), found
    through lists, tuples and dicts too. Lazy properties not yet computed are
    not read: reading them would only add tensors derived from these.
    """
    return [item for item in _reachable(dist, (Distribution, Transform)) if _is_tensor(item)]


def gradient_parameters(dist: Distribution) -> list[torch.Tensor]:
    """The tensors through which ``dist`` depends on the autograd graph.

    Sampling and ``log_prob`` read only what the distribution holds, so these
    are the tensors of :func:`held_tensors` that require grad, less any
    computed from another of them: ``MultivariateNormal(scale_tril=L)``
    holds L and an expanded copy of L, ``Beta`` the stacked concentrations
    of its inner Dirichlet, ``LowRankMultivariateNormal`` its factors and a
    capacitance computed from them. The gradient with respect to the derived
    tensor is already inside the gradient with respect to the tensor it came
    from; counting both would count that path twice. Names such as
    ``arg_constraints`` are no guide: torch samples through tensors they do
    not list, and lists tensors it never samples through. LAX measures the
    variance it trains its control on with respect to these; the gradient
    its loss passes on does not depend on this choice.
    """
    tensors = [tensor for tensor in held_tensors(dist) if tensor.requires_grad]
    return [tensor for tensor in tensors if not _computed_from_others(tensor, tensors)]


def check_fixed_support(dist: Distribution, estimator: str) -> None:
    """Raise unless the support of ``dist`` is the same for every θ.

    ∇_θ E[f] = E[f ∇_θ log p] holds only when the support does not move with
    θ; for ``Uniform(low, high)`` with ``low`` or ``high`` in the graph the
    gradient also has a boundary term (f at the moving ends), which no
    estimator built on ∇ log p sees. A support moves when its constraint is
    ``constraints.dependent`` or holds a tensor that requires grad, and, for
    a plain ``TransformedDistribution`` (which reports only its last
    transform's codomain), when a transform with parameters in the graph
    acts on less than the whole space (``Uniform(0, 1)`` shifted by θ). The
    distributions inside ``dist`` are checked too. A distribution that
    declares no support is taken at its word that ``log_prob`` is all there is.
    """
    for inner in _reachable(dist, (Distribution, Transform)):
        if isinstance(inner, Distribution) and _support_moves(inner):
            raise ValueError(
                f"{estimator} cannot differentiate {type(inner).__name__}: its support "
                "depends on the parameters in the graph, and the score ∇ log p misses the "
                "boundary term of ∇E[f] (f at the moving ends of the support), so the "
                "estimate would be biased. Use vg.Pathwise for a differentiable f, or keep "
                "the support's bounds out of the graph (detach them)"
            )


def _support_moves(dist: Distribution) -> bool:
    """Whether the support of ``dist`` itself depends on tensors in the graph."""
    if (
        isinstance(dist, TransformedDistribution)
        and _reports_codomain(type(dist))
        and _transforms_move_support(dist)
    ):
        return True
    try:
        support = dist.support
    except NotImplementedError:
        return False
    return constraints.is_dependent(support) or _in_graph(support, constraints.Constraint)


def _reports_codomain(family: type) -> bool:
    """Whether ``family`` keeps TransformedDistribution's support: its transforms' codomain.

    Subclasses that declare their own (LogNormal, Gumbel, Pareto) state it exactly.
    """
    own = inspect.getattr_static(family, "support")
    return own is inspect.getattr_static(TransformedDistribution, "support")


def _transforms_move_support(dist: TransformedDistribution) -> bool:
    """Whether a transform with parameters in the graph acts on less than the whole space.

    A transform of the whole space (Normal shifted by θ) keeps it whole; one
    of a bounded set (Uniform(0, 1) shifted by θ) moves it. Conservative: a
    chain that maps a bounded set back onto the whole space before such a
    transform is refused too.
    """
    try:
        whole = _is_whole_space(dist.base_dist.support)
    except NotImplementedError:
        whole = False
    for transform in dist.transforms:
        if not whole and _in_graph(transform, Transform):
            return True
        whole = whole and _is_whole_space(transform.codomain)
    return False


def _is_whole_space(constraint: constraints.Constraint | None) -> bool:
    """Whether ``constraint`` is the reals (of any event shape)."""
    while isinstance(constraint, constraints.independent):
        constraint = constraint.base_constraint
    return isinstance(constraint, type(constraints.real))


def _in_graph(root: object, containers: type) -> bool:
    """Whether a tensor that requires grad is reachable from ``root`` (see :func:`_reachable`)."""
    return any(_is_tensor(item) and item.requires_grad for item in _reachable(root, (containers,)))


def _is_tensor(item: object) -> TypeGuard[torch.Tensor]:
    return isinstance(item, torch.Tensor)


def _reachable(root: object, containers: tuple[type, ...]) -> list[object]:
    """``root`` and every object reachable from it through the attributes of
    ``containers`` instances and through lists, tuples and dicts, once each."""
    found: list[object] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        found.append(item)
        if isinstance(item, containers):
            stack.extend(reversed(list(getattr(item, "__dict__", {}).values())))
        elif isinstance(item, list | tuple):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
    return found


def _computed_from_others(tensor: torch.Tensor, tensors: list[torch.Tensor]) -> bool:
    """Whether autograd reaches another of ``tensors`` walking back from ``tensor``."""
    if tensor.grad_fn is None:
        return False
    others = [other for other in tensors if other is not tensor]
    edges = {(other.grad_fn, other.output_nr) for other in others if other.grad_fn is not None}
    leaves = {id(other) for other in others if other.grad_fn is None}
    seen: set[Node] = set()
    stack = _edges_into(tensor.grad_fn)
    while stack:
        node, output = stack.pop()
        if (node, output) in edges or (hasattr(node, "variable") and id(node.variable) in leaves):
            return True  # (hasattr: AccumulateGrad, the edge into a leaf)
        if node not in seen:
            seen.add(node)
            stack.extend(_edges_into(node))
    return False


def _edges_into(node: Node) -> list[tuple[Node, int]]:
    """The (node, output index) pairs whose outputs ``node`` takes as inputs."""
    return [(parent, output) for parent, output in node.next_functions if parent is not None]
