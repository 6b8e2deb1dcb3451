"""Every docstring example in ``src/voidgrad`` runs, and the public names without one shrink.

Each docstring that holds ``>>>`` examples is its own test case (id: the object's qualified
name), run with ``doctest`` (``ELLIPSIS | NORMALIZE_WHITESPACE``). Modules whose optional
dependency is missing (bpy, mitsuba, ray) are skipped. ``MISSING_EXAMPLES`` is a ratchet:
the public names whose docstring has no example yet; it may only shrink.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import inspect
import pkgutil
from types import ModuleType

import pytest
import torch

import voidgrad

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules() -> list[ModuleType]:
    modules = [voidgrad]
    for info in pkgutil.walk_packages(voidgrad.__path__, prefix="voidgrad."):
        try:
            modules.append(importlib.import_module(info.name))
        except ImportError:  # an optional dependency (bpy, mitsuba, ray) is missing
            continue
    return modules


def _doctests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found: dict[str, doctest.DocTest] = {}
    for module in _modules():
        for test in finder.find(module, module.__name__):
            if test.examples:
                found.setdefault(test.name, test)
    return sorted(found.values(), key=lambda t: t.name)


DOCTESTS = _doctests()


@pytest.mark.parametrize("test", DOCTESTS, ids=[t.name for t in DOCTESTS])
def test_docstring_example(test: doctest.DocTest) -> None:
    if test.name.startswith("voidgrad.rl") and importlib.util.find_spec("gymnasium") is None:
        pytest.skip("the voidgrad.rl examples run gymnasium environments")
    torch.manual_seed(0)
    lines: list[str] = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    result = runner.run(test, out=lines.append, clear_globs=True)
    assert result.failed == 0, "".join(lines)


# The public names (in the namespaces below) whose docstring has no ``>>>`` example yet.
# Remove a name once it has one; never add one.
MISSING_EXAMPLES: set[str] = {
    # starts a Ray runtime: too slow for this file
    "voidgrad.evaluation.RayBackend",
    # a dict and a type alias: they carry no docstring of their own
    "voidgrad.problems.PROBLEMS",
    "voidgrad.problems.Point",
}

PUBLIC_NAMESPACES = [
    "voidgrad",
    "voidgrad.problems",
    "voidgrad.rl",
    "voidgrad.meta",
    "voidgrad.estimators",
    "voidgrad.evaluation",
    "voidgrad.optimize",
    "voidgrad.baselines",
]


def _public_names() -> dict[str, object]:
    names: dict[str, object] = {}
    for namespace in PUBLIC_NAMESPACES:
        module = importlib.import_module(namespace)
        for name in module.__all__:
            names[f"{namespace}.{name}"] = getattr(module, name)
    return names


def test_public_names_without_examples_only_shrink() -> None:
    missing = {
        name for name, obj in _public_names().items() if ">>>" not in (inspect.getdoc(obj) or "")
    }
    gained = sorted(MISSING_EXAMPLES - missing)
    lost = sorted(missing - MISSING_EXAMPLES)
    assert not gained, f"these have an example now; remove them from MISSING_EXAMPLES: {gained}"
    assert not lost, f"these public names lack a docstring example: {lost}"
