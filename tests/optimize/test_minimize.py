"""vg.minimize: budgets honoured and counted, results, history, callbacks, checkpoints, errors."""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import voidgrad as vg
from tests.killing import kill_after, start_script

TARGET = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)


class Counted:
    """A quadratic that counts its own calls, independently of voidgrad."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> float:
        self.calls += 1
        return float(((x - TARGET) ** 2).sum())


METHODS = [
    ("smoothing", {"sigma": 0.2, "samples": 8}, 0.05),
    ("spsa", {"c": 0.05, "samples": 2}, 0.05),
    ("fd", {"h": 1e-4}, 0.05),
]


@pytest.mark.parametrize(("method", "options", "lr"), METHODS, ids=[m[0] for m in METHODS])
def test_gradient_methods_stay_within_budget_and_find_the_minimum(method, options, lr) -> None:
    fn = Counted()
    x0 = torch.zeros(3, dtype=torch.float64)
    result = vg.minimize(fn, x0, method=method, budget=3001, lr=lr, progress=False, **options)
    assert result.nevals == fn.calls <= 3001
    assert result.history[-1].evals == fn.calls
    assert result.fun < 1e-2 and torch.allclose(result.x_last, TARGET, atol=0.1)
    assert result.fun == pytest.approx(fn(result.x))
    assert "budget of 3001 evaluations spent" in result.message


def test_history_records_every_step() -> None:
    result = vg.minimize(
        Counted(), torch.zeros(3), budget=80, progress=False, sigma=0.3, method="smoothing"
    )
    assert [r.step for r in result.history] == list(range(1, 11))
    assert [r.evals for r in result.history] == list(range(8, 81, 8))
    best = result.history.column("best")
    assert best == sorted(best, reverse=True) and best[-1] == result.fun
    assert all(r.grad_norm is not None and r.variance is not None for r in result.history)
    assert all(
        b > a
        for a, b in zip(
            result.history.column("seconds"), result.history.column("seconds")[1:], strict=False
        )
    )


def test_a_dataframe_without_pandas_names_the_extra(monkeypatch) -> None:
    result = vg.minimize(Counted(), torch.zeros(3), budget=16, progress=False, method="smoothing")
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now fails
    with pytest.raises(ImportError, match=r"pip install 'voidgrad\[pandas\]'"):
        result.history.to_dataframe()
    assert result.history.column("evals")  # what needs nothing still works


def test_history_converts_to_a_dataframe() -> None:
    pandas = pytest.importorskip("pandas")
    result = vg.minimize(Counted(), torch.zeros(3), budget=40, progress=False, method="smoothing")
    frame = result.history.to_dataframe()
    assert isinstance(frame, pandas.DataFrame) and len(frame) == 5
    assert list(frame.columns) == [
        "step",
        "evals",
        "loss",
        "best",
        "seconds",
        "grad_norm",
        "variance",
        "surrogate_r2",
    ]


def test_callback_can_stop_the_run() -> None:
    seen = []

    def stop_at_three(record: vg.optimize.StepRecord) -> bool:
        seen.append(record.step)
        return record.step == 3

    result = vg.minimize(
        Counted(),
        torch.zeros(3),
        budget=800,
        progress=False,
        callback=stop_at_three,
        method="smoothing",
    )
    assert seen == [1, 2, 3] and result.nsteps == 3 and result.message == "stopped by the callback"


def test_any_torch_optimizer_and_a_learning_rate_schedule() -> None:
    result = vg.minimize(
        Counted(),
        torch.zeros(3, dtype=torch.float64),
        budget=1600,
        optimizer=lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.5),
        lr=0.05,
        lr_schedule=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=50, gamma=0.5),
        progress=False,
        sigma=0.2,
        method="smoothing",
    )
    assert result.fun < 0.05


def test_progress_bar_shows_evaluations_and_best(capsys) -> None:
    vg.minimize(Counted(), torch.zeros(3), budget=40, progress=True, method="smoothing")
    err = capsys.readouterr().err
    assert "40/40" in err and "best=" in err


def test_a_seeded_run_replays_bit_for_bit() -> None:
    runs = [
        vg.minimize(
            Counted(), torch.zeros(3), budget=400, seed=5, progress=False, method="smoothing"
        )
        for _ in range(2)
    ]
    assert torch.equal(runs[0].x_last, runs[1].x_last) and runs[0].fun == runs[1].fun
    other = vg.minimize(
        Counted(), torch.zeros(3), budget=400, seed=6, progress=False, method="smoothing"
    )
    assert not torch.equal(runs[0].x_last, other.x_last)


def test_resuming_a_stopped_run_ends_where_the_uninterrupted_one_does(tmp_path) -> None:
    x0 = torch.zeros(3, dtype=torch.float64)
    whole = vg.minimize(Counted(), x0, budget=400, seed=1, progress=False, method="smoothing")
    path = tmp_path / "run.ckpt"
    vg.minimize(
        Counted(),
        x0,
        budget=400,
        seed=1,
        progress=False,
        checkpoint=path,
        callback=lambda record: record.step == 20,
        method="smoothing",
    )
    assert torch.load(path, weights_only=True)["loop"]["step"] == 20
    fn = Counted()
    resumed = vg.minimize(
        fn, x0, budget=400, seed=1, progress=False, checkpoint=path, method="smoothing"
    )
    assert fn.calls == 400 - 20 * 8 + 1  # the remaining steps, and the best point's check
    assert resumed.nevals == 400  # the check is outside the budget
    assert torch.equal(resumed.x_last, whole.x_last) and resumed.fun == whole.fun
    assert resumed.history.to_dicts()[-1]["evals"] == 400 and len(resumed.history) == 50
    assert [r.loss for r in resumed.history] == [r.loss for r in whole.history]
    again = vg.minimize(
        fn, x0, budget=400, seed=1, progress=False, checkpoint=path, method="smoothing"
    )
    assert fn.calls == 242 and torch.equal(again.x_last, whole.x_last)  # finished: a check only


def test_a_checkpoint_of_another_run_is_refused(tmp_path) -> None:
    path = tmp_path / "run.ckpt"
    run = functools.partial(
        vg.minimize, Counted(), torch.zeros(3), "smoothing", 16, progress=False, checkpoint=path
    )
    run(seed=1)
    with pytest.raises(
        ValueError, match=r"run.ckpt was written by another run: seed=1 there, 2 here"
    ):
        run(seed=2)


KILLED = textwrap.dedent(
    """
    import os, sys, time, torch, voidgrad as vg
    def fn(x):
        time.sleep(float(os.environ.get("DELAY", "0")))  # slow only while it is to be killed
        return float(((x - torch.tensor([1.0, -2.0, 0.5], dtype=x.dtype)) ** 2).sum())
    checkpoint = sys.argv[1] if sys.argv[1] != "-" else None
    r = vg.minimize(fn, torch.zeros(3, dtype=torch.float64), method="smoothing", budget=1600,
                    seed=3, progress=False, checkpoint=checkpoint,
                    checkpoint_every=int(os.environ["EVERY"]) or None)
    torch.save({"x_last": r.x_last, "fun": r.fun, "nevals": r.nevals,
                "losses": r.history.column("loss")}, sys.argv[2])
    """
)


def run_killed_script(checkpoint: str, out: Path, delay: float = 0.0) -> subprocess.Popen[bytes]:
    # The run to be killed saves every step (so that it is killed between saves), the others
    # by time (a save per step would be most of their cost).
    return start_script(KILLED, checkpoint, out, delay, EVERY="1" if delay else "0")


def test_a_run_killed_with_sigkill_resumes_to_the_same_result(tmp_path) -> None:
    # The function is the script's own (a checkpoint resumes only the fn that wrote it).
    path = tmp_path / "killed.ckpt"
    process = run_killed_script(str(path), tmp_path / "never.pt", delay=0.002)
    killed_at = kill_after(process, path, 30, timeout=60)["step"]
    assert 30 <= killed_at < 200  # it really was interrupted mid-run
    assert run_killed_script(str(path), tmp_path / "resumed.pt").wait(timeout=120) == 0
    resumed = torch.load(tmp_path / "resumed.pt", weights_only=True)
    target = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    whole = vg.minimize(  # the same run, uninterrupted (one thread, as the script)
        lambda x: float(((x - target) ** 2).sum()),
        torch.zeros(3, dtype=torch.float64),
        budget=1600,
        seed=3,
        progress=False,
        method="smoothing",
    )
    assert torch.equal(resumed["x_last"], whole.x_last) and resumed["fun"] == whole.fun
    assert resumed["losses"] == whole.history.column("loss")
    assert resumed["nevals"] == whole.nevals == 1600


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"method": "newton"},
            ValueError,
            "unknown method 'newton'; known methods: auto, smoothing, spsa, ",
        ),
        (
            {"method": "smoothng"},
            ValueError,
            r"unknown method 'smoothng' \(did you mean 'smoothing'\?\)",
        ),
        (
            {"method": "adam"},
            ValueError,
            "'adam' is an optimizer: pass optimizer='adam' and a method",
        ),
        ({"method": "score"}, ValueError, "method 'score' is of kind 'distribution'"),
        (
            {"budget": 7},
            ValueError,
            "budget 7 is too small for one step of 'smoothing', which needs 8",
        ),
        ({"budget": 0}, ValueError, "budget must be an int >= 1; got 0"),
        ({"x0": [0.0, float("nan")]}, ValueError, "x0 contains NaN"),
        ({"x0": [[0.0]]}, ValueError, "x0 must be a non-empty 1-D array"),
        ({"optimizer": "lbfgs"}, ValueError, "unknown optimizer 'lbfgs'"),
        ({"lr": 0}, ValueError, "lr must be a finite number > 0; got 0"),
        ({"lr": float("inf")}, ValueError, "lr must be a finite number > 0; got inf"),
        ({"lr_schedule": 3}, TypeError, "lr_schedule must be callable"),
        ({"seed": -1}, ValueError, "seed must be a non-negative int; got -1"),
        ({"seed": 1.5}, ValueError, "seed must be a non-negative int; got 1.5"),
        ({"seed": True}, ValueError, "seed must be a non-negative int; got True"),
        ({"seed": None}, ValueError, "seed must be a non-negative int; got None"),
        ({"x0": [1 + 2j, 0j, 0j]}, TypeError, "x0 must hold real numbers.*complex"),
        ({"x0": [True, False, True]}, TypeError, "x0 must hold real numbers.*torch.bool"),
        ({"x0": ["a", "b"]}, TypeError, "x0 must be a 1-D array of numbers"),
        ({"checkpoint_every": 0}, ValueError, "checkpoint_every must be an int >= 1"),
        ({"checkpoint_seconds": 0}, ValueError, "checkpoint_seconds must be a finite number > 0"),
    ],
)
def test_bad_input(kwargs, error, message) -> None:
    arguments = {
        "fn": Counted(),
        "x0": [0.0, 0.0, 0.0],
        "progress": False,
        "budget": 100,
        "method": "smoothing",
    }
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        vg.minimize(**arguments)


def test_an_integer_start_is_taken_as_float64() -> None:
    result = vg.minimize(Counted(), [0, 0, 0], budget=16, progress=False, method="smoothing")
    assert result.x.dtype == torch.float64


def test_a_vector_output_is_refused() -> None:
    with pytest.raises(ValueError, match="minimize needs a scalar loss"):
        vg.minimize(lambda x: x * 2, torch.zeros(3), budget=16, progress=False, method="smoothing")


def test_an_evaluator_brings_its_backend_and_policy() -> None:
    def sometimes_fails(x: torch.Tensor) -> float:
        if x[1] > -0.6:
            raise RuntimeError("out of range")
        return float(((x - TARGET) ** 2).sum())

    evaluator = vg.Evaluator(sometimes_fails, on_error="nan")
    x0 = torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64)
    result = vg.minimize(
        sometimes_fails,
        x0,
        budget=800,
        evaluator=evaluator,
        progress=False,
        sigma=0.2,
        schedule=None,  # a constant σ keeps reaching into the failing region
        lr=0.05,
        method="smoothing",
    )
    assert evaluator.stats.failures > 0 and result.nevals == 800
    assert result.fun < 0.05 and result.x[1] <= -0.6


def test_per_output_losses_are_minimized_in_sum_with_a_pattern() -> None:
    def residuals_squared(x: torch.Tensor) -> torch.Tensor:
        return (x - torch.tensor([1.0, -2.0, 0.5], dtype=x.dtype)) ** 2

    result = vg.minimize(
        residuals_squared,
        torch.zeros(3, dtype=torch.float64),
        method="spsa",
        budget=2000,
        lr=0.05,
        c=0.01,
        jac_sparsity=torch.eye(3, dtype=torch.bool),
        progress=False,
    )
    assert result.fun == pytest.approx(float(residuals_squared(result.x).sum()))
    assert result.fun < 1e-3 and result.history[-1].loss < 1e-2  # the summed loss, per step
