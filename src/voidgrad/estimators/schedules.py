"""Schedules for the smoothing bandwidth σ.

PRDPT anneals σ: constant for the first ``constant_steps`` steps, then linear
down to a floor,

    σ_t = σ_0                                           t ≤ c
    σ_t = max(σ_min, σ_0 − (t − c)(σ_0 − σ_min)/(T − c))  t > c

The floor keeps the estimator's 1/σ weights finite as σ → 0.
"""

from __future__ import annotations

from typing import Protocol

from voidgrad.validation import check_int, check_positive


class SigmaSchedule(Protocol):
    """Maps the initial bandwidth and the step count to the current bandwidth.

    Examples:
        >>> import voidgrad as vg
        >>> halve = lambda sigma0, step: sigma0 * 0.5**step  # any callable is a schedule
        >>> est = vg.GaussianSmoothing(sigma=1.0, samples=8, schedule=halve)
        >>> est.step(); est.step()
        >>> est.sigma
        0.25
    """

    def __call__(self, sigma0: float, step: int) -> float: ...


class LinearAnneal:
    """PRDPT's constant-then-linear anneal of σ with a floor ``sigma_min``.

    Args:
        sigma_min: the floor, reached at ``total_steps`` and kept after.
        total_steps: the step T at which σ reaches ``sigma_min``.
        constant_steps: the steps c for which σ stays at its initial value.

    Examples:
        >>> import voidgrad as vg
        >>> schedule = vg.LinearAnneal(sigma_min=0.1, total_steps=10, constant_steps=2)
        >>> [round(schedule(1.0, t), 2) for t in (0, 2, 6, 10, 20)]
        [1.0, 1.0, 0.55, 0.1, 0.1]
    """

    def __init__(self, sigma_min: float, total_steps: int, constant_steps: int = 0) -> None:
        sigma_min = check_positive("sigma_min", sigma_min)
        constant_steps = check_int("constant_steps", constant_steps, 0)
        if (
            isinstance(total_steps, bool)
            or not isinstance(total_steps, int)
            or total_steps <= constant_steps
        ):
            raise ValueError(
                f"total_steps must be an int > constant_steps ({constant_steps}); "
                f"got {total_steps!r}"
            )
        self.sigma_min = sigma_min
        self.total_steps = total_steps
        self.constant_steps = constant_steps

    def __call__(self, sigma0: float, step: int) -> float:
        if step <= self.constant_steps:
            return sigma0
        fraction = (step - self.constant_steps) / (self.total_steps - self.constant_steps)
        return max(self.sigma_min, sigma0 - fraction * (sigma0 - self.sigma_min))

    def __repr__(self) -> str:
        return (
            f"LinearAnneal(sigma_min={self.sigma_min}, total_steps={self.total_steps}, "
            f"constant_steps={self.constant_steps})"
        )


def check_schedule(schedule: SigmaSchedule | None, sigma0: float) -> SigmaSchedule | None:
    """``schedule``, refused if it is not callable or (a LinearAnneal) would raise σ above σ_0."""
    if schedule is not None and not callable(schedule):
        raise TypeError(f"schedule must be callable or None; got {type(schedule).__name__}")
    if isinstance(schedule, LinearAnneal) and schedule.sigma_min > sigma0:
        raise ValueError(
            f"schedule.sigma_min ({schedule.sigma_min}) must not exceed sigma ({sigma0})"
        )
    return schedule


def scheduled_sigma(schedule: SigmaSchedule | None, sigma0: float, step: int) -> float:
    """σ_t at optimization step ``step``: σ_0 without a schedule, else the schedule's (> 0)."""
    if schedule is None:
        return sigma0
    return check_positive("the schedule's sigma", schedule(sigma0, step))


def sigma_name(schedule: SigmaSchedule | None, step: int) -> str:
    """How messages name σ: ``"sigma"``, or with its schedule's step."""
    return "sigma" if schedule is None else f"sigma (scheduled, step {step})"
