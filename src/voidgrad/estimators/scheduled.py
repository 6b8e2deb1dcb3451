"""A black-box estimator whose perturbation scale σ follows a schedule over optimisation steps.

σ_t = schedule(σ_0, t), or σ_0 without a schedule, with t the optimisation
steps taken so far (:meth:`ScheduledSigma.step`, called once per step by
whoever steps θ). t is part of the estimator's state, so that a resumed run
continues its anneal where it stopped. Gaussian smoothing, guided smoothing,
the mixing estimator and ZeroGrads share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from voidgrad.estimators.base import BlackBoxEstimator
from voidgrad.estimators.schedules import (
    SigmaSchedule,
    check_schedule,
    scheduled_sigma,
    sigma_name,
)
from voidgrad.validation import check_int, check_positive


class ScheduledSigma(BlackBoxEstimator):
    """The σ schedule of a black-box estimator (module doc).

    Args:
        sigma: σ_0, the initial scale (> 0).
        schedule: maps (σ_0, t) to σ_t, e.g. :class:`voidgrad.LinearAnneal`;
            None keeps σ constant.
        seed: the estimator's seed.

    Examples:
        >>> import voidgrad as vg
        >>> est = vg.GaussianSmoothing(1.0, 4, schedule=vg.LinearAnneal(0.5, total_steps=2))
        >>> isinstance(est, vg.estimators.scheduled.ScheduledSigma), est.sigma
        (True, 1.0)
        >>> est.step(); est.step()
        >>> est.sigma, est.state_dict()["steps"]
        (0.5, 2)
    """

    def __init__(self, sigma: float, schedule: SigmaSchedule | None, seed: int | None) -> None:
        super().__init__(seed)
        self.sigma0 = check_positive("sigma", sigma)
        self.schedule = check_schedule(schedule, self.sigma0)
        self.steps = 0

    @property
    def sigma(self) -> float:
        """The current scale σ_t."""
        return scheduled_sigma(self.schedule, self.sigma0, self.steps)

    @property
    def sigma_label(self) -> str:
        """How messages name σ_t: ``"sigma"``, or with its schedule's step."""
        return sigma_name(self.schedule, self.steps)

    def step(self) -> None:
        """Advance the σ schedule by one optimisation step."""
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "steps": self.steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        steps = check_int("the state's steps", state["steps"], 0)
        super().load_state_dict(state)
        self.steps = steps
