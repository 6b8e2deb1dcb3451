"""Whole optimization runs: ``vg.minimize``, its result and history, checkpoints, baselines."""

from voidgrad.optimize.minimize import minimize
from voidgrad.optimize.result import History, OptimizeResult, StepRecord

__all__ = ["History", "OptimizeResult", "StepRecord", "minimize"]
