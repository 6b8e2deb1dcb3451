"""Train a VAE with 200 binary latents: DisARM against the plain score function.

The encoder's Bernoulli latents b ~ q(b|x) have no reparameterization, so the
ELBO's gradient with respect to the encoder goes through ``vg.expectation``
with a discrete estimator; the cost of a sample is the negative ELBO term

    f_x(b) = −log p(x|b) − log p(b) + log q(b|x),

evaluated with the networks' parameters held fixed (a black box in b). The
decoder learns from its own log-likelihood at the same samples. Data:
scikit-learn's bundled 8 × 8 digits, binarized (no download).

    .venv/bin/python examples/discrete_vae.py --steps 3000

draws the training ELBO of both estimators and a few reconstructions: without
a baseline, the score function's variance holds the encoder back.
``benchmarks/discrete_vae.py`` compares all the discrete estimators.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.distributions import Bernoulli
from torch.nn import functional

import voidgrad as vg

LATENTS = 200


def negative_elbo(encoder: nn.Linear, decoder: nn.Linear, x: torch.Tensor):
    """f_x(b) for samples ``[N, B, 200]`` → ``[N, B]``, all parameters held fixed."""
    q_logits = encoder(x).detach()
    weight, bias = decoder.weight.detach(), decoder.bias.detach()

    def f(b: torch.Tensor) -> torch.Tensor:
        logits = b @ weight.T + bias
        log_likelihood = -functional.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none"
        ).sum(-1)
        log_q = (b * q_logits - functional.softplus(q_logits)).sum(-1)
        return -(log_likelihood - LATENTS * math.log(2) - log_q)

    return f


def train(estimator: vg.DistributionEstimator, data: torch.Tensor, steps: int, seed: int):
    """Adam on encoder and decoder; returns them and the ELBO per step (batch estimate)."""
    torch.manual_seed(seed)
    encoder, decoder = nn.Linear(64, LATENTS), nn.Linear(LATENTS, 64)
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    curve = []
    for _ in range(steps):
        x = data[torch.randint(len(data), (24,), generator=generator)]
        q = Bernoulli(logits=encoder(x))
        encoder_loss = vg.expectation(negative_elbo(encoder, decoder, x), q, 2, estimator)
        b = q.sample()
        decoder_loss = functional.binary_cross_entropy_with_logits(
            decoder(b), x, reduction="none"
        ).sum(-1)
        loss = (encoder_loss + decoder_loss).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        curve.append(-float(encoder_loss.detach().mean()))
    return encoder, decoder, curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=Path("discrete_vae.png"))
    arguments = parser.parse_args()

    data = torch.as_tensor(load_digits().data >= 8, dtype=torch.float32)
    estimators = {
        "DisARM": vg.DisARM(seed=0),
        "score function, no baseline": vg.ScoreFunction(seed=0),
    }
    runs = {name: train(e, data, arguments.steps, seed=0) for name, e in estimators.items()}
    for name, (*_, curve) in runs.items():
        print(f"{name}: ELBO {sum(curve[-100:]) / len(curve[-100:]):.2f} nats (last 100 steps)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(11, 3.6))
    curves = figure.add_subplot(1, 2, 1)
    window = max(1, arguments.steps // 50)
    for name, (*_, curve) in runs.items():
        smooth = torch.tensor(curve).unfold(0, window, 1).mean(1)
        curves.plot(range(window - 1, len(curve)), smooth, label=name)
    curves.set(xlabel="step", ylabel="ELBO (nats, batch estimate)")
    curves.legend()
    encoder, decoder, _ = runs["DisARM"]
    x = data[:8]
    with torch.no_grad():
        b = Bernoulli(logits=encoder(x)).sample()
        reconstruction = torch.sigmoid(decoder(b))
    for i in range(8):
        for row, image in enumerate((x[i], reconstruction[i])):
            axis = figure.add_subplot(4, 16, 16 * (row + 1) + 9 + i)
            axis.imshow(image.reshape(8, 8), cmap="gray", vmin=0, vmax=1)
            axis.axis("off")
    figure.text(0.56, 0.75, "digits (top) and DisARM reconstructions (bottom)")
    figure.tight_layout()
    figure.savefig(arguments.out, dpi=100)
    print(f"wrote {arguments.out}")


if __name__ == "__main__":
    main()
