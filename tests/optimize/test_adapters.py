"""The derivative-free adapters: budget, progress, seeds, failures, checkpoints, errors."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest
import torch

from voidgrad.optimize import adapters
from voidgrad.optimize.adapters import KNOWN_DFO, make_dfo, runtime
from voidgrad.optimize.dfo import DFOAdapter, ReplayDiverged

Objective = Callable[[torch.Tensor], torch.Tensor]

# The optional library each method needs; importorskip keeps the suite green without them.
REQUIRES: dict[str, str | None] = {
    "cma": "cma",
    "ga": "nevergrad",
    "nevergrad:OnePlusOne": "nevergrad",
    "annealing": None,
}
METHODS = list(REQUIRES)
D = 5


def sphere(X: torch.Tensor) -> torch.Tensor:
    """Squared distance to the all-ones point: 5 at the start x0 = 0."""
    return ((X - 1.0) ** 2).sum(1)


def build(method: str, d: int = D, seed: int = 0, budget: int = 500, **options: object):
    library = REQUIRES.get(method, "nevergrad")
    if library is not None:
        pytest.importorskip(library)
    x0 = torch.zeros(d, dtype=torch.float64)
    return make_dfo(method, x0, budget=budget, seed=seed, **options)


def drive(adapter: DFOAdapter, budget: int, f: Objective = sphere) -> list[torch.Tensor]:
    """The driver's loop in miniature; returns the batches asked (and checks the budget)."""
    asked: list[torch.Tensor] = []
    used = 0
    while used < budget:
        X = adapter.ask(budget - used)
        if X is None:
            break
        assert X.dtype == torch.float64 and X.dim() == 2 and 1 <= X.shape[0] <= budget - used
        used += X.shape[0]
        asked.append(X.clone())
        adapter.tell(X, f(X))
    assert used <= budget
    return asked


def finish(adapter: DFOAdapter) -> None:
    adapter.close()


@pytest.mark.parametrize("method", METHODS)
def test_stays_in_budget_and_makes_progress(method: str) -> None:
    adapter = build(method)
    try:
        asked = drive(adapter, 500)
        X = torch.cat(asked)
        assert X.shape[0] <= 500
        assert X.shape[0] >= 490  # nothing stops early on the sphere
        best = float(sphere(X).min())
        assert best < 0.1 * 5.0, f"{method}: best {best} from 5.0"
        rec = adapter.recommendation()
        assert rec.shape == (D,) and rec.dtype == torch.float64
        assert float(sphere(rec[None])[0]) < 0.1 * 5.0
        assert isinstance(adapter, DFOAdapter)
    finally:
        finish(adapter)


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_points(method: str) -> None:
    runs = []
    for seed in (3, 3, 4):
        adapter = build(method, seed=seed, budget=60)
        try:
            runs.append(torch.cat(drive(adapter, 60)))
        finally:
            finish(adapter)
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


@pytest.mark.parametrize("method", METHODS)
def test_global_numpy_rng_untouched(method: str) -> None:
    before = np.random.get_state()
    adapter = build(method, budget=60)
    try:
        drive(adapter, 60)
        adapter.recommendation()
        adapter.state()
    finally:
        finish(adapter)
    after = np.random.get_state()
    assert np.array_equal(before[1], after[1]) and before[2:] == after[2:]


@pytest.mark.parametrize("method", METHODS)
def test_nan_losses_are_survived(method: str) -> None:
    count = {"batches": 0, "evals": 0}

    def flaky(X: torch.Tensor) -> torch.Tensor:
        # Fail the whole first batch, every third evaluation, and the half-space x_0 > 1.5.
        count["batches"] += 1
        evals = torch.arange(count["evals"] + 1, count["evals"] + len(X) + 1)
        count["evals"] += len(X)
        failed = (evals % 3 == 0) | (X[:, 0] > 1.5) | (count["batches"] == 1)
        return torch.where(failed, torch.tensor(float("nan")), sphere(X))

    adapter = build(method, budget=300)
    try:
        asked = drive(adapter, 300, flaky)
        rec = adapter.recommendation()
    finally:
        finish(adapter)
    assert sum(x.shape[0] for x in asked) > 100
    assert torch.isfinite(rec).all()
    assert float(rec[0]) <= 1.5  # never a point that failed
    assert float(sphere(rec[None])[0]) < 5.0


@pytest.mark.parametrize("method", METHODS)
def test_state_restore_continues_identically(method: str) -> None:
    adapter = build(method, budget=200)
    try:
        drive(adapter, 80)
        state = adapter.state()
        expected = torch.cat(drive(adapter, 60))
        rec = adapter.recommendation()
    finally:
        finish(adapter)
    other = build(method, seed=99, budget=200)  # the state carries the seed's streams
    try:
        other.restore(state)
        assert torch.equal(torch.cat(drive(other, 60)), expected)
        assert torch.equal(other.recommendation(), rec)
    finally:
        finish(other)


@pytest.mark.parametrize("method", METHODS)
def test_state_is_plain_data_that_loads_without_pickle(method: str, tmp_path) -> None:
    adapter = build(method, budget=200)
    try:
        told = sum(len(X) for X in drive(adapter, 60))
        state = adapter.state()
        expected = torch.cat(drive(adapter, 40))
    finally:
        finish(adapter)
    assert all(isinstance(v, torch.Tensor | int | str) for v in state.values())
    assert state["losses"].shape == (told,) and int(state["rows"].sum()) == told  # not O(d)
    torch.save(state, tmp_path / "state.pt")
    loaded = torch.load(tmp_path / "state.pt", weights_only=True)
    other = build(method, budget=200)
    try:
        other.restore(loaded)
        assert torch.equal(torch.cat(drive(other, 40)), expected)
    finally:
        finish(other)


@pytest.mark.parametrize(
    ("method", "settings"),
    [("cma", {"sigma0": 0.7}), ("nevergrad:OnePlusOne", {"workers": 2}), ("ga", {"sigma": 0.5})],
)
def test_a_replay_under_other_settings_is_refused(method: str, settings: dict) -> None:
    adapter = build(method, budget=100)
    drive(adapter, 30)
    other = build(method, budget=100, **settings)
    with pytest.raises(ReplayDiverged, match=r"replaying batch 1 of \d+, the optimizer asked"):
        other.restore(adapter.state())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "NevergradAdapter"}, "state must be a CMAAdapter state"),
        ({"d": 4}, "state is for d=4"),
        ({"losses": torch.zeros(3)}, "'losses' must be a float64 tensor"),
        ({"rows": torch.tensor([1])}, "lengths do not agree"),
        ({"hashes": [1, 2]}, "'hashes' must be a 1-D torch.int64 tensor"),
        ({"seed": -1}, "state seed must be an int >= 0"),
    ],
)
def test_a_foreign_or_damaged_state_is_refused(change: dict, message: str) -> None:
    adapter = build("cma", budget=100)
    drive(adapter, 30)
    with pytest.raises(ValueError, match=message):
        build("cma").restore(adapter.state() | change)


@pytest.mark.parametrize("method", METHODS)
def test_protocol_misuse(method: str) -> None:
    adapter = build(method)
    try:
        with pytest.raises(RuntimeError, match="tell"):
            adapter.tell(torch.zeros(1, D, dtype=torch.float64), torch.zeros(1))
        X = adapter.ask(100)
        assert X is not None
        with pytest.raises(RuntimeError, match="ask"):
            adapter.ask(100)
        with pytest.raises(RuntimeError, match="checkpoint after tell"):
            adapter.state()
        with pytest.raises(ValueError, match="Y must be"):
            adapter.tell(X, torch.zeros(X.shape[0] + 1))
        with pytest.raises(ValueError, match="X must be"):
            adapter.tell(X[:, :2], sphere(X))
        adapter.tell(X, sphere(X))
        with pytest.raises(ValueError, match="limit"):
            adapter.ask(-1)
    finally:
        finish(adapter)


# --------------------------------------------------------------------------- cma


def test_cma_asks_whole_population_or_nothing() -> None:
    adapter = build("cma", popsize=10)
    assert adapter.ask(9) is None
    assert adapter.stop_reason is None
    X = adapter.ask(10)
    assert X is not None and X.shape == (10, D)


def test_cma_ends_the_run_once_converged() -> None:
    adapter = build("cma", budget=20_000)
    asked = drive(adapter, 20_000)
    assert sum(x.shape[0] for x in asked) < 5_000
    assert adapter.stop_reason is not None and "tolx" in adapter.stop_reason
    assert float(sphere(adapter.recommendation()[None])[0]) < 1e-15


def test_cma_keeps_going_on_a_plateau() -> None:
    adapter = build("cma", budget=400)
    asked = drive(adapter, 400, lambda X: torch.ones(X.shape[0], dtype=torch.float64))
    assert sum(x.shape[0] for x in asked) == 400 and adapter.stop_reason is None


def test_cma_switches_to_diagonal_above_threshold() -> None:
    assert not adapters.resolve_cma_diagonal(adapters.FULL_CMA_MAX_DIM, None)
    assert adapters.resolve_cma_diagonal(adapters.FULL_CMA_MAX_DIM + 1, None)
    assert build("cma", d=3000).es.opts["CMA_diagonal"] is True
    assert build("cma", d=5).es.opts["CMA_diagonal"] is False
    assert build("cma", d=5, diagonal=True).es.opts["CMA_diagonal"] is True


def test_cma_refuses_full_covariance_beyond_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("cma")
    monkeypatch.setattr(runtime, "available_memory_bytes", lambda: 10 * 2**20)
    x0 = torch.zeros(1000, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"d=1000 needs about 0\.02 GiB.*diagonal=True"):
        make_dfo("cma", x0, budget=10, seed=0, diagonal=False)
    make_dfo("cma", x0, budget=10, seed=0, diagonal=True)  # separable needs O(d)


def test_cma_writes_no_files(tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    drive(build("cma", budget=100), 100)
    assert os.listdir(tmp_path) == []


def test_cma_option_errors() -> None:
    with pytest.raises(ValueError, match="sigma0"):
        build("cma", sigma0=0.0)
    with pytest.raises(ValueError, match="popsize"):
        build("cma", popsize=1)
    with pytest.raises(ValueError, match="cma_options may not set seed"):
        build("cma", cma_options={"seed": 1})
    with pytest.raises(ValueError, match="unknown option.*sigma"):
        build("cma", sigma=1.0)


# --------------------------------------------------------------------------- nevergrad


def test_nevergrad_asks_up_to_workers() -> None:
    adapter = build("nevergrad:OnePlusOne", workers=4)
    X = adapter.ask(2)
    assert X is not None and X.shape == (2, D)
    adapter.tell(X, sphere(X))
    X = adapter.ask(100)
    assert X is not None and X.shape == (4, D)
    adapter.tell(X, sphere(X))
    assert adapter.ask(0) is None


def test_unknown_nevergrad_name_suggests_close_matches() -> None:
    pytest.importorskip("nevergrad")
    with pytest.raises(ValueError, match="unknown nevergrad optimizer 'OnePlusOen'.*OnePlusOne"):
        make_dfo("nevergrad:OnePlusOen", torch.zeros(3), budget=10, seed=0)


def test_nevergrad_replays_with_the_budget_it_was_built_with() -> None:
    # Shiwa plans with its budget: a restore into a larger one must still replay the same points
    short = build("nevergrad:Shiwa", budget=100)
    drive(short, 40)
    state = short.state()
    straight = build("nevergrad:Shiwa", budget=100)
    resumed = build("nevergrad:Shiwa", budget=1000)
    resumed.restore(state)
    assert torch.equal(torch.cat(drive(resumed, 30)), torch.cat(drive(straight, 70))[40:])


def test_ga_is_an_evolution_strategy_with_recombination() -> None:
    adapter = build("ga", popsize=10, offsprings=5)
    config = adapter.optimizer._config
    assert config.recombination_ratio == 1.0 and config.popsize == 10
    assert config.offsprings == 5 and not config.only_offsprings
    with pytest.raises(ValueError, match="recombination_ratio"):
        build("ga", recombination_ratio=2.0)


# --------------------------------------------------------------------------- make_dfo


def test_unknown_method_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"did you mean 'cma'.*nevergrad:<name>"):
        make_dfo("cmaa", torch.zeros(3), budget=10, seed=0)
    assert "cma" in KNOWN_DFO and "nevergrad:<name>" in KNOWN_DFO


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"budget": 0}, "budget"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**32}, "seed"),
        ({"workers": 0}, "workers"),
        ({"x0": torch.zeros(2, 2)}, "x0"),
        ({"x0": torch.tensor([0.0, float("nan")])}, "x0"),
    ],
)
def test_argument_validation(kwargs: dict[str, object], name: str) -> None:
    args: dict[str, object] = {"x0": torch.zeros(3), "budget": 10, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=name):
        make_dfo("cma", **args)  # type: ignore[arg-type]


def test_missing_dependency_names_the_extra() -> None:
    with pytest.raises(ImportError, match=r"pip install 'voidgrad\[bench\]'"):
        runtime.import_optional("voidgrad_no_such_module")
