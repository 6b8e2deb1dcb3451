"""Baselines for the score-function estimator: ``vg.baselines.LeaveOneOut()`` and friends."""

from voidgrad.estimators.baselines import (
    Baseline,
    Constant,
    Learned,
    LeaveOneOut,
    MovingAverage,
)

__all__ = ["Baseline", "Constant", "Learned", "LeaveOneOut", "MovingAverage"]
