r"""The base of the black-box estimators, and the checks of their perturbations.

A black-box estimator follows :mod:`voidgrad.estimators.protocol`: for
parameters θ (``[B, d]``) :meth:`~BlackBoxEstimator.ask` returns a
:class:`~voidgrad.estimators.protocol.Query` of the points ``x_{b,i}``
(``[B, M, d]``) at which F must be evaluated, with one seed per point;
:meth:`~BlackBoxEstimator.tell` reads the values ``[B, M, *out]`` back into
an :class:`~voidgrad.estimators.protocol.Estimate`: the estimated value
``[B, *out]`` and ``vjp(v)``, the estimated vector-Jacobian product for the
incoming gradient v, with the estimated trace of its covariance. It never
calls F itself: the caller (``vg.blackbox``, a run loop) evaluates every point
of the batch through one Evaluator call, so the counting and the parallelism
live in one place.

:class:`Probe` and :meth:`BlackBoxEstimator.probe` are the protocol before
ask/tell, kept (deprecated) so that estimators and callers written against it
still work.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from typing import Any

import torch

from voidgrad.errors import NumericalWarning
from voidgrad.estimators.protocol import Estimate, Estimator, Query
from voidgrad.validation import check_seed

#: Frames from warn_unresolved up to the user's call of the black box: ask, BlackBox.__call__.
_CALLER_FRAME = 4


class Probe(ABC):
    """Deprecated: the points to evaluate and how to read them, before ask/tell.

    An estimator that implements :meth:`BlackBoxEstimator.probe` (returning a
    Probe) instead of ``ask``/``tell`` still works, with a DeprecationWarning;
    ``estimator.probe(theta)`` on an ask/tell estimator returns a Probe over
    its query.

    Examples:
        >>> import warnings, torch, voidgrad as vg
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", DeprecationWarning)
        ...     probe = vg.SPSA(c=0.1, samples=4, seed=0).probe(torch.zeros(1, 3))
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
        """``[B, M, d]``: the M points to evaluate for each of the B parameter rows."""

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
        """The VJP ``[B, d]`` for the incoming gradient ``grad_output`` (``[B, *out]``), and its
        variance."""
        return self.vjp_with_variance(project(outputs, grad_output))

    def vjp_with_variance(
        self, projected: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`vjp` and :meth:`vjp_variance` at once."""
        return self.vjp(projected), self.vjp_variance(projected)


class BlackBoxEstimator(Estimator):
    """Base of the estimators that ``vg.blackbox`` accepts: ask for points, be told their values.

    A subclass implements :meth:`ask`, :meth:`tell` and :meth:`evaluations`
    (see :mod:`voidgrad.estimators.protocol`); learned parts step in
    :meth:`~voidgrad.estimators.protocol.Estimator.update`, schedules in
    :meth:`~voidgrad.estimators.protocol.Estimator.step`.

    Args:
        seed: seeds the estimator's own generator, so that a run replays bit for
            bit; ``None`` draws a seed from torch's default generator.

    Examples:
        >>> import torch, voidgrad as vg
        >>> from voidgrad.estimators.protocol import Estimate, Query
        >>> class Forward(vg.BlackBoxEstimator):  # points θ + h e_k, then θ
        ...     def __init__(self, h, seed=None):
        ...         super().__init__(seed)
        ...         self.h = h
        ...     def evaluations(self, dim):
        ...         return dim + 1
        ...     def ask(self, theta):
        ...         B, d = theta.shape
        ...         steps = torch.cat([self.h * torch.eye(d), torch.zeros(1, d)]).to(theta)
        ...         return Query(theta.unsqueeze(1) + steps, self.draw_seeds((B, d + 1)))
        ...     def tell(self, query, values):  # scalar F: values [B, d + 1]
        ...         def vjp(v):  # v: [B], the incoming gradient
        ...             differences = (values[:, :-1] - values[:, -1:]) / self.h
        ...             return v.unsqueeze(1) * differences, None  # no variance estimate
        ...         return Estimate(value=values[:, -1], vjp=vjp)
        >>> theta = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
        >>> vg.blackbox(lambda x: float(3 * x[0] - x[1]), Forward(h=1e-3, seed=0))(theta).backward()
        >>> theta.grad
        tensor([ 3.0000, -1.0000], dtype=torch.float64)
    """

    def __init__(self, seed: int | None) -> None:
        cls = type(self)
        if cls.ask is BlackBoxEstimator.ask and cls.probe is BlackBoxEstimator.probe:
            raise TypeError(f"{cls.__name__} must implement ask() and tell()")
        super().__init__(seed)
        # The stats of the last estimate a vg.blackbox made with this estimator (a dict the
        # backward pass fills in): only for the deprecated last_variance.
        self._last_stats: dict[str, float] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.probe is not BlackBoxEstimator.probe and cls.ask is BlackBoxEstimator.ask:
            warnings.warn(
                f"{cls.__name__} implements probe(), which is deprecated: implement ask() and "
                "tell() (see voidgrad.estimators.protocol)",
                DeprecationWarning,
                stacklevel=2,
            )

    @abstractmethod
    def evaluations(self, dim: int) -> int:
        """Evaluations of F per estimate for one parameter row of dimension ``dim``."""

    def ask(self, params: Any, *args: Any) -> Query:
        """The points ``[B, M, d]`` to evaluate for parameters ``params`` (θ, ``[B, d]``).

        This default serves subclasses written against the deprecated
        :meth:`probe`; an estimator implements its own.
        """
        probe = self.probe(params)
        return Query(inputs=probe.points(), seeds=probe.seeds, context=probe)

    def tell(self, query: Query, values: torch.Tensor) -> Estimate:
        """The estimate from the values ``[B, M, *out]`` of ``query.inputs``; trains nothing.

        This default serves subclasses written against the deprecated :meth:`probe`.
        """
        probe = query.context
        if not isinstance(probe, Probe):
            raise TypeError(f"{type(self).__name__} must implement tell()")
        check_values(query, values)

        def vjp(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            return probe.backward(values, v.to(values.dtype))

        return Estimate(value=probe.value(values), vjp=vjp)

    def probe(self, theta: torch.Tensor) -> Probe:
        """Deprecated: a :class:`Probe` over :meth:`ask` and :meth:`tell` (use those)."""
        warnings.warn(
            "probe() is deprecated: use ask() and tell() (see voidgrad.estimators.protocol)",
            DeprecationWarning,
            stacklevel=2,
        )
        return _QueryProbe(self, self.ask(theta))

    def reseed(self, seed: int) -> None:
        """Restart the random stream from ``seed``, keeping all other state.

        For independent replicates of one state: deep copies of an estimator,
        each reseeded, draw fresh samples around the same surrogate, schedule
        and buffers.
        """
        checked = check_seed(seed)
        if checked is None:
            raise ValueError("seed must be a non-negative int; got None")
        self.seed = checked
        self._generator.manual_seed(checked)

    @property
    def last_variance(self) -> float | None:
        """Deprecated: tr Cov of the last ``vg.blackbox`` estimate, summed over rows.

        Use ``bb.last_estimate.stats["variance"]`` of the black box ``bb``
        (present once its backward pass ran, where the estimator knows it).
        """
        warnings.warn(
            "estimator.last_variance is deprecated: read "
            'blackbox.last_estimate.stats.get("variance")',
            DeprecationWarning,
            stacklevel=2,
        )
        return self._last_stats.get("variance")


class _QueryProbe(Probe):
    """The deprecated Probe view of an ask/tell estimator's query."""

    def __init__(self, estimator: BlackBoxEstimator, query: Query) -> None:
        self.estimator = estimator
        self.query = query
        self.seeds = query.seeds
        self.estimate: Estimate | None = None

    def points(self) -> torch.Tensor:
        return self.query.inputs

    def value(self, outputs: torch.Tensor) -> torch.Tensor:
        # As the probes did, reading the value trains a learned estimator (ZeroGrads).
        self.estimate = self.estimator.tell(self.query, outputs)
        self.estimator.update(self.estimate)
        return self.estimate.value

    def vjp(self, projected: torch.Tensor) -> torch.Tensor:
        return self.vjp_with_variance(projected)[0]

    def vjp_variance(self, projected: torch.Tensor) -> torch.Tensor | None:
        return self.vjp_with_variance(projected)[1]

    def vjp_with_variance(
        self, projected: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        vjp = self.estimator.tell(self.query, projected).vjp
        assert vjp is not None
        return vjp(torch.ones(projected.shape[0], dtype=projected.dtype))

    def backward(
        self, outputs: torch.Tensor, grad_output: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        estimate = self.estimate or self.estimator.tell(self.query, outputs)
        assert estimate.vjp is not None
        return estimate.vjp(grad_output)


def check_theta(theta: object) -> torch.Tensor:
    """``theta``, refused unless it is a floating ``[B, d]`` tensor (what ``ask`` takes)."""
    if not isinstance(theta, torch.Tensor) or not theta.is_floating_point() or theta.ndim != 2:
        described = (
            f"{theta.dtype} of shape {tuple(theta.shape)}"
            if isinstance(theta, torch.Tensor)
            else type(theta).__name__
        )
        raise ValueError(f"theta must be a floating tensor of shape [B, d]; got {described}")
    return theta


def check_values(query: Query, values: object) -> torch.Tensor:
    """``values``, refused unless a tensor ``[B, M, *out]`` with the query's ``[B, M]``."""
    expected = tuple(query.seeds.shape)
    if not isinstance(values, torch.Tensor) or tuple(values.shape[:2]) != expected:
        got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(
            f"values must be a tensor [B, M, *out] with [B, M] = {list(expected)} as the query "
            f"asked; got {got}"
        )
    return values


def project(values: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``[B, M]``: ⟨v_b, F(x_{b,i})⟩ for values ``[B, M, *out]`` and ``v`` ``[B, *out]``."""
    B, M = values.shape[:2]
    return (values.reshape(B, M, -1) * v.to(values.dtype).reshape(B, 1, -1)).sum(-1)


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
    check_offset_reach(name, sigma, theta, offsets.abs().amax(1), _extra_frames=1)


def check_offset_reach(
    name: str, sigma: float, theta: torch.Tensor, reach: torch.Tensor, _extra_frames: int = 0
) -> None:
    """:func:`check_random_offsets` from ``reach`` ``[B, d]``, the largest |τ_k| (or a bound on it).

    A bound larger than the offsets refuses no representable point it should
    accept unless θ ± bound overflows, and calls fewer coordinates dead (the
    warning then says lost).
    """
    check_representable(name, sigma, theta, theta + reach, theta - reach)
    lost = sigma < float_spacing(theta) / 2
    if bool(lost.any()):
        dead = lost & (theta + reach == theta) & (theta - reach == theta)
        warn_unresolved(name, sigma, theta, lost, dead, _extra_frames=1 + _extra_frames)


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
