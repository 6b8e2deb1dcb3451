"""Checkpoints of vg.minimize: a resume is the run that wrote the file, or it is refused by name.

Also: damaged files are named, stale temporary files are removed, two runs on
one path exclude each other, and fingerprints are stable across processes.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import voidgrad as vg
from voidgrad.run.checkpoint import (
    FORMAT,
    CheckpointError,
    fingerprint,
    remove_stale_temporaries,
    run_lock,
    same_value,
)

X0 = torch.zeros(2, dtype=torch.float64)
ROOT = Path(__file__).resolve().parents[2]


def near_one(x: torch.Tensor) -> float:
    return float(((x - 1.0) ** 2).sum())


def near_minus_seven(x: torch.Tensor) -> float:
    return float(((x + 7.0) ** 2).sum())


class Quadratic:
    """A callable object: its fingerprint is its class's code, not its centre."""

    def __init__(self, centre: float) -> None:
        self.centre = centre
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> float:
        self.calls += 1
        return float(((x - self.centre) ** 2).sum())


def shifted(centre: float):
    return lambda x: float(((x - centre) ** 2).sum())


def run(path: Path | None, fn=near_one, method: str = "smoothing", **kwargs):
    arguments = {"x0": X0, "method": method, "budget": 64, "seed": 0, "progress": False} | kwargs
    x0 = arguments.pop("x0")
    return vg.minimize(fn, x0, checkpoint=path, **arguments)


# --------------------------------------------------------------------------- identity


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        ({}, {"fn": near_minus_seven}, "fn has code fingerprint"),
        ({"fn": shifted(1.0)}, {"fn": shifted(-7.0)}, "fn has code fingerprint"),
        ({}, {"x0": torch.ones(2, dtype=torch.float64)}, r"x0 differs at index 0 \(0.0 there"),
        ({}, {"x0": torch.zeros(3, dtype=torch.float64)}, r"x0 has shape \(2,\) there, \(3,\)"),
        ({}, {"x0": torch.zeros(2)}, "x0 has dtype torch.float64 there, torch.float32 here"),
        ({}, {"seed": 1}, "seed=0 there, 1 here"),
        ({}, {"sigma": 0.5}, "sigma=not given there, 0.5 here"),
        ({"sigma": 0.2}, {"sigma": 0.5}, "sigma=0.2 there, 0.5 here"),
        ({}, {"lr": 0.1}, "lr=0.01 there, 0.1 here"),
        ({}, {"optimizer": "sgd"}, "optimizer='adam' there, 'sgd' here"),
        (
            {},
            {"lr_schedule": lambda opt: torch.optim.lr_scheduler.StepLR(opt, 5)},
            "lr_schedule='auto' there, <code",
        ),
        ({}, {"method": "spsa"}, "method='smoothing' there, 'spsa' here"),
    ],
)
def test_a_checkpoint_of_another_run_is_refused_naming_the_field(
    first, second, message, tmp_path
) -> None:
    path = tmp_path / "run.ckpt"
    run(path, **first)
    with pytest.raises(CheckpointError, match=rf"run.ckpt was written by another run: {message}"):
        run(path, **(first | second))


def test_another_instance_of_a_callable_class_is_caught_by_the_best_point(tmp_path) -> None:
    path = tmp_path / "run.ckpt"
    run(path, fn=Quadratic(1.0))
    with pytest.raises(
        CheckpointError, match=r"fn at the stored best point gives 103.4\d* here, 1.31\d* there"
    ):
        run(path, fn=Quadratic(-7.0))


class FailsFrom:
    """Quadratic(1.0)'s loss until ``broken`` is set, then NaN (a transient failure)."""

    def __init__(self) -> None:
        self.broken = False

    def __call__(self, x: torch.Tensor) -> float:
        return math.nan if self.broken else float(((x - 1.0) ** 2).sum())


def test_a_failure_at_the_best_point_is_named_as_a_failure(tmp_path) -> None:
    path, fn = tmp_path / "run.ckpt", FailsFrom()
    run(path, fn=fn, callback=lambda record: record.step == 3)
    fn.broken = True
    lenient = vg.Evaluator(fn, on_error="nan")
    with pytest.raises(CheckpointError, match=r"at the stored best point again, and it failed"):
        run(path, fn=fn, evaluator=lenient)


def test_a_loss_near_zero_may_differ_in_its_last_bits(tmp_path) -> None:
    path = tmp_path / "run.ckpt"
    wobble = {"on": False}

    def tiny(x: torch.Tensor) -> float:  # ~1e-12 near the start, one rounding apart on resume
        return float(1e-12 * (1.0 + x.abs().sum())) + (1e-15 if wobble["on"] else 0.0)

    run(path, fn=tiny, callback=lambda record: record.step == 3)
    wobble["on"] = True
    assert run(path, fn=tiny).nevals == 64


def test_derivative_free_runs_are_identified_too(tmp_path) -> None:
    pytest.importorskip("cma")
    path = tmp_path / "run.ckpt"
    run(path, method="cma")
    with pytest.raises(CheckpointError, match="fn has code fingerprint"):
        run(path, fn=near_minus_seven, method="cma")
    with pytest.raises(CheckpointError, match="sigma0=not given there, 2.0 here"):
        run(path, method="cma", sigma0=2.0)


@pytest.mark.parametrize(("method", "module"), [("smoothing", "torch"), ("cma", "cma")])
def test_a_larger_budget_continues_a_finished_run_exactly(method, module, tmp_path) -> None:
    pytest.importorskip(module)
    path = tmp_path / "run.ckpt"
    # Exactly only with schedules that do not span the budget (σ constant, lr constant).
    fixed = {"schedule": None, "lr_schedule": None} if method == "smoothing" else {}
    short = run(path, fn=Quadratic(1.0), method=method, budget=64, **fixed)
    fn = Quadratic(1.0)
    whole = run(None, fn=fn, method=method, budget=160, **fixed)
    resumed = run(path, fn=Quadratic(1.0), method=method, budget=160, **fixed)
    assert short.nevals <= 64 and resumed.nevals == whole.nevals == fn.calls
    assert resumed.history.to_dicts()[-1]["evals"] == whole.nevals
    assert [r.loss for r in resumed.history] == [r.loss for r in whole.history]
    assert torch.equal(resumed.x, whole.x) and resumed.fun == whole.fun


def test_the_best_point_check_is_outside_the_budget(tmp_path) -> None:
    path = tmp_path / "run.ckpt"
    run(path, fn=Quadratic(1.0), callback=lambda record: record.step == 3)
    fn = Quadratic(1.0)
    evaluator = vg.Evaluator(fn)
    result = run(path, fn=fn, evaluator=evaluator)
    assert result.nevals == 64 and fn.calls == 64 - 3 * 8 + 1
    assert evaluator.stats.evals - 3 * 8 == fn.calls  # the Evaluator counted the check


def test_a_noisy_fn_is_not_evaluated_again(tmp_path) -> None:
    calls = []

    def noisy(x: torch.Tensor, seed: int) -> float:
        calls.append(seed)
        noise = torch.randn((), generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
        return float(((x - 1) ** 2).sum() + 0.1 * noise)

    path = tmp_path / "run.ckpt"
    run(path, fn=noisy, callback=lambda record: record.step == 3)
    calls.clear()
    run(path, fn=noisy)
    assert len(calls) == 64 - 3 * 8


# --------------------------------------------------------------------------- damaged files


def write_truncated(path: Path) -> None:
    run(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def edit(change):
    def write(path: Path) -> None:
        run(path, callback=lambda record: record.step == 2)
        state = torch.load(path, weights_only=True)
        change(state)
        torch.save(state, path)

    return write


DAMAGE = [
    pytest.param(lambda p: p.write_bytes(b""), "cannot be read", id="empty"),
    pytest.param(lambda p: p.write_bytes(os.urandom(64) + b"\x80"), "cannot be read", id="garbage"),
    pytest.param(write_truncated, "cannot be read", id="truncated"),
    pytest.param(lambda p: torch.save([1, 2], p), "holds a list, not a dict", id="not-a-dict"),
    pytest.param(lambda p: torch.save({"format": FORMAT}, p), "written by None", id="no-kind"),
    pytest.param(edit(lambda s: s.pop("loop")), "is damaged: it lacks loop", id="missing-key"),
    pytest.param(
        edit(lambda s: s["algorithm"].pop("theta")), "KeyError: 'theta'", id="missing-entry"
    ),
    pytest.param(
        edit(lambda s: s["loop"].update(history=[101])), "cannot be resumed", id="bad-history"
    ),
    pytest.param(
        edit(lambda s: s["algorithm"].update(theta=torch.zeros(5))), "theta must be", id="bad-theta"
    ),
    pytest.param(edit(lambda s: s.update(format=1)), "has format 1", id="old-format"),
    pytest.param(
        edit(lambda s: s.update(kind="vg.rl.train")), "written by 'vg.rl.train'", id="other-kind"
    ),
]


@pytest.mark.parametrize(("damage", "message"), DAMAGE)
def test_a_damaged_checkpoint_is_named(damage, message, tmp_path) -> None:
    path = tmp_path / "run.ckpt"
    damage(path)
    with pytest.raises(CheckpointError, match=message) as caught:
        run(path)
    assert str(path) in str(caught.value)


def test_a_damaged_optimizer_log_is_named(tmp_path) -> None:
    pytest.importorskip("cma")
    path = tmp_path / "run.ckpt"
    run(path, method="cma", callback=lambda record: record.step == 2)
    state = torch.load(path, weights_only=True)
    state["algorithm"]["adapter"]["losses"] = state["algorithm"]["adapter"]["losses"][:-1]
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="run.ckpt cannot be resumed.*lengths do not agree"):
        run(path, method="cma")
    state["algorithm"]["adapter"]["losses"] = torch.zeros(
        int(state["algorithm"]["adapter"]["rows"].sum())
    )
    state["algorithm"]["adapter"]["losses"] = state["algorithm"]["adapter"]["losses"].double()
    torch.save(state, path)  # other losses make CMA ask other points: the replay says so
    with pytest.raises(CheckpointError, match="ReplayDiverged.*replaying batch 2 of 2"):
        run(path, method="cma")


# --------------------------------------------------------------------------- files and locks


def test_stale_temporary_files_are_removed_by_the_next_save(tmp_path) -> None:
    path = tmp_path / "run.ckpt"
    stale = [tmp_path / ".run.ckpt.abcd1234", tmp_path / ".run.ckpt.x_9z0q7r"]
    kept = [tmp_path / ".run.ckpt.notes", tmp_path / ".other.ckpt.abcd1234", tmp_path / "x"]
    for file in stale + kept:
        file.write_bytes(b"half a checkpoint")
    run(path)
    assert [f.exists() for f in stale] == [False, False]
    assert all(f.exists() for f in kept)
    assert remove_stale_temporaries(tmp_path / "missing" / "run.ckpt") == []


def test_a_path_in_use_is_refused_at_once(tmp_path) -> None:
    path = tmp_path / "run.ckpt"
    with run_lock(path), pytest.raises(CheckpointError, match=r"run.ckpt is in use by process"):
        run(path)
    assert not path.exists()
    run(path)  # released


def test_workers_forked_during_a_run_do_not_keep_its_path_locked(tmp_path) -> None:
    path = tmp_path / "run.ckpt"
    backend = vg.evaluation.ProcessBackend(workers=1, start_method="fork")
    with vg.Evaluator(near_one, backend=backend, seed=0) as evaluator:
        run(path, evaluator=evaluator)
        assert backend.pids()  # the worker forked inside the run is still alive
        # The same process continues the finished run with a larger budget.
        assert run(path, evaluator=evaluator, budget=128).nevals == 128


def test_a_lock_file_that_cannot_be_opened_is_named(tmp_path) -> None:
    path = tmp_path / "run.ckpt"
    (tmp_path / "run.ckpt.lock").mkdir()  # a directory: no process, root included, opens it
    with pytest.raises(CheckpointError, match=r"run.ckpt: cannot open its lock file"):
        run(path)


HOLDER = textwrap.dedent(
    """
    import sys, time
    from voidgrad.run.checkpoint import run_lock
    with run_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(600)
    """
)


def test_a_second_process_is_refused_and_a_killed_holder_frees_the_path(tmp_path) -> None:
    path = tmp_path / "run.ckpt"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(CheckpointError, match=rf"in use by process {holder.pid}"):
            run(path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert run(path).nevals == 64


def test_a_checkpoint_must_be_a_path() -> None:
    with pytest.raises(TypeError, match="checkpoint must be a path"):
        run(123)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- fingerprints


def scaled_by_default(scale: float):
    def scaled(x, factor=scale):
        return x * factor

    return scaled


def test_fingerprints_see_code_defaults_closures_and_constants_not_state() -> None:
    assert fingerprint(near_one) == fingerprint(near_one)
    assert fingerprint(near_one) != fingerprint(near_minus_seven)
    assert fingerprint(shifted(1.0)) == fingerprint(shifted(1.0))
    assert fingerprint(shifted(1.0)) != fingerprint(shifted(2.0))  # the closure
    assert fingerprint(scaled_by_default(2.0)) != fingerprint(scaled_by_default(3.0))
    log: list[float] = []

    def recording(x):
        log.append(float(x.sum()))
        return near_one(x)

    before = fingerprint(recording)
    recording(torch.ones(2))
    assert fingerprint(recording) == before  # a list it appends to is state, not a setting
    assert fingerprint(Quadratic(1.0)) == fingerprint(Quadratic(2.0))  # attributes: not covered
    assert fingerprint(Quadratic(1.0).__call__) == fingerprint(Quadratic(5.0).__call__)


def test_fingerprints_read_the_values_of_sparse_tensors_in_a_closure(tmp_path) -> None:
    indices = torch.tensor([[0, 1], [1, 0]])

    def weighted(scale: float):
        values = torch.tensor([1.0, 2.0], dtype=torch.float64) * scale
        weights = torch.sparse_coo_tensor(indices, values, (2, 2))
        return lambda x: float((weights @ x).sum())

    assert fingerprint(weighted(1.0)) == fingerprint(weighted(1.0))
    assert fingerprint(weighted(1.0)) != fingerprint(weighted(2.0))
    run(tmp_path / "run.ckpt", fn=weighted(1.0))  # raised a raw RuntimeError (.contiguous())


def test_fingerprints_are_the_same_in_another_process() -> None:
    code = (
        "import torch, functools\n"
        "from tests.optimize.test_checkpoint import near_one, shifted, Quadratic\n"
        "from voidgrad.run.checkpoint import fingerprint\n"
        "values = [near_one, shifted(1.0), Quadratic(1.0), {'a': {1, 2, 'x'}},\n"
        "          functools.partial(near_one), torch.arange(3)]\n"
        "print([fingerprint(v)['fingerprint'] for v in values])\n"
    )
    environment = {**os.environ, "PYTHONHASHSEED": "12345"}  # another set and dict hash order
    there = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    assert there.returncode == 0, there.stderr
    import functools

    here = [
        fingerprint(v)["fingerprint"]
        for v in [
            near_one,
            shifted(1.0),
            Quadratic(1.0),
            {"a": {1, 2, "x"}},
            functools.partial(near_one),
            torch.arange(3),
        ]
    ]
    assert there.stdout.strip() == str(here)


def test_fingerprints_of_another_python_are_not_compared(tmp_path) -> None:
    path = tmp_path / "run.ckpt"
    run(path, callback=lambda record: record.step == 2)
    state = torch.load(path, weights_only=True)
    state["run"]["fn"] = {"fingerprint": "0" * 20, "python": "2.7"}
    torch.save(state, path)
    assert run(path).nevals == 64  # the best point's check still ran


def test_identity_tensors_with_nan_match_themselves() -> None:
    with_nan = torch.tensor([1.0, math.nan])
    assert same_value(with_nan, with_nan.clone())  # torch.equal alone says False
    assert not same_value(with_nan, torch.tensor([1.0, 2.0]))
    assert not same_value(with_nan, torch.tensor([2.0, math.nan]))
