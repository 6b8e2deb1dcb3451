"""The lowest single evaluation of a run, and the check that a resumed run is the same run.

``vg.minimize`` reports ``x``, the point of the lowest loss any evaluation
gave. :class:`BestPoint` listens to the Evaluator, so it sees every
evaluation whatever the method, and costs nothing extra.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from voidgrad.evaluation.evaluator import Evaluator
from voidgrad.run.checkpoint import CheckpointError

#: How far the stored best point's loss may move when it is evaluated again on
#: resume (relative): room for a deterministic fn's run-to-run rounding (GPU
#: reductions), far below what another function gives.
BEST_POINT_RTOL = 1e-5
#: ... and in absolute terms: a loss near 0 computed with cancellation (in a batch
#: of another size, say) differs in its last bits, which is not another run.
BEST_POINT_ATOL = 1e-10


class BestPoint:
    """The lowest finite loss seen among an Evaluator's evaluations, and where.

    Args:
        like: a tensor of the parameters' shape and dtype (for checks on load).
        per_output: ``fn`` returns per-output losses (``[n, m]`` batches) and
            the loss is their sum; otherwise a vector output is refused.
    """

    def __init__(self, like: torch.Tensor, per_output: bool = False) -> None:
        self.like = like
        self.per_output = per_output
        self.loss = math.inf
        self.x: torch.Tensor | None = None
        #: While True, evaluations are not the run's (the resume's check of the best point).
        self.muted = False

    def observe(self, X: torch.Tensor, Y: torch.Tensor) -> None:
        """An Evaluator listener: keep the best of a batch ``X`` ``[n, d]`` with losses ``Y``."""
        if self.muted:
            return
        Y = self.losses(Y)
        finite = torch.isfinite(Y)
        if finite.any():
            values = torch.where(finite, Y, math.inf)
            index = int(values.argmin())
            if float(values[index]) < self.loss:
                self.loss = float(values[index])
                self.x = X[index].clone()

    def losses(self, Y: torch.Tensor) -> torch.Tensor:
        """The losses ``[n]`` of a batch's outputs ``Y``: summed per row where per-output.

        Raises:
            ValueError: ``Y`` is not ``[n]`` (nor ``[n, m]`` where per-output).
        """
        if self.per_output and Y.ndim == 2:
            return Y.sum(1)
        if Y.ndim != 1:
            raise ValueError(
                f"minimize needs a scalar loss; fn returned outputs of shape {tuple(Y.shape[1:])} "
                "(per-output losses, minimized in sum, need a jac_sparsity= pattern)"
            )
        return Y

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.loss, "best_x": self.x}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.loss = float(state["best"])
        self.x = None if state["best_x"] is None else saved_tensor(state, "best_x", self.like)
        if (self.x is None) != math.isinf(self.loss):
            raise ValueError("best and best_x disagree")

    def check_again(self, evaluator: Evaluator, checkpoint: Path) -> None:
        """Evaluate the resumed run's best point again; refuse unless it gives the stored loss.

        Skipped for a noisy ``fn`` (one that takes ``seed``: its value there
        need not repeat) and before any finite evaluation. The evaluation
        shows in the Evaluator's stats but is not the run's: the caller keeps
        it out of the budget.
        """
        if evaluator.accepts_seed or self.x is None:
            return
        self.muted = True
        try:
            value = float(self.losses(evaluator(self.x[None]))[0])
        finally:
            self.muted = False
        stored = self.loss
        if not math.isfinite(value):
            raise CheckpointError(
                f"checkpoint {checkpoint}: resuming evaluates fn at the stored best point again, "
                f"and it failed there ({value!r}; it gave {stored!r} before); a failure, or "
                "another fn"
            )
        tolerance = BEST_POINT_RTOL * max(abs(value), abs(stored)) + BEST_POINT_ATOL
        if not abs(value - stored) <= tolerance:
            raise CheckpointError(
                f"checkpoint {checkpoint} was written by another run: fn at the stored best "
                f"point gives {value!r} here, {stored!r} there (a random fn must take a seed "
                "parameter to be resumed); delete it or use another path"
            )


def saved_tensor(saved: Mapping[str, Any], key: str, like: torch.Tensor) -> torch.Tensor:
    """``saved[key]``, checked to be a tensor of ``like``'s shape, in ``like``'s dtype."""
    value = saved[key]
    if not isinstance(value, torch.Tensor) or value.shape != like.shape:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{key} must be a tensor of shape {tuple(like.shape)}; got {shape}")
    return value.to(like.dtype)
