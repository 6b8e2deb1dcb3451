"""voidgrad.registry: one table of methods, its defaults, its errors, and the docs that list it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import voidgrad as vg
from voidgrad import registry
from voidgrad.estimators import LinearAnneal
from voidgrad.registry import BenchScale, method, names
from voidgrad.rl.algorithm import PolicyGradientSettings
from voidgrad.rl.gradients import PolicyGradientMethod

ROOT = Path(__file__).resolve().parents[1]


def test_the_module_doc_holds_the_table_the_entries_render() -> None:
    assert registry.__doc__ is not None
    assert registry.table() in registry.__doc__, (
        "the table in voidgrad/registry.py's docstring differs from the entries; paste the "
        "output of `python -c 'import voidgrad.registry as r; print(r.table())'` there"
    )


def test_the_docs_have_a_registry_page_in_the_api_reference() -> None:
    assert "::: voidgrad.registry" in (ROOT / "docs/api/registry.md").read_text()
    nav = (ROOT / "mkdocs.yml").read_text()
    assert "voidgrad.registry: api/registry.md" in nav


def test_every_entry_has_a_name_unique_in_its_kind_a_kind_and_a_summary() -> None:
    keys = {(entry.name, entry.kind) for entry in registry.METHODS}
    assert len(keys) == len(names()) == len(registry.METHODS)
    assert {entry.kind for entry in registry.METHODS} == set(registry.KINDS)
    assert all(entry.summary for entry in registry.METHODS)
    # at least these (a new estimator is one file plus an entry: nothing here lists it again)
    assert set(names("blackbox", presets=False)) >= {"smoothing", "spsa", "fd", "zerograds"}
    assert set(names("derivative-free")) >= {"cma", "annealing", "ga", "nevergrad:<name>"}
    assert set(names("distribution")) >= {
        "score",
        "pathwise",
        "gumbel_softmax",
        "straight_through",
        "rebar",
        "relax",
        "lax",
        "disarm",
    }
    assert "zerograds-reference" in names("blackbox")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("smoothing", "GaussianSmoothing(sigma=0.1, samples=8, antithetic=True, importance=True"),
        ("spsa", "SPSA(c=0.1, samples=2)"),
        ("fd", "FiniteDifferences(h=0.001, scheme='central')"),
        ("zerograds", "ZeroGrads(sigma=0.1, samples=4,"),
    ],
)
def test_a_blackbox_method_builds_with_minimizes_defaults(name: str, expected: str) -> None:
    estimator = method(name).make(seed=0)
    assert isinstance(estimator, vg.BlackBoxEstimator)
    assert repr(estimator).startswith(expected)


def test_the_callers_options_win_over_the_defaults() -> None:
    estimator = method("smoothing").make(seed=0, sigma=0.3, antithetic=False)
    assert repr(estimator).startswith("GaussianSmoothing(sigma=0.3, samples=8, antithetic=False")
    assert dict(method("smoothing").defaults) == {"sigma": 0.1, "samples": 8}  # untouched


def test_the_seed_reaches_the_estimator() -> None:
    def estimate(seed: int) -> torch.Tensor:
        loss = vg.blackbox(lambda x: float(x.pow(2).sum()), method("spsa").make(seed=seed))
        theta = torch.ones(3, requires_grad=True)
        loss(theta).backward()
        assert theta.grad is not None
        return theta.grad

    assert torch.equal(estimate(1), estimate(1))
    assert not torch.equal(estimate(1), estimate(2))


def test_defaults_are_read_only() -> None:
    with pytest.raises(TypeError):
        method("fd").defaults["h"] = 1.0  # type: ignore[index]


@pytest.mark.parametrize("name", names("distribution"))
def test_every_distribution_method_builds_given_its_required_options(name: str) -> None:
    entry = method(name)
    supplied = {"control": nn.Linear(2, 1)} if "control" in entry.required else {}
    assert isinstance(entry.make(seed=0, **supplied), vg.DistributionEstimator)


@pytest.mark.parametrize("name", ["lax", "relax"])
def test_a_missing_required_option_is_named(name: str) -> None:
    assert method(name).required == ("control",)
    with pytest.raises(ValueError, match=f"method '{name}' needs the option\\(s\\) control"):
        method(name).make(seed=0)


@pytest.mark.parametrize("name", ["cma", "nevergrad:NGOpt"])
def test_a_derivative_free_build_starts_its_adapter(name: str) -> None:
    pytest.importorskip("cma")
    pytest.importorskip("nevergrad")
    entry = method(name)
    assert entry.kind == "derivative-free" and entry.name == name and entry.extra == "bench"
    adapter = entry.make(seed=0)(torch.zeros(3, dtype=torch.float64), budget=40)
    try:
        assert adapter.ask(10) is not None
    finally:
        adapter.close()


def test_a_derivative_free_build_names_the_extra_it_needs(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cma", None)  # what `import cma` sees when it is absent
    start = method("cma").make(seed=0)  # nothing is imported before the adapter is built
    with pytest.raises(ImportError, match=r"pip install 'voidgrad\[bench\]'"):
        start(torch.zeros(2, dtype=torch.float64), budget=10)


def test_the_nevergrad_family_is_matched_by_prefix() -> None:
    entry = method("nevergrad:DE")
    assert entry.name == "nevergrad:DE" and entry.summary == method("nevergrad:<name>").summary
    with pytest.raises(ValueError, match="unknown method 'nevergrad:'"):
        method("nevergrad:")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("zerograd", "unknown method 'zerograd' (did you mean 'zerograds'?)"),
        ("Smoothing", "(did you mean 'smoothing'?)"),
        ("nevergrd:NGOpt", "(did you mean 'nevergrad:NGOpt'?)"),
        ("adam", "'adam' is an optimizer: pass optimizer='adam'"),
        ("SGD", "'SGD' is an optimizer: pass optimizer='sgd'"),
        ("newton", "unknown method 'newton'; known methods: auto, smoothing, spsa, fd, zerograds"),
    ],
)
def test_an_unknown_name_is_refused_with_help(name: str, message: str) -> None:
    with pytest.raises(ValueError, match="known methods: ") as error:
        method(name)
    assert message in str(error.value)


def test_the_kinds_a_caller_runs_limit_the_names() -> None:
    with pytest.raises(ValueError, match="method 'score' is of kind 'distribution'") as error:
        method("score", registry.RUNNABLE)
    assert "disarm" not in str(error.value) and "nevergrad:<name>" in str(error.value)
    with pytest.raises(ValueError, match="known methods: smoothing") as error:
        method("bogus", ["blackbox"])
    assert "cma" not in str(error.value)
    with pytest.raises(ValueError, match="kind must be one of"):
        names("gradient")


def test_a_name_two_kinds_share_is_looked_up_in_the_callers_kinds() -> None:
    assert method("lax").kind == "distribution"  # the first in the table's order
    assert method("lax", ["distribution"]).build is vg.LAX
    policy_gradient = method("lax", ["policy-gradient"]).make()
    assert isinstance(policy_gradient, PolicyGradientMethod)
    assert policy_gradient.actions == "continuous" and policy_gradient.learned_control
    assert names("policy-gradient") == ["actor_critic", "lax", "relax"]
    with pytest.raises(ValueError, match="known estimators: actor_critic, lax, relax$"):
        method("reinforce", ["policy-gradient"], argument="estimator")


def test_rl_reads_its_estimators_from_the_registry() -> None:
    for name in names("policy-gradient"):
        settings = PolicyGradientSettings(name, seed=0, episodes_per_update=2)
        assert settings.method == method(name, ["policy-gradient"]).make()
    methods = {name: method(name, ["policy-gradient"]).make() for name in names("policy-gradient")}
    handles = {name: (m.handles(True), m.handles(False)) for name, m in methods.items()}
    assert handles == {
        "actor_critic": (True, True),
        "lax": (False, True),
        "relax": (True, False),
    }


def test_a_preset_is_refused_where_presets_are_not_run() -> None:
    assert method("zerograds-reference").preset_of == "zerograds"
    with pytest.raises(ValueError, match="bench preset: 'zerograds'"):
        method("zerograds-reference", presets=False)
    assert "zerograds-reference" not in names(presets=False)


def test_a_name_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="method must be a string; got int"):
        method(3)


def test_the_optimizers_are_torchs() -> None:
    assert registry.OPTIMIZERS["adam"] is torch.optim.Adam
    assert set(registry.OPTIMIZERS) == {"adam", "adamw", "sgd", "rmsprop"}


def test_bench_options_are_relative_to_the_scale() -> None:
    at = BenchScale(2.0, 800, dim=5)
    smoothing = method("smoothing").bench_options(at)
    assert {k: v for k, v in smoothing.items() if k != "schedule"} == {
        "sigma": 1.0,
        "samples": 8,
        "lr": 0.1,
        "importance": True,  # the bench's smoothing is PRDPT's
    }
    assert repr(smoothing["schedule"]) == repr(LinearAnneal(0.1, total_steps=100))
    assert method("cma").bench_options(at) == {"sigma0": 0.6}
    assert method("ga").bench_options(at) == {}
    assert method("score").bench_options(at) == {}


@pytest.mark.parametrize(
    ("overrides", "steps"),
    [({}, 100), ({"samples": 16}, 50), ({"samples": 0}, 2), ({"samples": 2.5}, 2)],
)
def test_a_schedule_spans_the_steps_of_the_overridden_samples(overrides, steps) -> None:
    assert BenchScale(1.0, 800, overrides=overrides).steps(8) == steps


def test_a_schedule_has_at_least_two_steps() -> None:
    assert BenchScale(1.0, 8).steps(8) == 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((0.0, 10), "scale must be a finite number > 0"),
        ((1.0, 0), "budget must be an int >= 1"),
        ((1.0, 10, 0), "dim must be an int >= 1"),
    ],
)
def test_a_bench_scale_refuses_bad_input(arguments, message) -> None:
    with pytest.raises(ValueError, match=message):
        BenchScale(*arguments)
