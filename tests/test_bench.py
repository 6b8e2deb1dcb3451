"""voidgrad bench: cells at equal budgets, report, plots, resuming, bad input."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import re
import sys

import pytest
import torch

from voidgrad import bench, cli, problems
from voidgrad.bench import (
    BenchSettings,
    Cell,
    LinearLrDecay,
    Scaled,
    SettingsError,
    format_report,
    make_problem,
    method_options,
    minimize_method,
    paired,
    parse_options,
    parse_problem,
    pinned,
    problem_scale,
    run_bench,
)


def settings(tmp_path, **changes) -> BenchSettings:
    values = {
        "problems": ["sphere:3", "akima"],
        "methods": ["smoothing", "spsa"],
        "budget": 160,
        "seeds": 2,
        "out": tmp_path,
    }
    values.update(changes)
    return BenchSettings(**values)


def test_every_cell_runs_at_the_same_budget_and_the_report_lists_them(tmp_path) -> None:
    logged: list[str] = []
    results = run_bench(settings(tmp_path), log=logged.append)
    cells = results["cells"]
    assert len(cells) == 2 * 2 * 2 and all(c["error"] is None for c in cells)
    assert all(c["nevals"] <= 160 and c["evals"][-1] == c["nevals"] for c in cells)
    assert all(c["answer"] == min(c["fun"], c["last"]) for c in cells)
    assert {c["problem"] for c in cells} == {"sphere-3", "akima"}
    report = (tmp_path / "report.md").read_text()
    assert "## sphere-3 (d = 3" in report and "| smoothing |" in report and "| spsa |" in report
    assert "answer / start (median)" in report
    assert (tmp_path / "sphere-3.png").exists() and (tmp_path / "akima.png").exists()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["settings"]["budget"] == 160 and len(saved["cells"]) == 8


def test_finished_cells_are_not_run_again(tmp_path) -> None:
    run_bench(settings(tmp_path, methods=["smoothing"]), log=lambda line: None)
    logged: list[str] = []
    run_bench(settings(tmp_path, methods=["smoothing", "spsa"]), log=logged.append)
    kept = [line for line in logged if "done before, kept" in line]
    assert len(kept) == 4 and all("smoothing" in line for line in kept)


def test_a_failing_method_is_reported_and_the_rest_runs(tmp_path) -> None:
    """lr = 1e200 throws smoothing's iterate to 1e200 after one step: the sphere overflows."""
    diverging = {"smoothing": {"lr": 1e200}}
    results = run_bench(
        settings(tmp_path, problems=["sphere:3"], budget=32, options=diverging),
        log=lambda line: None,
    )
    errors = {c["method"]: c["error"] for c in results["cells"]}
    assert "fn returned a non-finite output" in errors["smoothing"]
    assert errors["spsa"] is None
    assert "| smoothing | error: EvaluationError" in (tmp_path / "report.md").read_text()
    assert not (tmp_path / "cells" / "sphere-3__smoothing__0.json").exists()  # runs again


class ScoringFails:
    """A problem whose loss fails once the run is over (at the scoring of its last iterate).

    The Evaluator runs ``loss`` under ``torch.no_grad``; the bench scores the start and
    the last iterate outside it, so a call with grad enabled after an evaluated one is
    the scoring of the last iterate.
    """

    def __init__(self, problem) -> None:
        self.problem = problem
        self.evaluated = False

    def __getattr__(self, name: str):
        return getattr(self.problem, name)

    def loss(self, x: torch.Tensor) -> float:
        if torch.is_grad_enabled() and self.evaluated:
            raise RuntimeError("the loss failed at the last iterate")
        self.evaluated = self.evaluated or not torch.is_grad_enabled()
        return self.problem.loss(x)


def test_a_loss_failing_at_the_last_iterate_is_a_failed_cell(tmp_path, monkeypatch) -> None:
    make_problem = bench.make_problem
    monkeypatch.setattr(bench, "make_problem", lambda cell: ScoringFails(make_problem(cell)))
    results = run_bench(
        settings(tmp_path, problems=["sphere:3"], methods=["smoothing"], seeds=1, budget=32),
        log=lambda line: None,
    )  # the failure escaped run_cell as a raw traceback
    (cell,) = results["cells"]
    assert cell["error"] == "RuntimeError: the loss failed at the last iterate"


def test_options_and_problem_specs_parse() -> None:
    assert parse_problem("rastrigin:1000") == ("rastrigin", (("dim", 1000),))
    assert parse_problem("plateau") == ("plateau", ())
    assert parse_problem("texture:size=8") == ("texture", (("size", 8),))
    assert parse_options(
        ["smoothing.sigma=0.5", "nevergrad:NGOpt.budget=3", "cma.diagonal=true"]
    ) == {
        "smoothing": {"sigma": 0.5},
        "nevergrad:NGOpt": {"budget": 3},
        "cma": {"diagonal": True},
    }
    assert parse_options(["zerograds.lr=0.02s", "ga.mode=fast"]) == {
        "zerograds": {"lr": Scaled(0.02)},
        "ga": {"mode": "fast"},  # an "s" after a non-number is just a string
    }
    with pytest.raises(ValueError, match="unknown problem 'moon'"):
        parse_problem("moon")
    with pytest.raises(ValueError, match="dimension must be a positive int"):
        parse_problem("sphere:0")
    with pytest.raises(ValueError, match="problem 'texture' takes no 'dim'; its options:"):
        parse_problem("texture:12")
    with pytest.raises(ValueError, match="method.key=value"):
        parse_options(["sigma=0.5"])


def test_the_command_line_runs_a_small_benchmark(tmp_path, capsys) -> None:
    argv = ["bench", "--problems", "sphere:2", "--methods", "smoothing", "--budget", "32"]
    argv += ["--seeds", "1", "--out", str(tmp_path), "--option", "smoothing.sigma=0.3"]
    assert cli.main(argv) == 0
    cell = json.loads((tmp_path / "results.json").read_text())["cells"][0]
    assert cell["options"]["sigma"] == 0.3
    assert "report:" in capsys.readouterr().out


def test_the_zerograds_presets_run_under_their_bench_names(tmp_path) -> None:
    results = run_bench(
        settings(
            tmp_path, problems=["sphere:3"], methods=["zerograds", "zerograds-reference"], seeds=1
        ),
        log=lambda line: None,
    )
    options = {c["method"]: c["options"] for c in results["cells"]}
    assert all(c["error"] is None and c["nevals"] <= 160 for c in results["cells"])
    assert "LinearAnneal" in options["zerograds"]["schedule"]
    assert options["zerograds-reference"]["frame"] == "fixed"
    assert options["zerograds-reference"]["unbiased"] is False
    assert minimize_method("zerograds-reference") == "zerograds"
    high = method_options("zerograds-reference", 1.0, 100, {}, dim=5000)
    assert (high["width"], high["depth"], high["encoding_levels"]) == (128, 8, 6)


def _plain(options: dict) -> dict:
    """Options with a schedule written as its repr (LinearAnneal has no ==)."""
    return {k: repr(v) if k == "schedule" else v for k, v in options.items()}


@pytest.mark.parametrize(
    ("method", "scale", "budget", "dim", "expected"),
    [
        (
            "smoothing",
            2.0,
            800,
            3,
            {
                "sigma": 1.0,
                "samples": 8,
                "lr": 0.1,
                "schedule": "LinearAnneal(sigma_min=0.1, total_steps=100, constant_steps=0)",
                "importance": True,  # spelled out since vg.minimize's smoothing went plain
            },
        ),
        (
            "zerograds",
            0.5,
            10,
            3,
            {
                "sigma": 0.25,
                "samples": 4,
                "lr": 0.025,
                "schedule": "LinearAnneal(sigma_min=0.025, total_steps=2, constant_steps=0)",
            },
        ),
        ("spsa", 4.0, 800, 3, {"c": 0.4, "samples": 2, "lr": 0.2}),
        ("fd", 0.25, 800, 3, {"h": 0.00025, "lr": 0.0125}),
        ("cma", 2.0, 800, 3, {"sigma0": 0.6}),
        ("annealing", 2.0, 800, 3, {}),
        ("ga", 2.0, 800, 3, {}),
        ("nevergrad:NGOpt", 2.0, 800, 3, {}),
        (
            "zerograds-reference",
            0.5,
            800,
            999,
            {
                "sigma": 0.1,
                "schedule": "None",
                "samples": 20,
                "lr": 0.005,
                "inner_sigma": 0.1,
                "fit_steps": 3,
                "surrogate_lr": 1e-3,
                "unbiased": False,
                "frame": "fixed",
                "inputs": "raw",
                "targets": "raw",
                "order": "step-first",
                "theta_steps": 1,
                "zero_output": False,
                "activate_output": True,
                "low_rank_above": 200_000,
                "width": 64,
                "depth": 3,
                "encoding_levels": 0,
            },
        ),
    ],
)
def test_a_cells_options_are_the_benchs_as_they_were(method, scale, budget, dim, expected) -> None:
    """Hand-computed: a change here changes every stored cell's identity and result."""
    assert _plain(method_options(method, scale, budget, {}, dim)) == expected


def test_an_unknown_method_has_no_bench_options() -> None:
    with pytest.raises(ValueError, match="unknown method 'smoothnig' \\(did you mean 'smoothing'"):
        method_options("smoothnig", 1.0, 800, {})


def test_lr_decay_names_the_methods_it_fits() -> None:
    message = r"\(smoothing, spsa, zerograds, zerograds-reference\); got 'fd'"
    with pytest.raises(ValueError, match=message):
        method_options("fd", 1.0, 800, {"lr_decay": 0.5})


def test_the_presets_are_the_registrys() -> None:
    assert bench.PRESETS == {"zerograds-reference": "zerograds"}
    assert bench.ZEROGRADS_SAMPLES == 4


def test_the_scale_is_the_rms_distance_to_the_answer_or_the_spread_of_x0() -> None:
    sphere = problems.make("sphere", dim=4, seed=0)
    expected = float((sphere.x0 - sphere.x_target).double().pow(2).mean().sqrt())
    assert problem_scale(sphere) == pytest.approx(expected)
    digits = problems.make("digits_mlp", seed=0)
    assert problem_scale(digits) == pytest.approx(float(digits.x0.double().std()))


@pytest.mark.parametrize(("method", "samples"), [("smoothing", 8), ("zerograds", 4)])
def test_the_sigma_schedule_spans_the_run_whatever_the_samples(method: str, samples: int) -> None:
    default = method_options(method, 1.0, 800, {})
    assert default["samples"] == samples
    assert default["schedule"].total_steps == 800 // samples
    doubled = method_options(method, 1.0, 800, {"samples": 2 * samples})
    assert doubled["samples"] == 2 * samples
    assert doubled["schedule"].total_steps == 800 // (2 * samples)


def test_a_scaled_option_runs_and_is_recorded_as_typed(tmp_path) -> None:
    options = parse_options(["smoothing.lr=0.1s"])
    results = run_bench(
        settings(tmp_path, problems=["sphere:3"], methods=["smoothing"], options=options),
        log=lambda line: None,
    )
    scale = problem_scale(problems.make("sphere", dim=3))
    assert results["cells"][0]["options"]["lr"] == pytest.approx(0.1 * scale)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["settings"]["options"] == {"smoothing": {"lr": "0.1s"}}


def test_scaled_options_resolve_to_each_problems_scale() -> None:
    small = method_options("zerograds", 0.5, 800, {"lr": Scaled(0.02), "sigma": 0.3})
    large = method_options("zerograds", 4.0, 800, {"lr": Scaled(0.02), "sigma": 0.3})
    assert (small["lr"], large["lr"]) == (0.01, 0.08)
    assert small["sigma"] == large["sigma"] == 0.3  # a plain number stays absolute


@pytest.mark.parametrize(("method", "samples"), [("smoothing", 8), ("spsa", 2), ("zerograds", 4)])
def test_lr_decay_spans_the_runs_steps(method: str, samples: int) -> None:
    assert "lr_schedule" not in method_options(method, 1.0, 800, {})
    decayed = method_options(method, 1.0, 800, {"lr_decay": 0.01})
    assert decayed["lr_schedule"] == LinearLrDecay(0.01, 800 // samples)
    assert "lr_decay" not in decayed  # vg.minimize has no such option
    doubled = method_options(method, 1.0, 800, {"lr_decay": 0.5, "samples": 2 * samples})
    assert doubled["lr_schedule"] == LinearLrDecay(0.5, 800 // (2 * samples))


def test_linear_lr_decay_reaches_its_end_factor_and_stays() -> None:
    weight = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([weight], lr=2.0)
    scheduler = LinearLrDecay(end_factor=0.25, total_steps=4)(optimizer)
    rates = []
    for _ in range(6):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([2.0, 1.625, 1.25, 0.875, 0.5, 0.5])


@pytest.mark.parametrize(
    ("method", "value", "message"),
    [
        ("cma", 0.1, "lr_decay needs a method"),
        ("smoothing", 0.0, "in \\(0, 1\\]"),
        ("smoothing", 1.5, "in \\(0, 1\\]"),
        ("smoothing", True, "a number"),
        ("smoothing", "fast", "a number"),
    ],
)
def test_lr_decay_refuses_bad_input(method: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        method_options(method, 1.0, 800, {"lr_decay": value})


@pytest.mark.parametrize(
    ("end_factor", "total_steps", "message"),
    [
        (0.0, 10, "end_factor must be a number in \\(0, 1\\]"),
        (0.5, 0, "total_steps must be an int >= 1"),
    ],
)
def test_linear_lr_decay_refuses_bad_input(
    end_factor: float, total_steps: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        LinearLrDecay(end_factor, total_steps)


def test_an_lr_decay_run_records_its_schedule(tmp_path) -> None:
    options = parse_options(["smoothing.lr_decay=0.01"])
    results = run_bench(
        settings(tmp_path, problems=["sphere:3"], methods=["smoothing"], seeds=1, options=options),
        log=lambda line: None,
    )
    (record,) = results["cells"]
    assert record["error"] is None
    assert record["options"]["lr_schedule"] == repr(LinearLrDecay(0.01, 160 // 8))


def test_auto_runs_at_the_problems_scale_and_records_what_it_chose(tmp_path) -> None:
    results = run_bench(
        settings(tmp_path, problems=["sphere:3"], methods=["auto"], budget=400, seeds=1),
        log=lambda line: None,
    )
    (record,) = results["cells"]
    scale = problem_scale(make_problem(Cell("sphere", (("dim", 3),), "auto", 0)))
    assert record["error"] is None and record["options"] == {"scale": scale}
    assert record["chosen"] == "annealing"  # the sphere is smooth in float64, 133 d
    assert "| auto (chose annealing) |" in (tmp_path / "report.md").read_text()
    assert pinned("auto", {"scale": 1.0}) == {"scale": 1.0}  # auto chooses its lr schedule


def cell(seed: int, answer: float, optimum: float = 0.0, error: str | None = None) -> dict:
    return {"seed": seed, "answer": answer, "optimum": optimum, "error": error}


def test_paired_compares_the_seeds_both_methods_finished() -> None:
    first = [cell(0, 1.0), cell(1, 10.0), cell(2, 1.0), cell(3, 5.0, error="crashed")]
    second = [cell(0, 10.0), cell(1, 10.0), cell(2, 100.0), cell(3, 1.0)]
    comparison = paired(first, second)
    assert (comparison.seeds, comparison.better, comparison.worse) == (3, 2, 0)
    assert comparison.log_ratios == pytest.approx((-1.0, 0.0, -2.0))
    assert comparison.mean_log_ratio == pytest.approx(-1.0)
    assert comparison.standard_error == pytest.approx(1.0 / 3**0.5)


def test_paired_gives_no_ratio_when_a_seed_is_solved_exactly() -> None:
    comparison = paired(
        [cell(0, 2.0), cell(1, 2.0)],
        [cell(0, 2.0), cell(1, 3.0)],
    )
    assert comparison.log_ratios  # gaps 2 vs 2 and 2 vs 3: ratios exist
    exact = paired([cell(0, 2.0, optimum=2.0), cell(1, 2.5)], [cell(0, 3.0), cell(1, 3.0)])
    assert (exact.better, exact.worse, exact.log_ratios) == (2, 0, ())
    assert math.isnan(exact.mean_log_ratio)


def test_the_report_compares_the_first_method_seed_by_seed(tmp_path) -> None:
    run_bench(settings(tmp_path, problems=["sphere:3"]), log=lambda line: None)
    report = (tmp_path / "report.md").read_text()
    assert "Seed by seed, `smoothing` against each method" in report
    assert "| spsa | 2 |" in report


# --- a cell is reused only when everything that defines it is the same (issue 19, item 7) ---


def one_cell(tmp_path, **changes) -> BenchSettings:
    values = {"problems": ["sphere:2"], "methods": ["smoothing"], "budget": 32, "seeds": 1}
    return settings(tmp_path, **{**values, **changes})


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"budget": 48}, "budget"),
        ({"options": {"smoothing": {"sigma": 1.0}}}, "options.sigma"),
        ({"options": {"smoothing": {"lr_decay": 0.5}}}, "options.lr_schedule"),
        ({"workers": 2}, "workers"),
    ],
)
def test_a_cell_run_with_other_settings_is_run_again(tmp_path, change, field) -> None:
    run_bench(one_cell(tmp_path), log=lambda line: None)
    logged: list[str] = []
    results = run_bench(one_cell(tmp_path, **change), log=logged.append)
    (record,) = results["cells"]
    assert not any("kept" in line for line in logged)
    assert any(f"ran with other settings ({field}" in line for line in logged), logged
    assert record["budget"] == change.get("budget", 32)
    assert record["identity"]["workers"] == change.get("workers", 1)
    stored = json.loads((tmp_path / "cells" / "sphere-2__smoothing__0.json").read_text())
    assert stored == json.loads(json.dumps(record))  # the new run replaced the old file


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ('{"problem": "sphere-2", "answ', "unreadable"),
        (b"\xff\xfe\x00garbage", "unreadable"),
        ("[1, 2, 3]", "damaged"),
        ("{}", "damaged"),
        ("answer", "unreadable"),
    ],
)
def test_a_damaged_cell_file_is_run_again(tmp_path, content, why) -> None:
    path = tmp_path / "cells" / "sphere-2__smoothing__0.json"
    path.parent.mkdir()
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    logged: list[str] = []
    (record,) = run_bench(one_cell(tmp_path), log=logged.append)["cells"]
    assert record["error"] is None and record["nevals"] <= 32
    assert any(why in line and "running it again" in line for line in logged), logged


@pytest.mark.parametrize(
    ("field", "value"),
    [("answer", "0.1"), ("evals", [1, "x"]), ("best", None), ("seconds", True), ("error", "x")],
)
def test_a_cell_file_with_a_wrong_field_is_not_trusted(tmp_path, field, value) -> None:
    run_bench(one_cell(tmp_path), log=lambda line: None)
    path = tmp_path / "cells" / "sphere-2__smoothing__0.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, field: value}))
    logged: list[str] = []
    (rerun,) = run_bench(one_cell(tmp_path), log=logged.append)["cells"]
    assert rerun == record | {"seconds": rerun["seconds"]}
    assert any(f"damaged (field {field!r}" in line for line in logged), logged


def test_a_cell_file_without_its_identity_is_run_again(tmp_path) -> None:
    """A file written before cells recorded what defines them proves nothing: run again."""
    run_bench(one_cell(tmp_path), log=lambda line: None)
    path = tmp_path / "cells" / "sphere-2__smoothing__0.json"
    record = json.loads(path.read_text())
    del record["identity"]
    path.write_text(json.dumps(record))
    logged: list[str] = []
    run_bench(one_cell(tmp_path), log=logged.append)
    assert any("damaged (field 'identity'" in line for line in logged), logged


# --- failed cells are reported and make the command fail ---


def test_the_command_line_fails_after_the_report_when_cells_failed(tmp_path, capsys) -> None:
    argv = ["bench", "--problems", "sphere:2", "--methods", "smoothing,spsa", "--budget", "32"]
    argv += ["--seeds", "1", "--out", str(tmp_path), "--option", "smoothing.lr=1e200"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "1 of 2 cells failed" in err
    assert "sphere-2 smoothing seed 0: EvaluationError: fn returned a non-finite output" in err
    report = (tmp_path / "report.md").read_text()
    assert "| smoothing | error: EvaluationError" in report and "| spsa | " in report


def test_the_report_counts_the_seeds_that_failed() -> None:
    done = {"error": None, "answer": 1.0, "fun": 1.0, "seconds": 0.1, "evals_to_threshold": None}
    base = {"problem": "sphere-2", "method": "smoothing", "dim": 2, "start_loss": 4.0}
    base |= {"optimum": 0.0, "threshold": 1e-6}
    cells = [base | done | {"seed": 0}, base | {"seed": 1, "error": "ValueError: boom"}]
    results = {
        "settings": {"budget": 32, "seeds": 2, "workers": 1},
        "machine": {"platform": "p", "cpus": 1, "torch": "t", "date": "d"},
        "cells": cells,
    }
    report = format_report(results)
    assert "| smoothing (1 of 2 seeds failed) | 1 |" in report
    assert "- sphere-2, smoothing, seed 1: ValueError: boom" in report


# --- bad input is a usage error before any cell runs ---


def bench_argv(tmp_path, *extra: str, **flags: str) -> list[str]:
    values = {"problems": "sphere:2", "methods": "smoothing", "budget": "32", "seeds": "1"}
    values |= {"out": str(tmp_path / "out"), **flags}
    argv = ["bench"]
    for name, value in values.items():
        argv += [f"--{name}", value]
    return argv + list(extra)


@pytest.mark.parametrize(
    ("extra", "flags", "message"),
    [
        ((), {"problems": "texture:size=-1"}, "texture:size=-1: size must be an int >= 4"),
        ((), {"problems": "plateau:start=abc"}, "start must be two numbers"),
        ((), {"problems": "sphere:2:dim=3"}, "gives 'dim' twice"),
        ((), {"problems": "sphere:2,sphere:dim=2"}, "'sphere:dim=2' is the same problem as"),
        ((), {"problems": ","}, "problems must name at least one problem"),
        ((), {"problems": "moon"}, "unknown problem 'moon'"),
        ((), {"methods": "newton"}, "unknown method 'newton'"),
        ((), {"methods": "zerograd"}, "(did you mean 'zerograds'?)"),
        ((), {"methods": "adam"}, "'adam' is an optimizer: pass optimizer='adam'"),
        ((), {"methods": "score"}, "method 'score' is of kind 'distribution'"),
        ((), {"methods": "smoothing,smoothing"}, "methods list 'smoothing' twice"),
        pytest.param(
            (),
            {"methods": "nevergrad:Nope"},
            "unknown nevergrad optimizer 'Nope'",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("nevergrad") is None,
                reason="needs nevergrad (the bench extra) to know its optimizers",
            ),
        ),
        ((), {"methods": "fd", "budget": "3"}, "budget 3 is too small for one step of 'fd'"),
        (("--option", "smoothing.lr_decay=5"), {}, "lr_decay must be a number in (0, 1]"),
        (("--option", "smoothing.sigma=-1"), {}, "sigma must be a finite number > 0"),
        (("--option", "smoothing.bogus=1"), {}, "unexpected keyword argument 'bogus'"),
        (("--option", "smoothing.seed=3"), {}, "option smoothing.seed: the bench sets seed"),
        (("--option", "cma.sigma0=1"), {}, "options for 'cma', which is not among the methods"),
        (("--option", "smoothing.lr=1", "--option", "smoothing.lr=2"), {}, "given twice"),
        (("--option", "sigma=1"), {}, "an option must read method.key=value"),
        ((), {"budget": "0"}, "argument --budget: must be a positive int"),
        ((), {"seeds": "0"}, "argument --seeds: must be a positive int"),
        ((), {"seeds": "-1"}, "argument --seeds: must be a positive int"),
        ((), {"workers": "0"}, "argument --workers: must be a positive int"),
    ],
)
def test_bad_input_is_a_usage_error_before_any_cell_runs(
    tmp_path, capsys, extra, flags, message
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(bench_argv(tmp_path, *extra, **flags))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: voidgrad bench" in err and message in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was written


def test_an_unwritable_out_is_a_usage_error(tmp_path, capsys) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(bench_argv(tmp_path, out=str(tmp_path / "file" / "bench")))
    assert exit_info.value.code == 2
    assert "out: cannot write to" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("method", "module"),
    [
        ("cma", "cma"),
        ("ga", "nevergrad"),
        ("nevergrad:NGOpt", "nevergrad"),
    ],
)
def test_a_missing_optional_dependency_is_named_before_any_cell_runs(
    tmp_path, capsys, monkeypatch, method, module
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # what `import module` sees when it is absent
    with pytest.raises(SystemExit) as exit_info:
        cli.main(bench_argv(tmp_path, methods=f"smoothing,{method}"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"method {method!r} cannot run here: this method needs" in err, err
    assert "pip install 'voidgrad[bench]'" in err
    assert not (tmp_path / "out").exists()  # not even the smoothing cell ran


def test_run_bench_refuses_bad_settings_before_any_cell_runs(tmp_path) -> None:
    bad = one_cell(tmp_path / "out", options={"cma": {"sigma0": 1.0}})
    with pytest.raises(SettingsError, match="options for 'cma'"):
        run_bench(bad, log=lambda line: None)
    with pytest.raises(ValueError, match="budget must be an int >= 1"):
        run_bench(one_cell(tmp_path / "out", budget=0), log=lambda line: None)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [("problem", "akima"), ("method", "spsa"), ("seed", 1), ("budget", 16)],
)
def test_a_cell_file_whose_labels_disagree_with_its_cell_is_not_trusted(
    tmp_path, field, value
) -> None:
    run_bench(one_cell(tmp_path), log=lambda line: None)
    path = tmp_path / "cells" / "sphere-2__smoothing__0.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), field: value}))
    logged: list[str] = []
    (rerun,) = run_bench(one_cell(tmp_path), log=logged.append)["cells"]
    assert rerun[field] != value
    assert any(f"damaged (field {field!r} is {value!r}" in line for line in logged), logged


def test_each_run_shows_a_progress_bar_of_its_budget_and_best_loss(tmp_path, capsys) -> None:
    two = settings(tmp_path, problems=["sphere:2"], methods=["spsa"], budget=24, seeds=2)
    run_bench(two, log=lambda line: None, progress=True)
    err = capsys.readouterr().err
    assert len(re.findall(r"spsa: 100%.*24/24 .*best=[0-9.e+-]+", err)) == 2, err
    run_bench(two, log=lambda line: None, progress=True)
    assert capsys.readouterr().err == ""  # kept cells do not run: no bar


def test_a_bench_is_quiet_by_default(tmp_path, capsys) -> None:
    run_bench(one_cell(tmp_path), log=lambda line: None)
    assert capsys.readouterr().err == ""


def curve(method: str, best: list[float], optimum: float = 0.0) -> dict:
    evals = [10**i for i in range(len(best))]
    return {"method": method, "error": None, "optimum": optimum, "evals": evals, "best": best}


def test_a_run_that_reaches_the_optimum_is_drawn_at_zero_on_a_symlog_axis() -> None:
    pytest.importorskip("matplotlib")
    reached, stalled = curve("cma", [5.0, 0.1, 3e-4, 0.0]), curve("spsa", [6.0, 2.0, 0.5])
    axes = bench.curve_figure("p", {"cma": [reached], "spsa": [stalled]}).axes[0]
    assert [list(line.get_ydata()) for line in axes.lines] == [reached["best"], stalled["best"]]
    assert axes.get_yscale() == "symlog"
    assert axes.yaxis.get_transform().linthresh == 1e-4  # the smallest gap, 3e-4, floored
    assert "linear within ±1e-04" in axes.get_ylabel()
    bottom, top = axes.get_ylim()
    assert -1e-4 < bottom < 0 and top >= 6.0  # 0 is inside the axes, off its frame


def test_a_gap_below_the_stated_optimum_is_drawn_as_it_is() -> None:
    pytest.importorskip("matplotlib")
    below = curve("cma", [1.0, 0.02, -0.003], optimum=1.0)
    axes = bench.curve_figure("p", {"cma": [below]}).axes[0]
    assert list(axes.lines[0].get_ydata()) == pytest.approx([0.0, -0.98, -1.003])
    assert axes.get_yscale() == "symlog" and axes.get_ylim()[0] <= -1.003


def test_curves_above_the_optimum_keep_a_log_axis_and_their_values() -> None:
    pytest.importorskip("matplotlib")
    above = curve("cma", [5.0, 0.1, 1e-30], optimum=0.0)
    failed = {**curve("cma", [1.0]), "error": "RuntimeError: boom"}
    axes = bench.curve_figure("p", {"cma": [above, failed]}).axes[0]
    assert [list(line.get_ydata()) for line in axes.lines] == [above["best"]]
    assert axes.get_yscale() == "log" and axes.get_ylabel() == "best loss − optimum"


@pytest.mark.filterwarnings("error")  # matplotlib overflows on a linear region ~1e-308
def test_a_subnormal_gap_draws_on_a_linear_region_of_at_least_1e_300() -> None:
    pytest.importorskip("matplotlib")
    figure = bench.curve_figure("p", {"cma": [curve("cma", [5.0, 5e-324, 0.0])]})
    figure.savefig(io.BytesIO(), format="png")
    axes = figure.axes[0]
    assert axes.yaxis.get_transform().linthresh == 1e-300
    assert list(axes.lines[0].get_ydata()) == [5.0, 5e-324, 0.0]


def test_the_zerograds_reference_preset_is_the_reference_loop_per_task() -> None:
    from voidgrad import registry

    options = {
        dim: method_options("zerograds-reference", 0.1, 4000, {}, dim=dim)
        for dim in (2, 1024, 35_152)
    }
    for preset in options.values():
        assert (preset["inputs"], preset["targets"], preset["order"]) == (
            "raw",
            "raw",
            "step-first",
        )
        assert preset["activate_output"] and not preset["zero_output"]
        assert preset["samples"] == 20
    caustic, mlp = options[1024], options[35_152]
    assert (options[2]["theta_steps"], caustic["theta_steps"], mlp["theta_steps"]) == (1, 1, 4)
    assert (caustic["encoding_levels"], caustic["fit_steps"], caustic["surrogate_lr"]) == (
        6,
        3,
        1e-4,
    )
    assert (mlp["encoding_levels"], mlp["fit_steps"]) == (3, 10)
    assert (options[2]["encoding_levels"], options[2]["surrogate_lr"]) == (0, 1e-3)
    vg_options = {k: v for k, v in caustic.items() if k != "lr"}
    estimator = registry.method("zerograds").make(seed=0, **vg_options)
    assert estimator.inputs == "raw" and estimator.order == "step-first"


def test_the_report_says_what_auto_chose_on_each_seed() -> None:
    cells = [{"chosen": "smoothing"}, {"chosen": "spsa"}, {"chosen": "smoothing"}]
    assert bench._chosen(cells) == " (chose smoothing 2×, spsa 1×)"
    assert bench._chosen([{"chosen": None}, {}]) == ""  # another method's cells
