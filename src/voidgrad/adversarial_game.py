r"""The game of :func:`voidgrad.adversarial` as an algorithm of the one run loop.

One step t of T (``state.step``, ``state.budget``), with D_t the
discriminator and Ω_t the distribution's parameters before it, runs the
estimator's ask/tell protocol (:mod:`voidgrad.estimators.protocol`) around
the two players' moves::

    query = estimator.ask(p(z | Ω_t), N)             # z_i ~ p(z | Ω_t)
    x̂_i = G(z_i)                                      # the render Evaluator: values
    x ~ targets                                       # a batch without replacement
    d_real = mean σ(logit_t(x)),  d_fake = mean σ(logit_t(x̂))
    if d_real − d_fake < max_gap:                     # the discriminator's step
        D_{t+1} = Adam(D_t, ∇ [BCE(logit(x), 1) + BCE(logit(x̂), 0)])
    f_i = −log D_{t+1}(x̂_i) = softplus(−logit_{t+1}(x̂_i))   # scored: nothing trains
    estimate = estimator.tell(query, f)               # ĝ of ∇_Ω E[f]
    estimator.update(estimate)                        # its own learned parts, if any
    started ← started or d_real − d_fake ≥ max_gap
    if started:  Ω_{t+1} = Adam(Ω_t, ĝ), step size cosine(t, T)

The renders come back from the Evaluator as values; the discriminator takes
its step on them, and only then are they scored, by a function that trains
nothing. The distribution thus moves against the discriminator that has just
seen its samples (alternating updates, as in DCGAN). Each step runs in a copy
of torch's global random state seeded from the game's own sampling stream,
so the samples (and a renderer or discriminator drawing from torch's global
generator) replay from a checkpoint, and the caller's generator is left as
it was.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution
from torch.nn import functional

from voidgrad.estimators.distributional import DistributionEstimator, surrogate_of
from voidgrad.evaluation.evaluator import Evaluator
from voidgrad.optimize.best import saved_tensor
from voidgrad.run import Algorithm, RunState, Stop
from voidgrad.run.records import Records
from voidgrad.validation import check_int, check_positive, check_seed, is_number

__all__ = [
    "AdversarialGame",
    "AdversarialHistory",
    "AdversarialRecord",
    "GameSettings",
    "TargetBatches",
    "cosine_step_size",
    "discriminator_cost",
    "discriminator_step",
]


@dataclass(frozen=True)
class AdversarialRecord:
    """One step of :func:`voidgrad.adversarial`.

    Attributes:
        step: 0-based step number.
        d_real, d_fake: the discriminator's mean probability of "target" on
            the step's target and rendered batches, before its update.
        cost: the mean of f = −log D(G(z)) over the step's renders, under
            the discriminator after its update (the value of the
            distribution's loss).
        discriminator_updated: whether the discriminator took its step.
        distribution_updated: whether the distribution's parameters took theirs.
        parameters: the distribution's parameters after the step, by name.
    """

    step: int
    d_real: float
    d_fake: float
    cost: float
    discriminator_updated: bool
    distribution_updated: bool
    parameters: dict[str, torch.Tensor]


class AdversarialHistory(Records[AdversarialRecord]):
    """The per-step records of a :func:`voidgrad.adversarial` run, oldest first."""

    record_type = AdversarialRecord


@dataclass(frozen=True)
class GameSettings:
    """What defines a :func:`voidgrad.adversarial` game besides its players and data.

    Built once by :func:`voidgrad.adversarial` from its arguments (checked here,
    each error naming its argument), taken whole by :class:`AdversarialGame`,
    and, as ``dataclasses.asdict``, the settings part of the checkpoint's identity.

    Attributes:
        samples: scenes rendered per step, and targets per discriminator batch (≥ 2).
        lr: Ω's Adam step size at the first step.
        lr_decay: the factor Ω's step size decays to along half a cosine, in (0, 1]
            (:func:`cosine_step_size`).
        discriminator_lr: D's Adam step size.
        max_gap: the discriminator's largest lead, in (0, 1]; None updates both
            players every step.
        seed: seeds the sampling stream and the target batches (None: from the
            operating system).

    Examples:
        >>> from voidgrad.adversarial_game import GameSettings
        >>> GameSettings(samples=16, lr=0.05, max_gap=None)
        GameSettings(samples=16, lr=0.05, lr_decay=0.1, discriminator_lr=0.001, max_gap=None,
                     seed=None)
        >>> GameSettings(samples=16, max_gap=1.5)
        Traceback (most recent call last):
        ...
        ValueError: max_gap must be in (0, 1] or None; got 1.5
    """

    samples: int
    lr: float = 0.02
    lr_decay: float = 0.1
    discriminator_lr: float = 1e-3
    max_gap: float | None = 0.7
    seed: int | None = None

    def __post_init__(self) -> None:
        check_int("samples", self.samples, 2)
        check_positive("lr", self.lr)
        check_positive("discriminator_lr", self.discriminator_lr)
        if not _in_unit_interval(self.lr_decay):
            raise ValueError(f"lr_decay must be in (0, 1]; got {self.lr_decay!r}")
        if self.max_gap is not None and not _in_unit_interval(self.max_gap):
            raise ValueError(f"max_gap must be in (0, 1] or None; got {self.max_gap!r}")
        check_seed(self.seed)


def _in_unit_interval(value: object) -> bool:
    """Whether ``value`` is a number in (0, 1]; a bool is not (True would read as 1)."""
    return is_number(value) and 0 < value <= 1  # type: ignore[operator]


class AdversarialGame(Algorithm):
    """The distribution against the discriminator, one step of each per run step.

    Attributes:
        learned: the distribution's parameters Ω by name (leaf tensors).
        renderer: the Evaluator that turns samples into images.
        discriminator: D, images ``[N, C, H, W]`` to logits ``[N]``.
        estimator: the distribution estimator of ∇_Ω E[f] (asked and told).
        optimizer: Adam on Ω.
        discriminator_optimizer: Adam on D.
        settings: as given.
        batches: the target batches (:class:`TargetBatches`).
        samples, renders: the latest step's samples z and their renders
            (row i of ``renders`` is G of row i of ``samples``); None before
            the first step.
        started: whether Ω has started moving (see ``max_gap``).

    Args:
        build: returns p(z | Ω) from the current parameters.
        learned: Ω by name.
        renderer: the render Evaluator.
        discriminator: D.
        estimator: a distribution estimator with ``ask`` and ``tell`` that
            only evaluates f (every built-in one that does not differentiate f).
        targets: the target images ``[M, C, H, W]``, M ≥ ``settings.samples``.
        settings: samples per step, step sizes, ``max_gap`` and seed.

    Examples:
        :func:`voidgrad.adversarial` builds one and runs it; by hand:

        >>> import torch, voidgrad as vg
        >>> from torch import nn
        >>> from voidgrad.adversarial_game import AdversarialGame, GameSettings
        >>> from voidgrad.run import run
        >>> loc = torch.zeros(1, requires_grad=True)
        >>> def render(z):
        ...     return z.reshape(-1, 1, 1, 1).expand(-1, 1, 4, 4).clone()
        >>> game = AdversarialGame(
        ...     lambda: torch.distributions.Normal(loc, 0.1), {"loc": loc},
        ...     vg.Evaluator(render, "vectorized"),
        ...     nn.Sequential(nn.Flatten(), nn.Linear(16, 1), nn.Flatten(0)),
        ...     vg.ScoreFunction(baseline="leave_one_out"),
        ...     render(torch.ones(64, 1)),
        ...     GameSettings(16, lr=0.05, lr_decay=1.0, discriminator_lr=0.05, max_gap=None,
        ...                  seed=0))
        >>> state = run(game, 3, unit="steps", progress=False)
        >>> [record.step for record in state.history], tuple(game.renders.shape)
        ([0, 1, 2], (16, 1, 4, 4))
        >>> state.history[-1].distribution_updated, loc.item() != 0.0
        (True, True)
    """

    kind = "vg.adversarial"
    history_type = AdversarialHistory

    def __init__(
        self,
        build: Callable[[], Distribution],
        learned: dict[str, torch.Tensor],
        renderer: Evaluator,
        discriminator: nn.Module,
        estimator: DistributionEstimator,
        targets: torch.Tensor,
        settings: GameSettings,
    ) -> None:
        self.build = build
        self.learned = learned
        self.renderer = renderer
        self.discriminator = discriminator
        self.estimator = estimator
        self.settings = settings
        self.batches = TargetBatches(targets, settings.samples, settings.seed)
        self.gap = math.inf if settings.max_gap is None else settings.max_gap
        self.started = settings.max_gap is None
        self.optimizer = torch.optim.Adam(learned.values(), lr=settings.lr, betas=(0.7, 0.999))
        # Ω's step size at game step t: the cosine over the run's steps (the budget, read at
        # each step); the scheduler advances every game step, whether or not Ω moved.
        self._steps = 1
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda t: cosine_step_size(1.0, settings.lr_decay, t, self._steps)
        )
        self.discriminator_optimizer = torch.optim.Adam(
            discriminator.parameters(), lr=settings.discriminator_lr, betas=(0.5, 0.999)
        )
        self.sampling = _generator(settings.seed)
        self.samples: torch.Tensor | None = None
        self.renders: torch.Tensor | None = None
        tensors = [*learned.values(), *discriminator.parameters()]
        self._devices = sorted({t.get_device() for t in tensors if t.is_cuda})

    def render(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) ``[N, C, H, W]`` through the render Evaluator, checked against the targets."""
        images = self.renderer(z)
        shape = self.batches.targets.shape[1:]
        if images.shape[1:] != shape:
            raise ValueError(
                f"render must return images of shape [N, {', '.join(map(str, shape))}] like the "
                f"targets; got {tuple(images.shape)}"
            )
        return images

    def step(self, state: RunState) -> AdversarialRecord | Stop:
        if state.spent >= state.budget:
            return Stop(f"{state.budget} steps done")
        self._steps = state.budget
        seed = int(torch.randint(0, 2**62, (1,), generator=self.sampling))
        with _seeded(seed, self._devices):
            query = self.estimator.ask(self.build(), self.batches.size)
            if query.differentiable:
                raise ValueError(
                    f"{type(self.estimator).__name__} differentiates f, but the renderer is "
                    "never differentiated; use an estimator that only evaluates f, such as "
                    "vg.ScoreFunction"
                )
            renders = self.render(query.inputs)
            real = self.batches.next()
            d_real, d_fake, updated = discriminator_step(
                self.discriminator, self.discriminator_optimizer, real, renders, self.gap
            )
            estimate = self.estimator.tell(query, discriminator_cost(self.discriminator, renders))
            self.estimator.update(estimate)
            self.started = self.started or d_real - d_fake >= self.gap
            if self.started:
                self._step_distribution(surrogate_of(estimate))
        self._advance_schedule()
        self.samples, self.renders = query.inputs.detach(), renders
        state.spent += 1
        return AdversarialRecord(
            step=state.step,
            d_real=d_real,
            d_fake=d_fake,
            cost=float(estimate.value),
            discriminator_updated=updated,
            distribution_updated=self.started,
            parameters=self.parameters(),
        )

    def _step_distribution(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def _advance_schedule(self) -> None:
        with warnings.catch_warnings():
            # Ω may wait for the discriminator's lead (max_gap) while its schedule runs on:
            # stepping the scheduler before the optimizer is intended here.
            warnings.filterwarnings("ignore", re.escape("Detected call of `lr_scheduler.step()`"))
            self.scheduler.step()

    def parameters(self) -> dict[str, torch.Tensor]:
        """Ω's current values by name (copies)."""
        return {name: value.detach().clone() for name, value in self.learned.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "parameters": self.parameters(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "discriminator_optimizer": self.discriminator_optimizer.state_dict(),
            "estimator": self.estimator.state_dict(),
            "batches": self.batches.state_dict(),
            "sampling": self.sampling.get_state(),
            "started": self.started,
            "samples": self.samples,
            "renders": self.renders,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = state["parameters"]
        if not isinstance(saved, dict) or saved.keys() != self.learned.keys():
            raise ValueError(f"the saved parameters are not {sorted(self.learned)}")
        with torch.no_grad():
            for name, value in self.learned.items():
                value.copy_(saved_tensor(saved, name, value))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])
        self.estimator.load_state_dict(state["estimator"])
        self.batches.load_state_dict(state["batches"])
        self.sampling.set_state(state["sampling"])
        if not isinstance(state["started"], bool):
            raise TypeError("started must be a bool")
        self.started = state["started"]
        samples, renders = state["samples"], state["renders"]
        if samples is not None:
            device = next(iter(self.learned.values())).device
            self.samples, self.renders = samples.to(device), renders.to(self.batches.targets.device)


class TargetBatches:
    """Batches of ``size`` targets without replacement, reshuffled after each pass.

    Args:
        targets: the target images ``[M, ...]``, M ≥ ``size``.
        size: images per batch.
        seed: seeds the shuffles (None: from the operating system).
    """

    def __init__(self, targets: torch.Tensor, size: int, seed: int | None) -> None:
        self.targets = targets
        self.size = size
        self._generator = _generator(seed)
        self._order = torch.empty(0, dtype=torch.long)

    def next(self) -> torch.Tensor:
        """The next batch ``[size, ...]``."""
        if len(self._order) < self.size:
            self._order = torch.randperm(len(self.targets), generator=self._generator)
        batch, self._order = self._order[: self.size], self._order[self.size :]
        return self.targets[batch]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shuffle stream and the rest of the current pass."""
        return {"generator": self._generator.get_state(), "order": self._order.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`."""
        order = state["order"]
        if not isinstance(order, torch.Tensor) or order.dtype != torch.long or order.ndim != 1:
            raise TypeError("the saved order of targets must be a 1-D int64 tensor")
        if len(order) and not (int(order.min()) >= 0 and int(order.max()) < len(self.targets)):
            raise ValueError(f"the saved order indexes outside the {len(self.targets)} targets")
        self._generator.set_state(state["generator"])
        self._order = order.clone()


def cosine_step_size(lr: float, decay: float, step: int, steps: int) -> float:
    """lr · (decay + (1 − decay) · (1 + cos(π t / T)) / 2): lr at t = 0, decay · lr at t = T."""
    return lr * (decay + (1 - decay) * (1 + math.cos(math.pi * step / steps)) / 2)


@torch.no_grad()
def discriminator_cost(discriminator: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """−log D(x) = softplus(−logit(x)) per image ``[N]``, outside any autograd graph."""
    return functional.softplus(-discriminator(images))


def discriminator_step(
    discriminator: nn.Module,
    optimizer: torch.optim.Optimizer,
    real: torch.Tensor,
    fake: torch.Tensor,
    max_gap: float,
) -> tuple[float, float, bool]:
    """D's lead, then one BCE step on real (label 1) vs fake (label 0) unless it is ``max_gap``.

    Returns (d_real, d_fake, updated): the mean σ(logit) of each batch before
    the step, and whether d_real − d_fake < ``max_gap`` let it take the step.
    """
    real_logits, fake_logits = discriminator(real), discriminator(fake.detach())
    d_real = float(torch.sigmoid(real_logits.detach()).mean())
    d_fake = float(torch.sigmoid(fake_logits.detach()).mean())
    updated = d_real - d_fake < max_gap
    if updated:
        loss = functional.binary_cross_entropy_with_logits(
            real_logits, torch.ones_like(real_logits)
        ) + functional.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return d_real, d_fake, updated


def _generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


@contextlib.contextmanager
def _seeded(seed: int, cuda_devices: list[int]) -> Iterator[None]:
    """Run the block on torch's global generators seeded with ``seed``, then restore them."""
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        yield
