r"""Bernoulli and categorical variables as thresholded continuous ones (the Gumbel-max view).

A discrete sample b ~ p(b|θ) is written b = H(z) with z ~ p(z|θ) continuous
and reparameterizable, which is what the relaxed estimators differentiate.
With logits l (for a categorical, normalized: l_k = log p_k):

Bernoulli     z = l + log u − log(1 − u),   u ~ U(0, 1),    H(z) = 1[z > 0]
Categorical   z_k = l_k − log(−log u_k),    u_k ~ U(0, 1),  H(z) = argmax_k z_k

The relaxation replaces H by σ_λ(z): sigmoid(z/λ), or softmax(z/λ) over k.

REBAR and RELAX also need z̃ ~ p(z | b, θ), the continuous variable
conditioned on its discrete outcome, reparameterized with fresh v ~ U(0, 1)
(Tucker et al. 2017, appendix):

Bernoulli     u' = (1 − p) + v p  if b = 1,   u' = v (1 − p)  if b = 0,
              z̃ = l + log u' − log(1 − u')
Categorical   z̃_b = −log(−log v_b),
              z̃_k = −log(−log v_k / p_k − log v_b)   for k ≠ b

Both keep their dependence on θ through p (dropping it, as one reference
implementation once did, biases RELAX).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.distributions import Bernoulli, Categorical, Distribution, OneHotCategorical
from torch.nn import functional

from voidgrad.estimators.samplers import gumbel, uniform

Kind = Literal["bernoulli", "categorical", "one_hot"]


def discrete_kind(dist: Distribution, estimator: str) -> Kind:
    """Which discrete family ``dist`` is, or a clear error for any other distribution."""
    if isinstance(dist, Bernoulli):
        return "bernoulli"
    if isinstance(dist, OneHotCategorical):
        return "one_hot"
    if isinstance(dist, Categorical):
        return "categorical"
    raise ValueError(
        f"{estimator} needs a Bernoulli, Categorical or OneHotCategorical distribution; "
        f"got {type(dist).__name__} (use vg.LAX or vg.Pathwise for continuous variables)"
    )


def discrete_logits(dist: Distribution, estimator: str) -> tuple[Kind, torch.Tensor]:
    """The family of ``dist`` and its logits (normalized for categoricals), in the graph."""
    kind = discrete_kind(dist, estimator)
    assert isinstance(dist, Bernoulli | Categorical | OneHotCategorical)
    return kind, dist.logits


def sample_relaxed(logits: torch.Tensor, kind: Kind, samples: int) -> torch.Tensor:
    """z ~ p(z|θ): ``[samples, *logits.shape]``, reparameterized in ``logits``."""
    shape = (samples, *logits.shape)
    if kind == "bernoulli":  # logistic noise
        u = uniform(shape, logits)
        return logits + torch.log(u) - torch.log1p(-u)
    return logits + gumbel(shape, logits)


def threshold(z: torch.Tensor, kind: Kind) -> torch.Tensor:
    """H(z) as a float tensor: bits for Bernoulli, one-hot vectors for categoricals."""
    if kind == "bernoulli":
        return (z > 0).to(z.dtype)
    return functional.one_hot(z.argmax(-1), z.shape[-1]).to(z.dtype)


def relax(z: torch.Tensor, kind: Kind, temperature: torch.Tensor | float) -> torch.Tensor:
    """σ_λ(z): the continuous stand-in for H(z)."""
    if kind == "bernoulli":
        return torch.sigmoid(z / temperature)
    return torch.softmax(z / temperature, dim=-1)


def sample_conditional(logits: torch.Tensor, b: torch.Tensor, kind: Kind) -> torch.Tensor:
    """z̃ ~ p(z | b, θ) for ``b = threshold(z)``, reparameterized in ``logits``."""
    v = uniform(b.shape, logits)
    if kind == "bernoulli":
        log_p = functional.logsigmoid(logits)
        log_q = functional.logsigmoid(-logits)  # log(1 − p)
        # b = 1: u' = 1 − p(1 − v);  b = 0: u' = v(1 − p).  Written in logs for stability.
        log_u_one = torch.log1p(-torch.exp(log_p) * (1 - v))
        log_1mu_one = log_p + torch.log1p(-v)
        log_u_zero = torch.log(v) + log_q
        log_1mu_zero = torch.log1p(-v * torch.exp(log_q))
        ones = b > 0.5
        return (
            logits
            + torch.where(ones, log_u_one, log_u_zero)
            - torch.where(ones, log_1mu_one, log_1mu_zero)
        )
    log_p = torch.log_softmax(logits, dim=-1)
    neg_log_v = -torch.log(v)
    neg_log_v_b = (neg_log_v * b).sum(-1, keepdim=True)
    others = -torch.log(torch.exp(torch.log(neg_log_v) - log_p) + neg_log_v_b)
    return torch.where(b > 0.5, -torch.log(neg_log_v_b), others)


def score(logits: torch.Tensor, b: torch.Tensor, kind: Kind) -> torch.Tensor:
    """∂ log p(b|θ) / ∂ logits per sample: b − σ(l), or one_hot(b) − softmax(l)."""
    if kind == "bernoulli":
        return b - torch.sigmoid(logits)
    return b - torch.softmax(logits, dim=-1)


def as_dist_sample(b: torch.Tensor, kind: Kind) -> torch.Tensor:
    """A float H(z) in the format ``dist.sample()`` returns (indices for Categorical)."""
    return b.argmax(-1) if kind == "categorical" else b
