"""The gallery: every example, run with small settings, and the picture it draws.

    .venv/bin/python examples/gallery.py --out build/gallery          # all of them
    .venv/bin/python examples/gallery.py --out build/gallery --only rl_cartpole

Each entry of ``GALLERY`` runs its example in a subprocess with settings small
enough for CI, writing ``<out>/<name>.png``; ``<out>/gallery.json`` records
what ran, how long it took and whether it worked. ``make docs`` runs this
first, and the docs build (``docs/hooks.py``) shows the pictures on the
Gallery page. Examples that need Mitsuba or Blender run with
``.venv-integrations/bin/python`` (``make test-integrations`` builds it);
without it they are skipped, unless ``--require-all`` makes that an error. A
failing example fails the run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent
INTEGRATIONS_PYTHON = EXAMPLES.parent / ".venv-integrations" / "bin" / "python"


@dataclass(frozen=True)
class Entry:
    """One picture: ``script`` run with ``arguments`` (plus ``--out``)."""

    name: str
    title: str
    script: str
    arguments: tuple[str, ...]
    caption: str
    integrations: bool = False


GALLERY: tuple[Entry, ...] = (
    Entry(
        "plateau",
        "Inverse rendering through a plateau",
        "fit_problem.py",
        ("--problem", "plateau", "--method", "smoothing", "--budget", "1000"),
        "A square found from its hard-edged rendering: the image loss is flat almost "
        "everywhere, so autograd and finite differences see a zero gradient; Gaussian "
        "smoothing (PRDPT) sees the slope of the smoothed loss.",
    ),
    Entry(
        "caustic",
        "Caustic design",
        "fit_problem.py",
        (
            "--problem",
            "caustic:photons=128:resolution=32",
            "--method",
            "smoothing",
            "--budget",
            "30000",
            "--option",
            "importance=false",
            "--option",
            "lr_decay=0.01",
        ),
        "A 32 × 32 B-spline glass heightfield (1 024 parameters) refracts 128² photons onto "
        "a 32 × 32 image (a quarter of the default's photons, for about a quarter of the "
        "cost); each photon is splatted into one pixel, so the image has no gradient. Plain "
        "Gaussian smoothing, its learning rate decaying to 1 %, takes the loss from 0.093 to "
        "0.003 in 30 000 evaluations: the bright cusps and the dark discs take shape, their "
        "thin rims are still faint.",
    ),
    Entry(
        "digits_mlp",
        "An MLP's weights drawing a digit",
        "fit_problem.py",
        (
            "--problem",
            "digits_mlp",
            "--method",
            "spsa",
            "--budget",
            "16000",
            "--option",
            "lr_decay=0.1",
        ),
        "The 35 152 weights of an MLP whose 8-bit quantized output must reproduce a digit: "
        "a piecewise-constant loss in tens of thousands of dimensions. SPSA, its learning "
        "rate decaying to 10 %, takes the loss from 0.140 to 0.003 in 16 000 evaluations.",
    ),
    Entry(
        "splines",
        "Spline drawing",
        "fit_problem.py",
        ("--problem", "splines", "--method", "smoothing", "--budget", "1000"),
        "Support points of curves drawn by a hard rasterizer must match a target drawing.",
    ),
    Entry(
        "dither_ssim",
        "Dithering by expected SSIM",
        "dither_ssim.py",
        ("--steps", "300"),
        "4 096 categorical choices, one per pixel, whose expected SSIM to the target is "
        "maximized with the score-function estimator (leave-one-out baseline): SSIM is a "
        "black box to it.",
    ),
    Entry(
        "discrete_vae",
        "A discrete VAE",
        "discrete_vae.py",
        ("--steps", "1500"),
        "200 Bernoulli latents trained with DisARM and with the plain score function "
        "through vg.expectation (the ELBO's cost is a black box in the latents); digits "
        "and their reconstructions.",
    ),
    Entry(
        "supershape_matching",
        "Distribution matching",
        "supershape_matching.py",
        ("--steps", "80"),
        "vg.adversarial: a distribution of supershapes is fitted to target images through "
        "a non-differentiable renderer with the score-function estimator and a "
        "discriminator (a short run; the full one matches the hidden distribution's mean "
        "and spread within 7 %).",
    ),
    Entry(
        "metappearance_textures",
        "Metappearance: textures in a few steps",
        "metappearance_textures.py",
        ("--meta-steps", "60"),
        "vg.meta: an initialisation and per-parameter step sizes meta-learned over a family "
        "of textures, against a random initialisation with the same 5 steps.",
    ),
    Entry(
        "sparse_texture",
        "A 3.1 M-parameter texture through an 8-bit renderer",
        "sparse_texture.py",
        ("--size", "1024", "--evaluations", "100"),
        "A 1 024 × 1 024 RGB texture (3 145 728 parameters) recovered through a renderer that "
        "quantizes every texel to 8 bits, so autograd sees a zero gradient. vg.blackbox with "
        "Gaussian smoothing and the renderer's sparsity pattern (pixel k depends on texel k "
        "alone) gives every texel its own finite difference from one antithetic pair of "
        "renders; Adam takes the loss from 0.0461 to 1.0e-4 (0.22 % of the start, past 1 % "
        "after 68) in 100 evaluations.",
    ),
    Entry(
        "rl_cartpole",
        "Policy gradients on CartPole",
        "rl_cartpole.py",
        ("--steps", "12000"),
        "vg.rl: RELAX against the actor-critic; returns and the variance of a one-episode "
        "gradient estimate along the run.",
    ),
    Entry(
        "mitsuba_occluded_light",
        "Mitsuba 3: a light behind an occluder",
        "mitsuba_occluded_light.py",
        ("--steps", "40"),
        "The image starts black, so Mitsuba's own gradient is exactly zero; smoothing with "
        "common random numbers moves the light into view.",
        integrations=True,
    ),
    Entry(
        "blender_match",
        "Blender: matching a render",
        "blender_match.py",
        ("--steps", "20"),
        "A ball's position and size found from a Cycles render through worker processes.",
        integrations=True,
    ),
    Entry(
        "blender_adversarial",
        "Blender: distribution matching",
        "blender_adversarial.py",
        ("--steps", "20", "--samples", "16"),
        "vg.adversarial with Blender Workbench renders in two worker processes.",
        integrations=True,
    ),
)


@dataclass
class Outcome:
    name: str
    status: str  # "ok", "failed" or "skipped"
    seconds: float
    command: list[str]
    detail: str = ""


def run(entry: Entry, out: Path) -> Outcome:
    """Run one entry in ``out`` (where its picture and any other files land)."""
    python = str(INTEGRATIONS_PYTHON) if entry.integrations else sys.executable
    script = EXAMPLES / entry.script
    command = [python, str(script), *entry.arguments, "--out", f"{entry.name}.png"]
    shown = ["python", f"examples/{entry.script}", *entry.arguments]
    if entry.integrations and not INTEGRATIONS_PYTHON.exists():
        return Outcome(entry.name, "skipped", 0.0, shown, "no .venv-integrations")
    started = time.perf_counter()
    done = subprocess.run(command, cwd=out, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0 or not (out / f"{entry.name}.png").is_file():
        tail = (done.stdout + done.stderr)[-3000:]
        return Outcome(entry.name, "failed", seconds, shown, tail)
    return Outcome(entry.name, "ok", seconds, shown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("build/gallery"))
    parser.add_argument("--only", nargs="+", choices=[e.name for e in GALLERY])
    parser.add_argument("--require-all", action="store_true", help="a skipped entry fails")
    arguments = parser.parse_args()
    out = arguments.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    chosen = [e for e in GALLERY if not arguments.only or e.name in arguments.only]
    outcomes = []
    for entry in chosen:
        outcome = run(entry, out)
        outcomes.append(outcome)
        print(f"{entry.name:26s} {outcome.status:8s} {outcome.seconds:6.1f} s", flush=True)
        if outcome.status == "failed":
            print(outcome.detail, file=sys.stderr)
    record = out / "gallery.json"  # entries not run this time keep their last outcome
    kept = json.loads(record.read_text()) if record.is_file() else []
    merged = {o["name"]: o for o in kept} | {o.name: asdict(o) for o in outcomes}
    record.write_text(json.dumps([merged[e.name] for e in GALLERY if e.name in merged], indent=2))
    bad = [o.name for o in outcomes if o.status == "failed"]
    if arguments.require_all:
        bad += [o.name for o in outcomes if o.status == "skipped"]
    if bad:
        sys.exit(f"gallery entries that did not produce their picture: {', '.join(bad)}")


if __name__ == "__main__":
    main()
