r"""Appearance task families for meta-learning (:mod:`voidgrad.meta`): textures and BRDFs.

Each family draws tasks — one texture, one material — with a generator; a task
is a callable ``task(f) -> loss`` on a network f, drawing a fresh batch of its
data on every call (``batch`` samples), and offers ``error(f)`` on a fixed dense
set (the reported error) and ``render(f)`` (a picture). ``held_out(n)`` gives
tasks from a seed stream that ``sample(n)`` never uses, and ``model()`` a
network suited to the family.

**Textures.** f(u, v) → RGB on [0, 1]². A texture of the family is a warped
grating between two colours,

    c(u, v) = c₁ + (c₂ − c₁) · (½ + ½ sin(2π f (u cos φ + v sin φ) + a sin(2π g v) + ψ)),

with c₁, c₂ ~ U[0, 1]³, f ~ U[1, 3], φ ~ U[0, π], ψ ~ U[0, 2π], a ~ U[0, 1.5],
g ~ U[1, 2]. Loss: mean squared error of the colours.

**BRDFs.** f(ω_i, ω_o) → RGB for unit directions on the upper hemisphere
(six inputs). A material is a Lambertian base plus a GGX microfacet lobe,

    ρ(ω_i, ω_o) = k_d/π + k_s F D G / (4 cos θ_i cos θ_o),
    D = α² / (π ((n·h)²(α² − 1) + 1)²),  G = G₁(ω_i) G₁(ω_o),
    G₁(ω) = 2 (n·ω) / ((n·ω) + √(α² + (1 − α²)(n·ω)²)),  F = F₀ + (1 − F₀)(1 − h·ω_o)⁵,

with k_d ~ U[0, 0.8]³, k_s ~ U[0.2, 1], roughness α ~ U[0.1, 0.5], F₀ = 0.04.
As is usual for BRDF fitting, the network predicts log(1 + ρ cos θ_i) and the
loss is the mean squared error there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from voidgrad.validation import check_int, check_positive, check_seed

__all__ = ["BRDFFamily", "BRDFTask", "FourierMLP", "TextureFamily", "TextureTask"]

Network = Callable[[torch.Tensor], torch.Tensor]
_HELD_OUT_SEED = 2**31 - 7  # a stream of tasks meta-training never draws from


class FourierMLP(nn.Module):
    """An MLP on fixed Fourier features [sin(2π B x), cos(2π B x)] of its input.

    Args:
        inputs: input dimension.
        outputs: output dimension.
        width: hidden units per layer.
        depth: number of hidden layers.
        frequencies: rows of B (drawn once from N(0, scale²), seeded).
        scale: the frequency scale.
        seed: seed of B and of the initial weights.

    Examples:
        >>> import torch
        >>> from voidgrad.problems import FourierMLP
        >>> f = FourierMLP(inputs=2, outputs=3, width=32, frequencies=8, seed=0)
        >>> f(torch.rand(5, 2)).shape
        torch.Size([5, 3])
        >>> g = FourierMLP(inputs=2, outputs=3, width=32, frequencies=8, seed=0)
        >>> torch.equal(f.bands, g.bands)  # seeded: the same features and weights
        True
    """

    def __init__(
        self,
        inputs: int,
        outputs: int,
        width: int = 64,
        depth: int = 2,
        frequencies: int = 16,
        scale: float = 2.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (("inputs", inputs), ("outputs", outputs), ("width", width)):
            check_int(name, value, 1)
        check_int("depth", depth, 0)
        check_int("frequencies", frequencies, 0)
        check_positive("scale", scale)
        generator = torch.Generator().manual_seed(check_seed(seed, optional=False))
        self.bands: torch.Tensor
        self.register_buffer("bands", scale * torch.randn(inputs, frequencies, generator=generator))
        layers: list[nn.Module] = []
        size = 2 * frequencies + inputs
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for _ in range(depth):
                layers += [nn.Linear(size, width), nn.ReLU()]
                size = width
            layers.append(nn.Linear(size, outputs))
            self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        phase = 2 * math.pi * x @ self.bands
        return self.net(torch.cat([x, phase.sin(), phase.cos()], dim=-1))


def _uniform(generator: torch.Generator, low: float, high: float, *shape: int) -> torch.Tensor:
    return low + (high - low) * torch.rand(*shape, generator=generator)


class _Family:
    """What both families share: the batch size, task seeds and the held-out stream."""

    def __init__(self, batch: int) -> None:
        self.batch = check_int("batch", batch, 1)

    def __call__(self, generator: torch.Generator) -> Any:
        raise NotImplementedError

    def held_out(self, n: int) -> list[Any]:
        """``n`` tasks from a stream meta-training never draws from."""
        generator = torch.Generator().manual_seed(_HELD_OUT_SEED)
        return [self(generator) for _ in range(n)]


def _task_seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


class TextureTask:
    """One texture of :class:`TextureFamily`; ``task(f)`` is the MSE on a random batch."""

    def __init__(self, parameters: dict[str, torch.Tensor], batch: int, seed: int) -> None:
        self.parameters = parameters
        self.batch = batch
        self._generator = torch.Generator().manual_seed(seed)

    def colours(self, uv: torch.Tensor) -> torch.Tensor:
        """The texture's colours ``[n, 3]`` at points ``uv`` ``[n, 2]``."""
        p = self.parameters
        u, v = uv[:, 0], uv[:, 1]
        along = u * p["angle"].cos() + v * p["angle"].sin()
        wave = (
            2 * math.pi * p["frequency"] * along
            + p["warp"] * (2 * math.pi * p["warp_frequency"] * v).sin()
        )
        mix = 0.5 + 0.5 * (wave + p["phase"]).sin()
        return p["first"] + (p["second"] - p["first"]) * mix[:, None]

    def __call__(self, f: Network) -> torch.Tensor:
        uv = torch.rand(self.batch, 2, generator=self._generator)
        return (f(uv) - self.colours(uv)).pow(2).mean()

    @staticmethod
    def grid(size: int) -> torch.Tensor:
        """Pixel centres of a size × size image, row-major, as ``[size², 2]``."""
        axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size
        v, u = torch.meshgrid(axis, axis, indexing="ij")
        return torch.stack([u.reshape(-1), v.reshape(-1)], dim=1)

    def error(self, f: Network, size: int = 64) -> float:
        """MSE over a size × size grid."""
        uv = self.grid(size)
        with torch.no_grad():
            return float((f(uv) - self.colours(uv)).pow(2).mean())

    def render(self, f: Network | None = None, size: int = 64) -> torch.Tensor:
        """The network's (or, for ``None``, the true) texture as an image ``[size, size, 3]``."""
        uv = self.grid(size)
        with torch.no_grad():
            colours = self.colours(uv) if f is None else f(uv)
        return colours.reshape(size, size, 3).clamp(0, 1)


class TextureFamily(_Family):
    """Random warped gratings (see the module doc); ``family(generator)`` draws a task.

    Examples:
        >>> import torch, voidgrad as vg
        >>> from voidgrad.problems import TextureFamily
        >>> family = TextureFamily(batch=64)
        >>> task = family(torch.Generator().manual_seed(0))  # a task: the loss of a network
        >>> model = family.model()
        >>> task(model).ndim, task.render(model, size=8).shape
        (0, torch.Size([8, 8, 3]))
        >>> learner = vg.meta.MetaLearner(model, inner_steps=1, seed=0)
        >>> len(learner.meta_fit(family, steps=2, progress=False))
        2
    """

    def __init__(self, batch: int = 256) -> None:
        super().__init__(batch)

    def __call__(self, generator: torch.Generator) -> TextureTask:
        parameters = {
            "first": _uniform(generator, 0, 1, 3),
            "second": _uniform(generator, 0, 1, 3),
            "frequency": _uniform(generator, 1, 3, 1)[0],
            "angle": _uniform(generator, 0, math.pi, 1)[0],
            "phase": _uniform(generator, 0, 2 * math.pi, 1)[0],
            "warp": _uniform(generator, 0, 1.5, 1)[0],
            "warp_frequency": _uniform(generator, 1, 2, 1)[0],
        }
        return TextureTask(parameters, self.batch, _task_seed(generator))

    def model(self, seed: int = 0) -> FourierMLP:
        """(u, v) → RGB: 16 Fourier bands at scale 2, two hidden layers of 64."""
        return FourierMLP(2, 3, width=64, depth=2, frequencies=16, scale=2.0, seed=seed)


def _hemisphere(n: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform directions on the upper unit hemisphere, ``[n, 3]``."""
    z = torch.rand(n, generator=generator)
    phi = 2 * math.pi * torch.rand(n, generator=generator)
    r = (1 - z**2).clamp(min=0).sqrt()
    return torch.stack([r * phi.cos(), r * phi.sin(), z], dim=1)


class BRDFTask:
    """One material of :class:`BRDFFamily`; ``task(f)`` is the MSE of log(1 + ρ cos θ_i)."""

    def __init__(self, parameters: dict[str, torch.Tensor], batch: int, seed: int) -> None:
        self.parameters = parameters
        self.batch = batch
        self._generator = torch.Generator().manual_seed(seed)
        self._dense = torch.cat(
            [
                _hemisphere(4096, torch.Generator().manual_seed(1)),
                _hemisphere(4096, torch.Generator().manual_seed(2)),
            ],
            dim=1,
        )

    def reflectance(self, directions: torch.Tensor) -> torch.Tensor:
        """ρ(ω_i, ω_o) ``[n, 3]`` for rows (ω_i, ω_o) ``[n, 6]`` (see the module doc)."""
        p = self.parameters
        w_in, w_out = directions[:, :3], directions[:, 3:]
        cos_in, cos_out = w_in[:, 2].clamp(min=1e-4), w_out[:, 2].clamp(min=1e-4)
        half = nn.functional.normalize(w_in + w_out, dim=1)
        alpha2 = p["roughness"] ** 2
        cos_half = half[:, 2]
        d = alpha2 / (math.pi * (cos_half**2 * (alpha2 - 1) + 1) ** 2)

        def g1(cos: torch.Tensor) -> torch.Tensor:
            return 2 * cos / (cos + (alpha2 + (1 - alpha2) * cos**2).sqrt())

        fresnel = 0.04 + 0.96 * (1 - (half * w_out).sum(1).clamp(0, 1)) ** 5
        specular = p["specular"] * fresnel * d * g1(cos_in) * g1(cos_out) / (4 * cos_in * cos_out)
        return p["diffuse"] / math.pi + specular[:, None]

    def target(self, directions: torch.Tensor) -> torch.Tensor:
        """log(1 + ρ cos θ_i), what the network predicts."""
        return torch.log1p(self.reflectance(directions) * directions[:, 2:3])

    def __call__(self, f: Network) -> torch.Tensor:
        generator = self._generator
        directions = torch.cat(
            [_hemisphere(self.batch, generator), _hemisphere(self.batch, generator)], 1
        )
        return (f(directions) - self.target(directions)).pow(2).mean()

    def error(self, f: Network) -> float:
        """MSE over a fixed set of 4 096 direction pairs."""
        with torch.no_grad():
            return float((f(self._dense) - self.target(self._dense)).pow(2).mean())

    def render(self, f: Network | None = None, size: int = 64) -> torch.Tensor:
        """A slice: ω_i at 45° elevation, ω_o over the hemisphere (a disc, ``[size, size, 3]``)."""
        axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
        y, x = torch.meshgrid(-axis, axis, indexing="ij")
        z = (1 - x**2 - y**2).clamp(min=0).sqrt()
        w_out = torch.stack([x, y, z], -1).reshape(-1, 3)
        w_in = torch.tensor([-math.sqrt(0.5), 0.0, math.sqrt(0.5)]).expand_as(w_out)
        directions = torch.cat([w_in, w_out], 1)
        with torch.no_grad():
            values = self.target(directions) if f is None else f(directions)
        inside = (x**2 + y**2 < 1).reshape(-1, 1)
        return (values * inside).reshape(size, size, 3).clamp(0, 1)


class BRDFFamily(_Family):
    """Random GGX materials (see the module doc); ``family(generator)`` draws a task.

    Examples:
        >>> import torch
        >>> from voidgrad.problems import BRDFFamily
        >>> family = BRDFFamily(batch=64)
        >>> task = family(torch.Generator().manual_seed(0))  # a GGX material
        >>> model = family.model()  # f(ω_i, ω_o) → RGB
        >>> loss = task(model)
        >>> loss.ndim, loss.requires_grad, len(family.held_out(3))
        (0, True, 3)
    """

    def __init__(self, batch: int = 512) -> None:
        super().__init__(batch)

    def __call__(self, generator: torch.Generator) -> BRDFTask:
        parameters = {
            "diffuse": _uniform(generator, 0, 0.8, 3),
            "specular": _uniform(generator, 0.2, 1, 1)[0],
            "roughness": _uniform(generator, 0.1, 0.5, 1)[0],
        }
        return BRDFTask(parameters, self.batch, _task_seed(generator))

    def model(self, seed: int = 0) -> FourierMLP:
        """(ω_i, ω_o) → log(1 + ρ cos θ_i): 8 Fourier bands at scale 1, two hidden layers of 64."""
        return FourierMLP(6, 3, width=64, depth=2, frequencies=8, scale=1.0, seed=seed)
