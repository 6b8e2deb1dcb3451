r"""LAX, RELAX and REBAR: unbiased estimators with a learned, differentiable control variate.

For L(θ) = E_{p(b|θ)}[f(b)] with f a black box (Grathwohl et al. 2018, seed
004), a surrogate c_φ enters twice, once through the score function and once
through the reparameterization, so its expectation cancels:

LAX (z continuous, reparameterizable, z = T(θ, ε)):

    ĝ = [f(z) − c_φ(z)] ∇_θ log p(z|θ) + ∇_θ c_φ(z)

RELAX (b discrete, b = H(z), z ~ p(z|θ), z̃ ~ p(z | b, θ); see ``discrete``):

    ĝ = [f(b) − c_φ(z̃)] ∇_θ log p(b|θ) + ∇_θ c_φ(z) − ∇_θ c_φ(z̃)

REBAR (Tucker et al. 2017) is RELAX with c_φ(z) = η f(σ_λ(z)), φ = (η, λ):
the relaxed f itself is the control variate, so f must accept relaxed
inputs and be differentiable there. ``RELAX(control, relaxed_f=True)`` adds
a network: c_φ(z) = η f(σ_λ(z)) + r_ρ(z), the paper's discrete-VAE choice.

All three are **unbiased for every φ**. φ is trained to minimize the
variance: since E[ĝ] does not depend on φ,

    ∂/∂φ Var(ĝ) = E[∂/∂φ ‖ĝ‖²],

estimated from the same draws by double backward: ``tell`` reports ‖ĝ‖²,
in φ's graph, as the auxiliary loss ``"control"``, and ``update`` takes one
optimizer step on it (``vg.expectation`` calls it after each estimate unless
``train=False``); nothing is stepped while the loss is formed. ĝ there is
the gradient with respect to the distribution's own tensors: the logits for
RELAX and REBAR; for LAX the tensors the distribution holds that are in the
graph, less those computed from another of them (``gradient_parameters``: L
of ``MultivariateNormal(scale_tril=L)``, the concentrations of a ``Beta``,
the loc and scale inside an ``Independent``). The loss routes the estimate
into whatever built the distribution: for LAX it is the θ-derivative of the
estimator's objective itself, so every parameter the user passed gets its
gradient whichever tensors torch samples through.

LAX, like the score function, needs a support that does not move with θ:
``Uniform(low, high)`` with its bounds in the graph is refused.

The default learning rate, 1e-2, suits small controls (the RELAX toy); for
controls with many parameters 1e-3 measured better (benchmarks/dither_ssim.py,
benchmarks/discrete_vae.py). A control whose output starts far from the
costs' scale inflates the variance until it has learned it: start its output
bias near the typical cost.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution

from voidgrad.estimators.control import score_estimate, score_objective
from voidgrad.estimators.discrete import (
    Kind,
    as_dist_sample,
    discrete_logits,
    relax,
    sample_conditional,
    sample_relaxed,
    score,
    threshold,
)
from voidgrad.estimators.distributional import (
    DistributionEstimator,
    check_connected,
    check_fixed_support,
    gradient_parameters,
    joint_log_prob,
    parameter_surrogate,
    plain_estimate,
    require,
    sum_trailing,
    surrogate_loss,
)
from voidgrad.estimators.protocol import Estimate, Query, step_auxiliary
from voidgrad.validation import check_flag, check_positive

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


class ControlVariateEstimator(DistributionEstimator):
    """Shared machinery: the control's optimizer, the variance step, their state.

    ``tell`` reports ‖ĝ‖² in ``estimate.stats["square_norm"]`` and, while
    the control trains, in φ's graph as ``estimate.auxiliary["control"]``;
    :meth:`update` records the one and steps φ on the other.

    Args:
        parameters: φ, the parameters of the control variate.
        lr: learning rate of the default optimizer (Adam) for φ.
        optimizer: ``optimizer(parameters)`` builds another optimizer for φ.
        train_control: have ``update`` take a variance-reducing step on φ.
        seed: seed of a private sampling stream, for bit-exact replay.
        control: the module holding φ, if any (its state is the estimator's).

    Examples:
        >>> import torch, voidgrad as vg
        >>> estimator = vg.REBAR(optimizer=lambda params: torch.optim.SGD(params, lr=0.01), seed=0)
        >>> isinstance(estimator, vg.estimators.ControlVariateEstimator)
        True
        >>> logits = torch.zeros(3, requires_grad=True)
        >>> f = lambda b: (b - 0.4).pow(2).sum(-1)
        >>> loss = vg.expectation(f, torch.distributions.Bernoulli(logits=logits), 100, estimator)
        >>> estimator.last_square_norm > 0  # ‖ĝ‖², on which the control just took a step
        True
    """

    unbiased = True

    def __init__(
        self,
        parameters: list[nn.Parameter],
        lr: float,
        optimizer: OptimizerFactory | None,
        train_control: bool,
        seed: int | None,
        control: nn.Module | None = None,
    ) -> None:
        super().__init__(seed)
        lr = check_positive("lr", lr)
        self.control = control
        self.control_parameters: list[torch.Tensor] = list(parameters)
        self.train_control = check_flag("train_control", train_control) and bool(parameters)
        self.optimizer = (
            None
            if not parameters
            else torch.optim.Adam(parameters, lr=lr)
            if optimizer is None
            else optimizer(parameters)
        )
        #: ‖ĝ‖² of the last estimate :meth:`update` saw (summed over the expectations).
        self.last_square_norm = math.nan

    def update(self, estimate: Estimate) -> None:
        """Record the estimate's ‖ĝ‖² and, while the control trains, step φ on it."""
        self.last_square_norm = estimate.stats.get("square_norm", math.nan)
        norm = estimate.auxiliary.get("control")
        if norm is not None and self.optimizer is not None:
            step_auxiliary(self.optimizer, self.control_parameters, norm)

    def variance_report(
        self, grads: list[torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """``(auxiliary, stats)`` of an estimate with gradient ``grads``: ‖ĝ‖², for φ and logs."""
        norm = square_norm(grads)
        auxiliary = {"control": norm} if self.train_control and norm.requires_grad else {}
        return auxiliary, {"square_norm": float(norm.detach())}

    def state_dict(self) -> dict[str, Any]:
        """The random stream, the control module's state and its optimizer's (copies)."""
        control = {} if self.control is None else self.control.state_dict()
        optimizer = {} if self.optimizer is None else self.optimizer.state_dict()
        return {
            **super().state_dict(),
            "control": {name: tensor.clone() for name, tensor in control.items()},
            "optimizer": copy.deepcopy(optimizer),
            "last_square_norm": self.last_square_norm,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state_dict`."""
        control, optimizer = require(state, "control"), require(state, "optimizer")
        square = require(state, "last_square_norm")
        super().load_state_dict(state)
        if self.control is not None:
            self.control.load_state_dict(control)
        if self.optimizer is not None:
            # A copy: the optimizer would otherwise share (and step) the state's tensors.
            self.optimizer.load_state_dict(copy.deepcopy(optimizer))
        self.last_square_norm = float(square)


@dataclass(frozen=True)
class _RelaxDraw:
    """What RELAX's tell needs of its ask: z, b = H(z) and z̃ ~ p(z | b), in θ's graph."""

    kind: Kind
    logits: torch.Tensor
    z: torch.Tensor
    b: torch.Tensor
    conditioned: torch.Tensor


def lax_gradients(
    costs: torch.Tensor,
    log_prob: torch.Tensor,
    control_at_sample: torch.Tensor,
    control_reparameterized: torch.Tensor,
    params: list[torch.Tensor],
    create_graph: bool,
    retain_graph: bool | None = None,
) -> list[torch.Tensor]:
    r"""LAX's ĝ with respect to the tensors ``params``.

    ĝ is the θ-gradient of (1/N) Σ_i [f(z̄_i) − c_φ(z̄_i)] log p(z̄_i|θ) +
    c_φ(z_i(θ)) (:func:`~voidgrad.estimators.control.score_objective`), with
    ``log_prob`` log p(z̄|θ) of the samples held fixed, ``control_at_sample``
    c_φ(z̄) (no path to θ) and ``control_reparameterized`` anything whose
    θ-gradient is that of c_φ(z(θ)); all ``[N, *cost_batch]``.
    ``create_graph`` keeps ĝ differentiable in φ, for φ's step on its variance;
    ``retain_graph`` keeps the graph for a later backward pass (by default
    only with ``create_graph``). Shared by :class:`LAX` and :mod:`voidgrad.rl`.
    """
    objective = score_objective(costs, log_prob, control_at_sample, control_reparameterized)
    return _grad_or_zeros(objective.sum(), params, create_graph, retain_graph)


def relax_gradient(
    costs: torch.Tensor,
    logits: torch.Tensor,
    b: torch.Tensor,
    kind: Kind,
    control_relaxed: torch.Tensor,
    control_conditioned: torch.Tensor,
    create_graph: bool,
) -> torch.Tensor:
    r"""RELAX's ĝ with respect to ``logits``.

    ĝ = (1/N) Σ_i [f(b_i) − c_φ(z̃_i)] ∇ log p(b_i|θ) + ∇ c_φ(z_i) − ∇ c_φ(z̃_i),
    with ``control_relaxed`` c_φ(z) and ``control_conditioned`` c_φ(z̃), both
    reparameterized in ``logits`` and ``[N, *cost_batch]``, and b the discrete
    samples ``[N, *logits.shape]`` (one-hot for categoricals). The score is
    written out, so c_φ(z̃)'s path to θ enters only through its gradient term.
    ``create_graph`` keeps ĝ differentiable in φ, for φ's step on its variance.
    Shared by :class:`RELAX` and :mod:`voidgrad.rl`.
    """
    kept = costs.ndim - 1
    # score_estimate's layout: costs [*cost_batch, N], scores [*cost_batch, N, d].
    scores = score(logits.detach(), b, kind).movedim(0, kept).flatten(kept + 1)
    score_term = score_estimate(
        costs.movedim(0, -1), scores, control_conditioned.movedim(0, -1)
    ).reshape(logits.shape)
    (reparam_term,) = _grad_or_zeros(
        (control_relaxed - control_conditioned).mean(0).sum(), [logits], create_graph
    )
    return score_term + reparam_term


def square_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """‖ĝ‖² = Σ_k ‖ĝ_k‖² over the gradient's tensors, in their graph (φ's variance loss)."""
    total = sum((grad**2).sum() for grad in grads)
    assert isinstance(total, torch.Tensor)
    return total


def apply_control(control: nn.Module, z: torch.Tensor, costs: torch.Tensor) -> torch.Tensor:
    """c_φ(z), shaped like ``costs`` (``[N, *cost_batch]``; a trailing 1 is dropped)."""
    parameter = next(control.parameters(), None)
    dtype = z.dtype if parameter is None else parameter.dtype
    try:
        value = control(z.to(dtype))
    except Exception as error:  # the user's module: say what it was given and why
        raise ValueError(
            f"the control variate {type(control).__name__} failed on samples of shape "
            f"{tuple(z.shape)} ([N, *batch_shape, *event_shape]; it must map them to one "
            f"value per sample and expectation, {tuple(costs.shape)}): "
            f"{type(error).__name__}: {error}"
        ) from error
    if not isinstance(value, torch.Tensor) or value.numel() != costs.numel():
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(
            f"the control variate must return one value per sample and expectation, "
            f"{tuple(costs.shape)} (or with a trailing 1); got {shape}"
        )
    return value.reshape(costs.shape).to(costs.dtype)


def control_and_slope(
    control: nn.Module, z: torch.Tensor, costs: torch.Tensor, create_graph: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """c_φ(z̄) (``[N, *cost_batch]``) and ∂c_φ/∂z at z̄ (shaped like ``z``), z̄ = ``z`` held fixed.

    The value is differentiable in φ, the slope too with ``create_graph``;
    neither depends on θ.
    """
    point = z.detach().requires_grad_(True)
    value = apply_control(control, point, costs)
    (slope,) = _grad_or_zeros(value.sum(), [point], create_graph, retain_graph=True)
    return value, slope


def _grad_or_zeros(
    output: torch.Tensor,
    inputs: list[torch.Tensor],
    create_graph: bool,
    retain_graph: bool | None = None,
) -> list[torch.Tensor]:
    """∂output/∂inputs, zeros where output does not depend on an input."""
    if not output.requires_grad:
        return [torch.zeros_like(x) for x in inputs]
    grads = torch.autograd.grad(
        output, inputs, retain_graph=retain_graph, create_graph=create_graph, allow_unused=True
    )
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads, strict=True)]


def _check_control(control: object) -> nn.Module:
    if not isinstance(control, nn.Module):
        raise TypeError(f"control must be a torch.nn.Module; got {type(control).__name__}")
    return control


class LAX(ControlVariateEstimator):
    """ĝ = [f(z) − c_φ(z)] ∇ log p(z|θ) + ∇ c_φ(z), z reparameterized. Unbiased for any c_φ.

    For continuous distributions with ``rsample`` whose support does not move
    with θ (others are refused); f is a black box evaluated at z only, never
    differentiated. Every parameter that built the distribution gets its
    gradient (``MultivariateNormal(scale_tril=L)``, ``Beta``,
    ``LowRankMultivariateNormal``, ``Independent(...)``): the loss is the
    θ-derivative of the estimator's objective, with ∇_θ c_φ(z) taken as
    ⟨∂c_φ/∂z, ∂z/∂θ⟩ at the sample.

    Args:
        control: c_φ, maps samples ``[N, *batch, *event]`` to ``[N]`` (or
            ``[N, *cost_batch]``, as the costs).
        lr: learning rate of φ's Adam optimizer.
        optimizer: ``optimizer(parameters)`` builds another optimizer for φ.
        train_control: have ``update`` step φ on the variance (default).
        seed: seed of a private sampling stream, for bit-exact replay.

    Examples:
        >>> import torch, voidgrad as vg
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)  # the control's initial weights
        >>> control = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
        >>> estimator = vg.LAX(control, lr=1e-2, seed=0)
        >>> mu = torch.tensor([1.0, -1.0], requires_grad=True)
        >>> f = lambda z: (z**2).sum(-1)  # treated as a black box: never differentiated
        >>> for _ in range(3):  # each call also takes one variance-reducing step on the control
        ...     mu.grad = None
        ...     vg.expectation(f, torch.distributions.Normal(mu, 0.5), 1000, estimator).backward()
        >>> mu.grad.sign()  # ∇ E[|z|²] = 2μ = (2, −2)
        tensor([ 1., -1.])
        >>> estimator.last_square_norm > 0
        True
    """

    def __init__(
        self,
        control: nn.Module,
        lr: float = 1e-2,
        *,
        optimizer: OptimizerFactory | None = None,
        train_control: bool = True,
        seed: int | None = None,
    ) -> None:
        control = _check_control(control)
        super().__init__(list(control.parameters()), lr, optimizer, train_control, seed, control)
        self.control: nn.Module = control

    def ask(self, dist: Distribution, samples: int) -> Query:
        """z_i = T(θ, ε_i); f is evaluated at them held fixed, z̄_i."""
        if not dist.has_rsample:
            raise ValueError(
                f"LAX needs a reparameterizable distribution (has_rsample); {type(dist).__name__} "
                "has none: use vg.RELAX or vg.REBAR for Bernoulli and categorical variables"
            )
        check_fixed_support(dist, "LAX")
        with self.sampling():
            z = dist.rsample((samples,))
            seeds = self.draw_seeds((samples,))
        return Query(z.detach(), seeds, context=(dist, z))

    def tell(self, query: Query, costs: torch.Tensor) -> Estimate:
        """The objective whose θ-gradient is ĝ; ‖ĝ‖² in φ's graph while the control trains."""
        dist, z = query.context
        fixed = query.inputs
        if not z.requires_grad:
            return plain_estimate(costs)
        kept = costs.ndim - 1
        log_prob = joint_log_prob(dist, fixed, kept)
        control, slope = control_and_slope(self.control, fixed, costs, self.train_control)
        # ⟨∂c/∂z(z̄), z(θ)⟩ has the θ-gradient of c_φ(z(θ)) at z̄, and keeps φ out of what
        # loss.backward() traverses, before or after update() changes φ in place.
        params = gradient_parameters(dist)
        auxiliary: dict[str, torch.Tensor] = {}
        stats: dict[str, float] = {}
        if params:
            grads = lax_gradients(
                costs,
                log_prob,
                control,
                sum_trailing(slope * z, 1 + kept),
                params,
                self.train_control,
                retain_graph=True,  # loss.backward() goes through log p and z(θ) again
            )
            auxiliary, stats = self.variance_report(grads)
        elif self.train_control:
            # The estimate below reaches θ regardless; only ĝ for φ's variance step needs them.
            raise ValueError(
                f"LAX cannot train its control on this {type(dist).__name__}: none of the "
                "tensors it holds requires grad (are its parameters inside a module, e.g. of a "
                "custom Transform?); pass train_control=False to use the control as it is"
            )
        routed = score_objective(
            costs, log_prob, control.detach(), sum_trailing(slope.detach() * z, 1 + kept)
        )
        value = costs.mean(0)
        return Estimate(
            value=value.detach(),
            loss=surrogate_loss(value, routed),
            auxiliary=auxiliary,
            stats=stats,
        )

    def __repr__(self) -> str:
        return f"LAX(control={type(self.control).__name__})"


class RELAX(ControlVariateEstimator):
    """ĝ = [f(b) − c_φ(z̃)] ∇ log p(b|θ) + ∇ c_φ(z) − ∇ c_φ(z̃). Unbiased for any c_φ.

    For Bernoulli, Categorical and OneHotCategorical distributions; f is
    evaluated at the discrete b only, unless ``relaxed_f`` adds REBAR's term.

    Args:
        control: r_ρ, maps the continuous z (``[N, *batch]`` for a Bernoulli,
            ``[N, *batch, K]`` for categoricals) to ``[N]`` (or
            ``[N, *cost_batch]``); ``None`` only with ``relaxed_f``.
        relaxed_f: add η f(σ_λ(z)) to the control, with η and λ learned; f
            must then accept relaxed inputs and be differentiable, and a
            Categorical's samples reach f as one-hot vectors.
        temperature: initial λ.
        eta: initial η.
        lr: learning rate of φ's Adam optimizer.
        optimizer: ``optimizer(parameters)`` builds another optimizer for φ.
        train_control: have ``update`` step φ on the variance (default).
        seed: seed of a private sampling stream, for bit-exact replay.

    Examples:
        >>> import torch, voidgrad as vg
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)  # the control's initial weights
        >>> control = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
        >>> estimator = vg.RELAX(control, seed=0)
        >>> logits = torch.zeros(2, requires_grad=True)
        >>> f = lambda b: (b - torch.tensor([1.0, 0.0])).pow(2).sum(-1)  # best: b = (1, 0)
        >>> loss = vg.expectation(f, torch.distributions.Bernoulli(logits=logits), 2000, estimator)
        >>> round(loss.item(), 1)
        1.0
        >>> loss.backward()
        >>> torch.allclose(logits.grad, torch.tensor([-0.25, 0.25]), atol=0.1)  # exact
        True
    """

    def __init__(
        self,
        control: nn.Module | None = None,
        *,
        relaxed_f: bool = False,
        temperature: float = 0.5,
        eta: float = 1.0,
        lr: float = 1e-2,
        optimizer: OptimizerFactory | None = None,
        train_control: bool = True,
        seed: int | None = None,
    ) -> None:
        self.relaxed_f = check_flag("relaxed_f", relaxed_f)
        if control is None and not relaxed_f:
            raise ValueError("RELAX needs a control network, relaxed_f=True, or both")
        control = None if control is None else _check_control(control)
        temperature = check_positive("temperature", temperature)
        if isinstance(eta, bool) or not isinstance(eta, int | float) or not math.isfinite(eta):
            raise ValueError(f"eta must be a finite number; got {eta!r}")
        self.eta = nn.Parameter(torch.tensor(float(eta), dtype=torch.float64))
        self.log_temperature = nn.Parameter(torch.tensor(temperature, dtype=torch.float64).log())
        parameters = [] if control is None else list(control.parameters())
        if self.relaxed_f:
            parameters += [self.eta, self.log_temperature]
        super().__init__(parameters, lr, optimizer, train_control, seed, control)

    @property
    def temperature(self) -> float:
        """The current λ."""
        return float(self.log_temperature.detach().exp())

    def ask(self, dist: Distribution, samples: int) -> Query:
        """f at b = H(z); with ``relaxed_f`` also at σ_λ(z) and σ_λ(z̃), rows ``[b; σ(z); σ(z̃)]``."""
        kind, logits = discrete_logits(dist, type(self).__name__)
        relaxed = self.relaxed_f and logits.requires_grad
        with self.sampling():
            z = sample_relaxed(logits, kind, samples)
            b = threshold(z, kind).detach()
            conditioned = sample_conditional(logits, b, kind)
            seeds = self.draw_seeds((3 * samples if relaxed else samples,))
        draw = _RelaxDraw(kind, logits, z, b, conditioned)
        if not relaxed:
            return Query(b if self.relaxed_f else as_dist_sample(b, kind), seeds, context=draw)
        temperature = self.log_temperature.exp().to(z.dtype)
        inputs = torch.cat([b, relax(z, kind, temperature), relax(conditioned, kind, temperature)])
        return Query(inputs, seeds, differentiable=True, context=draw)

    def tell(self, query: Query, costs: torch.Tensor) -> Estimate:
        """ĝ routed into the logits; ‖ĝ‖² in φ's graph while the control trains."""
        draw: _RelaxDraw = query.context
        samples = draw.b.shape[0]
        at_b = costs[:samples].detach()  # only the relaxed rows are differentiated
        if not draw.logits.requires_grad:
            return plain_estimate(at_b)
        relaxed: list[torch.Tensor | None] = [None, None]
        if self.relaxed_f:
            check_connected(query.inputs, costs, type(self).__name__)
            relaxed = [costs[samples : 2 * samples], costs[2 * samples :]]
        grad = relax_gradient(
            at_b,
            draw.logits,
            draw.b,
            draw.kind,
            self._control(draw.z, at_b, relaxed[0]),
            self._control(draw.conditioned, at_b, relaxed[1]),
            self.train_control,
        )
        auxiliary, stats = self.variance_report([grad])
        value = at_b.mean(0)
        surrogate = parameter_surrogate([grad], [draw.logits], costs.ndim - 1)
        return Estimate(
            value=value.detach(),
            loss=surrogate_loss(value, surrogate),
            auxiliary=auxiliary,
            stats=stats,
        )

    def _control(
        self, z: torch.Tensor, costs: torch.Tensor, relaxed_costs: torch.Tensor | None
    ) -> torch.Tensor:
        """c_φ(z) = η f(σ_λ(z)) + r_ρ(z), from f(σ_λ(z)) (``relaxed_costs``) when relaxed."""
        value = torch.zeros_like(costs)
        if relaxed_costs is not None:
            value = value + self.eta.to(costs.dtype) * relaxed_costs
        if self.control is not None:
            value = value + apply_control(self.control, z, costs)
        return value

    def state_dict(self) -> dict[str, Any]:
        """The state of :class:`ControlVariateEstimator`, with η and log λ."""
        return {
            **super().state_dict(),
            "eta": self.eta.detach().clone(),
            "log_temperature": self.log_temperature.detach().clone(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state_dict`."""
        eta, log_temperature = require(state, "eta"), require(state, "log_temperature")
        super().load_state_dict(state)
        with torch.no_grad():
            self.eta.copy_(eta)
            self.log_temperature.copy_(log_temperature)

    def __repr__(self) -> str:
        control = None if self.control is None else type(self.control).__name__
        return f"RELAX(control={control}, relaxed_f={self.relaxed_f})"


class REBAR(RELAX):
    """RELAX with c_φ(z) = η f(σ_λ(z)): the relaxed f as control variate. Unbiased.

    f must accept relaxed inputs (numbers in (0, 1), points of the simplex)
    and be differentiable there; a Categorical's samples reach f as one-hot
    vectors. Each estimate costs 3N evaluations of f: at b, σ_λ(z), σ_λ(z̃).

    Args:
        temperature: initial λ.
        eta: initial η.
        lr: learning rate of the Adam optimizer for (η, log λ).
        optimizer: ``optimizer(parameters)`` builds another optimizer.
        train_control: have ``update`` step η and λ on the variance (default).
        seed: seed of a private sampling stream, for bit-exact replay.

    Examples:
        >>> import torch, voidgrad as vg
        >>> estimator = vg.REBAR(temperature=0.5, seed=0)
        >>> logits = torch.zeros(2, requires_grad=True)
        >>> f = lambda b: (b - torch.tensor([1.0, 0.0])).pow(2).sum(-1)  # accepts relaxed b too
        >>> loss = vg.expectation(f, torch.distributions.Bernoulli(logits=logits), 2000, estimator)
        >>> loss.backward()
        >>> torch.allclose(logits.grad, torch.tensor([-0.25, 0.25]), atol=0.1)  # exact
        True
        >>> estimator.temperature != 0.5  # λ was trained on the variance
        True
    """

    def __init__(
        self,
        temperature: float = 0.5,
        eta: float = 1.0,
        *,
        lr: float = 1e-2,
        optimizer: OptimizerFactory | None = None,
        train_control: bool = True,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            None,
            relaxed_f=True,
            temperature=temperature,
            eta=eta,
            lr=lr,
            optimizer=optimizer,
            train_control=train_control,
            seed=seed,
        )

    def __repr__(self) -> str:
        return f"REBAR(temperature={self.temperature:.4g}, eta={float(self.eta.detach()):.4g})"
