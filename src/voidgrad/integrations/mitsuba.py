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

Sparsity. Which pixels a parameter reaches is rarely known in closed form
(a texel reaches the pixels whose UV lookups land on it, through every
bounce); :meth:`MitsubaRenderer.detect_sparsity` measures the ``[H·W·C, d]``
pattern by group testing (:func:`voidgrad.detect_sparsity`) at one fixed
render seed, for ``vg.GaussianSmoothing(..., jac_sparsity=pattern)``.

Mitsuba's own gradient. :meth:`MitsubaRenderer.ad_guide` returns Mitsuba's
AD gradient of a loss of the image (an ``*_ad_*`` variant, ``dr.backward``)
as a guide ``guide(theta) -> tensor [d]`` for ``vg.GuidedSmoothing``: biased
where visibility changes (the ``direct`` and ``path`` integrators do not
differentiate moving edges), zero on a plateau, and cheap where it is right.
It runs in a child process of its own, because a JIT variant can abort the
process that loads it (``llvm_ad_rgb`` with the wrong libLLVM) and a process
has one Mitsuba variant at a time.
"""

from __future__ import annotations

import contextlib
import functools
import math
import multiprocessing
import weakref
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch

from voidgrad.estimators.detect_sparsity import DetectedSparsity
from voidgrad.estimators.detect_sparsity import detect_sparsity as detect_pattern
from voidgrad.evaluation.evaluator import Evaluator
from voidgrad.integrations import check_parameter_names, split_theta
from voidgrad.validation import check_callable, check_differentiable_scalar, check_int, check_seed

__all__ = ["ADGuide", "MitsubaRenderer", "import_mitsuba"]

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
            if single:
                params[key] = numbers[0]
            elif _is_tensor(value):  # a bitmap's texels, a grid volume: numbers in its shape
                params[key] = type(value)(np.asarray(numbers, np.float32).reshape(value.shape))
            else:
                params[key] = type(value)(*numbers)

    def detect_sparsity(
        self,
        theta: torch.Tensor,
        *,
        step: float,
        seed: int = 0,
        tolerance: float | None = None,
        workers: int = 1,
        **options: Any,
    ) -> DetectedSparsity:
        r"""The ``[H·W·C, d]`` pattern of which pixels θ_j moves, measured around ``theta``.

        :func:`voidgrad.detect_sparsity` on θ ↦ the flattened image, every
        render at the render seed ``seed``: with a fixed seed the Monte Carlo
        noise is the same in every probe, so a pixel changes only when one of
        the parameters it depends on moved (with a new seed per render every
        pixel would change in every probe, a dense pattern). A pixel whose
        paths never reach a parameter at this seed and ``spp`` (a texel that
        no sample of that pixel looks up) gets no credit for it: detect with
        the ``spp`` the estimator renders with, or more.

        Cost: 1 render for the tolerance when it is not given, plus
        :func:`voidgrad.detect_sparsity`'s 1 + ((D − 1)·G + ⌈d / G^(D−1)⌉ +
        filter_rounds·G)·repeats, D = ⌈log_G d⌉ (a 4 × 4 RGB texture, d = 48,
        with G = 8: 1 + 8 + 6 + 4·8 = 47 renders, plus 1).

        Args:
            theta: the point to probe at, ``[d]``.
            step: h, the probe's step; parameters move by h to 2h.
            seed: the render seed of every probe.
            tolerance: a pixel channel counts as changed when it moves by more;
                by default 10⁻⁴ × the largest value of the image at θ, because
                renders at one seed agree only up to float rounding (threads
                add the overlapping edges of image blocks in any order).
            workers: render in this many worker processes (1: in this one).
            **options: ``groups``, ``filter_rounds``, ``repeats``,
                ``max_candidates`` and the grouping's ``seed`` as
                ``pattern_seed``, passed on to :func:`voidgrad.detect_sparsity`.

        Returns:
            A :class:`~voidgrad.estimators.detect_sparsity.DetectedSparsity`;
            pass it (or its ``pattern``) as ``jac_sparsity``.

        Examples:
            >>> import torch, voidgrad as vg
            >>> from voidgrad.integrations.mitsuba import MitsubaRenderer
            >>> def ball():
            ...     return {
            ...         "type": "scene", "integrator": {"type": "direct"},
            ...         "sensor": {"type": "perspective", "film": {"type": "hdrfilm",
            ...                                                     "width": 8, "height": 6}},
            ...         "ball": {"type": "sphere", "center": [0, 0, 4], "radius": 3.5},
            ...         "light": {"type": "point", "position": [0, 0, 0],
            ...                   "intensity": {"type": "rgb", "value": [10] * 3}},
            ...     }  # the ball fills the film: every pixel is lit
            >>> renderer = MitsubaRenderer(ball, ["light.intensity.value"], spp=2)
            >>> found = renderer.detect_sparsity(torch.full((3,), 10.0), step=1.0, groups=2)
            >>> found.pattern  # each colour channel of the light reaches that channel
            JacobianSparsity(shape=[144, 3], nnz=144)
            >>> estimator = vg.GaussianSmoothing(1.0, 8, jac_sparsity=found, seed=0)
        """
        check_seed(seed, optional=False)
        check_int("workers", workers, 1)
        if "seed" in options:
            raise TypeError(
                "detect_sparsity: the grouping's seed is pattern_seed (seed= is the render seed)"
            )
        if "pattern_seed" in options:
            options["seed"] = options.pop("pattern_seed")
        theta = torch.as_tensor(theta).detach()
        if tolerance is None:
            tolerance = 1e-4 * float(self(theta.reshape(-1), seed=seed).abs().max())
        render = functools.partial(self, seed=seed)
        parallel: dict[str, Any] = {"backend": "process", "workers": workers} if workers > 1 else {}
        with Evaluator(render, **parallel) as evaluator:
            return detect_pattern(evaluator, theta, step=step, tolerance=tolerance, **options)

    def ad_guide(
        self,
        loss: Callable[[torch.Tensor], torch.Tensor],
        *,
        variant: str = "llvm_ad_rgb",
        apply: Callable[[Any, Any], None] | None = None,
        spp: int | None = None,
        seed: int | None = None,
        timeout: float = 600.0,
    ) -> ADGuide:
        r"""Mitsuba's AD gradient of ``loss(image)`` as a guide ``guide(theta) -> tensor [d]``.

        The guide renders this scene with ``variant`` (an ``*_ad_*`` one) in a
        child process at θ, computes ∇_I loss(I) with torch in this process and
        returns Mitsuba's vector-Jacobian product

            g(θ) = (∂I/∂θ)ᵀ ∇_I loss(I(θ)),

        by ``dr.backward``: the gradient of the loss through Mitsuba's
        differentiable rendering, with its integrator's bias (moving edges are
        not differentiated by ``direct`` or ``path``; a plateau gives zero).
        Pass it as ``vg.GuidedSmoothing(..., guide=renderer.ad_guide(loss))``.
        Each call costs one primal render and one adjoint render, counted in no
        Evaluator's budget.

        Args:
            loss: ``loss(image) -> scalar tensor`` for the image ``[H, W, C]``
                (float32, on θ's device), differentiable by torch; the loss the
                black-box image goes into.
            variant: the AD variant, ``"llvm_ad_rgb"`` (needs ``libllvm``) or
                ``"cuda_ad_rgb"``.
            apply: for a renderer whose ``parameters`` is a function (which
                writes plain numbers, so no gradient flows): ``apply(params,
                theta)`` writing θ, a ``mi.Float`` of d entries with gradients
                enabled, with differentiable Mitsuba types (entry i is
                ``dr.gather(mi.Float, theta, i)``). Not allowed with keys, which
                are written from θ as the renderer writes them.
            spp: samples per pixel of both renders; the renderer's by default.
            seed: the render seed of every call; ``None`` gives call k the seed
                k (independent noise, a reproducible sequence).
            timeout: seconds to wait for the child at start and per call.

        Returns:
            An :class:`ADGuide`, already started (the child has loaded the
            scene); close it, or use it as a context manager, to end the child.

        Raises:
            ValueError: the variant is unknown or not an AD one, or ``apply``
                is missing or superfluous (raised here, before starting).
            RuntimeError: the child failed to load the scene, or died (a JIT
                variant without its compiler aborts it).
        """
        check_callable("loss", loss, "loss(image) -> scalar tensor", optional=False)
        check_callable("apply", apply, "apply(params, theta)")
        if "_ad_" not in variant:
            raise ValueError(
                f"variant must be a Mitsuba AD variant such as 'llvm_ad_rgb' or 'cuda_ad_rgb'; "
                f"got {variant!r}"
            )
        if callable(self.parameters) and apply is None:
            raise ValueError(
                "apply is required: this renderer writes theta with a function, whose plain "
                "numbers carry no gradient; give apply(params, theta) that writes theta (a "
                "mi.Float with gradients) with differentiable Mitsuba types"
            )
        if not callable(self.parameters) and apply is not None:
            raise ValueError(
                f"apply must be None for a renderer of keys {list(self.parameters)}: they are "
                "written from theta as the renderer writes them"
            )
        if spp is not None:
            check_int("spp", spp, 1)
        check_seed(seed)
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds; got {timeout!r}")
        return ADGuide(self, loss, variant, apply, spp or self.spp, seed, timeout)

    def __repr__(self) -> str:
        return f"MitsubaRenderer(variant={self.variant!r}, spp={self.spp}, seed={self.seed})"


def _is_tensor(value: Any) -> bool:
    """Whether a scene parameter is a Dr.Jit tensor (``TensorXf``: a bitmap, a volume grid)."""
    import drjit as dr

    return bool(dr.is_tensor_v(value))


def _size(value: Any) -> int:
    """How many numbers a scene parameter holds (1 for a float, all entries of a tensor)."""
    if isinstance(value, float | int):
        return 1
    if _is_tensor(value):
        return math.prod(value.shape)
    try:
        return len(value)
    except TypeError:
        return math.prod(np.array(value).shape)


class ADGuide:
    r"""Mitsuba's AD gradient of a loss of the image, from a child process
    (:meth:`MitsubaRenderer.ad_guide`; use that to make one).

    Calling it with θ ``[d]`` returns g(θ) = (∂I/∂θ)ᵀ ∇_I loss(I(θ)) ``[d]`` in
    θ's dtype and device; :meth:`render` returns the AD variant's image I(θ)
    alone. The child loads the scene once; it ends with :meth:`close`, the
    ``with`` block, or when the guide is garbage-collected.

    Examples:
        >>> import torch, voidgrad as vg
        >>> from voidgrad.integrations.mitsuba import MitsubaRenderer
        >>> from voidgrad.integrations.mitsuba import import_mitsuba
        >>> def ball():
        ...     return {
        ...         "type": "scene", "integrator": {"type": "direct"},
        ...         "sensor": {"type": "perspective", "film": {"type": "hdrfilm",
        ...                                                     "width": 8, "height": 6}},
        ...         "ball": {"type": "sphere", "center": [0, 0, 4], "radius": 1.0,
        ...                  "bsdf": {"type": "diffuse"}},
        ...         "light": {"type": "point", "position": [0, 0, 0],
        ...                   "intensity": {"type": "rgb", "value": [10] * 3}},
        ...     }
        >>> renderer = MitsubaRenderer(ball, ["ball.bsdf.reflectance.value"], spp=4)
        >>> def darker(image):  # the mean brightness, to be lowered
        ...     return image.mean()
        >>> with renderer.ad_guide(darker) as guide:  # doctest: +SKIP
        ...     gradient = guide(torch.tensor([0.5]))  # more reflectance: brighter
        ...     estimator = vg.GuidedSmoothing(0.1, 8, guide, alpha=0.5, seed=0)
        >>> bool(gradient[0] > 0)  # doctest: +SKIP
        True
    """

    def __init__(
        self,
        renderer: MitsubaRenderer,
        loss: Callable[[torch.Tensor], torch.Tensor],
        variant: str,
        apply: Callable[[Any, Any], None] | None,
        spp: int,
        seed: int | None,
        timeout: float,
    ) -> None:
        self.loss = loss
        self.variant = variant
        self.spp = spp
        self.seed = seed
        self.timeout = timeout
        self.calls = 0
        # spawn: a fresh interpreter, so a JIT abort or the variant cannot touch this process.
        context = multiprocessing.get_context("spawn")
        self._connection, child_end = context.Pipe()
        self._process = context.Process(
            target=_ad_worker, args=(child_end, renderer, variant, apply), daemon=True
        )
        self._process.start()
        child_end.close()
        self._finalizer = weakref.finalize(self, _stop, self._process, self._connection)
        # d, as the child counts it (None when apply writes θ: any length is taken).
        self.dim: int | None = self._receive("ready")

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        """g(θ) ``[d]`` (class doc), in θ's dtype and device."""
        theta = self._check(theta)
        image = self._image(theta, gradient=True)
        try:
            with torch.enable_grad():
                leaf = image.to(theta.device).requires_grad_(True)
                value = check_differentiable_scalar("loss", self.loss(leaf), "the image")
                (seed_gradient,) = torch.autograd.grad(value.reshape(()), leaf)
        except BaseException:
            self._connection.send(("discard",))  # the child waits for the adjoint; release it
            raise
        self._connection.send(("backward", seed_gradient.detach().cpu().float().numpy()))
        gradient = self._receive("gradient")
        return torch.from_numpy(gradient).to(device=theta.device, dtype=theta.dtype)

    def render(self, theta: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """The AD variant's image ``[H, W, C]`` at θ (float32, on θ's device), at ``seed``
        (by default the seed the next call would use; this render does not advance it)."""
        theta = self._check(theta)
        return self._image(theta, gradient=False, seed=seed).to(theta.device)

    def _check(self, theta: torch.Tensor) -> torch.Tensor:
        if not isinstance(theta, torch.Tensor) or not theta.is_floating_point():
            raise TypeError(
                f"theta must be a floating tensor [d]; got {type(theta).__name__}"
                + (f" of dtype {theta.dtype}" if isinstance(theta, torch.Tensor) else "")
            )
        theta = theta.detach().reshape(-1)
        if self.dim is not None and theta.numel() != self.dim:
            raise ValueError(
                f"theta must have d = {self.dim} numbers (the scene parameters' sizes); "
                f"got {theta.numel()}"
            )
        return theta

    def _image(self, theta: torch.Tensor, gradient: bool, seed: int | None = None) -> torch.Tensor:
        if not self._finalizer.alive:
            raise RuntimeError(f"this ADGuide (variant {self.variant!r}) is closed")
        if seed is None:
            seed = self.seed if self.seed is not None else self.calls
        else:
            check_seed(seed, optional=False)
        if gradient:
            self.calls += 1
        numbers = theta.cpu().to(torch.float64).numpy()  # the child's Mitsuba reads host memory
        self._connection.send(("render", numbers, int(seed), self.spp, gradient))
        return torch.from_numpy(self._receive("image"))

    def _receive(self, expected: str) -> Any:
        """The child's next answer, which must be ``expected``; a clear error otherwise."""
        waited = 0.0
        while not self._connection.poll(0.1):
            waited += 0.1
            if not self._process.is_alive():
                self._died()
            if waited > self.timeout:
                self._finalizer()
                raise RuntimeError(
                    f"the Mitsuba AD process (variant {self.variant!r}) did not answer within "
                    f"timeout={self.timeout:g} s; it was stopped"
                )
        try:
            kind, payload = self._connection.recv()
        except EOFError:  # the child closed its end: it is ending
            self._process.join(5)
            self._died()
        if kind == "error":
            raise RuntimeError(
                f"the Mitsuba AD process (variant {self.variant!r}) failed: {payload}"
            )
        assert kind == expected, (kind, expected)
        return payload

    def _died(self) -> NoReturn:
        self._finalizer()
        raise RuntimeError(
            f"the Mitsuba AD process (variant {self.variant!r}) died with exit status "
            f"{self._process.exitcode}; a JIT variant aborts when its compiler is missing or "
            "mismatched (llvm_ad_rgb needs libllvm, e.g. apt-get install libllvm19; "
            "cuda_ad_rgb needs a CUDA driver); see its output above"
        )

    def close(self) -> None:
        """End the child process (idempotent)."""
        self._finalizer()

    def __enter__(self) -> ADGuide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self._finalizer.alive else "closed"
        return f"ADGuide(variant={self.variant!r}, spp={self.spp}, seed={self.seed}, {state})"


def _stop(process: Any, connection: Connection) -> None:
    """Ask the child to end, then make sure it has."""
    with contextlib.suppress(OSError, ValueError):  # already gone
        connection.send(None)
    process.join(5)
    if process.is_alive():
        process.terminate()
        process.join(5)
    connection.close()


def _ad_worker(
    connection: Connection,
    renderer: MitsubaRenderer,
    variant: str,
    apply: Callable[[Any, Any], None] | None,
) -> None:
    """The child of :class:`ADGuide`: load the scene in ``variant``, then answer requests.

    ``("render", theta, seed, spp, gradient)`` → ``("image", [H, W, C])``; with
    ``gradient``, the next request is ``("backward", ∇_I loss)`` → ``("gradient", [d])``
    or ``("discard",)``. ``None`` ends it. A failure is answered ``("error", text)``.
    """
    try:
        import drjit as dr

        mi = import_mitsuba(variant)
        if isinstance(renderer.scene, str | Path):
            scene = mi.load_file(str(renderer.scene))
        else:
            scene = mi.load_dict(renderer.scene())
        params = mi.traverse(scene)
        keys = None if callable(renderer.parameters) else list(renderer.parameters)
        if keys is not None:
            missing = [key for key in keys if key not in params]
            if missing:
                raise KeyError(
                    f"no scene parameters {missing}; mi.traverse offers {sorted(params.keys())}"
                )
        templates = {key: params[key] for key in keys or []}
        sizes = [_size(value) for value in templates.values()]
        connection.send(("ready", sum(sizes) if keys is not None else None))
    except Exception as error:
        connection.send(("error", f"{type(error).__name__}: {error}"))
        return
    while (request := connection.recv()) is not None:
        try:
            _, numbers, seed, spp, gradient = request
            theta = mi.Float(np.asarray(numbers, dtype=np.float32))
            if gradient:
                dr.enable_grad(theta)
            if apply is not None:
                apply(params, theta)
            else:
                if len(numbers) != sum(sizes):
                    raise ValueError(
                        f"θ must have {sum(sizes)} numbers for {keys}; got {len(numbers)}"
                    )
                _write_differentiable(mi, dr, params, templates, theta, numbers)
            params.update()
            image = mi.render(scene, params, spp=spp, seed=seed)
            connection.send(("image", np.array(image, dtype=np.float32)))
            if not gradient:
                continue
            adjoint = connection.recv()
            if adjoint[0] != "backward":
                continue
            dr.backward(dr.sum(image * mi.TensorXf(adjoint[1]), axis=None))
            connection.send(("gradient", np.array(dr.grad(theta), dtype=np.float64)))
        except Exception as error:
            connection.send(("error", f"{type(error).__name__}: {error}"))


def _write_differentiable(
    mi: Any, dr: Any, params: Any, templates: dict[str, Any], theta: Any, numbers: np.ndarray
) -> None:
    """Write θ (a ``mi.Float`` with gradients) into the keys, each in its template's type.

    Entries are gathered from θ, so gradients flow back to it; a plain Python
    number parameter gets a plain number (no gradient reaches it).
    """
    start = 0
    for key, template in templates.items():
        size = _size(template)
        if isinstance(template, float | int):
            params[key] = type(template)(numbers[start])
        elif _is_tensor(template):
            index = dr.arange(mi.UInt32, start, start + size)
            params[key] = type(template)(dr.gather(mi.Float, theta, index), template.shape)
        elif dr.size_v(type(template)) > 0:  # Color3f, Point3f, ...: one Float per component
            params[key] = type(template)(
                *(dr.gather(mi.Float, theta, mi.UInt32(start + i)) for i in range(size))
            )
        else:  # a dynamic Float of ``size`` entries
            params[key] = dr.gather(mi.Float, theta, dr.arange(mi.UInt32, start, start + size))
        start += size
