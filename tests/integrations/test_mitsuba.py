"""vg.integrations.mitsuba: Mitsuba 3 scenes as black boxes (skipped without mitsuba)."""

from __future__ import annotations

import pickle
import subprocess
import sys
from typing import Any

import pytest
import torch

import voidgrad as vg
from voidgrad.integrations.mitsuba import MitsubaRenderer

mi = pytest.importorskip("mitsuba")


def lit_sphere() -> dict[str, Any]:
    """A grey sphere under a point light, 16×12 pixels."""
    return {
        "type": "scene",
        "integrator": {"type": "direct"},
        "sensor": {
            "type": "perspective",
            "fov": 40,
            "to_world": mi.ScalarTransform4f().look_at(
                origin=[0, 0, 4], target=[0, 0, 0], up=[0, 1, 0]
            ),
            "film": {"type": "hdrfilm", "width": 16, "height": 12},
        },
        "ball": {"type": "sphere", "radius": 0.8, "bsdf": {"type": "diffuse"}},
        "light": {
            "type": "point",
            "position": [1, 1, 3],
            "intensity": {"type": "rgb", "value": [10] * 3},
        },
    }


def renderer(**options: Any) -> MitsubaRenderer:
    return MitsubaRenderer(lit_sphere, ["light.position", "ball.bsdf.reflectance.value"], **options)


def theta(x: float = 1.0) -> torch.Tensor:
    return torch.tensor([x, 1.0, 3.0, 0.5])


def test_renders_an_image_that_follows_the_parameters() -> None:
    render = renderer(spp=4)
    assert render.dim == 4
    image = render(theta())
    assert image.shape == (12, 16, 3) and image.dtype == torch.float32
    brighter = render(torch.tensor([1.0, 1.0, 3.0, 0.9]))
    assert brighter.mean() > 1.5 * image.mean()
    assert not torch.allclose(render(theta(-1.0)), image)


def test_a_fixed_seed_repeats_the_noise_and_new_seeds_change_it() -> None:
    """Equal up to float rounding: Mitsuba's threads add overlapping pixel blocks in any order."""
    render = renderer(spp=1)

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:
        return bool((a - b).abs().max() < 1e-4 * a.abs().max())

    assert same(render(theta()), render(theta()))
    assert same(render(theta(), seed=7), render(theta(), seed=7))
    assert not same(render(theta(), seed=7), render(theta(), seed=8))
    fresh = renderer(spp=1, seed=None)
    assert not same(fresh(theta()), fresh(theta()))


def test_a_pickled_renderer_loads_its_own_scene() -> None:
    render = renderer(spp=2)
    image = render(theta())
    restored = pickle.loads(pickle.dumps(render))
    assert torch.allclose(restored(theta()), image, atol=1e-6)


def test_worker_processes_render_what_the_parent_renders() -> None:
    render = renderer(spp=2)
    X = torch.stack([theta(), theta(-1.0)])
    with vg.Evaluator(render, backend="process", workers=2) as evaluator:
        images = evaluator(X, seeds=[0, 0])
    assert torch.allclose(images[0], render(X[0]), atol=1e-6)
    assert torch.allclose(images[1], render(X[1]), atol=1e-6)


def test_smoothing_gradient_through_the_renderer_points_downhill() -> None:
    render = renderer(spp=2)
    target = render(theta(0.0))
    estimator = vg.GaussianSmoothing(0.3, 8, common_random_numbers=True, seed=0)
    x = theta(1.5).requires_grad_(True)
    loss = (vg.blackbox(render, estimator)(x) - target).pow(2).mean()
    loss.backward()
    assert x.grad is not None and x.grad[0] > 0  # moving the light toward x = 0 helps


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"scene": 3}, TypeError, "XML path"),
        ({"parameters": "light.position"}, TypeError, "sequence"),
        ({"parameters": []}, ValueError, "names no"),
        ({"spp": 0}, ValueError, "spp"),
        ({"seed": -1}, ValueError, "seed"),
    ],
)
def test_bad_arguments_are_rejected(arguments: dict[str, Any], error: type, message: str) -> None:
    options: dict[str, Any] = {"scene": lit_sphere, "parameters": ["light.position"]}
    options.update(arguments)
    with pytest.raises(error, match=message):
        MitsubaRenderer(**options)


def test_unknown_keys_wrong_lengths_and_variants_are_named() -> None:
    with pytest.raises(KeyError, match="light.position"):
        MitsubaRenderer(lit_sphere, ["light.colour"])(torch.zeros(3))
    with pytest.raises(ValueError, match="4 numbers"):
        renderer()(torch.zeros(3))
    with pytest.raises(ValueError, match="not available"):
        MitsubaRenderer(lit_sphere, ["light.position"], variant="no_such_variant")(torch.zeros(3))


def test_the_llvm_variant_renders_in_a_child_process() -> None:
    """llvm_ad_rgb aborts the process with the wrong libLLVM, so it runs in a child."""
    if "llvm_ad_rgb" not in mi.variants():
        pytest.skip("this Mitsuba has no llvm_ad_rgb variant")
    script = (
        "import torch, sys; sys.path.insert(0, 'tests/integrations');"
        "from test_mitsuba import renderer, theta;"
        "print(float(renderer(variant='llvm_ad_rgb', spp=2)(theta()).mean()))"
    )
    child = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    if child.returncode < 0 or "LLVM" in child.stderr:
        pytest.skip(f"llvm_ad_rgb is unusable here (install libllvm19): {child.stderr[-200:]}")
    assert child.returncode == 0, child.stderr
    assert float(child.stdout.strip().splitlines()[-1]) > 0
