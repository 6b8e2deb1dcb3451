"""``voidgrad bench``: every method on every problem, several seeds, equal evaluation budgets.

Each (problem, method, seed) *cell* is one ``vg.minimize`` run with the same
budget, written to ``DIR/cells/<problem>__<method>__<seed>.json`` as soon as
it finishes, with everything that defines it (:func:`cell_identity`: the
problem's arguments, the budget, the method's options as resolved, the
workers, voidgrad's version). A cell whose file holds the same definition is
not run again, so an interrupted benchmark resumes where it stopped; a file
from other settings, or one that is unreadable or damaged, is run again and
overwritten, never reported (:func:`load_cell`). Before the first cell runs,
:func:`plan` checks every setting and starts every method once on every
problem without evaluating anything, so a mistake or a missing optional
dependency is a :class:`SettingsError`, not a report of failed cells. A cell
that fails while it runs is recorded with its error, listed in the report, and
run again next time. At the end the cells are gathered into
``DIR/results.json`` (raw best-so-far curves), ``DIR/report.md`` (per problem:
median and range of the answer's loss, the best evaluated loss, evaluations
to reach the problem's threshold, wall time) and one PNG per problem (best
evaluated loss − optimum against evaluations, log scale; symmetric-log when a
run reaches the optimum, :func:`curve_figure`). While a cell runs, its
progress bar (``vg.minimize``'s own) shows evaluations spent of the budget and
the best loss so far.

A method's *answer* is the better of its final iterate or recommendation
``x_last``, scored by one evaluation that the budget does not count (the
same for every method), and the best point it evaluated. Smoothing-type
methods only ever evaluate perturbed points, which in high dimension are far
worse than the iterate, so the best evaluated loss alone would misjudge them.

The methods, and their options relative to the problem's scale s (the
root-mean-square coordinate of x0 − x_target; when the answer is unknown, the
spread of x0's coordinates, :func:`problem_scale`), are the entries of
:mod:`voidgrad.registry`: smoothing starts at σ = 0.5 s and anneals linearly to
0.05 s over the budget (PRDPT's schedule), with Adam at lr = 0.05 s, and so on;
``zerograds-reference`` is ``zerograds`` with the reference code's settings
(:func:`reference_zerograds_options`). The same defaults serve every problem:
none is tuned per problem.
``--option method.key=value`` overrides any of them; a value written with an
``s`` (``zerograds.lr=0.02s``) is in units of each problem's s.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import voidgrad as vg
from voidgrad import problems, registry
from voidgrad.optimize.defaults import LinearLrDecay as LinearLrDecay
from voidgrad.registry import ZEROGRADS_SAMPLES as ZEROGRADS_SAMPLES
from voidgrad.registry import BenchScale
from voidgrad.registry import reference_zerograds_options as reference_zerograds_options
from voidgrad.validation import check_int, check_interval, is_int, is_number

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class SettingsError(ValueError):
    """A benchmark that cannot run as asked, found before its first cell runs.

    The message names the setting (a problem, a method, an option, ``out``) and
    what was expected; ``voidgrad bench`` prints it as a usage error.
    """


@dataclass(frozen=True)
class Cell:
    """One run: a problem (with constructor arguments), a method, a seed."""

    problem: str
    arguments: tuple[tuple[str, Any], ...]
    method: str
    seed: int

    @property
    def problem_label(self) -> str:
        if not self.arguments:
            return self.problem
        if len(self.arguments) == 1 and self.arguments[0][0] == "dim":
            return f"{self.problem}-{self.arguments[0][1]}"
        return self.problem + "".join(f"-{key}{value}" for key, value in self.arguments)

    @property
    def spec(self) -> str:
        """The problem as the command line writes it: ``NAME:DIM`` or ``NAME[:KEY=VALUE...]``."""
        if len(self.arguments) == 1 and self.arguments[0][0] == "dim":
            return f"{self.problem}:{self.arguments[0][1]}"
        return self.problem + "".join(f":{key}={value}" for key, value in self.arguments)

    @property
    def key(self) -> str:
        """The stem of the cell's file name.

        Characters other than letters, digits and ``.=_-`` become ``_``, so that
        no problem argument can name a file outside the cells folder.
        """
        key = f"{self.problem_label}__{self.method.replace(':', '-')}__{self.seed}"
        return re.sub(r"[^A-Za-z0-9.=_-]", "_", key)


@dataclass
class BenchSettings:
    """What ``voidgrad bench`` runs: problem specs, methods, budget, seeds, output folder.

    ``options`` maps a method to its overrides (see :func:`parse_options`);
    :func:`plan` checks all of it before anything runs.
    """

    problems: list[str]
    methods: list[str]
    budget: int
    seeds: int
    out: Path
    workers: int = 1
    options: dict[str, dict[str, Any]] = field(default_factory=dict)


def parse_problem(text: str) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """A problem spec: ``NAME``, ``NAME:DIM`` or ``NAME:KEY=VALUE[:KEY=VALUE...]``.

    ``"rastrigin:1000"`` -> ("rastrigin", (("dim", 1000),));
    ``"texture:size=64"`` -> ("texture", (("size", 64),)).
    """
    name, *parts = text.split(":")
    if name not in problems.PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; known problems: {sorted(problems.PROBLEMS)}")
    accepted = inspect.signature(problems.PROBLEMS[name]).parameters
    arguments: dict[str, Any] = {}
    for part in parts:
        key, equals, raw = part.partition("=")
        if not equals:
            key, raw = "dim", part
            if not raw.isdigit() or int(raw) < 1:
                raise ValueError(f"a problem's dimension must be a positive int; got {text!r}")
        if key not in accepted or key == "seed":
            options = sorted(k for k in accepted if k != "seed")
            raise ValueError(f"problem {name!r} takes no {key!r}; its options: {options}")
        if key in arguments:
            raise ValueError(f"problem {text!r} gives {key!r} twice")
        arguments[key] = _literal(raw)
    return name, tuple(arguments.items())


@dataclass(frozen=True)
class Scaled:
    """An option value in units of the problem's scale s (written ``0.02s``): factor · s."""

    factor: float

    def at(self, scale: float) -> float:
        return self.factor * scale

    def __str__(self) -> str:
        return f"{self.factor}s"


def parse_options(pairs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["smoothing.sigma=0.5", "cma.popsize=20"]`` -> {"smoothing": {"sigma": 0.5}, ...}.

    A number followed by ``s`` (``zerograds.lr=0.02s``) is relative to each
    problem's scale (:func:`problem_scale`), like the bench's own defaults.
    An option given twice is an error, not "the last one wins".
    """
    options: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        target, equals, raw = pair.partition("=")
        method, dot, key = target.rpartition(".")
        if not equals or not dot or not method or not key:
            raise ValueError(f"an option must read method.key=value; got {pair!r}")
        if key in options.setdefault(method, {}):
            raise ValueError(f"option {target} is given twice")
        options[method][key] = _scaled(raw) or _literal(raw)
    return options


def _scaled(raw: str) -> Scaled | None:
    """``"0.02s"`` -> Scaled(0.02); anything else -> None."""
    if not raw.endswith("s"):
        return None
    try:
        return Scaled(float(raw[:-1]))
    except ValueError:
        return None


def _literal(raw: str) -> Any:
    for convert in (int, float):
        try:
            return convert(raw)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(raw.lower(), raw)


def make_problem(cell: Cell) -> Any:
    """The cell's problem instance: its seed fixes the instance and the start."""
    return problems.make(cell.problem, seed=cell.seed, **dict(cell.arguments))


def problem_scale(problem: Any) -> float:
    """s: the root-mean-square distance per coordinate from x0 to the answer.

    When the answer is unknown, the spread of x0's own coordinates stands in
    (for a network's weights, the scale of their initialization); 1 when x0 is
    a single number or constant.
    """
    x0 = problem.x0.double()
    if problem.x_target is not None:
        return max(float((x0 - problem.x_target.double()).pow(2).mean().sqrt()), 1e-3)
    spread = float(x0.std()) if x0.numel() > 1 else 0.0
    return max(spread, 1e-3) if spread > 0 else 1.0


PRESETS: dict[str, str] = {
    entry.name: entry.preset_of for entry in registry.METHODS if entry.preset_of is not None
}
"""Bench method names that are ``vg.minimize`` methods with other settings (the registry's)."""


def minimize_method(method: str) -> str:
    """The ``vg.minimize`` method a bench method name runs."""
    return PRESETS.get(method, method)


def method_options(
    method: str, scale: float, budget: int, overrides: dict[str, Any], dim: int = 1
) -> dict[str, Any]:
    """The options ``vg.minimize`` gets for ``method`` on a problem of scale ``scale``.

    The registry's scale-relative options (:meth:`voidgrad.registry.Method.bench_options`)
    under the ``overrides``, a :class:`Scaled` one resolved at ``scale``. The σ
    schedules of ``smoothing`` and ``zerograds`` anneal over the run's steps,
    budget // samples, with ``samples`` as overridden (a ``schedule`` override
    replaces them). The override ``lr_decay=f`` (0 < f ≤ 1) decays the learning
    rate linearly to f times its start over those same steps
    (:class:`LinearLrDecay`); without it lr is constant.
    """
    at = BenchScale(scale, budget, dim, overrides)
    resolved = {k: v.at(scale) if isinstance(v, Scaled) else v for k, v in overrides.items()}
    lr_decay = resolved.pop("lr_decay", None)
    options = {**registry.method(method).bench_options(at), **resolved}
    if lr_decay is not None:
        options["lr_schedule"] = _lr_decay_schedule(method, lr_decay, budget, options)
    return options


def _lr_decay_schedule(
    method: str, end_factor: Any, budget: int, options: dict[str, Any]
) -> LinearLrDecay:
    """The ``lr_decay=f`` option: lr decays to f · lr over the budget // samples steps."""
    if "samples" not in options or "lr" not in options:
        raise ValueError(
            f"lr_decay needs a method whose steps take `samples` evaluations and an lr "
            f"({', '.join(_stepped_methods())}); got {method!r}"
        )
    check_interval("lr_decay", end_factor, 0, 1, closed_high=True)
    return LinearLrDecay(float(end_factor), max(1, budget // options["samples"]))


def _stepped_methods() -> list[str]:
    """The methods whose bench options have ``samples`` and ``lr``: those ``lr_decay`` fits."""
    unit = BenchScale(1.0, 1)
    return [
        entry.name
        for entry in registry.METHODS
        if {"samples", "lr"} <= entry.bench_options(unit).keys()
    ]


BENCH_SET_OPTIONS = frozenset(
    {
        "budget",
        "seed",
        "workers",
        "evaluator",
        "checkpoint",
        "checkpoint_every",
        "callback",
        "progress",
    }
)
"""``vg.minimize`` arguments the bench sets itself, from its settings: no option may."""


def plan(settings: BenchSettings) -> list[Cell]:
    """The run's cells, once every setting is known to work.

    Checked before any cell runs, so that a mistake costs a usage error and not
    a benchmark of failed cells: ``budget``, ``seeds`` and ``workers`` are ints
    >= 1; problems and methods are known and each listed once; every option
    belongs to a method of the run and is not one the bench sets itself
    (:data:`BENCH_SET_OPTIONS`); every problem builds with its arguments for
    every seed; every method starts on every problem (:func:`dry_run`: its
    options resolve and its estimator, optimizer or derivative-free library is
    built, so a missing optional dependency is named with the extra to
    install). Last, ``out`` is created and written to.

    Raises:
        SettingsError: naming the setting and what was expected.
    """
    with _settings_error(""):
        for name in ("budget", "seeds", "workers"):
            check_int(name, getattr(settings, name), 1)
    specs = _problem_specs(settings.problems)
    methods = _methods(settings.methods)
    _check_options(settings.options, methods)
    for name, arguments in specs:
        for seed in range(settings.seeds):
            instance = Cell(name, arguments, "", seed)
            with _settings_error(f"problem {instance.spec}: "):
                make_problem(instance)
    for name, arguments in specs:
        for method in methods:
            dry_run(Cell(name, arguments, method, 0), settings)
    _check_writable(settings.out)
    return [
        Cell(name, arguments, method, seed)
        for name, arguments in specs
        for method in methods
        for seed in range(settings.seeds)
    ]


@contextlib.contextmanager
def _settings_error(context: str) -> Iterator[None]:
    """Re-raise a ValueError or TypeError from inside as a SettingsError led by ``context``."""
    try:
        yield
    except SettingsError:
        raise
    except (ValueError, TypeError) as error:
        raise SettingsError(f"{context}{error}") from error


def _problem_specs(texts: Sequence[str]) -> list[tuple[str, tuple[tuple[str, Any], ...]]]:
    """The parsed problem specs; two texts that name one problem are an error."""
    if not texts:
        raise SettingsError("problems must name at least one problem")
    seen: dict[tuple[str, tuple[tuple[str, Any], ...]], str] = {}
    for text in texts:
        with _settings_error(""):
            spec = parse_problem(text)
        if spec in seen:
            raise SettingsError(
                f"problems list {text!r} twice"
                if seen[spec] == text
                else f"problems: {text!r} is the same problem as {seen[spec]!r}"
            )
        seen[spec] = text
    return list(seen)


def _methods(names: Sequence[str]) -> list[str]:
    """The methods, each known and listed once."""
    if not names:
        raise SettingsError("methods must name at least one method")
    for name in names:
        with _settings_error(""):
            registry.method(name, registry.RUNNABLE)
        if names.count(name) > 1:
            raise SettingsError(f"methods list {name!r} twice")
    return list(names)


def _check_options(options: dict[str, dict[str, Any]], methods: list[str]) -> None:
    """Every option is for a method of the run, and not one the bench sets itself."""
    for method, values in options.items():
        if method not in methods:
            raise SettingsError(
                f"options for {method!r}, which is not among the methods {methods}: "
                "add the method or drop its options"
            )
        if not isinstance(values, dict):
            raise SettingsError(f"options for {method!r} must be a dict; got {values!r}")
        for key in values:
            if key in BENCH_SET_OPTIONS:
                raise SettingsError(
                    f"option {method}.{key}: the bench sets {key} itself (from its budget, "
                    "seeds and workers)"
                )


class _FirstEvaluationError(Exception):
    """Raised by the dry run's black box: the method got as far as evaluating."""


def _stop(x: torch.Tensor) -> float:
    """The dry run's black box: it never returns."""
    raise _FirstEvaluationError


def dry_run(cell: Cell, settings: BenchSettings) -> None:
    """Start ``cell``'s method as :func:`run_cell` would, and stop at its first evaluation.

    Nothing is evaluated: the black box raises when it is first called. What
    fails before that (options that do not resolve or that the method rejects,
    a budget too small for one step, an unknown nevergrad optimizer, a library
    that is not installed) would fail every cell of the method.

    Raises:
        SettingsError: naming the method, the problem and the error.
    """
    problem = make_problem(cell)
    try:
        options = cell_options(cell, settings, problem)
        vg.minimize(
            _stop,
            problem.x0.double(),
            method=minimize_method(cell.method),
            budget=settings.budget,
            seed=cell.seed,
            progress=False,
            **pinned(cell.method, options),
        )
    except ImportError as error:
        raise SettingsError(f"method {cell.method!r} cannot run here: {error}") from error
    except Exception as error:  # what a cell would record as its failure
        if not _caused_by(error, _FirstEvaluationError):
            raise SettingsError(f"{cell.method} on {cell.spec}: {error}") from error


def _caused_by(error: BaseException | None, kind: type[BaseException]) -> bool:
    """Whether ``error`` or an exception it was raised from is a ``kind``."""
    while error is not None:
        if isinstance(error, kind):
            return True
        error = error.__cause__
    return False


def _check_writable(out: Path) -> None:
    """Create ``out/cells`` and write a file there, or raise naming ``out``."""
    try:
        (out / "cells").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out / "cells"):
            pass
    except OSError as error:
        raise SettingsError(
            f"out: cannot write to {str(out)!r} ({error.strerror or error})"
        ) from error


def pinned(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with ``lr_schedule=None`` unless they set one: the bench's lr is constant.

    Not ``vg.minimize``'s budget default (:mod:`voidgrad.optimize.defaults`),
    so that the bench's earlier reports replay; ``lr_decay`` decays it.
    ``auto`` is left to choose its own, as ``vg.minimize(method="auto")`` does.
    """
    if method == "auto":
        return options
    return {"lr_schedule": None, **options}


def cell_options(cell: Cell, settings: BenchSettings, problem: Any) -> dict[str, Any]:
    """The options ``vg.minimize`` gets for ``cell`` on ``problem`` (:func:`method_options`)."""
    return method_options(
        cell.method,
        problem_scale(problem),
        settings.budget,
        settings.options.get(cell.method, {}),
        problem.dim,
    )


def cell_identity(cell: Cell, settings: BenchSettings, options: dict[str, Any]) -> dict[str, Any]:
    """What defines a cell's result; a stored cell is reused only when all of it matches.

    The problem and its arguments, the method, the seed, the budget, the
    method's ``options`` as resolved for the problem (defaults included, so a
    changed default runs the cell again), the workers, and voidgrad's version.
    Workers do not change a gradient method's answer (the Evaluator's per-row
    seeds do not depend on them), but they set how many points a nevergrad
    optimizer asks for at once, and the wall time the report shows: a cell run
    with other workers is run again. Returned as read back from JSON.
    """
    identity = {
        "problem": cell.problem,
        "arguments": dict(cell.arguments),
        "method": cell.method,
        "seed": cell.seed,
        "budget": settings.budget,
        "workers": settings.workers,
        "options": _recorded(options),
        "voidgrad": vg.__version__,
    }
    return json.loads(json.dumps(identity))


def _recorded(options: dict[str, Any]) -> dict[str, Any]:
    """Options as a cell records them: numbers and strings as they are, the rest by repr."""
    return {k: v if isinstance(v, int | float | str) else repr(v) for k, v in options.items()}


def _is_optional(check: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda value: value is None or check(value)


def _is_list_of(check: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda value: isinstance(value, list) and all(check(v) for v in value)


_FINISHED_FIELDS: dict[str, tuple[str, Callable[[object], bool]]] = {
    "problem": ("a string", lambda v: isinstance(v, str)),
    "dim": ("an int", is_int),
    "method": ("a string", lambda v: isinstance(v, str)),
    "seed": ("an int", is_int),
    "budget": ("an int", is_int),
    "identity": ("a dict", lambda v: isinstance(v, dict)),
    "options": ("a dict", lambda v: isinstance(v, dict)),
    "error": ("null", lambda v: v is None),
    "threshold": ("a number", is_number),
    "optimum": ("a number", is_number),
    "start_loss": ("a number", is_number),
    "fun": ("a number", is_number),
    "last": ("a number", is_number),
    "answer": ("a number", is_number),
    "nevals": ("an int", is_int),
    "seconds": ("a number", is_number),
    "evals": ("a list of ints", _is_list_of(is_int)),
    "best": ("a list of numbers", _is_list_of(is_number)),
    "evals_to_threshold": ("an int or null", _is_optional(is_int)),
    "distance_to_target": ("a number or null", _is_optional(is_number)),
}
"""The fields of a finished cell's record that the report reads, and their JSON types."""


def load_cell(
    path: Path, cell: Cell, identity: dict[str, Any]
) -> tuple[dict[str, Any] | None, str]:
    """The finished record stored in ``path`` if it was run as ``identity`` says.

    Otherwise None and why not ("" when there is no file): a file that does not
    parse as JSON is unreadable; a record with a missing or mistyped field, or
    whose labels, budget or options disagree with its cell and its identity, is
    damaged; one run with other settings names the fields that differ. None of
    them is trusted.
    """
    if not path.exists():
        return None, ""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:  # UnicodeDecodeError and JSONDecodeError included
        return None, f"its file is unreadable ({type(error).__name__}: {error})"
    damage = _damage(record, cell)
    if damage:
        return None, f"its file is damaged ({damage})"
    changes = _differences(record["identity"], identity)
    if changes:
        return None, f"it ran with other settings ({'; '.join(changes)})"
    return record, ""


def _damage(record: object, cell: Cell) -> str:
    """What is wrong with a finished cell's record, or "" when nothing is."""
    if not isinstance(record, dict):
        return f"a JSON object was expected, got {type(record).__name__}"
    for name, (expected, check) in _FINISHED_FIELDS.items():
        if name not in record or not check(record[name]):
            return f"field {name!r} is missing or not {expected}"
    if len(record["evals"]) != len(record["best"]):
        return "fields 'evals' and 'best' differ in length"
    identity = record["identity"]
    agreed = {
        "problem": cell.problem_label,
        "method": cell.method,
        "seed": cell.seed,
        "budget": identity.get("budget"),
        "options": identity.get("options"),
    }
    for name, value in agreed.items():
        if record[name] != value:
            return f"field {name!r} is {record[name]!r}, not {value!r} as its cell says"
    return ""


def _differences(stored: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """``"key: stored -> now"`` for every field that differs, nested dicts by dotted key."""
    changes = []
    for key in sorted(stored.keys() | now.keys()):
        old, new = stored.get(key, "(none)"), now.get(key, "(none)")
        if isinstance(old, dict) and isinstance(new, dict):
            changes += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            changes.append(f"{prefix}{key}: {old!r} -> {new!r}")
    return changes


def run_cell(
    cell: Cell,
    settings: BenchSettings,
    problem: Any,
    options: dict[str, Any],
    identity: dict[str, Any],
    progress: bool = False,
) -> dict[str, Any]:
    """Run one cell on its ``problem`` with its resolved ``options``; failures are recorded.

    Failures go into ``error``, not raised. The record holds the cell's
    ``identity`` (:func:`cell_identity`). The start loss is evaluated inside
    the guard too: a black box that fails at ``x0`` is a failed cell, not a
    crashed benchmark. ``progress`` shows ``vg.minimize``'s progress bar
    (evaluations of the budget, best loss so far) on stderr.
    """
    backend = "process" if settings.workers > 1 else "serial"
    workers = settings.workers if settings.workers > 1 else None
    record: dict[str, Any] = {
        "problem": cell.problem_label,
        "dim": problem.dim,
        "method": cell.method,
        "seed": cell.seed,
        "budget": settings.budget,
        "options": identity["options"],
        "identity": identity,
        "threshold": problem.threshold,
        "optimum": problem.optimum,
        "start_loss": None,
    }
    start = time.perf_counter()
    try:
        record["start_loss"] = problem.loss(problem.x0)
        with vg.Evaluator(
            problem.loss, backend=backend, workers=workers, seed=cell.seed
        ) as evaluator:
            result = vg.minimize(
                evaluator,
                problem.x0.double(),
                method=minimize_method(cell.method),
                budget=settings.budget,
                seed=cell.seed,
                evaluator=evaluator,
                progress=progress,
                **pinned(cell.method, options),
            )
        last = problem.loss(result.x_last)  # scoring, outside the budget
    except Exception as error:  # a method that cannot run here is reported, not fatal
        record.update(error=f"{type(error).__name__}: {error}", seconds=time.perf_counter() - start)
        return record
    evals = result.history.column("evals")
    best = result.history.column("best")
    reached = next((e for e, b in zip(evals, best, strict=True) if b <= problem.threshold), None)
    distance = (
        None
        if problem.x_target is None
        else float((result.x.double() - problem.x_target.double()).norm())
    )
    record.update(
        error=None,
        fun=result.fun,
        last=last,
        answer=min(result.fun, last),
        nevals=result.nevals,
        seconds=time.perf_counter() - start,
        evals=evals,
        best=best,
        evals_to_threshold=reached,
        distance_to_target=distance,
        chosen=None if result.choice is None else result.choice.method,
    )
    return record


def run_bench(settings: BenchSettings, log: Any = print, progress: bool = False) -> dict[str, Any]:
    """Run (or resume) every cell, then write results.json, report.md and the plots.

    Every setting is checked first (:func:`plan`). A cell whose stored record
    was run as this run asks (:func:`load_cell`) is kept; any other stored file
    is run again, and the log says why. Finished cells are written as they
    finish; failed ones are recorded in the results and the report, not
    written, so they run again next time. ``progress`` shows a progress bar
    per cell that runs (:func:`run_cell`); ``log`` gets one line per cell.

    Raises:
        SettingsError: a setting that cannot run, before any cell has run.
    """
    cells = plan(settings)
    folder = settings.out / "cells"
    records = []
    for number, cell in enumerate(cells, 1):
        prefix = f"[{number}/{len(cells)}] {cell.key}"
        path = folder / f"{cell.key}.json"
        problem = make_problem(cell)
        options = cell_options(cell, settings, problem)
        identity = cell_identity(cell, settings, options)
        stored, why = load_cell(path, cell, identity)
        if stored is not None:
            records.append(stored)
            log(f"{prefix}: done before, kept")
            continue
        if why:
            log(f"{prefix}: {why}; running it again")
        record = run_cell(cell, settings, problem, options, identity, progress)
        if record["error"] is None:  # a failed cell is tried again next time
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(record))
            temporary.replace(path)
        records.append(record)
        outcome = record["error"] or (
            f"answer {record['answer']:.4g} (best evaluated {record['fun']:.4g}) "
            f"in {record['seconds']:.1f} s"
        )
        log(f"{prefix}: {outcome}")
    results = {
        "settings": {
            "problems": settings.problems,
            "methods": settings.methods,
            "budget": settings.budget,
            "seeds": settings.seeds,
            "workers": settings.workers,
            "options": settings.options,
        },
        "machine": _machine(),
        "cells": records,
    }
    # default=str: a scale-relative option is written as typed ("0.02s")
    (settings.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (settings.out / "report.md").write_text(format_report(results))
    plot_curves(results, settings.out)
    return results


def _machine() -> dict[str, Any]:
    import os
    import platform

    return {
        "voidgrad": vg.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _by_problem(cells: list[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for cell in cells:
        grouped.setdefault(cell["problem"], {}).setdefault(cell["method"], []).append(cell)
    return grouped


def format_report(results: dict[str, Any]) -> str:
    """The Markdown report: one table per problem."""
    settings = results["settings"]
    machine = results["machine"]
    lines = [
        "# voidgrad bench",
        "",
        f"Budget {settings['budget']} evaluations per run, {settings['seeds']} seeds, "
        f"{settings['workers']} worker(s); {machine['platform']}, {machine['cpus']} CPUs, "
        f"torch {machine['torch']}, {machine['date']}.",
        "",
        "Answer = the loss of the better of the method's two answers: its final iterate "
        "or recommendation x_last (scored by one evaluation outside the budget) and the "
        "best point it evaluated; median over seeds and [min, max]. Best evaluated = the "
        "lowest loss among the budgeted evaluations alone (for smoothing-type methods these "
        "are perturbed points, never the iterate). To threshold = evaluations until the best "
        "evaluated loss first reached the problem's threshold (median over the seeds that "
        "reached it, and how many did). Answer / start = (answer − optimum)/(start loss − "
        "optimum), comparable across seeds whose problems differ; the start loss in each "
        "heading is seed 0's.",
    ]
    for problem, methods in _by_problem(results["cells"]).items():
        lines += [
            "",
            _heading(problem, methods),
            "",
            "| method | answer (median) | [min, max] | answer / start (median) "
            "| best evaluated (median) | to threshold | wall s (median) |",
            "|---|---|---|---|---|---|---|",
        ]
        for method, cells in methods.items():
            done = [c for c in cells if c["error"] is None]
            if not done:
                lines.append(f"| {method} | error: {cells[0]['error']} | | | | | |")
                continue
            failed = len(cells) - len(done)
            label = f"{method} ({failed} of {len(cells)} seeds failed)" if failed else method
            label += _chosen(done)
            answers = [c["answer"] for c in done]
            reached = [c["evals_to_threshold"] for c in done if c["evals_to_threshold"] is not None]
            to_threshold = (
                f"{statistics.median(reached):.0f} ({len(reached)}/{len(done)})"
                if reached
                else f"never (0/{len(done)})"
            )
            lines.append(
                f"| {label} | {statistics.median(answers):.4g} | "
                f"[{min(answers):.4g}, {max(answers):.4g}] | "
                f"{statistics.median(_relative(c) for c in done):.3g} | "
                f"{statistics.median(c['fun'] for c in done):.4g} | {to_threshold} | "
                f"{statistics.median(c['seconds'] for c in done):.2f} |"
            )
        if len(methods) > 1 and settings["seeds"] > 1:
            lines += _paired_lines(methods)
    failures = [c for c in results["cells"] if c["error"] is not None]
    if failures:
        lines += [
            "",
            "## Failed cells",
            "",
            "Left out of the tables above; run again next time.",
            "",
        ]
        lines += [
            f"- {c['problem']}, {c['method']}, seed {c['seed']}: {c['error']}" for c in failures
        ]
    return "\n".join(lines) + "\n"


def _chosen(cells: list[dict[str, Any]]) -> str:
    """`` (chose annealing)`` for ``auto``'s cells, with counts when seeds chose differently."""
    chosen = [c["chosen"] for c in cells if c.get("chosen") is not None]
    if not chosen:
        return ""
    counts = {name: chosen.count(name) for name in dict.fromkeys(chosen)}
    if len(counts) == 1:
        return f" (chose {chosen[0]})"
    return " (chose " + ", ".join(f"{name} {n}×" for name, n in counts.items()) + ")"


def _heading(problem: str, methods: dict[str, list[dict[str, Any]]]) -> str:
    """A problem's heading, from its first cell whose start loss was measured."""
    cells = [cell for group in methods.values() for cell in group]
    first = next((c for c in cells if c.get("start_loss") is not None), cells[0])
    start = "–" if first.get("start_loss") is None else f"{first['start_loss']:.4g}"
    return (
        f"## {problem} (d = {first['dim']}, start loss {start}, "
        f"optimum {first['optimum']:.4g}, threshold {first['threshold']:.4g})"
    )


@dataclass(frozen=True)
class Paired:
    """Method A against method B seed by seed (same instance and start on each seed).

    ``log_ratios`` are log10((answer_A − optimum)/(answer_B − optimum)) per seed, empty
    when some seed has a gap of 0 (both solved exactly: no ratio).
    """

    seeds: int
    better: int
    worse: int
    log_ratios: tuple[float, ...]

    @property
    def mean_log_ratio(self) -> float:
        return statistics.fmean(self.log_ratios) if self.log_ratios else float("nan")

    @property
    def standard_error(self) -> float:
        if len(self.log_ratios) < 2:
            return float("nan")
        return statistics.stdev(self.log_ratios) / math.sqrt(len(self.log_ratios))


def paired(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> Paired:
    """Compare two methods' finished cells of one problem on the seeds both finished."""
    gaps_first = {c["seed"]: c["answer"] - c["optimum"] for c in first if c["error"] is None}
    gaps_second = {c["seed"]: c["answer"] - c["optimum"] for c in second if c["error"] is None}
    pairs = [(gaps_first[s], gaps_second[s]) for s in sorted(gaps_first.keys() & gaps_second)]
    positive = all(a > 0 and b > 0 for a, b in pairs)
    return Paired(
        seeds=len(pairs),
        better=sum(a < b for a, b in pairs),
        worse=sum(a > b for a, b in pairs),
        log_ratios=tuple(math.log10(a / b) for a, b in pairs) if positive else (),
    )


def _paired_lines(methods: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The report's seed-by-seed table: the first method against each other one."""
    (first, first_cells), *others = methods.items()
    lines = [
        "",
        f"Seed by seed, `{first}` against each method (the same instance and start on a "
        "seed; mean log10 of the answers' gaps to the optimum, ± its standard error):",
        "",
        f"| method | seeds | `{first}` better / worse | mean log10({first} / method) |",
        "|---|---|---|---|",
    ]
    for method, cells in others:
        comparison = paired(first_cells, cells)
        ratio = (
            f"{comparison.mean_log_ratio:+.3f} ± {comparison.standard_error:.3f}"
            if comparison.log_ratios
            else "–"
        )
        lines.append(
            f"| {method} | {comparison.seeds} | {comparison.better} / {comparison.worse} "
            f"| {ratio} |"
        )
    return lines


def _relative(cell: dict[str, Any]) -> float:
    """(answer − optimum)/(start − optimum): below 1 is progress, comparable across seeds."""
    gap = cell["start_loss"] - cell["optimum"]
    return (cell["answer"] - cell["optimum"]) / gap if gap > 0 else float("nan")


def plot_curves(results: dict[str, Any], out: Path) -> list[Path]:
    """One PNG per problem (:func:`curve_figure`); none without matplotlib."""
    try:
        import matplotlib.figure  # noqa: F401 (only whether it is installed)
    except ImportError:
        return []
    paths = []
    for problem, methods in _by_problem(results["cells"]).items():
        path = out / f"{problem}.png"
        curve_figure(problem, methods).savefig(path, dpi=110)
        paths.append(path)
    return paths


def curve_figure(problem: str, methods: dict[str, list[dict[str, Any]]]) -> Figure:
    """Best loss − optimum against evaluations, one line per finished cell, log-log.

    The gaps are drawn as they are. A gap of exactly 0 (the optimum reached),
    or below it, has no place on a log axis; then the y axis is symmetric-log:
    linear within ±t about 0 and logarithmic beyond, with t the smallest
    positive gap drawn rounded down to a power of 10 (1 when there is none; at
    least 1e-300), and its label says so; when no gap is below 0, the axis
    ends just below 0.

    Uses matplotlib's object-oriented API, whose PNG output goes through Agg:
    no display and no pyplot state.

    Args:
        problem: the problem's label, for the title.
        methods: the problem's cells by method, as in ``results["cells"]``.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), layout="tight")
    axes = figure.add_subplot()
    drawn: list[float] = []
    for index, (method, cells) in enumerate(methods.items()):
        colour = f"C{index % 10}"
        for number, cell in enumerate(c for c in cells if c["error"] is None):
            gaps = [b - cell["optimum"] for b in cell["best"]]
            drawn += gaps
            axes.plot(
                cell["evals"],
                gaps,
                color=colour,
                alpha=0.8,
                label=method if number == 0 else None,
                linewidth=1.2,
            )
    axes.set_xscale("log")
    label = "best loss − optimum"
    if drawn and min(drawn) <= 0:
        smallest = min((gap for gap in drawn if gap > 0), default=1.0)
        # matplotlib's symlog transform overflows for a linear region near float64's floor
        threshold = max(10.0 ** math.floor(math.log10(smallest)), 1e-300)
        axes.set_yscale("symlog", linthresh=threshold)
        if min(drawn) == 0:  # nothing below 0: a sliver of it keeps 0's lines off the frame
            axes.set_ylim(bottom=-threshold / 4)
        label += f" (linear within ±{threshold:.0e}, log beyond)"
    else:
        axes.set_yscale("log")
    axes.set_xlabel("evaluations")
    axes.set_ylabel(label)
    axes.set_title(f"{problem}: best loss so far (each seed)")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)
    return figure
