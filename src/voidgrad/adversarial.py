r"""``vg.adversarial``: match a distribution of scenes to target images through a renderer.

Seed 000's idea. Scene parameters z are drawn from p(z | Ω), a distribution
whose parameters Ω are learned; a renderer G, which need not be
differentiable, turns z into an image; a discriminator D(·; Ω_D) learns to tell
renders from target images x. The two play the GAN game

    min_Ω max_{Ω_D}  E_x[log D(x)] + E_{z~p(z|Ω)}[log(1 − D(G(z)))].

D is trained by binary cross-entropy, targets labelled 1 and renders 0. Ω is
trained on the non-saturating cost f(z) = −log D(G(z)), whose expectation
S(Ω) = E_{z~p(z|Ω)}[f(z)] has the score-function gradient

    ∇_Ω S = E[(f(z) − b) ∇_Ω log p(z | Ω)]

(seed 000, eq. 4–5, with a baseline b). The gradient of S is estimated by
:func:`voidgrad.expectation` with any distribution estimator that only
*evaluates* f; the renderer is never differentiated.

Renders pass through an :class:`~voidgrad.Evaluator`, so they can run in
worker processes or on a Ray cluster. An Evaluator returns row i of its output
for row i of its input whatever order the workers finish in, so every image is
scored against the sample it was rendered from: pairing is by construction,
not by the order in which images arrive.

The game is an algorithm of the one run loop
(:class:`voidgrad.adversarial_game.AdversarialGame`): the loop owns the
progress bar, the history, the callbacks and the checkpoint, so a run can be
killed and resumed bit for bit (``checkpoint=path``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.distributions import Distribution

from voidgrad.adversarial_game import AdversarialGame, GameSettings
from voidgrad.estimators.distributional import DistributionEstimator
from voidgrad.estimators.score import ScoreFunction
from voidgrad.evaluation.evaluator import Evaluator
from voidgrad.run import record_callback, run
from voidgrad.run.checkpoint import check_checkpoint_path, fingerprint
from voidgrad.validation import check_int

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["AdversarialResult", "ConvDiscriminator", "adversarial"]


class ConvDiscriminator(nn.Module):
    """A small convolutional discriminator returning one logit per image.

    Three stride-2 4×4 convolutions (``width``, 2·``width``, 4·``width``
    channels) with LeakyReLU(0.2), adaptive average pooling to 4×4 and a
    linear layer: about 0.2M weights at ``width=32``, for any image of at
    least 16×16 pixels. Weights start from N(0, 0.02) as in DCGAN.

    Args:
        channels: image channels C of inputs ``[N, C, H, W]``.
        width: channels of the first convolution.

    Examples:
        >>> import torch
        >>> from voidgrad.adversarial import ConvDiscriminator
        >>> discriminator = ConvDiscriminator(channels=3)
        >>> sum(p.numel() for p in discriminator.parameters())
        167649
        >>> discriminator(torch.rand(5, 3, 32, 48)).shape  # one logit per image, any size
        torch.Size([5])
    """

    def __init__(self, channels: int, width: int = 32) -> None:
        super().__init__()
        check_int("channels", channels, 1)
        check_int("width", width, 1)
        layers: list[nn.Module] = []
        inputs = channels
        for outputs in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(inputs, outputs, 4, 2, 1), nn.LeakyReLU(0.2)]
            inputs = outputs
        layers += [nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(16 * inputs, 1)]
        self.net = nn.Sequential(*layers)
        for module in self.net:
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.02)
                nn.init.zeros_(module.bias)  # type: ignore[arg-type]  # built with a bias

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``[N]`` of "this is a target image" for images ``[N, C, H, W]``."""
        if images.ndim != 4:
            raise ValueError(f"images must have shape [N, C, H, W]; got {tuple(images.shape)}")
        return self.net(images).squeeze(1)


@dataclass
class AdversarialResult:
    """What :func:`adversarial` returns.

    Attributes:
        parameters: final values of the distribution's parameters, by name.
        history: one record per step, as a dict: ``step``; ``d_real`` and
            ``d_fake``, the discriminator's mean probability of "target" on
            the step's target and rendered batches before its update;
            ``cost``, the mean of f = −log D(G(z)) after it;
            ``discriminator_updated`` and ``distribution_updated``;
            ``parameters``, the values after the step (the fields of
            :class:`~voidgrad.adversarial_game.AdversarialRecord`).
        discriminator: the trained discriminator.
        samples: the last step's samples z.
        renders: the last step's renders; row i is the render of ``samples[i]``.
        renders_evaluated: renders made over the run (the Evaluator's count).

    Examples:
        A short run matching the brightness of grey images (see :func:`adversarial`):

        >>> import torch, voidgrad as vg
        >>> from torch import nn
        >>> class Brightness(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.mu = nn.Parameter(torch.zeros(1))
        ...     def forward(self):
        ...         return torch.distributions.Normal(self.mu, 0.1)
        >>> def render(z):
        ...     return z.reshape(-1, 1, 1, 1).expand(-1, 1, 16, 16).clone()
        >>> targets = render(torch.ones(64, 1))
        >>> result = vg.adversarial(Brightness(), render, targets, steps=5, samples=8,
        ...                         seed=0, progress=False)
        >>> len(result.history), result.renders_evaluated, tuple(result.renders.shape)
        (5, 40, (8, 1, 16, 16))
        >>> result.parameter_history()["mu"].shape  # μ after each step
        torch.Size([5, 1])
    """

    parameters: dict[str, torch.Tensor]
    history: list[dict[str, Any]]
    discriminator: nn.Module
    samples: torch.Tensor
    renders: torch.Tensor
    renders_evaluated: int

    def parameter_history(self) -> dict[str, torch.Tensor]:
        """Each parameter's value after every step, stacked: ``{name: [steps, *shape]}``."""
        return {
            name: torch.stack([record["parameters"][name] for record in self.history])
            for name in self.parameters
        }

    def figure(self, targets: torch.Tensor, columns: int = 8) -> Figure:
        """Target images over the last renders, and the parameters against steps.

        Needs matplotlib (``pip install voidgrad[plot]``).
        """
        figure_class = _import_figure()
        columns = min(columns, len(targets), len(self.renders))
        figure = figure_class(figsize=(1.6 * columns, 5.6), layout="constrained")
        grid = figure.add_gridspec(3, columns)
        for row, (images, label) in enumerate(((targets, "target"), (self.renders, "rendered"))):
            for column in range(columns):
                axes = figure.add_subplot(grid[row, column])
                axes.imshow(_as_picture(images[column]), cmap="gray", vmin=0.0, vmax=1.0)
                axes.set_xticks([])
                axes.set_yticks([])
                if column == 0:
                    axes.set_ylabel(label)
        curves = figure.add_subplot(grid[2, :])
        for name, values in self.parameter_history().items():
            flat = values.reshape(len(values), -1)
            for index in range(flat.shape[1]):
                suffix = f"[{index}]" if flat.shape[1] > 1 else ""
                curves.plot(flat[:, index].numpy(), label=f"{name}{suffix}")
        curves.set_xlabel("step")
        curves.legend(fontsize="small", ncols=4)
        return figure

    def save_figure(self, path: str | Path, targets: torch.Tensor, columns: int = 8) -> Path:
        """Write :meth:`figure` to ``path`` (PNG, PDF, ... by suffix); return the path."""
        path = Path(path)
        self.figure(targets, columns).savefig(path, dpi=100)
        return path


def adversarial(
    distribution: nn.Module | Callable[[], Distribution],
    render: Callable[..., object] | Evaluator,
    targets: torch.Tensor,
    *,
    steps: int = 500,
    samples: int = 64,
    parameters: Iterable[torch.Tensor] | None = None,
    discriminator: nn.Module | None = None,
    estimator: DistributionEstimator | None = None,
    lr: float = 0.02,
    lr_decay: float = 0.1,
    discriminator_lr: float = 1e-3,
    max_gap: float | None = 0.7,
    seed: int | None = None,
    progress: bool = True,
    callback: Callable[..., bool | None] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 10,
) -> AdversarialResult:
    r"""Learn the parameters of a scene distribution so its renders look like ``targets``.

    Each step draws ``samples`` scenes z ~ p(z | Ω) (asked of ``estimator``),
    renders them, then

    1. updates the discriminator D by binary cross-entropy (a batch of
       targets drawn without replacement, labelled 1, against the renders,
       labelled 0) when its lead d_real − d_fake is below ``max_gap``, so it
       cannot run away from the distribution;
    2. scores the renders with the updated D, f = −log D(G(z)), training
       nothing, and tells ``estimator`` these costs;
    3. updates Ω by Adam on the estimator's gradient of E[f], once the
       discriminator's lead has first reached ``max_gap`` (a warm-up that
       gives the distribution a useful signal from the start).

    The game is :class:`voidgrad.adversarial_game.AdversarialGame`, an
    algorithm of the one run loop (:mod:`voidgrad.run`).

    Args:
        distribution: an ``nn.Module`` whose ``forward()`` returns the
            ``torch.distributions`` object of the current parameters, or a
            callable doing the same together with ``parameters``. It is called
            anew every step, so the distribution always reflects the updated
            parameters.
        render: maps a batch of samples ``[N, *event_shape]`` to images
            ``[N, *targets.shape[1:]]`` (vectorized); or an Evaluator, e.g.
            ``vg.Evaluator(render_one, backend="process", workers=4)`` for a
            renderer that draws one scene per call.
        targets: target images ``[M, C, H, W]``, M ≥ ``samples``.
        steps: number of steps (each renders ``samples`` scenes).
        samples: scenes rendered per step.
        parameters: the learned tensors when ``distribution`` is not a module.
        discriminator: maps images ``[N, C, H, W]`` to logits ``[N]``;
            default :class:`ConvDiscriminator` (``C`` channels, width 32).
        estimator: a distribution estimator that does not differentiate f
            and follows the ask/tell protocol (every built-in one does);
            default ``vg.ScoreFunction(baseline="leave_one_out")``.
        lr: Adam step size of Ω (betas 0.7, 0.999) at the first step.
        lr_decay: the step size of Ω follows a half cosine from ``lr`` down to
            ``lr_decay · lr`` at the last step (1 keeps it constant). A
            constant step makes the parameters jitter around the answer, and
            the discriminator then sees a wider spread than σ, which the
            distribution pays for with a too-small σ.
        discriminator_lr: Adam step size of the discriminator (betas 0.5, 0.999).
        max_gap: the discriminator's largest lead (a probability difference in
            (0, 1]); ``None`` updates both players every step.
        seed: seeds the default discriminator's weights, the sampling (of the
            default estimator, or of one passed without a seed of its own),
            the target batches, and the default render Evaluator's per-row
            seeds (for a ``render`` that takes ``seed``).
        progress: show a progress bar.
        callback: ``callback(record)`` with each step's
            :class:`~voidgrad.adversarial_game.AdversarialRecord`, or
            ``callback(record, state)`` to see the run too (a
            :class:`~voidgrad.run.RunState`: ``state.algorithm.discriminator``,
            ``.renders``, ``state.evaluator.stats``); returning True stops the run.
        checkpoint: a path; the run saves there every ``checkpoint_every``
            steps and at the end, and resumes from there (see "Checkpoints").
        checkpoint_every: steps between checkpoints.

    Returns:
        An :class:`AdversarialResult` with the final parameters and the history.

    Checkpoints:
        The file holds tensors, numbers and strings only (it loads with
        ``weights_only=True``): Ω, both Adam states, the discriminator's
        weights, the random streams of the sampling and of the target
        batches, the latest samples and renders, the render Evaluator's
        counters, the estimator's state (its random stream, a learned or
        moving-average baseline) and the history. A run killed at any moment
        and resumed with the same arguments ends bit for bit where an
        uninterrupted one does (serial or vectorized rendering), having lost
        at most the steps since the last save. It resumes only the run that wrote it: the
        targets (their values), the code of ``distribution``, ``render``,
        ``discriminator`` and ``estimator``, Ω's starting values, the shapes
        of the discriminator's weights, ``samples``, ``lr``, ``lr_decay``,
        ``discriminator_lr``, ``max_gap`` and ``seed`` must be the same, or
        a :class:`~voidgrad.run.checkpoint.CheckpointError` names the
        first differing field. ``steps`` may differ: a finished run resumed
        with more steps continues, its step size following the cosine of the
        new ``steps``.

    Examples:
        >>> import torch, voidgrad as vg
        >>> from torch import nn
        >>> class Brightness(nn.Module):  # p(z | Ω) = N(μ, 0.1²), Ω = {μ}
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.mu = nn.Parameter(torch.zeros(1))
        ...     def forward(self):
        ...         return torch.distributions.Normal(self.mu, 0.1)
        >>> def render(z):  # z [N, 1] to flat grey 4 × 4 images [N, 1, 4, 4]; never differentiated
        ...     return z.reshape(-1, 1, 1, 1).expand(-1, 1, 4, 4).clone()
        >>> generator = torch.Generator().manual_seed(0)
        >>> targets = render(1.0 + 0.1 * torch.randn(256, 1, generator=generator))  # brightness ~1
        >>> _ = torch.manual_seed(0)  # the discriminator's initial weights
        >>> discriminator = nn.Sequential(nn.Flatten(), nn.Linear(16, 1), nn.Flatten(0))
        >>> result = vg.adversarial(Brightness(), render, targets, steps=100, samples=32,
        ...                         discriminator=discriminator, discriminator_lr=0.05,
        ...                         lr=0.05, max_gap=None, seed=0, progress=False)
        >>> result.renders.shape, result.renders_evaluated
        (torch.Size([32, 1, 4, 4]), 3200)
        >>> mu = result.parameters["mu"].item()  # from 0 to near the targets' brightness, 1
        >>> abs(mu - 1.0) < 0.2
        True
    """
    build, learned = _resolve_distribution(distribution, parameters)
    settings = GameSettings(samples, lr, lr_decay, discriminator_lr, max_gap, seed)
    targets = _check_targets(targets, samples)
    check_int("steps", steps, 1)
    check_int("checkpoint_every", checkpoint_every, 1)
    path = check_checkpoint_path(checkpoint)
    estimator = ScoreFunction(baseline="leave_one_out") if estimator is None else estimator
    if not isinstance(estimator, DistributionEstimator):
        raise TypeError(
            f"estimator must be a distribution estimator such as vg.ScoreFunction; "
            f"got {type(estimator).__name__}"
        )
    if type(estimator).ask is DistributionEstimator.ask:
        raise TypeError(
            f"estimator must implement ask(dist, samples) and tell(query, costs), as every "
            f"built-in one does: vg.adversarial scores the renders between the two, after the "
            f"discriminator's step; {type(estimator).__name__} implements loss() only"
        )
    renderer = (
        render if isinstance(render, Evaluator) else Evaluator(render, "vectorized", seed=seed)
    )
    if discriminator is None:
        discriminator = _default_discriminator(targets.shape[1], seed).to(targets.device)
    elif not isinstance(discriminator, nn.Module):
        raise TypeError(
            "discriminator must be a torch.nn.Module mapping images [N, C, H, W] to logits [N]; "
            f"got {type(discriminator).__name__}"
        )
    identity = _identity(distribution, learned, renderer, targets, discriminator, estimator)
    game = AdversarialGame(build, learned, renderer, discriminator, estimator, targets, settings)
    state = run(
        game,
        steps,
        unit="steps",
        evaluator=renderer,
        checkpoint=path,
        identity={**identity, **asdict(settings)},
        checkpoint_every=checkpoint_every,
        callbacks=() if callback is None else (record_callback(callback),),
        progress=progress,
        description="adversarial",
        postfix=lambda record: {
            "gap": f"{record.d_real - record.d_fake:.2f}",
            "cost": f"{record.cost:.3f}",
        },
    )
    assert game.samples is not None and game.renders is not None  # a run takes >= 1 step
    return AdversarialResult(
        parameters=game.parameters(),
        history=state.history.to_dicts(),
        discriminator=discriminator,
        samples=game.samples,
        renders=game.renders,
        renders_evaluated=renderer.stats.evals,
    )


def _resolve_distribution(
    distribution: nn.Module | Callable[[], Distribution],
    parameters: Iterable[torch.Tensor] | None,
) -> tuple[Callable[[], Distribution], dict[str, torch.Tensor]]:
    learned: dict[str, torch.Tensor]
    if isinstance(distribution, nn.Module):
        if parameters is not None:
            raise ValueError("pass parameters only with a callable; a module brings its own")
        learned = dict(distribution.named_parameters())
    elif callable(distribution):
        if parameters is None:
            raise ValueError(
                "a distribution callable needs parameters=[...], the tensors it is built from"
            )
        learned = {f"param{i}": p for i, p in enumerate(parameters)}
    else:
        raise TypeError(
            "distribution must be an nn.Module or a callable returning a "
            f"torch.distributions object; got {type(distribution).__name__}"
        )
    if not learned:
        raise ValueError("the distribution has no parameters to learn")
    for name, value in learned.items():
        if not (isinstance(value, torch.Tensor) and value.is_leaf and value.requires_grad):
            raise ValueError(f"parameter {name} must be a leaf tensor with requires_grad=True")
    build = distribution

    def checked() -> Distribution:
        dist = build()
        if not isinstance(dist, Distribution):
            raise TypeError(
                "the distribution must return a torch.distributions object; "
                f"got {type(dist).__name__}"
            )
        return dist

    return checked, learned


def _check_targets(targets: torch.Tensor, samples: int) -> torch.Tensor:
    if not isinstance(targets, torch.Tensor) or targets.ndim != 4:
        shape = (
            tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
        )
        raise ValueError(f"targets must be a tensor [M, C, H, W]; got {shape}")
    if len(targets) < samples:
        raise ValueError(f"need at least samples = {samples} targets; got {len(targets)}")
    if targets.is_floating_point() and not torch.isfinite(targets).all():
        raise ValueError(
            f"targets must be finite; got {int((~torch.isfinite(targets)).sum())} NaN or "
            "infinite values"
        )
    return targets.detach().float()


def _default_discriminator(channels: int, seed: int | None) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return ConvDiscriminator(channels)


def _identity(
    distribution: object,
    learned: dict[str, torch.Tensor],
    renderer: Evaluator,
    targets: torch.Tensor,
    discriminator: nn.Module,
    estimator: DistributionEstimator,
) -> dict[str, Any]:
    """What a checkpoint must match besides the settings: the parts' code, the start, the data."""
    return {
        "distribution": fingerprint(distribution),
        "start": {name: value.detach().to("cpu", copy=True) for name, value in learned.items()},
        "render": fingerprint(renderer.fn),
        "targets": _digest(targets),
        "discriminator": fingerprint(discriminator),
        "discriminator_shapes": {
            name: list(value.shape) for name, value in discriminator.state_dict().items()
        },
        "estimator": _describe(estimator),
        "estimator_code": fingerprint(estimator),
    }


def _digest(targets: torch.Tensor) -> str:
    """The targets' shape, dtype and a hash of their values: what a checkpoint must match."""
    values = targets.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
    shape = ", ".join(map(str, targets.shape))
    return f"[{shape}] {targets.dtype} sha256 {hashlib.sha256(values.tobytes()).hexdigest()[:20]}"


def _describe(estimator: DistributionEstimator) -> str:
    """The estimator's own repr where its class writes one (settings such as the baseline)."""
    kind = type(estimator)
    return repr(estimator) if kind.__repr__ is not object.__repr__ else kind.__qualname__


def _as_picture(image: torch.Tensor) -> Any:
    picture = image.detach().float().clamp(0, 1)
    return picture[0].numpy() if picture.shape[0] == 1 else picture.permute(1, 2, 0).numpy()


def _import_figure() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError("pictures need matplotlib: pip install voidgrad[plot]") from error
    return Figure
