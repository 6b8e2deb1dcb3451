r"""Blender scenes as black boxes: θ → image, through ``bpy`` (Blender as a Python module).

:class:`BlenderRenderer` opens a ``.blend`` file or builds a scene with a
Python function, writes the numbers of θ into named properties (object
transforms, material and node values, modifier inputs, custom properties),
renders with Cycles or Workbench and returns the image as a tensor
``[H, W, C]`` (linear, float32).

bpy holds one scene per process, and a scene takes long to load, so the
renderer loads it lazily, once per process: pickled into the workers of a
``"process"`` or ``"ray"`` Evaluator, each worker loads its own copy, and
several Blender instances render in parallel::

    renderer = BlenderRenderer("scene.blend", ['objects["Ball"].location'])
    with vg.Evaluator(renderer, backend="process", workers=2) as evaluator:
        images = evaluator(thetas)

bpy 5.0.1 needs Python 3.11 and NumPy < 2 (``pip install voidgrad[blender]``).
Eevee needs a GPU; on a CPU machine use ``"CYCLES"`` or ``"BLENDER_WORKBENCH"``.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voidgrad.integrations import check_parameter_names, split_theta
from voidgrad.validation import check_int

__all__ = ["BlenderRenderer", "ball_scene", "import_bpy"]

SceneSource = str | Path | Callable[[Any], None]
Apply = Callable[[Any, torch.Tensor], None]
ENGINES = ("CYCLES", "BLENDER_WORKBENCH", "BLENDER_EEVEE")

# A property path ends in an attribute (``.location``), an index (``[0]``) or a
# custom-property key (``["size"]``); the part before it names the owner.
_LAST_STEP = re.compile(
    r"^(?P<owner>.+?)(?:\.(?P<attribute>\w+)|\[(?P<index>\d+)\]|\[\"(?P<key>[^\"]+)\"\])$"
)


# Blender's own script folders (``.../bpy/5.0/scripts/modules`` and the like).
_BLENDER_SCRIPTS = re.compile(r"[/\\]bpy[/\\][\d.]+[/\\]scripts")


def import_bpy() -> Any:
    """Import bpy; name the extra if it is missing.

    A process spawned from one that has imported bpy inherits its ``sys.path``,
    which then starts with Blender's script folders; there the inner ``bpy``
    package shadows the one that loads Blender, and importing it fails. Those
    folders are dropped before the first import (bpy puts them back).

    Examples:
        >>> from voidgrad.integrations.blender import import_bpy
        >>> bpy = import_bpy()
        >>> bpy.app.version >= (4, 0, 0)
        True
    """
    if "bpy" not in sys.modules:
        sys.path[:] = [path for path in sys.path if not _BLENDER_SCRIPTS.search(path)]
    try:
        import bpy
    except ImportError as error:
        raise ImportError(
            "the Blender integration needs: pip install voidgrad[blender] (Python 3.11)"
        ) from error
    return bpy


class _Property:
    """A writable property of ``bpy.data`` named by a path such as ``objects["Ball"].location``."""

    def __init__(self, bpy: Any, path: str) -> None:
        match = _LAST_STEP.match(path)
        if match is None:
            raise ValueError(f"cannot read the property path {path!r}")
        try:
            self.owner = bpy.data.path_resolve(match["owner"])
        except ValueError as error:
            raise KeyError(f"no Blender data at {match['owner']!r} (from {path!r})") from error
        self.path = path
        if match["attribute"] is not None:
            self.name: str | int = match["attribute"]
            if not hasattr(self.owner, self.name):
                raise KeyError(f"{match['owner']} has no property {self.name!r}")
            value = getattr(self.owner, self.name)
        else:
            self.name = int(match["index"]) if match["index"] is not None else match["key"]
            try:
                value = self.owner[self.name]
            except (KeyError, IndexError, TypeError) as error:
                raise KeyError(f"no Blender data at {path!r}") from error
        self.size = 1 if isinstance(value, int | float) else len(value)

    def write(self, numbers: list[float]) -> None:
        value: Any = numbers[0] if self.size == 1 else numbers
        if isinstance(self.name, str) and hasattr(self.owner, self.name):
            setattr(self.owner, self.name, value)
        else:
            self.owner[self.name] = value


class BlenderRenderer:
    """Render a Blender scene for a parameter vector θ.

    Args:
        scene: a ``.blend`` file, or a function ``build(bpy)`` that fills an
            empty scene (objects, materials, lights, a camera).
        parameters: paths into ``bpy.data`` that θ fills, in order, each
            taking as many numbers as its value has, e.g.
            ``'objects["Ball"].location'`` (three), ``'objects["Ball"].location[2]'``
            (one), ``'materials["Red"].node_tree.nodes["Principled BSDF"]
            .inputs["Roughness"].default_value'``, ``'objects["Box"]
            .modifiers["Bevel"].width'`` or a custom property
            ``'objects["Ball"]["size"]'``; or a function ``apply(bpy, theta)``
            that writes θ itself.
        engine: ``"CYCLES"`` (default) or ``"BLENDER_WORKBENCH"``.
        resolution: (width, height) in pixels.
        samples: Cycles samples per pixel.
        seed: the Cycles seed of a render called without one.
        threads: render threads of each Blender instance; ``None`` lets
            Blender use every core (then several worker processes only
            compete for them, so give k workers about cores / k threads).
        channels_first: return ``[4, H, W]`` (the layout of image networks,
            e.g. for :func:`voidgrad.adversarial`) instead of ``[H, W, 4]``.

    Calling the renderer with θ ``[d]`` (and optionally a ``seed``) returns
    the image ``[H, W, 4]`` (RGBA, linear, float32; row 0 at the top).

    Examples:
        The ball of :func:`ball_scene`, moved by θ = its location:

        >>> import torch
        >>> from voidgrad.integrations.blender import BlenderRenderer, ball_scene
        >>> renderer = BlenderRenderer(ball_scene, ['objects["Ball"].location'],
        ...                            resolution=(24, 16), samples=4)
        >>> renderer.dim
        3
        >>> image = renderer(torch.tensor([0.0, 0.0, 0.5]))
        >>> image.shape, image.dtype
        (torch.Size([16, 24, 4]), torch.float32)
        >>> moved = renderer(torch.tensor([1.5, 0.0, 0.5]))  # to the right
        >>> red = lambda im: (im[..., 0] - im[..., 1])[:, 18:].sum()  # red at the right edge
        >>> bool(red(moved) > red(image) + 1)
        True
    """

    #: Blender's threads do not survive a fork: a process Evaluator spawns its workers.
    process_start_method = "spawn"

    def __init__(
        self,
        scene: SceneSource,
        parameters: Sequence[str] | Apply,
        *,
        engine: str = "CYCLES",
        resolution: tuple[int, int] = (64, 64),
        samples: int = 16,
        seed: int = 0,
        threads: int | None = None,
        channels_first: bool = False,
    ) -> None:
        if not (isinstance(scene, str | Path) or callable(scene)):
            raise TypeError(
                f"scene must be a .blend path or a function build(bpy); got {type(scene).__name__}"
            )
        check_parameter_names(parameters, "bpy.data paths")
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}; got {engine!r}")
        if (
            not isinstance(resolution, tuple | list)
            or len(resolution) != 2
            or not all(isinstance(n, int) and n > 0 for n in resolution)
        ):
            raise ValueError(f"resolution must be (width, height) in pixels; got {resolution!r}")
        check_int("samples", samples, 1)
        check_int("seed", seed, 0)
        if threads is not None:
            check_int("threads", threads, 1)
        self.scene = scene
        self.parameters = parameters
        self.engine = engine
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self.samples = samples
        self.seed = seed
        self.threads = threads
        self.channels_first = bool(channels_first)
        self._loaded: tuple[Any, list[_Property], Path] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_loaded"] = None  # bpy state lives in its process; each worker loads its own
        return state

    def _load(self) -> tuple[Any, list[_Property], Path]:
        if self._loaded is None:
            bpy = import_bpy()
            if isinstance(self.scene, str | Path):
                if not Path(self.scene).is_file():
                    raise FileNotFoundError(f"no .blend file at {self.scene}")
                bpy.ops.wm.open_mainfile(filepath=str(self.scene))
            else:
                bpy.ops.wm.read_factory_settings(use_empty=True)
                self.scene(bpy)
            scene = bpy.context.scene
            if scene.camera is None:
                raise ValueError("the scene has no camera to render from")
            scene.render.engine = self.engine
            scene.render.resolution_x, scene.render.resolution_y = self.resolution
            scene.render.resolution_percentage = 100
            if self.threads is not None:
                scene.render.threads_mode = "FIXED"
                scene.render.threads = self.threads
            scene.render.image_settings.file_format = "OPEN_EXR"
            scene.render.image_settings.color_depth = "32"
            if self.engine == "CYCLES":
                scene.cycles.device = "CPU"
                scene.cycles.samples = self.samples
                scene.cycles.use_denoising = False
            properties = (
                [] if callable(self.parameters) else [_Property(bpy, p) for p in self.parameters]
            )
            output = Path(tempfile.mkdtemp(prefix="voidgrad-blender-")) / "render.exr"
            self._loaded = (bpy, properties, output)
        return self._loaded

    @property
    def dim(self) -> int | None:
        """Numbers in θ when ``parameters`` are paths; ``None`` for a function."""
        if callable(self.parameters):
            return None
        _, properties, _ = self._load()
        return sum(p.size for p in properties)

    def __call__(self, theta: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """The image ``[H, W, 4]`` of the scene at θ ``[d]``."""
        bpy, properties, output = self._load()
        theta = torch.as_tensor(theta, dtype=torch.float64).detach().reshape(-1)
        if callable(self.parameters):
            self.parameters(bpy, theta)
        else:
            slices = split_theta(theta, [p.size for p in properties], self.parameters)
            for prop, numbers in zip(properties, slices, strict=True):
                prop.write(numbers)
        scene = bpy.context.scene
        if self.engine == "CYCLES":
            scene.cycles.seed = int(self.seed if seed is None else seed) % 2**31
        scene.render.filepath = str(output)
        with _quiet_stdout():
            bpy.ops.render.render(write_still=True)
        image = bpy.data.images.load(str(output))
        try:
            width, height = image.size
            pixels = np.empty(width * height * 4, dtype=np.float32)
            image.pixels.foreach_get(pixels)
        finally:
            bpy.data.images.remove(image)
        # Blender stores rows bottom-up; flip so row 0 is the top of the picture.
        picture = torch.from_numpy(pixels.reshape(height, width, 4)[::-1].copy())
        return picture.permute(2, 0, 1).contiguous() if self.channels_first else picture

    def __repr__(self) -> str:
        return (
            f"BlenderRenderer(engine={self.engine!r}, resolution={self.resolution}, "
            f"samples={self.samples})"
        )


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Send file descriptor 1 to /dev/null: Blender prints a line per render from C."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def ball_scene(bpy: Any) -> None:
    """A red ball (``objects["Ball"]``, material ``"Paint"``) on a floor under a sun.

    The camera looks straight down from height 6 and sees about ±1.7 around the
    origin. The ball (radius 0.5) has a custom property ``"size"``. The scene
    of the Blender examples, benchmark and tests; pass it as ``scene=``.

    Examples:
        >>> import torch
        >>> from voidgrad.integrations.blender import BlenderRenderer, ball_scene
        >>> size = BlenderRenderer(ball_scene, ['objects["Ball"]["size"]'],
        ...                        engine="BLENDER_WORKBENCH", resolution=(8, 8))
        >>> size.dim, tuple(size(torch.tensor([1.0])).shape)
        (1, (8, 8, 4))
    """
    bpy.ops.mesh.primitive_uv_sphere_add(
        radius=0.5, location=(0, 0, 0.5), segments=24, ring_count=12
    )
    ball = bpy.context.object
    ball.name = "Ball"
    ball["size"] = 1.0
    paint = bpy.data.materials.new("Paint")
    paint.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (0.8, 0.1, 0.1, 1)
    ball.data.materials.append(paint)
    bpy.ops.mesh.primitive_plane_add(size=10)
    bpy.ops.object.light_add(type="SUN", location=(0, 0, 5), rotation=(0.3, 0.2, 0))
    bpy.context.object.data.energy = 3.0
    bpy.ops.object.camera_add(location=(0, 0, 6), rotation=(0, 0, 0))
    bpy.context.scene.camera = bpy.context.object
