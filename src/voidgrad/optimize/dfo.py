"""Derivative-free baselines behind ``vg.minimize``: the ask/tell protocol their adapters follow.

An adapter wraps a library optimizer (pycma, nevergrad, scipy) without
reimplementing it. ``vg.minimize`` drives every adapter the same way::

    adapter = make_dfo(method, x0, budget=..., seed=..., workers=..., **options)
    while evaluations_left:
        X = adapter.ask()            # [k, d] float64 candidates, k >= 1
        Y = evaluator(X)             # the caller evaluates (in parallel, counted)
        adapter.tell(X, Y)           # Y: [k] float64 losses; NaN = failed evaluation
    adapter.recommendation()         # [d]: the adapter's own best guess

The caller owns evaluation and the budget: an adapter never calls the
objective itself. ``ask(limit)`` returns at most ``limit`` rows (the
evaluations left in the budget), or ``None`` when no useful batch fits (a
CMA-ES generation needs its whole population), which ends the run. Failed
evaluations arrive as NaN and the adapter must cope (e.g. by telling a large
loss).

``state()`` returns the adapter's complete state as bytes (pickle) and
``restore(state)`` puts it back, for checkpoints.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class DFOAdapter(Protocol):
    """The ask/tell face of a derivative-free optimizer."""

    #: The method name, as passed to ``vg.minimize``.
    name: str

    def ask(self, limit: int) -> torch.Tensor | None:
        """Candidates to evaluate next, ``[k, d]`` float64 with 1 <= k <= limit, or None."""
        ...

    def tell(self, X: torch.Tensor, Y: torch.Tensor) -> None:
        """The losses ``Y`` (``[k]``, NaN for failures) of the candidates ``X`` just asked."""
        ...

    def recommendation(self) -> torch.Tensor:
        """The optimizer's current best guess ``[d]`` (float64)."""
        ...

    def state(self) -> bytes:
        """Everything needed to continue the run, serialized."""
        ...

    def restore(self, state: bytes) -> None:
        """Continue from a ``state()``."""
        ...
