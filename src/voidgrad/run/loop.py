"""The one run loop: step an algorithm under a budget, with history, progress and checkpoints.

Every long job in voidgrad (``vg.minimize``'s gradient and derivative-free
methods, ``vg.rl.train``, ``vg.adversarial``, meta-training, the bench) is
an :class:`Algorithm` driven by :func:`run`::

    state = fresh, or restored from the checkpoint (only the run that wrote it)
    while True:
        outcome = algorithm.step(state)  # ask -> Evaluator -> tell -> optimizer steps
        if outcome is a Stop: break      # the budget is spent, or the method is done
        state.history.append(outcome)    # progress bar, callbacks, checkpoint
        if any callback returns True: break

The loop owns what every job needs and none should write again: the budget
(in the algorithm's unit: evaluations, environment steps, steps), the
history of per-step records, the progress bar, the callbacks, and the
checkpoint, one atomic weights-only file (:mod:`voidgrad.run.checkpoint`)
holding the algorithm's ``state_dict()``, the Evaluator's counters and
random stream, and the loop's own state. A run killed at any moment and
resumed from its checkpoint ends where an uninterrupted run with the same
seed would (bit for bit on the serial backend), having lost at most the step
in flight.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tqdm.auto import tqdm

from voidgrad.evaluation.evaluator import Evaluator
from voidgrad.run.checkpoint import (
    FORMAT,
    check_same_run,
    load_checkpoint,
    restoring,
    run_lock,
    save_checkpoint,
)
from voidgrad.run.records import Records
from voidgrad.validation import check_callable, check_int, check_positive

#: What the loop's own part of a checkpoint holds.
_LOOP_KEYS = ("step", "spent", "budget", "message", "finished", "seconds", "history")


@dataclass(frozen=True)
class Stop:
    """What :meth:`Algorithm.step` returns instead of a record when the run is over.

    Attributes:
        message: why (``"budget of 1000 evaluations spent"``, ``"converged"``).
    """

    message: str


class Algorithm(ABC):
    """A step-wise job: one :meth:`step` asks, evaluates, tells and updates.

    A step adds what it spent (evaluations, environment steps, 1 for a plain
    step) to ``state.spent`` and returns its record (a dataclass of
    ``history_type.record_type``), or a :class:`Stop` when the next step does
    not fit in the budget or the method has nothing left to do.
    """

    #: Names the kind of run in its checkpoint ("vg.minimize", "vg.rl.train", ...).
    kind: ClassVar[str]
    #: The history class, whose ``record_type`` is the dataclass :meth:`step` returns.
    history_type: ClassVar[type[Records[Any]]]

    @abstractmethod
    def step(self, state: RunState) -> Any:
        """Take one step; return its record, or a :class:`Stop`."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: tensors, numbers, strings, lists and dicts only."""

    @abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict` (inside :func:`restoring`: errors name the file)."""

    def resumed(self, state: RunState, path: Path) -> None:  # noqa: B027 (optional hook)
        """Check a restored run before it goes on (evaluations here are not the run's)."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release what the algorithm holds (threads, processes); called once, at the end."""


@dataclass
class RunState:
    """The run as the loop and its callbacks see it.

    A callback ``callback(state)`` reads the latest ``record``, the whole
    ``history``, the ``algorithm`` with its public parts (for ``vg.minimize``'s
    gradient methods ``state.algorithm.theta``, ``.estimator``,
    ``.optimizer``) and the ``evaluator`` with its ``stats``, so that nothing
    outside the run needs a private attribute. Returning True stops the run.

    Attributes:
        algorithm: what the loop steps.
        budget: the most ``spent`` may reach, in ``unit``.
        unit: what the budget counts ("evaluations", "environment steps", "steps").
        evaluator: the Evaluator the algorithm evaluates through, if any.
        step: steps taken (over all resumed parts).
        spent: budget used so far.
        history: one record per step, oldest first.
        record: the latest record (None before the first step).
        message: why the run stopped ("" while it goes).
        finished: whether the algorithm ended it (not a callback): a finished run
            resumed with the same budget returns at once.
        resumed: whether the run continued from a checkpoint.
    """

    algorithm: Algorithm
    budget: int
    unit: str
    evaluator: Evaluator | None = None
    step: int = 0
    spent: int = 0
    history: Records[Any] = field(default_factory=Records)
    record: Any = None
    message: str = ""
    finished: bool = False
    resumed: bool = False
    seconds_before: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    @property
    def remaining(self) -> int:
        """Budget left, in ``unit``."""
        return self.budget - self.spent

    @property
    def seconds(self) -> float:
        """Wall time of the run so far, summed over its resumed parts."""
        return self.seconds_before + time.perf_counter() - self.started


Callback = Callable[[RunState], bool | None]


def run(
    algorithm: Algorithm,
    budget: int,
    *,
    unit: str = "evaluations",
    evaluator: Evaluator | None = None,
    checkpoint: Path | None = None,
    identity: Mapping[str, Any] | None = None,
    checkpoint_every: int | None = 1,
    checkpoint_seconds: float | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    description: str | None = None,
    postfix: Callable[[Any], dict[str, str]] | None = None,
) -> RunState:
    """Step ``algorithm`` until it stops, the budget is spent, or a callback says stop.

    Args:
        algorithm: the job.
        budget: the most the run may spend, in ``unit``.
        unit: what the budget counts, for the progress bar and messages.
        evaluator: the Evaluator the algorithm uses; its counters and random
            stream are saved with the run and restored on resume.
        checkpoint: a path to save the run to and resume it from; locked while
            the run goes.
        identity: what defines the run (the method, its options, the seed, a
            fingerprint of the objective): a checkpoint of another run is refused.
        checkpoint_every: save every this many steps (None: not by steps).
        checkpoint_seconds: save when this many seconds passed since the
            last save (None: not by time). A run always saves when it ends.
        callbacks: called with the :class:`RunState` after each step; one
            returning True stops the run.
        progress: show a progress bar of ``spent`` against ``budget``.
        description: the bar's label.
        postfix: the bar's figures from the latest record.

    Returns:
        The final :class:`RunState`.
    """
    check_int("budget", budget, 1)
    if checkpoint_every is not None:
        check_int("checkpoint_every", checkpoint_every, 1)
    if checkpoint_seconds is not None:
        check_positive("checkpoint_seconds", checkpoint_seconds)
    for callback in callbacks:
        check_callable("callback", callback)
    state = RunState(algorithm, budget, unit, evaluator, history=algorithm.history_type())
    lock = contextlib.nullcontext() if checkpoint is None else run_lock(checkpoint)
    try:
        with lock:
            if checkpoint is not None and _restore(state, checkpoint, dict(identity or {})):
                return state
            _loop(
                state,
                checkpoint,
                dict(identity or {}),
                checkpoint_every,
                checkpoint_seconds,
                callbacks,
                progress,
                description,
                postfix,
            )
            return state
    finally:
        algorithm.close()


def _loop(
    state: RunState,
    checkpoint: Path | None,
    identity: dict[str, Any],
    every: int | None,
    seconds: float | None,
    callbacks: Sequence[Callback],
    progress: bool,
    description: str | None,
    postfix: Callable[[Any], dict[str, str]] | None,
) -> None:
    bar = tqdm(
        total=state.budget,
        initial=min(state.spent, state.budget),
        unit=_bar_unit(state.unit),
        desc=description,
        disable=not progress,
        dynamic_ncols=True,
    )
    saved_at = time.perf_counter()
    try:
        while True:
            before = state.spent
            outcome = state.algorithm.step(state)
            if isinstance(outcome, Stop):
                state.message, state.finished = outcome.message, True
                break
            state.step += 1
            state.record = outcome
            state.history.append(outcome)
            bar.update(max(0, min(state.spent, state.budget) - min(before, state.budget)))
            if postfix is not None:
                bar.set_postfix(postfix(outcome), refresh=False)
            if any(callback(state) is True for callback in callbacks):
                state.message = "stopped by the callback"
                break
            due_by_steps = every is not None and state.step % every == 0
            due_by_time = seconds is not None and time.perf_counter() - saved_at >= seconds
            if checkpoint is not None and (due_by_steps or due_by_time):
                save_checkpoint(checkpoint, _snapshot(state, identity))
                saved_at = time.perf_counter()
    finally:
        bar.close()
    if checkpoint is not None:
        save_checkpoint(checkpoint, _snapshot(state, identity))


def _bar_unit(unit: str) -> str:
    return {"evaluations": "eval", "environment steps": "env step"}.get(unit, unit.rstrip("s"))


def _snapshot(state: RunState, identity: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint: the algorithm's state, the evaluator's, and the loop's."""
    return {
        "format": FORMAT,
        "kind": state.algorithm.kind,
        "run": identity,
        "algorithm": state.algorithm.state_dict(),
        "evaluator": None if state.evaluator is None else state.evaluator.state_dict(),
        "loop": {
            "step": state.step,
            "spent": state.spent,
            "budget": state.budget,
            "message": state.message,
            "finished": state.finished,
            "seconds": state.seconds,
            "history": state.history.to_dicts(),
        },
    }


def _restore(state: RunState, path: Path, identity: dict[str, Any]) -> bool:
    """Put a saved run back into ``state``; True when it is finished with this budget."""
    saved = load_checkpoint(path, state.algorithm.kind, ("algorithm", "evaluator", "loop"))
    if saved is None:
        return False
    check_same_run(saved["run"], identity, path)
    with restoring(path):
        loop = saved["loop"]
        missing = [key for key in _LOOP_KEYS if key not in loop]
        if missing:
            raise KeyError(f"the loop's state lacks {missing}")
        if not isinstance(loop["finished"], bool) or not isinstance(loop["message"], str):
            raise TypeError("finished must be a bool and message a str")
        state.algorithm.load_state_dict(saved["algorithm"])
        if state.evaluator is not None:
            state.evaluator.load_state_dict(saved["evaluator"])
        history_type = state.algorithm.history_type
        state.history = history_type(
            history_type.record_type(**record) for record in loop["history"]
        )
        state.record = state.history[-1] if state.history else None
        state.step, state.spent = int(loop["step"]), int(loop["spent"])
        state.message, state.finished = loop["message"], loop["finished"]
        state.seconds_before = float(loop["seconds"])
        state.started = time.perf_counter()
        state.resumed = True
    state.algorithm.resumed(state, path)
    if state.finished and int(loop["budget"]) == state.budget:
        return True
    state.message, state.finished = "", False
    return False


def record_callback(callback: Callable[..., bool | None]) -> Callback:
    """A loop callback from a user's ``callback(record)`` or ``callback(record, state)``.

    The record is the step's own immutable record (safe to keep in a list); a
    callback with a second positional parameter also gets the :class:`RunState`,
    with the algorithm's parts and the evaluator's stats.
    """
    check_callable("callback", callback)
    if _positional_parameters(callback) >= 2:
        return lambda state: callback(state.record, state)
    return lambda state: callback(state.record)


def _positional_parameters(function: Callable[..., object]) -> int:
    """How many named positional parameters ``function`` has (``*args`` counts none: ``print``)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: call it with the record
        return 1
    kinds = [p.kind for p in parameters]
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(kind in positional for kind in kinds)
