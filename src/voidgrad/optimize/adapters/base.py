"""The shared base of the library adapters: the batch out, failures, the best point,
and the log of told batches that ``state()`` returns and ``restore()`` replays.

Failed evaluations: any non-finite loss (the driver sends NaN) is handed to the
library as ``worst + max(1, |worst|)``, where ``worst`` is the largest finite
loss told so far (this batch included), or ``FAILED_LOSS_BEFORE_ANY_FINITE``
(1e20) before any finite loss: it ranks below every real point. The best point
kept for ``recommendation()`` is always a finitely evaluated one.

Checkpoints hold no optimizer object. ``state()`` is plain data (tensors, ints,
strings): the seed, the budget and, per told batch, the ``limit`` passed to
``ask``, the number of points asked, an 8-byte hash of them, and the losses
told. ``restore(state)`` rebuilds the library optimizer from that seed and the
adapter's own settings and replays the batches: the same seed and losses make
it ask the same points (checked against the hashes; a mismatch raises
:class:`~voidgrad.optimize.dfo.ReplayDiverged`). The state takes
O(evaluations) memory, not O(evaluations·d); restoring costs the library's own
ask/tell work for every recorded batch and no evaluation of the objective.
``state()`` refuses while a batch is out (between ``ask`` and ``tell``): take
checkpoints after ``tell``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from voidgrad.optimize.dfo import ReplayDiverged
from voidgrad.validation import check_int

#: What a failed evaluation is told as before any finite loss has been seen.
FAILED_LOSS_BEFORE_ANY_FINITE = 1e20


class AdapterBase:
    """What the adapters share: bookkeeping, and the batch log ``state()`` returns and replays.

    The bookkeeping: the batch out, failures, the best point, stopping.
    """

    name: str
    #: Whether the library plans with the budget, so a replay must use the recorded one
    #: (otherwise a restored adapter keeps its own, and a resumed run may go on longer).
    plans_with_budget = False

    def __init__(self, name: str, d: int, *, seed: int, budget: int = 0) -> None:
        self.name = name
        self.d = d
        self._seed = seed
        self._budget = budget
        self._clear()

    def _clear(self) -> None:
        """Forget the run: no batch out, no failures or best point, an empty log."""
        #: Why the optimizer ended the run (None while it goes on).
        self.stop_reason: str | None = None
        self._pending_rows: int | None = None
        self._pending_limit = 0
        self._pending_hash = 0
        self._worst: float | None = None
        self._best_x: np.ndarray | None = None
        self._best_y = math.inf
        self._limits: list[int] = []
        self._rows: list[int] = []
        self._hashes: list[int] = []
        self._losses: list[np.ndarray] = []

    def close(self) -> None:
        """Nothing to release: no adapter holds a thread, file or process (idempotent)."""

    def ask(self, limit: int) -> torch.Tensor | None:
        """Candidates to evaluate next (see :class:`~voidgrad.optimize.dfo.DFOAdapter`)."""
        raise NotImplementedError

    def tell(self, X: torch.Tensor, Y: torch.Tensor) -> None:
        """The losses of the batch just asked (see :class:`~voidgrad.optimize.dfo.DFOAdapter`)."""
        raise NotImplementedError

    def _start(self) -> None:
        """Build the library optimizer afresh from the settings, ``_seed`` and ``_budget``."""
        raise NotImplementedError

    # -- checkpoints

    def state(self) -> dict[str, Any]:
        """The run so far as plain data (tensors, ints, strings); see the module docstring.

        Per told batch: the ``limit`` passed to ``ask`` (``limits``), the points
        asked (``rows``), an 8-byte hash of them (``hashes``), and the losses
        told, NaN for failures (``losses``, all batches end to end).
        """
        self._check_no_batch_out()
        losses = np.concatenate(self._losses) if self._losses else np.zeros(0)
        return {
            "kind": type(self).__name__,
            "name": self.name,
            "d": self.d,
            "seed": self._seed,
            "budget": self._budget,
            "limits": torch.tensor(self._limits, dtype=torch.int64),
            "rows": torch.tensor(self._rows, dtype=torch.int64),
            "hashes": torch.tensor(self._hashes, dtype=torch.int64),
            "losses": torch.from_numpy(losses.astype(np.float64)),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from a ``state()`` of an adapter of the same class, d and settings.

        The library optimizer is rebuilt with the state's seed (and, if it
        plans with the budget, its budget) and this adapter's other settings,
        and every recorded batch is asked again and told its recorded losses.
        Costs the library's own work for each batch, no objective evaluation.

        Raises:
            ValueError: ``state`` is not a state of this kind of adapter.
            ReplayDiverged: the replay asked other points than the recorded
                ones (other settings, another library version).
        """
        limits, rows, hashes, losses, seed, budget = self._check_state(state)
        self._seed = seed
        self._budget = budget if self.plans_with_budget else max(self._budget, len(losses))
        self._clear()
        self._start()
        offset = 0
        for batch, (limit, k, expected) in enumerate(zip(limits, rows, hashes, strict=True)):
            X = self.ask(limit)
            if X is None or X.shape[0] != k or self._pending_hash != expected:
                self._pending_rows = None
                asked = (
                    "nothing"
                    if X is None
                    else f"{X.shape[0]} points"
                    if X.shape[0] != k
                    else "other points"
                )
                raise ReplayDiverged(
                    f"{self.name}: replaying batch {batch + 1} of {len(rows)}, the optimizer "
                    f"asked {asked} where {k} were recorded (other settings, such as workers "
                    "or options, or another version of the library?)"
                )
            self.tell(X, torch.from_numpy(losses[offset : offset + k].copy()))
            offset += k

    def _check_state(
        self, state: Mapping[str, Any]
    ) -> tuple[list[int], list[int], list[int], np.ndarray, int, int]:
        """The parts of a ``state()``, checked against this adapter (ValueError if they misfit)."""
        kind = type(self).__name__
        if not isinstance(state, Mapping) or state.get("kind") != kind:
            found = state.get("kind") if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"state must be a {kind} state from state(); got {found!r}")
        if state.get("d") != self.d:
            raise ValueError(f"state is for d={state.get('d')!r}, this adapter has d={self.d}")
        for key in ("seed", "budget"):
            check_int(f"state {key}", state.get(key), 0)
        log = []
        for key, dtype in (("limits", torch.int64), ("rows", torch.int64), ("hashes", torch.int64)):
            value = state.get(key)
            if not isinstance(value, torch.Tensor) or value.dtype != dtype or value.ndim != 1:
                raise ValueError(f"state {key!r} must be a 1-D {dtype} tensor")
            log.append(value.tolist())
        limits, rows, hashes = log
        losses = state.get("losses")
        if not isinstance(losses, torch.Tensor) or losses.dtype != torch.float64:
            raise ValueError("state 'losses' must be a float64 tensor")
        if not len(limits) == len(rows) == len(hashes) or losses.shape != (sum(rows),):
            raise ValueError("state holds a log whose lengths do not agree")
        if any(not 1 <= k <= limit for k, limit in zip(rows, limits, strict=True)):
            raise ValueError("state holds batches of more points than their limit, or none")
        return limits, rows, hashes, losses.numpy(), int(state["seed"]), int(state["budget"])

    # -- helpers for subclasses

    def _check_limit(self, limit: int) -> None:
        check_int("limit", limit, 0)
        if self._pending_rows is not None:
            raise RuntimeError(
                f"{self.name}: ask() called again before tell() returned the previous batch"
            )
        self._pending_limit = limit

    def _hand_out(self, X: np.ndarray) -> torch.Tensor:
        points = np.array(X, dtype=np.float64, copy=True)
        self._pending_rows = points.shape[0]
        self._pending_hash = hash_points(points)
        return torch.from_numpy(points)

    def _take_back(self, X: torch.Tensor, Y: torch.Tensor) -> np.ndarray:
        """Check a told batch and log it; return the losses to tell the library (float64).

        Failures (non-finite losses) come back as the stand-in of the module docstring.
        """
        if self._pending_rows is None:
            raise RuntimeError(f"{self.name}: tell() without a batch from ask()")
        k = self._pending_rows
        if not isinstance(X, torch.Tensor) or tuple(X.shape) != (k, self.d):
            shape = tuple(X.shape) if isinstance(X, torch.Tensor) else type(X).__name__
            raise ValueError(f"X must be the [{k}, {self.d}] batch just asked, got {shape}")
        if not isinstance(Y, torch.Tensor) or tuple(Y.shape) != (k,):
            shape = tuple(Y.shape) if isinstance(Y, torch.Tensor) else type(Y).__name__
            raise ValueError(f"Y must be the [{k}] losses of the batch just asked, got {shape}")
        x = X.detach().to("cpu", torch.float64).numpy()
        y = Y.detach().to("cpu", torch.float64).numpy()
        self._pending_rows = None
        self._limits.append(self._pending_limit)
        self._rows.append(k)
        self._hashes.append(self._pending_hash)
        self._losses.append(y.copy())
        finite = np.isfinite(y)
        if finite.any():
            batch_worst = float(y[finite].max())
            self._worst = batch_worst if self._worst is None else max(self._worst, batch_worst)
            i = int(np.argmin(np.where(finite, y, math.inf)))
            if y[i] < self._best_y:
                self._best_y = float(y[i])
                self._best_x = x[i].copy()
        if self._worst is None:
            penalty = FAILED_LOSS_BEFORE_ANY_FINITE
        else:
            penalty = self._worst + max(1.0, abs(self._worst))
        return np.where(finite, y, penalty)

    def _check_no_batch_out(self) -> None:
        if self._pending_rows is not None:
            raise RuntimeError(
                f"{self.name}: state() between ask() and tell(); checkpoint after tell()"
            )


def hash_points(points: np.ndarray) -> int:
    """An 8-byte hash of a batch's shape and values, as a signed int (an int64 tensor entry)."""
    digest = hashlib.blake2b(repr(points.shape).encode(), digest_size=8)
    digest.update(np.ascontiguousarray(points).tobytes())
    return int.from_bytes(digest.digest(), "little", signed=True)
