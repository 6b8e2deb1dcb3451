"""Discrete VAE with 200 Bernoulli latents: training ELBO reached by each gradient estimator.

What is measured
----------------
The same variational autoencoder is trained once per gradient estimator for
the encoder, for the same number of Adam steps, from the same initial weights,
on the same sequence of minibatches, and the script reports for each method:

* ``train_elbo``: the ELBO averaged over the whole training set, in nats per
  image, estimated with ``--eval-samples`` (default 10) samples b ~ q(b|x) per
  image, at the end of training (higher is better);
* ``valid_elbo``: the same on the held-out validation images;
* ``train_seconds``: wall time of the training steps alone (forward, estimator,
  backward, optimizer step), without the periodic ELBO evaluations;
* ``evals_per_step``: evaluations of f per step, counted by the
  ``vg.Evaluator`` that ``vg.expectation`` calls f through: one evaluation is
  f applied to one sample ``[B, 200]`` of the whole minibatch. The decoder's
  own training term (below) is not an evaluation of f and is the same for
  every method;
* ``curve``: training and validation ELBO every ``--eval-every`` steps (the
  PNG plots the training ELBO against the step).

For reference the JSON also holds the log-likelihood of independent Bernoulli
pixels fit to the training set (``independent_pixel_elbo``, dashed in the
PNG): the ELBO of a model that ignores its latents. Wall times are of a shared
machine and vary by tens of percent from run to run (other processes); the
ELBOs are reproducible for a given ``--seed``.

The ELBO estimates draw their b's from a fixed random stream (the same random
numbers for every method at every checkpoint), which takes most of the
evaluation noise out of the differences between methods and between steps.

Data. ``sklearn.datasets.load_digits``: 1797 images of 8 x 8 pixels with
values 0..16, binarized as x = 1[pixel >= 8] (deterministic), 64 pixels. A
fixed permutation (seed 0, independent of ``--seed``) holds out 300 images for
validation; the other 1497 are the training set. Minibatches of ``--batch``
images are drawn by reshuffling the training set every epoch (last partial
batch dropped), from a generator seeded with ``--seed``.

Model. One stochastic layer of D = 200 Bernoulli latents, linear in both
directions (the "linear" one-layer model of the REBAR and RELAX papers):
encoder q(b|x) = Bernoulli(sigmoid(W_e x + c_e)), decoder
p(x|b) = Bernoulli(sigmoid(W_d b + c_d)), prior p(b) = Bernoulli(0.5)^200.
PyTorch's default initialization with ``torch.manual_seed(--seed)``, except
that c_d starts at the logit of the training set's mean pixel values. Adam,
learning rate ``--lr`` (default 1e-3), for encoder and decoder together.
Defaults: 3000 steps, batch 24, N = 2 samples per image (about 5 minutes for
all six methods on one core). With lr = 1e-2 the score-function methods
(leave-one-out, DisARM) ended below the independent-pixel model in a trial run
(ELBO -28 and -27 nats against -25.1), so the default is the smaller rate.

Objective and how the gradients are split. The negative ELBO of an image x is

    L(x) = E_{q(b|x)}[ f_x(b) ],   f_x(b) = -log p(x|b) - log p(b) + log q(b|x).

Its gradient has two parts, and they are computed separately:

* Encoder (the part that needs a gradient estimator): ``vg.expectation(f_x,
  q, samples=N, estimator=EST)``, with f_x evaluated with the decoder's
  parameters and the q-logits *detached* (constants inside f). Dropping the
  direct θ-dependence of log q_θ(b|x) is exact in expectation, because
  E_q[∇_θ log q_θ(b|x)] = 0; so f_x is a fixed function of b and every
  estimator estimates ∇_θ E_{q_θ}[f_x(b)], the true encoder gradient of the
  negative ELBO. The score-function estimators and DisARM evaluate f_x as a
  black box (under ``torch.no_grad``); Gumbel-ST, REBAR and RELAX
  differentiate f_x with respect to b (and evaluate it at relaxed b in (0, 1);
  log q(b|x) = Σ b·l − softplus(l) and the decoder's input are linear in b, so
  the relaxed values are well defined). Because the decoder's parameters are
  detached inside f_x, no method sends any gradient from f_x into the decoder.
* Decoder: an ordinary pathwise term, the same for every method: b' ~ q(b|x)
  (N fresh samples per image, detached, from a separate seeded stream) and the
  loss mean(-log p(x|b')), whose gradient with respect to the decoder's
  parameters is an unbiased estimate of the decoder's gradient of the negative
  ELBO. The prior has no parameters.

The total loss per step is the minibatch mean of both terms.

Estimators (all seeded with ``--seed``; ``--samples`` N per image for all):

* ``loo``: ``vg.ScoreFunction("leave_one_out")``, REINFORCE with the
  leave-one-out baseline; N evaluations.
* ``learned``: ``vg.ScoreFunction(vg.baselines.Learned(net, lr=1e-2))``, NVIL's
  input-dependent baseline: net = MLP 200 -> 100 (tanh) -> 1 of the detached
  encoder logits, fit by squared error to the mean cost. Its output bias
  starts at -ELBO of the initial model (the step-0 training ELBO), so that it
  does not spend the run climbing to the cost's scale; N evaluations.
* ``gumbel``: ``vg.GumbelSoftmax(0.5, hard=True)``, straight-through Gumbel
  (biased); N evaluations.
* ``rebar``: ``vg.REBAR(temperature=0.5, eta=1.0, lr=1e-2)``; η and λ learned
  by minimizing the estimator's variance; 3N evaluations.
* ``relax``: ``vg.RELAX(control=r, relaxed_f=True, temperature=0.5, eta=1.0,
  lr=1e-3)``, the paper's c(z) = η f(σ_λ(z)) + r_ρ(z) with r_ρ an MLP
  200 -> 200 (ReLU) -> 1 of the logistic variables z; 3N evaluations.
* ``disarm``: ``vg.DisARM()``, N/2 antithetic pairs; N evaluations (N even).

A method whose loss becomes non-finite, or whose f raises, is stopped and
reported with the error instead of numbers.

Run from the repository root::

    .venv/bin/python benchmarks/discrete_vae.py
    .venv/bin/python benchmarks/discrete_vae.py --steps 500 --methods loo disarm

Output: a table on stdout, and in ``--out`` (default
``benchmarks/results/discrete_vae``) ``discrete_vae.json`` (numbers, curves,
settings and metadata: date, command, versions, git commit) and
``discrete_vae.png`` (training ELBO against the step, one line per method).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as nnf
from sklearn.datasets import load_digits
from torch import nn

import voidgrad as vg
from common import run_metadata

LATENTS = 200
PIXELS = 64
VALID = 300
DATA_SEED = 0
THRESHOLD = 8
LOG2 = math.log(2.0)
METHODS = ("loo", "learned", "gumbel", "rebar", "relax", "disarm")
LABELS = {
    "loo": "REINFORCE + leave-one-out",
    "learned": "REINFORCE + learned baseline",
    "gumbel": "Gumbel straight-through (λ=0.5)",
    "rebar": "REBAR",
    "relax": "RELAX (η f(σ_λ(z)) + r_ρ(z))",
    "disarm": "DisARM",
}
GUMBEL_TEMPERATURE = 0.5
REBAR_LR = 1e-2
RELAX_LR = 1e-3
BASELINE_LR = 1e-2


# --------------------------------------------------------------------------- data and model


def independent_pixel_log_likelihood(train_x: torch.Tensor, x: torch.Tensor) -> float:
    """Mean log-likelihood of x under independent Bernoulli pixels fit to the training set.

    It is the ELBO of a model that ignores its latents (q = prior, decoder bias
    only): a method above it makes use of the latents.
    """
    p = train_x.mean(0).clamp(1e-3, 1 - 1e-3)
    return float((x * p.log() + (1 - x) * torch.log1p(-p)).sum(-1).mean())


def load_data() -> tuple[torch.Tensor, torch.Tensor]:
    """Binarized digits (x = 1[pixel >= 8]), split into 1497 training and 300 validation."""
    images = load_digits().data  # [1797, 64], values 0..16
    x = torch.as_tensor(images >= THRESHOLD, dtype=torch.float32)
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(DATA_SEED))
    return x[order[VALID:]], x[order[:VALID]]


class VAE(nn.Module):
    """Linear encoder 64 -> 200 logits, linear decoder 200 -> 64 logits."""

    def __init__(self, pixel_means: torch.Tensor) -> None:
        super().__init__()
        self.encoder = nn.Linear(PIXELS, LATENTS)
        self.decoder = nn.Linear(LATENTS, PIXELS)
        with torch.no_grad():
            p = pixel_means.clamp(1e-3, 1 - 1e-3)
            self.decoder.bias.copy_(torch.log(p) - torch.log1p(-p))


def log_likelihood(
    b: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """log p(x|b) for samples b ``[..., B, 200]`` (bits or relaxed) and images x ``[B, 64]``."""
    logits = b @ weight.T + bias
    bce = nnf.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
    return -bce.sum(-1)


def log_q(b: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """log q(b|x) = Σ_d b_d l_d − softplus(l_d), linear in b (so defined for relaxed b)."""
    return (b * q_logits - nnf.softplus(q_logits)).sum(-1)


def negative_elbo_cost(
    x: torch.Tensor, q_logits: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    """f_x(b) = −log p(x|b) − log p(b) + log q(b|x), parameters detached; [N, B, 200] → [N, B]."""
    q_logits, weight, bias = q_logits.detach(), weight.detach(), bias.detach()

    def f(b: torch.Tensor) -> torch.Tensor:
        log_prior = -LATENTS * LOG2  # Bernoulli(0.5)^200
        return -(log_likelihood(b, x, weight, bias) + log_prior - log_q(b, q_logits))

    return f


@torch.no_grad()
def elbo(model: VAE, x: torch.Tensor, samples: int, seed: int) -> float:
    """Mean over images of (1/S) Σ_s [log p(x|b_s) + log p(b_s) − log q(b_s|x)], b_s ~ q."""
    generator = torch.Generator().manual_seed(seed)
    q_logits = model.encoder(x)
    probs = torch.sigmoid(q_logits).expand(samples, *q_logits.shape)
    b = torch.bernoulli(probs, generator=generator)
    f = negative_elbo_cost(x, q_logits, model.decoder.weight, model.decoder.bias)
    return float(-f(b).mean())


# --------------------------------------------------------------------------- estimators


def make_estimator(method: str, seed: int, initial_cost: float) -> vg.DistributionEstimator:
    if method == "loo":
        return vg.ScoreFunction("leave_one_out", seed=seed)
    if method == "learned":
        net = nn.Sequential(nn.Linear(LATENTS, 100), nn.Tanh(), nn.Linear(100, 1))
        with torch.no_grad():
            net[2].bias.fill_(initial_cost)
        return vg.ScoreFunction(vg.baselines.Learned(net, lr=BASELINE_LR), seed=seed)
    if method == "gumbel":
        return vg.GumbelSoftmax(GUMBEL_TEMPERATURE, hard=True, seed=seed)
    if method == "rebar":
        return vg.REBAR(temperature=0.5, eta=1.0, lr=REBAR_LR, seed=seed)
    if method == "relax":
        control = nn.Sequential(nn.Linear(LATENTS, 200), nn.ReLU(), nn.Linear(200, 1))
        return vg.RELAX(control, relaxed_f=True, temperature=0.5, eta=1.0, lr=RELAX_LR, seed=seed)
    if method == "disarm":
        return vg.DisARM(seed=seed)
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def estimator_state(estimator: vg.DistributionEstimator) -> dict[str, float]:
    """The learned temperature and η of REBAR / RELAX at the end of training."""
    if isinstance(estimator, vg.RELAX):
        return {"temperature": estimator.temperature, "eta": float(estimator.eta.detach())}
    return {}


# --------------------------------------------------------------------------- training


def batches(n: int, batch: int, generator: torch.Generator):
    """Minibatch indices forever: a fresh permutation each epoch, last partial batch dropped."""
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch + 1, batch):
            yield order[start : start + batch]


def train(
    method: str, args: argparse.Namespace, train_x: torch.Tensor, valid_x: torch.Tensor
) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    model = VAE(train_x.mean(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    eval_seed = args.seed + 1000
    curve: dict[str, list[float]] = {"step": [], "train_elbo": [], "valid_elbo": []}

    def checkpoint(step: int) -> None:
        curve["step"].append(step)
        curve["train_elbo"].append(elbo(model, train_x, args.eval_samples, eval_seed))
        curve["valid_elbo"].append(elbo(model, valid_x, args.eval_samples, eval_seed + 1))

    checkpoint(0)
    estimator = make_estimator(method, args.seed, initial_cost=-curve["train_elbo"][0])
    batch_generator = torch.Generator().manual_seed(args.seed)
    decoder_generator = torch.Generator().manual_seed(args.seed + 2000)
    indices = batches(train_x.shape[0], args.batch, batch_generator)
    evals = 0
    f_seconds = 0.0
    train_seconds = 0.0
    error: str | None = None
    for step in range(1, args.steps + 1):
        x = train_x[next(indices)]
        start = time.perf_counter()
        try:
            logits = model.encoder(x)
            dist = torch.distributions.Bernoulli(logits=logits)
            weight, bias = model.decoder.weight, model.decoder.bias
            evaluator = vg.Evaluator(
                negative_elbo_cost(x, logits, weight, bias), backend="vectorized"
            )
            encoder_loss = vg.expectation(
                evaluator, dist, samples=args.samples, estimator=estimator
            )
            with torch.no_grad():
                probs = torch.sigmoid(logits).expand(args.samples, *logits.shape)
                b = torch.bernoulli(probs, generator=decoder_generator)
            decoder_loss = -log_likelihood(b, x, weight, bias).mean(0)
            loss = encoder_loss.mean() + decoder_loss.mean()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {float(loss)} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            if not all(torch.isfinite(g).all() for g in grads):
                raise FloatingPointError(f"non-finite gradient at step {step}")
            optimizer.step()
        except (FloatingPointError, vg.EvaluationError) as caught:
            error = f"{type(caught).__name__}: {caught}"
            print(f"  {method}: stopped at step {step}: {error}", flush=True)
            break
        train_seconds += time.perf_counter() - start
        evals += evaluator.stats.evals
        f_seconds += evaluator.stats.seconds
        if step % args.eval_every == 0 or step == args.steps:
            checkpoint(step)
            print(
                f"  {method:8s} step {step:5d}  train ELBO {curve['train_elbo'][-1]:8.2f}  "
                f"valid ELBO {curve['valid_elbo'][-1]:8.2f}  ({train_seconds:6.1f} s)",
                flush=True,
            )
    steps_done = step if error is None else step - 1
    return {
        "method": method,
        "label": LABELS[method],
        "estimator": repr(estimator),
        "steps": steps_done,
        "evals_per_step": evals / max(steps_done, 1),
        "train_elbo": curve["train_elbo"][-1] if error is None else None,
        "valid_elbo": curve["valid_elbo"][-1] if error is None else None,
        "initial_train_elbo": curve["train_elbo"][0],
        "train_seconds": train_seconds,
        "ms_per_step": 1000 * train_seconds / max(steps_done, 1),
        "seconds_in_f": f_seconds,
        "error": error,
        "final_estimator_state": estimator_state(estimator),
        "curve": curve,
    }


# --------------------------------------------------------------------------- output


def metadata(args: argparse.Namespace, train_n: int, valid_n: int) -> dict[str, Any]:
    return run_metadata(
        "discrete_vae",
        "ELBO (nats per image, eval_samples samples b~q(b|x) per image, fixed stream) on the "
        "training and validation sets after a fixed number of Adam steps, with the encoder's "
        "gradient from each estimator via vg.expectation and the decoder's from a shared "
        "pathwise term; wall time of the training steps; evaluations of f per step",
        steps=args.steps,
        batch=args.batch,
        samples=args.samples,
        seed=args.seed,
        lr=args.lr,
        eval_samples=args.eval_samples,
        eval_every=args.eval_every,
        methods=list(args.methods),
        latents=LATENTS,
        model="linear encoder 64->200, linear decoder 200->64, prior Bernoulli(0.5)^200",
        data=(
            f"sklearn load_digits, x = 1[pixel >= {THRESHOLD}], permutation seed {DATA_SEED}, "
            f"{train_n} train / {valid_n} valid"
        ),
        gumbel_temperature=GUMBEL_TEMPERATURE,
        rebar={"temperature": 0.5, "eta": 1.0, "lr": REBAR_LR},
        relax={
            "temperature": 0.5,
            "eta": 1.0,
            "lr": RELAX_LR,
            "control": "MLP 200->200 ReLU ->1 of z, plus eta*f(sigma_lambda(z))",
        },
        learned_baseline={
            "net": "MLP 200->100 tanh ->1 of the detached encoder logits",
            "lr": BASELINE_LR,
            "output_bias_init": "-(initial training ELBO)",
        },
        decoder_term="N fresh samples b'~q per image, loss mean(-log p(x|b'))",
        dtype="float32",
    )


def format_table(results: Sequence[dict[str, Any]]) -> str:
    lines = [
        f"{'method':34s} {'evals/step':>10s} {'train ELBO':>11s} {'valid ELBO':>11s} "
        f"{'seconds':>8s} {'ms/step':>8s}"
    ]
    for r in results:
        if r["error"] is None:
            numbers = f"{r['train_elbo']:11.2f} {r['valid_elbo']:11.2f}"
        else:
            numbers = f"{'failed':>11s} {'':>11s}"
        lines.append(
            f"{r['label']:34s} {r['evals_per_step']:10.0f} {numbers} "
            f"{r['train_seconds']:8.1f} {r['ms_per_step']:8.2f}"
        )
    return "\n".join(lines)


def plot(
    results: Sequence[dict[str, Any]], args: argparse.Namespace, reference: float, path: Path
) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.axhline(reference, color="0.5", linestyle="--", linewidth=1, label="independent pixels")
    for r in results:
        ax.plot(r["curve"]["step"], r["curve"]["train_elbo"], label=r["label"])
    lows = [min(r["curve"]["train_elbo"][1:] or r["curve"]["train_elbo"]) for r in results]
    highs = [max(r["curve"]["train_elbo"]) for r in results]
    if lows:
        margin = 0.05 * (max(highs) - min(lows) + 1)
        ax.set_ylim(min([*lows, reference]) - margin, max(highs) + margin)
    ax.set_xlabel("training step (the step-0 ELBO may lie below the axis)")
    ax.set_ylabel(f"training ELBO (nats / image, {args.eval_samples} samples)")
    ax.set_title(
        f"Discrete VAE, 200 Bernoulli latents, binarized digits "
        f"(batch {args.batch}, N={args.samples})",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a 200-Bernoulli-latent VAE on binarized digits with each estimator."
    )
    parser.add_argument("--steps", type=int, default=3000, help="Adam steps per method")
    parser.add_argument("--batch", type=int, default=24, help="images per minibatch")
    parser.add_argument("--samples", type=int, default=2, help="samples N per image (even)")
    parser.add_argument("--seed", type=int, default=0, help="init, batches and estimators")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the VAE")
    parser.add_argument("--eval-samples", type=int, default=10, help="samples per image for ELBO")
    parser.add_argument("--eval-every", type=int, default=100, help="steps between ELBO checks")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/discrete_vae"))
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch < 1 or args.samples < 1 or args.eval_every < 1:
        parser.error("--steps, --batch, --samples and --eval-every must be positive")
    if args.samples < 2 and {"loo", "disarm"} & set(args.methods):
        parser.error("leave-one-out and DisARM need --samples >= 2")
    if args.samples % 2 and "disarm" in args.methods:
        parser.error("DisARM needs an even --samples")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    train_x, valid_x = load_data()
    print(
        f"discrete VAE: {train_x.shape[0]} train / {valid_x.shape[0]} valid images, "
        f"{args.steps} steps, batch {args.batch}, N = {args.samples}",
        flush=True,
    )
    start = time.perf_counter()
    results = []
    for method in args.methods:
        results.append(train(method, args, train_x, valid_x))
    total = time.perf_counter() - start
    print()
    print(format_table(results))
    print(f"\ntotal wall time {total:.1f} s")
    print(
        "independent-pixel model (latents unused): train "
        f"{independent_pixel_log_likelihood(train_x, train_x):.2f}, valid "
        f"{independent_pixel_log_likelihood(train_x, valid_x):.2f} nats"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    meta = metadata(args, train_x.shape[0], valid_x.shape[0])
    meta["total_seconds"] = total
    reference = {
        "train": independent_pixel_log_likelihood(train_x, train_x),
        "valid": independent_pixel_log_likelihood(train_x, valid_x),
    }
    meta["independent_pixel_elbo"] = reference
    with open(args.out / "discrete_vae.json", "w") as handle:
        json.dump({"metadata": meta, "results": results}, handle, indent=2)
    plot(results, args, reference["train"], args.out / "discrete_vae.png")
    print(f"wrote {args.out / 'discrete_vae.json'} and {args.out / 'discrete_vae.png'}")


if __name__ == "__main__":
    main()
