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

Closer to the reference code (its ``optimize_with_proxy``), four options,
each off by default:

* ``inputs="raw"``: u = x/s with s = ``input_scale`` (default 1) and no
  centre subtracted, whatever the frame: the reference feeds θ itself (its
  ``normalize_fn`` is the identity on the caustic, MNIST-MLP and texture
  tasks, x/4 on Rosenbrock). The positional encoding's frequencies 2^j then
  act on θ's own units. ``"relative"`` (default): u = (x − centre)/s as above.
* ``targets="raw"``: t = y, the losses themselves, fitted as
  (1/|D|) Σ (h_φ(u) − y)² and read in loss units. ``"standardized"``
  (default): as the frame says.
* ``order="step-first"``: the reference estimate is ∇h_φ(θ) with φ as it
  stands before this step's samples are fitted (the reference steps θ first,
  then fits). ``"fit-first"`` (default): ∇h_φ(θ) after :meth:`ZeroGrads.update`
  if the caller runs it before the backward pass. The unbiased estimate
  always uses h before the fit.
* ``theta_steps=k`` (k_θ, needs ``unbiased=False``): one batch of samples
  serves k consecutive θ steps. At positions 1 … k−1 of a batch, ``ask``
  returns a query of no points and ``tell`` the estimate ∇h_φ(θ) at the new θ
  from the same surrogate, with the batch's mean loss as its value; the batch
  is fitted once, at the ``update`` of position 0 (fit-first) or k−1
  (step-first, so that all k steps follow the surrogate fitted on the
  earlier batches, as in the reference). A run of n steps then spends
  ⌈n/k⌉·``samples`` evaluations.

Ask, tell, update. ``tell`` computes the estimate from the surrogate as it
stands and returns the fitting loss of step 3 (on this step's samples and
the replayed ones, differentiable in φ) as ``auxiliary["surrogate"]``;
nothing is fitted until the caller calls ``update(estimate)``, which takes
the ``fit_steps`` Adam steps (the first on that loss) and records the moments
of β. The unbiased estimate uses h before this step's fit, whenever
``update`` runs. With ``order="fit-first"`` (the default) the biased estimate ∇h(θ) is
computed when the VJP is called, so a caller that runs ``update`` between
``tell`` and the backward pass (as ``vg.blackbox`` does by default) gets
∇h(θ) after this step's fit; ``order="step-first"`` reads it in ``tell``,
before, as the reference code does.

Replay. A surrogate whose gradient is to beat the samples it was fitted on
must see more samples than a step draws: with ``replay`` = K the fitting set
holds this step's N samples and the K previous steps', all (x, y) as
evaluated, in the current frame. Measured on a smooth 20-d landscape at a
budget of 100 d, a fitting set of K·N ≥ 2d recent samples made ZeroGrads 3.3×
lower than plain smoothing, and without replay it tied.
``replay="auto"`` sizes K so (:meth:`ZeroGrads.replay_steps`): ⌈2d/N⌉ − 1
earlier steps, capped by ``replay_bytes`` of stored points (256 MiB by
default: at d = 35 152 in float32 with N = 4, 477 steps, 1 912 samples,
0.05·d, instead of the 2d that would take 9.9 GB). Each of the ``fit_steps``
Adam steps passes over the whole set, so a step's fitting cost grows as
K·N·d·width.

Fit quality. Each estimate records ``stats["r2"]``: the R² of h, before this
step's fit, on this step's samples, centred (how much of the variation of the
losses around θ it predicts; 0 for a constant h, below 0 where it misleads).
:func:`voidgrad.minimize` keeps it in the history (``surrogate_r2``).

The default surrogate (:class:`MLPSurrogate`) is a leaky-ReLU MLP; above
``low_rank_above`` inputs its first layer is factorized through ``rank``
units, so d = 200 000 costs 2·10⁵·rank weights instead of 2·10⁵·width.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from voidgrad.estimators.base import (
    check_random_offsets,
    check_theta,
    check_values,
)
from voidgrad.estimators.control import ControlCoefficient, score_estimate
from voidgrad.estimators.protocol import Estimate, Query, step_auxiliary
from voidgrad.estimators.samplers import gaussian
from voidgrad.estimators.scheduled import ScheduledSigma
from voidgrad.estimators.schedules import SigmaSchedule
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
        activate_output: apply the activation to the output too, h = act(W z + b)
            (the reference network's, with leaky ReLU); ``False``: h = W z + b.

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
        activate_output: bool = False,
    ) -> None:
        super().__init__()
        check_int("dim", dim, 1)
        check_network_options(width, depth, encoding_levels, activation)
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
            raise ValueError(f"rank must be a positive int or None; got {rank!r}")
        self.encoding_levels = encoding_levels
        self.activation = activation
        self.activate_output = check_flag("activate_output", activate_output)
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
        out = self.out(h)
        return (act(out) if self.activate_output else out).squeeze(-1)


_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "leaky_relu": functional.leaky_relu,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "silu": functional.silu,
    "softplus": functional.softplus,
}


@dataclass(frozen=True)
class Standardization:
    """Losses reach the network as targets t = (y − shift)/scale (module doc, "frame").

    Attributes:
        shift: subtracted from the stored losses (0 in the moving frame, whose
            stored losses are centred per step).
        scale: the spread they are divided by.
        fitted: whether ``scale`` has been set (the fixed frame sets it once).
    """

    shift: float = 0.0
    scale: float = 1.0
    fitted: bool = False


def fit_targets(
    y: torch.Tensor,
    earlier: list[torch.Tensor],
    frame: str,
    standardization: Standardization,
) -> tuple[torch.Tensor, torch.Tensor, Standardization]:
    """The targets one ZeroGrads step fits, from this step's losses ``y`` (``[N]``).

    Moving frame: the stored losses are y − ȳ; the targets are all stored
    losses (``earlier`` steps' then these) divided by their spread. Fixed
    frame: the stored losses are y; the first step sets shift = ȳ and the
    scale (the spread, or max(|shift|, 1) if there is none) for good. A
    spread of 0 keeps the previous scale.

    Returns:
        The losses to store for replay, the targets ``[N_all]`` and the
        standardization they were made with.
    """
    shift, scale, fitted = standardization.shift, standardization.scale, standardization.fitted
    if frame == "moving":
        y = y - y.mean()
    elif not fitted:
        shift = float(y.mean())
    stored = torch.cat([*earlier, y])
    if frame == "moving" or not fitted:
        spread = float(stored.std()) if stored.numel() > 1 else 0.0
        if spread > 0:
            scale = spread
        elif not fitted:
            scale = max(abs(shift), 1.0)
        fitted = True
    return y, (stored - shift) / scale, Standardization(shift, scale, fitted)


@dataclass(frozen=True)
class _Step:
    """A ZeroGrads query's context: θ ``[1, d]``, σ, the offsets, and the frame h is read in.

    ``position`` is the step's place in its batch (0: it samples; see
    ``theta_steps``) and ``value`` the batch's mean loss at later positions.
    """

    theta: torch.Tensor
    sigma: float
    eps: torch.Tensor
    inner: torch.Tensor | None
    center: torch.Tensor
    input_scale: float
    position: int = 0
    value: torch.Tensor | None = None


@dataclass(frozen=True)
class _Fit:
    """What :meth:`ZeroGrads.update` fits: inputs u and targets t, and the state after the fit."""

    inputs: torch.Tensor
    targets: torch.Tensor
    buffer: list[tuple[torch.Tensor, torch.Tensor]]
    standardization: Standardization
    center: torch.Tensor


@dataclass
class _Batch:
    """A batch of samples that serves ``theta_steps`` θ steps (module doc).

    Attributes:
        value: its mean loss, the value of the estimates that reuse it.
        remaining: θ steps it still serves.
        pending: its fit, when it runs after the last of them (step-first).
    """

    value: torch.Tensor
    remaining: int
    pending: _Fit | None


def _fit_state(fit: _Fit | None) -> dict[str, Any] | None:
    """A :class:`_Fit` as tensors, numbers and lists (for ``state_dict``)."""
    if fit is None:
        return None
    standardization = fit.standardization
    return {
        "inputs": fit.inputs,
        "targets": fit.targets,
        "buffer": [list(pair) for pair in fit.buffer],
        "target": [standardization.shift, standardization.scale, standardization.fitted],
        "center": fit.center,
    }


def _load_fit(state: Mapping[str, Any] | None) -> _Fit | None:
    """The inverse of :func:`_fit_state`."""
    if state is None:
        return None
    shift, scale, fitted = state["target"]
    return _Fit(
        inputs=state["inputs"],
        targets=state["targets"],
        buffer=[(x, y) for x, y in state["buffer"]],
        standardization=Standardization(float(shift), float(scale), bool(fitted)),
        center=state["center"],
    )


@dataclass
class ZeroGradsEstimate(Estimate):
    """A ZeroGrads estimate, with what :meth:`ZeroGrads.update` needs to fit and record β.

    Attributes:
        fit: the fitting data of this step (private to ZeroGrads); None at
            the later positions of a batch (``theta_steps``).
        moments: the unbiased mode's a and b (module doc), for β; None in the reference mode.
        used: whether ``update`` has consumed this estimate.
        position: the step's place in its batch (``theta_steps``).
    """

    fit: _Fit | None = None
    moments: tuple[torch.Tensor, torch.Tensor] | None = None
    used: bool = False
    position: int = 0


class ZeroGrads(ScheduledSigma):
    """The gradient of a neural surrogate fitted online to local samples (see module doc).

    For scalar black boxes and one parameter row at a time (the surrogate
    belongs to one optimization trajectory). :meth:`tell` trains nothing;
    :meth:`update` fits the surrogate on an estimate's samples.

    Args:
        sigma: σ of the sampling Gaussian.
        samples: evaluations per step (even: antithetic pairs).
        fit_steps: k_φ, Adam steps on the surrogate per estimate.
        surrogate_lr: the surrogate's learning rate.
        inner_sigma: ρ; evaluate at x_i − t_i, t_i ~ N(0, (ρσ)²I).
        replay: earlier steps whose samples stay in the fitting set, or
            ``"auto"``: enough of them that the fit sees at least 2d samples,
            ⌈2d/N⌉ − 1 steps of N = ``samples``, as far as ``replay_bytes``
            allows (module doc, "Replay").
        replay_bytes: with ``replay="auto"``, the most memory the replayed
            points may hold; the fit then sees fewer than 2d samples.
        unbiased: use the surrogate as a control variate (the default; an
            unbiased estimate). ``False`` returns the reference's ∇h(θ).
        schedule: maps (σ_0, step) to σ_t, e.g. :class:`voidgrad.LinearAnneal`;
            ``None`` keeps σ constant (the reference). Advance it with
            :meth:`~voidgrad.estimators.scheduled.ScheduledSigma.step`.
        input_scale: s of the input standardization (default: the current σ
            in the moving frame, the initial σ in the fixed one).
        control_scale: β of the unbiased mode (``None``: estimated online).
        frame: ``"moving"`` (inputs relative to the current θ, targets
            centred per step) or ``"fixed"`` (relative to the first θ); see
            the module doc.
        inputs: ``"relative"`` (u = (x − centre)/s, the frame's) or ``"raw"``
            (u = x/s, s = ``input_scale`` or 1: the reference's).
        targets: ``"standardized"`` (the frame's) or ``"raw"`` (t = y).
        order: ``"fit-first"`` or ``"step-first"`` (the reference's): whether
            the reference estimate ∇h(θ) reads the surrogate after or before
            this step's fit.
        theta_steps: k_θ, θ steps per batch of samples (> 1 needs
            ``unbiased=False``).
        surrogate: the network h_φ (maps ``[n, d]`` to ``[n]``); default:
            an :class:`MLPSurrogate` built from ``width``, ``depth``,
            ``encoding_levels``, ``activation``, ``zero_output``,
            ``activate_output`` and, above
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
        ...     loss(theta).backward()  # the black box fits the surrogate (train=True)
        ...     optimizer.step()
        ...     zerograds.step()
        >>> bool((theta - 1).abs().max() < 0.2)
        True

        Ask and tell by hand, then fit:

        >>> query = zerograds.ask(theta.detach()[None])  # [1, 8, 3] points
        >>> values = query.inputs.sub(1).pow(2).sum(-1)  # [1, 8]
        >>> estimate = zerograds.tell(query, values)  # the surrogate as it stands
        >>> sorted(estimate.auxiliary)  # its fitting loss, for update
        ['surrogate']
        >>> zerograds.update(estimate)  # fit_steps Adam steps on it

        A vector-valued black box is refused:

        >>> theta = torch.zeros(2, requires_grad=True)
        >>> vg.blackbox(lambda x: x * 2, vg.ZeroGrads(sigma=0.1))(theta)
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
        replay: int | str = 0,
        replay_bytes: int = 2**28,
        unbiased: bool = True,
        schedule: SigmaSchedule | None = None,
        input_scale: float | None = None,
        control_scale: float | None = None,
        frame: str = "moving",
        inputs: str = "relative",
        targets: str = "standardized",
        order: str = "fit-first",
        theta_steps: int = 1,
        surrogate: nn.Module | None = None,
        width: int = 64,
        depth: int = 3,
        encoding_levels: int = 0,
        activation: str = "leaky_relu",
        zero_output: bool = True,
        activate_output: bool = False,
        rank: int = 32,
        low_rank_above: int = 4096,
        seed: int | None = None,
    ) -> None:
        super().__init__(sigma, schedule, seed)
        self.samples = check_samples(samples, paired=True)
        check_int("fit_steps", fit_steps, 0)
        if isinstance(replay, str) and replay != "auto":
            raise ValueError(f"replay must be an int >= 0 or 'auto'; got {replay!r}")
        if replay != "auto":
            check_int("replay", replay, 0)
        check_int("replay_bytes", replay_bytes, 1)
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
        for name, value, allowed in (
            ("inputs", inputs, ("relative", "raw")),
            ("targets", targets, ("standardized", "raw")),
            ("order", order, ("fit-first", "step-first")),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be {allowed[0]!r} or {allowed[1]!r}; got {value!r}")
        check_int("theta_steps", theta_steps, 1)
        if theta_steps > 1 and unbiased:
            raise ValueError(
                f"theta_steps > 1 needs unbiased=False (the steps without samples have no "
                f"unbiased estimate); got theta_steps={theta_steps} with unbiased=True"
            )
        if surrogate is not None and not isinstance(surrogate, nn.Module):
            raise TypeError(f"surrogate must be a torch.nn.Module; got {type(surrogate).__name__}")
        self.fit_steps = fit_steps
        self.surrogate_lr = check_positive("surrogate_lr", surrogate_lr)
        self.inner_sigma = float(inner_sigma)
        self.replay = replay
        self.replay_bytes = replay_bytes
        self.unbiased = check_flag("unbiased", unbiased)
        self.control_scale = None if control_scale is None else float(control_scale)
        self.frame = frame
        self.inputs = inputs
        self.targets = targets
        self.order = order
        self.theta_steps = theta_steps
        self._control = ControlCoefficient(decay=0.9)
        self.fixed_input_scale = (
            None if input_scale is None else check_positive("input_scale", input_scale)
        )
        self.network_options: dict[str, Any] = {
            "width": width,
            "depth": depth,
            "encoding_levels": encoding_levels,
            "activation": activation,
            "zero_output": check_flag("zero_output", zero_output),
            "activate_output": check_flag("activate_output", activate_output),
        }
        self.rank = rank
        self.low_rank_above = low_rank_above
        self.surrogate = surrogate
        # Drawn whether or not a surrogate is given, so that the sampling stream after it,
        # and with it every offset, is the same for a given seed and any surrogate.
        self._network_seed = int(torch.randint(0, 2**62, (1,), generator=self._generator))
        self._optimizer: torch.optim.Optimizer | None = None
        self._center: torch.Tensor | None = None
        self._standardization = Standardization()
        self._buffer: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._batch: _Batch | None = None

    @property
    def input_scale(self) -> float:
        """s: inputs reach h as (x − centre)/s (x/s with ``inputs="raw"``)."""
        if self.fixed_input_scale is not None:
            return self.fixed_input_scale
        if self.inputs == "raw":
            return 1.0
        return self.sigma if self.frame == "moving" else self.sigma0

    def evaluations(self, dim: int) -> int:
        return self.samples

    @property
    def control_coefficient(self) -> float:
        """β, the weight the next unbiased estimate gives the surrogate's control variate.

        Fixed by ``control_scale``, or −⟨a, b⟩/⟨b, b⟩ over earlier steps, clipped to
        [0, 1] (module doc). Near 0 the surrogate is not reducing variance (the
        estimate is then plain Gaussian smoothing); near 1 it removes most of it.
        """
        if self.control_scale is not None:
            return self.control_scale
        return self._control.value

    # -- the surrogate ---------------------------------------------------------------------------

    def _build(self, d: int, device: torch.device) -> nn.Module:
        """The surrogate (the default one built for ``d`` inputs on ``device`` at first use)
        and its Adam."""
        if self.surrogate is None:
            encoded = d * (1 + 2 * self.network_options["encoding_levels"])
            rank = self.rank if encoded > self.low_rank_above else None
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self._network_seed)  # initialized on the CPU: the same weights
                self.surrogate = MLPSurrogate(d, rank=rank, **self.network_options).to(device)
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self.surrogate.parameters(), lr=self.surrogate_lr)
        return self.surrogate

    def _dtype(self) -> torch.dtype:
        assert self.surrogate is not None
        parameter = next(self.surrogate.parameters(), None)
        return torch.get_default_dtype() if parameter is None else parameter.dtype

    def _inputs(self, x: torch.Tensor, center: torch.Tensor, input_scale: float) -> torch.Tensor:
        """u = (x − centre)/s in the network's dtype."""
        return ((x - center) / input_scale).to(self._dtype())

    def _predict(self, x: torch.Tensor, center: torch.Tensor, input_scale: float) -> torch.Tensor:
        assert self.surrogate is not None
        standardized = self.surrogate(self._inputs(x, center, input_scale)).to(x.dtype)
        return self._standardization.shift + self._standardization.scale * standardized

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """h(x) in loss units, differentiable in x: ``[n, d]`` -> ``[n]`` (after an update)."""
        if self._center is None:
            raise RuntimeError("ZeroGrads.predict needs a fitted surrogate: call update() first")
        return self._predict(x, self._center, self.input_scale)

    def _gradient(
        self, x: torch.Tensor, center: torch.Tensor, input_scale: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """h(x) and ∇h(x) for the rows of ``x``, h read in the frame (centre, s)."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            values = self._predict(x, center, input_scale)
            (grad,) = torch.autograd.grad(values.sum(), x)
        return values.detach(), grad

    def _fit_data(self, x: torch.Tensor, y: torch.Tensor, step: _Step) -> _Fit:
        """This step's fitting set (with the replayed steps') and the state after fitting it."""
        kept = self.replay_steps(x.shape[1], x.element_size())
        earlier = self._buffer[-kept:] if kept else []
        if self.targets == "raw":
            stored, standardization = y, Standardization(fitted=True)
            targets = torch.cat([*[b[1] for b in earlier], y])
        else:
            stored, targets, standardization = fit_targets(
                y, [b[1] for b in earlier], self.frame, self._standardization
            )
        buffer = [*earlier, (x, stored)]
        inputs = torch.cat([b[0] for b in buffer])
        return _Fit(
            inputs=self._inputs(inputs, step.center, step.input_scale),
            targets=targets.to(self._dtype()),
            buffer=buffer,
            standardization=standardization,
            center=step.center,
        )

    def replay_steps(self, dim: int, itemsize: int) -> int:
        """The earlier steps in the fitting set for ``dim`` parameters of ``itemsize`` bytes.

        ``replay`` itself, or with ``"auto"`` min(⌈2d/N⌉ − 1, ⌊B/(N·d·itemsize)⌋),
        N = ``samples``, B = ``replay_bytes``.

        Examples:
            >>> import voidgrad as vg
            >>> zerograds = vg.ZeroGrads(sigma=0.1, samples=4, replay="auto")
            >>> zerograds.replay_steps(20, 4)  # 40 samples: this step's 4 and 9 steps' more
            9
            >>> zerograds.replay_steps(35_152, 4)  # 2d would be 9.9 GB; 256 MiB holds 477 steps
            477
        """
        check_int("dim", dim, 1)
        check_int("itemsize", itemsize, 1)
        if self.replay != "auto":
            return int(self.replay)
        wanted = -(-2 * dim // self.samples) - 1
        affordable = self.replay_bytes // (self.samples * dim * itemsize)
        return max(0, min(wanted, affordable))

    def _fit_loss(self, fit: _Fit) -> torch.Tensor:
        """(1/|D|) Σ (h_φ(u) − t)², differentiable in φ."""
        assert self.surrogate is not None
        with torch.enable_grad():
            return functional.mse_loss(self.surrogate(fit.inputs), fit.targets)

    # -- the protocol ---------------------------------------------------------------------------

    def _score_terms(
        self,
        y: torch.Tensor,
        h: torch.Tensor,
        grad_h: torch.Tensor,
        finite: torch.Tensor,
        step: _Step,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The plain score function a and the zero-mean control part b of ĝ = a + β b.

        With c = h the score-function formula gives a + b (a: c = 0), so
        b = (1/n) Σ_i ½[−h(z_i^+) + h(z_i^−)] s_i + (1/n) Σ_i ½[∇h(z_i^+) + ∇h(z_i^−)]
        over the pairs whose two evaluations succeeded; E[b] = 0 for any h.
        ``h`` and ``grad_h`` are h and ∇h at the step's points.
        """
        n = y.shape[0] // 2
        valid = finite[:n] & finite[n:]
        if not valid.any():
            raise ValueError(
                "every antithetic pair of this ZeroGrads step has a failed evaluation: "
                "the unbiased estimate needs both points of a pair"
            )
        score = step.eps[:n] / step.sigma / step.sigma  # σ² underflows for σ < 1e-154
        plain = score_estimate(y, score, antithetic=True, valid=valid)
        pair_gradients = 0.5 * (grad_h[:n] + grad_h[n:])
        mean_gradient = torch.where(valid.unsqueeze(1), pair_gradients, 0.0).sum(0) / valid.sum()
        control = score_estimate(
            -h, score, control_gradient=mean_gradient, antithetic=True, valid=valid
        )
        return plain, control.to(plain.dtype)  # the outputs may be wider than the network

    def ask(self, params: torch.Tensor, *args: object) -> Query:
        """The points θ ± ε_i (less the inner offsets) for θ = ``params`` (``[1, d]``)."""
        theta = check_theta(params)
        if theta.shape[0] != 1:
            raise ValueError(
                "ZeroGrads keeps one surrogate per optimization: theta must be [d] or [1, d]; "
                f"got {tuple(theta.shape)}"
            )
        self._build(theta.shape[1], theta.device)
        n = self.samples // 2
        d = theta.shape[1]
        sigma = self.sigma
        if self._batch is not None and self._batch.remaining > 0:  # reuse the batch (k_θ > 1)
            # h's frame: the batch's once fitted; with its fit pending, the earlier batches'.
            center = self._center
            if center is None:
                assert self._batch.pending is not None
                center = self._batch.pending.center
            step = _Step(
                theta,
                sigma,
                theta.new_zeros((0, d)),
                None,
                center,
                self.input_scale,
                position=self.theta_steps - self._batch.remaining,
                value=self._batch.value,
            )
            return Query(
                inputs=theta.new_zeros((1, 0, d)),
                seeds=torch.zeros((1, 0), dtype=torch.int64),
                context=step,
            )
        eps = gaussian(self._generator, (n, d), sigma, theta.dtype)
        eps = torch.cat([eps, -eps]).to(theta.device)
        check_random_offsets(self.sigma_label, sigma, theta, eps[None])
        inner = (
            gaussian(self._generator, (2 * n, d), self.inner_sigma * sigma, theta.dtype).to(
                theta.device
            )
            if self.inner_sigma > 0
            else None
        )
        seeds = self.draw_seeds((1, 2 * n))
        fixed = self.frame == "fixed" and self._center is not None
        if self.inputs == "raw":
            center = theta.new_zeros(d)
        else:
            center = self._center if fixed else theta[0].detach().clone()
        assert center is not None
        step = _Step(theta, sigma, eps, inner, center, self.input_scale)
        points = theta + eps if inner is None else theta + eps - inner
        return Query(inputs=points.unsqueeze(0), seeds=seeds, context=step)

    def tell(self, query: Query, values: torch.Tensor) -> ZeroGradsEstimate:
        """The estimate from the surrogate as it stands, and its fitting loss; trains nothing.

        ``auxiliary["surrogate"]`` is the MSE of h_φ on this step's (and the
        replayed) samples; ``value`` the mean of the finite losses. At the
        later positions of a batch (``theta_steps``) the query has no points,
        there is nothing to fit, and ``value`` is the batch's.
        """
        step = query.context
        if not isinstance(step, _Step):
            raise TypeError(
                f"query must come from ZeroGrads.ask(); its context is {type(step).__name__}"
            )
        values = check_values(query, values)
        if values.ndim != 2:
            raise ValueError(
                "ZeroGrads needs a scalar loss; the black box returned outputs of shape "
                f"{tuple(values.shape[2:])}: use vg.GaussianSmoothing for vector or image outputs"
            )
        if step.position > 0:
            assert step.value is not None
            return ZeroGradsEstimate(
                value=step.value,
                vjp=self._reference_vjp(step, values.dtype),
                position=step.position,
            )
        y = values[0]
        finite = torch.isfinite(y)
        if not finite.any():
            raise ValueError("every evaluation of this ZeroGrads step failed")
        points = step.theta + step.eps
        fit = self._fit_data(points[finite], y[finite], step)
        moments = None
        vjp: Callable[[torch.Tensor], tuple[torch.Tensor, None]]
        if self.unbiased:
            h, grad_h = self._gradient(points, step.center, step.input_scale)
            plain, control = self._score_terms(y, h, grad_h, finite, step)
            gradient = (plain + self.control_coefficient * control).unsqueeze(0)
            moments = (plain, control)

            def vjp(v: torch.Tensor) -> tuple[torch.Tensor, None]:
                return v.to(values.dtype).reshape(-1, 1) * gradient, None

        else:
            vjp = self._reference_vjp(step, values.dtype)
            with torch.no_grad():
                h = self._predict(points, step.center, step.input_scale)

        stats = {"control_coefficient": self.control_coefficient} if self.unbiased else {}
        r2 = _centred_r2(y[finite], h[finite].to(y.dtype))
        if r2 is not None:
            stats["r2"] = r2
        return ZeroGradsEstimate(
            value=y[finite].mean().reshape(1),
            vjp=vjp,
            auxiliary={"surrogate": self._fit_loss(fit)},
            stats=stats,
            fit=fit,
            moments=moments,
        )

    def _reference_vjp(
        self, step: _Step, dtype: torch.dtype
    ) -> Callable[[torch.Tensor], tuple[torch.Tensor, None]]:
        """The VJP of the reference estimate ∇h(θ), read now (step-first) or when called."""
        now = None
        if self.order == "step-first":
            # The surrogate as it stands, in the frame it was fitted in.
            center = step.center if self._center is None else self._center
            now = self._gradient(step.theta, center, step.input_scale)[1]

        def vjp(v: torch.Tensor) -> tuple[torch.Tensor, None]:
            # fit-first: ∇h(θ) when asked, after update() if the caller ran it.
            gradient = (
                self._gradient(step.theta, step.center, step.input_scale)[1] if now is None else now
            )
            return v.to(dtype).reshape(-1, 1) * gradient, None

        return vjp

    def update(self, estimate: Estimate) -> None:
        """Fit the surrogate with ``fit_steps`` Adam steps on ``estimate``'s samples; record β.

        The first step follows ``estimate.auxiliary["surrogate"]``, the later
        ones the same loss recomputed. Call it once per estimate, before any
        later estimate's update. With ``theta_steps`` = k > 1 a batch is fitted
        at the update of its first estimate (fit-first) or its k-th (step-first).
        """
        if not isinstance(estimate, ZeroGradsEstimate) or (
            estimate.fit is None and estimate.position == 0
        ):
            raise TypeError(
                f"estimate must come from ZeroGrads.tell(); got {type(estimate).__name__}"
            )
        if estimate.used:
            raise ValueError("this estimate has already been used by update()")
        batch = self._batch
        if estimate.position > 0:
            if batch is None or estimate.position != self.theta_steps - batch.remaining:
                raise ValueError(
                    "the estimates of a batch (theta_steps) must be updated in the order "
                    "they were asked, each before the next is asked"
                )
            estimate.used = True
            batch.remaining -= 1
            if batch.remaining == 0:
                self._batch = None
                if batch.pending is not None:
                    self._fit(batch.pending, self._fit_loss(batch.pending))
            return
        estimate.used = True
        fit = estimate.fit
        assert fit is not None
        if estimate.moments is not None:
            self._control.record(*estimate.moments)
        deferred = self.order == "step-first" and self.theta_steps > 1
        if self.theta_steps > 1:
            self._batch = _Batch(
                value=estimate.value.detach(),
                remaining=self.theta_steps - 1,
                pending=fit if deferred else None,
            )
        if not deferred:
            self._fit(fit, estimate.auxiliary["surrogate"])

    def _fit(self, fit: _Fit, loss: torch.Tensor) -> None:
        """Adopt ``fit``'s frame and buffer; ``fit_steps`` Adam steps, the first along ``loss``."""
        self._center = fit.center
        self._buffer = fit.buffer
        self._standardization = fit.standardization
        surrogate = self._build(fit.center.shape[-1], fit.center.device)
        optimizer = self._optimizer
        assert optimizer is not None
        parameters: list[torch.Tensor] = list(surrogate.parameters())
        for k in range(self.fit_steps):
            step_auxiliary(optimizer, parameters, loss if k == 0 else self._fit_loss(fit))

    def observe(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Fit the surrogate on evaluations made by someone else: an Evaluator listener.

        ``x`` ``[n, d]`` are points and ``y`` ``[n]`` their losses (NaN where an
        evaluation failed: dropped), e.g. one step's samples of a
        :class:`~voidgrad.GuidedSmoothing` run. They are fitted as one step's
        samples are by :meth:`update` (replay, frame, targets, ``fit_steps``
        Adam steps), with the frame's centre at their mean (θ for antithetic
        pairs θ ± ε) in the moving frame; the moving frame's s is this
        estimator's σ, so set it to the run's. Evaluates nothing.
        """
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim != 2:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a floating tensor of points [n, d]; got {got}")
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != (x.shape[0],):
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(
                f"y must be a tensor of scalar losses [n] = [{x.shape[0]}] (ZeroGrads needs a "
                f"scalar loss); got {got}"
            )
        finite = torch.isfinite(y)
        if not finite.any():
            return
        x, y = x.detach()[finite], y.detach()[finite].to(x.dtype)
        self._build(x.shape[1], x.device)
        if self.inputs == "raw":
            center = x.new_zeros(x.shape[1])
        elif self.frame == "fixed" and self._center is not None:
            center = self._center
        else:
            center = x.mean(0)
        step = _Step(
            center[None], self.sigma, x.new_zeros((0, x.shape[1])), None, center, self.input_scale
        )
        fit = self._fit_data(x, y, step)
        self._fit(fit, self._fit_loss(fit))

    def as_guide(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """``guide(theta) -> [d]``: ∇h(θ) of the surrogate as it stands, for
        :class:`~voidgrad.GuidedSmoothing`.

        The guide differentiates the surrogate (no black box is evaluated, no
        budget charged) and returns a detached tensor in θ's dtype and device;
        zero until the surrogate has been fitted. It trains nothing: h only
        learns when this estimator fits samples, by :meth:`update` after its
        own ask/tell (a ZeroGrads run alongside, spending its own
        evaluations) or by :meth:`observe` on another run's, e.g. the guided
        run's own evaluations through its Evaluator's listener.

        Examples:
            >>> import torch, voidgrad as vg
            >>> zerograds = vg.ZeroGrads(sigma=0.1, samples=8, seed=0)
            >>> loss = lambda x: float((x - 1).pow(2).sum())
            >>> evaluator = vg.Evaluator(loss)
            >>> evaluator.add_listener(zerograds.observe)  # h fits every batch it evaluates
            >>> result = vg.minimize(
            ...     loss, torch.zeros(3), method="guided", guide=zerograds.as_guide(),
            ...     budget=400, evaluator=evaluator, lr=0.05, seed=0,
            ... )
            >>> bool(result.fun < loss(torch.zeros(3)) / 10)
            True
            >>> zerograds.as_guide()(torch.zeros(3)).shape  # ∇h at θ, no evaluation
            torch.Size([3])
        """

        def guide(theta: torch.Tensor) -> torch.Tensor:
            if not isinstance(theta, torch.Tensor) or not theta.is_floating_point():
                got = theta.dtype if isinstance(theta, torch.Tensor) else type(theta).__name__
                raise TypeError(f"theta must be a floating tensor [d]; got {got}")
            x = theta.detach().reshape(1, -1)
            if self._center is None:
                return torch.zeros_like(x[0])
            return self._gradient(x, self._center, self.input_scale)[1][0].to(theta.dtype)

        return guide

    def state_dict(self) -> dict[str, Any]:
        standardization = self._standardization
        control = self._control.state_dict()
        return {
            **super().state_dict(),
            "surrogate": None if self.surrogate is None else self.surrogate.state_dict(),
            "optimizer": None if self._optimizer is None else self._optimizer.state_dict(),
            "center": self._center,
            "target": [standardization.shift, standardization.scale, standardization.fitted],
            "buffer": [list(pair) for pair in self._buffer],
            "control_moments": [control["cross"], control["square"]],
            "batch": None
            if self._batch is None
            else {
                "value": self._batch.value,
                "remaining": self._batch.remaining,
                "pending": _fit_state(self._batch.pending),
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        center = state["center"]
        if center is not None:
            if not isinstance(center, torch.Tensor):
                raise ValueError("the state's center must be a tensor or None")
            self._build(center.shape[-1], center.device)
            assert self.surrogate is not None and self._optimizer is not None
            self.surrogate.load_state_dict(state["surrogate"])
            self._optimizer.load_state_dict(state["optimizer"])
        self._center = center
        super().load_state_dict(state)
        shift, scale, fitted = state["target"]
        self._standardization = Standardization(float(shift), float(scale), bool(fitted))
        self._buffer = [(x, y) for x, y in state["buffer"]]
        cross, square = state["control_moments"]
        self._control.load_state_dict({"cross": cross, "square": square})
        batch = state.get("batch")  # absent from the states saved before theta_steps
        self._batch = (
            None
            if batch is None
            else _Batch(
                value=batch["value"],
                remaining=check_int("the state's batch remaining", batch["remaining"], 1),
                pending=_load_fit(batch["pending"]),
            )
        )

    def __repr__(self) -> str:
        return (
            f"ZeroGrads(sigma={self.sigma0}, samples={self.samples}, fit_steps={self.fit_steps}, "
            f"surrogate_lr={self.surrogate_lr}, unbiased={self.unbiased}, replay={self.replay!r}, "
            f"frame={self.frame!r})"
        )


def _centred_r2(y: torch.Tensor, h: torch.Tensor) -> float | None:
    r"""R² = 1 − Σ((y − ȳ) − (h − h̄))² / Σ(y − ȳ)² of the predictions ``h`` of ``y``.

    ZeroGrads reads it for h before the step's fit: out of sample (h has not
    seen these points) and centred (only the differences between the step's
    losses carry gradient information): 1 where h predicts how the loss
    varies around θ, 0 where it knows nothing (a constant h), below 0 where it
    misleads. None when ``y`` does not vary or holds fewer than two values.
    """
    if y.shape[0] < 2:
        return None
    spread = (y - y.mean()).pow(2).sum()
    if not bool(spread > 0):
        return None
    residual = ((y - y.mean()) - (h - h.mean())).pow(2).sum()
    return float(1.0 - residual / spread)
