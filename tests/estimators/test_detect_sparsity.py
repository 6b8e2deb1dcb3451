"""vg.detect_sparsity: the dependency pattern found by moving groups of parameters."""

from __future__ import annotations

import math

import pytest
import torch

import voidgrad as vg
from voidgrad.errors import NumericalWarning


def blur(x: torch.Tensor) -> torch.Tensor:
    """Output o reads x_o and x_(o−1) (cyclic)."""
    return x + x.roll(1, dims=-1)


def dense(pattern: vg.JacobianSparsity) -> torch.Tensor:
    """The pattern as a dense bool ``[outputs, d]`` (small test sizes only)."""
    return pattern.credit(torch.eye(pattern.shape[0])).bool()


def true_blur_pattern(d: int) -> torch.Tensor:
    pattern = torch.eye(d, dtype=torch.bool)
    return pattern | pattern.roll(-1, dims=1)  # S[o, o] and S[o, o − 1]


def test_the_pattern_of_a_blur_is_found_exactly_at_the_stated_cost() -> None:
    d, groups = 1000, 32
    found = vg.detect_sparsity(blur, torch.zeros(d), step=0.1, groups=groups)
    assert torch.equal(dense(found.pattern), true_blur_pattern(d))
    digits = 2  # 32² ≥ 1000
    assert found.evaluations == 1 + (digits + 4) * groups
    assert len(found.candidates) == digits + 4 and found.candidates[-1] == 2 * d
    assert found.silent_outputs == 0


def test_an_evaluator_runs_the_probes_and_counts_them() -> None:
    evaluator = vg.Evaluator(blur, backend="vectorized")
    found = vg.detect_sparsity(evaluator, torch.zeros(300), step=0.1, groups=16, seed=3)
    assert evaluator.stats.evals == found.evaluations
    assert torch.equal(dense(found.pattern), true_blur_pattern(300))


def test_equal_and_opposite_dependencies_do_not_cancel() -> None:
    """F_o = x_o − x_(o+1): moving both by the same step would hide them; random moves do not."""
    found = vg.detect_sparsity(lambda x: x - x.roll(-1), torch.zeros(200), step=0.1, groups=16)
    expected = torch.eye(200, dtype=torch.bool) | torch.eye(200, dtype=torch.bool).roll(1, 1)
    assert torch.equal(dense(found.pattern), expected)


def test_a_dependency_hidden_below_the_step_is_reported_not_invented() -> None:
    """Quantized outputs do not move at a step below the quantum: empty rows and a warning."""

    def quantized(x: torch.Tensor) -> torch.Tensor:
        return torch.round(10 * blur(x)) / 10  # steps of 0.1

    theta = torch.zeros(100)
    with pytest.warns(NumericalWarning, match="100 of 100 outputs did not change"):
        hidden = vg.detect_sparsity(quantized, theta, step=0.001, groups=16)
    assert hidden.pattern.nnz == 0 and hidden.silent_outputs == 100
    # At a step of the quantum, two moves of a group can cancel below it (0.15 − 0.13):
    # some dependencies are lost in one round. Repeated probes lower the odds, measured here.
    truth = true_blur_pattern(100)
    missed = []
    for repeats in (1, 3):
        found = vg.detect_sparsity(quantized, theta, step=0.1, groups=16, repeats=repeats)
        assert not (dense(found.pattern) & ~truth).any()  # nothing invented
        missed.append(int((truth & ~dense(found.pattern)).sum()))
    assert missed[0] > missed[1], missed


def test_a_constant_output_is_an_empty_row() -> None:
    def with_constant(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([blur(x), torch.ones(1)])

    with pytest.warns(NumericalWarning, match="1 of 51 outputs"):
        found = vg.detect_sparsity(with_constant, torch.zeros(50), step=0.1, groups=8)
    assert found.pattern.shape == (51, 50) and not dense(found.pattern)[50].any()


def test_noise_below_the_tolerance_is_not_a_dependency() -> None:
    generator = torch.Generator().manual_seed(0)

    def noisy(x: torch.Tensor) -> torch.Tensor:
        return blur(x) + 1e-9 * torch.randn(x.shape, generator=generator, dtype=x.dtype)

    theta = torch.zeros(100, dtype=torch.float64)
    found = vg.detect_sparsity(noisy, theta, step=0.1, groups=16, tolerance=1e-6)
    assert torch.equal(dense(found.pattern), true_blur_pattern(100))


def test_too_many_candidates_are_refused_with_advice() -> None:
    def everything(x: torch.Tensor) -> torch.Tensor:
        return x.sum().expand(x.shape[0])  # every output reads every parameter

    with pytest.raises(ValueError, match="max_candidates=1000: .* use more groups"):
        vg.detect_sparsity(everything, torch.zeros(200), step=0.1, groups=4, max_candidates=1000)


def test_the_result_plugs_into_an_estimator() -> None:
    found = vg.detect_sparsity(blur, torch.zeros(64, dtype=torch.float64), step=0.1, groups=8)
    theta = torch.linspace(-1, 1, 64, dtype=torch.float64)[None]
    v = torch.ones(1, 64, dtype=torch.float64)
    gradients = []
    for pattern in (found, found.pattern):
        estimator = vg.GaussianSmoothing(0.1, 4, jac_sparsity=pattern, seed=1)
        query = estimator.ask(theta)
        estimate = estimator.tell(query, blur(query.inputs))
        assert estimate.vjp is not None
        gradients.append(estimate.vjp(v)[0])
    assert torch.equal(gradients[0], gradients[1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"theta": torch.zeros(2, 3)}, r"theta must be a floating tensor of shape \[d\]"),
        ({"theta": torch.zeros(3, dtype=torch.int64)}, "theta must be a floating tensor"),
        ({"step": 0.0}, "step must be"),
        ({"step": math.nan}, "step must be"),
        ({"groups": 1}, "groups must be an int >= 2"),
        ({"filter_rounds": -1}, "filter_rounds must be an int >= 0"),
        ({"repeats": 0}, "repeats must be an int >= 1"),
        ({"tolerance": -1.0}, "tolerance must be a number >= 0"),
        ({"seed": -1}, "seed must be"),
    ],
)
def test_bad_arguments_are_refused_naming_them(kwargs, message) -> None:
    arguments = {"theta": torch.zeros(10), "step": 0.1, **kwargs}
    theta = arguments.pop("theta")
    with pytest.raises(ValueError, match=message):
        vg.detect_sparsity(blur, theta, **arguments)


def test_the_empty_groups_of_the_last_digit_are_not_evaluated() -> None:
    """d = 100, G = 64: the second digit takes 2 values, so 62 of its groups are empty."""
    evaluator = vg.Evaluator(blur, backend="vectorized")
    found = vg.detect_sparsity(evaluator, torch.zeros(100), step=0.1, groups=64)
    assert found.evaluations == evaluator.stats.evals == 1 + 64 + 2 + 4 * 64
    assert torch.equal(dense(found.pattern), true_blur_pattern(100))
