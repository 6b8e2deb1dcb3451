"""voidgrad: gradient-based optimization through programs that have no useful gradient."""

from voidgrad import baselines
from voidgrad.blackbox import BlackBox, blackbox
from voidgrad.errors import BudgetExhausted, EvaluationError
from voidgrad.estimators import (
    SPSA,
    BlackBoxEstimator,
    FiniteDifferences,
    GaussianSmoothing,
    LinearAnneal,
    Pathwise,
    ScoreFunction,
)
from voidgrad.evaluation import EvaluationStats, Evaluator
from voidgrad.expectation import expectation

__version__ = "0.1.0"

__all__ = [
    "SPSA",
    "BlackBox",
    "BlackBoxEstimator",
    "BudgetExhausted",
    "EvaluationError",
    "EvaluationStats",
    "Evaluator",
    "FiniteDifferences",
    "GaussianSmoothing",
    "LinearAnneal",
    "Pathwise",
    "ScoreFunction",
    "baselines",
    "blackbox",
    "expectation",
]
