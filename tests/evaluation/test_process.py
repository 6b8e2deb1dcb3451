"""The process backend, with real processes: order, failures under each policy, retries, seeds,
per-worker set-up and clean shutdown (checked in the process table)."""

from __future__ import annotations

import _thread
import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

import voidgrad as vg
from voidgrad.evaluation import ProcessBackend

_SCENE: dict[str, int] = {}


def load_scene() -> None:
    """A stand-in for expensive per-worker set-up."""
    _SCENE["loads"] = _SCENE.get("loads", 0) + 1
    _SCENE["pid"] = os.getpid()


def scene_info(row: torch.Tensor) -> torch.Tensor:
    return torch.tensor([float(_SCENE["loads"]), float(_SCENE["pid"]), float(row[0])])


def misbehave(row: torch.Tensor) -> float:
    """Row [k, x]: k = 1 hangs, 2 exits, 3 segfaults, 4 raises; otherwise returns x."""
    kind = int(row[0])
    if kind == 1:
        time.sleep(60)
    elif kind == 2:
        os._exit(1)
    elif kind == 3:
        ctypes.string_at(0)
    elif kind == 4:
        raise ValueError("bad row")
    return float(row[1])


def stochastic(row: torch.Tensor, seed: int) -> float:
    generator = torch.Generator().manual_seed(seed)
    return float(row.sum() + torch.randn((), generator=generator))


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@contextlib.contextmanager
def evaluators_on(backend: str):
    """A factory of Evaluators on ``backend`` (2 workers unless told), all closed on exit."""
    evaluators: list[vg.Evaluator] = []

    def make(fn, **options) -> vg.Evaluator:
        options.setdefault("workers", 2)
        evaluator = vg.Evaluator(fn, backend=backend, **options)
        evaluators.append(evaluator)
        return evaluator

    try:
        yield make
    finally:
        for evaluator in evaluators:
            evaluator.close()


@pytest.fixture
def pool():
    with evaluators_on("process") as make:
        yield make


def test_results_come_back_in_input_order_and_equal_serial(pool) -> None:
    X = torch.randn(40, 3, dtype=torch.float64)
    fn = lambda row: torch.stack([row.sum(), row.prod()])  # noqa: E731 (a lambda pickles too)
    torch.testing.assert_close(pool(fn)(X), vg.Evaluator(fn)(X), rtol=0, atol=0)


def test_init_runs_once_per_worker(pool) -> None:
    evaluator = pool(scene_info, init=load_scene)
    first = evaluator(torch.arange(10.0)[:, None])
    second = evaluator(torch.arange(10.0)[:, None])
    assert torch.equal(first[:, 0], torch.ones(10)) and torch.equal(second[:, 0], torch.ones(10))
    assert len(set(first[:, 1].tolist()) | set(second[:, 1].tolist())) == 2  # both workers
    assert "loads" not in _SCENE  # set-up happened in the workers, not here


def test_a_failing_init_is_an_error_before_anything_runs() -> None:
    def broken() -> None:
        raise OSError("scene file missing")

    with (
        vg.Evaluator(float, backend="process", workers=1, init=broken) as evaluator,
        pytest.raises(vg.WorkerInitError, match="scene file missing"),
    ):
        evaluator(torch.zeros(2, 1))


BAD_ROWS = {
    1: ("hangs", "ran past the 0.5 s timeout"),
    2: ("exits", r"worker process died \(exit code 1\)"),
    3: ("segfaults", r"worker process died \(exit code -11\)"),
    4: ("raises", "fn raised ValueError: bad row"),
}


@pytest.mark.parametrize("kind", sorted(BAD_ROWS), ids=[BAD_ROWS[k][0] for k in sorted(BAD_ROWS)])
def test_each_failure_raises_with_its_row_and_the_pool_keeps_working(pool, kind) -> None:
    evaluator = pool(misbehave, timeout=0.5)
    X = torch.tensor([[0.0, 1.0], [float(kind), 2.0], [0.0, 3.0]])
    with pytest.raises(vg.EvaluationError, match=BAD_ROWS[kind][1]) as caught:
        evaluator(X)
    assert caught.value.row == 1
    assert torch.equal(caught.value.params, X[1])
    assert torch.equal(evaluator(torch.tensor([[0.0, 5.0], [0.0, 6.0]])), torch.tensor([5.0, 6.0]))


def test_every_failure_becomes_nan_under_the_nan_policy(pool) -> None:
    evaluator = pool(misbehave, timeout=0.5, on_error="nan")
    X = torch.tensor([[0.0, 1.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0], [0.0, 6.0]])
    Y = evaluator(X)
    assert Y[0] == 1.0 and Y[5] == 6.0 and torch.isnan(Y[1:5]).all()
    assert evaluator.stats.evals == 6 and evaluator.stats.failures == 4
    assert evaluator.stats.successes == 2
    assert torch.equal(evaluator(X[[0, 5]]), torch.tensor([1.0, 6.0]))


def dies_once_per_row(row: torch.Tensor) -> float:
    """Crashes the first time it sees a row, succeeds the second (a marker file remembers)."""
    marker = Path(os.environ["VG_TEST_MARKERS"]) / f"row{int(row[0])}"
    if not marker.exists():
        marker.touch()
        os._exit(1)
    return float(row[0])


def test_a_row_whose_worker_died_is_retried_and_every_attempt_counted(
    pool, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("VG_TEST_MARKERS", str(tmp_path))
    evaluator = pool(dies_once_per_row, retries=1)
    assert torch.equal(evaluator(torch.tensor([[1.0], [2.0]])), torch.tensor([1.0, 2.0]))
    assert evaluator.stats.evals == 2 and evaluator.stats.attempts == 4
    assert evaluator.stats.failures == 0


def test_retries_run_out_then_the_policy_applies(pool) -> None:
    evaluator = pool(misbehave, retries=2)
    with pytest.raises(vg.EvaluationError, match=r"died .*\(3 attempts\)"):
        evaluator(torch.tensor([[2.0, 0.0]]))
    assert evaluator.stats.attempts == 3


def test_seeded_results_do_not_depend_on_the_number_of_workers(pool) -> None:
    X = torch.randn(12, 2, dtype=torch.float64)
    one = pool(stochastic, workers=1, seed=7)
    two = pool(stochastic, workers=2, seed=7)
    serial = vg.Evaluator(stochastic, seed=7)
    results = [ev(X) for ev in (one, two, serial)]
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])
    assert not torch.equal(results[0], pool(stochastic, workers=2, seed=8)(X))


def test_gaussian_smoothing_gives_the_same_steps_through_the_pool(pool) -> None:
    def run(evaluator: vg.Evaluator) -> torch.Tensor:
        theta = torch.tensor([0.5, -0.3], dtype=torch.float64, requires_grad=True)
        estimator = vg.GaussianSmoothing(sigma=0.2, samples=8, seed=0)
        loss_fn = vg.blackbox(evaluator.fn, estimator, evaluator=evaluator)
        optimizer = torch.optim.Adam([theta], lr=0.05)
        for _ in range(5):
            optimizer.zero_grad()
            loss_fn(theta).backward()
            optimizer.step()
        return theta.detach()

    def sphere(x: torch.Tensor) -> torch.Tensor:
        return (x**2).sum()

    assert torch.equal(run(vg.Evaluator(sphere)), run(pool(sphere)))


def test_close_leaves_no_worker_processes(pool) -> None:
    evaluator = pool(misbehave)
    evaluator(torch.zeros(4, 2))
    pids = evaluator.backend.pids()
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    evaluator.close()
    assert not any(alive(pid) for pid in pids)


SCRIPT = textwrap.dedent(
    """
    import signal, sys, time, torch, voidgrad as vg
    # A child inherits its parent's blocked and ignored signals; what the user's shell gives
    # a program is Ctrl-C as KeyboardInterrupt, so start from that whatever pytest holds.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.default_int_handler)
    def slow(row):
        time.sleep(float(row[0]))
        return 1.0
    ev = vg.Evaluator(slow, backend="process", workers=2)
    ev(torch.zeros(2, 1))
    print(*ev.backend.pids(), flush=True)
    if sys.argv[1] == "hang":
        ev(torch.full((2, 1), 60.0))
    """
)


def run_script(mode: str) -> tuple[subprocess.Popen, list[int]]:
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, mode], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    pids = [int(pid) for pid in process.stdout.readline().split()]
    assert len(pids) == 2
    return process, pids


def wait_gone(pids: list[int], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(alive(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


def test_interpreter_exit_leaves_no_worker_processes() -> None:
    process, pids = run_script("exit")
    assert process.wait(timeout=30) == 0
    assert wait_gone(pids)


def test_ctrl_c_leaves_no_worker_processes() -> None:
    process, pids = run_script("hang")
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) != 0
    assert wait_gone(pids)


def test_killing_the_parent_takes_the_workers_with_it() -> None:
    process, pids = run_script("hang")
    process.kill()
    process.wait(timeout=30)
    assert wait_gone(pids)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"workers": 0}, ValueError, "workers must be a positive int"),
        ({"timeout": 0}, ValueError, "timeout must be a number of seconds > 0"),
        ({"retries": -1}, ValueError, "retries must be a non-negative int"),
        ({"init": 3}, TypeError, "init must be callable"),
        ({"ray_address": "auto"}, ValueError, "ray_address needs backend='ray'"),
    ],
)
def test_bad_options(options, error, message) -> None:
    with pytest.raises(error, match=message):
        vg.Evaluator(float, backend="process", **options)


def test_pool_options_on_an_in_process_backend_are_refused() -> None:
    with pytest.raises(ValueError, match="timeout, retries need.* backend='process' or 'ray'"):
        vg.Evaluator(float, timeout=1.0, retries=1)


def test_spawned_workers_run_closures_defined_at_run_time() -> None:
    """The spawn start method shares nothing with the parent: fn must travel by value."""
    offset = torch.tensor(2.5)

    def shifted(row: torch.Tensor) -> torch.Tensor:
        return row.sum() + offset

    backend = ProcessBackend(2, start_method="spawn")
    with vg.Evaluator(shifted, backend=backend) as evaluator:
        assert torch.equal(evaluator(torch.ones(4, 2)), torch.full((4,), 4.5))


class _ForkUnsafe:
    """A black box that, like a Blender renderer, must not run in a forked process."""

    process_start_method = "spawn"

    def __call__(self, row: torch.Tensor) -> torch.Tensor:
        """1 where the parent's module state was inherited (a fork), 0 in a fresh process."""
        return torch.tensor(float("parent" in _INHERITED))


_INHERITED: dict[str, bool] = {}


def test_a_black_box_can_ask_for_spawned_workers() -> None:
    _INHERITED["parent"] = True
    with vg.Evaluator(_ForkUnsafe(), backend="process", workers=1) as evaluator:
        backend = evaluator.backend
        assert isinstance(backend, ProcessBackend)
        assert backend._context.get_start_method() == "spawn"
        assert evaluator(torch.zeros(2, 1)).tolist() == [0.0, 0.0]
    with vg.Evaluator(lambda row: row.sum(), backend="process", workers=1) as evaluator:
        assert evaluator.backend._context.get_start_method() == "fork"  # type: ignore[attr-defined]


def test_a_start_method_that_is_not_a_name_is_rejected() -> None:
    box = _ForkUnsafe()
    box.process_start_method = 3  # type: ignore[assignment]
    with pytest.raises(TypeError, match="process_start_method"):
        vg.Evaluator(box, backend="process")


def scaled(row: torch.Tensor, k: int) -> float:
    return float(row.sum()) * k


def test_a_reused_backend_runs_the_function_each_evaluator_gives_it() -> None:
    """Freed partials often get the address of the previous one; each must still run as given."""
    backend = ProcessBackend(2)
    try:
        for k in range(8):
            evaluator = vg.Evaluator(functools.partial(scaled, k=k), backend=backend)
            assert evaluator(torch.ones(4, 2)).tolist() == [2.0 * k] * 4, f"k={k}"
            del evaluator
    finally:
        backend.close()


class _Scaled:
    def __init__(self, k: float) -> None:
        self.k = k

    def __call__(self, row: torch.Tensor) -> float:
        return float(row.sum()) * self.k


def test_a_callable_changed_between_batches_runs_with_its_new_state(pool) -> None:
    box = _Scaled(1.0)
    evaluator = pool(box)
    assert evaluator(torch.ones(2, 1)).tolist() == [1.0, 1.0]
    box.k = 5.0
    assert evaluator(torch.ones(2, 1)).tolist() == [5.0, 5.0]


_ARRIVALS = {"count": 0}


class _CountsItsArrivals:
    """Returns how often a copy of it was unpickled in this process."""

    def __init__(self) -> None:
        self.tag = "state"  # a non-empty state, so that unpickling calls __setstate__

    def __setstate__(self, state: dict[str, str]) -> None:
        _ARRIVALS["count"] += 1
        self.__dict__.update(state)

    def __call__(self, row: torch.Tensor) -> float:
        return float(_ARRIVALS["count"])


def test_an_unchanged_function_is_sent_to_a_worker_once(pool) -> None:
    evaluator = pool(_CountsItsArrivals(), workers=1)
    assert evaluator(torch.zeros(2, 1)).tolist() == [1.0, 1.0]
    assert evaluator(torch.zeros(2, 1)).tolist() == [1.0, 1.0]


def test_fn_writing_into_its_input_leaves_the_callers_tensor_alone(pool) -> None:
    def overwrite(row: torch.Tensor) -> float:
        value = float(row.sum())
        row.mul_(0).add_(123)
        return value

    X = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert pool(overwrite)(X).tolist() == [3.0, 7.0]
    assert X.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_an_unpicklable_fn_is_named() -> None:
    lock = threading.Lock()

    def locked(row: torch.Tensor) -> float:
        with lock:
            return float(row.sum())

    with (
        vg.Evaluator(locked, backend="process", workers=1) as evaluator,
        pytest.raises(TypeError, match="fn must be picklable with cloudpickle.*lock"),
    ):
        evaluator(torch.ones(1, 1))


def started_then_hang(row: torch.Tensor) -> float:
    """Rows 0 and 1 return at once; any other row leaves a marker file, then hangs."""
    index = int(row[0])
    if index >= 2:
        (Path(os.environ["VG_TEST_MARKERS"]) / f"row{index}").touch()
        time.sleep(60)
    return 0.0


def test_ctrl_c_in_the_parent_still_counts_the_rows_that_ran(tmp_path, monkeypatch) -> None:
    """Two workers: rows 0 and 1 finish, rows 2 and 3 are running when Ctrl-C arrives, rows 4
    and 5 never start. Four rows ran (two of them partly): the budget must see four."""
    monkeypatch.setenv("VG_TEST_MARKERS", str(tmp_path))
    # Ctrl-C as the user's shell delivers it, whatever the test runner installed.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    def interrupt_once_rows_2_and_3_run() -> None:
        while not all((tmp_path / f"row{i}").exists() for i in (2, 3)):
            time.sleep(0.01)
        _thread.interrupt_main()

    try:
        with vg.Evaluator(started_then_hang, backend="process", workers=2, budget=20) as ev:
            ev(torch.zeros(2, 1))  # the pool is up
            watcher = threading.Thread(target=interrupt_once_rows_2_and_3_run, daemon=True)
            watcher.start()
            with pytest.raises(KeyboardInterrupt):
                ev(torch.arange(6.0)[:, None])
            watcher.join(timeout=30)
            assert (ev.stats.evals, ev.stats.attempts, ev.remaining) == (2 + 4, 2 + 4, 14)
            assert not (tmp_path / "row4").exists() and not (tmp_path / "row5").exists()
    finally:
        signal.signal(signal.SIGINT, previous)
