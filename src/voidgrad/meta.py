r"""``vg.meta``: meta-learned initialisation and per-parameter step sizes (Metappearance).

Seed 002 §3.1. A *task* is a differentiable loss L_τ of a network f_θ, e.g.
the error of f_θ(u, v) against one texture. The inner loop adapts θ to one
task by k steps of gradient descent with a learned step size per parameter
(Meta-SGD):

    θ_0 = θ*,    θ_{i+1} = θ_i − α ⊙ ∇_θ L_τ(θ_i),    i = 0 … k−1.

The outer loop learns the initialisation θ* and the step sizes α by
minimizing the loss after adaptation, averaged over tasks drawn from a
family (MAML):

    min_{θ*, α}  E_τ [ L_τ(θ_k(θ*, α)) ].

Its gradient differentiates through the k inner steps, second derivatives
included (``first_order=False``, via ``torch.func``); ``first_order=True``
drops the terms that differentiate ∇_θ L_τ(θ_i), so ∂θ_k/∂θ* ≈ I — cheaper,
and usually nearly as good. A new task of the family then converges in the
k steps the initialisation was trained for.

A task is any callable ``task(f) -> loss`` that takes the network as a
function of its input and returns a scalar tensor; it may draw a new batch of
its data on every call (each inner step and the outer loss see fresh samples).

Meta-training is an algorithm of the one run loop (:mod:`voidgrad.run`,
:class:`MetaTraining`): each step draws a meta-batch of tasks with the
learner's seeded generator, computes the meta-loss and takes one Adam step.
With ``meta_fit(..., checkpoint=path)`` the parameters, the meta-optimizer's
state, the generator's state and the history are saved atomically, and a run
killed at any moment and resumed ends bit for bit where an uninterrupted one
does. :meth:`MetaLearner.save` writes the learned initialisation and step
sizes alone, for :meth:`MetaLearner.load`.

Examples:
    >>> import torch, voidgrad as vg
    >>> x = torch.linspace(-1, 1, 8).unsqueeze(1)
    >>> def task_sampler(generator):  # tasks: fit y = a·x for a random slope a
    ...     a = torch.rand(1, generator=generator)
    ...     return lambda f: ((f(x) - a * x) ** 2).mean()
    >>> learner = vg.meta.MetaLearner(torch.nn.Linear(1, 1), inner_steps=2, seed=0)
    >>> history = learner.meta_fit(task_sampler, steps=5, progress=False)
    >>> len(history), sorted(history[0])
    (5, ['meta_loss', 'step'])
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.func import functional_call, grad

from voidgrad.run import Algorithm, RunState, Stop, record_callback, run
from voidgrad.run.checkpoint import (
    check_checkpoint_path,
    identity_value,
    load_failure,
    run_lock,
    save_checkpoint,
)
from voidgrad.run.records import Records
from voidgrad.validation import check_flag, check_int, check_positive, check_seed

__all__ = ["MetaHistory", "MetaLearner", "MetaRecord", "MetaTraining", "Task", "TaskSampler"]

Params = dict[str, torch.Tensor]

#: Marks a file written by MetaLearner.save (and its layout's version).
_FORMAT = "voidgrad.meta.MetaLearner/1"


class Task(Protocol):
    """A differentiable loss of a network: ``task(f)`` → scalar tensor.

    Examples:
        >>> import torch, voidgrad as vg
        >>> x = torch.linspace(0, 1, 8).unsqueeze(1)
        >>> task = lambda f: (f(x) - 2 * x).pow(2).mean()  # a Task: a loss of the network f
        >>> learner = vg.meta.MetaLearner(torch.nn.Linear(1, 1, bias=False), inner_steps=1, seed=0)
        >>> losses = learner.adaptation_losses(task, steps=20)
        >>> len(losses), losses[-1] < losses[0]
        (21, True)
    """

    def __call__(self, f: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor: ...


class TaskSampler(Protocol):
    """Draws a task of a family with the generator it is given.

    Examples:
        >>> import torch
        >>> def sampler(generator):  # a TaskSampler: a new task for each draw
        ...     target = torch.randn(1, generator=generator)
        ...     return lambda f: (f(torch.zeros(1, 1)) - target).pow(2).mean()
        >>> f = lambda x: x + 1
        >>> first = sampler(torch.Generator().manual_seed(0))(f)
        >>> bool(first == sampler(torch.Generator().manual_seed(0))(f))  # same generator, same task
        True
    """

    def __call__(self, generator: torch.Generator) -> Task: ...


@dataclass(frozen=True)
class MetaRecord:
    """One outer step of a :meth:`MetaLearner.meta_fit` run.

    Attributes:
        step: 1-based step number of the run.
        meta_loss: the mean loss after adaptation on the step's tasks, before
            the update.
        seconds: wall time since the run started (summed over resumed parts).

    Examples:
        >>> import torch, voidgrad as vg
        >>> records = []
        >>> learner = vg.meta.MetaLearner(torch.nn.Linear(1, 1), inner_steps=1, seed=0)
        >>> sampler = lambda generator: lambda f: f(torch.ones(1, 1)).pow(2).mean()
        >>> _ = learner.meta_fit(sampler, steps=3, progress=False, callback=records.append)
        >>> [record.step for record in records], records[0].meta_loss > 0
        ([1, 2, 3], True)
    """

    step: int
    meta_loss: float
    seconds: float


class MetaHistory(Records[MetaRecord]):
    """The per-step records of a meta-training run, oldest first (as the run loop keeps them).

    Examples:
        >>> import voidgrad as vg
        >>> history = vg.meta.MetaHistory([vg.meta.MetaRecord(1, 0.5, 0.1),
        ...                                vg.meta.MetaRecord(2, 0.25, 0.2)])
        >>> history.column("meta_loss"), history.to_dicts()[1]["step"]
        ([0.5, 0.25], 2)
    """

    record_type = MetaRecord


class MetaLearner:
    """Meta-learns a model's initialisation and (optionally) per-parameter step sizes.

    Args:
        model: any ``nn.Module``; its current parameters are the first θ*.
        inner_steps: k, the gradient steps of adaptation (≥ 1).
        inner_lr: the initial step size α (every entry).
        learn_lr: learn α per parameter entry (Meta-SGD); otherwise α stays
            ``inner_lr``.
        first_order: drop second derivatives from the meta-gradient.
        meta_lr: Adam step size of the outer loop.
        meta_batch: tasks per outer step.
        seed: seeds the task draws of :meth:`meta_fit` (a non-negative int;
            ``None`` draws one).

    Attributes:
        init: θ*, the meta-learned initialisation (name → tensor).
        lr: α, the per-parameter step sizes (name → tensor).
        history: one ``{"step", "meta_loss"}`` dict per outer step this
            learner took, over all its :meth:`meta_fit` calls.

    A saved learner (:meth:`save`) loads only into a learner built with the
    same settings (all of the above but ``model`` and ``seed``) and a model
    with the same parameter names, shapes and dtypes; anything else is
    refused with an error naming the file and the field that differs.

    Examples:
        >>> import torch, voidgrad as vg
        >>> x = torch.linspace(-1, 1, 16).unsqueeze(1)
        >>> def sampler(generator):  # a family of tasks: fit the line y = x + b
        ...     b = torch.rand(1, generator=generator) * 2 - 1
        ...     return lambda f: ((f(x) - (x + b)) ** 2).mean()
        >>> _ = torch.manual_seed(0)
        >>> learner = vg.meta.MetaLearner(torch.nn.Linear(1, 1), inner_steps=3, inner_lr=0.1,
        ...                               meta_lr=1e-2, seed=0)
        >>> history = learner.meta_fit(sampler, steps=50, progress=False)
        >>> history[-1]["meta_loss"] < history[0]["meta_loss"]
        True
        >>> losses = learner.adaptation_losses(sampler(torch.Generator().manual_seed(1)))
        >>> len(losses), losses[-1] < losses[0]  # θ*, then k = 3 inner steps
        (4, True)
        >>> adapted = learner.adapt(sampler(torch.Generator().manual_seed(1)))  # an adapted copy
        >>> type(adapted).__name__
        'Linear'
    """

    def __init__(
        self,
        model: nn.Module,
        inner_steps: int = 5,
        inner_lr: float = 1e-2,
        *,
        learn_lr: bool = True,
        first_order: bool = False,
        meta_lr: float = 1e-3,
        meta_batch: int = 4,
        seed: int | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module; got {type(model).__name__}")
        check_int("inner_steps", inner_steps, 1)
        check_int("meta_batch", meta_batch, 1)
        inner_lr = check_positive("inner_lr", inner_lr)
        meta_lr = check_positive("meta_lr", meta_lr)
        self.seed = check_seed(seed)
        init = {
            name: p.detach().clone().requires_grad_(True)
            for name, p in model.named_parameters()
            if p.requires_grad
        }
        if not init:
            raise ValueError("model has no trainable parameters to meta-learn")
        self.model = model
        self.inner_steps = inner_steps
        self.first_order = check_flag("first_order", first_order)
        self.learn_lr = bool(learn_lr)
        self.meta_batch = meta_batch
        self.inner_lr = inner_lr
        self.meta_lr = meta_lr
        self.init: Params = init
        self.lr: Params = {
            name: torch.full_like(p, float(inner_lr)).requires_grad_(self.learn_lr)
            for name, p in init.items()
        }
        learned = [*init.values(), *(self.lr.values() if self.learn_lr else ())]
        self._optimizer = torch.optim.Adam(learned, lr=meta_lr)
        self._generator = torch.Generator()
        if self.seed is None:
            self._generator.seed()
        else:
            self._generator.manual_seed(self.seed)
        self.history: list[dict[str, float]] = []

    @property
    def task_generator(self) -> torch.Generator:
        """The generator meta-training's task samplers draw from (seeded by ``seed``)."""
        return self._generator

    # -- the inner loop ------------------------------------------------------------------------

    def _function(self, params: Params) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda inputs: functional_call(self.model, params, (inputs,))

    def _loss(self, task: Task, params: Params) -> torch.Tensor:
        loss = task(self._function(params))
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(f"a task must return a scalar loss tensor; got {shape}")
        return loss

    def _adapt(self, task: Task, steps: int, differentiable: bool) -> Iterator[Params]:
        """θ_0, θ_1, …, θ_steps; kept in the graph of (θ*, α) when ``differentiable``."""
        params = (
            dict(self.init) if differentiable else {n: p.detach() for n, p in self.init.items()}
        )
        lr = self.lr if differentiable else {n: a.detach() for n, a in self.lr.items()}
        yield params
        for _ in range(steps):
            gradient = grad(lambda p: self._loss(task, p))(params)
            if not differentiable or self.first_order:
                gradient = {n: g.detach() for n, g in gradient.items()}
            params = {n: params[n] - lr[n] * gradient[n] for n in params}
            yield params

    def meta_loss(self, tasks: list[Task]) -> torch.Tensor:
        """(1/|tasks|) Σ_τ L_τ(θ_k), differentiable in θ* and α."""
        if not tasks:
            raise ValueError("meta_loss needs at least one task")
        losses = []
        for task in tasks:
            *_, adapted = self._adapt(task, self.inner_steps, differentiable=True)
            losses.append(self._loss(task, adapted))
        return torch.stack(losses).mean()

    # -- the outer loop ------------------------------------------------------------------------

    def meta_fit(
        self,
        task_sampler: TaskSampler,
        steps: int,
        *,
        progress: bool = True,
        checkpoint: str | Path | None = None,
        checkpoint_every: int = 10,
        callback: Callable[..., bool | None] | None = None,
    ) -> list[dict[str, float]]:
        """Run ``steps`` outer steps on tasks from ``task_sampler``; return the history.

        Each step draws ``meta_batch`` tasks with the learner's generator,
        computes :meth:`meta_loss` and takes one Adam step on θ* (and α).
        It returns ``self.history``, the learner's records over all its
        calls: each has ``step`` (its index there) and ``meta_loss`` (the mean
        loss after adaptation on that step's tasks, before the update).

        Args:
            task_sampler: ``task_sampler(generator) -> task``.
            steps: outer steps of this run.
            progress: show a progress bar.
            checkpoint: save the run here every ``checkpoint_every`` steps and
                at the end; a call with an existing checkpoint resumes it (see
                below).
            checkpoint_every: steps between checkpoints.
            callback: ``callback(record)`` with each step's :class:`MetaRecord`,
                or ``callback(record, state)`` to see the run too (a
                :class:`~voidgrad.run.RunState`, ``state.algorithm.learner``);
                returning True stops the run.

        Checkpoints:
            The file is the run loop's one layout (:mod:`voidgrad.run`): θ*, α,
            the Adam state and the task generator's state under
            ``"algorithm"``, the step count and the run's records under
            ``"loop"``. It holds tensors, numbers and strings only and loads
            with ``weights_only=True``; a damaged or foreign one raises a
            :class:`~voidgrad.run.checkpoint.CheckpointError` naming it.
            It resumes only the run that wrote it: the learner's settings, its
            ``seed``, its model's class code and parameter shapes, and a
            fingerprint of ``task_sampler``'s code must be the same; ``steps``
            may grow (a finished run continues). A resumed run ends bit for bit
            where an uninterrupted one does, having lost at most the steps
            since the last save; its records join ``self.history`` after
            those the learner had before the call. ``<checkpoint>.lock`` is
            locked while the run goes.

        Examples:
            >>> import torch, voidgrad as vg
            >>> def sampler(generator):  # tasks: fit a random constant
            ...     target = torch.rand(1, generator=generator)
            ...     return lambda f: (f(torch.ones(1, 1)) - target).pow(2).mean()
            >>> learner = vg.meta.MetaLearner(torch.nn.Linear(1, 1), inner_steps=1, seed=0)
            >>> history = learner.meta_fit(sampler, steps=3, progress=False)
            >>> [record["step"] for record in history]
            [0.0, 1.0, 2.0]
            >>> history = learner.meta_fit(sampler, steps=2, progress=False)  # two more
            >>> len(history), history is learner.history
            (5, True)
        """
        check_int("steps", steps, 1)
        if not callable(task_sampler):
            raise TypeError("task_sampler must be callable: task_sampler(generator) -> task")
        path = check_checkpoint_path(checkpoint)
        check_int("checkpoint_every", checkpoint_every, 1)
        callbacks = () if callback is None else (record_callback(callback),)
        identity = {
            **self.settings(),
            "seed": self.seed,
            "model": identity_value(self.model),
            "parameters": {n: [*p.shape, str(p.dtype)] for n, p in self.init.items()},
            "task_sampler": identity_value(task_sampler),
        }
        run(
            MetaTraining(self, task_sampler),
            steps,
            unit="steps",
            checkpoint=path,
            identity=identity,
            checkpoint_every=checkpoint_every,
            callbacks=callbacks,
            progress=progress,
            description="meta_fit",
            postfix=lambda record: {"meta_loss": f"{record.meta_loss:.4g}"},
        )
        return self.history

    def adapt(self, task: Task, steps: int | None = None) -> nn.Module:
        """A copy of the model adapted to ``task`` by ``steps`` (default k) inner steps.

        Steps beyond k reuse the learned step sizes.
        """
        steps = self.inner_steps if steps is None else steps
        check_int("steps", steps, 0)
        *_, params = self._adapt(task, steps, differentiable=False)
        return self._model_with(params)

    def initialization(self) -> nn.Module:
        """A copy of the model at the meta-learned θ*, before any adaptation.

        For uses outside the inner loop, e.g. as the starting surrogate of
        ``vg.ZeroGrads(surrogate=...)`` for a family of problems.
        """
        return self._model_with({n: p.detach() for n, p in self.init.items()})

    def _model_with(self, params: Params) -> nn.Module:
        """A copy of the model whose meta-learned parameters are ``params``."""
        model = copy.deepcopy(self.model)
        with torch.no_grad():
            for name, value in model.named_parameters():
                if name in params:
                    value.copy_(params[name])
        return model

    def adaptation_losses(self, task: Task, steps: int | None = None) -> list[float]:
        """L_τ(θ_0), …, L_τ(θ_steps) along :meth:`adapt` (one fresh task call each)."""
        steps = self.inner_steps if steps is None else steps
        check_int("steps", steps, 0)
        return [float(self._loss(task, p).detach()) for p in self._adapt(task, steps, False)]

    # -- saving --------------------------------------------------------------------------------

    def settings(self) -> dict[str, object]:
        """The constructor's settings a saved state belongs to (numbers and bools)."""
        return {
            "inner_steps": self.inner_steps,
            "inner_lr": self.inner_lr,
            "learn_lr": self.learn_lr,
            "first_order": self.first_order,
            "meta_lr": self.meta_lr,
            "meta_batch": self.meta_batch,
        }

    def state_dict(self) -> dict[str, Any]:
        """The meta-learned state: initialisation, step sizes and settings (tensors, numbers)."""
        return {
            "format": _FORMAT,
            "settings": self.settings(),
            "init": {n: p.detach().clone() for n, p in self.init.items()},
            "lr": {n: a.detach().clone() for n, a in self.lr.items()},
        }

    def load_state_dict(self, state: object, source: str = "the state") -> None:
        """Put back a :meth:`state_dict` taken from a learner with the same settings and model.

        Raises:
            ValueError: naming ``source`` and the field, if ``state`` is not such
                a state, its settings differ from this learner's, or its
                tensors differ from the model's parameters in name, shape or
                dtype. Nothing is changed then.
        """
        _check_state(state, source, self.settings(), self.init)
        assert isinstance(state, dict)
        with torch.no_grad():
            for name in self.init:
                self.init[name].copy_(state["init"][name])
                self.lr[name].copy_(state["lr"][name])

    def save(self, path: str | Path) -> None:
        """Write :meth:`state_dict` to ``path`` atomically (a temporary file, then a rename).

        The learned initialisation and step sizes only (the meta-training
        run, with its optimizer, is what ``meta_fit(checkpoint=...)`` saves).
        A process killed mid-write leaves the previous file, never half of
        one. The file holds tensors, numbers and strings only, so :meth:`load`
        reads it with ``weights_only=True``. ``<path>.lock`` is locked while
        it is written: a path a run is using (a ``meta_fit`` checkpoint, another
        save) is refused with a
        :class:`~voidgrad.run.checkpoint.CheckpointError`.
        """
        with run_lock(path):
            save_checkpoint(path, self.state_dict())

    def load(self, path: str | Path) -> None:
        """Read a file written by :meth:`save` into this learner.

        The file is read with ``torch.load(weights_only=True)``: nothing in it
        is executed, and a file that would need code to unpickle is refused.

        Raises:
            FileNotFoundError: if there is no such file.
            ValueError: naming the file, if it is empty, damaged, not written
                by :meth:`save`, or written by a learner with other settings or
                parameter shapes (and the field that differs). Nothing is
                changed then.
        """
        path = Path(path)
        try:
            state = torch.load(path, weights_only=True, map_location="cpu")
        except OSError:
            raise  # a missing or unreadable file is named by its own error
        except Exception as error:  # torch raises several types for an empty or cut file
            raise ValueError(f"cannot load {path}: {load_failure(error)}") from error
        self.load_state_dict(state, source=str(path))

    def __repr__(self) -> str:
        return (
            f"MetaLearner(inner_steps={self.inner_steps}, learn_lr={self.learn_lr}, "
            f"first_order={self.first_order}, meta_batch={self.meta_batch})"
        )


class MetaTraining(Algorithm):
    """Meta-training of a :class:`MetaLearner` as an algorithm of the one run loop.

    A step draws ``meta_batch`` tasks from ``task_sampler`` with the learner's
    generator, computes the meta-loss (1/B) Σ_τ L_τ(θ_k) and takes one Adam
    step on θ* (and α when learned); it spends 1 of a budget in steps. Its
    state is the learner's (θ*, α), the Adam state and the generator's state,
    so a resumed run draws the same tasks and takes the same steps. Each step
    also appends ``{"step", "meta_loss"}`` to ``learner.history``; a restored
    run's records are appended there when it resumes.

    Args:
        learner: the learner to train (in place).
        task_sampler: ``task_sampler(generator) -> task``.

    Examples:
        >>> import torch, voidgrad as vg
        >>> from voidgrad.run import run
        >>> learner = vg.meta.MetaLearner(torch.nn.Linear(1, 1), inner_steps=1, seed=0)
        >>> sampler = lambda generator: lambda f: f(torch.ones(1, 1)).pow(2).mean()
        >>> state = run(vg.meta.MetaTraining(learner, sampler), 3, unit="steps", progress=False)
        >>> state.spent, state.message, len(learner.history)
        (3, '3 steps taken', 3)
        >>> isinstance(state.history, vg.meta.MetaHistory), state.history.column("step")
        (True, [1, 2, 3])
    """

    kind = "vg.meta"
    history_type = MetaHistory

    def __init__(self, learner: MetaLearner, task_sampler: TaskSampler) -> None:
        self.learner = learner
        self.task_sampler = task_sampler

    def step(self, state: RunState) -> MetaRecord | Stop:
        if state.spent >= state.budget:
            return Stop(f"{state.spent} steps taken")
        learner = self.learner
        tasks = [self.task_sampler(learner._generator) for _ in range(learner.meta_batch)]
        loss = learner.meta_loss(tasks)
        learner._optimizer.zero_grad()
        loss.backward()
        learner._optimizer.step()
        state.spent += 1
        record = MetaRecord(
            step=state.step + 1, meta_loss=float(loss.detach()), seconds=state.seconds
        )
        self._remember(record)
        return record

    def _remember(self, record: MetaRecord) -> None:
        history = self.learner.history
        history.append({"step": float(len(history)), "meta_loss": record.meta_loss})

    def state_dict(self) -> dict[str, Any]:
        return {
            "learner": self.learner.state_dict(),
            "optimizer": self.learner._optimizer.state_dict(),
            "generator": self.learner._generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        generator = state["generator"]
        if not isinstance(generator, torch.Tensor) or generator.dtype != torch.uint8:
            raise TypeError("the task generator's state must be a uint8 tensor")
        self.learner.load_state_dict(state["learner"], source="its learner")
        self.learner._optimizer.load_state_dict(state["optimizer"])
        self.learner._generator.set_state(generator)

    def resumed(self, state: RunState, path: Path) -> None:
        for record in state.history:
            self._remember(record)


def _check_state(state: object, source: str, settings: dict[str, object], init: Params) -> None:
    """Raise a ValueError naming ``source`` and the field unless ``state`` fits this learner."""
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"{source} is not a MetaLearner state (format {found!r}, expected {_FORMAT!r})"
        )
    saved = state.get("settings")
    if not isinstance(saved, dict):
        raise ValueError(f"{source} has no settings (found {type(saved).__name__})")
    for key, value in settings.items():
        if key not in saved or saved[key] != value or type(saved[key]) is not type(value):
            raise ValueError(
                f"{source} was written by a MetaLearner with {key}={saved.get(key)!r}; this one "
                f"has {key}={value!r}: build the learner with the settings of the file to load it"
            )
    for field in ("init", "lr"):
        tensors = state.get(field)
        if not isinstance(tensors, dict) or set(tensors) != set(init):
            names = sorted(tensors) if isinstance(tensors, dict) else type(tensors).__name__
            raise ValueError(
                f"{source}: {field!r} holds parameters {names}; this model has {sorted(init)}"
            )
        for name, expected in init.items():
            tensor = tensors[name]
            if not isinstance(tensor, torch.Tensor):
                raise ValueError(
                    f"{source}: {field}[{name!r}] is a {type(tensor).__name__}, not a tensor"
                )
            if tensor.shape != expected.shape or tensor.dtype != expected.dtype:
                raise ValueError(
                    f"{source}: {field}[{name!r}] has shape {tuple(tensor.shape)} and dtype "
                    f"{tensor.dtype}; this model's parameter has shape {tuple(expected.shape)} "
                    f"and dtype {expected.dtype}"
                )
