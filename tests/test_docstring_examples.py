"""Every docstring example in ``src/voidgrad`` runs, and every public name has one.

Each docstring that holds ``>>>`` examples is its own test case (id: the object's qualified
name), run with ``doctest`` (``ELLIPSIS | NORMALIZE_WHITESPACE``). Attribute docstrings (a
string right after a module-level assignment, which ``doctest`` does not see) count too.
Modules whose optional dependency is missing are skipped, and the examples that start a Ray
runtime or need Mitsuba or Blender run with those tests instead (``RUN_ELSEWHERE``).
"""

from __future__ import annotations

import ast
import doctest
import importlib
import importlib.util
import inspect
import itertools
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


def attribute_docstrings(module: ModuleType) -> dict[str, str]:
    """The docstrings of ``module``'s module-level assignments: ``NAME = ...`` then a string."""
    body = ast.parse(inspect.getsource(module)).body
    found: dict[str, str] = {}
    for node, following in itertools.pairwise(body):
        target = (
            node.targets[0]
            if isinstance(node, ast.Assign) and len(node.targets) == 1
            else node.target
            if isinstance(node, ast.AnnAssign)
            else None
        )
        if (
            isinstance(target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            found[target.id] = inspect.cleandoc(following.value.value)
    return found


MODULES = _modules()
# (module, name) -> the attribute docstring of module.name
ATTRIBUTE_DOCSTRINGS = {
    (module, name): text
    for module in MODULES
    for name, text in attribute_docstrings(module).items()
}


def _doctests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    parser = doctest.DocTestParser()
    found: dict[str, doctest.DocTest] = {}
    for module in MODULES:
        for test in finder.find(module, module.__name__):
            if test.examples:
                found.setdefault(test.name, test)
    for (module, name), text in ATTRIBUTE_DOCSTRINGS.items():
        qualified = f"{module.__name__}.{name}"
        test = parser.get_doctest(text, {}, qualified, module.__file__, 0)
        if test.examples:
            found.setdefault(qualified, test)
    return sorted(found.values(), key=lambda t: t.name)


DOCTESTS = _doctests()
# Examples that need a slow runtime or an engine run with that engine's tests instead.
RUN_ELSEWHERE = {
    "voidgrad.evaluation.ray_backend.RayBackend": "tests/evaluation/test_ray.py (slow)",
    "voidgrad.integrations.": "tests/integrations/test_docstring_examples.py",
}


def doctests_under(prefix: str) -> list[doctest.DocTest]:
    """The docstring examples of the objects whose qualified name starts with ``prefix``."""
    return [test for test in DOCTESTS if test.name.startswith(prefix)]


def run_doctest(test: doctest.DocTest) -> None:
    """Run one docstring's examples from a fresh seed; fail with doctest's report."""
    torch.manual_seed(0)
    lines: list[str] = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    result = runner.run(test, out=lines.append, clear_globs=True)
    assert result.failed == 0, "".join(lines)


@pytest.mark.parametrize("test", DOCTESTS, ids=[t.name for t in DOCTESTS])
def test_docstring_example(test: doctest.DocTest) -> None:
    for prefix, where in RUN_ELSEWHERE.items():
        if test.name.startswith(prefix):
            pytest.skip(f"run by {where}")
    if test.name.startswith("voidgrad.rl") and importlib.util.find_spec("gymnasium") is None:
        pytest.skip("the voidgrad.rl examples run gymnasium environments")
    run_doctest(test)


@pytest.mark.parametrize("prefix", list(RUN_ELSEWHERE))
def test_examples_run_elsewhere_exist(prefix: str) -> None:
    assert doctests_under(prefix)


PUBLIC_NAMESPACES = [
    "voidgrad.adversarial",
    "voidgrad.integrations.mitsuba",
    "voidgrad.integrations.blender",
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


def _docstring(obj: object) -> str:
    """``obj``'s docstring; for data (a dict, a type alias), its attribute docstring."""
    if inspect.ismodule(obj) or inspect.isclass(obj) or callable(obj):
        return inspect.getdoc(obj) or ""
    for (module, name), text in ATTRIBUTE_DOCSTRINGS.items():
        if getattr(module, name, None) is obj:
            return text
    return ""


def test_every_public_name_has_a_docstring_example() -> None:
    missing = sorted(name for name, obj in _public_names().items() if ">>>" not in _docstring(obj))
    assert not missing, f"these public names lack a docstring example: {missing}"
