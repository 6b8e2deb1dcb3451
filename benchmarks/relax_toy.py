"""The RELAX paper's toy problem: gradient variance and progress per estimator.

Grathwohl et al. 2018 ("Backpropagation through the void", figure 1) minimize

    L(θ) = E_{b ~ Bernoulli(σ(θ))}[(b − t)²],   t = 0.499,

over the logit θ, starting at θ = 0. Exactly, L(θ) = σ(θ)(1 − t)² + (1 − σ(θ))t²
and dL/dθ = σ'(θ)(1 − 2t): the optimum is σ(θ) → 0, but the two outcomes differ
in cost by only 1 − 2t = 0.002, so a noisy gradient estimate barely finds it.

What is measured
----------------
For each method and seed, θ (float64, shape [1]) starts at 0 and takes
``--steps`` Adam steps (lr ``--lr`` = 0.01) on the method's gradient estimate,
each estimate from one call

    loss = vg.expectation(f, Bernoulli(logits=θ), samples=N, estimator=est)
    loss.backward()

with f(b) = (b[..., 0] − t)² (torch ops, so it also accepts the relaxed inputs
that REBAR feeds it). Recorded:

* after every step (and at step 0): the *exact* loss σ(θ)(1 − t)² + (1 − σ(θ))t²
  and σ(θ), computed analytically from the current θ, not from samples;
* every ``--every`` steps (at the θ *before* that step's update, and at the
  final θ): ln Var[ĝ], the natural log of the unbiased sample variance of
  ``--variance-draws`` independent estimates ĝ of dL/dθ at the current θ, and
  their mean (next to the exact gradient, as a bias check). The draws come from
  one vectorized call: θ is expanded to ``[draws, 1]``, so the distribution has
  batch_shape ``(draws, 1)``, f returns ``[N, draws]`` and each row of
  ``θ_draws.grad`` is one independent estimate. The measurement uses a separate
  estimator object with its own seed, built from the current control state
  (``train_control=False``), so it neither trains the control variate nor
  consumes the training estimator's random stream: the training trajectory does
  not depend on ``--every`` or ``--variance-draws``.

Methods (N = samples per estimate; evaluations of f per step in parentheses):

* ``exact``: the analytic gradient σ'(θ)(1 − 2t) (0 evaluations; variance 0,
  not plotted).
* ``reinforce``: ``vg.ScoreFunction()``, N = 1 (1).
* ``reinforce_loo``: ``vg.ScoreFunction("leave_one_out")``, N = 2 (2).
* ``rebar``: ``vg.REBAR(temperature=0.5, eta=1.0, lr=--control-lr)``, N = 1
  (3: f at b, σ_λ(z) and σ_λ(z̃)); η and λ are trained on the variance.
* ``relax``: ``vg.RELAX(control, lr=--control-lr)``, N = 1 (1). The control, as
  in the paper's toy code, is c_φ(z) = s · MLP(2 σ(z / λ) − 1): one hidden layer
  of 10 tanh units, a trainable temperature λ (initially 0.5) and a trainable
  scale s initialised to 0, so the control starts at 0 (``--relax-input z``
  feeds z itself to the MLP instead; ``--relax-relaxed-f`` adds REBAR's
  η f(σ_λ(z)) term).
* ``disarm``: ``vg.DisARM()``, N = 2 (one antithetic pair, 2).

The evaluations per step are counted by the Evaluator, not assumed, and go to
the JSON. They differ between methods: REBAR spends three times REINFORCE's.

Paper reference (natural log variance, one sample per step): REINFORCE ≈ −4.2
throughout (analytic at θ = 0: ln(1/64) ≈ −4.16), REBAR ≈ −4.2 to −4.7, RELAX
≈ −12 at 1k steps, ≈ −18 at 4k, ≈ −16 at 10k. σ(θ) at 10k steps: exact ≈ 0,
RELAX ≈ 0.06, REBAR ≈ 0.47, REINFORCE noisy 0.3–0.7.

Output: ``relax_toy.json`` (every number above, per method and seed, plus
metadata: date, command, torch version, git commit, steps, seeds, wall times)
and ``relax_toy.png`` (σ(θ) vs steps; ln Var vs steps, smoothed by a rolling
mean over ``--smooth`` measurements, 50 as in the paper) in ``--out``, and a
table on stdout: ln Var (mean over seeds of the rolling mean) at about 1k steps, half-way and at the
end, and the final σ(θ).

Run from the repository root::

    .venv/bin/python benchmarks/relax_toy.py                 # 3 seeds x 3000 steps
    .venv/bin/python benchmarks/relax_toy.py --steps 10000 --seeds 1

The defaults (3 seeds x 3000 steps, a variance measurement every 10 steps) take
about 3.5 minutes of CPU time with one thread (measured: 200 s of CPU, 353 s of
wall time on a 2-core VM shared with other jobs, load average about 3.5). The
cost is linear in steps x seeds: per step REBAR and RELAX take about 5-10 ms,
the others about 2-5 ms, and each variance measurement a few ms.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import voidgrad as vg
from common import run_metadata

METHODS = ("exact", "reinforce", "reinforce_loo", "rebar", "relax", "disarm")
SAMPLES = {"exact": 0, "reinforce": 1, "reinforce_loo": 2, "rebar": 1, "relax": 1, "disarm": 2}
LABELS = {
    "exact": "exact gradient",
    "reinforce": "REINFORCE (N=1)",
    "reinforce_loo": "REINFORCE + LOO (N=2)",
    "rebar": "REBAR (N=1)",
    "relax": "RELAX (N=1)",
    "disarm": "DisARM (N=2)",
}
DTYPE = torch.float64


class ToyControl(nn.Module):
    """c_φ(z) = s · MLP(x): x = 2σ(z/λ) − 1 (or z), 10 tanh units, scale s starting at 0.

    Maps z ``[..., 1]`` to ``[..., 1]``; the paper's toy control variate.
    """

    def __init__(self, hidden: int = 10, temperature: float = 0.5, relaxed_input: bool = True):
        super().__init__()
        self.relaxed_input = relaxed_input
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.scale = nn.Parameter(torch.zeros(()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = 2 * torch.sigmoid(z / self.log_temperature.exp()) - 1 if self.relaxed_input else z
        return self.scale * self.net(x)


def exact_loss(theta: float, target: float) -> float:
    p = 1 / (1 + math.exp(-theta))
    return p * (1 - target) ** 2 + (1 - p) * target**2


def exact_gradient(theta: float, target: float) -> float:
    p = 1 / (1 + math.exp(-theta))
    return p * (1 - p) * (1 - 2 * target)


def make_estimator(method: str, args: argparse.Namespace, seed: int) -> Any:
    """The training estimator for ``method`` (None for the exact gradient)."""
    if method == "exact":
        return None
    if method == "reinforce":
        return vg.ScoreFunction(seed=seed)
    if method == "reinforce_loo":
        return vg.ScoreFunction("leave_one_out", seed=seed)
    if method == "rebar":
        return vg.REBAR(temperature=0.5, eta=1.0, lr=args.control_lr, seed=seed)
    if method == "relax":
        control = ToyControl(relaxed_input=args.relax_input == "relaxed").to(DTYPE)
        return vg.RELAX(
            control,
            relaxed_f=args.relax_relaxed_f,
            temperature=0.5,
            eta=1.0,
            lr=args.control_lr,
            seed=seed,
        )
    if method == "disarm":
        return vg.DisARM(seed=seed)
    raise ValueError(method)


def measurement_estimator(method: str, est: Any, seed: int) -> Any:
    """An estimator equal to ``est`` in its current state that does not train its control."""
    if method in ("rebar", "relax"):
        return vg.RELAX(
            est.control,  # shared module: same φ, never stepped (train_control=False)
            relaxed_f=est.relaxed_f,
            temperature=float(est.log_temperature.detach().exp()),
            eta=float(est.eta.detach()),
            train_control=False,
            seed=seed,
        )
    # The score-function and DisARM estimators are stateless (LOO looks at the batch only).
    return est


def measure(
    method: str,
    est: Any,
    rng: torch.Generator,
    f: Callable[[torch.Tensor], torch.Tensor],
    theta: float,
    draws: int,
) -> tuple[float, float]:
    """(variance, mean) of ``draws`` independent estimates of dL/dθ at θ, in one call."""
    seed = int(torch.randint(0, 2**62, (1,), generator=rng))
    measurer = measurement_estimator(method, est, seed)
    thetas = torch.full((draws, 1), theta, dtype=DTYPE, requires_grad=True)
    dist = torch.distributions.Bernoulli(logits=thetas)
    loss = vg.expectation(f, dist, samples=SAMPLES[method], estimator=measurer)
    loss.sum().backward()
    assert thetas.grad is not None
    grads = thetas.grad[:, 0]
    return float(grads.var()), float(grads.mean())


def run_one(method: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """One optimisation run; returns its per-step and per-measurement records."""
    target = args.target

    def f(b: torch.Tensor) -> torch.Tensor:
        return (b[..., 0] - target) ** 2

    torch.manual_seed(seed)  # the RELAX control's initial weights
    theta = torch.zeros(1, dtype=DTYPE, requires_grad=True)
    optimizer = torch.optim.Adam([theta], lr=args.lr)
    est = make_estimator(method, args, seed)
    evaluator = vg.Evaluator(f, backend="vectorized")
    if method in ("exact", "rebar", "relax"):
        measurer = None
    elif method == "reinforce":
        measurer = vg.ScoreFunction(seed=10_000 + seed)
    elif method == "reinforce_loo":
        measurer = vg.ScoreFunction("leave_one_out", seed=10_000 + seed)
    else:
        measurer = vg.DisARM(seed=10_000 + seed)
    rng = torch.Generator().manual_seed(20_000 + seed)

    losses = [exact_loss(float(theta.detach()), target)]
    probs = [float(torch.sigmoid(theta.detach()))]
    var_steps: list[int] = []
    ln_vars: list[float | None] = []
    means: list[float] = []
    exact_grads: list[float] = []
    train_seconds = 0.0
    measure_seconds = 0.0

    def record_variance(step: int) -> None:
        nonlocal measure_seconds
        if method == "exact":
            return
        start = time.perf_counter()
        measured = est if method in ("rebar", "relax") else measurer
        variance, mean = measure(
            method, measured, rng, f, float(theta.detach()), args.variance_draws
        )
        measure_seconds += time.perf_counter() - start
        var_steps.append(step)
        ln_vars.append(math.log(variance) if variance > 0 else None)
        means.append(mean)
        exact_grads.append(exact_gradient(float(theta.detach()), target))

    for step in range(args.steps):
        if step % args.every == 0:
            record_variance(step)
        start = time.perf_counter()
        optimizer.zero_grad()
        if est is None:
            p = torch.sigmoid(theta)
            (p * (1 - target) ** 2 + (1 - p) * target**2).sum().backward()
        else:
            dist = torch.distributions.Bernoulli(logits=theta)
            vg.expectation(evaluator, dist, samples=SAMPLES[method], estimator=est).backward()
        optimizer.step()
        train_seconds += time.perf_counter() - start
        losses.append(exact_loss(float(theta.detach()), target))
        probs.append(float(torch.sigmoid(theta.detach())))
    record_variance(args.steps)  # the final θ (the loop measured steps 0, every, ... < steps)

    record: dict[str, Any] = {
        "seed": seed,
        "final_theta": float(theta.detach()),
        "final_sigma": probs[-1],
        "final_loss": losses[-1],
        "evals_per_step": evaluator.stats.evals / args.steps if args.steps else 0.0,
        "train_seconds": train_seconds,
        "measure_seconds": measure_seconds,
        "loss": losses,
        "sigma": probs,
        "variance_steps": var_steps,
        "ln_variance": ln_vars,
        "estimate_mean": means,
        "exact_gradient": exact_grads,
    }
    if method in ("rebar", "relax"):
        record["final_temperature"] = float(est.log_temperature.detach().exp())
        record["final_eta"] = float(est.eta.detach())
        if method == "relax":
            control = est.control
            record["final_control_temperature"] = float(control.log_temperature.detach().exp())
            record["final_control_scale"] = float(control.scale.detach())
    return record


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing rolling mean ignoring NaN (shorter windows at the start)."""
    out = np.full_like(values, np.nan)
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        chunk = chunk[np.isfinite(chunk)]
        if chunk.size:
            out[i] = chunk.mean()
    return out


def ln_var_matrix(runs: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    steps = np.asarray(runs[0]["variance_steps"])
    values = np.array(
        [[np.nan if v is None else v for v in run["ln_variance"]] for run in runs], dtype=float
    )
    return steps, values


def plot(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_p, ax_v) = plt.subplots(1, 2, figsize=(12, 4.5))
    for index, (method, runs) in enumerate(results.items()):
        color = f"C{index}"
        steps = np.arange(args.steps + 1)
        sigmas = np.array([run["sigma"] for run in runs])
        for row in sigmas:
            ax_p.plot(steps, row, color=color, alpha=0.25, lw=0.6)
        ax_p.plot(steps, sigmas.mean(0), color=color, lw=1.5, label=LABELS[method])
        if method == "exact":
            continue
        var_steps, values = ln_var_matrix(runs)
        with warnings.catch_warnings():  # all-NaN columns: variance exactly 0 (DisARM at θ=0)
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(values, axis=0)
        ax_v.plot(var_steps, mean, color=color, alpha=0.2, lw=0.5)
        ax_v.plot(var_steps, rolling_mean(mean, args.smooth), color=color, lw=1.5)
        ax_v.plot([], [], color=color, label=LABELS[method])
    ax_p.set_xlabel("steps")
    ax_p.set_ylabel("σ(θ)  (exact loss = t² + σ(θ)(1 − 2t))")
    ax_p.set_ylim(-0.02, 1.02)
    ax_p.set_title(f"σ(θ); mean of {len(args.seed_list)} seed(s), thin: each seed")
    ax_p.legend(fontsize=8)
    ax_v.set_xlabel("steps")
    ax_v.set_ylabel("ln Var[ĝ]")
    ax_v.set_title(
        f"ln Var of ĝ ({args.variance_draws} draws); thick: rolling mean of {args.smooth}"
    )
    ax_v.legend(fontsize=8)
    fig.suptitle(f"RELAX toy: E[(b − {args.target})²], b ~ Bernoulli(σ(θ)), Adam lr {args.lr}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def value_at(runs: list[dict[str, Any]], step: int, window: int = 1) -> tuple[int, float, float]:
    """ln Var near ``step``: (nearest measured step, mean over seeds, sd over seeds).

    Each seed contributes the mean of its finite ln Var over the ``window``
    measurements ending at the nearest measured step (``window=1``: that
    measurement alone; the plot's rolling mean uses ``--smooth``).
    """
    var_steps, values = ln_var_matrix(runs)
    index = int(np.argmin(np.abs(var_steps - step)))
    per_seed = []
    for row in values[:, max(0, index - window + 1) : index + 1]:
        finite = row[np.isfinite(row)]
        if finite.size:
            per_seed.append(float(finite.mean()))
    if not per_seed:
        return int(var_steps[index]), float("-inf"), float("nan")
    sd = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else float("nan")
    return int(var_steps[index]), float(np.mean(per_seed)), sd


def bias_z(runs: list[dict[str, Any]], draws: int) -> float:
    """Pooled z-score of (mean estimate − exact gradient) over all measurements and seeds.

    Each measurement's mean of ``draws`` estimates has variance Var/draws; for an
    unbiased estimator the sum of the differences over M measurements is about
    N(0, Σ Var/draws), so |z| should rarely exceed 3.
    """
    total = 0.0
    variance = 0.0
    for run in runs:
        for ln_var, mean, exact in zip(
            run["ln_variance"], run["estimate_mean"], run["exact_gradient"], strict=True
        ):
            total += mean - exact
            variance += (0.0 if ln_var is None else math.exp(ln_var)) / draws
    return total / math.sqrt(variance) if variance > 0 else float("nan")


def table(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> str:
    checkpoints = sorted({min(1000, args.steps), args.steps // 2, args.steps})
    header = f"{'method':<24}{'evals/step':>11}"
    for step in checkpoints:
        header += f"{f'lnVar@{step}':>17}"
    header += f"{'final σ(θ)':>26}{'s/run':>8}{'bias z':>8}"
    lines = [header, "-" * len(header)]
    for method, runs in results.items():
        line = f"{LABELS[method]:<24}{runs[0]['evals_per_step']:>11.0f}"
        for step in checkpoints:
            if method == "exact":
                line += f"{'-inf':>17}"
                continue
            _, mean, sd = value_at(runs, step, args.smooth)
            cell = f"{mean:.2f}" + ("" if math.isnan(sd) else f" ± {sd:.2f}")
            line += f"{cell:>17}"
        sigmas = np.array([run["final_sigma"] for run in runs])
        cell = f"{sigmas.mean():.3g}"
        if len(runs) > 1:
            cell += f" [{sigmas.min():.2g}, {sigmas.max():.2g}]"
        seconds = np.mean([run["train_seconds"] + run["measure_seconds"] for run in runs])
        z = "" if method == "exact" else f"{bias_z(runs, args.variance_draws):.2f}"
        line += f"{cell:>26}{seconds:>8.1f}{z:>8}"
        lines.append(line)
    lines.append(
        "ln Var: mean ± sd over seeds of each seed's mean ln Var over the last "
        f"{args.smooth} measurements up to that step (the plot's rolling mean); "
        "final σ(θ): mean [min, max] over seeds; bias z: pooled z-score of the mean "
        "estimate minus the exact gradient over all measurements (|z| < 3 expected)"
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=3000,
        help="Adam steps per run (3000 x 3 seeds: about 3.5 CPU minutes on one core)",
    )
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/relax_toy"))
    parser.add_argument("--variance-draws", type=int, default=1000)
    parser.add_argument("--every", type=int, default=10, help="steps between measurements")
    parser.add_argument("--smooth", type=int, default=50, help="rolling window (measurements)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--target", type=float, default=0.499)
    parser.add_argument("--lr", type=float, default=0.01, help="Adam learning rate for θ")
    parser.add_argument(
        "--control-lr", type=float, default=0.01, help="Adam learning rate of REBAR's and RELAX's φ"
    )
    parser.add_argument(
        "--relax-input",
        choices=("relaxed", "z"),
        default="relaxed",
        help="RELAX control input: 2σ(z/λ) − 1 with a trainable λ, or z itself",
    )
    parser.add_argument(
        "--relax-relaxed-f", action="store_true", help="add REBAR's η f(σ_λ(z)) to RELAX's control"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.seeds < 1 or args.every < 1 or args.variance_draws < 2:
        parser.error("--steps, --seeds, --every must be >= 1 and --variance-draws >= 2")
    args.seed_list = list(range(args.seeds))
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, list[dict[str, Any]]] = {}
    for method in args.methods:
        results[method] = []
        for seed in args.seed_list:
            run = run_one(method, seed, args)
            results[method].append(run)
            print(
                f"{method:>14} seed {seed}: final σ(θ) {run['final_sigma']:.4f}, "
                f"{run['train_seconds']:.1f} s training + {run['measure_seconds']:.1f} s measuring",
                flush=True,
            )
    wall = time.perf_counter() - started
    meta = run_metadata(
        "relax_toy",
        "exact loss and sigma(theta) after every Adam step on the logit theta of "
        "E[(b - t)^2], b ~ Bernoulli(sigma(theta)), and every --every steps the ln variance "
        "and mean of --variance-draws independent estimates of dL/dtheta, per method and "
        "seed; evaluations of f per step; wall time of training and of the measurements",
        dtype=str(DTYPE),
        steps=args.steps,
        seeds=args.seed_list,
        every=args.every,
        variance_draws=args.variance_draws,
        target=args.target,
        lr=args.lr,
        control_lr=args.control_lr,
        relax_input=args.relax_input,
        relax_relaxed_f=args.relax_relaxed_f,
        smooth=args.smooth,
        methods=args.methods,
        samples_per_estimate={m: SAMPLES[m] for m in args.methods},
    )
    meta["wall_seconds"] = wall
    summary = {}
    checkpoints = sorted({min(1000, args.steps), args.steps // 2, args.steps})
    for method, runs in results.items():
        entry: dict[str, Any] = {
            "evals_per_step": runs[0]["evals_per_step"],
            "samples_per_estimate": SAMPLES[method],
            "final_sigma": [run["final_sigma"] for run in runs],
            "final_loss": [run["final_loss"] for run in runs],
        }
        if method != "exact":
            entry["ln_variance_at"] = {
                str(step): {
                    kind: {
                        key: value if math.isfinite(value) else None
                        for key, value in zip(
                            ("measured_step", "mean", "sd"),
                            value_at(runs, step, window),
                            strict=True,
                        )
                    }
                    for kind, window in (("single", 1), ("smoothed", args.smooth))
                }
                for step in checkpoints
            }
            z = bias_z(runs, args.variance_draws)
            entry["bias_z"] = z if math.isfinite(z) else None
        summary[method] = entry
    payload = {"metadata": meta, "summary": summary, "runs": results}
    json_path = args.out / "relax_toy.json"
    json_path.write_text(json.dumps(payload, indent=1, allow_nan=False) + "\n")
    png_path = args.out / "relax_toy.png"
    plot(results, args, png_path)
    print()
    print(table(results, args))
    print(f"\nwall time {wall:.1f} s; wrote {json_path} and {png_path}")


if __name__ == "__main__":
    main()
