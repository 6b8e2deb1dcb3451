r"""Supershapes: a hard-edged procedural renderer and a distribution-matching task.

A supershape is the region inside Gielis' superformula curve

    r(φ) = (|cos(mφ/4)|^n + |sin(mφ/4)|^n)^{−1/n₁},

with m lobes whose depth is set by the exponent n (n₂ = n₃ = n; n₁ = 1/2 is
fixed). T(x) = |cos x|^n + |sin x|^n runs monotonically from T(0) = 1 to
T(π/4) = 2^{1−n/2}, so max_φ r = min(1, 2^{1−n/2})^{−1/n₁}, and dividing by it
fits every shape into the frame: for n > 2 the lobes are spikes whose inner
radius is 2^{(2−n)} of the outer one, n = 2 is a disc, n < 2 gives rounded
polygons. Pixels are inside or outside (no anti-aliasing), so the image is
piecewise constant in (m, n): the renderer has no useful gradient. A
non-integer m leaves a seam at φ = ±π.

:class:`SupershapeMatching` is the distribution-matching task of seed 000:
target images are renders of (m, n) drawn from a hidden log-normal
distribution; a learner sees only the images and must recover the
log-normal's parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.distributions import Distribution, Independent, LogNormal

from voidgrad.validation import check_int, check_seed

_N1 = 0.5
_FILL = 0.9  # fraction of the half-frame the largest radius reaches

__all__ = [
    "LearnedLogNormal",
    "SupershapeMatching",
    "log_normal_moments",
    "render_supershapes",
    "superformula_radius",
]


def superformula_radius(phi: torch.Tensor, m: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """r(φ) / max_φ r(φ) for n₁ = 1/2; broadcasts ``phi``, ``m`` and ``n``."""
    angle = m * phi / 4
    terms = angle.cos().abs() ** n + angle.sin().abs() ** n
    smallest = (2.0 ** (1 - n / 2)).clamp(max=1.0)
    return (terms / smallest) ** (-1.0 / _N1)


def render_supershapes(shapes: torch.Tensor, size: int = 64) -> torch.Tensor:
    """Render supershapes as binary images.

    Args:
        shapes: ``[N, 2]`` rows (m, n), both positive.
        size: image side in pixels.

    Returns:
        ``[N, 1, size, size]`` float images, 1 inside the shape and 0 outside.

    Examples:
        >>> import torch
        >>> from voidgrad.problems import render_supershapes
        >>> images = render_supershapes(torch.tensor([[6.0, 3.0], [4.0, 2.0]]), size=32)
        >>> images.shape, sorted(images.unique().tolist())  # binary images
        (torch.Size([2, 1, 32, 32]), [0.0, 1.0])
    """
    if shapes.ndim != 2 or shapes.shape[1] != 2:
        raise ValueError(f"shapes must have shape [N, 2] (m, n); got {tuple(shapes.shape)}")
    check_int("size", size, 4)
    if not bool((shapes > 0).all()):
        raise ValueError("shape parameters m and n must be positive")
    shapes = shapes.detach().to(torch.float64)
    axis = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(-axis, axis, indexing="ij")
    rho, phi = torch.hypot(x, y), torch.atan2(y, x)
    m, n = shapes[:, 0, None, None], shapes[:, 1, None, None]
    inside = rho <= _FILL * superformula_radius(phi, m, n)
    return inside.to(torch.float32).unsqueeze(1)


def log_normal_moments(loc: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean exp(μ + σ²/2) and standard deviation mean · √(exp(σ²) − 1) of LogNormal(μ, σ)."""
    mean = (loc + scale**2 / 2).exp()
    return mean, mean * (scale**2).expm1().sqrt()


class LearnedLogNormal(nn.Module):
    """Independent log-normals whose parameters are learned: ``loc`` μ and ``log_scale`` log σ.

    ``forward()`` returns ``Independent(LogNormal(μ, exp(log σ)), 1)``, the
    distribution :func:`voidgrad.adversarial` expects from a module.

    Examples:
        >>> import torch
        >>> from voidgrad.problems import LearnedLogNormal
        >>> module = LearnedLogNormal(loc=torch.zeros(2), scale=torch.ones(2))
        >>> dist = module()  # rebuilt from the current parameters on every call
        >>> dist.event_shape, sorted(name for name, _ in module.named_parameters())
        (torch.Size([2]), ['loc', 'log_scale'])
        >>> bool((dist.sample((5,)) > 0).all())  # log-normal samples are positive
        True
    """

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        if loc.shape != scale.shape or loc.ndim != 1:
            raise ValueError(
                f"loc and scale must be vectors of one shape; got {loc.shape}, {scale.shape}"
            )
        if not bool((scale > 0).all()):
            raise ValueError("scale must be positive")
        self.loc = nn.Parameter(loc.detach().clone().float())
        self.log_scale = nn.Parameter(scale.detach().float().log())

    def forward(self) -> Distribution:
        return Independent(LogNormal(self.loc, self.log_scale.exp()), 1)


@dataclass(frozen=True)
class SupershapeMatching:
    r"""Recover a hidden log-normal distribution of supershape parameters from images.

    (m, n) ~ LogNormal(μ, σ) independently per component; the targets are
    renders of draws from (μ*, σ*). The start (μ₀, σ₀) has the wrong mean and a
    spread four times too wide, as in seed 000's example.

    Attributes:
        hidden_loc, hidden_scale: μ*, σ* of log m and log n (tensors ``[2]``).
        start_loc, start_scale: μ₀, σ₀ for the learner.
        size: image side in pixels.
        seed: seed of the target draws.

    Examples:
        >>> from voidgrad.problems import SupershapeMatching
        >>> task = SupershapeMatching(size=32)
        >>> task.targets(4).shape  # renders of draws from the hidden distribution
        torch.Size([4, 1, 32, 32])
        >>> learner = task.learner()  # a LearnedLogNormal at the start (μ₀, σ₀)
        >>> learner().sample((3,)).shape, task.render(learner().sample((3,))).shape
        (torch.Size([3, 2]), torch.Size([3, 1, 32, 32]))
    """

    hidden_loc: torch.Tensor = field(
        default_factory=lambda: torch.tensor([math.log(6.0), math.log(3.0)])
    )
    hidden_scale: torch.Tensor = field(default_factory=lambda: torch.tensor([0.1, 0.1]))
    start_loc: torch.Tensor = field(
        default_factory=lambda: torch.tensor([math.log(4.0), math.log(2.0)])
    )
    start_scale: torch.Tensor = field(default_factory=lambda: torch.tensor([0.4, 0.4]))
    size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("hidden_loc", "hidden_scale", "start_loc", "start_scale"):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor) or value.shape != (2,):
                raise ValueError(f"{name} must be a tensor [2] (m, n); got {value!r}")
        for name in ("hidden_scale", "start_scale"):
            if not bool((getattr(self, name) > 0).all()):
                raise ValueError(f"{name} must be positive")
        check_int("size", self.size, 4)
        check_seed(self.seed, optional=False)

    def learner(self) -> LearnedLogNormal:
        """A :class:`LearnedLogNormal` at this task's start (μ₀, σ₀)."""
        return LearnedLogNormal(self.start_loc, self.start_scale)

    def hidden_distribution(self) -> Distribution:
        """The log-normal the targets come from."""
        return Independent(LogNormal(self.hidden_loc, self.hidden_scale), 1)

    def targets(self, n: int) -> torch.Tensor:
        """``n`` target images ``[n, 1, size, size]``, drawn with this task's seed."""
        check_int("n", n, 1)
        generator = torch.Generator().manual_seed(self.seed)
        normal = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        shapes = (self.hidden_loc.double() + self.hidden_scale.double() * normal).exp()
        return render_supershapes(shapes, self.size)

    def render(self, shapes: torch.Tensor) -> torch.Tensor:
        """Render a batch ``[N, 2]`` of (m, n) at this task's size."""
        return render_supershapes(shapes, self.size)
