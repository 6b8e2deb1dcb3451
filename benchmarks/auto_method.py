"""``vg.minimize(method="auto")`` against the best and the worst setting of the bench's grid.

What is measured
----------------
Each *case* is a bench problem at one budget (``CASES``). On every case, 3
seeds, ``voidgrad bench`` runs

- the *grid*: ``smoothing``, ``spsa``, ``zerograds``, ``cma``, ``annealing``
  and ``ga`` at the bench's scale-based options (constant lr), and
  ``smoothing``, ``spsa``, ``zerograds`` again with ``lr_decay=0.01`` (the lr
  decays linearly to 1 % over the run): 9 settings;
- ``auto``: ``vg.minimize(method="auto", scale=s)`` with s the problem's scale
  (the same number every grid setting's options are built from), nothing else
  set;
- ``auto-x0``: ``vg.minimize(method="auto")`` with no scale (x0's
  root-mean-square stands in), as a user who gives none.

Every run's score is its *answer* (the better of its final iterate and its
best evaluated point, as the bench reports it) minus the problem's optimum:
the loss gap. Gaps under ``FLOOR`` · (start loss − optimum) count as that
floor: both sides of such a comparison have solved the problem to 9 digits,
and a ratio between two round-off residues (1e-22 against 4e-11 on
Rosenbrock) says nothing about a method. Per case, each setting's median gap
over the seeds; ``auto`` *passes* where its median gap is ≤ 1.5 × the best
setting's, and is *never the worst* where its median is below the worst
setting's.

The cases are split in two before ``auto``'s rules were written: ``seen``
(the bench's problems, whose grid results the rules were written from) and
``unseen`` (other dimensions, budgets and instances, run only after the rules
were fixed).

Run from the repository root (one thread per process; the grid of both sets
took about an hour of a loaded 2-core machine, auto a few minutes)::

    export OMP_NUM_THREADS=1 OUT=benchmarks/results/auto
    .venv/bin/python benchmarks/auto_method.py grid --set seen --out $OUT
    .venv/bin/python benchmarks/auto_method.py auto --set seen --out $OUT
    .venv/bin/python benchmarks/auto_method.py report --set seen --out $OUT
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from voidgrad.bench import BenchSettings, run_bench

#: Gaps below this fraction of the start's gap are "solved": compared as equal.
FLOOR = 1e-9
#: auto passes a case within this factor of the best setting's median gap.
TARGET = 1.5
SEEDS = 3

GRID_METHODS = ["smoothing", "spsa", "zerograds", "cma", "annealing", "ga"]
DECAYED_METHODS = ["smoothing", "spsa", "zerograds"]
LR_DECAY = 0.01


@dataclass(frozen=True)
class Case:
    """A problem spec (as ``voidgrad bench --problems`` writes it) at a budget."""

    problem: str
    budget: int

    @property
    def folder(self) -> str:
        return f"{self.problem.replace(':', '_').replace('=', '')}__{self.budget}"


CASES: dict[str, list[Case]] = {
    "seen": [
        Case("plateau", 2_000),
        Case("akima", 1_000),
        Case("sphere:100", 10_000),
        Case("rosenbrock:10", 20_000),
        Case("rastrigin:10", 20_000),
        Case("splines", 4_000),
        Case("rosenbrock:1000", 20_000),
        Case("rastrigin:1000", 20_000),
        Case("caustic", 4_000),
        Case("digits_mlp", 4_000),
        Case("texture:size=32", 15_360),
    ],
    "unseen": [
        Case("rastrigin:4", 4_000),
        Case("rosenbrock:30", 10_000),
        Case("splines:curves=2", 2_000),
        Case("sphere:1000", 20_000),
        Case("caustic:grid=16", 2_000),
        Case("texture:size=16", 3_840),
        Case("texture:size=24", 12_000),
    ],
}


def _runs(case: Case, out: Path, which: str) -> Iterable[BenchSettings]:
    """The bench runs of one case: the grid (two of them) or auto."""
    base = out / which / case.folder
    common = {"problems": [case.problem], "budget": case.budget, "seeds": SEEDS}
    if which == "grid":
        yield BenchSettings(methods=GRID_METHODS, out=base / "constant", **common)
        yield BenchSettings(
            methods=DECAYED_METHODS,
            out=base / "decayed",
            options={method: {"lr_decay": LR_DECAY} for method in DECAYED_METHODS},
            **common,
        )
    elif which == "auto":
        yield BenchSettings(methods=["auto"], out=base, **common)
    else:  # auto-x0: no scale given, as a user who passes none
        yield BenchSettings(methods=["auto"], out=base, options={"auto": {"scale": None}}, **common)


def _setting(method: str, which: str, options: dict[str, Any]) -> str:
    """A run's name in the report: the method, and how it differs from the bench's."""
    if which == "auto-x0":
        return "auto without scale"
    return method + (" + lr_decay" if options else "")


def run(which: str, cases: list[Case], out: Path) -> None:
    torch.set_num_threads(1)
    for case in cases:
        for settings in _runs(case, out, which):
            run_bench(settings, log=lambda line: print(line, flush=True))


def _cells(case: Case, out: Path, which: str) -> Iterable[dict[str, Any]]:
    """The finished bench runs of ``which`` on ``case``, each as a flat record."""
    for bench in _runs(case, out, which):
        if not (bench.out / "results.json").is_file():
            continue  # not run (yet)
        results = json.loads((bench.out / "results.json").read_text())
        for cell in results["cells"]:
            yield {
                "case": case.problem,
                "budget": case.budget,
                "setting": _setting(cell["method"], which, bench.options),
                "seed": cell["seed"],
                "dim": cell["dim"],
                "error": cell["error"],
                "answer": cell.get("answer"),
                "optimum": cell["optimum"],
                "start_loss": cell["start_loss"],
                "seconds": cell.get("seconds"),
                "chosen": cell.get("chosen"),
            }


def _medians(out: Path, case: Case, which: str) -> dict[str, dict[str, Any]]:
    """Per setting of ``which`` on ``case``: median gap, the seeds' gaps, wall seconds."""
    settings: dict[str, dict[str, Any]] = {}
    for cell in _cells(case, out, which):
        entry = settings.setdefault(cell["setting"], {"gaps": [], "seconds": [], "errors": 0})
        if cell["error"] is not None:
            entry["errors"] += 1
            continue
        optimum = cell["optimum"] or 0.0
        floor = FLOOR * (cell["start_loss"] - optimum)
        entry["dim"] = cell["dim"]
        entry["gaps"].append(max(cell["answer"] - optimum, floor))
        entry["seconds"].append(cell["seconds"])
        entry.setdefault("chosen", []).append(cell["chosen"])
    for entry in settings.values():
        entry["median"] = statistics.median(entry["gaps"]) if entry["gaps"] else math.inf
    return settings


def _chose(entry: dict[str, Any]) -> str:
    return ", ".join(sorted({str(c) for c in entry["chosen"]}))


def _unscaled(out: Path, case: Case) -> dict[str, Any] | None:
    """auto-x0's entry for ``case``, or None where it has not run."""
    return _medians(out, case, "auto-x0").get("auto without scale")


def report(cases: list[Case], out: Path, title: str) -> str:
    """The summary table (auto against the grid's best and worst), then each case's medians."""
    lines = [
        f"# {title}",
        "",
        "| problem | d | budget | best setting | its median gap | auto's median gap "
        "| auto / best | worst setting (median gap) | auto chose | pass "
        "| without scale: auto / best (chose) |",
        "|---|--:|--:|---|--:|--:|--:|---|---|---|---|",
    ]
    details = []
    passed = ran = 0
    for case in cases:
        grid = _medians(out, case, "grid")
        auto = _medians(out, case, "auto").get("auto")
        best = min(grid, key=lambda name: grid[name]["median"])
        worst = max(grid, key=lambda name: grid[name]["median"])
        dim = grid[best]["dim"]
        if auto is None:
            row = f"| {case.problem} | {dim} | {case.budget} | {best} | – | not run |"
            lines.append(row + " | | | | |")
            continue
        ran += 1
        ratio = auto["median"] / grid[best]["median"]
        ok = ratio <= TARGET and auto["median"] < grid[worst]["median"]
        passed += ok
        unscaled = _unscaled(out, case)
        if unscaled is None:
            without = "not run"
        else:
            without = f"{unscaled['median'] / grid[best]['median']:.2f} ({_chose(unscaled)})"
        lines.append(
            f"| {case.problem} | {dim} | {case.budget} | {best} | {grid[best]['median']:.3g} "
            f"| {auto['median']:.3g} | {ratio:.2f} | {worst} ({grid[worst]['median']:.3g}) "
            f"| {_chose(auto)} | {'yes' if ok else '**no**'} | {without} |"
        )
        runs = {**grid, "**auto**": auto}
        if unscaled is not None:
            runs["auto without scale"] = unscaled
        ranked = sorted(runs.items(), key=lambda item: item[1]["median"])
        details += [
            "",
            f"### {case.problem} at {case.budget} evaluations (d = {dim})",
            "",
            "| setting | median gap | gaps by seed | wall s (median) |",
            "|---|--:|---|--:|",
        ]
        for name, entry in ranked:
            gaps = ", ".join(f"{gap:.3g}" for gap in entry["gaps"])
            seconds = statistics.median(entry["seconds"]) if entry["seconds"] else math.nan
            details.append(f"| {name} | {entry['median']:.3g} | {gaps} | {seconds:.1f} |")
    lines += [
        "",
        f"auto within {TARGET}× of the best setting's median gap, and below the worst's: "
        f"{passed} of {ran} cases.",
        "",
        f"Gaps under {FLOOR:g} × the start's gap are shown as that floor.",
        "",
        "## Every setting, case by case",
        *details,
    ]
    return "\n".join(lines)


def cells(cases: list[Case], out: Path) -> list[dict[str, Any]]:
    """Every run of ``cases`` as a flat record: what the report is computed from."""
    return [
        cell
        for case in cases
        for which in ("grid", "auto", "auto-x0")
        for cell in _cells(case, out, which)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["grid", "auto", "auto-x0", "report"])
    parser.add_argument("--set", choices=sorted(CASES), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", help="comma-separated problem specs of the set to run")
    parser.add_argument("--json", type=Path, help="report: also write every run's record here")
    args = parser.parse_args()
    cases = CASES[args.set]
    if args.only:
        cases = [case for case in cases if case.problem in args.only.split(",")]
    if args.what == "report":
        print(report(cases, args.out, f'method="auto" against the grid: the {args.set} cases'))
        if args.json:
            args.json.write_text(json.dumps(cells(cases, args.out), indent=1))
    else:
        run(args.what, cases, args.out)


if __name__ == "__main__":
    main()
