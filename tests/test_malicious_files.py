"""Nothing voidgrad loads runs code: a planted file is refused, by name, and its code never runs.

Every loader gets files whose unpickling would create a marker file: a pickle
saved by ``torch.save`` and one written raw, and for the derivative-free
optimizers the old checkpoint format that stored their state as a pickle in a
uint8 tensor. Each must fail with an error naming the file, and the marker
must never appear.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import voidgrad as vg
from voidgrad.run.checkpoint import CheckpointError


class Planted:
    """Unpickling this creates the file ``marker`` (as an attacker's code would run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def quadratic(x: torch.Tensor) -> float:
    return float(((x - 1.0) ** 2).sum())


def plant_torch_save(path: Path, marker: Path) -> None:
    torch.save({"format": 2, "kind": "vg.minimize", "run": {}, "payload": Planted(marker)}, path)


def plant_raw_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"format": 2, "payload": Planted(marker)}))


PLANTS = [
    pytest.param(plant_torch_save, id="torch.save"),
    pytest.param(plant_raw_pickle, id="raw-pickle"),
]


def refuse(load: Callable[[Path], object], path: Path, marker: Path) -> None:
    """``load(path)`` raises an error naming ``path``, and the planted code did not run."""
    with pytest.raises((ValueError, TypeError, RuntimeError)) as caught:
        load(path)
    assert not marker.exists(), "code from the file ran"
    assert str(path) in str(caught.value) or path.name in str(caught.value)


def minimize_with(method: str) -> Callable[[Path], object]:
    def load(path: Path) -> object:
        x0 = torch.zeros(2, dtype=torch.float64)
        return vg.minimize(quadratic, x0, method=method, budget=64, progress=False, checkpoint=path)

    return load


def rl_train(path: Path) -> object:
    pytest.importorskip("gymnasium")
    return vg.rl.train("CartPole-v1", env_steps=50, width=8, progress=False, checkpoint=path)


def meta_load(path: Path) -> object:
    learner = vg.meta.MetaLearner(torch.nn.Linear(1, 1), inner_steps=1)
    learner.load(path)
    return learner


DFO = [
    ("cma", "cma"),
    ("annealing", "scipy"),
    ("ga", "nevergrad"),
    ("nevergrad:OnePlusOne", "nevergrad"),
]
LOADERS = [
    pytest.param(minimize_with("smoothing"), id="minimize-smoothing"),
    *(pytest.param(minimize_with(method), id=f"minimize-{method}") for method, _ in DFO),
    pytest.param(rl_train, id="rl.train"),
    pytest.param(meta_load, id="MetaLearner.load"),
]


@pytest.mark.parametrize("plant", PLANTS)
@pytest.mark.parametrize("load", LOADERS)
def test_a_planted_pickle_never_runs(load, plant, tmp_path) -> None:
    marker, path = tmp_path / "ran", tmp_path / "planted.ckpt"
    plant(path, marker)
    refuse(load, path, marker)


@pytest.mark.parametrize(("method", "module"), DFO, ids=[m for m, _ in DFO])
def test_the_old_pickled_optimizer_state_never_runs(method, module, tmp_path) -> None:
    """Format 1 kept a DFO optimizer as a pickle in a uint8 tensor, which loads weights-only."""
    pytest.importorskip(module)
    marker, path = tmp_path / "ran", tmp_path / "run.ckpt"
    minimize_with(method)(path)
    state = torch.load(path, weights_only=True)
    payload = torch.frombuffer(bytearray(pickle.dumps(Planted(marker))), dtype=torch.uint8)
    state["loop"]["finished"] = False
    state["algorithm"]["adapter"] = (
        payload.clone()
    )  # today's format with the pickle where the log goes
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="state must be a"):
        minimize_with(method)(path)
    assert not marker.exists()
    torch.save({**state, "format": 1}, path)  # the old format itself
    with pytest.raises(CheckpointError, match="format 1"):
        minimize_with(method)(path)
    assert not marker.exists()


def test_a_checkpoint_holds_no_pickled_object(tmp_path) -> None:
    """Every tensor in a DFO checkpoint is numbers (no uint8 byte blob that could hide one)."""
    pytest.importorskip("cma")
    path = tmp_path / "run.ckpt"
    minimize_with("cma")(path)

    def tensors(value: object) -> list[torch.Tensor]:
        if isinstance(value, torch.Tensor):
            return [value]
        if isinstance(value, dict):
            return [t for item in value.values() for t in tensors(item)]
        if isinstance(value, list):
            return [t for item in value for t in tensors(item)]
        return []

    found = tensors(torch.load(path, weights_only=True))
    assert found and all(t.dtype in (torch.float64, torch.int64) for t in found)


def test_a_planted_bench_cell_never_runs(tmp_path) -> None:
    """Bench cell files are JSON; a planted pickle in one is refused by name or recomputed."""
    from voidgrad.bench import BenchSettings, run_bench

    settings = BenchSettings(
        problems=["sphere:2"], methods=["fd"], budget=40, seeds=1, out=tmp_path / "out"
    )
    run_bench(settings, log=lambda _: None)
    cells = sorted((tmp_path / "out" / "cells").glob("*.json"))
    assert cells
    marker = tmp_path / "ran"
    for cell in cells:
        cell.write_bytes(pickle.dumps(Planted(marker)))
    try:
        results = run_bench(settings, log=lambda _: None)
    except (ValueError, RuntimeError) as error:
        assert any(cell.name in str(error) for cell in cells), error
    else:
        assert all(record["error"] is None for record in results["cells"])
        assert all(json.loads(cell.read_text()) for cell in cells)  # recomputed and rewritten
    assert not marker.exists()
