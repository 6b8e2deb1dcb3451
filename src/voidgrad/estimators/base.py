"""The protocol shared by black-box estimators: probe points, then combine evaluations.

A black-box estimator never calls the function itself. For parameters θ
(``[B, d]``) it returns a :class:`Probe`: the points ``x_{b,i}`` at which F
must be evaluated, one seed per point, and two linear read-outs of the
results, the estimated value and the estimated vector-Jacobian product,

    value_b = Σ_i a_{b,i} F(x_{b,i}),      ĝ_b = Σ_i W_{b,i} ⟨v_b, F(x_{b,i})⟩,

where v_b is the incoming gradient. The caller (``vg.blackbox``) evaluates
every point of the batch through one Evaluator call, so the counting and the
parallelism live in one place.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod

import torch

from voidgrad.errors import EvaluationError, NumericalWarning
from voidgrad.validation import check_seed

_SEED_HIGH = 2**31 - 1
#: Frames from warn_unresolved up to the user's call of the black box: probe, the autograd
#: Function's forward, Function.apply, BlackBox.__call__.
_CALLER_FRAME = 6


class Probe(ABC):
    """Points to evaluate for a batch of parameters, and how to read the results.

    Examples:
        >>> import torch, voidgrad as vg
        >>> probe = vg.SPSA(c=0.1, samples=4, seed=0).probe(torch.zeros(1, 3))  # B = 1 row, d = 3
        >>> probe.points().shape  # [B, M, d]: two directions, ± each
        torch.Size([1, 4, 3])
        >>> outputs = probe.points().sum(-1)  # F(x) = Σ x at every point: [B, M]
        >>> probe.value(outputs)  # the estimate of F(θ)
        tensor([0.])
        >>> probe.vjp(outputs).shape  # the gradient estimate, [B, d]
        torch.Size([1, 3])
    """

    #: ``[B, M]`` int64: the seed passed to F with each point (if F accepts one).
    seeds: torch.Tensor

    @abstractmethod
    def points(self) -> torch.Tensor:
        """``[B, M, d]``: the M points to evaluate for each of the B parameter rows.

        Built on demand, so that a probe kept for the backward pass does not
        hold them.
        """

    @abstractmethod
    def value(self, outputs: torch.Tensor) -> torch.Tensor:
        """Estimated value ``[B, *out]`` from the outputs ``[B, M, *out]``."""

    @abstractmethod
    def vjp(self, projected: torch.Tensor) -> torch.Tensor:
        """Estimated VJP ``[B, d]`` from ``projected[b, i] = ⟨v_b, F(x_{b,i})⟩`` (``[B, M]``)."""

    def vjp_variance(self, projected: torch.Tensor) -> torch.Tensor | None:
        """Estimated trace of the covariance of ``vjp(projected)``, ``[B]``; None if unknown."""
        return None

    def backward(
        self, outputs: torch.Tensor, grad_output: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The VJP ``[B, d]`` for incoming gradient ``grad_output`` ``[B, *out]``, and its variance.

        ``outputs`` are ``[B, M, *out]``. Linear read-outs project each output
        on the incoming gradient and call :meth:`vjp`; probes whose gradient is
        not linear in the outputs (a fitted surrogate) override this.
        """
        B, M = outputs.shape[:2]
        projected = (outputs.reshape(B, M, -1) * grad_output.reshape(B, 1, -1)).sum(-1)
        return self.vjp_with_variance(projected)

    def vjp_with_variance(
        self, projected: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`vjp` and :meth:`vjp_variance` at once; probes that share work override it."""
        return self.vjp(projected), self.vjp_variance(projected)


class BlackBoxEstimator(ABC):
    """Base of the estimators that ``vg.blackbox`` accepts.

    Args:
        seed: seeds the estimator's own generator, so that a run replays bit for
            bit; ``None`` draws a seed from torch's default generator.

    Examples:
        >>> import torch, voidgrad as vg
        >>> class ForwardProbe(vg.estimators.Probe):  # points θ + h e_k and θ
        ...     def __init__(self, theta, h, seeds):
        ...         self.theta, self.h, self.seeds = theta, h, seeds
        ...     def points(self):
        ...         B, d = self.theta.shape
        ...         steps = torch.cat([self.h * torch.eye(d), torch.zeros(1, d)])
        ...         return self.theta.unsqueeze(1) + steps  # [B, d + 1, d]
        ...     def value(self, outputs):
        ...         return outputs[:, -1]
        ...     def vjp(self, projected):
        ...         return (projected[:, :-1] - projected[:, -1:]) / self.h
        >>> class Forward(vg.BlackBoxEstimator):
        ...     def __init__(self, h, seed=None):
        ...         super().__init__(seed)
        ...         self.h = h
        ...     def evaluations(self, dim):
        ...         return dim + 1
        ...     def probe(self, theta):
        ...         B, d = theta.shape
        ...         return ForwardProbe(theta, self.h, self._draw_seeds((B, d + 1)))
        >>> theta = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
        >>> vg.blackbox(lambda x: float(3 * x[0] - x[1]), Forward(h=1e-3, seed=0))(theta).backward()
        >>> theta.grad
        tensor([ 3.0000, -1.0000], dtype=torch.float64)
    """

    def __init__(self, seed: int | None) -> None:
        seed = check_seed(seed)
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        self._generator = torch.Generator().manual_seed(seed)
        #: tr Cov of the last backward pass's estimate (summed over rows), if the probe knows it.
        self.last_variance: float | None = None

    @abstractmethod
    def probe(self, theta: torch.Tensor) -> Probe:
        """The points to evaluate for parameters ``theta`` (``[B, d]``)."""

    @abstractmethod
    def evaluations(self, dim: int) -> int:
        """Evaluations of F per estimate for one parameter row of dimension ``dim``."""

    def step(self) -> None:  # noqa: B027 (an optional hook, not abstract)
        """Advance per-step state (such as a sigma schedule); a no-op by default."""

    def state_dict(self) -> dict[str, object]:
        """The estimator's evolving state (its random stream), for checkpoints."""
        return {"generator": self._generator.get_state()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Continue from a :meth:`state_dict`."""
        generator = state["generator"]
        assert isinstance(generator, torch.Tensor)
        self._generator.set_state(generator)

    def _draw_seeds(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randint(0, _SEED_HIGH, shape, generator=self._generator, dtype=torch.int64)

    def _draw_mirrored_seeds(self, B: int, n: int, antithetic: bool, common: bool) -> torch.Tensor:
        """Seeds for a MirroredProbe's points; with ``common``, a pair shares its seed."""
        if antithetic and common:
            return self._draw_seeds((B, n)).repeat(1, 2)
        return self._draw_seeds((B, 2 * n if antithetic else n))


class MirroredProbe(Probe):
    """Points θ + τ_i (and θ − τ_i when antithetic) with weights W_i = s ⊙ w(τ_i).

    Non-antithetic:  ĝ = (1/n) Σ_i W_i ⟨v, F(θ + τ_i)⟩
    Antithetic:      ĝ = (1/2n) Σ_i W_i ⟨v, F(θ + τ_i) − F(θ − τ_i)⟩
    value = the mean of F over all points.

    The weight is a scale s times w(τ) = τ / ``unit``, or sign(τ) with
    ``sign_weights``: every estimator here has that form, so the weights are
    not kept between the passes. s is a number, or a ``[B, d]`` tensor with
    one scale per coordinate (SPSA's 1/c̃_k for the step actually taken).
    ``unit`` keeps w(τ) of order one, so that a weight such as τ/σ² is
    computed as (τ/σ)·(1/σ) and does not overflow for a tiny σ; the read-out
    runs in at least float32, so that 1/σ does not overflow float16.

    Failed evaluations (NaN rows under ``on_error="nan"``) are dropped: a
    direction counts only if all of its points succeeded, and the means are
    over the surviving directions.
    """

    def __init__(
        self,
        theta: torch.Tensor,
        offsets: torch.Tensor,
        seeds: torch.Tensor,
        antithetic: bool,
        weight_scale: float | torch.Tensor,
        sign_weights: bool = False,
        unit: float = 1.0,
    ) -> None:
        self.theta = theta
        self.offsets = offsets
        self.seeds = seeds
        self.antithetic = antithetic
        self.weight_scale = weight_scale
        self.sign_weights = sign_weights
        self.unit = unit

    def points(self) -> torch.Tensor:
        B, n, d = self.offsets.shape
        centre = self.theta.unsqueeze(1)
        if not self.antithetic:
            return centre + self.offsets
        points = torch.empty((B, 2 * n, d), dtype=self.offsets.dtype, device=self.offsets.device)
        torch.add(centre, self.offsets, out=points[:, :n])
        torch.sub(centre, self.offsets, out=points[:, n:])
        return points

    def _valid(self, finite: torch.Tensor) -> torch.Tensor:
        """``[B, n]`` mask of directions all of whose points are finite (``finite``: ``[B, M]``)."""
        if self.antithetic:
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
                params=self.theta[row],
            )
        return valid

    def value(self, outputs: torch.Tensor) -> torch.Tensor:
        B, M = outputs.shape[:2]
        valid = self._valid(torch.isfinite(outputs.reshape(B, M, -1)).all(-1))
        mask = torch.cat([valid, valid], 1) if self.antithetic else valid
        mask = mask.reshape(B, M, *([1] * (outputs.ndim - 2)))
        return torch.where(mask, outputs, 0.0).sum(1) / mask.sum(1).to(outputs.dtype)

    def _signal(self, projected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-direction scalars s_i (0 for dropped directions) and the valid mask ``[B, n]``."""
        valid = self._valid(torch.isfinite(projected))
        if self.antithetic:
            plus, minus = projected.chunk(2, dim=1)
            signal = 0.5 * (plus - minus)
        else:
            signal = projected
        return torch.where(valid, signal, 0.0), valid

    def _weights(self, dtype: torch.dtype) -> torch.Tensor:
        """W_i = s ⊙ w(τ_i), ``[B, n, d]``, computed in at least float32."""
        wide = torch.promote_types(dtype, torch.float32)
        offsets = self.offsets.to(wide)
        basis = offsets.sign() if self.sign_weights else offsets / self.unit  # a new tensor
        scale = self.weight_scale
        return basis.mul_(scale.unsqueeze(1) if isinstance(scale, torch.Tensor) else scale)

    def vjp(self, projected: torch.Tensor) -> torch.Tensor:
        signal, valid = self._signal(projected)
        return self._mean_estimate(signal, valid, self._weights(signal.dtype))

    def _mean_estimate(
        self, signal: torch.Tensor, valid: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """ĝ = mean_i W_i s_i over the valid directions, in the signal's dtype."""
        mean = signal.to(weights.dtype) / valid.sum(1, keepdim=True)
        return torch.einsum("bn,bnd->bd", mean, weights).to(signal.dtype)

    def vjp_variance(self, projected: torch.Tensor) -> torch.Tensor | None:
        return self.vjp_with_variance(projected)[1]

    def vjp_with_variance(
        self, projected: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        r"""ĝ and tr Cov(ĝ) ≈ (Σ_i ‖g_i‖² − n ‖ĝ‖²) / (n(n − 1)), g_i = W_i s_i, per row.

        The variance is the unbiased sample estimate from the n valid
        directions of the estimate itself (None with fewer than two). Both
        come from one ``[B, n, d]`` weight tensor, built once.
        """
        signal, valid = self._signal(projected)
        weights = self._weights(signal.dtype)
        estimate = self._mean_estimate(signal, valid, weights)
        n = valid.sum(1)
        if bool((n < 2).any()):
            return estimate, None
        squares = (signal.to(weights.dtype).pow(2) * weights.pow(2).sum(-1)).sum(1)
        mean = estimate.to(weights.dtype).pow(2).sum(1)
        return estimate, ((squares - n * mean) / (n * (n - 1))).clamp_min(0.0)


def float_spacing(theta: torch.Tensor) -> torch.Tensor:
    """The gap from |θ| to the next larger number of θ's dtype, elementwise: θ's resolution."""
    magnitude = theta.abs()
    return torch.nextafter(magnitude, torch.full_like(magnitude, math.inf)) - magnitude


def check_representable(name: str, value: float, theta: torch.Tensor, *spans: torch.Tensor) -> None:
    """Raise unless every span (θ ± perturbation, or a step between points) is finite.

    A perturbation that overflows θ's dtype (σ = 1e4 in float16, h = 1e308 in
    float64) would put infinite points or an infinite step into the estimate,
    which then comes out inf or NaN: a ValueError naming ``name`` instead.
    """
    if not all(bool(torch.isfinite(span).all()) for span in spans):
        dtype = str(theta.dtype).removeprefix("torch.")
        raise ValueError(
            f"{name}={value:.3g} overflows {dtype} at theta: the perturbed points or the steps "
            f"between them are not finite in {dtype}; use a smaller {name} or a wider dtype"
        )


def check_random_offsets(
    name: str, sigma: float, theta: torch.Tensor, offsets: torch.Tensor
) -> None:
    """Refuse offsets ``[B, n, d]`` of scale ``sigma`` that overflow θ's dtype; warn where lost.

    Lost: σ is below half the spacing of floats at θ_k, where most of the
    points θ ± τ round to θ and a smoothing estimate shrinks toward 0 (above
    it the rounding averages out; see ``voidgrad.estimators.smoothing``).
    Dead: the drawn offsets leave every point equal to θ_k, so the estimate
    there is exactly 0. Rounding is monotone, so the largest |τ_k| decides both
    the overflow and the dead coordinates.
    """
    reach = offsets.abs().amax(1)
    check_representable(name, sigma, theta, theta + reach, theta - reach)
    lost = sigma < float_spacing(theta) / 2
    if bool(lost.any()):
        dead = lost & (theta + reach == theta) & (theta - reach == theta)
        warn_unresolved(name, sigma, theta, lost, dead, _extra_frames=1)


def warn_unresolved(
    name: str,
    value: float,
    theta: torch.Tensor,
    lost: torch.Tensor,
    dead: torch.Tensor,
    _extra_frames: int = 0,
) -> None:
    """Warn that the perturbation ``name=value`` is lost to rounding at ``theta`` (``[B, d]``).

    ``lost`` (``[B, d]``) marks the coordinates where the perturbation is below
    the resolution of θ's dtype, ``dead`` those where every perturbed point
    equals θ, so that the estimate there is exactly zero. Nothing happens if
    no coordinate is lost. A warning rather than an error: the estimate is a
    valid computation, and a long run should not die of one step; but a zero
    or shrunken gradient must not pass for a flat function.
    """
    if not bool(lost.any()):
        return
    if bool(torch.equal(lost, dead)):
        consequence = (
            "the perturbed points equal theta there, so the gradient estimate there is zero"
        )
    else:
        consequence = (
            "most perturbed points equal theta there, so the gradient estimate there is biased "
            "toward zero"
        )
    dtype = str(theta.dtype).removeprefix("torch.")
    largest = float(theta.abs()[lost].max())
    warnings.warn(
        f"{name}={value:.3g} is below the resolution of {dtype} at theta (|theta| up to "
        f"{largest:.3g}) in {int(lost.any(0).sum())} of {theta.shape[-1]} coordinates: "
        f"{consequence}. Use a larger {name} or a wider dtype.",
        NumericalWarning,
        stacklevel=_CALLER_FRAME + _extra_frames,
    )
