"""vg.integrations.blender: Blender scenes as black boxes (skipped without bpy)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import voidgrad as vg
from voidgrad.integrations.blender import BlenderRenderer, ball_scene

bpy = pytest.importorskip("bpy")

BALL = 'objects["Ball"]'
PAINT = 'materials["Paint"].node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value'


def renderer(parameters: Any = (f"{BALL}.location",), **options: Any) -> BlenderRenderer:
    options = {"resolution": (24, 16), "samples": 4, **options}
    return BlenderRenderer(ball_scene, list(parameters), **options)


def test_renders_an_image_that_follows_the_parameters() -> None:
    render = renderer()
    assert render.dim == 3
    image = render(torch.tensor([0.0, 0.0, 0.5]))
    assert image.shape == (16, 24, 4) and image.dtype == torch.float32
    moved = render(torch.tensor([1.5, 0.0, 0.5]))
    assert not torch.allclose(moved, image, atol=1e-3)
    # The ball moved right (+x): red (R − G) left the centre for the right edge.
    redness, moved_redness = image[..., 0] - image[..., 1], moved[..., 0] - moved[..., 1]
    assert moved_redness[:, 18:].sum() > redness[:, 18:].sum() + 1
    assert moved_redness[:, 8:14].sum() < redness[:, 8:14].sum() - 1


def test_index_custom_property_and_node_input_paths() -> None:
    render = renderer([f"{BALL}.location[0]", f'{BALL}["size"]', PAINT])
    assert render.dim == 1 + 1 + 4
    image = render(torch.tensor([0.0, 2.0, 0.1, 0.8, 0.1, 1.0]))
    assert image.shape == (16, 24, 4)
    assert bpy.data.objects["Ball"]["size"] == 2.0
    assert tuple(
        bpy.data.materials["Paint"]
        .node_tree.nodes["Principled BSDF"]
        .inputs["Base Color"]
        .default_value
    )[1] == pytest.approx(0.8)


def test_seeds_fix_the_cycles_noise() -> None:
    render = renderer(samples=1)
    x = torch.tensor([0.0, 0.0, 0.5])
    assert torch.equal(render(x, seed=3), render(x, seed=3))
    assert not torch.equal(render(x, seed=3), render(x, seed=4))


def test_channels_first_layout() -> None:
    x = torch.tensor([0.0, 0.0, 0.5])
    image = renderer(channels_first=True)(x)
    assert image.shape == (4, 16, 24)
    assert torch.allclose(image.permute(1, 2, 0), renderer()(x), atol=1e-5)


def test_workbench_renders_too() -> None:
    image = renderer(engine="BLENDER_WORKBENCH")(torch.tensor([0.0, 0.0, 0.5]))
    assert image.shape == (16, 24, 4) and image[..., :3].max() > 0


def test_worker_processes_render_what_the_parent_renders() -> None:
    render = renderer()
    X = torch.tensor([[0.0, 0.0, 0.5], [1.0, -1.0, 0.5]])
    with vg.Evaluator(render, backend="process", workers=2) as evaluator:
        images = evaluator(X, seeds=[5, 5])
    for row in range(2):
        assert torch.allclose(images[row], render(X[row], seed=5), atol=1e-5)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"scene": 3}, TypeError, ".blend path"),
        ({"parameters": "x"}, TypeError, "sequence"),
        ({"parameters": []}, ValueError, "names no"),
        ({"engine": "EEVEE_NEXT"}, ValueError, "engine"),
        ({"resolution": (0, 10)}, ValueError, "resolution"),
        ({"samples": 0}, ValueError, "samples"),
        ({"threads": 0}, ValueError, "threads"),
    ],
)
def test_bad_arguments_are_rejected(options: dict[str, Any], error: type, message: str) -> None:
    arguments: dict[str, Any] = {"scene": ball_scene, "parameters": [f"{BALL}.location"]}
    arguments.update(options)
    with pytest.raises(error, match=message):
        BlenderRenderer(**arguments)


def test_bad_paths_lengths_and_scenes_are_named(tmp_path: Any) -> None:
    with pytest.raises(KeyError, match="Bal"):
        renderer(['objects["Bal"].location'])(torch.zeros(3))
    with pytest.raises(KeyError, match="colour"):
        renderer([f"{BALL}.colour"])(torch.zeros(3))
    with pytest.raises(ValueError, match="3 numbers"):
        renderer()(torch.zeros(2))
    with pytest.raises(ValueError, match="no camera"):
        BlenderRenderer(lambda bpy: None, [f"{BALL}.location"])(torch.zeros(3))
    with pytest.raises(FileNotFoundError):
        BlenderRenderer(tmp_path / "missing.blend", [f"{BALL}.location"])(torch.zeros(3))


def ball_with_bevelled_box(bpy: Any) -> None:
    """ball_scene plus a cube with a Bevel modifier."""
    ball_scene(bpy)
    bpy.ops.mesh.primitive_cube_add(size=0.6, location=(-1, -1, 0.3))
    bpy.context.object.name = "Box"
    bpy.context.object.modifiers.new("Bevel", "BEVEL")


def test_modifier_inputs_are_parameters() -> None:
    render = BlenderRenderer(
        ball_with_bevelled_box, ['objects["Box"].modifiers["Bevel"].width'], resolution=(16, 16)
    )
    assert render.dim == 1
    render(torch.tensor([0.2]))
    assert bpy.data.objects["Box"].modifiers["Bevel"].width == pytest.approx(0.2)


def test_a_saved_blend_file_renders_like_the_scene_it_came_from(tmp_path: Any) -> None:
    x = torch.tensor([0.5, 0.0, 0.5])
    built = renderer()
    image = built(x)
    path = tmp_path / "ball.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    opened = BlenderRenderer(path, [f"{BALL}.location"], resolution=(24, 16), samples=4)
    assert torch.allclose(opened(x), image, atol=1e-5)
