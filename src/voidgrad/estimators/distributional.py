r"""The protocol of estimators for expectations over distributions.

For L(θ) = E_{z~p(z|θ)}[f(z)] every estimator follows the ask/tell protocol
of :mod:`voidgrad.estimators.protocol`:

    query = estimator.ask(dist, N)            # the samples z_i to evaluate, and their seeds
    costs = evaluate(query.inputs)            # the caller evaluates f: counted
    estimate = estimator.tell(query, costs)   # the surrogate loss, and auxiliary losses
    estimator.update(estimate)                # the caller steps the learned parts

``estimate.loss`` is a *surrogate loss*: a tensor whose value is the Monte
Carlo mean (1/N) Σ_i f(z_i) and whose gradient with respect to θ is the
estimator's gradient. Written as

    loss = value + (s − stop_gradient(s)),

with s a differentiable expression whose gradient is the estimate, it composes
with everything autograd does: sums of terms, networks producing θ, optimizers.
:func:`estimate` runs ask → Evaluator → tell for ``vg.expectation``, which
then calls ``update`` unless told not to.

Costs may keep leading batch dimensions of the distribution: with
``dist.batch_shape = (B, D)`` and f returning ``[N, B]``, each of the B rows is
an independent expectation over its D variables and the loss has shape [B].
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeGuard

import torch
from torch.autograd.graph import Node
from torch.distributions import Distribution, Transform, TransformedDistribution, constraints

from voidgrad.errors import EvaluationError
from voidgrad.estimators.protocol import SEED_HIGH, Estimate, Estimator, Query
from voidgrad.evaluation.evaluator import Evaluator
from voidgrad.validation import check_samples, check_seed

#: Evaluates f on a batch of samples ``[N, ...]``; returns costs ``[N, *cost_batch]``.
Evaluate = Callable[..., torch.Tensor]


class DistributionEstimator(Estimator):
    """Base of the estimators that ``vg.expectation`` accepts: ask and tell over a distribution.

    A subclass implements ``ask(dist, samples) -> Query`` and
    ``tell(query, costs) -> Estimate`` (plus ``update``, ``state_dict`` and
    ``load_state_dict`` if it learns something); :meth:`loss` runs ask →
    evaluate → tell → update for a caller holding an evaluate function.
    Subclasses written before ask and tell override :meth:`loss` instead and
    keep working: ``vg.expectation`` calls their ``loss``.

    Args:
        seed: with a seed, samples are drawn from a private stream, so a run
            replays bit for bit; ``None`` samples from torch's global generator,
            as ``dist.sample()`` does.

    Examples:
        >>> import torch, voidgrad as vg
        >>> from voidgrad.estimators.protocol import Estimate, Query
        >>> class Shift(vg.DistributionEstimator):  # z = μ + noise, the noise held fixed
        ...     def ask(self, dist, samples):
        ...         with self.sampling():  # the private stream when seeded
        ...             noise = dist.sample((samples,)) - dist.mean.detach()
        ...             seeds = self.draw_seeds((samples,))
        ...         return Query(dist.mean + noise, seeds, differentiable=True)
        ...     def tell(self, query, costs):
        ...         return Estimate(value=costs.mean(0).detach(), loss=costs.mean(0))
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
        # The base would seed an unseeded estimator from torch's global generator, moving
        # the stream that an unseeded estimator samples from, as dist.sample() does.
        super().__init__(0 if seed is None else seed)
        self._seeded = seed is not None
        if seed is None:  # its query seeds only, from the OS: torch's stream untouched
            self.seed = self._generator.seed()

    @property
    def seeded(self) -> bool:
        """Whether samples come from the private stream (``seed`` given), not torch's global one."""
        return self._seeded

    def ask(self, dist: Distribution, samples: int) -> Query:
        """The ``samples`` draws from ``dist`` to evaluate."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement ask(dist, samples) and tell(query, costs), "
            "or loss(evaluate, dist, samples)"
        )

    def tell(self, query: Query, costs: torch.Tensor) -> Estimate:
        """The estimate from the costs of ``query.inputs``; trains nothing."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement ask(dist, samples) and tell(query, costs), "
            "or loss(evaluate, dist, samples)"
        )

    def loss(self, evaluate: Evaluate, dist: Distribution, samples: int) -> torch.Tensor:
        """The surrogate loss for ``samples`` draws from ``dist``: ask → evaluate → tell → update.

        ``evaluate(inputs, differentiable=..., seeds=...)`` returns the costs.
        The learned parts take their step, as every call always has.
        """
        result = ask_evaluate_tell(self, evaluate, dist, samples)
        self.update(result)
        return surrogate_of(result)

    @contextlib.contextmanager
    def sampling(self) -> Iterator[None]:
        """Draw from the private stream, leaving torch's global generator as it was.

        torch.distributions cannot take a generator, so the global one is
        forked: seeded from the private stream inside (one draw per query),
        restored on exit. A subclass draws its samples, and then the query's
        seeds (:meth:`draw_seeds`), inside ``with self.sampling():`` so that
        ``seed=`` replays both; without a seed this does nothing.
        """
        if not self.seeded:
            yield
            return
        seed = int(torch.randint(0, 2**62, (1,), generator=self._generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield

    def draw_seeds(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Seeds ``[*shape]`` for the evaluations of a query; draw them inside :meth:`sampling`.

        Seeded, they come from the forked stream after the samples (so the
        private stream still advances by one draw per query); unseeded, from
        the estimator's own generator, leaving torch's global one as
        ``dist.sample()`` left it.
        """
        generator = None if self.seeded else self._generator
        return torch.randint(0, SEED_HIGH, shape, generator=generator, dtype=torch.int64)

    def state_dict(self) -> dict[str, Any]:
        """The random stream, and which estimator and seeding wrote it."""
        return {
            **super().state_dict(),
            "estimator": type(self).__name__,
            "seeded": self.seeded,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state_dict` of the same kind of estimator, seeded alike."""
        written = require(state, "estimator")
        if written != type(self).__name__:
            raise ValueError(f"state was written by a {written}, not a {type(self).__name__}")
        if require(state, "seeded") != self.seeded:
            raise ValueError(
                f"state was written by a {written} with seeded={state['seeded']}; this one has "
                f"seeded={self.seeded} (a seeded run resumes into a seeded estimator)"
            )
        super().load_state_dict(state)


def require(state: Mapping[str, Any], key: str) -> Any:
    """``state[key]``, or a ValueError naming the missing key."""
    if key not in state:
        raise ValueError(f"the estimator's state has no {key!r} entry; got {sorted(state)}")
    return state[key]


def plain_estimate(costs: torch.Tensor) -> Estimate:
    """The Monte Carlo mean of ``costs`` as value and loss (its gradient flows through f)."""
    mean = costs.mean(0)
    return Estimate(value=mean.detach(), loss=mean)


def surrogate_of(estimate: Estimate) -> torch.Tensor:
    """``estimate.loss``, which every distribution estimator sets."""
    if estimate.loss is None:
        raise ValueError("a distribution estimator's tell must set Estimate.loss")
    return estimate.loss


def ask_evaluate_tell(
    estimator: DistributionEstimator, evaluate: Evaluate, dist: Distribution, samples: int
) -> Estimate:
    """ask → evaluate → tell: one estimate, with nothing trained."""
    query = estimator.ask(dist, samples)
    # An unseeded estimator's seeds replay nothing: f gets what the Evaluator gives it.
    seeds = query.seeds if estimator.seeded else None
    costs = evaluate(query.inputs, differentiable=query.differentiable, seeds=seeds)
    return estimator.tell(query, costs)


def estimate(
    f: Callable[..., object] | Evaluator,
    dist: Distribution,
    samples: int,
    estimator: DistributionEstimator,
) -> Estimate:
    """One estimate of E_{z~dist}[f(z)]: ask → Evaluator → tell, training nothing.

    ``vg.expectation(..., train=False)`` returns its ``loss``. To step the
    estimator's learned parts (a control variate's φ, a learned or
    moving-average baseline) call ``estimator.update(estimate)``, before the
    distribution's parameters change in place (before the optimizer's step):
    the auxiliary losses were built at those parameters.

    Args:
        f: as for ``vg.expectation``.
        dist: as for ``vg.expectation``.
        samples: as for ``vg.expectation``.
        estimator: the distribution estimator. One that overrides ``loss``
            (written before ask and tell) is called through it, and trains
            as its ``loss`` does.

    Examples:
        >>> import torch, voidgrad as vg
        >>> from voidgrad.estimators.distributional import estimate
        >>> theta = torch.zeros(2, requires_grad=True)
        >>> estimator = vg.ScoreFunction(baseline="moving_average", seed=0)
        >>> result = estimate(lambda b: b.sum(-1), torch.distributions.Bernoulli(logits=theta),
        ...                   8, estimator)
        >>> estimator.baseline.value  # nothing learned yet
        0.0
        >>> result.loss.backward()
        >>> estimator.update(result)  # the caller steps the baseline
        >>> estimator.baseline.value == result.value.item()
        True
    """
    if not isinstance(dist, Distribution):
        raise TypeError(
            f"dist must be a torch.distributions.Distribution; got {type(dist).__name__}"
        )
    if not isinstance(estimator, DistributionEstimator):
        raise TypeError(
            "estimator must be a distribution estimator such as vg.ScoreFunction or vg.Pathwise; "
            f"got {type(estimator).__name__}"
        )
    check_samples(samples, paired=False)
    if samples < estimator.min_samples:
        raise ValueError(f"{estimator!r} needs samples >= {estimator.min_samples}; got {samples}")
    evaluator = f if isinstance(f, Evaluator) else Evaluator(f, backend="vectorized")

    def evaluate(
        x: torch.Tensor, differentiable: bool = False, seeds: torch.Tensor | None = None
    ) -> torch.Tensor:
        costs = evaluator(x, seeds, differentiable=differentiable)
        check_costs(costs, dist, x.shape[0])
        return costs

    if type(estimator).loss is not DistributionEstimator.loss:
        loss = estimator.loss(evaluate, dist, samples)  # written before ask and tell
        return Estimate(value=loss.detach(), loss=loss)
    return ask_evaluate_tell(estimator, evaluate, dist, samples)


def check_costs(costs: torch.Tensor, dist: Distribution, rows: int) -> None:
    """Raise unless ``costs`` are ``[rows, *dist.batch_shape[:k]]`` and finite."""
    batch = tuple(dist.batch_shape)
    kept = tuple(costs.shape[1:])
    if costs.shape[0] != rows or kept != batch[: len(kept)]:
        raise ValueError(
            f"f must return costs of shape [N] or [N, *dist.batch_shape[:k]] with N = {rows} "
            f"and batch_shape {batch}; got {tuple(costs.shape)}"
        )
    if not torch.isfinite(costs).all():
        row = int((~torch.isfinite(costs.reshape(rows, -1)).all(1)).nonzero()[0, 0])
        raise EvaluationError(
            f"f returned a non-finite cost for sample {row}; an expectation needs every "
            "sample's cost",
            row=row,
            params=None,
        )


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
