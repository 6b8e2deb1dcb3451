"""Derivative-free baselines behind ``vg.minimize``: the ask/tell protocol their adapters follow.

An adapter puts an optimizer in ask/tell form: pycma's and nevergrad's
as they are, and simulated annealing (scipy's ``dual_annealing`` algorithm,
whose scipy form calls the objective itself) written as an ask/tell coroutine.
``vg.minimize`` drives every adapter the same way::

    adapter = make_dfo(method, x0, budget=..., seed=..., workers=..., **options)
    while evaluations_left:
        X = adapter.ask(left)        # [k, d] float64 candidates, 1 <= k <= left
        Y = evaluator(X)             # the caller evaluates (in parallel, counted)
        adapter.tell(X, Y)           # Y: [k] float64 losses; NaN = failed evaluation
    adapter.recommendation()         # [d]: the adapter's own best guess
    adapter.close()                  # idempotent; when the run ends or is abandoned

The caller owns evaluation and the budget: an adapter never calls the
objective itself. ``ask(limit)`` returns at most ``limit`` rows (the
evaluations left in the budget), or ``None`` when no useful batch fits (a
CMA-ES generation needs its whole population), which ends the run; it also
returns None once the optimizer itself has ended the run, and ``stop_reason``
says why. Failed evaluations arrive as NaN and the adapter must cope (e.g. by
telling a large loss).

For checkpoints, ``state()`` returns plain data (tensors, ints, strings: the
seed and the log of told batches, no optimizer object), and ``restore(state)``
rebuilds the optimizer from that seed and the adapter's settings and replays
the log, which asks the same points again since an adapter is deterministic
given its seed and losses. Restoring evaluates nothing; it costs the
library's own work for every recorded batch. A replay that asks other points
than the recorded ones raises :class:`ReplayDiverged`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import torch


class ReplayDiverged(RuntimeError):  # noqa: N818 (reads as what happened)
    """Replaying a ``state()`` asked other points than the run that wrote it."""


@runtime_checkable
class DFOAdapter(Protocol):
    """The ask/tell face of a derivative-free optimizer."""

    #: The method name, as passed to ``vg.minimize``.
    name: str
    #: Why the optimizer itself ended the run, or None while it goes on.
    stop_reason: str | None

    def ask(self, limit: int) -> torch.Tensor | None:
        """Candidates to evaluate next, ``[k, d]`` float64 with 1 <= k <= limit, or None."""
        ...

    def tell(self, X: torch.Tensor, Y: torch.Tensor) -> None:
        """The losses ``Y`` (``[k]``, NaN for failures) of the candidates ``X`` just asked."""
        ...

    def recommendation(self) -> torch.Tensor:
        """The optimizer's current best guess ``[d]`` (float64)."""
        ...

    def state(self) -> dict[str, Any]:
        """Everything needed to continue the run, as tensors, ints and strings."""
        ...

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from a ``state()`` by replaying it (see the module docstring)."""
        ...

    def close(self) -> None:
        """Release what the adapter holds, if anything; idempotent."""
        ...
