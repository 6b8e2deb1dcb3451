"""Gradient estimators, one family per file."""

from voidgrad.estimators.arm import DisARM
from voidgrad.estimators.base import BlackBoxEstimator, Probe
from voidgrad.estimators.detect_sparsity import DetectedSparsity, detect_sparsity
from voidgrad.estimators.distributional import DistributionEstimator
from voidgrad.estimators.finite_diff import FiniteDifferences
from voidgrad.estimators.guided import GuidedSmoothing
from voidgrad.estimators.mixing import MixedGradient
from voidgrad.estimators.pathwise import Pathwise
from voidgrad.estimators.relax import LAX, REBAR, RELAX, ControlVariateEstimator
from voidgrad.estimators.relaxed import GumbelSoftmax, StraightThrough
from voidgrad.estimators.schedules import LinearAnneal, SigmaSchedule
from voidgrad.estimators.score import ScoreFunction
from voidgrad.estimators.smoothing import GaussianSmoothing
from voidgrad.estimators.sparsity import JacobianSparsity
from voidgrad.estimators.spsa import SPSA
from voidgrad.estimators.surrogate import MLPSurrogate, ZeroGrads

__all__ = [
    "LAX",
    "REBAR",
    "RELAX",
    "SPSA",
    "BlackBoxEstimator",
    "ControlVariateEstimator",
    "DetectedSparsity",
    "DisARM",
    "DistributionEstimator",
    "FiniteDifferences",
    "GaussianSmoothing",
    "GuidedSmoothing",
    "GumbelSoftmax",
    "JacobianSparsity",
    "LinearAnneal",
    "MLPSurrogate",
    "MixedGradient",
    "Pathwise",
    "Probe",
    "ScoreFunction",
    "SigmaSchedule",
    "StraightThrough",
    "ZeroGrads",
    "detect_sparsity",
]
