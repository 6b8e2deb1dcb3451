"""``vg.minimize``: one call for a whole optimization of a scalar black box, under a budget.

Gradient-estimator methods run one loop::

    for each step:                       # while the next step fits in the budget
        loss = blackbox(theta)           # the estimator's evaluations (counted)
        loss.backward()                  # theta.grad = the estimated gradient
        optimizer.step(); estimator.step(); lr_schedule.step()

and derivative-free baselines run their own ask/tell loop (``dfo``), both
through the same Evaluator, so the budget counts every evaluation any method
makes, whatever the backend. No evaluation is spent on logging: a step's
reported loss is the estimator's own estimate from that step's evaluations,
and the best loss is the lowest single evaluation seen.

With ``checkpoint=path`` the complete state (parameters, optimizer, estimator
and evaluator counters, random streams, history; for derivative-free methods
the log their optimizer replays, see :mod:`voidgrad.optimize.dfo`) is saved
atomically every ``checkpoint_every`` steps; calling ``minimize`` again with
the same path resumes, and a run killed at any moment and resumed ends where
an uninterrupted run with the same seed would (bit for bit on the serial
backend), having lost at most the evaluations of the step in flight. A
checkpoint resumes only the run that wrote it (see :func:`minimize`), and a
path is locked while a run uses it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from voidgrad.blackbox import blackbox
from voidgrad.estimators import (
    SPSA,
    BlackBoxEstimator,
    FiniteDifferences,
    GaussianSmoothing,
    ZeroGrads,
)
from voidgrad.evaluation.evaluator import Evaluator
from voidgrad.optimize.checkpoint import (
    FORMAT,
    CheckpointError,
    check_checkpoint_path,
    check_same_run,
    fingerprint,
    identity_value,
    load_checkpoint,
    restoring,
    run_lock,
    save_checkpoint,
)
from voidgrad.optimize.result import History, OptimizeResult, StepRecord
from voidgrad.validation import check_positive

GRADIENT_METHODS: dict[str, Callable[..., BlackBoxEstimator]] = {
    "smoothing": lambda seed, sigma=0.1, samples=8, **options: GaussianSmoothing(
        sigma, samples, seed=seed, **options
    ),
    "spsa": lambda seed, c=0.1, samples=2, **options: SPSA(c, samples, seed=seed, **options),
    "fd": lambda seed, h=1e-3, scheme="central", **options: FiniteDifferences(
        h, scheme, seed=seed, **options
    ),
    "zerograds": lambda seed, sigma=0.1, samples=4, **options: ZeroGrads(
        sigma, samples, seed=seed, **options
    ),
}
DERIVATIVE_FREE = ("cma", "annealing", "ga", "nevergrad:<optimizer name>")
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}
OptimizerSpec = str | Callable[[Iterable[torch.Tensor], float], torch.optim.Optimizer]
_KIND = "vg.minimize"
#: What every checkpoint of minimize holds besides the method's own state (see _common_state).
_COMMON_KEYS = (
    "step",
    "budget",
    "message",
    "finished",
    "baseline",
    "evaluator",
    "best",
    "best_x",
    "history",
    "seconds",
)
#: How far the stored best point's loss may move when it is evaluated again on
#: resume (relative): room for a deterministic fn's run-to-run rounding (GPU
#: reductions), far below what another function gives.
BEST_POINT_RTOL = 1e-5
#: ... and in absolute terms: a loss near 0 computed with cancellation (in a batch
#: of another size, say) differs in its last bits, which is not another run.
BEST_POINT_ATOL = 1e-10


@dataclass
class _Progress:
    """What a run has seen so far: the best evaluation, the history, the clock."""

    best: float = math.inf
    best_x: torch.Tensor | None = None
    history: History = field(default_factory=History)
    seconds_before: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    #: While True, evaluations are not the run's (the resume's check of the best point).
    muted: bool = False

    def observe(self, X: torch.Tensor, Y: torch.Tensor) -> None:
        if self.muted:
            return
        if Y.ndim != 1:
            raise ValueError(
                f"minimize needs a scalar loss; fn returned outputs of shape {tuple(Y.shape[1:])}"
            )
        finite = torch.isfinite(Y)
        if finite.any():
            values = torch.where(finite, Y, math.inf)
            index = int(values.argmin())
            if float(values[index]) < self.best:
                self.best = float(values[index])
                self.best_x = X[index].clone()

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started


def minimize(
    fn: Callable[..., object] | Evaluator,
    x0: Any,
    method: str = "smoothing",
    budget: int = 10_000,
    seed: int = 0,
    optimizer: OptimizerSpec = "adam",
    lr: float = 1e-2,
    evaluator: Evaluator | None = None,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    callback: Callable[[StepRecord], bool | None] | None = None,
    *,
    checkpoint_every: int = 1,
    lr_schedule: Callable[[torch.optim.Optimizer], Any] | None = None,
    **method_options: Any,
) -> OptimizeResult:
    """Minimize the scalar black box ``fn`` from ``x0`` within ``budget`` evaluations.

    Args:
        fn: the loss, ``fn(x) -> float`` for ``x`` a 1-D tensor; or an
            Evaluator (for a backend, timeout, failure policy).
        x0: the start, a 1-D array-like of finite numbers.
        method: ``"smoothing"`` (PRDPT's Gaussian smoothing), ``"spsa"``,
            ``"fd"`` (finite differences), ``"zerograds"`` (a learned
            surrogate), or a derivative-free baseline:
            ``"cma"``, ``"annealing"``, ``"ga"``, ``"nevergrad:<name>"``
            (these need ``pip install 'voidgrad[bench]'``).
        budget: evaluations of ``fn`` allowed, all of them counted.
        seed: seeds the estimator's or optimizer's random stream.
        optimizer: for gradient methods: ``"adam"``, ``"adamw"``, ``"sgd"``,
            ``"rmsprop"``, or ``optimizer(params, lr)`` returning any
            ``torch.optim`` optimizer.
        lr: the learning rate.
        evaluator: the Evaluator that runs ``fn``; default: a serial one
            with ``seed``, so seeded noisy functions replay.
        checkpoint: a path; the run saves there and resumes from there (see
            "Checkpoints" below).
        progress: show a progress bar (evaluations, best loss, rate).
        callback: called with each step's :class:`StepRecord`; returning
            True stops the run.
        checkpoint_every: steps between checkpoints.
        lr_schedule: ``lr_schedule(optimizer)`` returning a scheduler, stepped
            once per step.
        **method_options: passed to the method: ``sigma``, ``samples``,
            ``antithetic``, ``importance``, ``schedule`` for smoothing; ``c``,
            ``samples`` for SPSA; ``h``, ``scheme`` for FD; the adapter's
            options for derivative-free methods.

    Returns:
        An :class:`OptimizeResult`.

    Checkpoints:
        A checkpoint holds tensors, numbers and strings only and loads with
        ``weights_only=True``: no code in the file runs, and a file holding
        anything else, an empty, truncated or foreign one, raises a
        :class:`~voidgrad.optimize.checkpoint.CheckpointError` (a ValueError)
        naming it. It resumes only the run that wrote it: the method, seed,
        ``x0`` (exact values), ``method_options``, and for gradient methods
        ``optimizer``, ``lr`` and ``lr_schedule`` must be the same (options
        are compared as passed, so a default spelled out differs from one
        left out), and so must a fingerprint of ``fn``'s code
        (:func:`~voidgrad.optimize.checkpoint.fingerprint`: a function's code,
        defaults, closure and globals; for a callable object only its class's
        code). ``budget`` may differ: a finished run resumed with a larger one
        continues. Then, unless ``fn`` takes a ``seed`` (is noisy), the stored
        best point is evaluated once more and its loss must match the stored
        one to ``BEST_POINT_RTOL`` relative or ``BEST_POINT_ATOL`` absolute:
        this tells apart functions the fingerprint cannot. That evaluation goes
        through the Evaluator and shows in its ``stats``, but it is outside ``budget`` and not in
        ``nevals``, so a resumed run ends exactly where an uninterrupted one
        does. A mismatch raises CheckpointError naming the file and the
        differing field. Resuming a derivative-free method replays its
        optimizer's recorded batches (the library's own work, no evaluation).
        While the run goes, ``<checkpoint>.lock`` is locked: a second run on
        the same path fails at once. Temporary files of a write killed
        mid-way are removed by the next save.

    Examples:
        >>> import voidgrad as vg
        >>> result = vg.minimize(lambda x: float((x - 3).pow(2).sum()), [0.0, 0.0], method="fd",
        ...                      budget=400, lr=0.1, h=1e-3, progress=False)
        >>> [round(v, 2) for v in result.x.tolist()]
        [3.0, 3.0]
        >>> result.nevals <= 400, len(result.history) == result.nsteps
        (True, True)
    """
    x0 = _check_x0(x0)
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be a positive int (evaluations); got {budget!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    path = check_checkpoint_path(checkpoint)
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int):
        raise ValueError(f"checkpoint_every must be a positive int; got {checkpoint_every!r}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be a positive int; got {checkpoint_every!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable; got {type(callback).__name__}")
    if lr_schedule is not None and not callable(lr_schedule):
        raise TypeError(
            "lr_schedule must be callable, lr_schedule(optimizer) returning a scheduler; got "
            f"{type(lr_schedule).__name__}"
        )
    evaluator = _evaluator(fn, evaluator, seed)
    check_method(method)
    gradient = method in GRADIENT_METHODS
    run = _Progress()
    evaluator.add_listener(run.observe)
    bar = tqdm(total=budget, unit="eval", disable=not progress, desc=method, dynamic_ncols=True)
    lock = contextlib.nullcontext() if path is None else run_lock(path)
    try:
        with lock:
            if gradient:
                return _minimize_gradient(
                    evaluator,
                    x0,
                    method,
                    budget,
                    seed,
                    optimizer,
                    lr,
                    path,
                    checkpoint_every,
                    callback,
                    lr_schedule,
                    method_options,
                    run,
                    bar,
                )
            return _minimize_dfo(
                evaluator,
                x0,
                method,
                budget,
                seed,
                path,
                checkpoint_every,
                callback,
                method_options,
                run,
                bar,
            )
    finally:
        bar.close()
        evaluator.remove_listener(run.observe)


def _run_identity(
    evaluator: Evaluator, x0: torch.Tensor, method: str, seed: int, options: dict[str, Any]
) -> dict[str, Any]:
    """What defines a run for its checkpoint (see "Checkpoints" in :func:`minimize`)."""
    return {
        "method": method,
        "seed": seed,
        "x0": x0.clone(),
        "fn": fingerprint(evaluator.fn),
        **{name: identity_value(value) for name, value in options.items()},
    }


def _minimize_gradient(
    evaluator: Evaluator,
    x0: torch.Tensor,
    method: str,
    budget: int,
    seed: int,
    optimizer: OptimizerSpec,
    lr: float,
    checkpoint: Path | None,
    checkpoint_every: int,
    callback: Callable[[StepRecord], bool | None] | None,
    lr_schedule: Callable[[torch.optim.Optimizer], Any] | None,
    options: dict[str, Any],
    run: _Progress,
    bar: Any,
) -> OptimizeResult:
    estimator = GRADIENT_METHODS[method](seed, **options)
    cost = estimator.evaluations(x0.numel())
    if cost > budget:
        raise ValueError(
            f"budget {budget} is too small for one step of {method!r}, which needs {cost} "
            "evaluations"
        )
    theta = x0.clone().requires_grad_(True)
    opt = _make_optimizer(optimizer, theta, lr)
    scheduler = None if lr_schedule is None else lr_schedule(opt)
    loss_fn = blackbox(evaluator.fn, estimator, evaluator=evaluator)
    identity = {
        **_run_identity(evaluator, x0, method, seed, options),
        "optimizer": identity_value(optimizer),
        "lr": lr,
        "lr_schedule": identity_value(lr_schedule),
    }
    baseline = evaluator.stats.evals
    step, message = 0, ""
    saved = None
    if checkpoint is not None:
        required = ("theta", "optimizer", "estimator", "scheduler", *_COMMON_KEYS)
        saved = load_checkpoint(checkpoint, _KIND, required)
    if saved is not None:
        assert checkpoint is not None
        check_same_run(saved["run"], identity, checkpoint)
        with restoring(checkpoint):
            with torch.no_grad():
                theta.copy_(_saved_tensor(saved, "theta", x0))
            opt.load_state_dict(saved["optimizer"])
            estimator.load_state_dict(saved["estimator"])
            if scheduler is not None:
                scheduler.load_state_dict(saved["scheduler"])
            step, baseline = _restore_common(saved, evaluator, run, x0)
        baseline += _check_best_point(evaluator, run, checkpoint)
        if saved["finished"] and saved["budget"] == budget:
            return _result(
                run,
                theta.detach(),
                evaluator.stats.evals - baseline,
                step,
                method,
                saved["message"],
            )
    bar.update(evaluator.stats.evals - baseline)

    def snapshot() -> dict[str, Any]:
        return {
            "kind": _KIND,
            "run": identity,
            "theta": theta.detach().clone(),
            "optimizer": opt.state_dict(),
            "estimator": estimator.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            **_common_state(run, evaluator, baseline, step, budget, message),
        }

    while evaluator.stats.evals - baseline + cost <= budget:
        opt.zero_grad()
        loss = loss_fn(theta)
        loss.backward()
        assert theta.grad is not None
        grad_norm = float(theta.grad.norm())
        opt.step()
        estimator.step()
        if scheduler is not None:
            scheduler.step()
        step += 1
        record = StepRecord(
            step=step,
            evals=evaluator.stats.evals - baseline,
            loss=float(loss.detach()),
            best=run.best,
            seconds=run.seconds(),
            grad_norm=grad_norm,
            variance=estimator.last_variance,
        )
        if _after_step(run, record, cost, bar, callback):
            message = "stopped by the callback"
            break
        if checkpoint is not None and step % checkpoint_every == 0:
            save_checkpoint(checkpoint, snapshot())
    message = message or f"budget of {budget} evaluations spent (one step costs {cost})"
    if checkpoint is not None:
        save_checkpoint(checkpoint, snapshot())
    return _result(run, theta.detach(), evaluator.stats.evals - baseline, step, method, message)


def _minimize_dfo(
    evaluator: Evaluator,
    x0: torch.Tensor,
    method: str,
    budget: int,
    seed: int,
    checkpoint: Path | None,
    checkpoint_every: int,
    callback: Callable[[StepRecord], bool | None] | None,
    options: dict[str, Any],
    run: _Progress,
    bar: Any,
) -> OptimizeResult:
    from voidgrad.optimize.adapters import make_dfo

    # The file is read and checked before the optimizer is built: a foreign or damaged
    # checkpoint is named even where the method's optional library is missing.
    identity = _run_identity(evaluator, x0, method, seed, options)
    saved = None
    if checkpoint is not None:
        saved = load_checkpoint(checkpoint, _KIND, ("adapter", *_COMMON_KEYS))
        if saved is not None:
            check_same_run(saved["run"], identity, checkpoint)
    workers = getattr(evaluator.backend, "workers", None) or 1
    adapter = make_dfo(method, x0.double(), budget=budget, seed=seed, workers=workers, **options)
    try:
        baseline = evaluator.stats.evals
        step, message = 0, ""
        if saved is not None:
            assert checkpoint is not None
            with restoring(checkpoint):
                adapter.restore(saved["adapter"])  # replays the log: no evaluation
                step, baseline = _restore_common(saved, evaluator, run, x0)
            baseline += _check_best_point(evaluator, run, checkpoint)
            if saved["finished"] and saved["budget"] == budget:
                return _result(
                    run,
                    adapter.recommendation().to(x0.dtype),
                    evaluator.stats.evals - baseline,
                    step,
                    method,
                    saved["message"],
                )
        bar.update(evaluator.stats.evals - baseline)

        def snapshot() -> dict[str, Any]:
            return {
                "kind": _KIND,
                "run": identity,
                "adapter": adapter.state(),
                **_common_state(run, evaluator, baseline, step, budget, message),
            }

        while True:
            left = budget - (evaluator.stats.evals - baseline)
            X = adapter.ask(left) if left > 0 else None
            if X is None:
                if step == 0:
                    raise ValueError(f"budget {budget} is too small for one batch of {method!r}")
                break
            Y = evaluator(X.to(x0.dtype))
            adapter.tell(X, Y.double())
            step += 1
            finite = Y[torch.isfinite(Y)]
            record = StepRecord(
                step=step,
                evals=evaluator.stats.evals - baseline,
                loss=float(finite.min()) if finite.numel() else math.nan,
                best=run.best,
                seconds=run.seconds(),
            )
            if _after_step(run, record, X.shape[0], bar, callback):
                message = "stopped by the callback"
                break
            if checkpoint is not None and step % checkpoint_every == 0:
                save_checkpoint(checkpoint, snapshot())
        stopped = getattr(adapter, "stop_reason", None)
        message = message or stopped or f"budget of {budget} evaluations spent"
        if checkpoint is not None:
            save_checkpoint(checkpoint, snapshot())
        x_last = adapter.recommendation().to(x0.dtype)
        return _result(run, x_last, evaluator.stats.evals - baseline, step, method, message)
    finally:
        close = getattr(adapter, "close", None)
        if close is not None:
            close()


def _common_state(
    run: _Progress, evaluator: Evaluator, baseline: int, step: int, budget: int, message: str
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "step": step,
        "budget": budget,
        "message": message,
        # A run the budget ended is complete; one a callback stopped may go on.
        "finished": message.startswith("budget"),
        "baseline": baseline,
        "evaluator": evaluator.state_dict(),
        "best": run.best,
        "best_x": run.best_x,
        "history": run.history.to_dicts(),
        "seconds": run.seconds(),
    }


def _restore_common(
    saved: dict[str, Any], evaluator: Evaluator, run: _Progress, x0: torch.Tensor
) -> tuple[int, int]:
    """Put back the evaluator's counters and the run's progress; return (step, baseline)."""
    evaluator.load_state_dict(saved["evaluator"])
    run.best = float(saved["best"])
    run.best_x = None if saved["best_x"] is None else _saved_tensor(saved, "best_x", x0)
    if (run.best_x is None) != math.isinf(run.best):
        raise ValueError("best and best_x disagree")
    run.history = History(StepRecord(**record) for record in saved["history"])
    run.seconds_before = float(saved["seconds"])
    run.started = time.perf_counter()
    if not isinstance(saved["finished"], bool) or not isinstance(saved["message"], str):
        raise TypeError("finished must be a bool and message a str")
    return int(saved["step"]), int(saved["baseline"])


def _saved_tensor(saved: dict[str, Any], key: str, like: torch.Tensor) -> torch.Tensor:
    """``saved[key]``, checked to be a tensor of ``like``'s shape."""
    value = saved[key]
    if not isinstance(value, torch.Tensor) or value.shape != like.shape:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{key} must be a tensor of shape {tuple(like.shape)}; got {shape}")
    return value.to(like.dtype)


def _check_best_point(evaluator: Evaluator, run: _Progress, checkpoint: Path) -> int:
    """Evaluate the resumed run's best point again; refuse unless it gives the stored loss.

    Returns the evaluations spent (0 or 1), which the caller keeps out of the
    run's count. Skipped for a noisy ``fn`` (one that takes ``seed``: its value
    there need not repeat) and before any finite evaluation.
    """
    if evaluator.accepts_seed or run.best_x is None:
        return 0
    run.muted = True
    try:
        value = float(evaluator(run.best_x[None])[0])
    finally:
        run.muted = False
    stored = run.best
    if not math.isfinite(value):
        raise CheckpointError(
            f"checkpoint {checkpoint}: resuming evaluates fn at the stored best point again, and "
            f"it failed there ({value!r}; it gave {stored!r} before); a failure, or another fn"
        )
    if not abs(value - stored) <= BEST_POINT_RTOL * max(abs(value), abs(stored)) + BEST_POINT_ATOL:
        raise CheckpointError(
            f"checkpoint {checkpoint} was written by another run: fn at the stored best point "
            f"gives {value!r} here, {stored!r} there (a random fn must take a seed parameter "
            "to be resumed); delete it or use another path"
        )
    return 1


def _result(
    run: _Progress, x_last: torch.Tensor, nevals: int, steps: int, method: str, message: str
) -> OptimizeResult:
    best_x = x_last if run.best_x is None else run.best_x
    return OptimizeResult(
        x=best_x.to(x_last.dtype),
        fun=run.best,
        x_last=x_last,
        nevals=nevals,
        nsteps=steps,
        history=run.history,
        method=method,
        message=message,
    )


def _after_step(
    run: _Progress,
    record: StepRecord,
    spent: int,
    bar: Any,
    callback: Callable[[StepRecord], bool | None] | None,
) -> bool:
    """Record a finished step, show it, and ask the callback; True when it says stop."""
    run.history.append(record)
    bar.update(spent)
    bar.set_postfix(best=f"{record.best:.4g}", loss=f"{record.loss:.4g}", refresh=False)
    return callback is not None and callback(record) is True


def _check_x0(x0: Any) -> torch.Tensor:
    """``x0`` as a 1-D real floating tensor (integers become float64); refuse anything else.

    Complex and boolean starts are refused rather than converted: a cast would
    drop the imaginary part, and True/False are rarely meant as coordinates.
    """
    try:
        tensor = torch.as_tensor(x0)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"x0 must be a 1-D array of numbers; got {type(x0).__name__}") from error
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise TypeError(f"x0 must hold real numbers (floats or ints); got dtype {tensor.dtype}")
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float64)
    if tensor.ndim != 1 or tensor.numel() == 0:
        raise ValueError(f"x0 must be a non-empty 1-D array; got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ValueError("x0 contains NaN or infinite values")
    return tensor.detach().clone()


def _evaluator(
    fn: Callable[..., object] | Evaluator, evaluator: Evaluator | None, seed: int
) -> Evaluator:
    if isinstance(fn, Evaluator):
        if evaluator is not None and evaluator is not fn:
            raise ValueError("pass the Evaluator either as fn or as evaluator, not two of them")
        return fn
    if evaluator is None:
        if not callable(fn):
            raise TypeError(f"fn must be callable; got {type(fn).__name__}")
        return Evaluator(fn, seed=seed)
    if not isinstance(evaluator, Evaluator):
        raise TypeError(f"evaluator must be a vg.Evaluator; got {type(evaluator).__name__}")
    if evaluator.fn != fn:  # == so that two accesses of a bound method match
        raise ValueError("evaluator must wrap the same fn that is passed to minimize")
    return evaluator


def check_method(method: object) -> None:
    """Raise, listing the known methods, unless ``method`` names one."""
    if method not in GRADIENT_METHODS and not _is_derivative_free(method):
        raise ValueError(
            f"unknown method {method!r}; known methods: {sorted(GRADIENT_METHODS)} and "
            f"{list(DERIVATIVE_FREE)}"
        )


def _is_derivative_free(method: object) -> bool:
    return isinstance(method, str) and (
        method in ("cma", "annealing", "ga") or method.startswith("nevergrad:")
    )


def _make_optimizer(spec: OptimizerSpec, theta: torch.Tensor, lr: float) -> torch.optim.Optimizer:
    check_positive("lr", lr)  # finite: lr=inf turns theta into NaN on the first step
    if isinstance(spec, str):
        if spec not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {spec!r}; known: {sorted(OPTIMIZERS)}, or pass a callable "
                "optimizer(params, lr)"
            )
        return OPTIMIZERS[spec]([theta], lr=lr)
    if not callable(spec):
        raise TypeError(f"optimizer must be a name or a callable; got {type(spec).__name__}")
    built = spec([theta], lr)
    if not isinstance(built, torch.optim.Optimizer):
        raise TypeError(f"optimizer(params, lr) must return a torch.optim.Optimizer; got {built!r}")
    return built
