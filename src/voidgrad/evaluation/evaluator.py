"""The Evaluator: the single door through which every call of a user's function passes."""

from __future__ import annotations

import contextlib
import inspect
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch

from voidgrad.errors import BudgetExhausted, EvaluationError, EvaluationTimeout, WorkerDied
from voidgrad.evaluation.backends import Backend, Outcome, SerialBackend, Tally, VectorizedBackend
from voidgrad.evaluation.outputs import as_output_tensor
from voidgrad.validation import check_int, check_seed

OnError = Literal["raise", "nan"]

_IN_PROCESS = ("serial", "vectorized")
_POOLED = ("process", "ray")
_SEED_HIGH = 2**31 - 1


@dataclass(frozen=True)
class EvaluationStats:
    """Counters of an Evaluator.

    ``evals``: rows evaluated (what budgets count); ``attempts``: tries,
    retries after a worker died included; ``failures``: rows whose final
    attempt failed; ``seconds``: time inside ``fn``. A batch cut short
    (Ctrl-C, ``fn`` raising ``SystemExit``) still counts every row that
    started, the one running when it ended included; it adds no failures.

    Examples:
        >>> import torch, voidgrad as vg
        >>> ev = vg.Evaluator(lambda x: float(x) if x > 0 else float("nan"), on_error="nan")
        >>> _ = ev(torch.tensor([[1.0], [-1.0], [2.0]]))
        >>> stats = ev.stats
        >>> stats.evals, stats.failures, stats.successes
        (3, 1, 2)
    """

    evals: int = 0
    failures: int = 0
    seconds: float = 0.0
    attempts: int = 0

    @property
    def successes(self) -> int:
        """Rows that produced a finite output."""
        return self.evals - self.failures


class Evaluator:
    """Calls a black box on batches of parameter rows, counting and checking every call.

    Args:
        fn: the black box. With ``backend="serial"`` it is called as ``fn(row)``
            with ``row = X[i]`` (a parameter vector ``[d]``, or a sample of any
            shape); with ``"vectorized"`` as ``fn(X)`` on the whole batch
            ``[n, ...]``, returning ``[n, ...]``. It
            may return a float or int, or a non-empty tensor or NumPy array of
            a floating or integer dtype; anything else (a bool, ``None``, a
            string, a complex number, an object array, an empty output)
            raises a ``TypeError`` or ``ValueError`` at once, whatever
            ``on_error`` says, naming what it returned and the row. It gets
            its own copy of its input, so writing into it changes nothing
            outside. If its signature has a ``seed`` parameter, it receives
            the per-row seed that the caller supplies (an int, or an int64
            tensor ``[n]`` when vectorized).
        backend: ``"serial"``, ``"vectorized"``, or any object following the
            :class:`~voidgrad.evaluation.Backend` protocol.
        budget: maximal number of evaluations; a batch that would exceed it
            raises :class:`~voidgrad.BudgetExhausted` before anything runs.
        on_error: ``"raise"`` re-raises a failure (an exception, a
            non-finite output, a timeout, a worker that died more often than
            ``retries`` allows) as :class:`~voidgrad.EvaluationError` naming
            the offending row and chaining the cause; ``"nan"`` records it and
            returns a row of NaN.
        workers: processes or Ray actors of a ``"process"`` or ``"ray"``
            backend (default: the CPUs available).
        timeout: seconds one evaluation may take before its worker is killed
            and replaced (``"process"`` and ``"ray"`` only).
        retries: further tries of a row whose worker died.
        init: called once per worker before its first evaluation (load a
            scene, open a renderer); ``"process"`` and ``"ray"`` only.
            A ``fn`` that cannot run in a forked copy of this process (one
            holding an engine's threads, such as Blender) says so with an
            attribute ``process_start_method = "spawn"`` (or ``"forkserver"``),
            which the ``"process"`` backend then uses instead of fork.
        ray_address: ``None`` starts a local Ray runtime; an address such as
            ``"ray://head:10001"`` or ``"auto"`` joins an existing cluster.
        seed: run seed. When a caller passes no seeds, row i of the k-th
            evaluation overall gets a seed derived from (seed, k), so a
            seeded stochastic ``fn`` gives the same results whatever the
            backend and the number of workers.

    Every output must have the same shape; the first successful call fixes it.
    Outputs are returned on the device of ``X``, in the dtype of ``X`` or the dtype
    ``fn`` returned, whichever is the wider floating type (a Python float is
    float64), so no resolution of the outputs is lost to ``X``'s precision.

    Examples:
        >>> import torch, voidgrad as vg
        >>> ev = vg.Evaluator(lambda x: float(x.sum()), budget=5)
        >>> ev(torch.ones(3, 2))  # a Python float is float64, wider than X's float32
        tensor([2., 2., 2.], dtype=torch.float64)
        >>> ev.stats.evals, ev.remaining
        (3, 2)
        >>> ev(torch.ones(3, 2))
        Traceback (most recent call last):
        ...
        voidgrad.errors.BudgetExhausted: ...
    """

    def __init__(
        self,
        fn: Callable[..., object],
        backend: str | Backend = "serial",
        *,
        budget: int | None = None,
        on_error: OnError = "raise",
        workers: int | None = None,
        timeout: float | None = None,
        retries: int = 0,
        init: Callable[[], object] | None = None,
        ray_address: str | None = None,
        seed: int | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable; got {type(fn).__name__}")
        if isinstance(backend, str):
            backend = _make_backend(
                backend, workers, timeout, retries, init, ray_address, _start_method(fn)
            )
        elif not isinstance(backend, Backend):
            raise TypeError(
                "backend must be a name or an object with evaluate() and close(); "
                f"got {type(backend).__name__}"
            )
        if budget is not None and (
            isinstance(budget, bool) or not isinstance(budget, int) or budget < 1
        ):
            raise ValueError(f"budget must be a positive int or None; got {budget!r}")
        if on_error not in ("raise", "nan"):
            raise ValueError(f"on_error must be 'raise' or 'nan'; got {on_error!r}")
        self._fn = fn
        self._backend = backend
        self._budget = budget
        self._on_error: OnError = on_error
        self._accepts_seed = _takes_keyword(fn, "seed")
        self._backend_takes_tally = _takes_keyword(backend.evaluate, "tally")
        self._seed = check_seed(seed)
        self._output_shape: torch.Size | None = None
        self._stats = EvaluationStats()
        self._listeners: list[Callable[[torch.Tensor, torch.Tensor], None]] = []

    @property
    def fn(self) -> Callable[..., object]:
        return self._fn

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def budget(self) -> int | None:
        return self._budget

    @property
    def on_error(self) -> OnError:
        return self._on_error

    @property
    def accepts_seed(self) -> bool:
        """Whether ``fn`` has a ``seed`` parameter, so that seeds reach it."""
        return self._accepts_seed

    @property
    def output_shape(self) -> torch.Size | None:
        """Shape of one output, known after the first successful evaluation."""
        return self._output_shape

    @property
    def stats(self) -> EvaluationStats:
        """A snapshot of the counters."""
        return self._stats

    @property
    def remaining(self) -> int | None:
        """Evaluations left in the budget, or ``None`` without a budget."""
        return None if self._budget is None else self._budget - self._stats.evals

    def __call__(
        self,
        X: torch.Tensor,
        seeds: Sequence[int] | torch.Tensor | None = None,
        *,
        differentiable: bool = False,
    ) -> torch.Tensor:
        """Evaluate every row of ``X`` (``[n, ...]``); return the outputs stacked ``[n, ...]``.

        ``seeds`` (one int per row) is passed on when ``fn`` accepts a ``seed``
        and ignored otherwise. By default ``fn`` runs under ``torch.no_grad``
        on detached rows; ``differentiable=True`` keeps the autograd graph
        from ``X`` through ``fn``'s outputs (for estimators that
        differentiate ``fn`` itself, such as the pathwise one).
        """
        X = _as_batch(X, differentiable)
        n = X.shape[0]
        seed_list = _as_seed_list(seeds, n)
        self.check_budget(n)
        if seed_list is None and self._seed is not None:
            seed_list = [derived_seed(self._seed, self._stats.evals + i) for i in range(n)]
        outcomes = self._run(X, seed_list if self._accepts_seed else None, differentiable)
        if len(outcomes) != n:
            raise RuntimeError(f"backend returned {len(outcomes)} outcomes for {n} rows")
        outputs = self._collect(X, outcomes, differentiable)
        for listener in self._listeners:
            listener(X.detach(), outputs.detach())
        return outputs

    def check_budget(self, n: int) -> None:
        """Raise :class:`~voidgrad.errors.BudgetExhausted` unless ``n`` more evaluations fit.

        Examples:
            >>> import voidgrad as vg
            >>> ev = vg.Evaluator(lambda x: float(x.sum()), budget=2)
            >>> ev.check_budget(2)  # fits: nothing happens
            >>> ev.check_budget(3)
            Traceback (most recent call last):
            ...
            voidgrad.errors.BudgetExhausted: ...
        """
        check_int("n", n, 0)
        if self._budget is not None and self._stats.evals + n > self._budget:
            raise BudgetExhausted(self._budget, self._stats.evals, n)

    def _run(self, X: torch.Tensor, seeds: list[int] | None, differentiable: bool) -> list[Outcome]:
        """The backend's outcomes for ``X``.

        When the backend raises instead of returning (Ctrl-C, ``fn`` raising
        ``SystemExit``, a batch output of the wrong shape), the rows that ran,
        as its tally records them, are counted before the exception goes on.
        """
        tally = Tally()
        options = {"tally": tally} if self._backend_takes_tally else {}
        try:
            with contextlib.nullcontext() if differentiable else torch.no_grad():
                return self._backend.evaluate(self._fn, X, seeds, **options)
        except BaseException:
            self._count(tally.rows, tally.attempts, tally.seconds)
            raise

    def _count(self, evals: int, attempts: int, seconds: float) -> None:
        """Add what a batch used to the counters."""
        self._stats = replace(
            self._stats,
            evals=self._stats.evals + evals,
            attempts=self._stats.attempts + attempts,
            seconds=self._stats.seconds + seconds,
        )

    def _collect(
        self, X: torch.Tensor, outcomes: list[Outcome], differentiable: bool
    ) -> torch.Tensor:
        """Stack the outputs, find the failures, apply the failure policy.

        Outputs that cannot be right for any parameters (not real numbers,
        empty, changed shape) raise at once, whatever the policy.
        """
        self._count(
            len(outcomes),
            sum(o.attempts for o in outcomes),
            sum(o.seconds for o in outcomes),
        )
        succeeded = [i for i, o in enumerate(outcomes) if o.error is None]
        failures = {i: _describe(o) for i, o in enumerate(outcomes) if o.error is not None}
        dtype = X.dtype if X.is_floating_point() else torch.get_default_dtype()
        if succeeded:
            n = len(outcomes)
            values = torch.stack(
                [
                    self._as_output(outcomes[i].value, differentiable, f" at row {i} of {n}")
                    for i in succeeded
                ]
            )
            # A wider floating output keeps its dtype: cast to X's, F ≈ 3e4 in float32 would lose
            # the differences an estimator divides by the step.
            if values.is_floating_point():
                dtype = torch.promote_types(dtype, values.dtype)
            values = values.to(dtype)
            finite = torch.isfinite(values.reshape(len(succeeded), -1)).all(1).tolist()
            for i, ok in zip(succeeded, finite, strict=True):
                if not ok:
                    failures[i] = "fn returned a non-finite output"
        self._stats = replace(self._stats, failures=self._stats.failures + len(failures))
        if failures and (self._on_error == "raise" or self._output_shape is None):
            row = min(failures)
            message = failures[row]
            if self._on_error == "nan":
                message = (
                    f"all {len(outcomes)} evaluations failed and no output shape is known yet, "
                    f"so no NaN rows can be returned; the first: {message}"
                )
            raise EvaluationError(
                f"{message} at row {row} of a batch of {X.shape[0]}; parameters: "
                f"{_summary(X[row])}",
                row=row,
                params=X[row],
            ) from outcomes[row].error
        assert self._output_shape is not None  # set by the first successful output
        outputs = torch.full((len(outcomes), *self._output_shape), float("nan"), dtype=dtype)
        if succeeded:
            outputs[succeeded] = values
            outputs[sorted(failures)] = float("nan")
        return outputs.to(X.device)

    def _as_output(self, value: object, differentiable: bool, where: str) -> torch.Tensor:
        """``value`` as a tensor of the shape every output must have; ``where`` names the row."""
        tensor = as_output_tensor(value, detach=not differentiable, where=where)
        if self._output_shape is None:
            self._output_shape = tensor.shape
        elif tensor.shape != self._output_shape:
            raise ValueError(
                f"fn returned an output of shape {tuple(tensor.shape)}{where}, but earlier "
                f"evaluations returned shape {tuple(self._output_shape)}; a black box must "
                "return the same shape every call"
            )
        return tensor

    def add_listener(self, listener: Callable[[torch.Tensor, torch.Tensor], None]) -> None:
        """Call ``listener(X, Y)`` after every batch (X detached; Y with NaN rows for failures)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[torch.Tensor, torch.Tensor], None]) -> None:
        """Stop calling a listener added with :meth:`add_listener`."""
        self._listeners.remove(listener)

    def state_dict(self) -> dict[str, object]:
        """The counters (which also drive the derived seeds), for checkpoints."""
        return {
            "evals": self._stats.evals,
            "failures": self._stats.failures,
            "seconds": self._stats.seconds,
            "attempts": self._stats.attempts,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Continue counting (and deriving seeds) from a :meth:`state_dict`."""
        evals, failures, seconds, attempts = (
            state["evals"],
            state["failures"],
            state["seconds"],
            state["attempts"],
        )
        assert isinstance(evals, int) and isinstance(failures, int)
        assert isinstance(seconds, float) and isinstance(attempts, int)
        self._stats = EvaluationStats(evals, failures, seconds, attempts)

    def close(self) -> None:
        """Release the backend's resources (worker processes, cluster handles)."""
        self._backend.close()

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        name = getattr(self._fn, "__name__", type(self._fn).__name__)
        return (
            f"Evaluator(fn={name}, backend={type(self._backend).__name__}, "
            f"budget={self._budget}, on_error={self._on_error!r}, stats={self._stats})"
        )


def _describe(outcome: Outcome) -> str:
    """What went wrong with a failed outcome, for the error message."""
    error = outcome.error
    tries = f" ({outcome.attempts} attempts)" if outcome.attempts > 1 else ""
    if isinstance(error, EvaluationTimeout | WorkerDied):
        return f"{error}{tries}"
    return f"fn raised {type(error).__name__}: {error}{tries}"


def derived_seed(run_seed: int, index: int) -> int:
    """A seed for evaluation ``index`` of a run: a hash of (run seed, index), in [0, 2³¹ − 1)."""
    mixed = (run_seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + 1) % 2**64
    mixed ^= mixed >> 31
    mixed = (mixed * 0x94D049BB133111EB) % 2**64
    mixed ^= mixed >> 29
    return mixed % _SEED_HIGH


def _make_backend(
    name: str,
    workers: int | None,
    timeout: float | None,
    retries: int,
    init: Callable[[], object] | None,
    ray_address: str | None,
    start_method: str | None = None,
) -> Backend:
    """The backend called ``name``, with the pool options only pooled backends accept."""
    if name in _IN_PROCESS:
        given = {
            "workers": workers is not None,
            "timeout": timeout is not None,
            "retries": retries != 0,
            "init": init is not None,
            "ray_address": ray_address is not None,
        }
        misplaced = [option for option, present in given.items() if present]
        if misplaced:
            raise ValueError(
                f"{', '.join(misplaced)} need(s) backend='process' or 'ray': the {name!r} "
                "backend runs fn in this process, where a hung or crashing call cannot be "
                "stopped"
            )
        return SerialBackend() if name == "serial" else VectorizedBackend()
    if name == "process":
        if ray_address is not None:
            raise ValueError("ray_address needs backend='ray'")
        from voidgrad.evaluation.process import ProcessBackend

        return ProcessBackend(
            workers, init=init, timeout=timeout, retries=retries, start_method=start_method
        )
    if name == "ray":
        from voidgrad.evaluation.ray_backend import RayBackend

        return RayBackend(workers, init=init, timeout=timeout, retries=retries, address=ray_address)
    raise ValueError(
        f"backend must be one of {sorted(_IN_PROCESS + _POOLED)} or a Backend instance; "
        f"got {name!r}"
    )


def _start_method(fn: Callable[..., object]) -> str | None:
    """The process start method ``fn`` asks for, if any (see ``Evaluator``)."""
    method = getattr(fn, "process_start_method", None)
    if method is not None and not isinstance(method, str):
        raise TypeError(f"fn.process_start_method must be a str; got {type(method).__name__}")
    return method


def _takes_keyword(fn: Callable[..., object], name: str) -> bool:
    """Whether ``fn``'s signature has a parameter ``name``."""
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False
    return name in parameters


def _as_batch(X: object, differentiable: bool) -> torch.Tensor:
    try:
        X = torch.as_tensor(X)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(
            f"X must be a tensor (or array) of numbers [n, ...]; got {type(X).__name__} that "
            f"torch cannot convert ({error})"
        ) from error
    if X.is_complex():
        raise TypeError(f"X must hold real numbers; got dtype {X.dtype}")
    if X.ndim == 0:
        raise ValueError("X must have a leading batch dimension [n, ...]; got a 0-d tensor")
    if X.shape[0] == 0:
        raise ValueError("X must have at least one row")
    return X if differentiable else X.detach()


def _as_seed_list(seeds: Sequence[int] | torch.Tensor | None, n: int) -> list[int] | None:
    if seeds is None:
        return None
    if isinstance(seeds, torch.Tensor) and (seeds.is_floating_point() or seeds.is_complex()):
        raise TypeError(f"seeds must be integers, one per row of X; got a {seeds.dtype} tensor")
    seed_list = seeds.tolist() if isinstance(seeds, torch.Tensor) else list(seeds)
    for seed in seed_list:
        # The same rule as every seed= argument: a negative or float seed is a mistake.
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seeds must be non-negative ints, one per row of X; got {seed!r}")
    seed_list = [int(s) for s in seed_list]
    if len(seed_list) != n:
        raise ValueError(f"seeds must have one entry per row of X ({n}); got {len(seed_list)}")
    return seed_list


def _summary(row: torch.Tensor, shown: int = 6) -> str:
    """A parameter row for a message: all of it when short, its ends and shape when long."""
    values = row.reshape(-1).tolist()
    if len(values) <= shown:
        return str([round(v, 6) if isinstance(v, float) else v for v in values])
    half = shown // 2
    ends = [f"{v:.6g}" for v in values[:half]] + ["..."] + [f"{v:.6g}" for v in values[-half:]]
    return f"[{', '.join(ends)}] (shape {list(row.shape)}; all of them in error.params)"
