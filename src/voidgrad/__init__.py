"""voidgrad: gradient-based optimization through programs that have no useful gradient."""

from voidgrad import baselines, guides, meta, problems, rl
from voidgrad.adversarial import adversarial
from voidgrad.blackbox import BlackBox, blackbox
from voidgrad.errors import (
    BudgetExhausted,
    EvaluationError,
    EvaluationTimeout,
    NumericalWarning,
    WorkerDied,
    WorkerInitError,
)
from voidgrad.estimators import (
    LAX,
    REBAR,
    RELAX,
    SPSA,
    BlackBoxEstimator,
    DisARM,
    DistributionEstimator,
    FiniteDifferences,
    GaussianSmoothing,
    GuidedSmoothing,
    GumbelSoftmax,
    JacobianSparsity,
    LinearAnneal,
    MixedGradient,
    Pathwise,
    ScoreFunction,
    StraightThrough,
    ZeroGrads,
    detect_sparsity,
)
from voidgrad.evaluation import EvaluationStats, Evaluator
from voidgrad.expectation import expectation
from voidgrad.optimize import OptimizeResult, minimize

__version__ = "0.1.0"

__all__ = [
    "LAX",
    "REBAR",
    "RELAX",
    "SPSA",
    "BlackBox",
    "BlackBoxEstimator",
    "BudgetExhausted",
    "DisARM",
    "DistributionEstimator",
    "EvaluationError",
    "EvaluationStats",
    "EvaluationTimeout",
    "Evaluator",
    "FiniteDifferences",
    "GaussianSmoothing",
    "GuidedSmoothing",
    "GumbelSoftmax",
    "JacobianSparsity",
    "LinearAnneal",
    "MixedGradient",
    "NumericalWarning",
    "OptimizeResult",
    "Pathwise",
    "ScoreFunction",
    "StraightThrough",
    "WorkerDied",
    "WorkerInitError",
    "ZeroGrads",
    "adversarial",
    "baselines",
    "blackbox",
    "detect_sparsity",
    "expectation",
    "guides",
    "meta",
    "minimize",
    "problems",
    "rl",
]
