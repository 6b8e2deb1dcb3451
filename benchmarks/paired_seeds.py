"""Two methods of one ``voidgrad bench`` run compared seed by seed.

A seed fixes the problem instance and the start, and both methods ran on it, so the
per-seed ratio of their answers removes the spread between instances that dominates the
medians of a few seeds. Prints, per problem: the seeds both methods ran, how many the
first method won, and the mean of log10(answer_A / answer_B) with its standard error.

    .venv/bin/python benchmarks/paired_seeds.py DIR zerograds smoothing
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path


def paired(folder: Path, first: str, second: str) -> dict[str, dict[str, float]]:
    """Per problem: seeds, wins of ``first``, mean and standard error of log10 ratios."""
    answers: dict[tuple[str, str, int], float] = {}
    for path in sorted((folder / "cells").glob("*.json")):
        cell = json.loads(path.read_text())
        if cell.get("answer") is not None:
            answers[(cell["problem"], cell["method"], cell["seed"])] = cell["answer"]
    summary = {}
    for problem in sorted({key[0] for key in answers}):
        ratios = [
            math.log10(answers[(problem, first, seed)] / answers[(problem, second, seed)])
            for (name, method, seed) in answers
            if name == problem and method == first and (problem, second, seed) in answers
        ]
        if len(ratios) < 2:
            continue
        summary[problem] = {
            "seeds": len(ratios),
            "wins": sum(r < 0 for r in ratios),
            "mean_log10_ratio": statistics.fmean(ratios),
            "standard_error": statistics.stdev(ratios) / math.sqrt(len(ratios)),
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="a voidgrad bench --out folder")
    parser.add_argument("first")
    parser.add_argument("second")
    args = parser.parse_args()
    for problem, row in paired(args.folder, args.first, args.second).items():
        print(
            f"{problem}: {args.first} better on {row['wins']} of {row['seeds']} seeds; "
            f"mean log10({args.first}/{args.second}) {row['mean_log10_ratio']:+.3f} "
            f"± {row['standard_error']:.3f}"
        )


if __name__ == "__main__":
    main()
