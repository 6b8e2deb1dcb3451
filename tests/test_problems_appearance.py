"""Appearance task families for vg.meta: textures and GGX BRDFs."""

from __future__ import annotations

import math

import pytest
import torch

from voidgrad.problems.appearance import BRDFFamily, FourierMLP, TextureFamily


def directions(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.rand(n, 2, generator=g)
    phi = 2 * math.pi * torch.rand(n, 2, generator=g)
    r = (1 - z**2).sqrt()
    w = torch.stack([r * phi.cos(), r * phi.sin(), z], -1)  # [n, 2, 3]
    return torch.cat([w[:, 0], w[:, 1]], 1)


def test_brdfs_are_positive_and_reciprocal() -> None:
    task = BRDFFamily()(torch.Generator().manual_seed(0))
    d = directions(500, 1)
    swapped = torch.cat([d[:, 3:], d[:, :3]], 1)
    rho = task.reflectance(d)
    assert rho.shape == (500, 3) and bool((rho > 0).all())
    assert torch.allclose(rho, task.reflectance(swapped), rtol=1e-4)


def test_a_rough_lobe_conserves_energy() -> None:
    """∫ ρ cos θ_i dω_i ≤ 1 for a white diffuse base at most 0.8 plus the specular lobe."""
    task = BRDFFamily()(torch.Generator().manual_seed(3))
    n = 200_000
    w_in = directions(n, 2)[:, :3]
    w_out = torch.tensor([0.3, 0.0, math.sqrt(1 - 0.09)]).expand(n, 3)
    rho = task.reflectance(torch.cat([w_in, w_out], 1))
    albedo = (rho * w_in[:, 2:3]).mean(0) * 2 * math.pi  # uniform hemisphere pdf 1/(2π)
    assert bool((albedo < 1.0).all()) and bool((albedo > task.parameters["diffuse"] - 0.05).all())


def test_textures_are_colours_and_tasks_draw_fresh_batches() -> None:
    family = TextureFamily(batch=64)
    task = family(torch.Generator().manual_seed(0))
    colours = task.colours(torch.rand(1000, 2))
    assert colours.shape == (1000, 3) and colours.min() >= 0 and colours.max() <= 1
    model = family.model()
    assert task(model) != task(model)  # a new batch on every call
    assert task.render(size=16).shape == (16, 16, 3)
    assert task.render(model, size=16).shape == (16, 16, 3)
    assert task.error(model) > 0


def test_held_out_tasks_are_fixed_and_unlike_sampled_ones() -> None:
    for family in (TextureFamily(), BRDFFamily()):
        first, second = family.held_out(3), family.held_out(3)
        for a, b in zip(first, second, strict=True):
            assert all(torch.equal(a.parameters[k], b.parameters[k]) for k in a.parameters)
        sampled = family(torch.Generator().manual_seed(0))
        assert not all(
            torch.equal(sampled.parameters[k], first[0].parameters[k]) for k in sampled.parameters
        )


def test_brdf_slices_and_models() -> None:
    family = BRDFFamily(batch=32)
    task = family.held_out(1)[0]
    model = family.model()
    assert model(directions(5, 0)).shape == (5, 3)
    assert task.render(size=8).shape == (8, 8, 3)
    assert task(model).ndim == 0


def test_fourier_mlp_is_seeded() -> None:
    x = torch.rand(4, 2)
    assert torch.equal(FourierMLP(2, 3, seed=1)(x), FourierMLP(2, 3, seed=1)(x))
    assert not torch.equal(FourierMLP(2, 3, seed=1)(x), FourierMLP(2, 3, seed=2)(x))


@pytest.mark.parametrize("family", [TextureFamily, BRDFFamily])
def test_bad_batch_is_rejected(family: type) -> None:
    with pytest.raises(ValueError, match="batch"):
        family(batch=0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"width": 0}, "width"),
        ({"depth": -1}, "depth"),
        ({"scale": 0.0}, "scale"),
        ({"seed": -2}, "seed"),
    ],
)
def test_bad_network_settings_are_rejected(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FourierMLP(2, 3, **options)  # type: ignore[arg-type]
