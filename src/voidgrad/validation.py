"""Argument checks shared by every public entry point.

Each returns the value it accepts (converted where that is safe) and raises a
``ValueError`` or ``TypeError`` whose message names the argument and says what
was expected, so that bad input fails before any evaluation is spent.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Literal, overload

import torch

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


def is_number(value: object) -> bool:
    """Whether ``value`` is a real number (a bool is not a number here)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_int(value: object) -> bool:
    """Whether ``value`` is an int (a bool is not an int here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_interval(
    name: str,
    value: object,
    low: float,
    high: float,
    *,
    closed_low: bool = False,
    closed_high: bool = False,
) -> float:
    """Return ``value`` as a float, or raise naming ``name`` unless it lies in the interval.

    The interval is (low, high), closed at either end as asked; the message
    writes it the same way: ``lr_decay must be a number in (0, 1]; got 5``.
    """
    number = float(value) if is_number(value) else math.nan  # type: ignore[arg-type]
    above = number >= low if closed_low else number > low
    below = number <= high if closed_high else number < high
    if not (above and below):
        interval = f"{'[' if closed_low else '('}{low:g}, {high:g}{']' if closed_high else ')'}"
        raise ValueError(f"{name} must be a number in {interval}; got {value!r}")
    return number


def check_unit_interval(name: str, value: object) -> float:
    """Return ``value`` as a float, or raise naming ``name`` unless it is a number in [0, 1]."""
    return check_interval(name, value, 0, 1, closed_low=True, closed_high=True)


def check_flag(name: str, value: object) -> bool:
    """Return ``value``, or raise naming ``name`` unless it is True or False.

    ``bool(value)`` would read the string ``"False"`` as True.
    """
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return value


@overload
def check_seed(seed: object, optional: Literal[False]) -> int: ...


@overload
def check_seed(seed: object, optional: bool = True) -> int | None: ...


def check_seed(seed: object, optional: bool = True) -> int | None:
    """Return ``seed`` unchanged, or raise unless it is an int in [0, 2**64 − 1] (or None).

    2**64 − 1 is the largest seed a ``torch.Generator`` takes; a negative one
    it would silently map to another. ``optional=False`` refuses None.
    """
    expected = "a non-negative int or None" if optional else "a non-negative int"
    if seed is None and optional:
        return None
    if not is_int(seed) or seed < 0:  # type: ignore[operator]
        raise ValueError(f"seed must be {expected}; got {seed!r}")
    if seed > SEED_MAX:  # type: ignore[operator]
        raise ValueError(
            f"seed must be {expected}; got {seed}, above 2**64 - 1, the largest seed a "
            "torch.Generator takes"
        )
    return seed  # type: ignore[return-value]


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


def check_callable(name: str, value: object, what: str = "", *, optional: bool = True) -> Any:
    """Return ``value``, or a TypeError naming ``name`` unless it is callable (or, when
    ``optional``, None)."""
    if (value is not None or not optional) and not callable(value):
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


def check_differentiable_scalar(name: str, value: object, source: str) -> torch.Tensor:
    """``value``, refused unless a real one-element tensor in autograd's graph.

    For what ``name`` (a user's loss or twin) returned when called on
    ``source`` (what it must be computed from) with grad enabled.

    Examples:
        >>> import torch
        >>> from voidgrad.validation import check_differentiable_scalar
        >>> x = torch.ones(2, requires_grad=True)
        >>> check_differentiable_scalar("loss", x.sum(), "the image")
        tensor(2., grad_fn=<SumBackward0>)
        >>> check_differentiable_scalar("loss", torch.tensor(1.0), "the image")
        Traceback (most recent call last):
        ...
        ValueError: loss's value does not depend on the image (no autograd path): ...
    """
    if not isinstance(value, torch.Tensor) or value.numel() != 1 or not value.is_floating_point():
        got = (
            f"a {value.dtype} tensor of shape {tuple(value.shape)}"
            if isinstance(value, torch.Tensor)
            else type(value).__name__
        )
        raise TypeError(f"{name} must return a real scalar tensor; got {got}")
    if not value.requires_grad:
        raise ValueError(
            f"{name}'s value does not depend on {source} (no autograd path): compute it from "
            f"{source} with differentiable torch operations"
        )
    return value
