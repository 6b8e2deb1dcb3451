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

estimated from the same draws by double backward, one optimizer step per
call. ĝ there is the gradient with respect to the distribution's own
tensors: the logits for RELAX and REBAR; for LAX the tensors the
distribution holds that are in the graph, less those computed from another
of them (``gradient_parameters``: L of ``MultivariateNormal(scale_tril=L)``,
the concentrations of a ``Beta``, the loc and scale inside an
``Independent``). The loss routes the estimate into whatever built the
distribution: for LAX it is the θ-derivative of the estimator's objective
itself, so every parameter the user passed gets its gradient whichever
tensors torch samples through.

LAX, like the score function, needs a support that does not move with θ:
``Uniform(low, high)`` with its bounds in the graph is refused.

The default learning rate, 1e-2, suits small controls (the RELAX toy); for
controls with many parameters 1e-3 measured better (benchmarks/dither_ssim.py,
benchmarks/discrete_vae.py). A control whose output starts far from the
costs' scale inflates the variance until it has learned it: start its output
bias near the typical cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.distributions import Distribution

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
    Evaluate,
    check_connected,
    check_fixed_support,
    gradient_parameters,
    joint_log_prob,
    parameter_surrogate,
    sum_trailing,
    surrogate_loss,
)
from voidgrad.validation import check_flag, check_positive

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


class ControlVariateEstimator(DistributionEstimator):
    """Shared machinery: the control's optimizer and the variance step.

    Args:
        parameters: φ, the parameters of the control variate.
        lr: learning rate of the default optimizer (Adam) for φ.
        optimizer: ``optimizer(parameters)`` builds another optimizer for φ.
        train_control: take a variance-reducing step on φ at each call.
        seed: seed of a private sampling stream, for bit-exact replay.

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

    def __init__(
        self,
        parameters: list[nn.Parameter],
        lr: float,
        optimizer: OptimizerFactory | None,
        train_control: bool,
        seed: int | None,
    ) -> None:
        super().__init__(seed)
        lr = check_positive("lr", lr)
        self.control_parameters = parameters
        self.train_control = check_flag("train_control", train_control) and bool(parameters)
        self.optimizer = (
            None
            if not parameters
            else torch.optim.Adam(parameters, lr=lr)
            if optimizer is None
            else optimizer(parameters)
        )
        #: ‖ĝ‖² of the last estimate (summed over the independent expectations).
        self.last_square_norm = float("nan")

    def _train(self, grads: list[torch.Tensor]) -> None:
        """Record ‖ĝ‖² and, when training, step φ on it."""
        norm = square_norm(grads)
        self.last_square_norm = float(norm.detach())
        if self.train_control:
            assert self.optimizer is not None
            variance_step(self.optimizer, self.control_parameters, norm)


def lax_objective(
    costs: torch.Tensor,
    log_prob: torch.Tensor,
    control_at_sample: torch.Tensor,
    control_reparameterized: torch.Tensor,
) -> torch.Tensor:
    r"""(1/N) Σ_i [f(z̄_i) − c_φ(z̄_i)] log p(z̄_i|θ) + c_φ(z_i(θ)): its θ-gradient is LAX's ĝ.

    ``log_prob`` is log p(z̄|θ) of the samples held fixed, ``control_at_sample``
    c_φ(z̄) (no path to θ) and ``control_reparameterized`` anything whose
    θ-gradient is that of c_φ(z(θ)); all ``[N, *cost_batch]``. Returns
    ``[*cost_batch]``.
    """
    return ((costs - control_at_sample) * log_prob + control_reparameterized).mean(0)


def lax_gradients(
    costs: torch.Tensor,
    log_prob: torch.Tensor,
    control_at_sample: torch.Tensor,
    control_reparameterized: torch.Tensor,
    params: list[torch.Tensor],
    create_graph: bool,
    retain_graph: bool | None = None,
) -> list[torch.Tensor]:
    r"""LAX's ĝ with respect to the tensors ``params``: the gradient of :func:`lax_objective`.

    ``create_graph`` keeps ĝ differentiable in φ for :func:`variance_step`;
    ``retain_graph`` keeps the graph for a later backward pass (by default
    only with ``create_graph``). Shared by :class:`LAX` and :mod:`voidgrad.rl`.
    """
    objective = lax_objective(costs, log_prob, control_at_sample, control_reparameterized)
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
    ``create_graph`` keeps ĝ differentiable in φ for :func:`variance_step`.
    Shared by :class:`RELAX` and :mod:`voidgrad.rl`.
    """
    coefficient = costs - control_conditioned
    coefficient = coefficient.reshape(*coefficient.shape, *[1] * (b.ndim - coefficient.ndim))
    score_term = (coefficient * score(logits.detach(), b, kind)).mean(0)
    (reparam_term,) = _grad_or_zeros(
        (control_relaxed - control_conditioned).mean(0).sum(), [logits], create_graph
    )
    return score_term + reparam_term


def square_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """‖ĝ‖² = Σ_k ‖ĝ_k‖² over the gradient's tensors, in their graph (for :func:`variance_step`)."""
    total = sum((grad**2).sum() for grad in grads)
    assert isinstance(total, torch.Tensor)
    return total


def variance_step(
    optimizer: torch.optim.Optimizer, parameters: list[nn.Parameter], square_norm: torch.Tensor
) -> None:
    """One optimizer step on φ along ∂‖ĝ‖²/∂φ, an unbiased gradient of Var(ĝ) (module doc).

    ``square_norm`` is ‖ĝ‖² built with ``create_graph=True``; without a path
    to φ there is nothing to do.
    """
    if not square_norm.requires_grad:
        return
    phi_grads = torch.autograd.grad(square_norm, parameters, allow_unused=True)
    for parameter, grad in zip(parameters, phi_grads, strict=True):
        parameter.grad = None if grad is None else grad.detach()
    optimizer.step()


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
        train_control: step φ on the variance at each call (default).
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
        self.control = _check_control(control)
        super().__init__(list(control.parameters()), lr, optimizer, train_control, seed)

    def loss(self, evaluate: Evaluate, dist: Distribution, samples: int) -> torch.Tensor:
        if not dist.has_rsample:
            raise ValueError(
                f"LAX needs a reparameterizable distribution (has_rsample); {type(dist).__name__} "
                "has none: use vg.RELAX or vg.REBAR for Bernoulli and categorical variables"
            )
        check_fixed_support(dist, "LAX")
        with self.sampling():
            z = dist.rsample((samples,))
        fixed = z.detach()
        costs = evaluate(fixed)
        if not z.requires_grad:
            return costs.mean(0)
        kept = costs.ndim - 1
        log_prob = joint_log_prob(dist, fixed, kept)
        control, slope = control_and_slope(self.control, fixed, costs, self.train_control)
        # ⟨∂c/∂z(z̄), z(θ)⟩ has the θ-gradient of c_φ(z(θ)) at z̄, and keeps φ out of what
        # loss.backward() traverses once the variance step has changed φ in place.
        params = gradient_parameters(dist)
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
            self._train(grads)
        elif self.train_control:
            # The estimate below reaches θ regardless; only ĝ for φ's variance step needs them.
            raise ValueError(
                f"LAX cannot train its control on this {type(dist).__name__}: none of the "
                "tensors it holds requires grad (are its parameters inside a module, e.g. of a "
                "custom Transform?); pass train_control=False to use the control as it is"
            )
        else:
            self.last_square_norm = math.nan  # ĝ is not formed without the parameters
        routed = lax_objective(
            costs, log_prob, control.detach(), sum_trailing(slope.detach() * z, 1 + kept)
        )
        return surrogate_loss(costs.mean(0), routed)

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
        train_control: step φ on the variance at each call (default).
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
        self.control = None if control is None else _check_control(control)
        temperature = check_positive("temperature", temperature)
        if isinstance(eta, bool) or not isinstance(eta, int | float) or not math.isfinite(eta):
            raise ValueError(f"eta must be a finite number; got {eta!r}")
        self.eta = nn.Parameter(torch.tensor(float(eta), dtype=torch.float64))
        self.log_temperature = nn.Parameter(torch.tensor(temperature, dtype=torch.float64).log())
        parameters = [] if self.control is None else list(self.control.parameters())
        if self.relaxed_f:
            parameters += [self.eta, self.log_temperature]
        super().__init__(parameters, lr, optimizer, train_control, seed)

    @property
    def temperature(self) -> float:
        """The current λ."""
        return float(self.log_temperature.detach().exp())

    def _control(
        self, evaluate: Evaluate, z: torch.Tensor, costs: torch.Tensor, kind
    ) -> torch.Tensor:
        value = torch.zeros_like(costs)
        if self.relaxed_f:
            temperature = self.log_temperature.exp().to(z.dtype)
            relaxed = relax(z, kind, temperature)
            relaxed_costs = evaluate(relaxed, differentiable=True)
            check_connected(relaxed, relaxed_costs, type(self).__name__)
            value = value + self.eta.to(costs.dtype) * relaxed_costs
        if self.control is not None:
            value = value + apply_control(self.control, z, costs)
        return value

    def loss(self, evaluate: Evaluate, dist: Distribution, samples: int) -> torch.Tensor:
        kind, logits = discrete_logits(dist, type(self).__name__)
        with self.sampling():
            z = sample_relaxed(logits, kind, samples)
            b = threshold(z, kind).detach()
            conditioned = sample_conditional(logits, b, kind)
        costs = evaluate(b if self.relaxed_f else as_dist_sample(b, kind))
        if not logits.requires_grad:
            return costs.mean(0)
        grad = relax_gradient(
            costs,
            logits,
            b,
            kind,
            self._control(evaluate, z, costs, kind),
            self._control(evaluate, conditioned, costs, kind),
            self.train_control,
        )
        self._train([grad])
        return surrogate_loss(costs.mean(0), parameter_surrogate([grad], [logits], costs.ndim - 1))

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
        train_control: step η and λ on the variance at each call (default).
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
