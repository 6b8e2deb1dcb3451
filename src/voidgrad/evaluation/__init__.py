"""The evaluation engine: every call of a user's black box goes through an Evaluator."""

from voidgrad.evaluation.backends import Backend, Outcome, SerialBackend, Tally, VectorizedBackend
from voidgrad.evaluation.evaluator import EvaluationStats, Evaluator
from voidgrad.evaluation.process import ProcessBackend
from voidgrad.evaluation.ray_backend import RayBackend

__all__ = [
    "Backend",
    "EvaluationStats",
    "Evaluator",
    "Outcome",
    "ProcessBackend",
    "RayBackend",
    "SerialBackend",
    "Tally",
    "VectorizedBackend",
]
