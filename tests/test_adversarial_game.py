"""vg.adversarial's game on the run loop: the order of the moves, and no training in the cost."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional

import voidgrad as vg
from tests.test_adversarial import SIZE, Brightness, fit, flat_images, flat_targets
from voidgrad.adversarial_game import (
    AdversarialGame,
    AdversarialRecord,
    GameSettings,
    cosine_step_size,
)
from voidgrad.run import RunState


def traced_game(events: list[str]) -> AdversarialGame:
    """A game whose renderer, discriminator and optimizers write what they do to ``events``."""
    torch.manual_seed(0)
    distribution = Brightness()

    def render(z: torch.Tensor) -> torch.Tensor:
        events.append("render")
        return flat_images(z)

    discriminator = nn.Sequential(nn.Flatten(), nn.Linear(SIZE * SIZE, 1), nn.Flatten(0))
    discriminator.register_forward_pre_hook(
        lambda *_: events.append("D forward" + (" (grad)" if torch.is_grad_enabled() else ""))
    )
    game = AdversarialGame(
        distribution,
        dict(distribution.named_parameters()),
        vg.Evaluator(render, "vectorized"),
        discriminator,
        vg.ScoreFunction(baseline="leave_one_out"),
        flat_targets(),
        GameSettings(8, lr=0.02, lr_decay=0.1, discriminator_lr=1e-3, max_gap=None, seed=0),
    )
    game.discriminator_optimizer.register_step_post_hook(lambda *_: events.append("D step"))
    game.optimizer.register_step_post_hook(lambda *_: events.append("Ω step"))
    return game


def test_the_renders_are_scored_after_the_discriminator_s_step_and_nothing_trains_then() -> None:
    events: list[str] = []
    game = traced_game(events)
    state = RunState(game, budget=3, unit="steps")
    for _ in range(3):
        events.clear()
        before = [p.detach().clone() for p in game.discriminator.parameters()]
        record = game.step(state)
        state.step += 1
        assert events == [
            "render",
            "D forward (grad)",  # d_real, d_fake, then D's binary cross-entropy step
            "D forward (grad)",
            "D step",
            "D forward",  # the cost: the renders scored by D_{t+1}, no graph, no step
            "Ω step",
        ]
        assert isinstance(record, AdversarialRecord) and game.renders is not None
        with torch.no_grad():
            scored = game.discriminator(game.renders)
        assert record.cost == float(functional.softplus(-scored).mean())
        after = list(game.discriminator.parameters())
        assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert state.spent == 3


def test_a_short_seeded_run_ends_where_the_old_loop_did_bit_for_bit() -> None:
    # Pinned at 39b574c, whose loop trained the discriminator inside the cost: the game
    # keeps its order of moves (D's step, then the renders scored, then Ω's step).
    result = fit(steps=20, max_gap=None)
    assert result.parameters["loc"].item() == 0.4589845836162567
    last = result.history[-1]
    assert (last["d_real"], last["d_fake"], last["cost"]) == (
        0.921754777431488,
        0.5104483962059021,
        2.1033618450164795,
    )
    assert fit(steps=20).parameters["loc"].item() == 0.22177481651306152  # max_gap=0.7


def test_an_unseeded_run_leaves_torch_s_global_generator_alone() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    fit(steps=3, seed=None, max_gap=None)
    assert torch.equal(torch.get_rng_state(), before)


def test_a_callback_gets_each_record_and_can_stop_the_run() -> None:
    seen: list[AdversarialRecord] = []

    def callback(record: AdversarialRecord) -> bool:
        seen.append(record)
        return record.step == 3

    result = fit(steps=10, callback=callback)
    assert [record.step for record in seen] == [0, 1, 2, 3] and len(result.history) == 4
    assert result.history[-1]["d_real"] == seen[-1].d_real
    sizes: list[Any] = []
    fit(steps=2, callback=lambda record, state: sizes.append(state.algorithm.renders.shape[0]))
    assert sizes == [32, 32]


def test_the_step_size_follows_torch_s_scheduler_along_the_cosine() -> None:
    game = traced_game([])
    assert isinstance(game.scheduler, torch.optim.lr_scheduler.LambdaLR)
    state = RunState(game, budget=10, unit="steps")
    for step in range(4):
        assert game.optimizer.param_groups[0]["lr"] == cosine_step_size(0.02, 0.1, step, 10)
        game.step(state)
        state.step += 1
    assert game.scheduler.state_dict()["last_epoch"] == 4
    assert game.state_dict()["scheduler"]["last_epoch"] == 4
