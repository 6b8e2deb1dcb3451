r"""ZeroGrads (Fischer & Ritschel 2024): the gradient of a learned local surrogate of the loss.

A network h_φ: ℝ^d → ℝ is fitted online to samples of the loss around the
current parameters and its gradient stands in for the loss's. Each step:

1. draw antithetic offsets ε_i ~ N(0, σ²I) and points x_i = θ ± ε_i;
2. evaluate y_i = L(x_i − t_i), with inner smoothing t_i ~ N(0, (ρσ)²I)
   (ρ = ``inner_sigma``; 0 evaluates at x_i itself);
3. fit φ by ``fit_steps`` Adam steps on (1/|D|) Σ_{(x, y) ∈ D} (h_φ(x) − y)²,
   D = this step's samples plus up to ``replay`` earlier steps';
4. with ``unbiased=False`` (the reference), return ĝ = ∇_θ h_φ(θ); by
   default, the control-variate estimate below.

σ is fixed in the reference; ``schedule`` anneals it as PRDPT does (σ_t, and
the moving frame's input scale with it).

φ is never reset: the surrogate carries over from step to step, and that
hysteresis (with the network's spectral bias) is what smooths the gradient
trajectory in high dimension. The reference's estimate ∇h_φ(θ) is
**biased**: it is the gradient of a fit, exact only as far as h_φ matches the
smoothed loss.

``unbiased=True`` (the default) uses the surrogate as a control variate
instead (LAX with c = β h): with h the surrogate *before* it sees this step's
samples,

    ĝ = a + β b,   a = (1/N) Σ_i y_i ε_i / σ²,   b = (1/N) Σ_i [∇h(x_i) − h(x_i) ε_i / σ²],

unbiased for ∇_θ E_ε[L(θ + ε)] (with ρ = 0) whatever h and β are (Stein's
lemma: E[∇h(θ + ε)] = E[h(θ + ε) ε]/σ²), with variance small where h fits L.
The surrogate is fitted afterwards, as usual. b has mean zero; a surrogate
that has not yet learned the loss (or whose gradient is wild away from its
fitting points) would *add* variance at β = 1, so by default β is the
variance-minimizing coefficient −E[a·b]/E[b·b], estimated from the earlier
steps only (so β is independent of this step's noise and ĝ stays unbiased)
with weights decaying by 0.9 a step, clipped to [0, 1]; ``control_scale``
fixes it instead.

Where h lives (``frame``):

* ``"moving"`` (default): h models the loss as a function of the offset from
  the *current* parameters, u = (x − θ_t)/s (s = ``input_scale``), on targets
  centred per step, y_i − ȳ (only differences carry gradient information),
  divided by their spread over the fitting set. As θ travels many σ, the
  inputs stay O(1) and the previous fit remains a good prior for the next;
* ``"fixed"`` (the reference's): u = (x − θ₀)/s with θ₀ the first step's
  parameters, on targets standardized once by the first step's mean and
  spread, so h models the loss landscape itself.

The default surrogate (:class:`MLPSurrogate`) is a leaky-ReLU MLP; above
``low_rank_above`` inputs its first layer is factorized through ``rank``
units, so d = 200 000 costs 2·10⁵·rank weights instead of 2·10⁵·width.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from voidgrad.estimators.base import BlackBoxEstimator, Probe, check_random_offsets
from voidgrad.estimators.schedules import (
    SigmaSchedule,
    check_schedule,
    scheduled_sigma,
    sigma_name,
)
from voidgrad.validation import check_flag, check_int, check_positive, check_samples


def check_network_options(width: int, depth: int, encoding_levels: int, activation: str) -> None:
    """Raise naming the first of :class:`MLPSurrogate`'s options that is out of range."""
    check_int("width", width, 1)
    check_int("depth", depth, 1)
    check_int("encoding_levels", encoding_levels, 0)
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}; got {activation!r}")


class MLPSurrogate(nn.Module):
    """h(u) = MLP([u, sin(2^j u), cos(2^j u)]_{j<L}) with an optionally low-rank first layer.

    Args:
        dim: inputs d.
        width: hidden units per layer.
        depth: hidden layers (≥ 1).
        encoding_levels: L, the positional-encoding frequencies (0: none).
        rank: factorize the first layer through this many linear units
            (``None``: a full first layer).
        activation: ``"leaky_relu"``, ``"relu"``, ``"tanh"``, ``"silu"`` or ``"softplus"``.
        zero_output: start the output layer at zero, so that h ≡ 0 and ∇h = 0
            until data has been fitted (``False``: PyTorch's default
            initialization, whose random gradient the first steps would follow).

    Examples:
        >>> import torch
        >>> from voidgrad.estimators import MLPSurrogate
        >>> h = MLPSurrogate(dim=200_000, rank=32)  # a low-rank first layer
        >>> sum(p.numel() for p in h.first.parameters())  # 32·200 000 + 32·64 + 64
        6402112
        >>> h(torch.randn(2, 200_000)).tolist()  # h ≡ 0 until it is fitted
        [0.0, 0.0]
    """

    def __init__(
        self,
        dim: int,
        width: int = 64,
        depth: int = 3,
        encoding_levels: int = 0,
        rank: int | None = None,
        activation: str = "leaky_relu",
        zero_output: bool = True,
    ) -> None:
        super().__init__()
        check_int("dim", dim, 1)
        check_network_options(width, depth, encoding_levels, activation)
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
            raise ValueError(f"rank must be a positive int or None; got {rank!r}")
        self.encoding_levels = encoding_levels
        self.activation = activation
        inputs = dim * (1 + 2 * encoding_levels)
        first: list[nn.Module] = (
            [nn.Linear(inputs, width)]
            if rank is None
            else [nn.Linear(inputs, rank, bias=False), nn.Linear(rank, width)]
        )
        hidden = [nn.Linear(width, width) for _ in range(depth - 1)]
        self.first = nn.Sequential(*first)
        self.hidden = nn.ModuleList(hidden)
        self.out = nn.Linear(width, 1)
        if zero_output:  # h ≡ 0 until fitted: no gradient from a random initialization
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """``[n, d]`` standardized inputs -> ``[n]`` standardized losses."""
        if self.encoding_levels:
            frequencies = 2.0 ** torch.arange(self.encoding_levels, dtype=u.dtype, device=u.device)
            angles = (u.unsqueeze(-1) * frequencies).flatten(-2)
            u = torch.cat([u, torch.sin(angles), torch.cos(angles)], dim=-1)
        act = _ACTIVATIONS[self.activation]
        h = act(self.first(u))
        for layer in self.hidden:
            h = act(layer(h))
        return self.out(h).squeeze(-1)


_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "leaky_relu": functional.leaky_relu,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "silu": functional.silu,
    "softplus": functional.softplus,
}


class ZeroGrads(BlackBoxEstimator):
    """The gradient of a neural surrogate fitted online to local samples (see module doc).

    For scalar black boxes and one parameter row at a time (the surrogate
    belongs to one optimization trajectory).

    Args:
        sigma: σ of the sampling Gaussian.
        samples: evaluations per step (even: antithetic pairs).
        fit_steps: k_φ, Adam steps on the surrogate per estimate.
        surrogate_lr: the surrogate's learning rate.
        inner_sigma: ρ; evaluate at x_i − t_i, t_i ~ N(0, (ρσ)²I).
        replay: earlier steps whose samples stay in the fitting set.
        unbiased: use the surrogate as a control variate (the default; an
            unbiased estimate). ``False`` returns the reference's ∇h(θ).
        schedule: maps (σ_0, step) to σ_t, e.g. :class:`voidgrad.LinearAnneal`;
            ``None`` keeps σ constant (the reference). Advance it with
            :meth:`step`.
        input_scale: s of the input standardization (default: the current σ
            in the moving frame, the initial σ in the fixed one).
        control_scale: β of the unbiased mode (``None``: estimated online).
        frame: ``"moving"`` (inputs relative to the current θ, targets
            centred per step) or ``"fixed"`` (relative to the first θ); see
            the module doc.
        surrogate: the network h_φ (maps ``[n, d]`` to ``[n]``); default:
            an :class:`MLPSurrogate` built from ``width``, ``depth``,
            ``encoding_levels``, ``activation``, ``zero_output`` and, above
            ``low_rank_above`` inputs, ``rank``.
        seed: seeds sampling and the default surrogate's initialization.

    Examples:
        >>> import torch, voidgrad as vg
        >>> zerograds = vg.ZeroGrads(sigma=0.1, samples=8, seed=0)
        >>> loss = vg.blackbox(lambda x: float((x - 1).pow(2).sum()), zerograds)
        >>> theta = torch.zeros(3, requires_grad=True)
        >>> optimizer = torch.optim.Adam([theta], lr=0.05)
        >>> for _ in range(100):
        ...     optimizer.zero_grad()
        ...     loss(theta).backward()
        ...     optimizer.step()
        ...     zerograds.step()
        >>> bool((theta - 1).abs().max() < 0.2)
        True

        A vector-valued black box is refused:

        >>> vg.blackbox(lambda x: x * 2, vg.ZeroGrads(sigma=0.1))(torch.zeros(2))
        Traceback (most recent call last):
        ...
        ValueError: ZeroGrads needs a scalar loss; ... use vg.GaussianSmoothing for vector ...
    """

    def __init__(
        self,
        sigma: float,
        samples: int = 4,
        *,
        fit_steps: int = 3,
        surrogate_lr: float = 1e-3,
        inner_sigma: float = 0.0,
        replay: int = 0,
        unbiased: bool = True,
        schedule: SigmaSchedule | None = None,
        input_scale: float | None = None,
        control_scale: float | None = None,
        frame: str = "moving",
        surrogate: nn.Module | None = None,
        width: int = 64,
        depth: int = 3,
        encoding_levels: int = 0,
        activation: str = "leaky_relu",
        zero_output: bool = True,
        rank: int = 32,
        low_rank_above: int = 4096,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed)
        self.sigma0 = check_positive("sigma", sigma)
        self.schedule = check_schedule(schedule, self.sigma0)
        self.steps = 0
        self.samples = check_samples(samples, paired=True)
        check_int("fit_steps", fit_steps, 0)
        check_int("replay", replay, 0)
        # The default network is built at the first step, when d is known; its options are
        # checked now, so that a bad one fails here and not after evaluations were spent.
        check_network_options(width, depth, encoding_levels, activation)
        check_int("rank", rank, 1)
        check_int("low_rank_above", low_rank_above, 1)
        if isinstance(inner_sigma, bool) or not isinstance(inner_sigma, int | float):
            raise ValueError(f"inner_sigma must be a number >= 0; got {inner_sigma!r}")
        if not (math.isfinite(inner_sigma) and inner_sigma >= 0):
            raise ValueError(f"inner_sigma must be a number >= 0; got {inner_sigma!r}")
        if control_scale is not None and (
            isinstance(control_scale, bool)
            or not isinstance(control_scale, int | float)
            or not math.isfinite(control_scale)
        ):
            raise ValueError(
                f"control_scale must be a finite number or None; got {control_scale!r}"
            )
        if frame not in ("moving", "fixed"):
            raise ValueError(f"frame must be 'moving' or 'fixed'; got {frame!r}")
        if surrogate is not None and not isinstance(surrogate, nn.Module):
            raise TypeError(f"surrogate must be a torch.nn.Module; got {type(surrogate).__name__}")
        self.fit_steps = fit_steps
        self.surrogate_lr = check_positive("surrogate_lr", surrogate_lr)
        self.inner_sigma = float(inner_sigma)
        self.replay = replay
        self.unbiased = check_flag("unbiased", unbiased)
        self.control_scale = None if control_scale is None else float(control_scale)
        self.frame = frame
        # decayed sums of a·b and b·b over earlier steps, for β (module doc)
        self._control_moments = [0.0, 0.0]
        self.fixed_input_scale = (
            None if input_scale is None else check_positive("input_scale", input_scale)
        )
        self.network_options: dict[str, Any] = {
            "width": width,
            "depth": depth,
            "encoding_levels": encoding_levels,
            "activation": activation,
            "zero_output": check_flag("zero_output", zero_output),
        }
        self.rank = rank
        self.low_rank_above = low_rank_above
        self.surrogate = surrogate
        # Drawn whether or not a surrogate is given, so that the sampling stream after it,
        # and with it every offset, is the same for a given seed and any surrogate.
        self._network_seed = int(torch.randint(0, 2**62, (1,), generator=self._generator))
        self._optimizer: torch.optim.Optimizer | None = None
        self._center: torch.Tensor | None = None
        self._target_shift = 0.0
        self._target_scale = 1.0
        self._scale_set = False
        self._buffer: list[tuple[torch.Tensor, torch.Tensor]] = []

    @property
    def sigma(self) -> float:
        """The current σ_t."""
        return scheduled_sigma(self.schedule, self.sigma0, self.steps)

    @property
    def input_scale(self) -> float:
        """s: inputs reach h as (x − centre)/s."""
        if self.fixed_input_scale is not None:
            return self.fixed_input_scale
        return self.sigma if self.frame == "moving" else self.sigma0

    def step(self) -> None:
        """Advance the σ schedule by one optimization step."""
        self.steps += 1

    def evaluations(self, dim: int) -> int:
        return self.samples

    # -- the surrogate ---------------------------------------------------------------------------

    def _ensure_surrogate(self, theta: torch.Tensor) -> nn.Module:
        d = theta.shape[-1]
        if self.surrogate is None:
            rank = (
                self.rank
                if d * (1 + 2 * self.network_options["encoding_levels"]) > (self.low_rank_above)
                else None
            )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self._network_seed)
                self.surrogate = MLPSurrogate(d, rank=rank, **self.network_options)
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self.surrogate.parameters(), lr=self.surrogate_lr)
        if self._center is None or self.frame == "moving":
            self._center = theta.detach().clone()
        return self.surrogate

    def _dtype(self) -> torch.dtype:
        assert self.surrogate is not None
        parameter = next(self.surrogate.parameters(), None)
        return torch.get_default_dtype() if parameter is None else parameter.dtype

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """h(x) in loss units, differentiable in x: ``[n, d]`` -> ``[n]``."""
        assert self.surrogate is not None and self._center is not None
        u = ((x - self._center) / self.input_scale).to(self._dtype())
        standardized = self.surrogate(u).to(x.dtype)
        return self._target_shift + self._target_scale * standardized

    def _gradient(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h(x) and ∇h(x) for the rows of ``x``."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            values = self.predict(x)
            (grad,) = torch.autograd.grad(values.sum(), x)
        return values.detach(), grad

    def _fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        assert self._optimizer is not None and self._center is not None
        if self.frame == "moving":
            y = y - y.mean()
        elif not self._scale_set:
            self._target_shift = float(y.mean())
        self._buffer.append((x, y))
        del self._buffer[: -(self.replay + 1)]
        inputs = torch.cat([b[0] for b in self._buffer])
        targets = torch.cat([b[1] for b in self._buffer])
        if self.frame == "moving" or not self._scale_set:
            spread = float(targets.std()) if targets.numel() > 1 else 0.0
            if spread > 0:
                self._target_scale = spread
            elif not self._scale_set:
                self._target_scale = max(abs(self._target_shift), 1.0)
            self._scale_set = True
        u = ((inputs - self._center) / self.input_scale).to(self._dtype())
        t = ((targets - self._target_shift) / self._target_scale).to(self._dtype())
        assert self.surrogate is not None
        with torch.enable_grad():
            for _ in range(self.fit_steps):
                self._optimizer.zero_grad()
                functional.mse_loss(self.surrogate(u), t).backward()
                self._optimizer.step()

    @property
    def control_coefficient(self) -> float:
        """β, the weight the next unbiased estimate gives the surrogate's control variate.

        Fixed by ``control_scale``, or −⟨a, b⟩/⟨b, b⟩ over earlier steps, clipped to
        [0, 1] (module doc). Near 0 the surrogate is not reducing variance (the
        estimate is then plain Gaussian smoothing); near 1 it removes most of it.
        """
        if self.control_scale is not None:
            return self.control_scale
        cross, square = self._control_moments
        return min(max(-cross / square, 0.0), 1.0) if square > 0 else 0.0

    def _record_control(self, plain: torch.Tensor, control: torch.Tensor) -> None:
        """Add this step's a·b and b·b to β's moments (older steps decay by 0.9)."""
        cross, square = self._control_moments
        self._control_moments = [
            0.9 * cross + float(plain @ control),
            0.9 * square + float(control @ control),
        ]

    # -- the protocol ---------------------------------------------------------------------------

    def probe(self, theta: torch.Tensor) -> Probe:
        if theta.shape[0] != 1:
            raise ValueError(
                "ZeroGrads keeps one surrogate per optimization: theta must be [d] or [1, d]; "
                f"got {tuple(theta.shape)}"
            )
        self._ensure_surrogate(theta[0])
        n = self.samples // 2
        d = theta.shape[1]
        sigma = self.sigma
        eps = torch.randn((n, d), generator=self._generator, dtype=theta.dtype) * sigma
        eps = torch.cat([eps, -eps]).to(theta.device)
        check_random_offsets(sigma_name(self.schedule, self.steps), sigma, theta, eps[None])
        inner = (
            torch.randn((2 * n, d), generator=self._generator, dtype=theta.dtype).to(theta.device)
            * (self.inner_sigma * sigma)
            if self.inner_sigma > 0
            else None
        )
        seeds = self._draw_seeds((1, 2 * n))
        return _SurrogateProbe(self, theta, sigma, eps, inner, seeds)

    def state_dict(self) -> dict[str, object]:
        return {
            **super().state_dict(),
            "surrogate": None if self.surrogate is None else self.surrogate.state_dict(),
            "optimizer": None if self._optimizer is None else self._optimizer.state_dict(),
            "center": self._center,
            "target": [self._target_shift, self._target_scale, self._scale_set],
            "buffer": [list(pair) for pair in self._buffer],
            "control_moments": list(self._control_moments),
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        center = state["center"]
        if center is not None:
            assert isinstance(center, torch.Tensor)
            self._ensure_surrogate(center)
            assert self.surrogate is not None and self._optimizer is not None
            self.surrogate.load_state_dict(state["surrogate"])  # type: ignore[arg-type]
            self._optimizer.load_state_dict(state["optimizer"])  # type: ignore[arg-type]
        self._center = center
        super().load_state_dict(state)
        target = state["target"]
        assert isinstance(target, list)
        self._target_shift, self._target_scale = float(target[0]), float(target[1])
        self._scale_set = bool(target[2])
        buffer = state["buffer"]
        assert isinstance(buffer, list)
        self._buffer = [(x, y) for x, y in buffer]
        moments = state["control_moments"]
        assert isinstance(moments, list)
        self._control_moments = [float(moments[0]), float(moments[1])]
        steps = state["steps"]
        assert isinstance(steps, int)
        self.steps = steps

    def __repr__(self) -> str:
        return (
            f"ZeroGrads(sigma={self.sigma0}, samples={self.samples}, fit_steps={self.fit_steps}, "
            f"surrogate_lr={self.surrogate_lr}, unbiased={self.unbiased}, replay={self.replay}, "
            f"frame={self.frame!r})"
        )


class _SurrogateProbe(Probe):
    """Points θ ± ε_i (minus inner offsets); the read-out fits and differentiates h."""

    def __init__(
        self,
        estimator: ZeroGrads,
        theta: torch.Tensor,
        sigma: float,
        eps: torch.Tensor,
        inner: torch.Tensor | None,
        seeds: torch.Tensor,
    ) -> None:
        self.estimator = estimator
        self.theta = theta
        self.sigma = sigma
        self.eps = eps
        self.inner = inner
        self.seeds = seeds
        self.gradient: torch.Tensor | None = None

    def points(self) -> torch.Tensor:
        x = self.theta + self.eps
        if self.inner is not None:
            x = x - self.inner
        return x.unsqueeze(0)

    def value(self, outputs: torch.Tensor) -> torch.Tensor:
        if outputs.ndim != 2:
            raise ValueError(
                "ZeroGrads needs a scalar loss; the black box returned outputs of shape "
                f"{tuple(outputs.shape[2:])}: use vg.GaussianSmoothing for vector or image outputs"
            )
        y = outputs[0]
        finite = torch.isfinite(y)
        if not finite.any():
            raise ValueError("every evaluation of this ZeroGrads step failed")
        points = self.theta + self.eps
        x = points[finite]
        estimator = self.estimator
        if estimator.unbiased:
            h, grad_h = estimator._gradient(points)
            score = self.eps / self.sigma / self.sigma  # σ² underflows for σ < 1e-154
            plain = self._mean(y.unsqueeze(1) * score, finite)
            control = self._mean(grad_h - h.unsqueeze(1) * score, finite)  # zero mean, any h
            control = control.to(plain.dtype)  # the outputs may be wider than the network
            self.gradient = (plain + estimator.control_coefficient * control).unsqueeze(0)
            estimator._record_control(plain, control)
            estimator._fit(x, y[finite])
        else:
            estimator._fit(x, y[finite])
            self.gradient = estimator._gradient(self.theta)[1]
        return y[finite].mean().reshape(1)

    @staticmethod
    def _mean(terms: torch.Tensor, finite: torch.Tensor) -> torch.Tensor:
        """The mean of the rows of ``terms`` (``[2n, d]``) at finite outputs.

        Each point's term is added to its antithetic partner's first, so that
        equal losses at θ ± ε cancel exactly: summed in another order, y·ε/σ²
        leaves a rounding residue of order |y|/σ that swamps the estimate when
        σ is tiny or |y| is large.
        """
        kept = torch.where(finite.unsqueeze(1), terms, 0.0)
        return kept.reshape(2, -1, kept.shape[-1]).sum(0).sum(0) / finite.sum().to(terms.dtype)

    def vjp(self, projected: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("the surrogate's gradient comes from backward()")

    def backward(
        self, outputs: torch.Tensor, grad_output: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        assert self.gradient is not None
        return grad_output.reshape(-1, 1) * self.gradient, None
