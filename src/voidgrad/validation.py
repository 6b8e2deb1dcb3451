"""Argument checks shared by every public entry point.

Each returns the value it accepts (converted where that is safe) and raises a
``ValueError`` or ``TypeError`` whose message names the argument and says what
was expected, so that bad input fails before any evaluation is spent.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

#: The largest seed torch.Generator.manual_seed accepts.
SEED_MAX = 2**64 - 1


def check_positive(name: str, value: object) -> float:
    """Return ``value`` as a float, or raise naming ``name`` unless it is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return number


def check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value``, or raise naming ``name`` unless it is an int (no bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
    return value


def check_unit_interval(name: str, value: object) -> float:
    """Return ``value`` as a float, or raise naming ``name`` unless it is a number in [0, 1]."""
    number = float(value) if isinstance(value, numbers.Real) else math.nan
    if isinstance(value, bool) or not 0 <= number <= 1:
        raise ValueError(f"{name} must be a number in [0, 1]; got {value!r}")
    return number


def check_flag(name: str, value: object) -> bool:
    """Return ``value``, or raise naming ``name`` unless it is True or False.

    ``bool(value)`` would read the string ``"False"`` as True.
    """
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return value


def check_seed(seed: object) -> int | None:
    """Return ``seed`` unchanged, or raise unless it is None or an int in [0, 2**64 − 1].

    2**64 − 1 is the largest seed a ``torch.Generator`` takes; a negative one
    it would silently map to another.
    """
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative int or None; got {seed!r}")
    if seed is not None and seed > SEED_MAX:
        raise ValueError(
            f"seed must be a non-negative int or None; got {seed}, above 2**64 - 1, the largest "
            "seed a torch.Generator takes"
        )
    return seed


def check_samples(samples: object, paired: bool) -> int:
    """Validate an evaluation count; paired estimators need an even one."""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive int; got {samples!r}")
    if paired and samples % 2:
        raise ValueError(
            "samples must be even for antithetic (paired) estimators, each pair costing two "
            f"evaluations; got {samples}"
        )
    return samples


def check_callable(name: str, value: object, what: str = "") -> Any:
    """Return ``value``, or a TypeError naming ``name`` unless it is callable (or None)."""
    if value is not None and not callable(value):
        hint = f", {what}" if what else ""
        raise TypeError(f"{name} must be callable{hint}; got {type(value).__name__}")
    return value


def check_options(owner: str, options: dict[str, Any] | Any, known: set[str]) -> None:
    """Raise naming the options of ``owner`` that are not in ``known``, and listing those."""
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            f"unknown option(s) for {owner}: {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known)) or 'none'}"
        )
