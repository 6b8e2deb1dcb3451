"""Metappearance: meta-learned initialisation and step sizes against training from scratch.

What is measured
----------------
For each family (``TextureFamily``, ``BRDFFamily``) and each k in ``--ks``, a
``vg.meta.MetaLearner`` with k inner steps is meta-trained for ``--meta-steps``
outer steps (``--meta-batch`` tasks each) on tasks drawn from the family. On
``--held-out`` tasks it never saw, reported as medians over the tasks:

- **meta, k steps**: the error (MSE on the task's dense set) after adapting
  the meta-learned initialisation with the learned step sizes for k steps;
- **random init, k steps**: a freshly initialised model after k Adam steps,
  with the step size from ``--adam-lrs`` that is best on these tasks;
- **random init to convergence**: the same Adam run for ``--long-steps``
  steps; reported are its final error and the first step at which it is as
  good as meta at the largest k;
- **samples per task**: batch × steps (what one adaptation sees).

A picture shows held-out tasks reconstructed at 25/50/75/100 % of the
largest k's inner steps, by the meta-learned model and by random init + Adam
(at the step size that was best for k steps).

Run from the repository root::

    .venv/bin/python benchmarks/metappearance.py --out benchmarks/results/metappearance
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import voidgrad as vg
from common import write_results
from voidgrad.problems import BRDFFamily, TextureFamily

FAMILIES = {"texture": TextureFamily, "brdf": BRDFFamily}


def adam_errors(family: Any, task: Any, steps: int, lr: float) -> list[float]:
    """Errors after 0 … steps Adam steps from a fresh model."""
    model = family.model(seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    errors = [task.error(model)]
    for _ in range(steps):
        loss = task(model)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        errors.append(task.error(model))
    return errors


def first_step_at_or_below(errors: list[float], level: float) -> int | None:
    return next((step for step, error in enumerate(errors) if error <= level), None)


def run_family(name: str, arguments: argparse.Namespace) -> tuple[dict[str, Any], dict[int, Any]]:
    family = FAMILIES[name]()
    tasks = family.held_out(arguments.held_out)
    learners: dict[int, Any] = {}
    record: dict[str, Any] = {"family": name, "batch": family.batch, "ks": {}}
    for k in arguments.ks:
        learner = vg.meta.MetaLearner(
            family.model(seed=0),
            inner_steps=k,
            inner_lr=arguments.inner_lr,
            meta_lr=arguments.meta_lr,
            meta_batch=arguments.meta_batch,
            seed=0,
        )
        started = time.perf_counter()
        learner.meta_fit(family, arguments.meta_steps, progress=False)
        seconds = time.perf_counter() - started
        learners[k] = learner
        meta_errors = [task.error(learner.adapt(task)) for task in tasks]
        best_lr, random_errors = min(
            (
                (lr, [adam_errors(family, task, k, lr)[-1] for task in tasks])
                for lr in arguments.adam_lrs
            ),
            key=lambda pair: statistics.median(pair[1]),
        )
        record["ks"][k] = {
            "meta_fit_seconds": seconds,
            "meta_error": statistics.median(meta_errors),
            "random_init_error": statistics.median(random_errors),
            "random_init_adam_lr": best_lr,
            "samples_per_task": k * family.batch,
            "meta_errors": meta_errors,
            "random_init_errors": random_errors,
        }
        print(
            f"{name} k={k}: meta {statistics.median(meta_errors):.2e}, random init "
            f"{statistics.median(random_errors):.2e} (Adam {best_lr}); meta_fit {seconds:.0f} s"
        )
    largest = max(arguments.ks)
    level = record["ks"][largest]["meta_error"]
    long_runs = [
        adam_errors(family, task, arguments.long_steps, arguments.long_lr) for task in tasks
    ]
    reached = [first_step_at_or_below(errors, level) for errors in long_runs]
    record["converged"] = {
        "steps": arguments.long_steps,
        "adam_lr": arguments.long_lr,
        "final_error": statistics.median(errors[-1] for errors in long_runs),
        "steps_to_meta_level": reached,
        "median_steps_to_meta_level": statistics.median(
            r if r is not None else arguments.long_steps + 1 for r in reached
        ),
        "samples_to_meta_level": [None if r is None else r * family.batch for r in reached],
    }
    print(
        f"{name} random init, {arguments.long_steps} Adam steps: "
        f"{record['converged']['final_error']:.2e}; steps to reach meta k={largest}: {reached}"
    )
    return record, learners


def picture(
    path: Path,
    arguments: argparse.Namespace,
    learners: dict[str, dict[int, Any]],
    adam_lrs: dict[str, float],
) -> None:
    from matplotlib.figure import Figure

    k = max(arguments.ks)
    fractions = (0.25, 0.5, 0.75, 1.0)
    steps = [max(1, round(f * k)) for f in fractions]
    rows = [(name, task) for name in learners for task in FAMILIES[name]().held_out(2)]
    figure = Figure(figsize=(2 * (2 * len(steps) + 1), 2.1 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), 2 * len(steps) + 1, squeeze=False)
    for row, (name, task) in enumerate(rows):
        family = FAMILIES[name]()
        learner = learners[name][k]
        panels = [("reference", task.render())]
        panels += [(f"meta, {s} steps", task.render(learner.adapt(task, s))) for s in steps]
        for s in steps:
            model = family.model(seed=1)
            optimizer = torch.optim.Adam(model.parameters(), lr=adam_lrs[name])
            for _ in range(s):
                loss = task(model)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            panels.append((f"random + Adam, {s}", task.render(model)))
        exposure = 1 / float(panels[0][1].max().clamp(min=1e-6))  # the reference fills the range
        for axis, (title, image) in zip(axes[row], panels, strict=True):
            axis.imshow((image * exposure).clamp(0, 1).numpy())
            axis.set_title(title, fontsize=7)
            axis.set_xticks([])
            axis.set_yticks([])
    figure.savefig(path, dpi=90)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--meta-steps", type=int, default=500)
    parser.add_argument("--meta-batch", type=int, default=4)
    parser.add_argument("--meta-lr", type=float, default=1e-3)
    parser.add_argument("--inner-lr", type=float, default=0.05)
    parser.add_argument("--held-out", type=int, default=8)
    parser.add_argument("--adam-lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2, 3e-2, 1e-1])
    parser.add_argument("--long-steps", type=int, default=3000)
    parser.add_argument("--long-lr", type=float, default=3e-3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/metappearance"))
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    records, learners = [], {}
    for name in arguments.families:
        record, learners[name] = run_family(name, arguments)
        records.append(record)
    write_results(
        arguments.out,
        "metappearance",
        "held-out error after k inner steps: meta-learned vs random init, and steps to converge",
        records,
        **{k: v for k, v in vars(arguments).items() if k != "out"},
    )
    k = max(arguments.ks)
    best = {r["family"]: r["ks"][k]["random_init_adam_lr"] for r in records}
    picture(arguments.out / "metappearance.png", arguments, learners, best)


if __name__ == "__main__":
    main()
