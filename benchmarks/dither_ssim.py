"""Dithering by maximizing expected SSIM: gradient estimators for thousands of categoricals.

The problem
-----------
Every pixel (i, j) of an ``S x S`` image picks one of P palette grey levels
c_1 < ... < c_P (``--palette P``: evenly spaced in [0, 1], default P = 2,
black and white). The choice is a categorical per pixel with free logits
θ ∈ R^{S x S x P}, ``dist = OneHotCategorical(logits=θ)``; a sample
x ∈ {0, 1}^{N x S x S x P} is rendered as the image ``x @ palette``. The cost

    f(x) = 1 − SSIM(x @ palette, target)

is minimized in expectation, L(θ) = E_{x~p(x|θ)}[f(x)], through
``vg.expectation(f, dist, samples=N, estimator=...)`` and Adam on θ (θ starts
at 0: every pixel uniform over the palette). SSIM is the standard one (Wang
et al. 2004) written here in torch, batched over N and differentiable: a
Gaussian window with σ = 1.5, 11 x 11 for S ≥ 128 and 7 x 7 below (so that a
64 x 64 image keeps 58 x 58 window positions), valid positions only (no
padding), C1 = 0.01², C2 = 0.03² for the range [0, 1], and the mean of the
SSIM map. f accepts relaxed inputs (points of the simplex, rendered as grey
mixtures), which is what Gumbel-softmax and the REBAR term differentiate.

The target (``--target``) is the scikit-learn sample image ``china.jpg``
(ships with scikit-learn, no download) converted to grey (ITU-R 601 luma),
centre-cropped to a square and area-resized to S x S, or a procedural image
(smooth gradients, a disc, a square, a ring of sinusoidal stripes).

Estimators compared, at an equal budget of evaluations of f (``--budget``,
counted by the Evaluator that ``vg.expectation`` calls; evaluations made for
monitoring and for the variance measurement are not counted):

* ``score_loo``: ``vg.ScoreFunction("leave_one_out")``, N evaluations a step.
* ``gumbel_soft``: ``vg.GumbelSoftmax(0.5)``: f at relaxed one-hot vectors,
  N evaluations a step. Biased: it optimizes E[f(softmax((θ+g)/λ))], so what
  is reported for it is, as for the others, the SSIM of *hard* samples.
* ``relax_local``: ``vg.RELAX(control=LocalControl(offset=1))``, N
  evaluations a step. The control c_φ(z) is a cheap net that sees z only
  through the relaxed image x = softmax(z/0.5) @ palette: a per-pixel MLP
  (a 1 x 1 conv net: Linear(4, 8), softplus, Linear(8, 1)) on the features
  x, blur(x), target, blur(target) (blur: the SSIM window, 'same' size),
  averaged over the pixels; 49 parameters. Its last layer starts at weight 0
  and bias 1, so c_φ starts as the constant 1 (f's value at SSIM = 0, known
  from f's definition, not from evaluations): RELAX has no baseline of its
  own, and a random start would put an O(1) offset into the score term. A
  3 x 3 conv net on [x, target] was tried first; its double backward (which
  RELAX's variance step needs) made a step 3 to 4 times slower.
* ``relax_rebar``: ``vg.RELAX(control=LocalControl(offset=0), relaxed_f=True)``:
  the same net plus REBAR's η f(softmax(z/λ)) term (η_0 = 1, λ_0 = 0.5, both
  learned); 3N evaluations a step (f at b, σ_λ(z) and σ_λ(z̃)), so a third of
  the steps.

Both RELAX variants train φ with the estimator's own variance step, Adam with
lr 1e-3 (``RELAX_LR``). With the library's default 1e-2 the per-pixel net
random-walked and raised the variance: after 200 steps E[SSIM] was 0.06
(relax_local) against 0.12 with 1e-3, and relax_rebar's 0.06 against 0.17.
The score term multiplies (f(b) − c_φ(z̃)) by the score of all S·S
categoricals, so an offset of 0.01 in c_φ already costs more variance than a
good control saves. (For the same reason ``vg.REBAR`` with η frozen at 1
made a third of the progress of η learned, in 200 steps: E[f(b)] and
E[f(σ_λ(z))] differ by 0.25 % at θ = 0 and more later, and η moved to 1.02
within 50 steps to absorb it.)

All methods: Adam on θ with lr ``--lr`` (0.1; of 0.03, 0.1, 0.3 and 1 it gave
the leave-one-out estimator the most progress in 200 steps), N = ``--samples``.

Measured, per method:

* ``expected_ssim``: E[SSIM] of hard samples from the final distribution,
  the Monte Carlo mean over ``--eval-samples`` (64) fresh samples, with its
  standard error; the same number along the run (``curves``, at about 40
  points) against the evaluations used so far.
* ``mode_ssim``: SSIM of the argmax image (every pixel its most likely colour).
* ``evals``: evaluations of f used (read from the Evaluator), ``steps``,
  ``wall_s`` (the optimisation loop, without the monitoring evaluations).
* ``ln_var_start``: ln of the mean over the S·S·P logits of the per-component
  variance of the gradient estimate, from ``--var-repeats`` (32) independent
  estimates at θ = 0 with N samples each, with a fresh estimator (for RELAX:
  the untrained control, not stepped during the 32 draws). The differences of
  these numbers are the ln variance ratios between estimators.
* ``ln_var_end`` and ``ln_var_end_loo``: the same at the method's own final θ,
  with its trained control (not stepped during the draws), and for the
  leave-one-out score function at that same θ; their difference is the ln
  variance ratio that the trained control buys where it was trained.
  (Gumbel-softmax's variance is that of a biased estimator.)

References, to put the numbers in context: SSIM of thresholding (nearest
palette colour per pixel), of Floyd–Steinberg error diffusion (serpentine
off, the classic 7/16, 3/16, 5/16, 1/16 weights, nearest palette colour), and
the expected SSIM of the starting distribution (uniform random pixels).

Outputs, in ``--out`` (default ``benchmarks/results/dither_ssim``):
``dither_ssim.json`` (numbers, curves and metadata: date, command, torch
version, git commit, settings) and ``dither_ssim.png`` (target, thresholding,
Floyd–Steinberg, each method's mode image and one sample, and the curves of
expected SSIM against evaluations). torch runs on one thread.

Run from the repository root::

    .venv/bin/python benchmarks/dither_ssim.py
    .venv/bin/python benchmarks/dither_ssim.py --size 32 --palette 4 --budget 20000
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.distributions import OneHotCategorical

import voidgrad as vg
from common import run_metadata
from voidgrad.problems import DitherProblem
from voidgrad.problems.dither import C1, C2, SIGMA, gaussian_kernel

DTYPE = torch.float32
GUMBEL_TEMPERATURE = 0.5
#: Adam learning rate of RELAX's control parameters φ. The library's default, 1e-2,
#: made the per-pixel control a random walk that raised the variance (see the docstring).
RELAX_LR = 1e-3


# ---------------------------------------------------------------------------- problem


def nearest_indices(image: np.ndarray, palette: np.ndarray) -> np.ndarray:
    return np.abs(image[..., None] - palette).argmin(-1)


def floyd_steinberg(image: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Classic Floyd–Steinberg error diffusion, left to right; palette indices ``[H, W]``."""
    work = image.astype(np.float64).copy()
    h, w = work.shape
    out = np.zeros((h, w), dtype=np.int64)
    for i in range(h):
        for j in range(w):
            k = int(np.abs(palette - work[i, j]).argmin())
            out[i, j] = k
            error = work[i, j] - palette[k]
            if j + 1 < w:
                work[i, j + 1] += error * 7 / 16
            if i + 1 < h:
                if j > 0:
                    work[i + 1, j - 1] += error * 3 / 16
                work[i + 1, j] += error * 5 / 16
                if j + 1 < w:
                    work[i + 1, j + 1] += error * 1 / 16
    return out


# ---------------------------------------------------------------------------- estimators


def relaxed_image(z: torch.Tensor, palette: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(z/λ) @ palette, ``[..., P]`` → ``[...]``.

    Written out (exp and sum) because ``torch.softmax`` over a last dimension of 2 to 4
    is several times slower on the CPU, and the control is double-differentiated.
    """
    e = torch.exp((z - z.amax(-1, keepdim=True).detach()) / temperature)
    return (e @ palette) / e.sum(-1)


class LocalControl(nn.Module):
    """c_φ(z): a per-pixel MLP (a 1 x 1 conv net) on local features of the relaxed image.

    ``[N, H, W, P]`` → ``[N]``. With x = softmax(z/λ) @ palette (λ = 0.5) and
    the target y, the features of pixel (i, j) are x, blur(x), y and blur(y),
    blur being the SSIM window's Gaussian ('same' size, zero padding). They go
    through Linear(4, hidden), softplus, Linear(hidden, 1), and the outputs
    are averaged over the pixels. The last layer starts at weight 0 and bias
    ``offset``, so the control starts as that constant: no random term enters
    the estimate at the start. Blurs are matrix products and the MLP acts on
    the last dimension, so the double backward that RELAX's variance step
    needs stays cheap (a 3 x 3 ``conv2d`` control was 3 to 4 times slower here).
    """

    def __init__(
        self,
        problem: DitherProblem,
        hidden: int = 8,
        temperature: float = 0.5,
        offset: float = 0.0,
    ) -> None:
        super().__init__()
        size, window = problem.size, problem.window
        kernel = gaussian_kernel(window, SIGMA)
        band = torch.zeros(size, size + window - 1, dtype=DTYPE)
        for i in range(size):
            band[i, i : i + window] = kernel
        band = band[:, window // 2 : window // 2 + size]  # 'same' size, zero padding
        self.register_buffer("band", band)
        self.register_buffer("palette", problem.palette.clone())
        target = problem.target
        self.register_buffer("target_features", torch.stack([target, band @ target @ band.T], -1))
        self.temperature = temperature
        self.hidden = nn.Linear(4, hidden)
        self.out = nn.Linear(hidden, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.out.bias, offset)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = relaxed_image(z, self.palette, self.temperature)
        blurred = self.band @ x @ self.band.T
        target = self.target_features.expand(*x.shape, 2)
        features = torch.cat([torch.stack([x, blurred], -1), target], -1)
        return self.out(F.softplus(self.hidden(features))).mean((1, 2, 3))


MethodFactory = Callable[[DitherProblem, int], tuple[vg.DistributionEstimator, int]]


def score_loo(problem: DitherProblem, seed: int) -> tuple[vg.DistributionEstimator, int]:
    return vg.ScoreFunction("leave_one_out", seed=seed), 1


def gumbel_soft(problem: DitherProblem, seed: int) -> tuple[vg.DistributionEstimator, int]:
    return vg.GumbelSoftmax(GUMBEL_TEMPERATURE, seed=seed), 1


def relax_local(problem: DitherProblem, seed: int) -> tuple[vg.DistributionEstimator, int]:
    torch.manual_seed(seed)
    control = LocalControl(problem, offset=1.0)
    return vg.RELAX(control=control, temperature=0.5, lr=RELAX_LR, seed=seed), 1


def relax_rebar(problem: DitherProblem, seed: int) -> tuple[vg.DistributionEstimator, int]:
    torch.manual_seed(seed)
    control = LocalControl(problem, offset=0.0)
    estimator = vg.RELAX(control=control, relaxed_f=True, temperature=0.5, lr=RELAX_LR, seed=seed)
    return estimator, 3


METHODS: dict[str, MethodFactory] = {
    "score_loo": score_loo,
    "gumbel_soft": gumbel_soft,
    "relax_local": relax_local,
    "relax_rebar": relax_rebar,
}


# ---------------------------------------------------------------------------- measurements


def sample_indices(logits: torch.Tensor, samples: int, generator: torch.Generator) -> torch.Tensor:
    """Palette indices ``[samples, H, W]`` drawn from the categoricals (Gumbel-max)."""
    u = torch.rand((samples, *logits.shape), generator=generator, dtype=logits.dtype)
    u = u.clamp(torch.finfo(logits.dtype).tiny, 1 - torch.finfo(logits.dtype).eps)
    return (logits - torch.log(-torch.log(u))).argmax(-1)


@torch.no_grad()
def hard_ssim(
    problem: DitherProblem, logits: torch.Tensor, samples: int, generator: torch.Generator
) -> dict[str, float]:
    """E[SSIM] of hard samples (mean, standard error) and the SSIM of the mode."""
    values = problem.ssim_of_indices(sample_indices(logits, samples, generator))
    mode = problem.ssim_of_indices(logits.argmax(-1))
    return {
        "expected_ssim": float(values.mean()),
        "expected_ssim_se": float(values.std() / math.sqrt(samples)),
        "mode_ssim": float(mode),
    }


def gradient_estimates(
    problem: DitherProblem,
    estimator: vg.DistributionEstimator,
    logits: torch.Tensor,
    samples: int,
    repeats: int,
) -> torch.Tensor:
    """``repeats`` independent gradient estimates at ``logits``: ``[repeats, *logits.shape]``.

    A control-variate estimator is not trained during the draws, so they are i.i.d.
    """
    trains = getattr(estimator, "train_control", None)
    if trains is not None:
        estimator.train_control = False  # type: ignore[attr-defined]
    try:
        theta = logits.detach().clone().requires_grad_(True)
        grads = []
        for _ in range(repeats):
            dist = OneHotCategorical(logits=theta)
            loss = vg.expectation(problem.cost, dist, samples=samples, estimator=estimator)
            (grad,) = torch.autograd.grad(loss, theta)
            grads.append(grad)
        return torch.stack(grads)
    finally:
        if trains is not None:
            estimator.train_control = trains  # type: ignore[attr-defined]


def ln_mean_variance(grads: torch.Tensor) -> float:
    return float(grads.var(0).mean().log())


def run_method(
    name: str,
    problem: DitherProblem,
    args: argparse.Namespace,
    seed: int,
) -> dict[str, Any]:
    factory = METHODS[name]
    size, levels = problem.size, problem.palette.numel()
    monitor = torch.Generator().manual_seed(seed + 1)

    # Variance at the start: a fresh estimator at θ = 0.
    start_estimator, _ = factory(problem, seed + 2)
    zero = torch.zeros(size, size, levels, dtype=DTYPE)
    t0 = time.perf_counter()
    start_grads = gradient_estimates(problem, start_estimator, zero, args.samples, args.var_repeats)
    var_start_s = time.perf_counter() - t0

    estimator, per_step = factory(problem, seed)
    evaluator = vg.Evaluator(problem.cost, backend="vectorized", budget=args.budget)
    per_step_evals = per_step * args.samples
    steps = args.budget // per_step_evals
    logits = torch.zeros(size, size, levels, dtype=DTYPE, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=args.lr)
    checkpoints = sorted(
        {round(k * steps / args.curve_points) for k in range(args.curve_points + 1)}
    )
    curve: list[dict[str, float]] = []
    losses: list[float] = []
    loop_s = 0.0
    for step in range(steps + 1):
        if step in checkpoints:
            point = hard_ssim(problem, logits.detach(), args.eval_samples, monitor)
            point.update(
                step=step,
                evals=evaluator.stats.evals,
                train_loss=float(np.mean(losses[-20:])) if losses else float("nan"),
            )
            curve.append(point)
        if step == steps:
            break
        t = time.perf_counter()
        optimizer.zero_grad()
        dist = OneHotCategorical(logits=logits)
        loss = vg.expectation(evaluator, dist, samples=args.samples, estimator=estimator)
        loss.backward()
        optimizer.step()
        loop_s += time.perf_counter() - t
        losses.append(float(loss.detach()))

    final = logits.detach()
    result: dict[str, Any] = {
        "estimator": repr(estimator),
        "evals_per_step": per_step_evals,
        "steps": steps,
        "evals": evaluator.stats.evals,
        "wall_s": loop_s,
        "f_seconds": evaluator.stats.seconds,
        **hard_ssim(problem, final, args.eval_samples, monitor),
        "final_train_loss": float(np.mean(losses[-20:])),
        "ln_var_start": ln_mean_variance(start_grads),
        "mean_abs_grad_start": float(start_grads.mean(0).abs().mean()),
        "variance_start_s": var_start_s,
        "mean_max_prob": float(torch.softmax(final, -1).amax(-1).mean()),
        "curve": curve,
    }
    end_grads = gradient_estimates(problem, estimator, final, args.samples, args.var_repeats)
    loo = vg.ScoreFunction("leave_one_out", seed=seed + 3)
    loo_grads = gradient_estimates(problem, loo, final, args.samples, args.var_repeats)
    result["ln_var_end"] = ln_mean_variance(end_grads)
    result["ln_var_end_loo"] = ln_mean_variance(loo_grads)
    if isinstance(estimator, vg.RELAX):
        result["relax_temperature"] = estimator.temperature
        result["relax_eta"] = float(estimator.eta.detach())
    result["mode_image"] = encode_image(final.argmax(-1))
    result["sample_image"] = encode_image(sample_indices(final, 1, monitor)[0])
    return result


# ---------------------------------------------------------------------------- output


def encode_image(indices: torch.Tensor) -> list[str]:
    """Palette indices ``[H, W]`` as one string of digits per row (P ≤ 10), for the JSON."""
    return ["".join(str(int(k)) for k in row) for row in indices]


def decode_image(rows: list[str]) -> np.ndarray:
    return np.array([[int(c) for c in row] for row in rows], dtype=np.int64)


def metadata(args: argparse.Namespace, problem: DitherProblem) -> dict[str, Any]:
    return run_metadata(
        "dither_ssim",
        "minimize E[1 - SSIM(x @ palette, target)] over one categorical per pixel with "
        "Adam on the logits; per estimator at an equal budget of f evaluations: E[SSIM] "
        "of hard samples, SSIM of the mode, evaluations, wall time, ln mean per-component "
        "gradient variance at theta = 0 and at the final theta",
        dtype=str(DTYPE),
        target=args.target,
        size=args.size,
        palette=problem.palette.tolist(),
        budget=args.budget,
        samples=args.samples,
        lr=args.lr,
        optimizer="Adam on the logits, theta_0 = 0",
        seed=args.seed,
        eval_samples=args.eval_samples,
        var_repeats=args.var_repeats,
        curve_points=args.curve_points,
        methods=args.methods,
        ssim={
            "window": problem.window,
            "sigma": SIGMA,
            "C1": C1,
            "C2": C2,
            "positions": "valid (no padding), mean of the SSIM map",
        },
        gumbel_temperature=GUMBEL_TEMPERATURE,
        relax_control=(
            "LocalControl: per-pixel MLP Linear(4, 8) -> softplus -> Linear(8, 1) on "
            "[x, blur(x), y, blur(y)] with x = softmax(z/0.5) @ palette, y the target, "
            "blur the SSIM window ('same', zero padding), mean over pixels; last layer "
            "starts at weight 0, bias 1 (relax_local) or 0 (relax_rebar); relax_rebar adds "
            "eta * f(softmax(z/lambda)), eta_0 = 1, lambda_0 = 0.5"
        ),
        relax_control_lr=RELAX_LR,
        relax_control_optimizer="Adam on the variance (the estimator's own step)",
    )


def plot(path: Path, problem: DitherProblem, references: dict[str, Any], results: dict[str, Any]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    palette = problem.palette.numpy()
    names = list(results)
    columns = max(3, len(names))
    fig = plt.figure(figsize=(2.6 * columns, 2.7 * 3 + 3.2))
    grid = fig.add_gridspec(4, columns, height_ratios=[1, 1, 1, 1.25])

    def show(ax, image: np.ndarray, title: str) -> None:
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])

    show(fig.add_subplot(grid[0, 0]), problem.target.numpy(), "target")
    show(
        fig.add_subplot(grid[0, 1]),
        palette[decode_image(references["threshold"]["image"])],
        f"thresholding  SSIM {references['threshold']['ssim']:.3f}",
    )
    show(
        fig.add_subplot(grid[0, 2]),
        palette[decode_image(references["floyd_steinberg"]["image"])],
        f"Floyd–Steinberg  SSIM {references['floyd_steinberg']['ssim']:.3f}",
    )
    for k, name in enumerate(names):
        r = results[name]
        show(
            fig.add_subplot(grid[1, k]),
            palette[decode_image(r["mode_image"])],
            f"{name} mode  SSIM {r['mode_ssim']:.3f}",
        )
        show(
            fig.add_subplot(grid[2, k]),
            palette[decode_image(r["sample_image"])],
            f"{name} sample  E[SSIM] {r['expected_ssim']:.3f}",
        )
    ax = fig.add_subplot(grid[3, :])
    for name in names:
        curve = results[name]["curve"]
        evals = [p["evals"] for p in curve]
        ax.plot(evals, [p["expected_ssim"] for p in curve], label=f"{name} E[SSIM]")
    for key, style in (("threshold", ":"), ("floyd_steinberg", "--")):
        ax.axhline(references[key]["ssim"], color="grey", linestyle=style, label=key)
    ax.set_xlabel("evaluations of f")
    ax.set_ylabel("E[SSIM] of hard samples")
    ax.legend(fontsize=7, ncol=3)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--target", choices=["china", "procedural"], default="china")
    parser.add_argument("--size", type=int, default=64, help="image side S")
    parser.add_argument("--palette", type=int, default=2, help="grey levels P")
    parser.add_argument("--budget", type=int, default=16_000, help="f evaluations per method")
    parser.add_argument("--samples", type=int, default=16, help="N samples per estimate")
    parser.add_argument("--lr", type=float, default=0.1, help="Adam learning rate on logits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--eval-samples", type=int, default=64)
    parser.add_argument("--var-repeats", type=int, default=32)
    parser.add_argument("--curve-points", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dither_ssim"))
    args = parser.parse_args(argv)
    if args.samples < 2:
        parser.error("--samples must be >= 2 (leave-one-out)")
    torch.set_num_threads(1)
    started = time.perf_counter()

    problem = DitherProblem(args.target, args.size, args.palette)
    target_np, palette_np = problem.target.double().numpy(), problem.palette.double().numpy()
    threshold = torch.as_tensor(nearest_indices(target_np, palette_np))
    fs = torch.as_tensor(floyd_steinberg(target_np, palette_np))
    uniform = hard_ssim(
        problem,
        torch.zeros(args.size, args.size, args.palette, dtype=DTYPE),
        args.eval_samples,
        torch.Generator().manual_seed(args.seed),
    )
    references = {
        "threshold": {
            "ssim": float(problem.ssim_of_indices(threshold)),
            "image": encode_image(threshold),
        },
        "floyd_steinberg": {
            "ssim": float(problem.ssim_of_indices(fs)),
            "image": encode_image(fs),
        },
        "uniform_random": {
            "expected_ssim": uniform["expected_ssim"],
            "expected_ssim_se": uniform["expected_ssim_se"],
        },
    }
    print(
        f"target {args.target} {args.size}x{args.size}, palette {problem.palette.tolist()}, "
        f"SSIM window {problem.window}; thresholding {references['threshold']['ssim']:.4f}, "
        f"Floyd–Steinberg {references['floyd_steinberg']['ssim']:.4f}, uniform random "
        f"{uniform['expected_ssim']:.4f}",
        flush=True,
    )

    results: dict[str, Any] = {}
    for k, name in enumerate(args.methods):
        t = time.perf_counter()
        results[name] = run_method(name, problem, args, seed=args.seed * 1000 + 10 * k)
        r = results[name]
        print(
            f"{name:12s} E[SSIM] {r['expected_ssim']:.4f} ± {r['expected_ssim_se']:.4f}  "
            f"mode {r['mode_ssim']:.4f}  evals {r['evals']}  steps {r['steps']}  "
            f"loop {r['wall_s']:.1f}s  ln var start {r['ln_var_start']:.2f}  "
            f"end {r['ln_var_end']:.2f} (LOO there {r['ln_var_end_loo']:.2f})  "
            f"[{time.perf_counter() - t:.0f}s]",
            flush=True,
        )

    print()
    header = (
        f"{'method':12s} {'E[SSIM]':>8s} {'±se':>7s} {'mode':>7s} {'evals':>7s} {'steps':>6s} "
        f"{'wall s':>7s} {'lnV0':>7s} {'lnV0-LOO':>8s} {'lnVend':>7s} {'-LOO':>6s}"
    )
    print(header)
    base = results.get("score_loo", {}).get("ln_var_start")
    for name, r in results.items():
        ratio = float("nan") if base is None else r["ln_var_start"] - base
        print(
            f"{name:12s} {r['expected_ssim']:8.4f} {r['expected_ssim_se']:7.4f} "
            f"{r['mode_ssim']:7.4f} {r['evals']:7d} {r['steps']:6d} {r['wall_s']:7.1f} "
            f"{r['ln_var_start']:7.2f} {ratio:8.2f} {r['ln_var_end']:7.2f} "
            f"{r['ln_var_end'] - r['ln_var_end_loo']:6.2f}"
        )

    args.out.mkdir(parents=True, exist_ok=True)
    total_s = time.perf_counter() - started
    record = {
        "metadata": {**metadata(args, problem), "total_wall_s": total_s},
        "references": references,
        "results": results,
    }
    (args.out / "dither_ssim.json").write_text(json.dumps(record, indent=1))
    plot(args.out / "dither_ssim.png", problem, references, results)
    print(f"\nwrote {args.out}/dither_ssim.json and .png in {total_s:.0f}s")


if __name__ == "__main__":
    main()
