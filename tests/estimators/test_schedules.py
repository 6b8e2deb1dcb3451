"""LinearAnneal: PRDPT's constant-then-linear schedule with a floor."""

from __future__ import annotations

import pytest

import voidgrad as vg


def test_constant_then_linear_then_floor() -> None:
    schedule = vg.LinearAnneal(sigma_min=0.01, total_steps=400, constant_steps=200)
    assert schedule(0.5, 0) == 0.5
    assert schedule(0.5, 200) == 0.5
    assert schedule(0.5, 300) == pytest.approx(0.255)
    assert schedule(0.5, 400) == pytest.approx(0.01)
    assert schedule(0.5, 10_000) == 0.01


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(sigma_min=0, total_steps=10), "sigma_min must be a finite number > 0; got 0"),
        (dict(sigma_min="0.1", total_steps=10), "sigma_min must be a finite number > 0; got '0.1'"),
        (dict(sigma_min=float("inf"), total_steps=10), "sigma_min must be a finite number > 0"),
        (dict(sigma_min=0.1, total_steps=True), "total_steps must be an int > .* got True"),
        (dict(sigma_min=0.1, total_steps=10.0), "total_steps must be an int > .* got 10.0"),
        (dict(sigma_min=0.1, total_steps=5, constant_steps=5), "total_steps must be an int > "),
        (
            dict(sigma_min=0.1, total_steps=5, constant_steps=-1),
            "constant_steps must be an int >= 0",
        ),
    ],
)
def test_bad_arguments(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        vg.LinearAnneal(**kwargs)
