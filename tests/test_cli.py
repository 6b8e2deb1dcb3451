"""``voidgrad demo``: autograd and finite differences stall, Gaussian smoothing converges."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest

import voidgrad as vg
from voidgrad import registry
from voidgrad.cli import DemoSettings, main, run_demo
from voidgrad.problems import PROBLEMS, make

METHODS = ("autograd", "finite differences", "gaussian smoothing")


def _table_rows(output: str) -> dict[str, list[float]]:
    rows = {}
    for line in output.splitlines():
        for method in METHODS:
            if line.startswith(method):
                rows[method] = [float(v) for v in line[len(method) :].split()]
    return rows


def test_demo_prints_the_table_without_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--steps", "10", "--no-plot", "--out", str(out)]) == 0
    output = capsys.readouterr().out
    assert "method" in output and "param error" in output and "wall time" in output
    rows = _table_rows(output)
    assert set(rows) == set(METHODS)
    assert [row[0] for row in rows.values()] == [80, 80, 80]  # the same budget for each
    assert not out.exists()


def test_demo_writes_the_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "demo"
    assert main(["demo", "--steps", "5", "--out", str(out)]) == 0
    figure = out / "plateau.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(figure) in capsys.readouterr().out


def test_demo_without_matplotlib_says_how_to_get_the_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    out = tmp_path / "demo"
    assert main(["demo", "--steps", "5", "--out", str(out)]) == 0
    assert "pip install voidgrad[plot]" in capsys.readouterr().out
    assert not (out / "plateau.png").exists()


def test_demo_is_reproducible(capsys: pytest.CaptureFixture[str]) -> None:
    results = []
    for _ in range(2):
        main(["demo", "--steps", "20", "--seed", "3", "--no-plot"])
        results.append(_table_rows(capsys.readouterr().out))
    assert results[0] == results[1]


@pytest.mark.parametrize(
    "argv",
    [[], ["demo", "--steps", "0"], ["demo", "--steps", "abc"], ["demo", "--seed", "-1"], ["nope"]],
)
def test_bad_command_lines_exit_with_usage(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage: voidgrad" in capsys.readouterr().err


@pytest.mark.parametrize(
    "seed", [0, 1, *(pytest.param(seed, marks=pytest.mark.slow) for seed in range(2, 10))]
)
def test_only_smoothing_finds_the_target_at_default_settings(seed: int) -> None:
    problem = make("plateau")
    settings = DemoSettings(seed=seed)
    runs = {run.label: run for run in run_demo(problem, settings)}
    assert set(runs) == set(METHODS)
    for run in runs.values():
        assert run.evaluations[-1] == settings.budget
    smoothing = runs["gaussian smoothing"]
    assert smoothing.parameter_error < 0.02
    assert smoothing.image_loss == 0.0
    for stuck in ("autograd", "finite differences"):
        assert runs[stuck].parameter_error > 0.2
        assert runs[stuck].image_loss == problem.loss(problem.x0)


def _bench_help(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--help"])
    assert exit_info.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines at spaces


def test_bench_help_lists_the_registrys_methods(capsys: pytest.CaptureFixture[str]) -> None:
    listed = f"comma-separated methods: {', '.join(registry.names(*registry.RUNNABLE))}"
    assert listed in _bench_help(capsys)
    assert "nevergrad:<name>" in listed and "zerograds-reference" in listed
    assert "score" not in listed  # vg.expectation's estimators are not bench methods


def test_bench_help_lists_the_problems(capsys: pytest.CaptureFixture[str]) -> None:
    assert f"NAME is one of: {', '.join(PROBLEMS)}" in _bench_help(capsys)
    assert "caustic" in PROBLEMS


def test_version_answers(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"voidgrad {vg.__version__}"
    # the package's own number is the one it was installed with
    assert vg.__version__ == importlib.metadata.version("voidgrad")


def _tiny_bench(tmp_path: Path, *flags: str) -> list[str]:
    return [
        *("bench", "--problems", "sphere:2", "--methods", "spsa", "--budget", "24"),
        *("--seeds", "1", "--out", str(tmp_path), *flags),
    ]


def test_bench_shows_a_progress_bar_per_run_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(_tiny_bench(tmp_path)) == 0
    err = capsys.readouterr().err
    assert "spsa: 100%" in err and "24/24" in err and "best=" in err, err


def test_bench_no_progress_turns_the_bars_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(_tiny_bench(tmp_path, "--no-progress")) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "report:" in captured.out
