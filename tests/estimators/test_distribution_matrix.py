"""Every distribution estimator on every family: the gradient of every parameter, or a refusal.

Each case draws K independent estimates at once: the parameters are leaves of
shape ``[K, ...]`` (K copies of one point), f keeps the K rows apart
(costs ``[N, K]``), so row k of each leaf's ``.grad`` is the k-th estimate. The
truth is the gradient of a closed form (Gaussian, Beta and Gamma moments) or of
an enumeration, checked with the CLT recipe of TESTING.md (z = 5).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.distributions import (
    Bernoulli,
    Beta,
    Categorical,
    Distribution,
    Gamma,
    Independent,
    LogNormal,
    LowRankMultivariateNormal,
    MultivariateNormal,
    Normal,
    OneHotCategorical,
    Pareto,
    TransformedDistribution,
    Uniform,
)
from torch.distributions.transforms import AffineTransform, ExpTransform

import voidgrad as vg
from tests.conftest import assert_unbiased, fails_unbiased_check
from voidgrad.estimators.distributional import gradient_parameters

K = 1000
N = 4
DTYPE = torch.float64
A = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=DTYPE)
W = torch.tensor([1.0, -2.0], dtype=DTYPE)


def rows(*values: list) -> list[torch.Tensor]:
    """Leaves of shape [K, ...]: K copies of each value, requiring grad."""
    tensors = [torch.tensor(value, dtype=DTYPE) for value in values]
    return [t.expand(K, *t.shape).clone().requires_grad_(True) for t in tensors]


def quadratic(z: torch.Tensor) -> torch.Tensor:
    """zᵀAz + wᵀz per row: ``[N, K, 2] -> [N, K]``."""
    return torch.einsum("nki,ij,nkj->nk", z, A, z) + z @ W


def quadratic_mean(mean: torch.Tensor, covariance: torch.Tensor) -> torch.Tensor:
    """E[zᵀAz + wᵀz] = μᵀAμ + tr(AΣ) + wᵀμ for z with that mean and covariance."""
    return (
        torch.einsum("ki,ij,kj->k", mean, A, mean)
        + torch.einsum("ij,kji->k", A, covariance)
        + mean @ W
    )


def moments(z: torch.Tensor) -> torch.Tensor:
    """3z + 2z², summed over the event: ``[N, K, 2] -> [N, K]``."""
    return (3 * z + 2 * z**2).sum(-1)


@dataclass
class Case:
    """K copies of a distribution, a cost, and the exact expectation per row."""

    leaves: list[torch.Tensor]
    dist: Distribution
    f: Callable[[torch.Tensor], torch.Tensor]
    expectation: Callable[[], torch.Tensor]
    #: which entries of each leaf mean something (the lower triangle of a scale_tril)
    masks: tuple[torch.Tensor | None, ...] = ()

    def truth(self) -> list[torch.Tensor]:
        grads = torch.autograd.grad(self.expectation().sum(), self.leaves)
        return [grad[0] for grad in grads]


def normal() -> Case:
    loc, scale = rows([0.3, -0.5], [0.8, 1.3])
    dist = Normal(loc, scale)
    return Case([loc, scale], dist, quadratic, lambda: quadratic_mean(loc, (scale**2).diag_embed()))


def independent_normal() -> Case:  # the supershape problem's distribution
    case = normal()
    case.dist = Independent(case.dist, 1)
    return case


def independent_log_normal() -> Case:  # the supershape problem's: a TransformedDistribution
    loc, scale = rows([0.1, -0.3], [0.4, 0.6])

    def expectation() -> torch.Tensor:  # E[z] = exp(μ + σ²/2), E[z²] = exp(2μ + 2σ²)
        return (3 * torch.exp(loc + scale**2 / 2) + 2 * torch.exp(2 * loc + 2 * scale**2)).sum(-1)

    return Case([loc, scale], Independent(LogNormal(loc, scale), 1), moments, expectation)


def mvn_scale_tril() -> Case:
    loc, tril = rows([0.3, -0.5], [[1.0, 0.0], [0.4, 0.7]])
    dist = MultivariateNormal(loc, scale_tril=tril)
    lower = torch.tril(torch.ones(2, 2, dtype=torch.bool))
    return Case(
        [loc, tril], dist, quadratic, lambda: quadratic_mean(loc, tril @ tril.mT), (None, lower)
    )


def mvn_covariance() -> Case:
    loc, covariance = rows([0.3, -0.5], [[1.0, 0.4], [0.4, 0.65]])
    dist = MultivariateNormal(loc, covariance_matrix=covariance)
    return Case([loc, covariance], dist, quadratic, lambda: quadratic_mean(loc, covariance))


def low_rank_mvn() -> Case:
    loc, factor, diagonal = rows([0.3, -0.5], [[0.6], [-0.9]], [0.5, 0.8])
    dist = LowRankMultivariateNormal(loc, factor, diagonal)

    def expectation() -> torch.Tensor:
        return quadratic_mean(loc, factor @ factor.mT + diagonal.diag_embed())

    return Case([loc, factor, diagonal], dist, quadratic, expectation)


def beta() -> Case:
    a, b = rows([2.0, 0.7], [1.5, 3.0])

    def expectation() -> torch.Tensor:
        mean = a / (a + b)
        variance = a * b / ((a + b) ** 2 * (a + b + 1))
        return (3 * mean + 2 * (variance + mean**2)).sum(-1)

    return Case([a, b], Beta(a, b), moments, expectation)


def gamma() -> Case:
    shape, rate = rows([2.0, 0.7], [1.5, 3.0])

    def expectation() -> torch.Tensor:  # E[z] = k/r, E[z²] = k(k + 1)/r²
        return (3 * shape / rate + 2 * shape * (shape + 1) / rate**2).sum(-1)

    return Case([shape, rate], Gamma(shape, rate), moments, expectation)


def uniform() -> Case:
    low, high = rows([0.0, -1.0], [1.0, 2.0])

    def expectation() -> torch.Tensor:  # E[z²] = (l² + lh + h²)/3
        return ((low**2 + low * high + high**2) / 3).sum(-1)

    return Case([low, high], Uniform(low, high), lambda z: (z**2).sum(-1), expectation)


CONTINUOUS = {
    "normal": normal,
    "independent-normal": independent_normal,
    "independent-log-normal": independent_log_normal,
    "mvn-scale-tril": mvn_scale_tril,
    "mvn-covariance": mvn_covariance,
    "low-rank-mvn": low_rank_mvn,
    "beta": beta,
    "gamma": gamma,
}

TABLE = torch.tensor([[0.0, 1.0, 4.0], [2.0, -1.0, 0.5]], dtype=DTYPE)
TARGET = torch.tensor([0.45, 0.2, 0.9], dtype=DTYPE)
STATES = torch.cartesian_prod(*[torch.tensor([0.0, 1.0], dtype=DTYPE)] * 3)  # [8, 3]


def bernoulli_cost(b: torch.Tensor) -> torch.Tensor:
    """A non-linear cost of three bits (relaxed inputs too): ``[..., 3] -> [...]``."""
    return ((b - TARGET) ** 2).sum(-1) + 2 * b[..., 0] * b[..., 2]


def bernoulli(parameter: str) -> Case:
    (theta,) = rows([0.3, -0.8, 1.2] if parameter == "logits" else [0.3, 0.6, 0.8])

    def expectation() -> torch.Tensor:
        p = (torch.sigmoid(theta) if parameter == "logits" else theta)[:, None, :]
        probability = (STATES * p + (1 - STATES) * (1 - p)).prod(-1)  # [K, 8]
        return (probability * bernoulli_cost(STATES)).sum(-1)

    return Case([theta], Bernoulli(**{parameter: theta}), bernoulli_cost, expectation)


def one_hot_cost(x: torch.Tensor) -> torch.Tensor:
    """(table · x)² per variable, summed: one-hot (or relaxed) ``[N, K, 2, 3] -> [N, K]``."""
    return ((x * TABLE).sum(-1) ** 2).sum(-1)


def index_cost(b: torch.Tensor) -> torch.Tensor:
    """The same cost for indices ``[N, K, 2]``."""
    return (TABLE.expand(*b.shape, 3).gather(-1, b.long()[..., None])[..., 0] ** 2).sum(-1)


def categorical(family: type, parameter: str) -> Case:
    values = [[0.3, -0.8, 1.2], [0.0, 0.5, -0.5]]
    (theta,) = rows(values if parameter == "logits" else [[0.2, 0.3, 0.5], [0.6, 0.1, 0.3]])

    def expectation() -> torch.Tensor:
        p = theta.softmax(-1) if parameter == "logits" else theta / theta.sum(-1, keepdim=True)
        return (p * TABLE**2).sum((-1, -2))

    f = one_hot_cost if family is OneHotCategorical else index_cost
    return Case([theta], family(**{parameter: theta}), f, expectation)


def relaxed(family: str, case: Case) -> Case:
    """The case for estimators that evaluate f at relaxed points: a Categorical's are one-hot."""
    if family.startswith("categorical"):
        case.f = one_hot_cost
    return case


DISCRETE = {
    "bernoulli-logits": lambda: bernoulli("logits"),
    "bernoulli-probs": lambda: bernoulli("probs"),
    "categorical-logits": lambda: categorical(Categorical, "logits"),
    "categorical-probs": lambda: categorical(Categorical, "probs"),
    "one-hot-logits": lambda: categorical(OneHotCategorical, "logits"),
    "one-hot-probs": lambda: categorical(OneHotCategorical, "probs"),
}


class Linear(nn.Module):
    """c_φ(z) = a·flatten(z) + b per sample and row: ``[N, K, ...] -> [N, K]``."""

    def __init__(self, inputs: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.Linear(inputs, 1).double()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layer(z.reshape(*z.shape[:2], -1)).squeeze(-1)


class DetachedSquare(nn.Module):
    """c(z) = a·|z|², with no gradient through z: LAX without its reparameterization term.

    E[c] depends on the scale, so dropping ∇E[c] biases the scale's gradient by −∇E[c].
    """

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(2.0, dtype=DTYPE))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.a * (z.detach() ** 2).sum(-1)


def estimates(case: Case, estimator: vg.DistributionEstimator) -> list[torch.Tensor]:
    """The K estimates of each leaf's gradient: one backward of the K independent losses."""
    vg.expectation(case.f, case.dist, N, estimator).sum().backward()
    return [leaf.grad for leaf in case.leaves]


def assert_matches_truth(case: Case, estimator: vg.DistributionEstimator) -> None:
    grads = estimates(case, estimator)
    masks = case.masks or (None,) * len(grads)
    for grad, truth, mask in zip(grads, case.truth(), masks, strict=True):
        keep = torch.ones_like(truth, dtype=torch.bool) if mask is None else mask
        assert_unbiased(grad[:, keep], truth[keep])


CONTINUOUS_ESTIMATORS = {
    "score": lambda: vg.ScoreFunction(baseline="leave_one_out", seed=1),
    "pathwise": lambda: vg.Pathwise(seed=1),
    "lax": lambda: vg.LAX(Linear(2), seed=1, train_control=False),
    "lax-training": lambda: vg.LAX(Linear(2), seed=1),
}


@pytest.mark.parametrize("estimator", CONTINUOUS_ESTIMATORS)
@pytest.mark.parametrize("family", CONTINUOUS)
def test_continuous_estimators_get_every_parameter(family: str, estimator: str) -> None:
    """LAX gave 0 for MultivariateNormal(scale_tril) and Beta, wrong values for the
    covariance and low-rank forms, and crashed on Independent: it differentiated the
    tensors ``arg_constraints`` names, which torch does not sample through."""
    assert_matches_truth(CONTINUOUS[family](), CONTINUOUS_ESTIMATORS[estimator]())


def test_the_check_has_power_against_lax_without_its_reparameterization_term() -> None:
    case = mvn_scale_tril()
    estimator = vg.LAX(DetachedSquare(), seed=1, train_control=False)
    grads = estimates(case, estimator)
    assert fails_unbiased_check(grads[1][:, 1, 0], case.truth()[1][1, 0])


def test_lax_gets_a_scale_shared_by_independent_expectations() -> None:
    """One scale_tril for all rows: its gradient is the sum over the expectations."""
    loc = torch.tensor([[0.3, -0.5], [1.0, 0.2]], dtype=DTYPE, requires_grad=True)
    tril = torch.tensor([[1.0, 0.0], [0.4, 0.7]], dtype=DTYPE, requires_grad=True)
    estimator = vg.LAX(Linear(2), seed=2)
    draws = []
    for _ in range(400):
        tril.grad = None
        dist = MultivariateNormal(loc, scale_tril=tril)
        vg.expectation(quadratic, dist, N, estimator).sum().backward()
        draws.append(tril.grad[1, 0].clone())
    (truth,) = torch.autograd.grad(
        quadratic_mean(loc, (tril @ tril.mT).expand(2, 2, 2)).sum(), tril
    )
    assert_unbiased(torch.stack(draws)[:, None], truth[1, 0, None])


def test_lax_reaches_the_network_that_built_the_distribution() -> None:
    """loss.backward() and autograd.grad of an intermediate tensor both see ĝ."""
    torch.manual_seed(0)
    net = nn.Linear(1, 4).double()
    x = torch.ones(K, 1, dtype=DTYPE)
    out = net(x)
    loc, raw = out[:, :2], out[:, 2:]
    scale = nn.functional.softplus(raw)
    loss = vg.expectation(quadratic, Independent(Normal(loc, scale), 1), N, vg.LAX(Linear(2)))
    (loc_grad,) = torch.autograd.grad(loss.sum(), loc, retain_graph=True)
    truth = torch.autograd.grad(
        quadratic_mean(loc, (scale**2).diag_embed()).sum(), loc, retain_graph=True
    )[0]
    assert_unbiased(loc_grad, truth[0])
    loss.sum().backward()
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0


class ModuleShift(torch.distributions.transforms.Transform):
    """z ↦ z + net(1): a transform whose parameters live in a module, not in tensors it holds."""

    domain = codomain = torch.distributions.constraints.real
    bijective = True

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(torch.ones(1, dtype=x.dtype)).squeeze()

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y - self.net(torch.ones(1, dtype=y.dtype)).squeeze()

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def test_lax_on_parameters_it_cannot_find_refuses_to_train_and_still_estimates() -> None:
    torch.manual_seed(0)
    net = nn.Linear(1, 1).double()
    dist = TransformedDistribution(Normal(torch.zeros((), dtype=DTYPE), 1.0), [ModuleShift(net)])
    f = lambda z: z  # noqa: E731  (E[z] = shift: its gradient in the shift is 1)
    with pytest.raises(ValueError, match="cannot train its control .* train_control=False"):
        vg.expectation(f, dist, N, vg.LAX(Linear(1)))  # was a raw RuntimeError from grad()
    loss = vg.expectation(f, dist, 4000, vg.LAX(Linear(1), train_control=False, seed=0))
    loss.backward()  # one estimate from 4000 samples: its standard error is about 0.03
    assert net.bias.grad is not None and net.bias.grad.item() == pytest.approx(1.0, abs=0.15)


def test_lax_trains_its_control_on_a_multivariate_normal() -> None:
    case = mvn_scale_tril()
    control = Linear(2)
    before = [p.detach().clone() for p in control.parameters()]
    estimator = vg.LAX(control, seed=1)
    estimates(case, estimator)
    assert estimator.last_square_norm > 0
    assert any(not torch.equal(b, p) for b, p in zip(before, control.parameters(), strict=True))


DISCRETE_ESTIMATORS = {
    "score": lambda n: vg.ScoreFunction(baseline="leave_one_out", seed=1),
    "rebar": lambda n: vg.REBAR(seed=1),
    "relax": lambda n: vg.RELAX(Linear(n), seed=1),
    "disarm": lambda n: vg.DisARM(seed=1),
}


@pytest.mark.parametrize(
    ("family", "estimator"),
    [
        (family, estimator)
        for estimator in DISCRETE_ESTIMATORS
        for family in DISCRETE
        if estimator != "disarm" or family.startswith("bernoulli")  # DisARM: Bernoulli only
    ],
)
def test_discrete_estimators_get_every_parameter(family: str, estimator: str) -> None:
    case = DISCRETE[family]()
    if estimator == "rebar":
        case = relaxed(family, case)
    make = DISCRETE_ESTIMATORS[estimator]
    assert_matches_truth(case, make(3 if family.startswith("bernoulli") else 6))


@pytest.mark.parametrize("family", DISCRETE)
@pytest.mark.parametrize("estimator", [vg.GumbelSoftmax, vg.StraightThrough])
def test_relaxed_estimators_differentiate_every_discrete_family(family, estimator) -> None:
    """Biased by design, but their gradient reaches the parameter however it was passed."""
    case = relaxed(family, DISCRETE[family]())
    grads = estimates(case, estimator(seed=1))
    assert grads[0] is not None and bool(torch.isfinite(grads[0]).all())
    assert grads[0].abs().sum() > 0


REFUSED = [
    (vg.Pathwise, "bernoulli-logits", "has_rsample"),
    (lambda: vg.LAX(Linear(3)), "bernoulli-probs", "has_rsample"),
    (lambda: vg.LAX(Linear(6)), "categorical-logits", "has_rsample"),
    (vg.GumbelSoftmax, "normal", "needs a Bernoulli, Categorical or OneHotCategorical"),
    (vg.StraightThrough, "mvn-scale-tril", "needs a Bernoulli, Categorical or OneHot"),
    (vg.REBAR, "beta", "needs a Bernoulli, Categorical or OneHotCategorical"),
    (lambda: vg.RELAX(Linear(2)), "independent-normal", "needs a Bernoulli, Categorical"),
    (vg.DisARM, "categorical-probs", "needs a Bernoulli distribution"),
    (vg.DisARM, "gamma", "needs a Bernoulli distribution"),
]


@pytest.mark.parametrize(("make", "family", "message"), REFUSED)
def test_families_an_estimator_cannot_differentiate_are_refused(make, family, message) -> None:
    case = {**CONTINUOUS, **DISCRETE}[family]()
    with pytest.raises(ValueError, match=message):
        vg.expectation(case.f, case.dist, N, make())


# --- a support that moves with θ --------------------------------------------------------------


def shifted_unit_uniform() -> Distribution:
    shift = torch.zeros(2, dtype=DTYPE, requires_grad=True)
    return TransformedDistribution(
        Uniform(torch.zeros(2, dtype=DTYPE), 1.0), AffineTransform(shift, 1.0)
    )


MOVING = {
    "uniform": lambda: uniform().dist,
    "independent-uniform": lambda: Independent(uniform().dist, 1),
    "transformed-uniform": lambda: TransformedDistribution(uniform().dist, ExpTransform()),
    "shifted-unit-uniform": shifted_unit_uniform,
    "pareto": lambda: Pareto(torch.ones(2, dtype=DTYPE, requires_grad=True), 3.0),
}


@pytest.mark.parametrize("family", MOVING)
@pytest.mark.parametrize(
    "make",
    [
        pytest.param(vg.ScoreFunction, id="score"),
        pytest.param(lambda: vg.ScoreFunction(baseline="leave_one_out"), id="score-loo"),
        pytest.param(lambda: vg.LAX(Linear(2)), id="lax"),
    ],
)
def test_a_support_that_moves_with_theta_is_refused(family, make) -> None:
    """∇E[f] has a boundary term there that ∇ log p cannot see (see the power test)."""
    dist = MOVING[family]()
    with pytest.raises(ValueError, match=r"support depends on the parameters.*boundary term"):
        vg.expectation(lambda z: z.sum(-1), dist, N, make())


def test_the_score_function_on_a_moving_support_is_biased() -> None:
    """Why the refusal: the plain score estimate, formed by hand, fails the CLT check."""
    case = uniform()
    low = case.leaves[0]
    z = case.dist.sample((N,))
    score_term = (case.f(z).detach() * case.dist.log_prob(z).sum(-1)).mean(0)
    score_term.sum().backward()
    assert fails_unbiased_check(low.grad, case.truth()[0])


def test_pathwise_differentiates_a_moving_support() -> None:
    assert_matches_truth(uniform(), vg.Pathwise(seed=1))


def test_a_fixed_support_is_accepted() -> None:
    """Bounds outside the graph, or a shift of the whole real line, move nothing."""
    bounds = Uniform(torch.zeros(2, dtype=DTYPE), torch.ones(2, dtype=DTYPE))
    assert not vg.expectation(lambda z: z.sum(-1), bounds, N).requires_grad
    shift = torch.zeros(2, dtype=DTYPE, requires_grad=True)
    shifted = TransformedDistribution(
        Normal(torch.zeros(2, dtype=DTYPE), 1.0), AffineTransform(shift, 1.0)
    )
    vg.expectation(lambda z: z.sum(-1), shifted, 1000, vg.ScoreFunction(seed=0)).backward()
    assert shift.grad is not None


# --- which tensors LAX differentiates ---------------------------------------------------------


def test_gradient_parameters_are_the_tensors_torch_samples_through() -> None:
    loc = torch.zeros(2, dtype=DTYPE, requires_grad=True)
    tril = torch.eye(2, dtype=DTYPE, requires_grad=True)
    found = gradient_parameters(MultivariateNormal(loc, scale_tril=tril))
    assert any(t is tril for t in found) and len(found) == 2  # L and the expanded loc

    a = torch.ones(2, dtype=DTYPE, requires_grad=True)
    (stacked,) = gradient_parameters(Beta(a, a + 1))
    assert stacked.shape == (2, 2)  # the concentrations of the inner Dirichlet

    base = Normal(loc, tril.diagonal())
    assert {id(t) for t in gradient_parameters(Independent(base, 1))} == {
        id(base.loc),
        id(base.scale),
    }


def test_a_tensor_derived_from_another_is_not_counted_twice() -> None:
    logits = torch.zeros(3, dtype=DTYPE, requires_grad=True)
    dist = Bernoulli(logits=logits)
    _ = dist.probs  # cached from the logits
    assert gradient_parameters(dist) == [logits]
