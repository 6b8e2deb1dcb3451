"""vg.expectation: composition with autograd and torch.optim, counting, cost shapes, errors."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Normal

import voidgrad as vg


def test_torch_optim_fits_the_relax_toy() -> None:
    """min_θ E_{b~Bernoulli(σ(θ))}[(b − 0.45)²] is reached as σ(θ) → 0."""
    theta = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([theta], lr=0.1)
    estimator = vg.ScoreFunction("leave_one_out", seed=0)
    for _ in range(300):
        optimizer.zero_grad()
        vg.expectation(
            lambda b: (b[:, 0] - 0.45) ** 2, Bernoulli(logits=theta), 8, estimator
        ).backward()
        optimizer.step()
    assert torch.sigmoid(theta).item() < 0.05


def test_composes_with_a_network_and_other_terms() -> None:
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 3).double()
    x = torch.randn(2, dtype=torch.float64)
    logits = net(x)
    first = vg.expectation(
        lambda b: b.sum(-1), Bernoulli(logits=logits), 4, vg.ScoreFunction(seed=0)
    )
    second = vg.expectation(lambda z: (z**2).sum(-1), Normal(logits, 1.0), 4, vg.Pathwise(seed=0))
    (first + second + 0.1 * logits.pow(2).sum()).backward()
    assert net.weight.grad is not None and torch.isfinite(net.weight.grad).all()
    assert first.shape == () and second.shape == ()


def test_evaluations_are_counted_through_an_evaluator() -> None:
    evaluator = vg.Evaluator(lambda b: b.sum(), backend="serial")  # one call per sample
    theta = torch.zeros(4, requires_grad=True)
    vg.expectation(evaluator, Bernoulli(logits=theta), 6, vg.ScoreFunction(seed=0))
    vg.expectation(evaluator, Bernoulli(logits=theta), 6, vg.ScoreFunction(seed=1))
    assert evaluator.stats.evals == 12


def test_leading_batch_dimensions_are_independent_expectations() -> None:
    theta = torch.zeros(5, 3, requires_grad=True)
    loss = vg.expectation(lambda b: b.sum(-1), Bernoulli(logits=theta), 4, vg.ScoreFunction(seed=0))
    assert loss.shape == (5,)
    loss[2].backward()
    assert torch.equal(theta.grad[[0, 1, 3, 4]], torch.zeros(4, 3))


def test_default_estimator_is_the_score_function() -> None:
    theta = torch.zeros(2, requires_grad=True)
    vg.expectation(lambda b: b.sum(-1), Bernoulli(logits=theta), 4).backward()
    assert theta.grad is not None


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(dist="Bernoulli"), TypeError, "dist must be a torch.distributions.Distribution"),
        (dict(samples=0), ValueError, "samples must be a positive int; got 0"),
        (dict(estimator=vg.SPSA(0.1)), TypeError, "estimator must be a distribution estimator"),
        (dict(f=lambda b: b[:, :2]), ValueError, r"costs of shape \[N\] or .* got \(4, 2\)"),
        (dict(f=lambda b: b[:2, 0]), ValueError, r"leading dimension 4 .* got shape \(2,\)"),
        (dict(f=lambda b: b.sum(-1) / 0), vg.EvaluationError, "non-finite output at row 0"),
    ],
)
def test_bad_input(kwargs, error, message) -> None:
    theta = torch.ones(3, requires_grad=True)
    arguments = dict(
        f=lambda b: b.sum(-1), dist=Bernoulli(logits=theta), samples=4, estimator=vg.ScoreFunction()
    )
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        vg.expectation(**arguments)


def test_nan_costs_are_an_error_under_the_nan_policy_too() -> None:
    theta = torch.zeros(3, requires_grad=True)
    evaluator = vg.Evaluator(lambda b: float("nan") if b[0] else 1.0, on_error="nan")
    with pytest.raises(vg.EvaluationError, match="an expectation needs every sample's cost"):
        vg.expectation(evaluator, Bernoulli(logits=theta), 64, vg.ScoreFunction(seed=0))


def test_estimators_with_controls_compose_with_a_network_and_each_other() -> None:
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 3).double()
    control = torch.nn.Linear(3, 1).double()
    x = torch.randn(2, dtype=torch.float64)
    logits = net(x)
    relax = vg.expectation(
        lambda b: b.sum(-1), Bernoulli(logits=logits), 4, vg.RELAX(control, seed=0)
    )
    disarm = vg.expectation(lambda b: (b**2).sum(-1), Bernoulli(logits=logits), 4, vg.DisARM())
    lax = vg.expectation(
        lambda z: z.sum(-1), Normal(logits, 1.0), 4, vg.LAX(torch.nn.Linear(3, 1).double())
    )
    before = [p.grad.clone() for p in control.parameters()]  # set by the control's own step
    (relax + disarm + lax + logits.pow(2).sum()).backward()
    assert net.weight.grad is not None and torch.isfinite(net.weight.grad).all()
    for grad, parameter in zip(before, control.parameters(), strict=True):
        assert torch.equal(parameter.grad, grad)  # the user's backward never reaches φ


def test_rebar_fits_the_relax_toy_with_torch_optim() -> None:
    theta = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([theta], lr=0.1)
    estimator = vg.REBAR(seed=0)
    for _ in range(200):
        optimizer.zero_grad()
        vg.expectation(
            lambda b: (b[:, 0] - 0.45) ** 2, Bernoulli(logits=theta), 4, estimator
        ).backward()
        optimizer.step()
    assert torch.sigmoid(theta).item() < 0.05


def test_relaxed_estimators_count_their_evaluations() -> None:
    theta = torch.zeros(3, requires_grad=True)
    evaluator = vg.Evaluator(lambda b: b.sum(-1), backend="vectorized")
    vg.expectation(evaluator, Bernoulli(logits=theta), 5, vg.REBAR(seed=0))
    assert evaluator.stats.evals == 15  # f at b, at σ_λ(z) and at σ_λ(z̃)
    vg.expectation(evaluator, Bernoulli(logits=theta), 6, vg.DisARM(seed=0))
    assert evaluator.stats.evals == 21
