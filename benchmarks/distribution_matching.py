"""Distribution matching through a hard-edged renderer: how well vg.adversarial recovers it.

What is measured
----------------
The supershape task (``voidgrad.problems.supershape.SupershapeMatching``):
target images are renders of (m, n) ~ LogNormal(μ*, σ*) with μ* = (log 6,
log 3), σ* = (0.1, 0.1); the learner starts at μ₀ = (log 4, log 2), σ₀ =
(0.4, 0.4) and sees only images. For each seed (a different target set) it runs
``vg.adversarial`` with its defaults (score function with a leave-one-out
baseline on −log D(G(z)), the default discriminator) and records, after every
step, μ and σ. Reported per seed and shape parameter:

- the relative errors of the learned log-normal's **mean** E[z] = exp(μ + σ²/2)
  and **standard deviation** E[z]·sqrt(exp(σ²) − 1) against the hidden ones,
  at the last step (the target of the issue: within 10 %);
- the same for μ and σ themselves (absolute error of μ, relative of σ);
- renders made, wall time, and the curves (``distribution_matching.png``), plus
  targets against the final renders for the first seed.

Run from the repository root::

    .venv/bin/python benchmarks/distribution_matching.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

import voidgrad as vg
from common import write_results
from voidgrad.problems.supershape import SupershapeMatching, log_normal_moments

SHAPE_PARAMETERS = ("m", "n")


def run(seed: int, steps: int, samples: int, targets: int) -> tuple[dict[str, Any], Any, Any]:
    torch.set_num_threads(1)
    task = SupershapeMatching(seed=1000 + seed)
    target_images = task.targets(targets)
    started = time.perf_counter()
    result = vg.adversarial(
        task.learner(),
        task.render,
        target_images,
        steps=steps,
        samples=samples,
        seed=seed,
        progress=False,
    )
    seconds = time.perf_counter() - started
    history = result.parameter_history()
    loc, scale = history["loc"], history["log_scale"].exp()
    mean, std = log_normal_moments(loc[-1], scale[-1])
    hidden_mean, hidden_std = log_normal_moments(task.hidden_loc, task.hidden_scale)
    errors = {
        name: {
            "mean_relative_error": float((mean[i] - hidden_mean[i]).abs() / hidden_mean[i]),
            "std_relative_error": float((std[i] - hidden_std[i]).abs() / hidden_std[i]),
            "loc_abs_error": float((loc[-1, i] - task.hidden_loc[i]).abs()),
            "scale_relative_error": float(
                (scale[-1, i] - task.hidden_scale[i]).abs() / task.hidden_scale[i]
            ),
            "learned_mean": float(mean[i]),
            "learned_std": float(std[i]),
            "hidden_mean": float(hidden_mean[i]),
            "hidden_std": float(hidden_std[i]),
        }
        for i, name in enumerate(SHAPE_PARAMETERS)
    }
    record = {
        "seed": seed,
        "seconds": seconds,
        "renders": result.renders_evaluated,
        "errors": errors,
        "within_10_percent": all(
            e["mean_relative_error"] <= 0.1 and e["std_relative_error"] <= 0.1
            for e in errors.values()
        ),
        "loc": loc.tolist(),
        "scale": scale.tolist(),
        "d_real": [r["d_real"] for r in result.history],
        "d_fake": [r["d_fake"] for r in result.history],
    }
    return record, result, (task, target_images)


def plot(records: list[dict[str, Any]], task: SupershapeMatching, path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 6.5), layout="constrained")
    axes = figure.subplots(2, 2, sharex=True)
    hidden_mean, hidden_std = log_normal_moments(task.hidden_loc, task.hidden_scale)
    for column, name in enumerate(SHAPE_PARAMETERS):
        for record in records:
            loc = torch.tensor(record["loc"])[:, column]
            scale = torch.tensor(record["scale"])[:, column]
            mean, std = log_normal_moments(loc, scale)
            label = f"seed {record['seed']}"
            axes[0, column].plot(mean.numpy(), label=label)
            axes[1, column].plot(std.numpy(), label=label)
        for row, (value, what) in enumerate(((hidden_mean, "mean"), (hidden_std, "std"))):
            axis = axes[row, column]
            axis.axhline(float(value[column]), color="black", linestyle="--", label="hidden")
            axis.axhspan(0.9 * float(value[column]), 1.1 * float(value[column]), color="0.9")
            axis.set_ylabel(f"{what} of {name}")
        axes[1, column].set_xlabel("step")
        axes[1, column].set_yscale("log")
    axes[0, 0].legend(fontsize="small")
    figure.suptitle("vg.adversarial on supershapes: learned mean and std (grey: ±10 %)")
    figure.savefig(path, dpi=100)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--targets", type=int, default=1024)
    parser.add_argument("--jobs", type=int, default=2, help="seeds run at once")
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/distribution_matching")
    )
    arguments = parser.parse_args()
    a = arguments
    with ProcessPoolExecutor(a.jobs) as pool:
        runs = list(
            pool.map(run, a.seeds, *[[v] * len(a.seeds) for v in (a.steps, a.samples, a.targets)])
        )
    task = runs[0][2][0]
    records = []
    for seed, (record, result, (_, targets)) in zip(a.seeds, runs, strict=True):
        records.append(record)
        errors = ", ".join(
            f"{name}: mean {e['mean_relative_error']:.1%}, std {e['std_relative_error']:.1%}"
            for name, e in record["errors"].items()
        )
        print(f"seed {seed}: {errors}; {record['renders']} renders in {record['seconds']:.0f} s")
        if seed == arguments.seeds[0]:
            arguments.out.mkdir(parents=True, exist_ok=True)
            result.save_figure(arguments.out / "distribution_matching_samples.png", targets)
    write_results(
        arguments.out,
        "distribution_matching",
        "relative error of the learned log-normal's mean and std per shape parameter",
        records,
        steps=arguments.steps,
        samples=arguments.samples,
        targets=arguments.targets,
        hidden_loc=task.hidden_loc.tolist(),
        hidden_scale=task.hidden_scale.tolist(),
        start_loc=task.start_loc.tolist(),
        start_scale=task.start_scale.tolist(),
    )
    plot(records, task, arguments.out / "distribution_matching.png")


if __name__ == "__main__":
    main()
