"""The docstring examples of vg.integrations, each run where its engine is installed."""

from __future__ import annotations

import importlib.util

import pytest

from tests.test_docstring_examples import doctests_under, run_doctest

ENGINES = {"voidgrad.integrations.mitsuba.": "mitsuba", "voidgrad.integrations.blender.": "bpy"}
EXAMPLES = [
    pytest.param(example, engine, id=example.name)
    for prefix, engine in ENGINES.items()
    for example in doctests_under(prefix)
]


@pytest.mark.parametrize(("example", "engine"), EXAMPLES)
def test_docstring_example(example, engine: str) -> None:
    if importlib.util.find_spec(engine) is None:
        pytest.skip(f"needs {engine}: make test-integrations")
    run_doctest(example)
