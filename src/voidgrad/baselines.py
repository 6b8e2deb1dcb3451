"""Baselines for the score-function estimator: ``vg.baselines.LeaveOneOut()`` and friends."""

from voidgrad.estimators.baselines import Baseline, Constant, LeaveOneOut, MovingAverage

__all__ = ["Baseline", "Constant", "LeaveOneOut", "MovingAverage"]
