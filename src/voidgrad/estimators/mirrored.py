r"""The read-out of mirrored points θ ± τ_i: value, vector-Jacobian product and its variance.

Gaussian smoothing and SPSA ask for the points θ + τ_i (and θ − τ_i when
antithetic) and read the values back with weights W_i = s ⊙ w(τ_i):

    Non-antithetic:  ĝ = (1/n) Σ_i W_i ⟨v, F(θ + τ_i)⟩
    Antithetic:      ĝ = (1/2n) Σ_i W_i ⟨v, F(θ + τ_i) − F(θ − τ_i)⟩
    value = the mean of F over all points,

v the incoming gradient. The weight is a scale s times w(τ) = τ / ``unit``,
or sign(τ) with ``sign_weights``, so the weights are rebuilt from τ when
needed rather than kept. s is a number, or a ``[B, d]`` tensor with one scale
per coordinate (SPSA's 1/c̃_k for the step actually taken). A weight that is
no such function of τ alone (guided smoothing's Σ⁻¹τ/σ²) is given explicitly,
as ``weights`` ``[B, n, d]``. ``unit`` keeps w(τ) of order one, so that a
weight such as τ/σ² is computed as (τ/σ)·(1/σ) and does not overflow for a
tiny σ; the read-out runs in at least float32, so that 1/σ does not overflow
float16.

ĝ is :func:`voidgrad.estimators.control.score_estimate` with scores W_i and
c = 0, the shared score-function formula. Offsets held as seeds
(:class:`~voidgrad.estimators.regenerated.SeededOffsets`) are read out one
direction at a time instead, accumulating the same sums in O(d) memory.

Failed evaluations (NaN rows under ``on_error="nan"``) are dropped: a
direction counts only if all of its points succeeded, and the means are over
the surviving directions. The variance of ĝ is estimated from the spread of
the n per-direction terms g_i = W_i s_i of the estimate itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from voidgrad.errors import EvaluationError
from voidgrad.estimators.base import project
from voidgrad.estimators.control import score_estimate
from voidgrad.estimators.protocol import Estimate, Estimator, Query
from voidgrad.estimators.regenerated import RegeneratedPoints, SeededOffsets
from voidgrad.estimators.sparsity import JacobianSparsity


@dataclass(frozen=True)
class Mirrored:
    """What a mirrored query needs to read its values: θ ``[B, d]``, τ ``[B, n, d]``, the weights.

    Attributes:
        theta: the parameters the points are mirrored about.
        offsets: τ_i ``[B, n, d]``, as drawn (the weights use them, not the
            rounded steps), or their seeds, to regenerate them when needed.
        antithetic: whether θ − τ_i was asked for too (the last n points).
        weight_scale: s, a number or ``[B, d]``.
        sign_weights: w(τ) = sign(τ) instead of τ / ``unit``.
        unit: the unit of w(τ) = τ / unit.
        sparsity: the outputs' dependency pattern, crediting each parameter
            with the outputs that depend on it only (:mod:`~voidgrad.estimators.sparsity`).
        weights: W_i themselves, ``[B, n, d]``, used instead of s ⊙ w(τ_i)
            (which ``weight_scale``, ``sign_weights`` and ``unit`` then do not
            enter); None builds them from τ.
    """

    theta: torch.Tensor
    offsets: torch.Tensor | SeededOffsets
    antithetic: bool
    weight_scale: float | torch.Tensor
    sign_weights: bool = False
    unit: float = 1.0
    sparsity: JacobianSparsity | None = None
    weights: torch.Tensor | None = None


def mirrored_context(query: Query) -> Mirrored:
    """The :class:`Mirrored` context of ``query``, refused if another estimator asked it."""
    if not isinstance(query.context, Mirrored):
        raise TypeError(
            "query must come from this estimator's ask(); its context is "
            f"{type(query.context).__name__}"
        )
    return query.context


def mirrored_points(context: Mirrored) -> torch.Tensor | RegeneratedPoints:
    """``[B, M, d]``: θ + τ_i, then θ − τ_i when antithetic (M = n or 2n).

    Made on demand (:class:`~voidgrad.estimators.regenerated.RegeneratedPoints`)
    when the offsets are held as seeds.
    """
    offsets = context.offsets
    if isinstance(offsets, SeededOffsets):
        return RegeneratedPoints(context.theta, offsets, context.antithetic)
    B, n, d = offsets.shape
    centre = context.theta.unsqueeze(1)
    if not context.antithetic:
        return centre + offsets
    points = torch.empty((B, 2 * n, d), dtype=offsets.dtype, device=offsets.device)
    torch.add(centre, offsets, out=points[:, :n])
    torch.sub(centre, offsets, out=points[:, n:])
    return points


def mirrored_seeds(
    estimator: Estimator, B: int, n: int, antithetic: bool, common: bool
) -> torch.Tensor:
    """``[B, M]`` seeds from ``estimator``'s stream; with ``common``, a pair shares its seed."""
    if antithetic and common:
        return estimator.draw_seeds((B, n)).repeat(1, 2)
    return estimator.draw_seeds((B, 2 * n if antithetic else n))


def mirrored_estimate(context: Mirrored, values: torch.Tensor) -> Estimate:
    """The value and (lazily) the VJP with its variance, from values ``[B, M, *out]``."""
    sparsity = context.sparsity
    if sparsity is not None:
        sparsity.check(tuple(values.shape[2:]), context.theta.shape[1])
    B, M = values.shape[:2]
    valid = _valid(context, torch.isfinite(values.reshape(B, M, -1)).all(-1))

    def vjp(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if isinstance(context.offsets, SeededOffsets):
            return regenerated_vjp(context, context.offsets, values, valid, v)
        if sparsity is not None:
            return sparse_mirrored_vjp(context, sparsity, values, valid, v)
        return mirrored_vjp(context, project(values, v))

    return Estimate(value=mirrored_value(context, values, valid), vjp=vjp)


def mirrored_value(context: Mirrored, values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[B, *out]``: the mean of F over the points of the ``valid`` directions ``[B, n]``."""
    mask = torch.cat([valid, valid], 1) if context.antithetic else valid
    mask = mask.reshape(*values.shape[:2], *([1] * (values.ndim - 2)))
    return torch.where(mask, values, 0.0).sum(1) / mask.sum(1).to(values.dtype)


def mirrored_vjp(
    context: Mirrored, projected: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""ĝ ``[B, d]`` and tr Cov(ĝ) ≈ (Σ_i ‖g_i‖² − n ‖ĝ‖²) / (n(n − 1)), g_i = W_i s_i, ``[B]``.

    ``projected[b, i] = ⟨v_b, F(x_{b,i})⟩``. The variance is the unbiased sample
    estimate from the n valid directions of the estimate itself (None with
    fewer than two). Both come from one ``[B, n, d]`` weight tensor, built once.
    """
    signal, valid = _signal(context, projected)
    weights = _weights(context, signal.dtype)
    estimate = score_estimate(
        projected.to(weights.dtype), weights, antithetic=context.antithetic, valid=valid
    ).to(signal.dtype)
    n = valid.sum(1)
    if bool((n < 2).any()):
        return estimate, None
    squares = (signal.to(weights.dtype).pow(2) * weights.pow(2).sum(-1)).sum(1)
    return estimate, _trace_covariance(squares, estimate.to(weights.dtype), n)


def sparse_mirrored_vjp(
    context: Mirrored,
    sparsity: JacobianSparsity,
    values: torch.Tensor,
    valid: torch.Tensor,
    v: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""ĝ_j = (1/n) Σ_i W_ij (Sᵀ (v ⊙ δF(i)))_j ``[B, d]`` and its variance ``[B]`` (as above).

    δF(i) = ½[F(θ + τ_i) − F(θ − τ_i)] (antithetic) or F(θ + τ_i), per output,
    over the ``valid`` directions ``[B, n]`` (those without a non-finite
    output). The per-direction terms g_i = W_i ⊙ Sᵀ(v ⊙ δF(i)) are
    ``[B, n, d]``, as the weights already are.
    """
    signal = _output_signal(context, values, valid, v)
    wide = signal.dtype
    B, n = signal.shape[:2]
    d = context.theta.shape[1]
    terms = sparsity.credit(signal.reshape(B * n, -1)).reshape(B, n, d)
    terms.mul_(_weights(context, wide))
    count = valid.sum(1, keepdim=True)
    estimate = terms.sum(1) / count
    dtype = values.dtype
    if bool((count < 2).any()):
        return estimate.to(dtype), None
    variance = _trace_covariance(terms.pow(2).sum((1, 2)), estimate, count.squeeze(1))
    return estimate.to(dtype), variance.to(dtype)


def regenerated_vjp(
    context: Mirrored,
    offsets: SeededOffsets,
    values: torch.Tensor,
    valid: torch.Tensor,
    v: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""ĝ = (1/n) Σ_i g_i and its variance, as above, one regenerated direction at a time.

    g_i = W_i s_i with s_i = ⟨v, δF(i)⟩, or W_i ⊙ Sᵀ(v ⊙ δF(i)) with a
    sparsity pattern; δF(i) is ½[F(θ + τ_i) − F(θ − τ_i)] (antithetic) or
    F(θ + τ_i), over the ``valid`` directions ``[B, n]``. Σ_i g_i and
    Σ_i ‖g_i‖² are accumulated as each τ_i is drawn again, so the memory is
    the estimate ``[B, d]`` and one offset's worth of ``[d]`` tensors.
    """
    signal = _output_signal(context, values, valid, v)
    wide = signal.dtype
    B = signal.shape[0]
    if context.sparsity is None:
        signal = signal.sum(-1)  # s_i = ⟨v, δF(i)⟩
    n = offsets.shape[1]
    estimate = torch.zeros((B, offsets.dim), dtype=wide, device=context.theta.device)
    squares = torch.zeros(B, dtype=wide, device=context.theta.device)
    scale = context.weight_scale
    for row in range(B):
        row_scale = scale[row] if isinstance(scale, torch.Tensor) else scale
        for direction in range(n):
            if not bool(valid[row, direction]):
                continue
            term = _offset_weights(context, offsets.draw(row, direction), wide, row_scale)
            if context.sparsity is None:
                term.mul_(signal[row, direction])
            else:
                term.mul_(context.sparsity.credit(signal[row, direction].unsqueeze(0))[0])
            estimate[row].add_(term)
            squares[row] += torch.dot(term, term)
    count = valid.sum(1)
    estimate.div_(count.unsqueeze(1).to(wide))
    dtype = values.dtype
    if bool((count < 2).any()):
        return estimate.to(dtype), None
    return estimate.to(dtype), _trace_covariance(squares, estimate, count).to(dtype)


def _output_signal(
    context: Mirrored, values: torch.Tensor, valid: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """v ⊙ δF(i) per output, ``[B, n, outputs]`` in at least float32; 0 for invalid directions.

    δF(i) = ½[F(θ + τ_i) − F(θ − τ_i)] (antithetic) or F(θ + τ_i).
    """
    B, M = values.shape[:2]
    wide = torch.promote_types(values.dtype, torch.float32)
    flat = values.reshape(B, M, -1).to(wide)
    if context.antithetic:
        plus, minus = flat.chunk(2, dim=1)
        flat = 0.5 * (plus - minus)
    return torch.where(valid.unsqueeze(-1), flat * v.to(wide).reshape(B, 1, -1), 0.0)


def _trace_covariance(
    squares: torch.Tensor, estimate: torch.Tensor, n: torch.Tensor
) -> torch.Tensor:
    """tr Cov(ĝ) ≈ (Σ_i ‖g_i‖² − n ‖ĝ‖²) / (n(n − 1)) ``[B]``, from ``squares`` = Σ_i ‖g_i‖²."""
    return ((squares - n * estimate.pow(2).sum(1)) / (n * (n - 1))).clamp_min(0.0)


def _valid(context: Mirrored, finite: torch.Tensor) -> torch.Tensor:
    """``[B, n]`` mask of directions all of whose points are finite (``finite``: ``[B, M]``)."""
    if context.antithetic:
        plus, minus = finite.chunk(2, dim=1)
        valid = plus & minus
    else:
        valid = finite
    empty = ~valid.any(dim=1)
    if empty.any():
        row = int(empty.nonzero()[0, 0])
        raise EvaluationError(
            f"every evaluation of the estimate for parameter row {row} failed",
            row=row,
            params=context.theta[row],
        )
    return valid


def _signal(context: Mirrored, projected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-direction scalars s_i (0 for dropped directions) and the valid mask ``[B, n]``."""
    valid = _valid(context, torch.isfinite(projected))
    if context.antithetic:
        plus, minus = projected.chunk(2, dim=1)
        signal = 0.5 * (plus - minus)
    else:
        signal = projected
    return torch.where(valid, signal, 0.0), valid


def _weights(context: Mirrored, dtype: torch.dtype) -> torch.Tensor:
    """W_i = s ⊙ w(τ_i), or the explicit weights, ``[B, n, d]``, in at least float32."""
    wide = torch.promote_types(dtype, torch.float32)
    if context.weights is not None:
        return context.weights.to(wide)
    assert isinstance(context.offsets, torch.Tensor)  # seeds are read out by regenerated_vjp
    scale = context.weight_scale
    return _offset_weights(
        context,
        context.offsets,
        wide,
        scale.unsqueeze(1) if isinstance(scale, torch.Tensor) else scale,
    )


def _offset_weights(
    context: Mirrored, offsets: torch.Tensor, wide: torch.dtype, scale: float | torch.Tensor
) -> torch.Tensor:
    """s ⊙ w(τ) for offsets τ of any shape, in the dtype ``wide``: a new tensor."""
    offsets = offsets.to(wide)
    basis = offsets.sign() if context.sign_weights else offsets / context.unit  # a new tensor
    return basis.mul_(scale)
