"""The Ray backend on a real local Ray runtime (slow: Ray takes seconds to start; make test-all).

Each test starts from one shared runtime; actors are per evaluator.
"""

from __future__ import annotations

import subprocess
import time

import pytest
import torch

import voidgrad as vg
from tests.evaluation.test_process import (
    BAD_ROWS,
    evaluators_on,
    load_scene,
    misbehave,
    scene_info,
    stochastic,
)
from tests.test_docstring_examples import doctests_under, run_doctest

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


def test_an_evaluator_that_started_ray_shuts_it_down_on_close() -> None:
    assert not ray.is_initialized()
    evaluator = vg.Evaluator(misbehave, backend="ray", workers=1)
    assert torch.equal(evaluator(torch.tensor([[0.0, 2.0]])), torch.tensor([2.0]))
    evaluator.close()
    assert not ray.is_initialized()


def test_the_docstring_example_runs() -> None:
    """Before the shared runtime starts: the example starts (and stops) its own."""
    (example,) = doctests_under("voidgrad.evaluation.ray_backend.RayBackend")
    run_doctest(example)
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def runtime():
    """One local runtime for the module, with room for several evaluators' actors."""
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def pool(runtime):
    with evaluators_on("ray") as make:
        yield make


def test_results_come_back_in_order_and_equal_serial_and_process(pool) -> None:
    X = torch.randn(30, 3, dtype=torch.float64)

    def fn(row: torch.Tensor) -> torch.Tensor:
        return torch.stack([row.sum(), row.prod()])

    expected = vg.Evaluator(fn)(X)
    with vg.Evaluator(fn, backend="process", workers=2) as process:
        torch.testing.assert_close(process(X), expected, rtol=0, atol=0)
    torch.testing.assert_close(pool(fn)(X), expected, rtol=0, atol=0)


def test_init_runs_once_per_actor(pool) -> None:
    evaluator = pool(scene_info, init=load_scene)
    first = evaluator(torch.arange(8.0)[:, None])
    second = evaluator(torch.arange(8.0)[:, None])
    assert torch.equal(first[:, 0], torch.ones(8)) and torch.equal(second[:, 0], torch.ones(8))
    assert len(set(first[:, 1].tolist()) | set(second[:, 1].tolist())) == 2


@pytest.mark.parametrize("kind", sorted(BAD_ROWS), ids=[BAD_ROWS[k][0] for k in sorted(BAD_ROWS)])
def test_each_failure_under_each_policy_and_the_pool_keeps_working(pool, kind) -> None:
    X = torch.tensor([[0.0, 1.0], [float(kind), 2.0], [0.0, 3.0]])
    raising = pool(misbehave, timeout=1.0)
    expected = {1: "timeout", 2: "Ray actor died", 3: "Ray actor died", 4: "bad row"}[kind]
    with pytest.raises(vg.EvaluationError, match=expected) as caught:
        raising(X)
    assert caught.value.row == 1
    assert torch.equal(raising(X[[0, 2]]), torch.tensor([1.0, 3.0]))
    lenient = pool(misbehave, timeout=1.0, on_error="nan")
    Y = lenient(X)
    assert Y[0] == 1.0 and torch.isnan(Y[1]) and Y[2] == 3.0


def test_a_dead_actor_is_replaced_and_its_row_retried(pool) -> None:
    evaluator = pool(misbehave, retries=1, on_error="nan")
    Y = evaluator(torch.tensor([[2.0, 0.0], [0.0, 4.0]]))
    assert torch.isnan(Y[0]) and Y[1] == 4.0
    assert evaluator.stats.attempts == 3  # the dying row twice, the good row once


def test_seeded_results_do_not_depend_on_the_backend_or_workers(pool) -> None:
    X = torch.randn(10, 2, dtype=torch.float64)
    results = [
        pool(stochastic, workers=1, seed=3)(X),
        pool(stochastic, workers=2, seed=3)(X),
        vg.Evaluator(stochastic, seed=3)(X),
    ]
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])


def ray_worker_pids() -> set[int]:
    listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return {int(line.split()[0]) for line in listing.splitlines() if "ray::_Evaluations" in line}


def test_close_kills_the_actors(pool) -> None:
    before = ray_worker_pids()
    evaluator = pool(misbehave)
    evaluator(torch.zeros(2, 2))
    started = ray_worker_pids() - before
    assert started
    evaluator.close()
    deadline = time.monotonic() + 30  # ray.kill is asynchronous
    while ray_worker_pids() & started and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not (ray_worker_pids() & started)


def test_more_workers_than_free_cpus_is_a_clear_error(pool) -> None:
    with pytest.raises(vg.WorkerInitError, match="do not fit: the cluster has"):
        pool(misbehave, workers=64)(torch.zeros(1, 2))
