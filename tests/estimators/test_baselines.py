"""Baselines: their values, state and argument checks."""

from __future__ import annotations

import io

import pytest
import torch

import voidgrad as vg


def test_leave_one_out_is_the_mean_of_the_others() -> None:
    costs = torch.tensor([[1.0, 10.0], [2.0, 20.0], [6.0, 30.0]])
    expected = torch.tensor([[4.0, 25.0], [3.5, 20.0], [1.5, 15.0]])
    torch.testing.assert_close(vg.baselines.LeaveOneOut()(costs), expected)


def test_moving_average_is_bias_corrected_and_uses_only_earlier_batches() -> None:
    baseline = vg.baselines.MovingAverage(decay=0.5)
    assert torch.equal(baseline(torch.ones(3)), torch.zeros(3))
    baseline.update(torch.tensor([2.0, 4.0]))
    assert baseline.value == pytest.approx(3.0)  # (0.5 * 3) / (1 - 0.5)
    baseline.update(torch.tensor([6.0]))
    assert baseline.value == pytest.approx((0.25 * 3 + 0.5 * 6) / 0.75)
    assert torch.equal(baseline(torch.zeros(2)), torch.full((2,), baseline.value))


def test_constant() -> None:
    assert torch.equal(vg.baselines.Constant(2.5)(torch.zeros(2, 3)), torch.full((2, 3), 2.5))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: vg.baselines.MovingAverage(decay=1.0), r"decay must be a number in \[0, 1\)"),
        (lambda: vg.baselines.MovingAverage(decay=False), r"decay must be a number in \[0, 1\)"),
        (lambda: vg.baselines.Constant(float("inf")), "value must be a finite number"),
    ],
)
def test_bad_arguments(make, message) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_learned_baseline_fits_the_mean_cost_of_each_expectation() -> None:
    torch.manual_seed(0)
    baseline = vg.baselines.Learned(torch.nn.Linear(2, 1), lr=0.05)
    logits = torch.tensor([[2.0, 0.0], [-1.0, 1.0]])
    dist = torch.distributions.Bernoulli(logits=logits)
    costs = torch.tensor([[1.0, 5.0], [3.0, 7.0]])  # [N = 2, B = 2]: means 2 and 6
    for _ in range(2000):
        baseline.update(costs, dist)
    torch.testing.assert_close(
        baseline(costs, dist), torch.tensor([[2.0, 6.0]] * 2), atol=1e-3, rtol=0
    )


def test_learned_baseline_errors() -> None:
    with pytest.raises(ValueError, match="module has no parameters to learn"):
        vg.baselines.Learned(torch.nn.Identity())
    with pytest.raises(TypeError, match="module must be a torch.nn.Module"):
        vg.baselines.Learned(lambda x: x)
    baseline = vg.baselines.Learned(torch.nn.Linear(2, 3))
    dist = torch.distributions.Bernoulli(logits=torch.zeros(2))
    with pytest.raises(ValueError, match=r"one value per expectation, \(\) .*got shape \(3,\)"):
        baseline(torch.zeros(4), dist)
    with pytest.raises(ValueError, match="needs the distribution the costs came from"):
        baseline(torch.zeros(4))
    with pytest.raises(TypeError, match="features must map a distribution to a tensor; got int"):
        vg.baselines.Learned(torch.nn.Linear(2, 1), features=3)


def test_a_baseline_module_that_fails_on_its_features_is_named() -> None:
    baseline = vg.baselines.Learned(torch.nn.Linear(5, 1))  # the logits have 2 entries
    dist = torch.distributions.Bernoulli(logits=torch.zeros(2))
    with pytest.raises(ValueError, match=r"baseline module Linear failed on features of shape"):
        baseline(torch.zeros(4), dist)


class Counting(vg.baselines.Baseline):
    """A baseline written before fit_loss and step: it learns in update(costs, dist)."""

    def __init__(self) -> None:
        self.batches = 0

    def __call__(self, costs: torch.Tensor, dist=None) -> torch.Tensor:
        return torch.zeros_like(costs)

    def update(self, costs: torch.Tensor, dist=None) -> None:
        self.batches += 1


def test_a_baseline_that_learns_in_update_is_updated_once_per_trained_estimate() -> None:
    baseline = Counting()
    estimator = vg.ScoreFunction(baseline, seed=0)
    dist = torch.distributions.Bernoulli(logits=torch.zeros(2, requires_grad=True))
    vg.expectation(lambda b: b.sum(-1), dist, 4, estimator)
    assert baseline.batches == 1
    vg.expectation(lambda b: b.sum(-1), dist, 4, estimator, train=False)
    assert baseline.batches == 1


def test_update_is_a_step_on_the_fit_loss() -> None:
    dist = torch.distributions.Bernoulli(logits=torch.tensor([2.0, 0.0]))
    costs = torch.tensor([1.0, 5.0, 3.0])
    stepped, updated = learned_pair(seed=1)
    stepped.step(stepped.fit_loss(costs, dist))
    updated.update(costs, dist)
    assert torch.equal(stepped(costs, dist), updated(costs, dist))
    assert not torch.equal(stepped(costs, dist), learned_pair(seed=1)[0](costs, dist))


def learned_pair(seed: int) -> tuple[vg.baselines.Learned, vg.baselines.Learned]:
    """Two Learned baselines with the same initial weights."""
    pair = []
    for _ in range(2):
        torch.manual_seed(seed)
        pair.append(vg.baselines.Learned(torch.nn.Linear(2, 1), lr=0.05))
    return pair[0], pair[1]


@pytest.mark.parametrize(
    ("make", "make_fresh"),
    [
        (lambda: vg.baselines.MovingAverage(0.8), lambda: vg.baselines.MovingAverage(0.8)),
        (lambda: learned_pair(seed=2)[0], lambda: learned_pair(seed=3)[0]),
    ],
    ids=["moving-average", "learned"],
)
def test_baseline_states_round_trip_through_a_weights_only_file(make, make_fresh) -> None:
    dist = torch.distributions.Bernoulli(logits=torch.tensor([2.0, 0.0]))
    costs = torch.tensor([1.0, 5.0, 3.0])
    baseline, resumed = make(), make_fresh()
    for _ in range(3):
        baseline.update(costs, dist)
    buffer = io.BytesIO()
    torch.save(baseline.state_dict(), buffer)
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for _ in range(2):
        baseline.update(costs + 1, dist)
        resumed.update(costs + 1, dist)
        assert torch.equal(baseline(costs, dist), resumed(costs, dist))


def test_stateless_baselines_have_an_empty_state() -> None:
    assert vg.baselines.LeaveOneOut().state_dict() == vg.baselines.Constant(1.0).state_dict() == {}
