"""Find a light that starts behind an occluder: Mitsuba 3 through a loss plateau.

A small spherical light at height 3 lights a floor, seen from below a large
opaque panel that covers x < 0 at height 2. The light must be moved to where
the target image says it is, (0.8, 0.3). It starts at (−1.6, −1.0), behind the
panel, which then shadows every floor point in view: the image is black, and
stays black for every small move, so the image loss is flat and its gradient
is zero. That is the plateau of PRDPT (seed 002): differentiable rendering has
nothing to follow, while Gaussian smoothing of the renderer with a wide,
annealed σ sees where the light comes out.

Ours: ``vg.blackbox`` around :class:`voidgrad.integrations.mitsuba.MitsubaRenderer`
(``scalar_rgb``), ``vg.GaussianSmoothing`` with common random numbers, Adam.
Guided (``--guided``): ``vg.GuidedSmoothing`` whose guide is Mitsuba's own AD
gradient of the same loss (``MitsubaRenderer.ad_guide``, ``llvm_ad_rgb``, in a
child process): zero on the plateau, where it is plain smoothing, and a
shading gradient once the light shows. Its σ follows the same anneal, set by
hand each step (``GuidedSmoothing`` takes no schedule).
Mitsuba's own: gradient descent (Adam, same step size) with ``llvm_ad_rgb``
and the ``direct`` integrator, from the plateau start and from a start next
to the answer. ``direct`` differentiates shading but not visibility;
``--ad-integrator direct_projective`` differentiates the moving shadow edge
too, at minutes per step on two cores. It runs in a child process, because a
missing LLVM can abort the process (``apt-get install libllvm19``).

    .venv/bin/python examples/mitsuba_occluded_light.py --steps 150
    .venv/bin/python examples/mitsuba_occluded_light.py --steps 150 --guided

writes ``mitsuba_occluded_light.png`` and prints the parameter and image errors.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

import voidgrad as vg
from voidgrad.integrations.mitsuba import MitsubaRenderer

TARGET = (0.8, 0.3)
START = (-1.6, -1.0)
NEAR_START = (0.5, 0.0)
LIGHT_HEIGHT, LIGHT_RADIUS = 3.0, 0.1
RESULT = "result: "  # marks the child's answer in its output


def occluded_light_scene(integrator: str = "direct", size: int = 64) -> dict[str, Any]:
    """Floor, occluding panel and a spherical light, seen on a ``size``² film; needs the
    Mitsuba variant set."""
    import mitsuba as mi

    transform = mi.ScalarTransform4f
    return {
        "type": "scene",
        "integrator": {"type": integrator},
        "sensor": {
            "type": "perspective",
            "fov": 90,
            "to_world": transform().look_at(origin=[0, 0, 1.5], target=[0, 0, 0], up=[0, 1, 0]),
            "film": {"type": "hdrfilm", "width": size, "height": size, "rfilter": {"type": "box"}},
        },
        "floor": {"type": "rectangle", "to_world": transform().scale([10, 10, 1])},
        "panel": {
            "type": "rectangle",
            "to_world": transform().translate([-5, 0, 2]).scale([5, 10, 1]),
        },
        "light": {
            "type": "sphere",
            "center": [0, 0, LIGHT_HEIGHT],
            "radius": LIGHT_RADIUS,
            "emitter": {"type": "area", "radiance": {"type": "rgb", "value": [200] * 3}},
        },
    }


def place_light(params: Any, theta: torch.Tensor) -> None:
    """θ = (x, y) of the light's centre."""
    import mitsuba as mi

    x, y = (float(v) for v in theta)
    at = mi.ScalarTransform4f().translate([x, y, LIGHT_HEIGHT]).scale(LIGHT_RADIUS)
    params["light.to_world"] = at


def place_light_ad(params: Any, theta: Any) -> None:
    """θ = (x, y) of the light's centre, for Mitsuba's AD: θ is a ``mi.Float`` of 2 entries."""
    import drjit as dr
    import mitsuba as mi

    x, y = (dr.gather(mi.Float, theta, i) for i in range(2))
    centre = mi.Point3f(x, y, LIGHT_HEIGHT)
    params["light.to_world"] = mi.Transform4f().translate(centre).scale(LIGHT_RADIUS)


def mean_square_error(image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The image loss every method descends."""
    return ((image - target) ** 2).mean()


def smoothing_descent(
    steps: int, workers: int, spp: int, guide: Any = None, size: int = 64, seed: int = 0
) -> dict[str, Any]:
    """Adam on the smoothed image loss from START; renders in worker processes (``workers`` >
    1). With a ``guide``, guided smoothing with that guide (α adapted to how much of the
    measured differences the guide explains) and the same σ anneal and common seeds."""
    scene = functools.partial(occluded_light_scene, size=size)
    renderer = MitsubaRenderer(scene, place_light, spp=spp)
    target = MitsubaRenderer(scene, place_light, spp=64)(torch.tensor(TARGET))
    schedule = vg.LinearAnneal(0.02, total_steps=steps)
    estimator: vg.GaussianSmoothing | vg.GuidedSmoothing
    if guide is None:
        estimator = vg.GaussianSmoothing(
            sigma=1.0, samples=8, schedule=schedule, common_random_numbers=True, seed=seed
        )
    else:
        estimator = vg.GuidedSmoothing(
            sigma=1.0,
            samples=8,
            guide=guide,
            adapt=True,
            schedule=schedule,
            common_random_numbers=True,
            seed=seed,
        )
    theta = torch.tensor(START, requires_grad=True)
    optimizer = torch.optim.Adam([theta], lr=0.05)
    path = [theta.tolist()]
    started = time.perf_counter()
    parallel = {"backend": "process", "workers": workers} if workers > 1 else {}
    with vg.Evaluator(renderer, seed=seed, **parallel) as evaluator:
        render = vg.blackbox(renderer, estimator, evaluator)
        for _ in range(steps):
            loss = mean_square_error(render(theta), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            estimator.step()
            path.append(theta.tolist())
        renders = evaluator.stats.evals
    return {"path": path, "renders": renders, "seconds": time.perf_counter() - started}


def guided_descent(steps: int, workers: int, spp: int) -> dict[str, Any]:
    """:func:`smoothing_descent` guided by Mitsuba's AD gradient; an ``error`` if it is not
    available (the AD variant runs in a child process, which a missing LLVM aborts)."""
    target = MitsubaRenderer(occluded_light_scene, place_light, spp=64)(torch.tensor(TARGET))
    renderer = MitsubaRenderer(occluded_light_scene, place_light, spp=spp)
    loss = functools.partial(mean_square_error, target=target)
    try:
        guide = renderer.ad_guide(loss, apply=place_light_ad)
    except (RuntimeError, ValueError) as error:
        return {"error": str(error)}
    with guide:
        run = smoothing_descent(steps, workers, spp, guide=guide)
        run["guide_calls"] = guide.calls
    return run


def mitsuba_gradient_descent(
    start: tuple[float, float], steps: int, spp: int, integrator: str
) -> dict[str, Any]:
    """Mitsuba's differentiable rendering with Adam (runs inside the child process)."""
    import drjit as dr
    import mitsuba as mi

    mi.set_variant("llvm_ad_rgb")
    mi.set_log_level(mi.LogLevel.Error)
    scene = mi.load_dict(occluded_light_scene(integrator))
    params = mi.traverse(scene)

    def place(xy: Any) -> None:
        centre = mi.Point3f(xy.x, xy.y, LIGHT_HEIGHT)
        params["light.to_world"] = mi.Transform4f().translate(centre).scale(LIGHT_RADIUS)
        params.update()

    place(mi.Point2f(*TARGET))
    target = mi.render(scene, params, spp=64, seed=1)
    optimizer = mi.ad.Adam(lr=0.05)
    optimizer["xy"] = mi.Point2f(*start)
    path, gradients = [list(start)], []
    for step in range(steps):
        place(optimizer["xy"])
        image = mi.render(scene, params, spp=spp, seed=step)
        dr.backward(dr.mean(dr.square(image - target), axis=None))
        gradients.append(
            [float(dr.grad(optimizer["xy"]).x[0]), float(dr.grad(optimizer["xy"]).y[0])]
        )
        optimizer.step()
        path.append([float(optimizer["xy"].x[0]), float(optimizer["xy"].y[0])])
    return {"path": path, "gradients": gradients}


def run_mitsuba_gradient_descent(
    start: tuple[float, float], steps: int, spp: int, integrator: str
) -> dict[str, Any]:
    """Run :func:`mitsuba_gradient_descent` in a child; report failure instead of dying."""
    task = json.dumps([list(start), steps, spp, integrator])
    command = [sys.executable, __file__, "--child", task]
    child = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if child.returncode != 0:
        return {"error": f"exit status {child.returncode}: {child.stderr.strip()[-500:]}"}
    result = child.stdout.rpartition(RESULT)[2]
    return json.loads(result) if result else {"error": "the child printed no result"}


def errors(
    theta: list[float], target_image: torch.Tensor, judge: MitsubaRenderer
) -> dict[str, float]:
    image = judge(torch.tensor(theta))
    distance = float(torch.tensor(theta).sub(torch.tensor(TARGET)).norm())
    return {"parameter_error": distance, "image_mse": float((image - target_image).pow(2).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--spp", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--ad-integrator",
        default="direct",
        help="Mitsuba integrator for its gradient descent: direct (shading derivatives only) "
        "or direct_projective (visibility too; minutes per step on 2 cores)",
    )
    parser.add_argument(
        "--guided",
        action="store_true",
        help="also run guided smoothing with Mitsuba's AD gradient as the guide (llvm_ad_rgb)",
    )
    parser.add_argument("--out", type=Path, default=Path("mitsuba_occluded_light.png"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        start, steps, spp, integrator = json.loads(arguments.child)
        print(RESULT + json.dumps(mitsuba_gradient_descent(tuple(start), steps, spp, integrator)))
        return

    ours = smoothing_descent(arguments.steps, arguments.workers, arguments.spp)
    guided = (
        guided_descent(arguments.steps, arguments.workers, arguments.spp)
        if arguments.guided
        else None
    )
    theirs = {
        name: run_mitsuba_gradient_descent(
            start, arguments.steps, arguments.spp, arguments.ad_integrator
        )
        for name, start in (("plateau start", START), ("near start", NEAR_START))
    }
    judge = MitsubaRenderer(occluded_light_scene, place_light, spp=64, seed=2)
    target_image = judge(torch.tensor(TARGET))
    rows = {"start": errors(list(START), target_image, judge)}
    rows["smoothing (ours), plateau start"] = errors(ours["path"][-1], target_image, judge)
    if guided is not None and "error" in guided:
        print(f"guided smoothing: not available ({guided['error']})")
    elif guided is not None:
        rows["guided, AD guide (ours), plateau start"] = errors(
            guided["path"][-1], target_image, judge
        )
    for name, run in theirs.items():
        if "error" in run:
            print(f"Mitsuba gradient descent, {name}: not available ({run['error']})")
        else:
            rows[f"Mitsuba AD, {name}"] = errors(run["path"][-1], target_image, judge)
    for name, row in rows.items():
        error, mse = row["parameter_error"], row["image_mse"]
        print(f"{name:40s} |θ − θ*| = {error:.3f}   image MSE = {mse:.2e}")
    print(f"ours: {ours['renders']} renders in {ours['seconds']:.0f} s")
    if guided is not None and "path" in guided:
        print(
            f"guided: {guided['renders']} renders and {guided['guide_calls']} AD guide calls "
            f"(a primal and an adjoint render each) in {guided['seconds']:.0f} s"
        )
    save_picture(arguments.out, judge, ours, theirs, guided)


def save_picture(
    path: Path,
    judge: MitsubaRenderer,
    ours: dict[str, Any],
    theirs: dict[str, Any],
    guided: dict[str, Any] | None = None,
) -> None:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print("matplotlib is not installed: pip install voidgrad[plot] gives the picture")
        return
    panels = {"target": TARGET, "start": START, "ours (smoothing)": ours["path"][-1]}
    runs = {"ours": ours}
    if guided is not None and "path" in guided:
        panels["ours (guided by AD)"] = guided["path"][-1]
        runs["ours, guided"] = guided
    plateau = theirs["plateau start"]
    if "path" in plateau:
        panels["Mitsuba AD from the start"] = plateau["path"][-1]
    figure = Figure(figsize=(3 * (len(panels) + 1), 3.2), layout="constrained")
    axes = figure.subplots(1, len(panels) + 1)
    for axis, (title, theta) in zip(axes, panels.items(), strict=False):
        axis.imshow(judge(torch.tensor(theta)).clamp(0, 1).pow(1 / 2.2).numpy())
        axis.set_title(title, fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    curves = axes[-1]
    for name, run in (*runs.items(), *((f"AD, {k}", v) for k, v in theirs.items() if "path" in v)):
        distance = torch.tensor(run["path"]).sub(torch.tensor(TARGET)).norm(dim=1)
        curves.semilogy(distance.numpy(), label=name)
    curves.set_xlabel("step")
    curves.set_ylabel("|θ − θ*|")
    curves.legend(fontsize="small")
    figure.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
