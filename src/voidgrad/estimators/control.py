r"""The score function with a control variate: one formula for smoothing, ZeroGrads and LAX.

For L(θ) = E_{z~p(z|θ)}[f(z)], samples z_i, scores s_i = ∇_θ log p(z_i|θ) and
a control variate c whose expected gradient ∇_θ E[c(z)] is known otherwise
(by reparameterization, or Stein's lemma),

    ĝ = (1/N) Σ_i (f(z_i) − c(z_i)) s_i + (1/N) Σ_i ∇_θ c(z_i(θ)),

unbiased for ∇L whatever c is, as long as c(z_i) does not depend on f(z_i)
(E[c s] = ∇E[c] cancels the last term in expectation). Its variance is small
where c follows f. The estimators differ only in c and in how s_i is held:

* Gaussian smoothing, p = N(θ, σ²I): s_i = ε_i/σ², c = 0 (or a baseline);
* ZeroGrads: c = β h_φ, a fitted surrogate scaled by β;
* LAX: c = c_φ, trained to minimize Var(ĝ) (RELAX adds a conditional sample).

:func:`score_estimate` computes ĝ from explicit scores (black boxes, where
s_i is a known vector); :func:`score_objective` builds the scalar whose
θ-gradient is ĝ (distributions, where autograd supplies ∇ log p).
:class:`ControlCoefficient` estimates the variance-minimizing β.
"""

from __future__ import annotations

import torch


def score_estimate(
    costs: torch.Tensor,
    scores: torch.Tensor,
    control: torch.Tensor | None = None,
    control_gradient: torch.Tensor | None = None,
    *,
    antithetic: bool = False,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""ĝ = (1/N) Σ_i (f_i − c_i) s_i + ḡ_c from explicit scores.

    With ``antithetic``, the samples are pairs z_i^± = θ ± τ_i of a symmetric
    p, so s(z_i^−) = −s(z_i^+), and the n pairs give

        ĝ = (1/n) Σ_i ½[(f_i^+ − c_i^+) − (f_i^− − c_i^−)] s_i^+ + ḡ_c:

    each pair is differenced before it is weighted, so that equal values at
    θ ± τ cancel exactly (weighted first, f s with s ~ τ/σ² leaves a rounding
    residue of order |f|/σ). The sum is formed as Σ_i (f_i/N) s_i, one
    rounding order for every caller.

    Args:
        costs: f_i, ``[..., N]``; with ``antithetic``, the N = 2n values at
            θ + τ_i first, then those at θ − τ_i.
        scores: s_i, ``[..., N, d]``; with ``antithetic``, the n scores of the
            θ + τ_i points, ``[..., n, d]``.
        control: c_i, shaped like ``costs``; None for c = 0.
        control_gradient: (1/N) Σ_i ∇c(z_i(θ)), ``[..., d]``; None for 0.
        antithetic: whether the samples are antithetic pairs (see above).
        valid: ``[..., n]`` mask of the samples (pairs) to keep, the others
            dropped (failed evaluations): the mean is over the kept ones.
            None keeps all.

    Returns:
        ĝ, ``[..., d]``.
    """
    centred = costs if control is None else costs - control
    if antithetic:
        plus, minus = centred.chunk(2, dim=-1)
        centred = 0.5 * (plus - minus)
    if valid is None:
        weights = centred / centred.shape[-1]
    else:
        weights = torch.where(valid, centred, 0.0) / valid.sum(-1, keepdim=True)
    dtype = torch.promote_types(weights.dtype, scores.dtype)
    estimate = torch.einsum("...n,...nd->...d", weights.to(dtype), scores.to(dtype))
    return estimate if control_gradient is None else estimate + control_gradient


def score_objective(
    costs: torch.Tensor,
    log_prob: torch.Tensor,
    control: torch.Tensor | None = None,
    control_path: torch.Tensor | None = None,
) -> torch.Tensor:
    """(1/N) Σ_i [(f_i − c_i) log p(z_i|θ) + k_i], whose θ-gradient is ĝ.

    Args:
        costs: f_i, ``[N, *batch]``, held fixed.
        log_prob: log p(z_i|θ) of the samples held fixed, in θ's graph.
        control: c_i at the samples held fixed (no path to θ; a path to the
            control's own parameters φ is kept, so that ĝ can be
            differentiated in φ); None for c = 0.
        control_path: anything whose θ-gradient is that of c(z_i(θ)) (the
            reparameterized control); None for a control with no θ-path (a
            baseline).

    Returns:
        ``[*batch]``: one objective per independent expectation.
    """
    centred = costs.detach() if control is None else costs.detach() - control
    objective = centred * log_prob
    if control_path is not None:
        objective = objective + control_path
    return objective.mean(0)


class ControlCoefficient:
    """β = −E[⟨a, b⟩] / E[⟨b, b⟩], clipped to [0, 1], from earlier steps' a and b.

    For an estimate a + β b with E[b] = 0 (b the control's zero-mean part),
    this β minimizes the variance. It is estimated from earlier steps only,
    with weights decaying by ``decay`` a step, so β is independent of this
    step's noise and a + β b stays unbiased. Before any step (or while b has
    been zero) β is 0: the estimate is the plain score function.
    """

    def __init__(self, decay: float = 0.9) -> None:
        self.decay = decay
        self.cross = 0.0
        self.square = 0.0

    @property
    def value(self) -> float:
        """β for the next estimate."""
        if self.square <= 0:
            return 0.0
        return min(max(-self.cross / self.square, 0.0), 1.0)

    def record(self, plain: torch.Tensor, control: torch.Tensor) -> None:
        """Add this step's ⟨a, b⟩ and ⟨b, b⟩ (``plain`` a, ``control`` b, any equal shapes)."""
        # torch.dot, so that ZeroGrads' β (a dot product before) replays bit for bit.
        plain, control = plain.reshape(-1), control.reshape(-1)
        self.cross = self.decay * self.cross + float(torch.dot(plain, control))
        self.square = self.decay * self.square + float(torch.dot(control, control))

    def state_dict(self) -> dict[str, float]:
        """The decayed moments."""
        return {"cross": self.cross, "square": self.square}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Continue from :meth:`state_dict`."""
        self.cross, self.square = float(state["cross"]), float(state["square"])
