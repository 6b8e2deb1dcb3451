"""examples/fit_problem.py: ``--option KEY=VALUE`` reaches the method, as bench's --option does."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

import voidgrad as vg
from voidgrad.bench import LinearLrDecay, problem_scale

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def fit_problem():
    spec = importlib.util.spec_from_file_location("fit_problem", EXAMPLES / "fit_problem.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_options_override_the_bench_settings_in_units_of_the_scale():
    problem = vg.problems.make("plateau", seed=0)
    options = fit_problem().settings(
        "smoothing", problem, 800, ["importance=false", "sigma=0.2s", "lr_decay=0.1"]
    )
    assert options["importance"] is False
    assert options["sigma"] == pytest.approx(0.2 * problem_scale(problem))
    assert options["lr_schedule"] == LinearLrDecay(end_factor=0.1, total_steps=100)


@pytest.mark.parametrize("pair", ["lr_decay", "=0.1", "smoothing.sigma=0.1"])
def test_an_option_not_written_key_equals_value_is_an_error_naming_it(pair):
    problem = vg.problems.make("plateau", seed=0)
    expected = r"--option must read KEY=VALUE.*" + re.escape(repr(pair))
    with pytest.raises(ValueError, match=expected):
        fit_problem().settings("smoothing", problem, 800, [pair])


def test_a_problem_takes_constructor_arguments_as_in_the_bench():
    assert fit_problem().problem_spec("caustic:photons=128:resolution=32") == (
        "caustic",
        (("photons", 128), ("resolution", 32)),
    )


def test_a_problem_argument_it_does_not_take_is_a_usage_error_naming_it():
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="'caustic' takes no 'colour'"):
        fit_problem().problem_spec("caustic:colour=3")
