"""Baselines: their values, state and argument checks."""

from __future__ import annotations

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
        (lambda: vg.baselines.Constant(float("inf")), "value must be a finite number"),
    ],
)
def test_bad_arguments(make, message) -> None:
    with pytest.raises(ValueError, match=message):
        make()
