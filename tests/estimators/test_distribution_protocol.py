"""Every distribution estimator on the ask/tell protocol: replay, who trains, state, bad input."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Distribution, Normal

import voidgrad as vg
from tests.estimators.test_score import bernoulli_cost
from voidgrad.estimators.distributional import estimate
from voidgrad.estimators.protocol import Estimate


def control(inputs: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(inputs, 4), nn.Tanh(), nn.Linear(4, 1), nn.Flatten(0)).double()


def learned_baseline(seed: int) -> vg.baselines.Learned:
    torch.manual_seed(seed)
    return vg.baselines.Learned(nn.Linear(3, 1).double(), lr=0.1)


def gaussian_cost(z: torch.Tensor) -> torch.Tensor:
    return torch.cos(z).sum(-1)


@dataclass(frozen=True)
class Case:
    """An estimator (made from a seed, which also sets its control's weights) and its problem."""

    make: Callable[[int], vg.DistributionEstimator]
    gaussian: bool = False
    learns: bool = False

    def params(self) -> list[torch.Tensor]:
        if self.gaussian:
            loc = torch.tensor([0.7, -0.2], dtype=torch.float64)
            return [loc.requires_grad_(True), torch.tensor([1.3, 0.5], dtype=torch.float64)]
        return [torch.tensor([0.3, -1.0, 0.8], dtype=torch.float64, requires_grad=True)]

    def dist(self, params: list[torch.Tensor]) -> Distribution:
        return Normal(*params) if self.gaussian else Bernoulli(logits=params[0])

    @property
    def f(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return gaussian_cost if self.gaussian else bernoulli_cost


CASES = {
    "score": Case(lambda s: vg.ScoreFunction(seed=s)),
    "score-leave-one-out": Case(lambda s: vg.ScoreFunction("leave_one_out", seed=s)),
    "score-moving-average": Case(lambda s: vg.ScoreFunction("moving_average", seed=s), learns=True),
    "score-learned": Case(lambda s: vg.ScoreFunction(learned_baseline(s), seed=s), learns=True),
    "pathwise": Case(lambda s: vg.Pathwise(seed=s), gaussian=True),
    "gumbel-softmax": Case(lambda s: vg.GumbelSoftmax(0.5, seed=s)),
    "gumbel-softmax-hard": Case(lambda s: vg.GumbelSoftmax(0.5, hard=True, seed=s)),
    "straight-through": Case(lambda s: vg.StraightThrough(seed=s)),
    "disarm": Case(lambda s: vg.DisARM(seed=s)),
    "lax": Case(lambda s: vg.LAX(control(2, s), seed=s), gaussian=True, learns=True),
    "relax": Case(lambda s: vg.RELAX(control(3, s), seed=s), learns=True),
    "relax-relaxed-f": Case(lambda s: vg.RELAX(control(3, s), relaxed_f=True, seed=s), learns=True),
    "rebar": Case(lambda s: vg.REBAR(seed=s), learns=True),
}
LEARNING = {name: case for name, case in CASES.items() if case.learns}


def same(a: Any, b: Any) -> bool:
    """Bit-for-bit equality of nested dicts, lists, tensors and numbers."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b or (a != a and b != b)  # NaN where nothing was measured yet


def learned(estimator: vg.DistributionEstimator) -> dict[str, Any]:
    """What the estimator has learned: its state less the random stream and the last ‖ĝ‖²."""
    skip = {"generator", "last_square_norm"}
    return {k: v for k, v in estimator.state_dict().items() if k not in skip}


def by_hand(case: Case, estimator: vg.DistributionEstimator, update: bool = True):
    """One step of ask → Evaluator → tell → backward (→ update); its numbers."""
    params = case.params()
    evaluator = vg.Evaluator(case.f, backend="vectorized")
    query = estimator.ask(case.dist(params), 4)
    costs = evaluator(query.inputs, query.seeds, differentiable=query.differentiable)
    result = estimator.tell(query, costs)
    assert result.loss is not None
    result.loss.backward()
    if update:
        estimator.update(result)
    return query.inputs.detach(), query.seeds, result.value, params[0].grad


def through_expectation(case: Case, estimator: vg.DistributionEstimator, train: bool = True):
    """One step of vg.expectation(...).backward(); its value and gradient."""
    params = case.params()
    loss = vg.expectation(case.f, case.dist(params), 4, estimator, train=train)
    loss.backward()
    return loss.detach(), params[0].grad


# --- replay -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_ask_tell_replays_bit_for_bit_and_is_what_expectation_computes(name: str) -> None:
    case = CASES[name]
    first, second, bridged = case.make(3), case.make(3), case.make(3)
    for _ in range(2):  # the second step runs on what the first one learned
        inputs, seeds, value, grad = by_hand(case, first)
        again = by_hand(case, second)
        assert all(same(a, b) for a, b in zip((inputs, seeds, value, grad), again, strict=True))
        assert seeds.dtype == torch.int64 and seeds.shape == (inputs.shape[0],)
        assert same([value, grad], list(through_expectation(case, bridged)))


def test_a_seeded_estimator_hands_its_query_seeds_to_f_and_an_unseeded_one_does_not() -> None:
    seen: list[Any] = []

    def f(b: torch.Tensor, seed: torch.Tensor | None = None) -> torch.Tensor:
        seen.append(seed)
        return bernoulli_cost(b)

    logits = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    vg.expectation(f, Bernoulli(logits=logits), 5, vg.ScoreFunction(seed=9))
    query = vg.ScoreFunction(seed=9).ask(Bernoulli(logits=logits), 5)
    assert torch.equal(seen[0], query.seeds)
    vg.expectation(f, Bernoulli(logits=logits), 5, vg.ScoreFunction())
    assert seen[1] is None  # what the Evaluator gives f, as before the query had seeds


def test_unseeded_estimators_sample_and_move_the_global_stream_as_dist_sample_does() -> None:
    dist = Bernoulli(logits=torch.zeros(6))
    torch.manual_seed(5)
    expected = dist.sample((4,))
    after = torch.get_rng_state()
    torch.manual_seed(5)
    query = vg.ScoreFunction().ask(dist, 4)  # constructing it draws nothing either
    assert torch.equal(query.inputs, expected)
    assert torch.equal(torch.get_rng_state(), after)


# --- who trains -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LEARNING))
def test_without_training_computing_the_loss_twice_changes_nothing(name: str) -> None:
    case = LEARNING[name]
    estimator = case.make(4)
    before = learned(estimator)
    for _ in range(2):
        through_expectation(case, estimator, train=False)
    assert same(learned(estimator), before)


@pytest.mark.parametrize("name", list(LEARNING))
def test_ask_and_tell_train_nothing(name: str) -> None:
    case = LEARNING[name]
    estimator = case.make(4)
    before = learned(estimator)
    by_hand(case, estimator, update=False)
    assert same(learned(estimator), before)


@pytest.mark.parametrize("name", list(LEARNING))
def test_one_update_is_one_step_of_what_expectation_trains(name: str) -> None:
    case = LEARNING[name]
    stepped, trained = case.make(5), case.make(5)
    before = learned(stepped)
    params = case.params()
    result = estimate(case.f, case.dist(params), 4, stepped)
    stepped.update(result)
    value, _ = through_expectation(case, trained)
    assert torch.equal(result.value, value)
    assert not same(learned(stepped), before)
    assert same(learned(stepped), learned(trained))


@pytest.mark.parametrize("name", list(LEARNING))
def test_update_before_or_after_the_backward_pass_gives_the_same_numbers(name: str) -> None:
    case = LEARNING[name]
    first, second = case.make(6), case.make(6)
    for estimator, update_first in ((first, True), (second, False)):
        params = case.params()
        result = estimate(case.f, case.dist(params), 4, estimator)
        assert result.loss is not None
        if update_first:
            estimator.update(result)
        result.loss.backward()
        if not update_first:
            estimator.update(result)
        estimator.grad = params[0].grad  # type: ignore[attr-defined]
    assert torch.equal(first.grad, second.grad)  # type: ignore[attr-defined]
    assert same(learned(first), learned(second))


def test_the_auxiliary_losses_are_what_update_steps_on() -> None:
    logits = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    relax = vg.RELAX(control(3, 0), seed=0)
    result = estimate(bernoulli_cost, Bernoulli(logits=logits), 4, relax)
    norm = result.auxiliary["control"]
    assert norm.requires_grad and float(norm.detach()) == result.stats["square_norm"] > 0
    frozen = vg.RELAX(control(3, 0), train_control=False, seed=0)
    assert estimate(bernoulli_cost, Bernoulli(logits=logits), 4, frozen).auxiliary == {}
    score = vg.ScoreFunction(learned_baseline(0), seed=0)
    fit = estimate(bernoulli_cost, Bernoulli(logits=logits), 4, score).auxiliary["baseline"]
    assert fit.requires_grad and float(fit.detach()) > 0
    plain = vg.ScoreFunction("moving_average", seed=0)
    assert estimate(bernoulli_cost, Bernoulli(logits=logits), 4, plain).auxiliary == {}


# --- state ------------------------------------------------------------------------------------


def through_a_file(state: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("name", list(CASES))
def test_a_state_dict_resumes_the_run_bit_for_bit(name: str) -> None:
    case = CASES[name]
    original = case.make(7)
    for _ in range(2):
        through_expectation(case, original)
    resumed = case.make(8)  # another seed, other initial weights: all must come from the state
    resumed.load_state_dict(through_a_file(original.state_dict()))
    for _ in range(2):
        assert same(
            list(through_expectation(case, original)), list(through_expectation(case, resumed))
        )
        assert same(learned(original), learned(resumed))


def test_a_state_dict_holds_copies_and_loading_one_shares_nothing() -> None:
    """Stepping on after state_dict() or load_state_dict() leaves the state as it was."""
    case = CASES["lax"]
    estimator = case.make(0)
    through_expectation(case, estimator)
    state = estimator.state_dict()
    kept = through_a_file(state)
    through_expectation(case, estimator)
    assert same(state, kept)
    first, second = case.make(1), case.make(1)
    first.load_state_dict(state)
    stepped = through_expectation(case, first)
    second.load_state_dict(state)  # as first had it, unless first's step changed the state
    assert same(list(through_expectation(case, second)), list(stepped))
    assert same(learned(first), learned(second))


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (lambda: vg.RELAX(control(3, 0), seed=0).state_dict(), "written by a RELAX, not a LAX"),
        (
            lambda: vg.LAX(control(2, 0)).state_dict(),
            "written by a LAX with seeded=False; this one has seeded=True",
        ),
        (lambda: {"estimator": "LAX", "seeded": True}, "no 'control' entry"),
        (lambda: {"control": {}, "optimizer": {}, "last_square_norm": 0.0}, "no 'estimator' entry"),
    ],
)
def test_a_state_of_another_estimator_is_refused(state, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        vg.LAX(control(2, 0), seed=0).load_state_dict(state())


def test_baseline_states_are_checked() -> None:
    with pytest.raises(ValueError, match="a MovingAverage state holds a float 'average'"):
        vg.ScoreFunction("moving_average").load_state_dict(
            {**vg.ScoreFunction().state_dict(), "estimator": "ScoreFunction", "baseline": {}}
        )
    with pytest.raises(
        ValueError, match="a Learned baseline's state holds 'module' and 'optimizer'"
    ):
        learned_baseline(0).load_state_dict({"module": {}})


# --- the protocol's edges ---------------------------------------------------------------------


def test_update_takes_the_estimate_its_tell_returned() -> None:
    with pytest.raises(TypeError, match="estimate must be the ScoreEstimate"):
        vg.ScoreFunction("moving_average").update(Estimate(value=torch.zeros(())))


def test_train_must_be_a_flag() -> None:
    logits = torch.zeros(3, requires_grad=True)
    with pytest.raises(TypeError, match="train must be True or False; got 'no'"):
        vg.expectation(lambda b: b.sum(-1), Bernoulli(logits=logits), 4, train="no")  # type: ignore[arg-type]


class Legacy(vg.DistributionEstimator):
    """Written before ask and tell: it overrides loss, sampling and evaluating itself."""

    def loss(self, evaluate, dist, samples):
        with self.sampling():
            z = dist.rsample((samples,))
        return evaluate(z, differentiable=True).mean(0)


def test_an_estimator_that_overrides_loss_keeps_working() -> None:
    mu = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    loss = vg.expectation(lambda z: 3 * z[:, 0], Normal(mu, 1.0), 8, Legacy(seed=0))
    loss.backward()
    assert mu.grad.item() == pytest.approx(3.0)
    result = estimate(lambda z: z[:, 0], Normal(mu, 1.0), 8, Legacy(seed=0))
    assert torch.equal(result.value, result.loss.detach())


def test_an_estimator_without_ask_tell_or_loss_says_what_it_lacks() -> None:
    class Nothing(vg.DistributionEstimator):
        pass

    with pytest.raises(NotImplementedError, match=r"Nothing must implement ask\(dist, samples\)"):
        vg.expectation(lambda b: b.sum(-1), Bernoulli(logits=torch.zeros(2)), 4, Nothing())
