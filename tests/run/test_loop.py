"""The run loop: budgets, stops, callbacks, checkpoints by steps and by time, resume, identity."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from voidgrad.run import Algorithm, RunState, Stop, record_callback, run
from voidgrad.run.checkpoint import CheckpointError
from voidgrad.run.records import Records


@dataclass(frozen=True)
class Tick:
    step: int
    spent: int
    value: float


class Ticks(Records[Tick]):
    record_type = Tick


class RandomWalk(Algorithm):
    """Spends ``cost`` a step and walks by seeded noise: its state is the position and stream."""

    kind = "test.walk"
    history_type = Ticks

    def __init__(self, cost: int = 3, seed: int = 0) -> None:
        self.cost = cost
        self.position = torch.zeros(2, dtype=torch.float64)
        self.generator = torch.Generator().manual_seed(seed)
        self.closed = 0

    def step(self, state: RunState) -> Tick | Stop:
        if state.spent + self.cost > state.budget:
            return Stop(f"budget of {state.budget} spent")
        self.position += torch.randn(2, generator=self.generator, dtype=torch.float64)
        state.spent += self.cost
        return Tick(state.step + 1, state.spent, float(self.position.sum()))

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position.clone(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.position = state["position"].clone()
        self.generator.set_state(state["generator"])

    def close(self) -> None:
        self.closed += 1


def test_the_algorithm_stops_the_run_when_its_step_does_not_fit() -> None:
    walk = RandomWalk(cost=3)
    state = run(walk, 10, progress=False)
    assert (state.step, state.spent, state.message, state.finished) == (
        3,
        9,
        "budget of 10 spent",
        True,
    )
    assert [tick.spent for tick in state.history] == [3, 6, 9]
    assert state.record == state.history[-1] and walk.closed == 1


def test_a_callback_sees_the_state_and_can_stop_the_run() -> None:
    seen: list[tuple[int, int]] = []

    def stop_at_two(state: RunState) -> bool:
        seen.append((state.step, state.remaining))
        return state.step == 2

    state = run(RandomWalk(cost=3), 30, callbacks=[stop_at_two], progress=False)
    assert seen == [(1, 27), (2, 24)]
    assert (state.message, state.finished) == ("stopped by the callback", False)


def test_record_callback_passes_the_record_or_the_record_and_the_state() -> None:
    records: list[Tick] = []
    pairs: list[tuple[int, int]] = []
    run(RandomWalk(), 9, callbacks=[record_callback(records.append)], progress=False)
    run(
        RandomWalk(),
        9,
        callbacks=[record_callback(lambda record, state: pairs.append((record.step, state.spent)))],
        progress=False,
    )
    assert [r.step for r in records] == [1, 2, 3] and pairs == [(1, 3), (2, 6), (3, 9)]
    with pytest.raises(TypeError, match="callback must be callable; got int"):
        record_callback(3)  # type: ignore[arg-type]


def uninterrupted(budget: int = 30) -> RunState:
    return run(RandomWalk(), budget, progress=False)


def test_a_resumed_run_ends_where_the_uninterrupted_one_does(tmp_path: Path) -> None:
    path = tmp_path / "walk.ckpt"
    stop_at_four = lambda state: state.step == 4  # noqa: E731
    run(RandomWalk(), 30, checkpoint=path, callbacks=[stop_at_four], progress=False)
    resumed = run(RandomWalk(), 30, checkpoint=path, progress=False)
    whole = uninterrupted()
    assert resumed.resumed and resumed.step == whole.step == 10
    assert resumed.history.to_dicts() == whole.history.to_dicts()


def test_a_finished_run_returns_at_once_with_its_budget_and_continues_with_a_larger_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "walk.ckpt"
    run(RandomWalk(), 9, checkpoint=path, progress=False)
    again = RandomWalk()
    state = run(again, 9, checkpoint=path, progress=False)
    assert state.finished and state.step == 3 and again.position.abs().sum() > 0  # restored
    longer = run(RandomWalk(), 30, checkpoint=path, progress=False)
    assert longer.history.to_dicts() == uninterrupted().history.to_dicts()


def test_checkpoints_are_written_every_n_steps(tmp_path: Path) -> None:
    path = tmp_path / "walk.ckpt"
    steps_saved: list[int] = []

    def look(state: RunState) -> None:
        if path.exists():
            steps_saved.append(torch.load(path, weights_only=True)["loop"]["step"])

    run(RandomWalk(), 30, checkpoint=path, checkpoint_every=4, callbacks=[look], progress=False)
    # the callback runs before the step's save: it sees the previous save
    assert sorted(set(steps_saved)) == [4, 8]
    assert torch.load(path, weights_only=True)["loop"]["step"] == 10  # and at the end


def test_checkpoints_are_written_by_elapsed_time(tmp_path: Path, monkeypatch) -> None:
    import voidgrad.run.loop as loop

    clock = itertools.count(0.0, 1.0)  # every reading of the clock is one second later
    monkeypatch.setattr(loop.time, "perf_counter", lambda: next(clock))
    path = tmp_path / "walk.ckpt"
    saved: list[int] = []
    original = loop.save_checkpoint
    monkeypatch.setattr(
        loop, "save_checkpoint", lambda p, s: (saved.append(s["loop"]["step"]), original(p, s))
    )
    run(
        RandomWalk(),
        30,
        checkpoint=path,
        checkpoint_every=None,
        checkpoint_seconds=4.5,
        progress=False,
    )
    assert saved and saved[-1] == 10 and len(saved) < 10  # by time, not every step


def test_a_checkpoint_of_another_run_or_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "walk.ckpt"
    run(RandomWalk(), 9, checkpoint=path, identity={"seed": 0}, progress=False)
    with pytest.raises(CheckpointError, match="seed"):
        run(RandomWalk(), 9, checkpoint=path, identity={"seed": 1}, progress=False)

    class OtherWalk(RandomWalk):
        kind = "test.other"

    with pytest.raises(CheckpointError, match="written by 'test.walk'"):
        run(OtherWalk(), 9, checkpoint=path, identity={"seed": 0}, progress=False)


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("budget", 0, "budget must be an int >= 1"),
        ("checkpoint_every", 0, "checkpoint_every must be an int >= 1"),
        ("checkpoint_seconds", -1.0, "checkpoint_seconds must be a finite number > 0"),
    ],
)
def test_bad_arguments_are_named(argument: str, value: object, message: str) -> None:
    options: dict[str, Any] = {"budget": 9, "progress": False, argument: value}
    with pytest.raises(ValueError, match=message):
        run(RandomWalk(), **options)
