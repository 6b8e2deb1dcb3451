r"""Mitsuba 3 scenes as black boxes: θ → image.

:class:`MitsubaRenderer` loads a scene once (per process: it is loaded lazily
on the first render, so a renderer pickled into worker processes loads it in
each worker), writes the numbers of θ into scene parameters found by
``mi.traverse``, renders and returns the image as a tensor ``[H, W, C]``.

Noise. A Monte Carlo render is a noisy function of θ; its noise is fixed by
the sampler seed. The renderer takes a ``seed`` argument, so an Evaluator hands
it one per render, and ``vg.GaussianSmoothing(..., common_random_numbers=True)``
gives both images of an antithetic pair θ ± σε the same seed (*common random
numbers*): their noise then cancels in the difference the estimator uses.
Called without a seed, it renders with its own fixed ``seed``. The variant is
``scalar_rgb`` by default (no JIT compiler, no system libraries).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voidgrad.integrations import check_parameter_names, split_theta
from voidgrad.validation import check_int, check_seed

__all__ = ["MitsubaRenderer", "import_mitsuba"]

SceneSource = str | Path | Callable[[], Any]
Apply = Callable[[Any, torch.Tensor], None]


def import_mitsuba(variant: str) -> Any:
    """Import Mitsuba and select ``variant``; name the extra if it is missing.

    Examples:
        >>> from voidgrad.integrations.mitsuba import import_mitsuba
        >>> mi = import_mitsuba("scalar_rgb")
        >>> mi.variant()
        'scalar_rgb'
        >>> import_mitsuba("no_such_variant")
        Traceback (most recent call last):
        ...
        ValueError: Mitsuba variant 'no_such_variant' is not available; known: [...]
    """
    try:
        import mitsuba as mi
    except ImportError as error:
        raise ImportError("the Mitsuba integration needs: pip install voidgrad[mitsuba]") from error
    if variant not in mi.variants():
        raise ValueError(f"Mitsuba variant {variant!r} is not available; known: {mi.variants()}")
    mi.set_variant(variant)
    return mi


class MitsubaRenderer:
    """Render a Mitsuba 3 scene for a parameter vector θ.

    Args:
        scene: a path to a scene XML file, or a zero-argument function
            returning a ``mi.load_dict`` dictionary (called in the process that
            renders, after the variant is set, so it may use ``mi.`` types).
        parameters: either the ``mi.traverse`` keys that θ fills, in order,
            each taking as many numbers as its value has (a float takes one, a
            Color3f or Point3f three), or a function ``apply(params, theta)``
            that writes θ into the ``mi.SceneParameters`` itself (for
            transforms and anything else that needs a formula).
        spp: samples per pixel.
        variant: the Mitsuba variant; ``"scalar_rgb"`` needs no JIT.
        seed: the sampler seed of a render called without one; ``None``
            gives each such render a new seed (independent noise).

    Calling the renderer with θ ``[d]`` returns the image ``[H, W, C]`` (float32,
    linear radiance). ``dim`` is d (known once the scene is loaded when
    ``parameters`` is a function: then it is ``None``).

    Examples:
        A grey ball under a point light whose position θ sets:

        >>> import torch
        >>> from voidgrad.integrations.mitsuba import MitsubaRenderer
        >>> def ball():  # called where the renderer runs, after the variant is set
        ...     return {
        ...         "type": "scene", "integrator": {"type": "direct"},
        ...         "sensor": {"type": "perspective", "film": {"type": "hdrfilm",
        ...                                                     "width": 16, "height": 12}},
        ...         "ball": {"type": "sphere", "center": [0, 0, 4], "radius": 1.0},
        ...         "light": {"type": "point", "position": [0, 0, 0],
        ...                   "intensity": {"type": "rgb", "value": [10] * 3}},
        ...     }
        >>> renderer = MitsubaRenderer(ball, ["light.position"], spp=4)
        >>> renderer.dim
        3
        >>> image = renderer(torch.tensor([0.0, 0.0, 1.0]))
        >>> image.shape, image.dtype
        (torch.Size([12, 16, 3]), torch.float32)
        >>> bool(renderer(torch.tensor([0.0, 0.0, 2.0])).mean() > image.mean())  # closer: brighter
        True
    """

    def __init__(
        self,
        scene: SceneSource,
        parameters: Sequence[str] | Apply,
        *,
        spp: int = 16,
        variant: str = "scalar_rgb",
        seed: int | None = 0,
    ) -> None:
        if not (isinstance(scene, str | Path) or callable(scene)):
            raise TypeError(
                f"scene must be an XML path or a function returning a scene dict; "
                f"got {type(scene).__name__}"
            )
        check_parameter_names(parameters, "mi.traverse keys")
        check_int("spp", spp, 1)
        check_seed(seed)
        self.scene = scene
        self.parameters = parameters
        self.spp = spp
        self.variant = variant
        self.seed = seed
        self._loaded: tuple[Any, Any, Any] | None = None
        self._renders = 0

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_loaded"] = None  # Mitsuba objects do not pickle; each process loads its own
        return state

    def _load(self) -> tuple[Any, Any, Any]:
        if self._loaded is None:
            mi = import_mitsuba(self.variant)
            if isinstance(self.scene, str | Path):
                scene = mi.load_file(str(self.scene))
            else:
                scene = mi.load_dict(self.scene())
            params = mi.traverse(scene)
            if not callable(self.parameters):
                missing = [key for key in self.parameters if key not in params]
                if missing:
                    raise KeyError(
                        f"no scene parameters {missing}; mi.traverse offers {sorted(params.keys())}"
                    )
            self._loaded = (mi, scene, params)
        return self._loaded

    @property
    def dim(self) -> int | None:
        """Numbers in θ when ``parameters`` are keys; ``None`` for a function."""
        if callable(self.parameters):
            return None
        _, _, params = self._load()
        return sum(_size(params[key]) for key in self.parameters)

    def __call__(self, theta: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """The image ``[H, W, C]`` of the scene at θ ``[d]``, rendered with ``seed``."""
        mi, scene, params = self._load()
        theta = torch.as_tensor(theta, dtype=torch.float64).detach().reshape(-1)
        if callable(self.parameters):
            self.parameters(params, theta)
        else:
            self._write(params, theta)
        params.update()
        if seed is None:
            seed = self.seed if self.seed is not None else self._renders
        self._renders += 1
        image = mi.render(scene, params, spp=self.spp, seed=int(seed))
        return torch.from_numpy(np.array(image, dtype=np.float32))

    def _write(self, params: Any, theta: torch.Tensor) -> None:
        assert not callable(self.parameters)
        values = [params[key] for key in self.parameters]
        slices = split_theta(theta, [_size(value) for value in values], self.parameters)
        for key, value, numbers in zip(self.parameters, values, slices, strict=True):
            single = len(numbers) == 1 and isinstance(value, float | int)
            params[key] = numbers[0] if single else type(value)(*numbers)

    def __repr__(self) -> str:
        return f"MitsubaRenderer(variant={self.variant!r}, spp={self.spp}, seed={self.seed})"


def _size(value: Any) -> int:
    """How many numbers a scene parameter holds (1 for a float)."""
    if isinstance(value, float | int):
        return 1
    try:
        return len(value)
    except TypeError:
        return math.prod(np.array(value).shape)
