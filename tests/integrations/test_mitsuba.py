"""vg.integrations.mitsuba: Mitsuba 3 scenes as black boxes (skipped without mitsuba)."""

from __future__ import annotations

import functools
import math
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


def textured_square(sky: float = 0.2) -> dict[str, Any]:
    """A square whose diffuse colour is a 4×4 RGB bitmap (nearest lookups) lit head-on by a
    sun and a ``sky``: an 8×8 film sees exactly the square, each pixel one texel. The image is
    linear in the texels, and noisy with a sky (without one, exactly the texels' values)."""
    import numpy as np

    scene = {
        "type": "scene",
        "integrator": {"type": "direct"},
        "sensor": {
            "type": "perspective",
            "fov": 45,
            "to_world": mi.ScalarTransform4f().look_at(
                origin=[0, 0, 1 / math.tan(math.pi / 8)], target=[0, 0, 0], up=[0, 1, 0]
            ),
            "film": {"type": "hdrfilm", "width": 8, "height": 8, "rfilter": {"type": "box"}},
        },
        "square": {
            "type": "rectangle",
            "bsdf": {
                "type": "diffuse",
                "reflectance": {
                    "type": "bitmap",
                    "bitmap": mi.Bitmap(np.full((4, 4, 3), 0.5, dtype=np.float32)),
                    "filter_type": "nearest",
                    "raw": True,
                },
            },
        },
        "sun": {
            "type": "directional",
            "direction": [0, 0, -1],
            "irradiance": {"type": "rgb", "value": math.pi},
        },
    }
    if sky:  # a second light also makes the choice of light random
        scene["sky"] = {"type": "constant", "radiance": {"type": "rgb", "value": sky}}
    return scene


TEXELS = "square.bsdf.reflectance.data"


def texels(seed: int = 0) -> torch.Tensor:
    return 0.2 + 0.6 * torch.rand(48, generator=torch.Generator().manual_seed(seed))


def test_theta_fills_a_bitmap_texture() -> None:
    render = MitsubaRenderer(textured_square, [TEXELS], spp=4)
    assert render.dim == 48
    dark, bright = render(torch.full((48,), 0.2)), render(torch.full((48,), 0.8))
    assert torch.allclose(bright, 4 * dark, rtol=1e-4)  # the image is linear in the texels


def test_detection_at_one_render_seed_finds_each_texels_few_pixels() -> None:
    """The renderer draws new noise per render (seed=None); detect_sparsity fixes the seed."""
    render = MitsubaRenderer(textured_square, [TEXELS], spp=4, seed=None)
    found = render.detect_sparsity(texels(), step=0.05, groups=8)
    assert found.pattern.shape == (8 * 8 * 3, 48) and found.silent_outputs == 0
    pattern = found.pattern.transposed(torch.float32, torch.device("cpu")).to_dense()  # [d, out]
    per_texel = pattern.sum(1)
    assert bool((per_texel >= 1).all()) and int(per_texel.max()) <= 8  # of 192 outputs
    # A texel's channel reaches only that channel of the image.
    channel_of_output = torch.arange(192) % 3
    channel_of_texel = torch.arange(48) % 3
    assert bool((pattern.bool() <= (channel_of_texel[:, None] == channel_of_output)).all())
    assert found.evaluations == 1 + 8 + 6 + 4 * 8
    # Without a common seed every probe's noise moves every pixel: a dense pattern.
    dense = vg.detect_sparsity(render, texels(), step=0.05, groups=8)
    assert dense.pattern.nnz == 192 * 48


def test_the_detected_pattern_lowers_the_variance_of_the_vjp() -> None:
    render = MitsubaRenderer(textured_square, [TEXELS], spp=4)
    pattern = render.detect_sparsity(texels(), step=0.05, groups=8)
    target = render(texels(1))
    x = texels()

    def vjps(**sparsity: Any) -> torch.Tensor:
        estimator = vg.GaussianSmoothing(0.05, 4, common_random_numbers=True, seed=0, **sparsity)
        rows = []
        for _ in range(12):
            leaf = x.clone().requires_grad_(True)
            (vg.blackbox(render, estimator)(leaf) - target).pow(2).sum().backward()
            assert leaf.grad is not None
            rows.append(leaf.grad)
        return torch.stack(rows)

    sparse, dense = vjps(jac_sparsity=pattern), vjps()
    assert sparse.var(0).sum() < 0.1 * dense.var(0).sum()  # measured 0.005-0.009 over 5 seeds
    # Still the gradient: the image is linear in the texels, I = Aθ, column j the render of e_j.
    columns = torch.stack([render(row).reshape(-1) for row in torch.eye(48)], 1)
    gradient = columns.T @ (2 * (render(x) - target).reshape(-1))
    cosine = torch.nn.functional.cosine_similarity(sparse.mean(0), gradient, dim=0)
    assert cosine > 0.6  # measured 0.78-0.86 over 5 seeds (without the pattern: 0.39-0.57)


def mean_square(image: torch.Tensor) -> torch.Tensor:
    return image.pow(2).mean()


def started(render: MitsubaRenderer, loss: Any = mean_square, **options: Any) -> Any:
    """``render.ad_guide(loss, ...)``, or a skip where llvm_ad_rgb cannot run."""
    if "llvm_ad_rgb" not in mi.variants():
        pytest.skip("this Mitsuba has no llvm_ad_rgb variant")
    try:
        return render.ad_guide(loss, **options)
    except RuntimeError as error:
        if "died" in str(error):
            pytest.skip(f"llvm_ad_rgb is unusable here (install libllvm19): {error}")
        raise


def test_the_ad_guide_is_the_gradient_of_the_loss_of_its_own_render() -> None:
    """No visibility changes with the reflectance and the light's intensity: AD is exact."""
    render = MitsubaRenderer(
        lit_sphere, ["ball.bsdf.reflectance.value", "light.intensity.value"], spp=16
    )
    target = render(torch.tensor([0.8, 6.0, 12.0, 9.0]))

    def loss(image: torch.Tensor) -> torch.Tensor:
        return (image - target).pow(2).mean()

    with started(render, loss, seed=3) as guide:
        x = torch.tensor([0.5, 10.0, 10.0, 10.0], dtype=torch.float64)
        gradient = guide(x)
        assert gradient.dtype == torch.float64 and gradient.shape == (4,)
        steps = 0.01 * x
        differences = torch.stack(
            [
                loss(guide.render(x + h * e, seed=3)) - loss(guide.render(x - h * e, seed=3))
                for h, e in zip(steps, torch.eye(4, dtype=torch.float64), strict=True)
            ]
        ) / (2 * steps)
        torch.testing.assert_close(gradient, differences.to(gradient.dtype), rtol=0.02, atol=0)
        assert guide.calls == 1  # renders for the finite difference are not guide calls
        # The guide feeds guided smoothing of the scalar_rgb renderer.
        estimator = vg.GuidedSmoothing(0.1, 4, guide, alpha=0.5, seed=0)
        leaf = x.clone().requires_grad_(True)
        loss(vg.blackbox(render, estimator)(leaf)).backward()
        assert leaf.grad is not None and bool(torch.isfinite(leaf.grad).all())
        assert guide.calls == 2
    with pytest.raises(RuntimeError, match="closed"):
        guide(x)


def test_the_ad_guide_differentiates_texels() -> None:
    """Without the sky the render is exact, so the primal and adjoint renders agree."""
    render = MitsubaRenderer(functools.partial(textured_square, 0.0), [TEXELS], spp=4)
    target = render(texels(1))

    def loss(image: torch.Tensor) -> torch.Tensor:
        return (image - target).pow(2).sum()

    with started(render, loss, seed=0) as guide:
        assert guide.dim == 48
        gradient = guide(texels())
        image = guide.render(texels(), seed=0)
        # I = Aθ with A the render of each unit texel vector, at the guide's seed.
        columns = torch.stack([guide.render(row, seed=0).reshape(-1) for row in torch.eye(48)], 1)
    exact = columns.T @ (2 * (image - target).reshape(-1))
    torch.testing.assert_close(gradient, exact, rtol=0.02, atol=1e-3 * float(exact.abs().max()))


def crash(params: Any, theta: Any) -> None:
    import os

    os._exit(3)


def light_at(params: Any, theta: torch.Tensor) -> None:
    params["light.position"] = mi.ScalarPoint3f(*theta.tolist())


def test_a_dying_ad_process_is_a_clear_error_and_bad_options_are_named() -> None:
    render = MitsubaRenderer(lit_sphere, light_at)
    guide = started(render, apply=crash)
    with pytest.raises(RuntimeError, match="died with exit status 3"):
        guide(torch.zeros(3))
    with pytest.raises(ValueError, match="apply is required"):
        render.ad_guide(mean_square)
    keys = MitsubaRenderer(lit_sphere, ["ball.bsdf.reflectance.value"], spp=2)
    with pytest.raises(ValueError, match="apply must be None"):
        keys.ad_guide(mean_square, apply=crash)
    with pytest.raises(ValueError, match="AD variant"):
        keys.ad_guide(mean_square, variant="scalar_rgb")
    with pytest.raises(TypeError, match="loss must be callable"):
        keys.ad_guide(None)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="'llvm_ad_nothing' is not available"):
        keys.ad_guide(mean_square, variant="llvm_ad_nothing")
    with started(keys, lambda image: image.mean(dim=0)) as guide:
        with pytest.raises(ValueError, match="d = 1"):
            guide(torch.zeros(2))
        with pytest.raises(TypeError, match="loss must return a real scalar tensor"):
            guide(torch.full((1,), 0.5))
        guide.loss = mean_square  # the child still answers after the loss failed
        assert guide(torch.full((1,), 0.5)) > 0  # more reflectance: a brighter image
