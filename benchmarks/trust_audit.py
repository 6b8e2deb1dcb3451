"""Trust audit: bad inputs, numerical traps and malicious files against every public entry point.

Measures the table that the "Trust" issue asks for: for each public entry point
(``vg.minimize`` and its checkpoints, ``vg.blackbox`` and the black-box
estimators, ``vg.expectation`` and the distribution estimators, ``vg.Evaluator``
per backend, ``vg.rl.train``, ``vg.meta.MetaLearner``, ``vg.problems.make``,
``voidgrad bench``, ``vg.adversarial``), how many of the inputs tried end in

``clear error``
    a ValueError, TypeError, OSError, ImportError or an exception class defined
    by voidgrad whose message contains the word(s) the case declares: the
    offending argument, or the file's name;
``warning``
    a warning whose message contains those words, for a *trap*: an input that
    is legal but gives a useless answer (a perturbation below the float
    resolution);
``correct``
    the answer of a legal input agrees with a truth the case computes
    independently (a closed form, an exact enumeration, a fresh run, the
    function re-evaluated at the returned point);
``silent wrong``
    an answer that differs from the truth, or an input that should have been
    refused and was accepted;
``raw traceback``
    any other exception (KeyError, EOFError, a torch RuntimeError from deep
    inside, an error whose message does not name the argument or file), a
    crash, or a hang past ``--timeout``;
``code ran``
    a malicious file made the loader run code: the marker file that the
    planted ``__reduce__`` creates exists afterwards.

Each case runs in its own forked process (its own process group, killed after
``--timeout`` seconds), ``--jobs`` at a time, with ``OMP_NUM_THREADS=1``. The
cases use only the public API that the audited versions share, so the same
script measures an old tree and a new one::

    PYTHONPATH=/tmp/vg-before/src .venv/bin/python benchmarks/trust_audit.py --out /tmp/audit-before
    .venv/bin/python benchmarks/trust_audit.py --out /tmp/audit-after
    .venv/bin/python benchmarks/trust_audit.py --compare /tmp/audit-before/trust_audit.json \
        /tmp/audit-after/trust_audit.json --out /tmp/audit-compare

``--src DIR`` puts DIR first on ``sys.path`` instead of PYTHONPATH; the
voidgrad actually imported is printed and recorded (``voidgrad_file``).
``--ray`` adds the Ray cases (they start a local Ray runtime), ``--only WORD``
runs the cases whose id or entry point contains WORD, ``--list`` lists them.

Output in ``--out``: ``trust_audit.md`` (a table per entry point, the total,
and every case with its outcome and evidence) and ``trust_audit.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TQDM_DISABLE", "1")

import argparse
import contextlib
import datetime
import functools
import io
import ipaddress
import json
import math
import pickle
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributions import (
    Bernoulli,
    Beta,
    Independent,
    LowRankMultivariateNormal,
    MultivariateNormal,
    Normal,
    Uniform,
)

vg: Any = None  # voidgrad, imported in main() after --src is applied

OUTCOMES = ("clear error", "warning", "correct", "silent wrong", "raw traceback", "code ran")
KINDS = ("refuse", "check", "trap", "malicious")
Words = tuple[str | tuple[str, ...], ...]


# -- the case registry -------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What a case that returned normally found: whether its answer matches the truth, and why."""

    ok: bool
    detail: str


@dataclass
class Context:
    """Per-case scratch: a private folder, the marker a malicious payload creates, extra words."""

    tmp: Path
    extra_words: list[str | tuple[str, ...]] = field(default_factory=list)

    @property
    def marker(self) -> Path:
        return self.tmp / "CODE_RAN_MARKER"

    def expect(self, *words: str | tuple[str, ...]) -> None:
        """Add words an error message must contain (e.g. a file name known only at run time)."""
        self.extra_words.extend(words)


@dataclass(frozen=True)
class Case:
    """One input tried against one entry point.

    ``kind``: ``refuse`` (bad input: accepted means silent wrong), ``check``
    (legal input or a failure to name: ``run`` returns a :class:`Verdict`),
    ``trap`` (legal but useless: a warning naming ``words`` is the right
    answer, a Verdict judges the value otherwise), ``malicious`` (a planted
    file: the marker decides "code ran"). An exception is a clear error when
    its type is acceptable and its message contains every group of
    ``words`` (a group is a word or a tuple of alternatives).
    """

    entry: str
    name: str
    description: str
    kind: str
    words: Words
    run: Callable[[Context], Any]
    item: int | None = None
    ray: bool = False
    #: names of further exception types that count as clear (a library's own named error)
    accept: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.entry} :: {self.name}"


CASES: list[Case] = []


def add(
    entry: str,
    name: str,
    description: str,
    kind: str,
    words: Words,
    run: Callable[[Context], Any],
    item: int | None = None,
    ray: bool = False,
    accept: tuple[str, ...] = (),
) -> None:
    assert kind in KINDS, kind
    assert kind == "check" or words or kind == "malicious", name
    CASES.append(Case(entry, name, description, kind, tuple(words), run, item, ray, accept))


def case(entry: str, name: str, description: str, kind: str, words: Words = (), **kw: Any):
    """Decorator form of :func:`add`."""

    def register(run: Callable[[Context], Any]) -> Callable[[Context], Any]:
        add(entry, name, description, kind, words, run, **kw)
        return run

    return register


# -- shared helpers for the cases ----------------------------------------------------------------


def quad(x: torch.Tensor) -> float:
    """Σ (x − 3)²: a deterministic scalar black box (row → float)."""
    return float(((x - 3.0) ** 2).sum())


def quad_other(x: torch.Tensor) -> float:
    """Another deterministic black box, 10 Σ (x + 5)², for the other-run checkpoint cases."""
    return 10.0 * float(((x + 5.0) ** 2).sum())


def quad_batch(X: torch.Tensor) -> torch.Tensor:
    return ((X - 3.0) ** 2).sum(1)


def scaled(x: torch.Tensor, k: float) -> float:
    return k * float(x.sum())


def use_estimator(estimator: Any, fn: Callable[..., Any] = quad, dtype=torch.float64) -> Any:
    """One blackbox forward and backward with ``estimator``; returns theta.grad."""
    theta = torch.tensor([1.0, 2.0], dtype=dtype, requires_grad=True)
    vg.blackbox(fn, estimator)(theta).sum().backward()  # sum: the harness adds no error of its own
    return theta.grad


def accepted(value: Any = None) -> str:
    """A short description of what an accepted bad input gave back."""
    text = repr(value)
    return "accepted; returned " + (text if len(text) < 120 else text[:117] + "...")


def same_result(a: Any, b: Any) -> bool:
    return bool(torch.equal(a.x, b.x)) and (a.fun == b.fun or (a.fun != a.fun and b.fun != b.fun))


def minimize_quiet(*args: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("progress", False)
    return vg.minimize(*args, **kwargs)


def z_check(estimates: torch.Tensor, truth: torch.Tensor, z: float = 5.0) -> Verdict:
    """Mean of K independent estimates [K, p] against truth [p], within z standard errors."""
    estimates = estimates.double()
    truth = truth.double().reshape(-1)
    estimates = estimates.reshape(estimates.shape[0], -1)
    mean = estimates.mean(0)
    se = estimates.std(0) / math.sqrt(estimates.shape[0])
    gap = (mean - truth).abs()
    ok = bool((gap <= z * se + 1e-9 + 1e-9 * truth.abs()).all())
    worst = float((gap / (se + 1e-300)).max())
    return Verdict(
        ok,
        f"mean {[round(v, 4) for v in mean.tolist()]} vs truth "
        f"{[round(v, 4) for v in truth.tolist()]}, worst |z| = {worst:.3g} (limit {z})",
    )


def tensor_close(value: torch.Tensor, truth: torch.Tensor, rtol: float, what: str) -> Verdict:
    value = value.detach().double().reshape(-1)
    truth = truth.double().reshape(-1)
    ok = bool(torch.allclose(value, truth, rtol=rtol, atol=rtol))
    return Verdict(ok, f"{what} {value.tolist()} vs truth {truth.tolist()}")


class Payload:
    """A pickle that creates ``path`` when unpickled (``open(path, "w")``): the planted code."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.path, "w"))


def plant_pickle_file(path: Path, marker: Path, how: str) -> None:
    """Write a file whose loading with a full unpickler creates ``marker``."""
    if how == "torch.save":
        torch.save({"format": 1, "payload": Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"format": 1, "payload": Payload(marker)}))


def tamper_byte_tensors(path: Path, marker: Path) -> list[str]:
    """Replace every uint8 tensor of a real checkpoint by a pickle that creates ``marker``.

    uint8 tensors are the opaque blobs (a serialized optimizer state); if the
    checkpoint has none, one is added under ``adapter``. Returns the keys changed.
    """
    state = torch.load(path, weights_only=True)
    blob = torch.frombuffer(bytearray(pickle.dumps(Payload(marker))), dtype=torch.uint8).clone()
    changed: list[str] = []

    def walk(node: Any, prefix: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, f"{prefix}.{k}") for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, f"{prefix}[{i}]") for i, v in enumerate(node)]
        if isinstance(node, torch.Tensor) and node.dtype == torch.uint8:
            changed.append(prefix.lstrip("."))
            return blob.clone()
        return node

    state = walk(state, "")
    if not changed and isinstance(state, dict):
        state["adapter"] = blob
        changed.append("adapter (added)")
    torch.save(state, path)
    return changed


def damage(path: Path, how: str, source: Path | None = None) -> None:
    """Make ``path`` a damaged checkpoint: empty, truncated (half of ``source``), garbage, ..."""
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        assert source is not None
        data = source.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    elif how == "text":
        path.write_text('{"format": 1, "method": "smoothing"}\n')
    elif how == "not a dict":
        torch.save([1, 2, 3], path)
    elif how == "dict without format":
        torch.save({"theta": torch.zeros(2)}, path)
    elif how == "a directory":
        path.mkdir()
    else:
        raise AssertionError(how)


DAMAGES = ("empty", "truncated", "garbage", "text", "not a dict", "dict without format")


# ================================================================================================
# GaussianSmoothing, SPSA, FiniteDifferences, ZeroGrads: constructors, used once through blackbox
# ================================================================================================

BAD_NUMBERS = [
    ("0", 0),
    ("-1", -1.0),
    ("nan", float("nan")),
    ("inf", float("inf")),
    ("True", True),
    ("str '0.1'", "0.1"),
    ("None", None),
    ("complex 0.1+0j", 0.1 + 0j),
]
BAD_COUNTS = [("0", 0), ("-2", -2), ("float 2.0", 2.0), ("True", True), ("str '8'", "8")]
BAD_SEEDS = [("-1", -1), ("float 1.5", 1.5), ("True", True), ("str '0'", "0"), ("2**64", 2**64)]


def _constructor_sweep(
    entry: str, build: Callable[..., Any], items: list[tuple[str, list[tuple[str, Any]]]]
) -> None:
    for argument, values in items:
        for label, value in values:

            def run(ctx: Context, argument=argument, value=value) -> str:
                return accepted(use_estimator(build(**{argument: value})))

            add(
                entry,
                f"{argument}={label}",
                f"{entry.split('.')[-1]}({argument}={label}), then one blackbox step",
                "refuse",
                (argument,),
                run,
                item=8 if argument == "seed" else None,
            )


_constructor_sweep(
    "vg.GaussianSmoothing",
    lambda **kw: vg.GaussianSmoothing(**{"sigma": 0.1, "samples": 4, **kw}),
    [
        ("sigma", BAD_NUMBERS),
        ("samples", [*BAD_COUNTS, ("odd 3 (antithetic)", 3)]),
        ("antithetic", [("str 'False'", "False")]),
        ("importance", [("str 'no'", "no")]),
        ("schedule", [("str 'linear'", "linear")]),
        ("seed", BAD_SEEDS),
    ],
)
_constructor_sweep(
    "vg.SPSA",
    lambda **kw: vg.SPSA(**{"c": 0.1, "samples": 2, **kw}),
    [
        ("c", BAD_NUMBERS),
        ("samples", [*BAD_COUNTS, ("odd 3", 3)]),
        ("seed", BAD_SEEDS[:2]),
    ],
)
_constructor_sweep(
    "vg.FiniteDifferences",
    lambda **kw: vg.FiniteDifferences(**{"h": 1e-3, **kw}),
    [
        ("h", BAD_NUMBERS),
        ("scheme", [("'backward'", "backward"), ("'Central'", "Central"), ("None", None)]),
        ("seed", BAD_SEEDS[:2]),
    ],
)
_constructor_sweep(
    "vg.ZeroGrads",
    lambda **kw: vg.ZeroGrads(**{"sigma": 0.1, "samples": 4, **kw}),
    [
        ("sigma", BAD_NUMBERS[:5]),
        ("samples", [("0", 0), ("odd 3", 3), ("True", True)]),
        ("fit_steps", [("-1", -1), ("float 1.5", 1.5)]),
        ("surrogate_lr", [("0", 0), ("-1", -1.0), ("nan", float("nan")), ("inf", float("inf"))]),
        ("inner_sigma", [("-1", -1.0), ("nan", float("nan"))]),
        ("replay", [("-1", -1)]),
        ("frame", [("'foo'", "foo")]),
        ("width", [("0", 0)]),
        ("depth", [("0", 0)]),
        ("encoding_levels", [("-1", -1)]),
        ("activation", [("'foo'", "foo")]),
        ("rank", [("0", 0)]),
        ("input_scale", [("0", 0.0), ("-1", -1.0)]),
        ("control_scale", [("nan", float("nan"))]),
        ("surrogate", [("str", "net")]),
        ("seed", BAD_SEEDS[:2]),
    ],
)


def _trap_zero_difference(
    entry: str, name: str, description: str, argument: str, build: Callable[[], Any], dtype
) -> None:
    def run(ctx: Context) -> Verdict:
        grad = use_estimator(build(), dtype=dtype)
        truth = 2 * (torch.tensor([1.0, 2.0]) - 3.0)  # ∇ Σ (x − 3)²
        close = tensor_close(grad, truth, 0.5, "gradient")
        return Verdict(close.ok, close.detail)

    add(entry, name, description, "trap", (argument,), run, item=8)


_trap_zero_difference(
    "vg.GaussianSmoothing",
    "sigma=1e-300 (float64)",
    "sigma=1e-300 on float64 theta: every perturbation vanishes, the gradient is 0",
    "sigma",
    lambda: vg.GaussianSmoothing(1e-300, 8, seed=0),
    torch.float64,
)
_trap_zero_difference(
    "vg.GaussianSmoothing",
    "sigma=1e-30 (float32)",
    "sigma=1e-30 on float32 theta: every perturbation vanishes, the gradient is 0",
    "sigma",
    lambda: vg.GaussianSmoothing(1e-30, 8, seed=0),
    torch.float32,
)
_trap_zero_difference(
    "vg.SPSA",
    "c=1e-300 (float64)",
    "c=1e-300 on float64 theta: every perturbation vanishes, the gradient is 0",
    "c",
    lambda: vg.SPSA(1e-300, 8, seed=0),
    torch.float64,
)
_trap_zero_difference(
    "vg.FiniteDifferences",
    "h=1e-30 (float64)",
    "h=1e-30 on float64 theta: every difference is 0",
    "h",
    lambda: vg.FiniteDifferences(1e-30),
    torch.float64,
)


@case(
    "vg.FiniteDifferences",
    "float16 step actually taken",
    "central differences of f(x) = Σx (slope 1, summed in float64: a sum in float16 would round"
    " F itself) at float16 theta = [1, 2], h = 1e-3",
    "trap",
    (("float16", "dtype", "h", "step"),),
    item=8,
)
def _fd_float16(ctx: Context) -> Verdict:
    theta = torch.tensor([1.0, 2.0], dtype=torch.float16, requires_grad=True)
    vg.blackbox(lambda x: float(x.double().sum()), vg.FiniteDifferences(1e-3))(theta).backward()
    return tensor_close(theta.grad, torch.ones(2), 2e-3, "gradient")


@case(
    "vg.FiniteDifferences",
    "exact on a quadratic (legal)",
    "central differences of Σ(x − 3)² in float64: exact",
    "check",
)
def _fd_exact(ctx: Context) -> Verdict:
    grad = use_estimator(vg.FiniteDifferences(1e-3))
    return tensor_close(grad, torch.tensor([-4.0, -2.0]), 1e-6, "gradient")


@case(
    "vg.GaussianSmoothing",
    "unbiased on a quadratic (legal)",
    "plain Gaussian smoothing of Σ(x − 3)² (= true gradient), 200 seeded estimates, z-test",
    "check",
)
def _gs_unbiased(ctx: Context) -> Verdict:
    grads = [use_estimator(vg.GaussianSmoothing(0.3, 8, seed=s)) for s in range(200)]
    return z_check(torch.stack(grads), torch.tensor([-4.0, -2.0]))


@case(
    "vg.ZeroGrads",
    "vector output",
    "ZeroGrads on a black box that returns a vector",
    "refuse",
    ("scalar",),
)
def _zerograds_vector(ctx: Context) -> str:
    return accepted(use_estimator(vg.ZeroGrads(0.1, 4, seed=0), fn=lambda x: x * 2))


# ================================================================================================
# vg.blackbox
# ================================================================================================

BB = "vg.blackbox"


def _bb_theta(value: Any) -> Callable[[Context], str]:
    def run(ctx: Context) -> str:
        return accepted(vg.blackbox(quad, vg.FiniteDifferences(1e-3))(value()))

    return run


for _label, _value in [
    ("int tensor", lambda: torch.tensor([1, 2])),
    ("list", lambda: [1.0, 2.0]),
    ("3-d", lambda: torch.zeros(2, 2, 2)),
    ("empty [0]", lambda: torch.zeros(0)),
    ("shape [2, 0]", lambda: torch.zeros(2, 0)),
    ("NaN", lambda: torch.tensor([float("nan"), 1.0])),
    ("inf", lambda: torch.tensor([float("inf"), 1.0])),
    ("complex", lambda: torch.tensor([1 + 1j, 2 + 0j])),
]:
    add(
        BB,
        f"theta {_label}",
        f"bb(theta) with theta = {_label}",
        "refuse",
        ("theta",),
        _bb_theta(_value),
    )


for _label, _estimator in [
    ("vg.ScoreFunction()", lambda: vg.ScoreFunction()),
    ("the class vg.GaussianSmoothing", lambda: vg.GaussianSmoothing),
    ("None", lambda: None),
]:

    def _run(ctx: Context, build=_estimator) -> str:
        return accepted(vg.blackbox(quad, build()))

    add(
        BB,
        f"estimator={_label}",
        f"vg.blackbox(fn, estimator={_label})",
        "refuse",
        ("estimator",),
        _run,
    )


@case(
    BB,
    "evaluator of another fn",
    "vg.blackbox(f, est, evaluator=Evaluator(g))",
    "refuse",
    ("evaluator",),
)
def _bb_other_evaluator(ctx: Context) -> str:
    return accepted(vg.blackbox(quad, vg.SPSA(0.1), evaluator=vg.Evaluator(quad_other)))


@case(
    BB,
    "evaluator not an Evaluator",
    "vg.blackbox(f, est, evaluator='serial')",
    "refuse",
    ("evaluator",),
)
def _bb_evaluator_str(ctx: Context) -> str:
    return accepted(vg.blackbox(quad, vg.SPSA(0.1), evaluator="serial"))


@case(BB, "fn not callable", "vg.blackbox(3, est), then a step", "refuse", (("fn", "callable"),))
def _bb_fn_int(ctx: Context) -> str:
    return accepted(use_estimator(vg.SPSA(0.1), fn=3))


#: What a per-row black box may wrongly return, and the words its refusal must contain.
BAD_ROW_OUTPUTS: list[tuple[str, Callable[[torch.Tensor], Any], Words]] = [
    ("bool", lambda x: bool(x.sum() > 0), ("bool",)),
    ("an empty tensor", lambda x: torch.empty(0), (("empty", "shape", "size"),)),
    (
        "a NumPy object array",
        lambda x: np.array([float(x.sum())], dtype=object),
        (("fn", "black box", "return"), "object"),
    ),
    ("None", lambda x: None, (("fn", "black box"), "None")),
    ("a str", lambda x: "1.0", (("fn", "black box"), "str")),
    ("complex", lambda x: complex(float(x.sum()), 1.0), ("complex",)),
]

for _label, _fn, _words in BAD_ROW_OUTPUTS:

    def _run(ctx: Context, fn=_fn) -> str:
        return accepted(use_estimator(vg.GaussianSmoothing(0.1, 4, seed=0), fn=fn))

    add(
        BB,
        f"fn returns {_label}",
        f"a black box that returns {_label}",
        "refuse",
        _words,
        _run,
        item=8,
    )


@case(
    BB,
    "fn mutates its input (smoothing)",
    "f(x) evaluates, then x.mul_(0).add_(123): gradient and value equal those of a pure f",
    "check",
    item=4,
)
def _bb_mutates(ctx: Context) -> Verdict:
    def mutating(x: torch.Tensor) -> float:
        value = quad(x)
        x.mul_(0).add_(123)
        return value

    results = []
    for fn in (quad, mutating):
        theta = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
        value = vg.blackbox(fn, vg.GaussianSmoothing(0.1, 8, seed=0))(theta)
        value.backward()
        results.append((float(value), theta.grad.clone(), theta.detach().clone()))
    (v0, g0, t0), (v1, g1, t1) = results
    ok = v0 == v1 and torch.equal(g0, g1) and torch.equal(t0, t1)
    return Verdict(
        ok,
        f"pure: value {v0:.6g} grad {g0.tolist()}; mutating: {v1:.6g} {g1.tolist()}, "
        f"theta {t1.tolist()}",
    )


# ================================================================================================
# vg.Evaluator, per backend
# ================================================================================================


def _ev_call(backend: str, fn: Callable[..., Any], X: Any = None, **kwargs: Any) -> Any:
    X = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64) if X is None else X
    with vg.Evaluator(fn, backend=backend, **kwargs) as ev:
        return ev(X)


def _evaluator_sweeps(backend: str) -> None:
    entry = f"vg.Evaluator ({backend})"
    pooled = backend in ("process", "ray")
    ray = backend == "ray"
    options: list[tuple[str, str, dict[str, Any], Words]] = [
        ("budget=0", "budget", {"budget": 0}, ("budget",)),
        ("budget=-1", "budget", {"budget": -1}, ("budget",)),
        ("budget=1.5", "budget", {"budget": 1.5}, ("budget",)),
        ("budget=True", "budget", {"budget": True}, ("budget",)),
        ("budget='10'", "budget", {"budget": "10"}, ("budget",)),
        ("on_error='ignore'", "on_error", {"on_error": "ignore"}, ("on_error",)),
        ("seed=-1", "seed", {"seed": -1}, ("seed",)),
        ("seed=1.5", "seed", {"seed": 1.5}, ("seed",)),
        ("seed=True", "seed", {"seed": True}, ("seed",)),
    ]
    if pooled:
        options += [
            ("workers=0", "workers", {"workers": 0}, ("workers",)),
            ("workers=-1", "workers", {"workers": -1}, ("workers",)),
            ("workers=1.5", "workers", {"workers": 1.5}, ("workers",)),
            ("workers=True", "workers", {"workers": True}, ("workers",)),
            ("timeout=0", "timeout", {"timeout": 0}, ("timeout",)),
            ("timeout=-1", "timeout", {"timeout": -1}, ("timeout",)),
            ("timeout=nan", "timeout", {"timeout": float("nan")}, ("timeout",)),
            ("timeout=True", "timeout", {"timeout": True}, ("timeout",)),
            ("retries=-1", "retries", {"retries": -1}, ("retries",)),
            ("retries=1.5", "retries", {"retries": 1.5}, ("retries",)),
            ("init=3", "init", {"init": 3}, ("init",)),
        ]
        if not ray:
            options.append(
                (
                    "ray_address with process",
                    "ray_address",
                    {"ray_address": "auto"},
                    ("ray_address",),
                )
            )
    else:
        options += [
            ("workers=2 (in-process)", "workers", {"workers": 2}, ("workers",)),
            ("timeout=1 (in-process)", "timeout", {"timeout": 1.0}, ("timeout",)),
            ("retries=1 (in-process)", "retries", {"retries": 1}, ("retries",)),
            ("init=print (in-process)", "init", {"init": print}, ("init",)),
        ]
    fn = quad_batch if backend == "vectorized" else quad
    for label, _argument, kwargs, words in options:
        workers = {} if not pooled or "workers" in kwargs else {"workers": 1}

        def run(ctx: Context, kwargs=kwargs, workers=workers) -> str:
            return accepted(_ev_call(backend, fn, **kwargs, **workers))

        add(
            entry,
            label,
            f"vg.Evaluator(fn, backend={backend!r}, {label})",
            "refuse",
            words,
            run,
            ray=ray,
        )

    pool = {"workers": 1} if pooled else {}

    for label, make_X, words in [
        ("X 0-d", lambda: torch.tensor(1.0), ("X",)),
        ("X with 0 rows", lambda: torch.zeros(0, 2), ("X",)),
        ("X of strings", lambda: ["a", "b"], ("X",)),
    ]:

        def run(ctx: Context, make_X=make_X) -> str:
            return accepted(_ev_call(backend, fn, make_X(), **pool))

        add(entry, label, f"ev(X) with {label}", "refuse", words, run, ray=ray)

    def seeded_row(x: torch.Tensor, seed: Any) -> Any:
        if backend == "vectorized":  # x is the batch, seed an int64 tensor [n]
            return x.sum(1) + 0.0 * seed.double()
        return float(x.sum()) + 0.0 * float(seed)

    for label, seeds, words in [
        ("seeds of the wrong length", [1, 2, 3], ("seeds",)),
        ("negative seeds", [-1, 5], ("seed",)),
        ("float seeds", [0.5, 1.5], ("seed",)),
    ]:

        def run(ctx: Context, seeds=seeds) -> str:
            X = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
            with vg.Evaluator(seeded_row, backend=backend, **pool) as ev:
                return accepted(ev(X, seeds))

        add(entry, label, f"ev(X, seeds) with {label}", "refuse", words, run, item=8, ray=ray)

    outputs = [
        *BAD_ROW_OUTPUTS,
        ("a list", lambda x: [float(x.sum())], (("fn", "black box"), "list")),
    ]
    if backend == "vectorized":
        outputs = [
            ("a bool tensor", lambda X: X.sum(1) > 4, ("bool",)),
            ("an empty tensor", lambda X: torch.empty(0), (("empty", "shape", "leading"),)),
            (
                "a NumPy object array",
                lambda X: np.array([1.0, 2.0], dtype=object),
                (("fn", "black box", "return"), "object"),
            ),
            ("one row too few", lambda X: X.sum(1)[:-1], (("leading", "rows", "shape"),)),
            ("a scalar", lambda X: X.sum(), (("leading", "rows", "shape"),)),
            ("None", lambda X: None, (("fn", "black box"), "None")),
            ("complex", lambda X: X.sum(1).to(torch.complex128), ("complex",)),
        ]
    for label, out, words in outputs:

        def run(ctx: Context, out=out) -> str:
            return accepted(_ev_call(backend, out, **pool))

        add(
            entry,
            f"fn returns {label}",
            f"a black box that returns {label}",
            "refuse",
            words,
            run,
            item=8,
            ray=ray,
        )

    if backend != "vectorized":

        def changes_shape(x: torch.Tensor) -> Any:
            return float(x.sum()) if x[0] < 2 else torch.ones(3)

        add(
            entry,
            "fn changes output shape",
            "row 0 returns a float, row 1 a [3] tensor",
            "refuse",
            ("shape",),
            lambda ctx: accepted(_ev_call(backend, changes_shape, **pool)),
            ray=ray,
        )

    nan_fn = (
        (lambda X: X.sum(1) * float("nan")) if backend == "vectorized" else (lambda x: float("nan"))
    )
    add(
        entry,
        "fn returns NaN (on_error='raise')",
        "a failure to name: non-finite output",
        "refuse",
        ("non-finite",),
        lambda ctx: accepted(_ev_call(backend, nan_fn, **pool)),
        ray=ray,
    )

    def raises(x: torch.Tensor) -> float:
        raise ValueError("renderer exploded")

    add(
        entry,
        "fn raises",
        "a failure to name: fn raises ValueError('renderer exploded')",
        "refuse",
        ("renderer exploded", "row"),
        lambda ctx: accepted(_ev_call(backend, raises, **pool)),
        ray=ray,
    )

    @case(
        entry,
        "budget exceeded",
        "a failure to name: 3 rows with budget=2",
        "refuse",
        ("budget",),
        ray=ray,
    )
    def _budget(ctx: Context) -> str:
        X = torch.zeros(3, 2, dtype=torch.float64)
        return accepted(_ev_call(backend, fn, X, budget=2, **pool))

    @case(
        entry,
        "fn mutates its input",
        "fn evaluates, then zeroes its argument in place: "
        "the caller's X is unchanged and outputs are the pure fn's",
        "check",
        (("in-place", "in place", "modif", "mutat", "read-only"),),
        item=4,
        ray=ray,
    )
    def _mutates(ctx: Context) -> Verdict:
        if backend == "vectorized":

            def mutating(X: torch.Tensor) -> torch.Tensor:
                value = quad_batch(X).clone()
                X.mul_(0)
                return value
        else:

            def mutating(x: torch.Tensor) -> float:
                value = quad(x)
                x.mul_(0)
                return value

        X = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
        before = X.clone()
        Y = _ev_call(backend, mutating, X, **pool)
        truth = quad_batch(before)
        ok = torch.equal(X, before) and torch.equal(Y, truth)
        return Verdict(
            ok,
            f"X after the call {X.tolist()} (was {before.tolist()}); "
            f"Y {Y.tolist()} vs {truth.tolist()}",
        )

    if pooled:

        def dies(x: torch.Tensor) -> float:
            os._exit(3)

        add(
            entry,
            "worker dies",
            "a failure to name: fn calls os._exit(3)",
            "refuse",
            (("died", "dead", "killed", "exit"),),
            lambda ctx: accepted(_ev_call(backend, dies, **pool)),
            ray=ray,
        )

        def hangs(x: torch.Tensor) -> float:
            time.sleep(30)
            return 0.0

        add(
            entry,
            "timeout",
            "a failure to name: fn sleeps 30 s, timeout=0.5",
            "refuse",
            ("timeout",),
            lambda ctx: accepted(_ev_call(backend, hangs, timeout=0.5, **pool)),
            ray=ray,
        )

        def failing_init() -> None:
            raise FileNotFoundError("scene.xml")

        add(
            entry,
            "init raises",
            "a failure to name: init raises FileNotFoundError('scene.xml')",
            "refuse",
            (("init", "scene.xml"),),
            lambda ctx: accepted(_ev_call(backend, quad, init=failing_init, **pool)),
            ray=ray,
        )


for _backend in ("serial", "vectorized", "process"):
    _evaluator_sweeps(_backend)
_evaluator_sweeps("ray")


@case(
    "vg.Evaluator (serial)", "fn not callable", "vg.Evaluator(3)", "refuse", (("fn", "callable"),)
)
def _ev_not_callable(ctx: Context) -> str:
    return accepted(vg.Evaluator(3))


@case(
    "vg.Evaluator (serial)",
    "backend='gpu'",
    "vg.Evaluator(fn, backend='gpu')",
    "refuse",
    ("backend",),
)
def _ev_backend_name(ctx: Context) -> str:
    return accepted(vg.Evaluator(quad, backend="gpu"))


@case("vg.Evaluator (serial)", "backend=3", "vg.Evaluator(fn, backend=3)", "refuse", ("backend",))
def _ev_backend_int(ctx: Context) -> str:
    return accepted(vg.Evaluator(quad, backend=3))


def _interrupt_case(exception: type[BaseException]) -> Callable[[Context], Verdict]:
    def run(ctx: Context) -> Verdict:
        calls = []

        def fn(x: torch.Tensor) -> float:
            calls.append(1)
            if len(calls) == 3:
                raise exception()
            return quad(x)

        ev = vg.Evaluator(fn)
        try:
            ev(torch.zeros(5, 2, dtype=torch.float64))
        except exception:
            pass
        else:
            return Verdict(False, f"{exception.__name__} was swallowed")
        ok = ev.stats.evals >= len(calls)
        return Verdict(ok, f"fn called {len(calls)} times, stats.evals = {ev.stats.evals}")

    return run


for _exception in (KeyboardInterrupt, SystemExit):
    add(
        "vg.Evaluator (serial)",
        f"{_exception.__name__} mid-batch",
        f"fn raises {_exception.__name__} at row 3 of 5: stats.evals must count the calls made",
        "check",
        (),
        _interrupt_case(_exception),
        item=9,
    )


@case(
    "vg.Evaluator (process)",
    "reused backend runs the new fn",
    "one ProcessBackend, 8 Evaluators of functools.partial(scaled, k=k), del ev each time",
    "check",
    item=2,
)
def _stale_fn(ctx: Context) -> Verdict:
    backend = vg.evaluation.ProcessBackend(1)
    wrong = []
    try:
        X = torch.ones(2, 3, dtype=torch.float64)
        for k in range(8):
            fn = functools.partial(scaled, k=float(k))
            ev = vg.Evaluator(fn, backend=backend)
            Y = ev(X)
            if not torch.equal(Y, torch.full((2,), 3.0 * k, dtype=torch.float64)):
                wrong.append((k, Y.tolist()))
            del ev, fn  # the next partial may get the freed one's address
    finally:
        backend.close()
    return Verdict(not wrong, f"{len(wrong)} of 8 batches ran another fn: {wrong[:3]}")


@case(
    "vg.Evaluator (ray)",
    "listeners on loopback only",
    "after a ray Evaluator call, no process of this case or of its Ray session listens on a "
    "non-loopback address",
    "check",
    item=6,
    ray=True,
)
def _ray_loopback(ctx: Context) -> Verdict:
    ev = vg.Evaluator(quad, backend="ray", workers=1)
    try:
        ev(torch.zeros(2, 2, dtype=torch.float64))
        pids = {*_descendants(os.getpid()), *_ray_session_pids()}
        exposed = [f"pid {pid} {a}" for pid, a in _listeners(pids) if not _is_loopback(a)]
    finally:
        ev.close()
    return Verdict(
        not exposed,
        f"non-loopback listeners: {exposed[:8]}"
        if exposed
        else f"{len(pids)} processes, all listeners on loopback",
    )


@case(
    "vg.Evaluator (ray)",
    "no listener outlives its owner (kill -9)",
    "a child starts a ray Evaluator and is killed with SIGKILL: 10 s later no process of its "
    "Ray session is left listening",
    "check",
    item=6,
    ray=True,
)
def _ray_orphans(ctx: Context) -> Verdict:
    script = (
        "import time, torch, voidgrad as vg\n"
        "ev = vg.Evaluator(lambda x: float(x.sum()), backend='ray', workers=1)\n"
        "ev(torch.zeros(2, 2))\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.stdout is not None
    if "ready" not in child.stdout.readline():
        child.kill()
        raise AssertionError("the child could not start a ray Evaluator")
    session = {*_descendants(child.pid), *_ray_session_pids()} - {child.pid}
    child.send_signal(signal.SIGKILL)
    child.wait()
    time.sleep(10)
    alive = {pid for pid in session if _alive(pid)}
    listening = [f"pid {pid} {a}" for pid, a in _listeners(alive)]
    for pid in alive:  # what the audit's own child left behind
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return Verdict(
        not listening,
        f"still listening 10 s after kill -9: {listening[:8]}"
        if listening
        else f"{len(alive)} of {len(session)} processes alive, none listening",
    )


def _descendants(root: int) -> set[int]:
    """The pids below ``root`` in the process tree (from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _ray_session_pids() -> set[int]:
    """Pids whose command line names the latest Ray session (raylet, gcs, dashboard agents)."""
    session = Path(tempfile.gettempdir()) / "ray" / "session_latest"
    if not session.exists():
        return set()
    name = session.resolve().name.encode()
    found = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if name in cmdline.read_bytes():
                found.add(int(cmdline.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _listeners(pids: set[int]) -> list[tuple[int, str]]:
    """(pid, "address:port") of every listening TCP socket the processes ``pids`` hold."""
    sockets = _listening_sockets()
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:[") and int(target[8:-1]) in sockets:
                        found.append((pid, sockets[int(target[8:-1])]))
    return sorted(set(found))


def _listening_sockets() -> dict[int, str]:
    """inode -> "address:port" for every TCP socket in state LISTEN (/proc/net/tcp, tcp6)."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] != "0A":  # TCP_LISTEN
                    continue
                address, port = fields[1].split(":")
                raw = bytes.fromhex(address)
                # the kernel prints each 32-bit word in host (little-endian) order
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                ip = ipaddress.ip_address(words)
                host = f"[{ip}]" if ip.version == 6 else str(ip)
                found[int(fields[9])] = f"{host}:{int(port, 16)}"
    return found


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.rsplit(":", 1)[0].strip("[]"))
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


# ================================================================================================
# vg.minimize
# ================================================================================================

MIN = "vg.minimize"


def _min_run(**overrides: Any) -> Any:
    arguments = {
        "fn": quad,
        "x0": torch.tensor([0.5, 0.5], dtype=torch.float64),
        "method": "smoothing",
        "budget": 64,
        "seed": 0,
        "lr": 0.1,
    }
    arguments.update(overrides)
    fn = arguments.pop("fn")
    x0 = arguments.pop("x0")
    return minimize_quiet(fn, x0, **arguments)


for _label, _kw, _words in [
    ("x0 str", {"x0": "abc"}, ("x0",)),
    ("x0 []", {"x0": []}, ("x0",)),
    ("x0 2-d", {"x0": [[1.0, 2.0]]}, ("x0",)),
    ("x0 NaN", {"x0": [float("nan"), 1.0]}, ("x0",)),
    ("x0 inf", {"x0": [float("inf"), 1.0]}, ("x0",)),
    ("x0 complex", {"x0": torch.tensor([1 + 1j, 2 + 0j])}, ("x0",)),
    ("x0 None", {"x0": None}, ("x0",)),
    ("x0 dict", {"x0": {"a": 1.0}}, ("x0",)),
    ("budget=0", {"budget": 0}, ("budget",)),
    ("budget=-1", {"budget": -1}, ("budget",)),
    ("budget=1.5", {"budget": 1.5}, ("budget",)),
    ("budget=True", {"budget": True}, ("budget",)),
    ("budget='100'", {"budget": "100"}, ("budget",)),
    ("budget=inf", {"budget": float("inf")}, ("budget",)),
    ("budget too small for a step", {"method": "fd", "budget": 3}, ("budget",)),
    ("budget too small for cma", {"method": "cma", "budget": 1}, ("budget",)),
    ("seed=-1", {"seed": -1}, ("seed",)),
    ("seed=1.5", {"seed": 1.5}, ("seed",)),
    ("seed=True", {"seed": True}, ("seed",)),
    ("seed='0'", {"seed": "0"}, ("seed",)),
    ("seed=None", {"seed": None}, ("seed",)),
    ("seed=-1 (cma)", {"seed": -1, "method": "cma"}, ("seed",)),
    ("method='foo'", {"method": "foo"}, ("method",)),
    ("method=''", {"method": ""}, ("method",)),
    ("method=None", {"method": None}, ("method",)),
    ("method='Smoothing'", {"method": "Smoothing"}, ("method",)),
    (
        "method='nevergrad:NoSuchOptimizer'",
        {"method": "nevergrad:NoSuchOptimizer"},
        ("NoSuchOptimizer",),
    ),
    ("optimizer='foo'", {"optimizer": "foo"}, ("optimizer",)),
    ("optimizer=3", {"optimizer": 3}, ("optimizer",)),
    ("optimizer returns None", {"optimizer": lambda params, lr: None}, ("optimizer",)),
    ("lr=0", {"lr": 0}, ("lr",)),
    ("lr=-1", {"lr": -1.0}, ("lr",)),
    ("lr=nan", {"lr": float("nan")}, ("lr",)),
    ("lr=inf", {"lr": float("inf")}, ("lr",)),
    ("lr=True", {"lr": True}, ("lr",)),
    ("lr='0.1'", {"lr": "0.1"}, ("lr",)),
    ("checkpoint_every=0", {"checkpoint_every": 0}, ("checkpoint_every",)),
    ("checkpoint_every=1.5", {"checkpoint_every": 1.5}, ("checkpoint_every",)),
    ("checkpoint_every=True", {"checkpoint_every": True}, ("checkpoint_every",)),
    ("callback=3", {"callback": 3}, ("callback",)),
    ("lr_schedule=3", {"lr_schedule": 3}, ("lr_schedule",)),
    ("fn=3", {"fn": 3}, (("fn", "callable"),)),
    ("evaluator of another fn", {"evaluator": "OTHER"}, ("evaluator",)),
    ("option sigma=-1", {"sigma": -1.0}, ("sigma",)),
    ("option samples=3 (odd)", {"samples": 3}, ("samples",)),
    ("unknown option sigmaa", {"sigmaa": 0.1}, ("sigmaa",)),
    ("cma option sigma0=-1", {"method": "cma", "sigma0": -1.0}, ("sigma0",)),
    ("cma option popsize=0", {"method": "cma", "popsize": 0}, ("popsize",)),
    ("ga unknown option", {"method": "ga", "sigmaa": 0.1}, ("sigmaa",)),
    ("fn returns a vector", {"fn": lambda x: x * 2}, ("scalar",)),
    ("fn returns bool", {"fn": lambda x: bool(x.sum() > 1)}, ("bool",)),
]:

    def _run(ctx: Context, kw=_kw) -> str:
        kw = dict(kw)
        if kw.get("evaluator") == "OTHER":
            kw["evaluator"] = vg.Evaluator(quad_other)
        return accepted(_min_run(**kw))

    add(
        MIN,
        _label,
        f"vg.minimize(..., {_label})",
        "refuse",
        _words,
        _run,
        item=8 if _label in ("x0 complex", "seed=-1", "seed=1.5", "fn returns bool") else None,
    )


@case(
    MIN,
    "fn returns NaN everywhere",
    "a failure to name: every evaluation is NaN",
    "refuse",
    ("non-finite",),
)
def _min_nan(ctx: Context) -> str:
    return accepted(_min_run(fn=lambda x: float("nan")))


for _method in (
    "smoothing",
    "spsa",
    "fd",
    "zerograds",
    "cma",
    "annealing",
    "ga",
    "nevergrad:OnePlusOne",
):

    def _run(ctx: Context, method=_method) -> Verdict:
        res = _min_run(method=method, budget=96)
        truth = quad(res.x)
        return Verdict(
            math.isclose(res.fun, truth, rel_tol=1e-9) and res.nevals <= 96,
            f"fun {res.fun!r}, fn(x) {truth!r}, nevals {res.nevals}",
        )

    add(
        MIN,
        f"result is consistent ({_method})",
        f"legal run of {_method}: res.fun equals fn(res.x) recomputed, nevals <= budget",
        "check",
        (),
        _run,
    )


for _method in ("smoothing", "cma"):

    def _run(ctx: Context, method=_method) -> Verdict:
        a, b = _min_run(method=method), _min_run(method=method)
        return Verdict(same_result(a, b), f"x {a.x.tolist()} vs {b.x.tolist()}")

    add(
        MIN,
        f"seeded run replays ({_method})",
        f"two runs of {_method} with seed=0 are identical",
        "check",
        (),
        _run,
    )


@case(
    MIN,
    "fn mutates its input (fd)",
    "f evaluates, then x.mul_(0).add_(123) (the issue's reproduction): result equals the pure f's",
    "check",
    item=4,
)
def _min_mutates(ctx: Context) -> Verdict:
    def mutating(x: torch.Tensor) -> float:
        value = quad(x)
        x.mul_(0).add_(123)
        return value

    pure = _min_run(method="fd", budget=400, fn=quad)
    dirty = _min_run(method="fd", budget=400, fn=mutating)
    truth = quad(dirty.x)
    ok = same_result(pure, dirty) and math.isclose(dirty.fun, truth, rel_tol=1e-9)
    return Verdict(
        ok,
        f"pure x {pure.x.tolist()} fun {pure.fun:.4g}; mutating x {dirty.x.tolist()} "
        f"fun {dirty.fun:.4g}, fn(x) = {truth:.4g}",
    )


# ================================================================================================
# vg.minimize checkpoints (the loader)
# ================================================================================================

CKPT = "vg.minimize checkpoint"


def _write_real_checkpoint(ctx: Context, method: str, name: str = "run.ckpt", **kw: Any) -> Path:
    path = ctx.tmp / name
    _min_run(method=method, checkpoint=str(path), **kw)
    assert path.exists(), "the run wrote no checkpoint"
    return path


for _method in ("smoothing", "cma"):
    for _how in DAMAGES:

        def _run(ctx: Context, method=_method, how=_how) -> str:
            real = _write_real_checkpoint(ctx, method, "real.ckpt")
            path = ctx.tmp / "damaged.ckpt"
            damage(path, how, real)
            return accepted(_min_run(method=method, checkpoint=str(path)))

        add(
            CKPT,
            f"{_how} file ({_method})",
            f"resume {_method} from a checkpoint that is {_how}",
            "refuse",
            ("damaged.ckpt",),
            _run,
            item=3,
        )

    def _run(ctx: Context, method=_method) -> str:
        path = ctx.tmp / "damaged.ckpt"
        torch.save({"format": 1, "method": method, "dim": 2, "seed": 0}, path)
        return accepted(_min_run(method=method, checkpoint=str(path)))

    add(
        CKPT,
        f"header only, no state ({_method})",
        f"resume {_method} from a dict with the run's header and nothing else",
        "refuse",
        ("damaged.ckpt",),
        _run,
        item=3,
    )


@case(
    CKPT,
    "checkpoint path is a directory",
    "checkpoint= an existing directory",
    "refuse",
    ("run.ckpt",),
)
def _ckpt_dir(ctx: Context) -> str:
    path = ctx.tmp / "run.ckpt"
    path.mkdir()
    return accepted(_min_run(checkpoint=str(path)))


@case(
    CKPT,
    "checkpoint in an unwritable place",
    "checkpoint= a path under a regular file",
    "refuse",
    (("not-a-dir", "run.ckpt"),),
)
def _ckpt_unwritable(ctx: Context) -> str:
    blocker = ctx.tmp / "not-a-dir"
    blocker.write_text("x")
    return accepted(_min_run(checkpoint=str(blocker / "run.ckpt")))


def _other_run_case(
    name: str,
    description: str,
    first: dict[str, Any],
    second: dict[str, Any],
    field_words: tuple[str, ...],
    item: int = 3,
    method: str = "smoothing",
) -> None:
    def run(ctx: Context) -> Verdict:
        path = ctx.tmp / "run.ckpt"
        _min_run(method=method, checkpoint=str(path), **first)
        resumed = _min_run(method=method, checkpoint=str(path), **second)
        fresh = _min_run(method=method, **second)
        fn = second.get("fn", quad)
        truth = fn(resumed.x)
        ok = same_result(resumed, fresh) and math.isclose(resumed.fun, truth, rel_tol=1e-9)
        return Verdict(
            ok,
            f"resumed: x {resumed.x.tolist()} fun {resumed.fun:.4g} (fn there "
            f"{truth:.4g}); a fresh run: x {fresh.x.tolist()} fun {fresh.fun:.4g}",
        )

    add(CKPT, name, description, "check", ("run.ckpt", field_words), run, item=item)


_other_run_case(
    "another fn's checkpoint",
    "run f1 to the end with checkpoint=p, then minimize(f2, "
    "same settings, checkpoint=p) (the issue's reproduction)",
    {},
    {"fn": quad_other},
    ("fn", "function", "fingerprint", "loss", "evaluat"),
)
_other_run_case(
    "another x0",
    "the same, with x0 = [0.5, 0.5] then [4, -4]",
    {},
    {"x0": torch.tensor([4.0, -4.0], dtype=torch.float64)},
    ("x0",),
)
_other_run_case(
    "another sigma", "the same, with sigma 0.1 then 0.5", {"sigma": 0.1}, {"sigma": 0.5}, ("sigma",)
)
_other_run_case("another lr", "the same, with lr 0.1 then 0.01", {}, {"lr": 0.01}, ("lr",))
_other_run_case(
    "sgd after adam",
    "adam to 64 evaluations, then sgd to 128 on the same path",
    {},
    {"optimizer": "sgd", "budget": 128},
    ("optimizer",),
)
_other_run_case(
    "another budget (larger)",
    "budget 64, then resume to 128 (legal: a longer run)",
    {},
    {"budget": 128},
    ("budget",),
)
_other_run_case(
    "cma: another sigma0",
    "cma with sigma0 0.3 then 2.0",
    {"sigma0": 0.3},
    {"sigma0": 2.0},
    ("sigma0",),
    method="cma",
)
_other_run_case(
    "cma: another fn",
    "cma on f1 to the end, then on f2 with the same path",
    {},
    {"fn": quad_other},
    ("fn", "function", "fingerprint", "loss", "evaluat"),
    method="cma",
)


@case(
    CKPT,
    "another method's checkpoint",
    "smoothing's checkpoint resumed by spsa",
    "refuse",
    ("run.ckpt", "method"),
)
def _ckpt_other_method(ctx: Context) -> str:
    path = _write_real_checkpoint(ctx, "smoothing")
    return accepted(_min_run(method="spsa", checkpoint=str(path)))


@case(
    CKPT,
    "another dimension's checkpoint",
    "a d=2 checkpoint resumed with d=3",
    "refuse",
    ("run.ckpt", ("dim", "x0", "shape")),
)
def _ckpt_other_dim(ctx: Context) -> str:
    path = _write_real_checkpoint(ctx, "smoothing")
    return accepted(_min_run(x0=torch.full((3,), 0.5, dtype=torch.float64), checkpoint=str(path)))


@case(
    CKPT,
    "stale temporary file after kill -9",
    "a save killed by SIGKILL mid-write (at its fsync or rename) "
    "leaves a temporary file; the next run's save removes it",
    "check",
    item=3,
)
def _ckpt_stale(ctx: Context) -> Verdict:
    folder = ctx.tmp / "ckpt"
    folder.mkdir()
    path = folder / "run.ckpt"
    pid = os.fork()
    if pid == 0:  # the run to kill: SIGKILL itself at the first fsync of a save
        try:
            die = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # noqa: E731
            os.fsync = die  # the temporary file is written and not yet renamed
            os.replace = die
            _min_run(checkpoint=str(path))
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    killed = os.WIFSIGNALED(status)
    left = sorted(p.name for p in folder.iterdir())
    _min_run(checkpoint=str(path), budget=128)
    after = sorted(p.name for p in folder.iterdir())
    # a lock file is meant to stay; what the killed write left is anything else
    stale = [
        name for name in after if name in left and name != "run.ckpt" and not name.endswith(".lock")
    ]
    if not killed:
        return Verdict(True, f"untested: no save called fsync or os.replace; files {after}")
    return Verdict(not stale, f"after the kill: {left}; after the next run: {after}")


for _method in ("cma", "annealing", "ga", "nevergrad:OnePlusOne"):

    def _run(ctx: Context, method=_method) -> Verdict:
        path = _write_real_checkpoint(ctx, method, budget=32)
        changed = tamper_byte_tensors(path, ctx.marker)
        ctx.expect("run.ckpt")
        result = _min_run(method=method, checkpoint=str(path), budget=64)
        return Verdict(
            True, f"planted in {changed}; resumed without running it: fun {result.fun:.4g}"
        )

    add(
        CKPT,
        f"planted __reduce__ in the optimizer state ({_method})",
        f"a real {_method} checkpoint whose byte tensors hold a pickle that creates a file",
        "malicious",
        (),
        _run,
        item=1,
    )

for _method in ("smoothing", "cma"):
    for _how in ("torch.save", "pickle.dumps"):

        def _run(ctx: Context, method=_method, how=_how) -> Verdict:
            path = ctx.tmp / "run.ckpt"
            plant_pickle_file(path, ctx.marker, how)
            ctx.expect("run.ckpt")
            result = _min_run(method=method, checkpoint=str(path))
            return Verdict(True, f"accepted without running it: fun {result.fun:.4g}")

        add(
            CKPT,
            f"whole file is a malicious pickle, {_how} ({_method})",
            f"checkpoint file written with {_how} of an object whose __reduce__ creates a file",
            "malicious",
            (),
            _run,
            item=1,
        )


# ================================================================================================
# vg.expectation and the distribution estimators
# ================================================================================================

EXP = "vg.expectation"


def _bernoulli_exact(
    logits: torch.Tensor, f: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """∇_logits Σ_b p(b) f(b) by enumerating every b."""
    d = logits.numel()
    logits = logits.detach().clone().requires_grad_(True)
    states = torch.tensor(
        [[(i >> k) & 1 for k in range(d)] for i in range(2**d)], dtype=logits.dtype
    )
    p = torch.sigmoid(logits)
    probs = (states * p + (1 - states) * (1 - p)).prod(1)
    (probs * f(states)).sum().backward()
    return logits.grad


def _replicates(estimate: Callable[[int], list[torch.Tensor]], K: int) -> torch.Tensor:
    return torch.stack([torch.cat([g.reshape(-1) for g in estimate(k)]) for k in range(K)])


def _grads(loss: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss.sum(), params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def _bernoulli_check(make_estimator: Callable[[int], Any], samples: int, K: int = 300) -> Verdict:
    logits0 = torch.tensor([0.3, -0.6, 1.0], dtype=torch.float64)
    target = torch.tensor([0.45, 0.2, 0.7], dtype=torch.float64)

    def f(b: torch.Tensor) -> torch.Tensor:
        return ((b - target) ** 2).sum(-1)

    def estimate(k: int) -> list[torch.Tensor]:
        logits = logits0.clone().requires_grad_(True)
        loss = vg.expectation(f, Bernoulli(logits=logits), samples, make_estimator(k))
        return _grads(loss, [logits])

    return z_check(_replicates(estimate, K), _bernoulli_exact(logits0, f))


for _entry, _name, _make, _samples in [
    ("vg.ScoreFunction", "leave-one-out", lambda k: vg.ScoreFunction("leave_one_out", seed=k), 8),
    ("vg.RELAX", "RELAX", lambda k: vg.RELAX(nn.Linear(3, 1).double(), seed=k), 4),
    ("vg.RELAX", "REBAR", lambda k: vg.REBAR(seed=k), 4),
    ("vg.DisARM", "DisARM", lambda k: vg.DisARM(seed=k), 4),
]:
    add(
        _entry,
        f"{_name} unbiased on a Bernoulli (legal)",
        f"{_name} estimates of the gradient of "
        "E[|b - t|^2] over Bernoulli(logits), 300 seeded repeats, against exact enumeration "
        "(z = 5)",
        "check",
        (),
        lambda ctx, make=_make, samples=_samples: _bernoulli_check(make, samples),
    )


def _continuous_check(
    make_dist: Callable[[list[torch.Tensor]], Any],
    params0: list[torch.Tensor],
    f: Callable[[torch.Tensor], torch.Tensor],
    truth: list[torch.Tensor],
    make_estimator: Callable[[int], Any],
    samples: int = 64,
    K: int = 200,
) -> Verdict:
    def estimate(k: int) -> list[torch.Tensor]:
        params = [p.clone().requires_grad_(True) for p in params0]
        loss = vg.expectation(f, make_dist(params), samples, make_estimator(k))
        return _grads(loss, params)

    return z_check(_replicates(estimate, K), torch.cat([t.reshape(-1) for t in truth]))


class _FlatControl(nn.Module):
    """c_phi(z) = a linear map of the flattened sample: one value per sample, any event shape."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, 1).double()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z.reshape(z.shape[0], -1)).squeeze(-1)


def _lax(k: int, dim: int) -> Any:
    torch.manual_seed(1000 + k)  # the control's weights: LAX is unbiased for any fixed control
    return vg.LAX(_FlatControl(dim), train_control=False, seed=k)


def _sum_squares(z: torch.Tensor) -> torch.Tensor:
    return (z**2).reshape(z.shape[0], -1).sum(-1)


_MU = torch.tensor([0.5, -0.3], dtype=torch.float64)
_L = torch.tensor([[1.0, 0.0], [0.4, 0.8]], dtype=torch.float64)
_W = torch.tensor([[0.6], [-0.4]], dtype=torch.float64)
_D = torch.tensor([0.5, 0.7], dtype=torch.float64)
_S = torch.tensor([0.8, 1.3], dtype=torch.float64)
_A, _B = torch.tensor(2.0, dtype=torch.float64), torch.tensor(3.0, dtype=torch.float64)

CONTINUOUS = [
    (
        "Normal(mu, s) (legal)",
        lambda p: Normal(p[0], p[1]),
        [_MU, _S],
        _sum_squares,
        [2 * _MU, 2 * _S],
    ),
    (
        "MultivariateNormal(loc, scale_tril=L)",
        lambda p: MultivariateNormal(p[0], scale_tril=p[1]),
        [_MU, _L],
        _sum_squares,
        [2 * _MU, 2 * _L],
    ),
    (
        "LowRankMultivariateNormal(loc, W, D)",
        lambda p: LowRankMultivariateNormal(p[0], p[1], p[2]),
        [_MU, _W, _D],
        _sum_squares,
        [2 * _MU, 2 * _W, torch.ones(2, dtype=torch.float64)],
    ),
    (
        "Independent(Normal(mu, s), 1)",
        lambda p: Independent(Normal(p[0], p[1]), 1),
        [_MU, _S],
        _sum_squares,
        [2 * _MU, 2 * _S],
    ),
    (
        "Beta(a, b)",
        lambda p: Beta(p[0], p[1]),
        [_A, _B],
        lambda z: z.reshape(-1),
        [_B / (_A + _B) ** 2, -_A / (_A + _B) ** 2],
    ),
]

for _label, _make_dist, _params, _f, _truth in CONTINUOUS:
    _dim = 1 if _label.startswith("Beta") else 2
    _legal = "(legal)" in _label
    add(
        "vg.LAX",
        f"gradient of every parameter: {_label}",
        f"LAX estimate of ∇ E[f(z)] for {_label} against the closed form (z = 5), 200 repeats",
        "check",
        () if _legal else (_label.split("(")[0],),
        lambda ctx, m=_make_dist, p=_params, f=_f, t=_truth, d=_dim: _continuous_check(
            m, p, f, t, lambda k: _lax(k, d)
        ),
        item=None if _legal else 5,
    )
    add(
        "vg.ScoreFunction",
        f"gradient of every parameter: {_label}",
        f"score-function (leave-one-out) estimate for {_label} against the closed form (z = 5)",
        "check",
        () if _legal else (_label.split("(")[0],),
        lambda ctx, m=_make_dist, p=_params, f=_f, t=_truth: _continuous_check(
            m, p, f, t, lambda k: vg.ScoreFunction("leave_one_out", seed=k)
        ),
        item=None if _legal else 5,
    )


@case(
    "vg.ScoreFunction",
    "Uniform(lo, hi): support depends on θ",
    "score function on Uniform(lo, hi) with f(z) = z: biased unless refused (truth (0.5, 0.5))",
    "check",
    (("Uniform", "support"),),
    item=5,
)
def _uniform(ctx: Context) -> Verdict:
    lo, hi = torch.tensor(0.0, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64)
    return _continuous_check(
        lambda p: Uniform(p[0], p[1]),
        [lo, hi],
        lambda z: z.reshape(-1),
        [torch.tensor(0.5), torch.tensor(0.5)],
        lambda k: vg.ScoreFunction("leave_one_out", seed=k),
    )


@case(
    "vg.Pathwise",
    "Normal (legal)",
    "pathwise gradient of E[|z|²], Normal(mu, s): 2mu, 2s (z = 5)",
    "check",
)
def _pathwise_normal(ctx: Context) -> Verdict:
    return _continuous_check(
        lambda p: Normal(p[0], p[1]),
        [_MU, _S],
        _sum_squares,
        [2 * _MU, 2 * _S],
        lambda k: vg.Pathwise(seed=k),
    )


def _exp_call(f: Any = None, dist: Any = None, samples: Any = 8, estimator: Any = None) -> Any:
    logits = torch.zeros(3, requires_grad=True)
    dist = Bernoulli(logits=logits) if dist is None else dist
    f = (lambda b: b.sum(-1)) if f is None else f
    loss = vg.expectation(f, dist, samples, estimator)
    loss.sum().backward()
    return loss


for _label, _kw, _words in [
    ("f=3", {"f": 3}, (("fn", "f ", "callable"),)),
    ("dist=3", {"dist": 3}, ("dist",)),
    ("dist=a tensor", {"dist": torch.zeros(3)}, ("dist",)),
    ("samples=0", {"samples": 0}, ("samples",)),
    ("samples=-1", {"samples": -1}, ("samples",)),
    ("samples=1.5", {"samples": 1.5}, ("samples",)),
    ("samples=True", {"samples": True}, ("samples",)),
    ("samples='8'", {"samples": "8"}, ("samples",)),
    ("estimator=a black-box estimator", {"estimator": "SPSA"}, ("estimator",)),
    ("leave-one-out with samples=1", {"samples": 1, "estimator": "LOO"}, ("samples",)),
    ("f returns the wrong shape", {"f": lambda b: b[:, :2]}, ("shape",)),
    ("f returns NaN", {"f": lambda b: b.sum(-1) * float("nan")}, ("non-finite",)),
    ("f returns bool", {"f": lambda b: b.sum(-1) > 1}, ("bool",)),
]:

    def _run(ctx: Context, kw=_kw) -> str:
        kw = dict(kw)
        if kw.get("estimator") == "SPSA":
            kw["estimator"] = vg.SPSA(0.1)
        elif kw.get("estimator") == "LOO":
            kw["estimator"] = vg.ScoreFunction("leave_one_out")
        return accepted(_exp_call(**kw))

    add(
        EXP,
        _label,
        f"vg.expectation(..., {_label})",
        "refuse",
        _words,
        _run,
        item=8 if "bool" in _label else None,
    )


@case(
    EXP,
    "f mutates its samples",
    "f zeroes its samples in place and returns a constant: the "
    "score-function gradient equals the pure f's (same seed)",
    "check",
    (("in-place", "in place", "modif", "mutat", "read-only"),),
    item=4,
)
def _exp_mutates(ctx: Context) -> Verdict:
    def pure(z: torch.Tensor) -> torch.Tensor:
        return torch.full((z.shape[0],), 2.0, dtype=z.dtype)

    def mutating(z: torch.Tensor) -> torch.Tensor:
        z.zero_()
        return pure(z)

    grads = []
    for f in (pure, mutating):
        mu = torch.tensor([0.5, -0.5], dtype=torch.float64, requires_grad=True)
        vg.expectation(f, Normal(mu, 1.0), 16, vg.ScoreFunction(seed=0)).backward()
        grads.append(mu.grad.clone())
    return Verdict(
        torch.equal(grads[0], grads[1]),
        f"pure f: {grads[0].tolist()}, mutating f: {grads[1].tolist()}",
    )


for _entry, _label, _build, _dist, _words in [
    ("vg.ScoreFunction", "baseline='foo'", lambda: vg.ScoreFunction("foo"), None, ("baseline",)),
    ("vg.ScoreFunction", "seed=-1", lambda: vg.ScoreFunction(seed=-1), None, ("seed",)),
    ("vg.ScoreFunction", "seed=1.5", lambda: vg.ScoreFunction(seed=1.5), None, ("seed",)),
    (
        "vg.ScoreFunction",
        "Constant baseline nan",
        lambda: vg.ScoreFunction(vg.baselines.Constant(float("nan"))),
        None,
        ("value",),
    ),
    (
        "vg.ScoreFunction",
        "MovingAverage decay=1.5",
        lambda: vg.ScoreFunction(vg.baselines.MovingAverage(1.5)),
        None,
        ("decay",),
    ),
    (
        "vg.ScoreFunction",
        "Learned baseline module=3",
        lambda: vg.ScoreFunction(vg.baselines.Learned(3)),
        None,
        ("module",),
    ),
    ("vg.Pathwise", "on a Bernoulli", lambda: vg.Pathwise(), None, (("rsample", "reparameteriz"),)),
    (
        "vg.Pathwise",
        "f not differentiable",
        lambda: vg.Pathwise(),
        "normal-detached",
        ("differentiable",),
    ),
    ("vg.GumbelSoftmax", "temperature=0", lambda: vg.GumbelSoftmax(0), None, ("temperature",)),
    ("vg.GumbelSoftmax", "temperature=-1", lambda: vg.GumbelSoftmax(-1.0), None, ("temperature",)),
    (
        "vg.GumbelSoftmax",
        "temperature=nan",
        lambda: vg.GumbelSoftmax(float("nan")),
        None,
        ("temperature",),
    ),
    (
        "vg.GumbelSoftmax",
        "temperature=True",
        lambda: vg.GumbelSoftmax(True),
        None,
        ("temperature",),
    ),
    (
        "vg.GumbelSoftmax",
        "hard='False'",
        lambda: vg.GumbelSoftmax(0.5, hard="False"),
        None,
        ("hard",),
    ),
    ("vg.GumbelSoftmax", "on a Normal", lambda: vg.GumbelSoftmax(0.5), "normal", ("Normal",)),
    ("vg.StraightThrough", "on a Normal", lambda: vg.StraightThrough(), "normal", ("Normal",)),
    ("vg.LAX", "control=3", lambda: vg.LAX(3), None, ("control",)),
    ("vg.LAX", "lr=0", lambda: vg.LAX(nn.Linear(3, 1), lr=0), "normal", ("lr",)),
    (
        "vg.LAX",
        "on a Bernoulli",
        lambda: vg.LAX(nn.Linear(3, 1)),
        None,
        (("rsample", "reparameteriz"),),
    ),
    (
        "vg.LAX",
        "control returns the wrong shape",
        lambda: vg.LAX(nn.Linear(3, 2)),
        "normal",
        ("control",),
    ),
    ("vg.RELAX", "no control, relaxed_f=False", lambda: vg.RELAX(), None, ("control",)),
    ("vg.RELAX", "on a Normal", lambda: vg.RELAX(nn.Linear(3, 1)), "normal", ("Normal",)),
    ("vg.RELAX", "eta='x'", lambda: vg.RELAX(nn.Linear(3, 1), eta="x"), None, ("eta",)),
    ("vg.RELAX", "REBAR temperature=0", lambda: vg.REBAR(0), None, ("temperature",)),
    ("vg.RELAX", "REBAR lr=-1", lambda: vg.REBAR(lr=-1.0), None, ("lr",)),
    ("vg.DisARM", "odd samples", lambda: vg.DisARM(), "odd", ("samples",)),
    ("vg.DisARM", "samples=1", lambda: vg.DisARM(), "one", ("samples",)),
    ("vg.DisARM", "on a Normal", lambda: vg.DisARM(), "normal", ("Normal",)),
    ("vg.DisARM", "seed=-1", lambda: vg.DisARM(seed=-1), None, ("seed",)),
]:

    def _run(ctx: Context, build=_build, dist=_dist) -> str:
        samples = {"odd": 5, "one": 1}.get(dist, 8)
        f = None
        if dist in ("normal", "normal-detached"):
            mu = torch.zeros(3, requires_grad=True)
            built = Normal(mu, 1.0)
            if dist == "normal-detached":
                f = lambda z: z.detach().sum(-1)  # noqa: E731
        else:
            built = None
        return accepted(_exp_call(f=f, dist=built, samples=samples, estimator=build()))

    add(
        _entry,
        _label,
        f"{_label} through vg.expectation",
        "refuse",
        _words,
        _run,
        item=8 if "seed" in _label else None,
    )


# ================================================================================================
# vg.rl.train and its checkpoints
# ================================================================================================

RL = "vg.rl.train"
RLC = "vg.rl.train checkpoint"


def _rl(**overrides: Any) -> Any:
    arguments = {
        "env": "CartPole-v1",
        "estimator": "actor_critic",
        "env_steps": 120,
        "episodes_per_update": 2,
        "width": 8,
        "seed": 0,
        "progress": False,
    }
    arguments.update(overrides)
    env = arguments.pop("env")
    estimator = arguments.pop("estimator")
    return vg.rl.train(env, estimator, **arguments)


for _label, _kw, _words in [
    ("estimator='foo'", {"estimator": "foo"}, ("estimator",)),
    ("backend='foo'", {"backend": "foo"}, ("backend",)),
    ("env='NoSuchEnv-v0'", {"env": "NoSuchEnv-v0"}, ("NoSuchEnv",)),
    ("env=3", {"env": 3}, ("env",)),
    ("env_steps=0", {"env_steps": 0}, ("env_steps",)),
    ("env_steps=1.5", {"env_steps": 1.5}, ("env_steps",)),
    ("episodes_per_update=0", {"episodes_per_update": 0}, ("episodes_per_update",)),
    ("gamma=1.5", {"gamma": 1.5}, ("gamma",)),
    ("gamma=nan", {"gamma": float("nan")}, ("gamma",)),
    ("gae_lambda=-0.1", {"gae_lambda": -0.1}, ("gae_lambda",)),
    ("lr=0", {"lr": 0}, ("lr",)),
    ("lr=inf", {"lr": float("inf")}, ("lr",)),
    ("value_lr=-1", {"value_lr": -1.0}, ("value_lr",)),
    ("control_lr=nan (relax)", {"estimator": "relax", "control_lr": float("nan")}, ("control_lr",)),
    ("value_steps=-1", {"value_steps": -1}, ("value_steps",)),
    ("width=0", {"width": 0}, ("width",)),
    ("width=1.5", {"width": 1.5}, ("width",)),
    ("max_episode_steps=0", {"max_episode_steps": 0}, ("max_episode_steps",)),
    ("max_episode_steps=-5", {"max_episode_steps": -5}, ("max_episode_steps",)),
    ("seed=-1", {"seed": -1}, ("seed",)),
    ("seed=1.5", {"seed": 1.5}, ("seed",)),
    ("workers=0 (batched)", {"workers": 0}, ("workers",)),
    ("workers=0 (process)", {"workers": 0, "backend": "process"}, ("workers",)),
    ("checkpoint_every=0", {"checkpoint_every": 0}, ("checkpoint_every",)),
    ("callback=3", {"callback": 3}, ("callback",)),
    ("lax on discrete actions", {"estimator": "lax"}, ("lax",)),
    ("relax on continuous actions", {"estimator": "relax", "env": "Pendulum-v1"}, ("relax",)),
    ("policy=3", {"policy": 3}, ("policy",)),
]:
    add(
        RL,
        _label,
        f"vg.rl.train(..., {_label})",
        "refuse",
        _words,
        lambda ctx, kw=_kw: accepted(_rl(**kw)),
        item=8 if "workers=0" in _label or "seed" in _label else None,
        accept=("NameNotFound",) if "NoSuchEnv" in _label else (),
    )


@case(
    RL,
    "seeded run replays (legal)",
    "two actor-critic runs with seed=0 have identical histories",
    "check",
)
def _rl_replay(ctx: Context) -> Verdict:
    a, b = _rl(), _rl()
    returns = a.history.column("mean_return"), b.history.column("mean_return")
    return Verdict(returns[0] == returns[1], f"{returns[0][:4]} vs {returns[1][:4]}")


for _how in DAMAGES:

    def _run(ctx: Context, how=_how) -> str:
        real = ctx.tmp / "real.ckpt"
        _rl(checkpoint=str(real))
        path = ctx.tmp / "damaged.ckpt"
        damage(path, how, real)
        return accepted(_rl(checkpoint=str(path)))

    add(
        RLC,
        f"{_how} file",
        f"resume vg.rl.train from a checkpoint that is {_how}",
        "refuse",
        ("damaged.ckpt",),
        _run,
        item=3,
    )


@case(
    RLC,
    "header only, no state",
    "resume from a dict with the run's header and nothing else",
    "refuse",
    ("damaged.ckpt",),
    item=3,
)
def _rl_header(ctx: Context) -> str:
    path = ctx.tmp / "damaged.ckpt"
    torch.save(
        {"format": 1, "estimator": "actor_critic", "seed": 0, "episodes_per_update": 2}, path
    )
    return accepted(_rl(checkpoint=str(path)))


def _rl_other_run(
    name: str, description: str, second: dict[str, Any], words: tuple[str, ...]
) -> None:
    def run(ctx: Context) -> Verdict:
        path = ctx.tmp / "run.ckpt"
        _rl(checkpoint=str(path))
        resumed = _rl(checkpoint=str(path), env_steps=240, **second)
        fresh = _rl(env_steps=240, **second)
        a, b = resumed.history.column("mean_return"), fresh.history.column("mean_return")
        return Verdict(
            a == b,
            f"resumed returns {[round(v, 2) for v in a[:5]]}, a fresh run's "
            f"{[round(v, 2) for v in b[:5]]}",
        )

    add(RLC, name, description, "check", ("run.ckpt", words), run, item=3)


_rl_other_run(
    "another lr",
    "a run with lr 3e-3 to 120 steps, resumed to 240 with lr 3e-2",
    {"lr": 3e-2},
    ("lr",),
)
_rl_other_run("another gamma", "the same with gamma 0.99 then 0.5", {"gamma": 0.5}, ("gamma",))
_rl_other_run(
    "another width", "the same with width 8 then 16", {"width": 16}, ("width", "policy", "size")
)
_rl_other_run(
    "another env",
    "CartPole-v1's checkpoint resumed on Acrobot-v1",
    {"env": "Acrobot-v1"},
    ("env", "Acrobot", "CartPole"),
)

for _how in ("torch.save", "pickle.dumps"):

    def _run(ctx: Context, how=_how) -> Verdict:
        path = ctx.tmp / "run.ckpt"
        plant_pickle_file(path, ctx.marker, how)
        ctx.expect("run.ckpt")
        _rl(checkpoint=str(path))
        return Verdict(True, "accepted without running it")

    add(
        RLC,
        f"whole file is a malicious pickle, {_how}",
        f"checkpoint written with {_how} of an object whose __reduce__ creates a file",
        "malicious",
        (),
        _run,
        item=1,
    )


# ================================================================================================
# vg.meta.MetaLearner and MetaLearner.load
# ================================================================================================

META = "vg.meta.MetaLearner"
LOAD = "MetaLearner.load"


def _sampler(
    generator: torch.Generator,
) -> Callable[[Callable[[torch.Tensor], torch.Tensor]], torch.Tensor]:
    x = torch.linspace(-1, 1, 8).unsqueeze(1)
    b = torch.rand(1, generator=generator) * 2 - 1
    return lambda f: ((f(x) - (x + b)) ** 2).mean()


def _learner(model: nn.Module | None = None, **kw: Any) -> Any:
    torch.manual_seed(0)
    arguments = {"inner_steps": 2, "inner_lr": 0.1, "meta_lr": 1e-2, "seed": 0}
    arguments.update(kw)
    return vg.meta.MetaLearner(nn.Linear(1, 1) if model is None else model, **arguments)


for _label, _kw, _words in [
    ("model=3", {"model": 3}, ("model",)),
    ("model without parameters", {"model": nn.ReLU()}, ("parameters",)),
    ("inner_steps=0", {"inner_steps": 0}, ("inner_steps",)),
    ("inner_steps=1.5", {"inner_steps": 1.5}, ("inner_steps",)),
    ("inner_steps=True", {"inner_steps": True}, ("inner_steps",)),
    ("inner_lr=0", {"inner_lr": 0}, ("inner_lr",)),
    ("inner_lr=nan", {"inner_lr": float("nan")}, ("inner_lr",)),
    ("meta_lr=-1", {"meta_lr": -1.0}, ("meta_lr",)),
    ("meta_batch=0", {"meta_batch": 0}, ("meta_batch",)),
    ("seed=-1", {"seed": -1}, ("seed",)),
    ("seed=1.5", {"seed": 1.5}, ("seed",)),
    ("seed=True", {"seed": True}, ("seed",)),
]:

    def _run(ctx: Context, kw=_kw) -> str:
        kw = dict(kw)
        learner = _learner(kw.pop("model", None), **kw)
        learner.meta_fit(_sampler, steps=1, progress=False)
        return accepted(learner)

    add(
        META,
        _label,
        f"MetaLearner({_label}), then one meta_fit step",
        "refuse",
        _words,
        _run,
        item=8 if "seed" in _label else None,
    )

for _label, _call, _words in [
    ("meta_fit steps=0", lambda m: m.meta_fit(_sampler, steps=0, progress=False), ("steps",)),
    ("meta_fit steps=1.5", lambda m: m.meta_fit(_sampler, steps=1.5, progress=False), ("steps",)),
    (
        "meta_fit task_sampler=3",
        lambda m: m.meta_fit(3, steps=1, progress=False),
        ("task_sampler",),
    ),
    (
        "adapt steps=-1",
        lambda m: m.adapt(_sampler(torch.Generator().manual_seed(0)), steps=-1),
        ("steps",),
    ),
    (
        "task returns a vector",
        lambda m: m.meta_fit(
            lambda g: lambda f: f(torch.ones(3, 1)).reshape(-1), steps=1, progress=False
        ),
        ("scalar",),
    ),
    ("meta_loss of no tasks", lambda m: m.meta_loss([]), ("task",)),
]:
    add(
        META,
        _label,
        f"learner.{_label}",
        "refuse",
        _words,
        lambda ctx, call=_call: accepted(call(_learner())),
    )


@case(
    META,
    "save/load round trip (legal)",
    "a learner saved and loaded into a fresh one adapts identically",
    "check",
)
def _meta_roundtrip(ctx: Context) -> Verdict:
    learner = _learner()
    learner.meta_fit(_sampler, steps=3, progress=False)
    path = ctx.tmp / "meta.pt"
    learner.save(path)
    other = _learner()
    other.load(path)
    task = _sampler(torch.Generator().manual_seed(5))
    a, b = learner.adaptation_losses(task), other.adaptation_losses(task)
    return Verdict(a == b, f"{a} vs {b}")


def _saved_learner(ctx: Context, **kw: Any) -> Path:
    path = ctx.tmp / "real.pt"
    _learner(**kw).save(path)
    return path


for _how in (*DAMAGES, "missing file"):

    def _run(ctx: Context, how=_how) -> str:
        path = ctx.tmp / "damaged.pt"
        if how != "missing file":
            damage(path, how, _saved_learner(ctx))
        return accepted(_learner().load(path))

    add(
        LOAD,
        f"{_how}",
        f"MetaLearner.load of a file that is {_how}",
        "refuse",
        ("damaged.pt",),
        _run,
        item=3 if _how != "missing file" else None,
    )


@case(
    LOAD,
    "dict missing 'lr'",
    "a file with 'init' and 'inner_steps' but no 'lr'",
    "refuse",
    ("damaged.pt",),
)
def _meta_missing_key(ctx: Context) -> str:
    path = ctx.tmp / "damaged.pt"
    state = _learner().state_dict()
    del state["lr"]
    torch.save(state, path)
    return accepted(_learner().load(path))


@case(
    LOAD,
    "other shapes",
    "a Linear(1, 1) learner's file loaded into a Linear(3, 1) learner",
    "refuse",
    (("shape", "size"),),
    item=8,
)
def _meta_shapes(ctx: Context) -> str:
    path = _saved_learner(ctx)
    learner = _learner(nn.Linear(3, 1))
    learner.load(path)
    return accepted({n: tuple(p.shape) for n, p in learner.init.items()})


@case(
    LOAD,
    "other settings",
    "a file saved with inner_steps=2 loaded into a learner with inner_steps=5",
    "refuse",
    ("inner_steps",),
    item=8,
)
def _meta_settings(ctx: Context) -> str:
    path = _saved_learner(ctx)
    learner = _learner(inner_steps=5)
    learner.load(path)
    return accepted(f"inner_steps now {learner.inner_steps}")


@case(
    LOAD,
    "other learn_lr",
    "a file saved with learn_lr=True loaded into a learner with learn_lr=False",
    "refuse",
    ("learn_lr",),
    item=8,
)
def _meta_learn_lr(ctx: Context) -> str:
    learner0 = _learner()
    learner0.lr["weight"].data.fill_(0.37)  # a learned step size the loader cannot keep
    path = ctx.tmp / "real.pt"
    learner0.save(path)
    learner = _learner(learn_lr=False)
    learner.load(path)
    return accepted(f"lr now {float(learner.lr['weight'])} with learn_lr=False")


for _how in ("torch.save", "pickle.dumps"):

    def _run(ctx: Context, how=_how) -> Verdict:
        path = ctx.tmp / "meta.pt"
        plant_pickle_file(path, ctx.marker, how)
        ctx.expect("meta.pt")
        _learner().load(path)
        return Verdict(True, "accepted without running it")

    add(
        LOAD,
        f"malicious pickle, {_how}",
        f"a file written with {_how} of an object whose __reduce__ creates a file",
        "malicious",
        (),
        _run,
        item=1,
    )


# ================================================================================================
# vg.problems.make
# ================================================================================================

PROB = "vg.problems.make"

for _label, _args, _kw, _words in [
    ("name='nope'", ("nope",), {}, ("nope",)),
    ("name=None", (None,), {}, ("problem",)),
    ("name=3", (3,), {}, ("problem",)),
    ("seed=-1", ("sphere",), {"seed": -1}, ("seed",)),
    ("seed=1.5", ("sphere",), {"seed": 1.5}, ("seed",)),
    ("seed=True", ("sphere",), {"seed": True}, ("seed",)),
    ("seed='0'", ("sphere",), {"seed": "0"}, ("seed",)),
    ("plateau dim=3 (not an option)", ("plateau",), {"dim": 3}, ("dim",)),
    ("sphere dim=0", ("sphere",), {"dim": 0}, ("dim",)),
    ("sphere dim=-1", ("sphere",), {"dim": -1}, ("dim",)),
    ("sphere dim=1.5", ("sphere",), {"dim": 1.5}, ("dim",)),
    ("sphere dim=True", ("sphere",), {"dim": True}, ("dim",)),
    ("sphere dim='10'", ("sphere",), {"dim": "10"}, ("dim",)),
    ("rastrigin dim=0", ("rastrigin",), {"dim": 0}, ("dim",)),
    ("texture size=-1", ("texture",), {"size": -1}, ("size",)),
    ("texture size=0", ("texture",), {"size": 0}, ("size",)),
    ("texture size=1.5", ("texture",), {"size": 1.5}, ("size",)),
    ("sphere threshold=-1", ("sphere",), {"threshold": -1.0}, ("threshold",)),
]:

    def _run(ctx: Context, args=_args, kw=_kw) -> str:
        problem = vg.problems.make(*args, **kw)
        return accepted(problem.loss(problem.x0))

    add(
        PROB,
        _label,
        f"vg.problems.make({_label}), then loss(x0)",
        "refuse",
        _words,
        _run,
        item=8 if "seed" in _label else None,
    )

for _label, _x, _words in [
    ("loss(x) wrong length", lambda p: torch.zeros(p.dim + 1), ("x",)),
    ("loss(x) NaN", lambda p: torch.full((p.dim,), float("nan")), ("x",)),
    ("loss(x) of strings", lambda p: ["a"] * p.dim, ("x",)),
    ("loss(x) 2-d", lambda p: torch.zeros(1, p.dim), ("x",)),
]:
    add(
        PROB,
        f"sphere {_label}",
        f"problem.{_label}",
        "refuse",
        _words,
        lambda ctx, x=_x: accepted((p := vg.problems.make("sphere", dim=3)).loss(x(p))),
    )

for _name in ("plateau", "sphere", "rosenbrock", "rastrigin", "akima"):

    def _run(ctx: Context, name=_name) -> Verdict:
        problem = vg.problems.make(name, seed=0)
        value = problem.loss(problem.x_target)
        return Verdict(
            value == problem.optimum and problem.loss(problem.x0) > problem.threshold,
            f"loss(x_target) {value!r}, optimum {problem.optimum!r}",
        )

    add(
        PROB,
        f"{_name}: loss(x_target) == optimum (legal)",
        f"make({_name!r}) has its stated optimum at x_target and starts above the threshold",
        "check",
        (),
        _run,
    )


# ================================================================================================
# voidgrad bench (the command line) and its cells
# ================================================================================================

CLI = "voidgrad bench"


def _cli(argv: list[str]) -> tuple[int, str]:
    """Run ``voidgrad`` in this process; (exit status, stderr + stdout). Tracebacks propagate."""
    from voidgrad.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
        except Exception as error:  # a traceback printed by a command line is never a usage error
            raise CommandTracebackError(f"{type(error).__name__}: {error}") from error
    return int(status or 0), err.getvalue() + out.getvalue()


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


class UsageError(Exception):
    """A command line that exited non-zero; its message is the last line the command printed."""


class CommandTracebackError(Exception):
    """An exception escaped the command line's main(): the user sees a traceback."""


def _bench_argv(ctx: Context, out: str = "bench", **over: str) -> list[str]:
    arguments = {
        "--problems": "sphere:2",
        "--methods": "smoothing",
        "--budget": "40",
        "--seeds": "1",
        "--out": str(ctx.tmp / out),
    }
    arguments.update({k.replace("_", "-") if k.startswith("--") else k: v for k, v in over.items()})
    argv = ["bench"]
    for key, value in arguments.items():
        if value is not None:
            argv += [key, value]
    return argv


def _usage(argv: list[str]) -> str:
    status, text = _cli(argv)
    if status != 0:  # judged by the error line itself, not by the usage synopsis above it
        raise UsageError(f"exit status {status}: {_last_line(text)}")
    return accepted(f"exit status 0; {text.strip()[-200:]}")


for _label, _over, _extra, _words in [
    ("--budget 0", {"--budget": "0"}, [], ("budget",)),
    ("--budget abc", {"--budget": "abc"}, [], ("budget",)),
    ("--seeds 0", {"--seeds": "0"}, [], ("seeds",)),
    ("--workers 0", {}, ["--workers", "0"], ("workers",)),
    ("--problems nope", {"--problems": "nope"}, [], ("nope",)),
    ("--problems sphere:0", {"--problems": "sphere:0"}, [], (("dim", "sphere:0"),)),
    ("--problems texture:size=-1", {"--problems": "texture:size=-1"}, [], ("size",)),
    ("--problems sphere:dim=-3", {"--problems": "sphere:dim=-3"}, [], ("dim",)),
    ("--methods nope", {"--methods": "nope"}, [], ("nope",)),
    ("--option smoothing.lr_decay=5", {}, ["--option", "smoothing.lr_decay=5"], ("lr_decay",)),
    ("--option smoothing.sigma=-1", {}, ["--option", "smoothing.sigma=-1"], ("sigma",)),
    ("--option smoothing.sigmaa=1", {}, ["--option", "smoothing.sigmaa=1"], ("sigmaa",)),
    ("--option for a method not in the run", {}, ["--option", "spsa.c=0.1"], ("spsa",)),
    ("--option without '='", {}, ["--option", "smoothing.sigma"], ("option",)),
]:
    add(
        CLI,
        _label,
        f"voidgrad bench with {_label}",
        "refuse",
        _words,
        lambda ctx, over=_over, extra=_extra: _usage(_bench_argv(ctx, **over) + extra),
        item=7
        if _label
        in (
            "--problems texture:size=-1",
            "--option smoothing.lr_decay=5",
            "--option for a method not in the run",
            "--option smoothing.sigma=-1",
        )
        else None,
    )


@case(
    CLI,
    "--out unwritable",
    "--out a path under a regular file",
    "refuse",
    (("not-a-dir", "out"),),
    item=7,
)
def _cli_out(ctx: Context) -> str:
    (ctx.tmp / "not-a-dir").write_text("x")
    return _usage(_bench_argv(ctx, out="not-a-dir/bench"))


@case(CLI, "demo --steps 0", "voidgrad demo --steps 0", "refuse", ("steps",))
def _cli_demo(ctx: Context) -> str:
    return _usage(["demo", "--steps", "0", "--no-plot", "--out", str(ctx.tmp / "demo")])


@case(
    CLI,
    "a failed cell exits non-zero",
    "a cell whose method fails at run time "
    "(--option smoothing.samples=3, odd) must not end with exit status 0",
    "check",
    item=7,
)
def _cli_failed_cell(ctx: Context) -> Verdict:
    status, text = _cli([*_bench_argv(ctx), "--option", "smoothing.samples=3"])
    return Verdict(status != 0, f"exit status {status}; {text.strip()[-200:]}")


@case(
    CLI,
    "rerun with another budget",
    "bench --budget 40, then --budget 80 into the same --out: "
    "every cell in results.json ran with budget 80",
    "check",
    ("budget",),
    item=7,
)
def _cli_rerun(ctx: Context) -> Verdict:
    _cli(_bench_argv(ctx))
    second, text = _cli(_bench_argv(ctx, **{"--budget": "80"}))
    if second != 0:
        raise UsageError(f"exit status {second}: {_last_line(text)}")
    results = json.loads((ctx.tmp / "bench" / "results.json").read_text())
    cells = results["cells"]
    stale = [
        (c.get("budget"), c.get("nevals"))
        for c in cells
        if c.get("budget") != 80 or c.get("nevals", 0) <= 40
    ]
    return Verdict(
        bool(cells) and not stale,
        f"{len(cells)} cells; cells not run at budget 80 (budget, nevals): {stale}",
    )


@case(
    CLI,
    "rerun with another option",
    "bench, then the same with --option smoothing.sigma=1.5: the cell is rerun with the new option",
    "check",
    ("sigma",),
    item=7,
)
def _cli_rerun_option(ctx: Context) -> Verdict:
    _cli(_bench_argv(ctx))
    status, text = _cli([*_bench_argv(ctx), "--option", "smoothing.sigma=1.5"])
    if status != 0:
        raise UsageError(f"exit status {status}: {_last_line(text)}")
    cells = json.loads((ctx.tmp / "bench" / "results.json").read_text())["cells"]
    sigmas = [c.get("options", {}).get("sigma") for c in cells]
    return Verdict(bool(cells) and all(s == 1.5 for s in sigmas), f"cells' sigma: {sigmas}")


@case(
    CLI,
    "a damaged cell file",
    "a cells/*.json file with garbage in it, then a rerun: refused naming the file, or the cell "
    "run again (results.json holds it, finished at the budget)",
    "check",
    (".json",),
    item=3,
)
def _cli_garbage_cell(ctx: Context) -> Verdict:
    _cli(_bench_argv(ctx))
    cells = sorted((ctx.tmp / "bench" / "cells").glob("*.json"))
    assert cells, "the first run wrote no cell"
    cells[0].write_text("{not json")
    ctx.expect(cells[0].name)
    status, text = _cli(_bench_argv(ctx))
    if status != 0:
        raise UsageError(f"exit status {status}: {_last_line(text)}")
    records = json.loads((ctx.tmp / "bench" / "results.json").read_text())["cells"]
    ok = len(records) == 1 and records[0].get("error") is None and records[0].get("nevals") == 40
    return Verdict(
        ok,
        f"exit status 0; cells in results.json: "
        f"{[(r.get('error'), r.get('nevals')) for r in records]}",
    )


# ================================================================================================
# vg.adversarial
# ================================================================================================

ADV = "vg.adversarial"


class _ShapeDist(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(2))

    def forward(self) -> Any:
        return Independent(Normal(self.mu, 1.0), 1)


def _render(z: torch.Tensor) -> torch.Tensor:
    ramp = torch.linspace(0, 1, 16)
    image = z[:, 0, None, None] * ramp[None, :, None] + z[:, 1, None, None] * ramp[None, None, :]
    return image.unsqueeze(1)


def _adv(**overrides: Any) -> Any:
    torch.manual_seed(0)
    arguments: dict[str, Any] = {
        "distribution": _ShapeDist(),
        "render": _render,
        "targets": torch.randn(16, 1, 16, 16),
        "steps": 2,
        "samples": 4,
        "seed": 0,
        "progress": False,
    }
    arguments.update(overrides)
    distribution = arguments.pop("distribution")
    render = arguments.pop("render")
    targets = arguments.pop("targets")
    return vg.adversarial(distribution, render, targets, **arguments)


for _label, _kw, _words in [
    ("steps=0", {"steps": 0}, ("steps",)),
    ("steps=1.5", {"steps": 1.5}, ("steps",)),
    ("steps=True", {"steps": True}, ("steps",)),
    ("samples=0", {"samples": 0}, ("samples",)),
    ("samples=1.5", {"samples": 1.5}, ("samples",)),
    ("targets 3-d", {"targets": torch.randn(16, 16, 16)}, ("targets",)),
    ("targets a list", {"targets": [[0.0]]}, ("targets",)),
    ("fewer targets than samples", {"targets": torch.randn(2, 1, 16, 16)}, ("targets",)),
    ("targets with NaN", {"targets": torch.full((16, 1, 16, 16), float("nan"))}, ("targets",)),
    ("lr=0", {"lr": 0}, ("lr",)),
    ("lr=nan", {"lr": float("nan")}, ("lr",)),
    ("lr_decay=0", {"lr_decay": 0}, ("lr_decay",)),
    ("lr_decay=5", {"lr_decay": 5}, ("lr_decay",)),
    ("lr_decay=True", {"lr_decay": True}, ("lr_decay",)),
    ("discriminator_lr=-1", {"discriminator_lr": -1.0}, ("discriminator_lr",)),
    ("max_gap=0", {"max_gap": 0}, ("max_gap",)),
    ("max_gap=1.5", {"max_gap": 1.5}, ("max_gap",)),
    ("seed=-1", {"seed": -1}, ("seed",)),
    ("seed=1.5", {"seed": 1.5}, ("seed",)),
    ("distribution=3", {"distribution": 3}, ("distribution",)),
    (
        "parameters with a module",
        {"parameters": [torch.zeros(1, requires_grad=True)]},
        ("parameters",),
    ),
    ("estimator=a black-box estimator", {"estimator": "SPSA"}, ("estimator",)),
    (
        "render returns the wrong shape",
        {"render": lambda z: torch.zeros(z.shape[0], 1, 8, 8)},
        ("render",),
    ),
    ("discriminator=3", {"discriminator": 3}, ("discriminator",)),
]:

    def _run(ctx: Context, kw=_kw) -> str:
        kw = dict(kw)
        if kw.get("estimator") == "SPSA":
            kw["estimator"] = vg.SPSA(0.1)
        return accepted(_adv(**kw))

    add(
        ADV,
        _label,
        f"vg.adversarial(..., {_label})",
        "refuse",
        _words,
        _run,
        item=8 if "seed" in _label else None,
    )


@case(ADV, "seeded run replays (legal)", "two runs with seed=0 learn the same parameters", "check")
def _adv_replay(ctx: Context) -> Verdict:
    a, b = _adv(steps=10, max_gap=None), _adv(steps=10, max_gap=None)
    pa = {k: v.detach().tolist() for k, v in a.parameters.items()}
    pb = {k: v.detach().tolist() for k, v in b.parameters.items()}
    moved = any(x != 0.0 for values in pa.values() for x in values)
    return Verdict(pa == pb and moved, f"parameters {pa} vs {pb} (moved from 0: {moved})")


# ================================================================================================
# running the cases: one forked process each
# ================================================================================================

ACCEPTED_TYPES = (ValueError, TypeError, OSError, ImportError, UsageError)


def _matches(text: str, words: Words) -> bool:
    """Whether ``text`` contains every group of ``words`` (any one alternative of a group).

    Case-insensitive; a word must start a word of the text (``seed`` matches
    ``seeds`` but not ``reseed``), and a word of one or two letters (``x``,
    ``h``, ``lr``) must be a whole word, so that it cannot match inside others.
    """
    for group in words:
        options = (group,) if isinstance(group, str) else group
        if not any(_word_pattern(option).search(text) for option in options):
            return False
    return True


def _word_pattern(word: str) -> re.Pattern[str]:
    left = r"(?<![A-Za-z0-9_])" if word[0].isalnum() else ""
    right = r"(?![A-Za-z0-9_])" if len(word) <= 2 and word[-1].isalnum() else ""
    return re.compile(left + re.escape(word) + right, re.IGNORECASE)


def _where(error: BaseException) -> str:
    """Where the exception (or, for a wrapped one, its cause) was raised."""
    error = error.__cause__ or error
    frames = traceback.extract_tb(error.__traceback__)
    return f" (raised at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""


def classify(
    case_: Case,
    ctx: Context,
    value: Any,
    error: BaseException | None,
    caught: list[warnings.WarningMessage],
) -> tuple[str, str]:
    """The outcome of one case and the evidence for it."""
    words = (*case_.words, *ctx.extra_words)
    if ctx.marker.exists():
        return "code ran", f"the planted payload created {ctx.marker.name}"
    if error is not None:
        text = f"{type(error).__name__}: {error}"
        named_type = (
            isinstance(error, ACCEPTED_TYPES)
            or type(error).__module__.startswith("voidgrad")
            or type(error).__name__ in case_.accept
        )
        if named_type and words and _matches(str(error), words):
            return "clear error", _short(text)
        missing = "" if not words else f"; message lacks {list(words)}" if named_type else ""
        return "raw traceback", _short(text) + _where(error) + missing
    warned = [w for w in caught if words and _matches(str(w.message), words)]
    if case_.kind == "trap" and warned:
        return "warning", _short(f"{warned[0].category.__name__}: {warned[0].message}")
    if case_.kind == "refuse":
        return "silent wrong", _short(str(value))
    assert isinstance(value, Verdict), f"a {case_.kind} case must return a Verdict; got {value!r}"
    return ("correct" if value.ok else "silent wrong"), _short(value.detail)


def _short(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _execute(case_: Case, tmp: Path) -> dict[str, Any]:
    ctx = Context(tmp)
    value: Any = None
    error: BaseException | None = None
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = case_.run(ctx)
        except BaseException as raised:
            error = raised
    seconds = time.perf_counter() - start
    outcome, detail = classify(case_, ctx, value, error, list(caught))
    return {"outcome": outcome, "detail": detail, "seconds": round(seconds, 3)}


def _child(case_: Case, tmp: Path) -> None:
    status = 1
    try:
        os.setpgid(0, 0)
        log = os.open(tmp / "output.log", os.O_WRONLY | os.O_CREAT, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.chdir(tmp)
        torch.manual_seed(0)
        result = _execute(case_, tmp)
        (tmp / "result.json").write_text(json.dumps(result))
        status = 0
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)


def run_cases(
    cases: list[Case], jobs: int, timeout: float, root: Path, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Run every case in its own forked process group, ``jobs`` at a time."""
    pending = list(enumerate(cases))
    running: dict[int, tuple[int, Case, float, Path]] = {}
    results: dict[int, dict[str, Any]] = {}
    while pending or running:
        while pending and len(running) < jobs:
            index, case_ = pending.pop(0)
            tmp = root / f"case{index:04d}"
            tmp.mkdir()
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(case_, tmp)
            with contextlib.suppress(OSError):
                os.setpgid(pid, pid)
            running[pid] = (index, case_, time.monotonic(), tmp)
        time.sleep(0.02)
        for pid, (index, case_, started, tmp) in list(running.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            overdue = time.monotonic() - started > timeout
            if done == 0 and not overdue:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # the case's own group: its workers too
            if done == 0:
                os.waitpid(pid, 0)
            del running[pid]
            result_file = tmp / "result.json"
            if done == 0:
                result = {
                    "outcome": "raw traceback",
                    "detail": f"hung: killed after {timeout:.0f} s",
                    "seconds": round(timeout, 3),
                }
            elif result_file.exists():
                result = json.loads(result_file.read_text())
            else:
                tail = (
                    (tmp / "output.log").read_text(errors="replace")[-300:]
                    if (tmp / "output.log").exists()
                    else ""
                )
                result = {
                    "outcome": "raw traceback",
                    "detail": _short(f"the case process died (status {status}): {tail}"),
                    "seconds": round(time.monotonic() - started, 3),
                }
            results[index] = {
                "entry": case_.entry,
                "name": case_.name,
                "description": case_.description,
                "kind": case_.kind,
                "item": case_.item,
                **result,
            }
            log(f"[{len(results)}/{len(cases)}] {result['outcome']:<13} {case_.id}")
    return [results[i] for i in range(len(cases))]


# -- reports --------------------------------------------------------------------------------------


def tally(results: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for result in results:
        row = table.setdefault(result["entry"], {"tried": 0, **{o: 0 for o in OUTCOMES}})
        row["tried"] += 1
        row[result["outcome"]] += 1
    total = {"tried": 0, **{o: 0 for o in OUTCOMES}}
    for row in table.values():
        for key, count in row.items():
            total[key] += count
    table["total"] = total
    return table


def format_table(table: dict[str, dict[str, int]]) -> list[str]:
    lines = [
        "| entry point | inputs tried | clear errors + warnings | correct | silent wrong | "
        "raw tracebacks | code ran |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for entry, row in table.items():
        name = "**total**" if entry == "total" else f"`{entry}`"
        lines.append(
            f"| {name} | {row['tried']} | {row['clear error'] + row['warning']} | "
            f"{row['correct']} | {row['silent wrong']} | {row['raw traceback']} | "
            f"{row['code ran']} |"
        )
    return lines


def format_report(data: dict[str, Any]) -> str:
    results = data["results"]
    meta = data["metadata"]
    lines = [
        "# voidgrad trust audit",
        "",
        f"- voidgrad imported from `{meta['voidgrad_file']}` (git {meta['git_commit']}"
        f"{', working tree differs' if meta['git_dirty'] else ''})",
        f"- {meta['date']}, Python {meta['python']}, torch {meta['torch']}, {meta['cases']} cases, "
        f"{meta['seconds']:.0f} s with {meta['jobs']} jobs",
        f"- command: `{meta['command']}`",
        "",
        "Outcomes: *clear error* (ValueError/TypeError/OSError/ImportError or a voidgrad exception "
        "whose message names the argument or file), *warning* (a trap named by a warning), "
        "*correct* (legal input, answer equals an independent truth), *silent wrong* (wrong "
        "answer, or bad input accepted), *raw traceback* (any other exception, a message that "
        "does not name the argument, a crash or a hang), *code ran* (a malicious file executed "
        "its payload).",
        "",
        *format_table(tally(results)),
        "",
        "Malicious files: "
        f"{sum(r['kind'] == 'malicious' for r in results)} tried, "
        f"{sum(r['outcome'] == 'code ran' for r in results)} ran code.",
        "",
        "## Every case",
    ]
    for entry in dict.fromkeys(r["entry"] for r in results):
        lines += [
            "",
            f"### `{entry}`",
            "",
            "| outcome | case | item | evidence |",
            "|---|---|---|---|",
        ]
        for r in results:
            if r["entry"] == entry:
                item = "" if r["item"] is None else str(r["item"])
                lines.append(
                    f"| {r['outcome']} | {_cell(r['name'])} ({r['kind']}) | {item} | "
                    f"{_cell(r['detail'])} |"
                )
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def format_comparison(before: dict[str, Any], after: dict[str, Any]) -> str:
    tb, ta = tally(before["results"]), tally(after["results"])
    lines = [
        "# voidgrad trust audit: before and after",
        "",
        f"- before: `{before['metadata']['voidgrad_file']}` "
        f"(git {before['metadata']['git_commit']})",
        f"- after: `{after['metadata']['voidgrad_file']}` (git {after['metadata']['git_commit']}"
        f"{', working tree differs' if after['metadata']['git_dirty'] else ''})",
        "",
        "Each cell: before → after.",
        "",
        "| entry point | inputs tried | clear errors + warnings | correct | silent wrong | "
        "raw tracebacks | code ran |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in [*dict.fromkeys([*tb, *ta])]:
        b = tb.get(entry, {"tried": 0, **{o: 0 for o in OUTCOMES}})
        a = ta.get(entry, {"tried": 0, **{o: 0 for o in OUTCOMES}})

        def pair(key: str, b=b, a=a) -> str:
            if key == "clear":
                return f"{b['clear error'] + b['warning']} → {a['clear error'] + a['warning']}"
            return f"{b[key]} → {a[key]}"

        name = "**total**" if entry == "total" else f"`{entry}`"
        lines.append(
            f"| {name} | {pair('tried')} | {pair('clear')} | {pair('correct')} | "
            f"{pair('silent wrong')} | {pair('raw traceback')} | {pair('code ran')} |"
        )
    by_id = {(r["entry"], r["name"]): r for r in before["results"]}
    lines += [
        "",
        "## Cases whose outcome changed",
        "",
        "| case | before | after | evidence after |",
        "|---|---|---|---|",
    ]
    for r in after["results"]:
        old = by_id.get((r["entry"], r["name"]))
        if old is None or old["outcome"] != r["outcome"]:
            lines.append(
                f"| `{r['entry']}` {_cell(r['name'])} | {old['outcome'] if old else '(new)'} | "
                f"{r['outcome']} | {_cell(r['detail'])} |"
            )
    bad = [
        r for r in after["results"] if r["outcome"] in ("silent wrong", "raw traceback", "code ran")
    ]
    lines += [
        "",
        "## Still silent wrong, raw traceback or code ran (after)",
        "",
        "| case | outcome | evidence |",
        "|---|---|---|",
    ]
    lines += [
        f"| `{r['entry']}` {_cell(r['name'])} | {r['outcome']} | {_cell(r['detail'])} |"
        for r in bad
    ]
    return "\n".join(lines) + "\n"


def _git(src: Path, *args: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(src), *args], capture_output=True, text=True, timeout=20, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _command_line() -> str:
    """How this run was started, with the PYTHONPATH that chose the voidgrad it audits."""
    words = [sys.executable, *sys.argv]
    if os.environ.get("PYTHONPATH"):
        words.insert(0, f"PYTHONPATH={os.environ['PYTHONPATH']}")
    return " ".join(words)


def metadata(args: argparse.Namespace, cases: int, seconds: float) -> dict[str, Any]:
    source = Path(vg.__file__).resolve().parent
    return {
        "voidgrad_file": str(Path(vg.__file__).resolve()),
        "git_commit": _git(source, "rev-parse", "--short", "HEAD") or "unknown",
        "git_dirty": bool(_git(source, "status", "--porcelain", "--", str(source))),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "command": _command_line(),
        "cases": cases,
        "jobs": args.jobs,
        "timeout": args.timeout,
        "ray": args.ray,
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder for trust_audit.md and trust_audit.json")
    parser.add_argument(
        "--src", type=Path, help="import voidgrad from this folder (put first on sys.path)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds per case (default 90)")
    parser.add_argument("--ray", action="store_true", help="also run the Ray backend's cases")
    parser.add_argument(
        "--only", action="append", default=[], help="run cases whose id contains this"
    )
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("BEFORE", "AFTER"),
        help="write a before/after table from two trust_audit.json files",
    )
    args = parser.parse_args(argv)

    if args.compare:
        before, after = (json.loads(p.read_text()) for p in args.compare)
        text = format_comparison(before, after)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "trust_audit_compare.md").write_text(text)
        print(text)
        return 0

    if args.src is not None:
        sys.path.insert(0, str(args.src.resolve()))
    global vg
    import voidgrad

    vg = voidgrad
    print(f"voidgrad imported from {voidgrad.__file__}", flush=True)
    torch.set_num_threads(1)
    cases = [c for c in CASES if args.ray or not c.ray]
    if args.only:
        cases = [c for c in cases if any(word in c.id for word in args.only)]
    if args.list:
        for c in cases:
            print(f"{c.kind:<9} {c.id}")
        return 0
    if args.out is None:
        parser.error("--out is required")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="trust-audit-") as root:
        results = run_cases(
            cases, args.jobs, args.timeout, Path(root), lambda line: print(line, flush=True)
        )
    data = {"metadata": metadata(args, len(cases), time.perf_counter() - start), "results": results}
    (args.out / "trust_audit.json").write_text(json.dumps(data, indent=1))
    report = format_report(data)
    (args.out / "trust_audit.md").write_text(report)
    print("\n".join(format_table(tally(results))))
    print(f"report: {args.out / 'trust_audit.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
