"""Kill -9 and resume: does a run killed at random moments end where an uninterrupted one does?

For each job (``vg.minimize`` with a gradient method and with CMA-ES,
``vg.rl.train`` on CartPole, and ``MetaLearner.meta_fit`` on textures), the
script first runs it once without a checkpoint (the reference), then for each
trial starts it in a subprocess with a checkpoint, kills it with SIGKILL at a
random moment of its run ``--kills`` times (each restart resumes from the
checkpoint), lets the last restart finish, and compares the result with the
reference: bit-identical ``x``, ``fun`` and per-step losses for ``minimize``;
bit-identical policy parameters and per-update mean returns for ``rl.train``;
bit-identical θ*, α, task generator state and meta-losses for ``meta_fit``. A
kill that lands after the process has already finished is not counted as a
kill.

    .venv/bin/python benchmarks/kill_resume.py                 # 3 trials x 3 kills per job
    .venv/bin/python benchmarks/kill_resume.py --trials 5 --kills 4 --jobs smoothing cma

``vg.adversarial`` (flat grey images, job ``adversarial``) must match in
its parameters after every step, its per-step scores, the discriminator's
weights and the last renders, bit for bit.

The objective sleeps ``--delay`` seconds per evaluation (meta-training: per
task drawn) so that the kills land inside the run, not in its start-up.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

JOBS = ("smoothing", "cma", "rl", "meta", "adversarial")
TARGET = (1.0, -2.0, 0.5, 3.0)


def rosenbrock_ish(x: torch.Tensor) -> float:
    """A shifted quadratic plus a Rosenbrock term; sleeps DELAY seconds (an expensive fn)."""
    time.sleep(float(os.environ.get("KILL_RESUME_DELAY", "0")))
    shifted = x - torch.tensor(TARGET, dtype=x.dtype)
    return float((shifted**2).sum() + 0.5 * ((x[1:] - x[:-1] ** 2) ** 2).sum())


def slow_textures(generator: torch.Generator) -> Any:
    """A texture task (``voidgrad.problems.TextureFamily``); sleeps DELAY seconds per draw."""
    from voidgrad.problems import TextureFamily

    time.sleep(float(os.environ.get("KILL_RESUME_DELAY", "0")))
    return TextureFamily(batch=32)(generator)


def grey_images(z: torch.Tensor) -> torch.Tensor:
    """Flat 16 x 16 images of brightness z, quantized (vg.adversarial); sleeps DELAY per batch."""
    time.sleep(float(os.environ.get("KILL_RESUME_DELAY", "0")))
    level = (z.reshape(-1).clamp(0, 1) * 10).round() / 10
    return level[:, None, None, None].expand(-1, 1, 16, 16).contiguous()


def run_job(job: str, checkpoint: str | None) -> dict[str, Any]:
    """Run ``job`` (resuming from ``checkpoint`` if it exists); what must match, as tensors."""
    import voidgrad as vg

    if job == "adversarial":
        loc = torch.tensor([0.2], requires_grad=True)
        noise = 0.05 * torch.randn(256, generator=torch.Generator().manual_seed(0))
        matched = vg.adversarial(
            lambda: torch.distributions.Normal(loc, 0.05),
            grey_images,
            grey_images(0.7 + noise),
            parameters=[loc],
            steps=300,
            samples=16,
            seed=5,
            checkpoint=checkpoint,
            checkpoint_every=1,
            progress=False,
        )
        history = matched.history
        return {
            "loc": matched.parameter_history()["param0"],
            "scores": torch.tensor([[r["d_real"], r["d_fake"], r["cost"]] for r in history]),
            "discriminator": list(matched.discriminator.state_dict().values()),
            "renders": matched.renders,
        }
    if job == "meta":
        from voidgrad.problems import FourierMLP

        model = FourierMLP(2, 3, width=16, depth=1, frequencies=4, seed=0)
        learner = vg.meta.MetaLearner(model, inner_steps=2, inner_lr=0.05, meta_lr=1e-2, seed=7)
        history = learner.meta_fit(
            slow_textures, steps=60, checkpoint=checkpoint, checkpoint_every=1, progress=False
        )
        return {
            "init": [learner.init[name].detach().clone() for name in sorted(learner.init)],
            "lr": [learner.lr[name].detach().clone() for name in sorted(learner.lr)],
            "generator": learner.task_generator.get_state(),
            "history": torch.tensor([record["meta_loss"] for record in history]),
        }
    if job == "rl":
        trained = vg.rl.train(
            "CartPole-v1",
            "actor_critic",
            env_steps=4_000,
            episodes_per_update=4,
            width=16,
            seed=7,
            checkpoint=checkpoint,
            checkpoint_every=1,
            progress=False,
        )
        return {
            "parameters": [p.detach().clone() for p in trained.policy.parameters()],
            "history": torch.tensor(trained.history.column("mean_return")),
        }
    options: dict[str, Any] = {"sigma": 0.1, "samples": 8, "lr": 0.02} if job == "smoothing" else {}
    result = vg.minimize(
        rosenbrock_ish,
        torch.zeros(len(TARGET), dtype=torch.float64),
        method=job,
        budget=1_200,
        seed=5,
        checkpoint=checkpoint,
        progress=False,
        **options,
    )
    return {
        "x": result.x,
        "x_last": result.x_last,
        "fun": torch.tensor(result.fun),
        "history": torch.tensor(result.history.column("loss")),
        "nevals": torch.tensor(result.nevals),
    }


def worker(job: str, checkpoint: str, out: str) -> None:
    """The subprocess: say it has started (imports done), run, save the outcome."""
    import voidgrad  # noqa: F401 (imported before "started", so kills land in the run)

    print("started", flush=True)
    outcome = run_job(job, None if checkpoint == "-" else checkpoint)
    torch.save(outcome, out)


def start(job: str, checkpoint: str, out: Path, delay: float) -> subprocess.Popen[str]:
    environment = {**os.environ, "KILL_RESUME_DELAY": str(delay), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, __file__, "--worker", job, checkpoint, str(out)],
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if line != "started\n":
        process.wait(timeout=60)
        raise RuntimeError(f"{job} worker failed to start (exit {process.returncode})")
    return process


def finish(process: subprocess.Popen[str], job: str) -> float:
    """Wait for a worker; its run's seconds. Raise if it failed."""
    started = time.perf_counter()
    if process.wait(timeout=600) != 0:
        raise RuntimeError(f"{job} worker exited with {process.returncode}")
    return time.perf_counter() - started


def identical(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def same(x: Any, y: Any) -> bool:
        if isinstance(x, list):
            return len(x) == len(y) and all(map(same, x, y))
        return bool(x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y))

    return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)


def trial(
    job: str, folder: Path, kills: int, run_seconds: float, delay: float, rng: random.Random
) -> tuple[int, dict[str, Any]]:
    """Kill a checkpointed run ``kills`` times at random moments, then let it finish."""
    checkpoint = str(folder / f"{job}.ckpt")
    out = folder / f"{job}.pt"
    landed = 0
    for _ in range(kills):
        process = start(job, checkpoint, out, delay)
        time.sleep(rng.uniform(0.0, run_seconds / kills))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            landed += 1
        process.wait(timeout=60)
    finish(start(job, checkpoint, out, delay), job)
    return landed, torch.load(out, weights_only=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", nargs="+", choices=JOBS, default=list(JOBS))
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs per trial")
    parser.add_argument("--delay", type=float, default=0.002, help="seconds per evaluation")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows = []
    print(f"{'job':10s} {'trials':>6s} {'kills':>6s} {'identical':>9s} {'errors':>6s}")
    for job in args.jobs:
        with tempfile.TemporaryDirectory() as directory:
            folder = Path(directory)
            reference = start(job, "-", folder / "reference.pt", args.delay)
            run_seconds = finish(reference, job)
            expected = torch.load(folder / "reference.pt", weights_only=True)
            kills = same = errors = 0
            for number in range(args.trials):
                trial_folder = folder / f"trial{number}"
                trial_folder.mkdir()
                try:
                    landed, outcome = trial(
                        job, trial_folder, args.kills, run_seconds, args.delay, rng
                    )
                except RuntimeError as error:
                    print(f"  {job} trial {number}: {error}")
                    errors += 1
                    continue
                kills += landed
                same += identical(outcome, expected)
        row = {
            "job": job,
            "trials": args.trials,
            "kills": kills,
            "identical": same,
            "errors": errors,
            "run_seconds": run_seconds,
        }
        rows.append(row)
        print(f"{job:10s} {args.trials:6d} {kills:6d} {same:9d} {errors:6d}", flush=True)
    from common import write_results

    write_results(
        args.out,
        "kill_resume",
        "runs killed with SIGKILL at random moments and resumed, against uninterrupted ones",
        rows,
        trials=args.trials,
        kills=args.kills,
        delay=args.delay,
        seed=args.seed,
    )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        worker(*sys.argv[2:])
    else:
        main()
