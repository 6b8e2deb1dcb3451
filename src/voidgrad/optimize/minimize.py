"""``vg.minimize``: one call for a whole optimization of a scalar black box, under a budget.

Every method is an algorithm of the one run loop (:mod:`voidgrad.run`):
gradient-estimator methods step a torch optimizer along the estimator's
gradient, derivative-free baselines run their library's ask/tell loop
(:mod:`voidgrad.optimize.algorithms`), both through the same Evaluator, so
the budget counts every evaluation any method makes, whatever the backend.
No evaluation is spent on logging: a step's reported loss is the
estimator's own estimate from that step's evaluations, and the best loss is
the lowest single evaluation seen.

With ``checkpoint=path`` the complete state (parameters, optimizer, estimator
and evaluator counters, random streams, history; for derivative-free methods
the log their optimizer replays, see :mod:`voidgrad.optimize.dfo`) is saved
atomically every few seconds (``checkpoint_seconds``) or every
``checkpoint_every`` steps; calling ``minimize`` again with the same path
resumes, and a run killed at any moment and resumed ends where an
uninterrupted run with the same seed would (bit for bit on the serial
backend), having lost at most the steps since the last save. A
checkpoint resumes only the run that wrote it (see :func:`minimize`), and a
path is locked while a run uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from voidgrad.evaluation.evaluator import Evaluator
from voidgrad.optimize.algorithms import LrSchedule, MinimizeAlgorithm, OptimizerSpec
from voidgrad.optimize.auto import AutoAlgorithm
from voidgrad.optimize.best import BestPoint
from voidgrad.optimize.build import DEFAULT_LR, build_algorithm
from voidgrad.optimize.defaults import AUTO
from voidgrad.optimize.result import History, OptimizeResult
from voidgrad.registry import RUNNABLE
from voidgrad.registry import method as registered_method
from voidgrad.run import record_callback, run
from voidgrad.run.checkpoint import check_checkpoint_path, fingerprint, identity_value
from voidgrad.validation import check_callable, check_int, check_positive, check_seed


def minimize(
    fn: Callable[..., object] | Evaluator,
    x0: Any,
    method: str = AUTO,
    budget: int = 10_000,
    seed: int = 0,
    optimizer: OptimizerSpec = "adam",
    lr: float | None = None,
    evaluator: Evaluator | None = None,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    callback: Callable[..., bool | None] | None = None,
    *,
    checkpoint_every: int | None = None,
    checkpoint_seconds: float | None = 5.0,
    lr_schedule: LrSchedule | str | None = AUTO,
    **method_options: Any,
) -> OptimizeResult:
    """Minimize the scalar black box ``fn`` from ``x0`` within ``budget`` evaluations.

    Args:
        fn: the loss, ``fn(x) -> float`` for ``x`` a 1-D tensor; or an
            Evaluator (for a backend, timeout, failure policy). With a
            ``jac_sparsity`` pattern (``[m, d]``: which outputs depend on which
            parameters) ``fn`` returns m per-output losses and their sum is
            minimized, each parameter credited with its outputs only; without
            one a vector output is refused (a residual vector summed would be
            a wrong loss).
        x0: the start, a 1-D array-like of finite numbers.
        method: ``"auto"`` (the default): the method is chosen from d, the
            budget and a probe of ``fn`` at x0 (a few evaluations, counted:
            noise, smoothness), and ``result.choice`` says which and why
            (:mod:`voidgrad.optimize.auto`); or one named: ``"smoothing"``
            (PRDPT's Gaussian smoothing), ``"spsa"``, ``"fd"`` (finite
            differences), ``"zerograds"`` (a learned surrogate),
            ``"guided"``, ``"mixed"`` (with a ``guide``), or a derivative-free
            baseline: ``"annealing"``, ``"cma"``, ``"ga"``,
            ``"nevergrad:<name>"`` (the last three need
            ``pip install 'voidgrad[bench]'``).
        budget: evaluations of ``fn`` allowed, all of them counted.
        seed: seeds the estimator's or optimizer's random stream.
        optimizer: for gradient methods: ``"adam"``, ``"adamw"``, ``"sgd"``,
            ``"rmsprop"``, or ``optimizer(params, lr)`` returning any
            ``torch.optim`` optimizer.
        lr: the learning rate of a gradient method; default 0.01 for a named
            method, 0.05 ``scale`` for one ``"auto"`` chooses.
        evaluator: the Evaluator that runs ``fn``; default: a serial one
            with ``seed``, so seeded noisy functions replay.
        checkpoint: a path; the run saves there and resumes from there (see
            "Checkpoints" below).
        progress: show a progress bar (evaluations, best loss, rate).
        callback: ``callback(record)`` with each step's :class:`StepRecord`,
            or ``callback(record, state)`` to see the run too (a
            :class:`~voidgrad.run.RunState`: ``state.algorithm.theta``,
            ``.estimator``, ``.optimizer``, ``state.evaluator.stats``);
            returning True stops the run.
        checkpoint_every: save every this many steps (None: not by steps).
        checkpoint_seconds: save when this many seconds have passed since the
            last save (None: not by time). The default, every 5 s, costs a
            fast ``fn`` nothing noticeable (saving every step made a 1 ms
            ``fn`` 10× slower); a run also saves when it ends.
        lr_schedule: ``lr_schedule(optimizer)`` returning a scheduler, stepped
            once per step; ``None`` keeps lr constant; ``"auto"`` (the
            default) decays it linearly to 1 % over the run where d ≥ 1 000
            and the budget ≥ 5 d, and keeps it constant otherwise
            (:mod:`voidgrad.optimize.defaults`).
        **method_options: passed to the method: ``scale`` (the distance per
            coordinate from x0 to where the answer may be; default: guessed
            by the probe), ``guide`` and ``jac_sparsity`` for ``"auto"``;
            ``sigma``, ``samples``, ``antithetic``, ``importance``,
            ``schedule``, ``jac_sparsity`` for smoothing; ``c``,
            ``samples`` for SPSA; ``h``, ``scheme`` for FD; the adapter's
            options for derivative-free methods. Without a ``schedule``, a
            method that takes one anneals σ linearly from ``sigma`` to
            ``sigma``/10 over the run, holding it on steps whose estimate is
            exactly 0 (a plateau); ``schedule=None`` keeps it constant.
            Without ``importance``, ``method="smoothing"`` uses PRDPT's
            importance kernel below 1 000 parameters and the plain Gaussian
            from 1 000 on (:mod:`voidgrad.optimize.defaults`).

    Returns:
        An :class:`OptimizeResult`.

    Checkpoints:
        A checkpoint holds tensors, numbers and strings only and loads with
        ``weights_only=True``: no code in the file runs, and a file holding
        anything else, an empty, truncated or foreign one, raises a
        :class:`~voidgrad.run.checkpoint.CheckpointError` (a ValueError)
        naming it. It resumes only the run that wrote it: the method, seed,
        ``x0`` (exact values), ``method_options``, and for gradient methods
        ``optimizer``, ``lr`` and ``lr_schedule`` must be the same (options
        are compared as passed, so a default spelled out differs from one
        left out), and so must a fingerprint of ``fn``'s code
        (:func:`~voidgrad.run.checkpoint.fingerprint`: a function's code,
        defaults, closure and globals; for a callable object only its class's
        code). ``budget`` may differ: a finished run resumed with a larger one
        continues (an ``"auto"`` run with what it chose at its start). Then,
        unless ``fn`` takes a ``seed`` (is noisy), the stored best point is
        evaluated once more and its loss must match the stored
        one to ``voidgrad.optimize.best.BEST_POINT_RTOL`` relative or ``BEST_POINT_ATOL`` absolute:
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
        >>> import torch
        >>> import voidgrad as vg
        >>> x0 = torch.zeros(2, dtype=torch.float64)
        >>> result = vg.minimize(lambda x: float((x - 3).pow(2).sum()), x0, budget=400,
        ...                      progress=False)
        >>> result.choice.method  # smooth in float64, 200 evaluations per parameter
        'annealing'
        >>> [round(v, 4) for v in result.x.tolist()]
        [3.0, 3.0]
        >>> result = vg.minimize(lambda x: float((x - 3).pow(2).sum()), [0.0, 0.0], method="fd",
        ...                      budget=400, lr=0.1, h=1e-3, progress=False)
        >>> [round(v, 2) for v in result.x.tolist()]
        [3.0, 3.0]
        >>> result.nevals <= 400, len(result.history) == result.nsteps
        (True, True)
    """
    x0 = _check_x0(x0)
    check_int("budget", budget, 1)
    check_seed(seed, optional=False)
    path = check_checkpoint_path(checkpoint)
    if checkpoint_every is not None:
        check_int("checkpoint_every", checkpoint_every, 1)
    if checkpoint_seconds is not None:
        check_positive("checkpoint_seconds", checkpoint_seconds)
    if lr is not None:
        check_positive("lr", lr)
    if lr_schedule != AUTO:
        check_callable(
            "lr_schedule", lr_schedule, "lr_schedule(optimizer) returning a scheduler or 'auto'"
        )
    evaluator = _evaluator(fn, evaluator, seed)
    entry = registered_method(method, RUNNABLE, presets=False)
    identity = {
        "method": method,
        "seed": seed,
        "x0": x0.clone(),
        "fn": fingerprint(evaluator.fn),
        **{name: identity_value(value) for name, value in method_options.items()},
    }
    best = BestPoint(x0, per_output=method_options.get("jac_sparsity") is not None)
    algorithm: MinimizeAlgorithm
    if entry.kind != "derivative-free":
        # The identity keeps "auto" as given: a resumed run may have a larger budget.
        identity.update(
            optimizer=identity_value(optimizer),
            lr=DEFAULT_LR if lr is None and entry.kind == "blackbox" else lr,
            lr_schedule=identity_value(lr_schedule),
        )
    if entry.kind == "auto":
        algorithm = AutoAlgorithm(
            evaluator,
            x0,
            entry.make(seed=seed, **method_options),
            seed=seed,
            optimizer=optimizer,
            lr=lr,
            lr_schedule=lr_schedule,
            best=best,
        )
    else:
        algorithm = build_algorithm(
            entry,
            method_options,
            evaluator=evaluator,
            x0=x0,
            budget=budget,
            seed=seed,
            optimizer=optimizer,
            lr=lr,
            lr_schedule=lr_schedule,
            best=best,
        )
    evaluator.add_listener(best.observe)
    try:
        state = run(
            algorithm,
            budget,
            evaluator=evaluator,
            checkpoint=path,
            identity=identity,
            checkpoint_every=checkpoint_every,
            checkpoint_seconds=checkpoint_seconds,
            callbacks=() if callback is None else (record_callback(callback),),
            progress=progress,
            description=method,
            postfix=lambda record: {"best": f"{record.best:.4g}", "loss": f"{record.loss:.4g}"},
        )
    finally:
        evaluator.remove_listener(best.observe)
    x_last = algorithm.x_last()
    assert isinstance(state.history, History)
    return OptimizeResult(
        x=(x_last if best.x is None else best.x).to(x_last.dtype),
        fun=best.loss,
        x_last=x_last,
        nevals=state.spent,
        nsteps=state.step,
        history=state.history,
        method=method,
        message=state.message,
        choice=algorithm.choice if isinstance(algorithm, AutoAlgorithm) else None,
    )


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
        return Evaluator(check_callable("fn", fn), seed=seed)
    if not isinstance(evaluator, Evaluator):
        raise TypeError(f"evaluator must be a vg.Evaluator; got {type(evaluator).__name__}")
    if evaluator.fn != fn:  # == so that two accesses of a bound method match
        raise ValueError("evaluator must wrap the same fn that is passed to minimize")
    return evaluator
