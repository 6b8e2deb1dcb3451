"""vg.adversarial(checkpoint=...): resumed runs end bit for bit where whole ones do."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.distributions import Normal

import voidgrad as vg
from tests.killing import kill_after, start_script
from tests.test_adversarial import SIZE, Brightness, flat_images, flat_targets
from voidgrad.adversarial import AdversarialResult, ConvDiscriminator, adversarial
from voidgrad.run.checkpoint import CheckpointError


def narrow() -> nn.Module:
    torch.manual_seed(0)
    return ConvDiscriminator(1, width=4)


def run(path: Path | None, steps: int = 12, **options: Any) -> AdversarialResult:
    """A short run; the same arguments on a resume build the same start."""
    arguments: dict[str, Any] = {
        "distribution": Brightness(),
        "render": flat_images,
        "targets": flat_targets(),
        "steps": steps,
        "samples": 8,
        "seed": 0,
        "max_gap": 0.2,
        "discriminator_lr": 1e-2,
        "discriminator": narrow(),
        "progress": False,
        "checkpoint": path,
        "checkpoint_every": 1,
    }
    arguments.update(options)
    return adversarial(**arguments)


def assert_same(a: AdversarialResult, b: AdversarialResult) -> None:
    assert torch.equal(a.parameters["loc"], b.parameters["loc"])
    assert torch.equal(a.parameter_history()["loc"], b.parameter_history()["loc"])
    for key in ("d_real", "d_fake", "cost", "discriminator_updated", "distribution_updated"):
        assert [r[key] for r in a.history] == [r[key] for r in b.history], key
    weights = b.discriminator.state_dict()
    assert all(
        torch.equal(value, weights[name]) for name, value in a.discriminator.state_dict().items()
    )
    assert torch.equal(a.samples, b.samples) and torch.equal(a.renders, b.renders)
    assert a.renders_evaluated == b.renders_evaluated


def test_a_run_stopped_and_resumed_ends_where_a_whole_run_does(tmp_path: Path) -> None:
    path = tmp_path / "adv.ckpt"
    whole = run(None)
    stopped = run(path, callback=lambda record: record.step == 4)
    assert len(stopped.history) == 5
    saved = torch.load(path, weights_only=True)  # tensors, numbers and strings only
    assert saved["kind"] == "vg.adversarial" and saved["loop"]["step"] == 5
    assert set(saved["algorithm"]) >= {"discriminator", "discriminator_optimizer", "sampling"}
    resumed = run(path)
    assert_same(resumed, whole)
    started = [r["distribution_updated"] for r in whole.history]
    assert started.index(True) == 5  # the distribution started after the resume


RENDERED: list[int] = []


def counted_images(z: torch.Tensor) -> torch.Tensor:
    RENDERED.append(len(z))
    return flat_images(z)


def test_a_finished_run_returns_at_once_and_continues_with_more_steps(tmp_path: Path) -> None:
    path = tmp_path / "adv.ckpt"
    first = run(path, steps=6, render=counted_images)
    RENDERED.clear()
    again = run(path, steps=6, render=counted_images)
    assert RENDERED == []  # nothing rendered: the saved result
    assert_same(again, first)
    longer = run(path, steps=9, render=counted_images)
    assert RENDERED == [8, 8, 8] and len(longer.history) == 9
    assert longer.renders_evaluated == 9 * 8
    assert [r["cost"] for r in longer.history[:6]] == [r["cost"] for r in first.history]


@pytest.mark.parametrize(
    "options",
    [{"baseline": "moving_average"}, {"baseline": "leave_one_out", "seed": 4}],
    ids=["a moving-average baseline", "a seeded estimator"],
)
def test_an_estimator_s_own_state_is_saved_and_restored(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    path = tmp_path / "adv.ckpt"
    whole = run(None, estimator=vg.ScoreFunction(**options), max_gap=None)
    stop_early = {"callback": lambda record: record.step == 5}
    run(path, estimator=vg.ScoreFunction(**options), max_gap=None, **stop_early)
    assert_same(run(path, estimator=vg.ScoreFunction(**options), max_gap=None), whole)


def other_targets() -> torch.Tensor:
    targets = flat_targets()
    targets[3] = 0.0
    return targets


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"targets": other_targets()}, "targets="),
        ({"render": lambda z: flat_images(z) * 1.0}, "render has code fingerprint"),
        ({"distribution": Brightness(loc=0.3)}, "start="),
        ({"samples": 16}, "samples=8 there, 16 here"),
        ({"lr": 0.05}, "lr=0.02 there, 0.05 here"),
        ({"lr_decay": 0.5}, "lr_decay=0.1 there, 0.5 here"),
        ({"discriminator_lr": 1e-3}, "discriminator_lr=0.01 there, 0.001 here"),
        ({"max_gap": None}, "max_gap=0.2 there, None here"),
        ({"seed": 1}, "seed=0 there, 1 here"),
        ({"discriminator": ConvDiscriminator(1, width=8)}, "discriminator_shapes="),
        ({"discriminator": None}, "discriminator_shapes="),  # the default, width 32
        ({"estimator": vg.ScoreFunction(baseline="moving_average")}, "estimator="),
    ],
)
def test_a_checkpoint_of_another_run_is_refused_naming_the_field(
    tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    path = tmp_path / "adv.ckpt"
    run(path, steps=2)
    with pytest.raises(CheckpointError, match=f"adv.ckpt was written by another run: ({field})"):
        run(path, steps=2, **change)


def test_a_distribution_callable_is_resumed_too(tmp_path: Path) -> None:
    def fitted(path: Path | None, **options: Any) -> AdversarialResult:
        loc = torch.tensor([0.2], requires_grad=True)
        return run(path, distribution=lambda: Normal(loc, 0.05), parameters=[loc], **options)

    path = tmp_path / "adv.ckpt"
    whole = fitted(None)
    fitted(path, callback=lambda record: record.step == 7)
    assert torch.equal(fitted(path).parameters["param0"], whole.parameters["param0"])


def test_checkpoint_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="checkpoint_every must be an int >= 1; got 0"):
        run(None, checkpoint_every=0)
    with pytest.raises(TypeError, match="checkpoint must be a path"):
        run(None, checkpoint=3)


KILLED = textwrap.dedent(
    f"""
    import os, sys, time, torch, voidgrad as vg
    from torch import nn
    class Brightness(nn.Module):
        def __init__(self):
            super().__init__()
            self.loc = nn.Parameter(torch.tensor([0.2]))
        def forward(self):
            return torch.distributions.Normal(self.loc, 0.05)
    def render(z):
        time.sleep(float(os.environ.get("DELAY", "0")))  # slow only while it is to be killed
        level = (z.reshape(-1).clamp(0, 1) * 10).round() / 10
        return level[:, None, None, None].expand(-1, 1, {SIZE}, {SIZE}).contiguous()
    noise = 0.05 * torch.randn(64, generator=torch.Generator().manual_seed(0))
    targets = render(0.7 + noise)
    checkpoint = sys.argv[1] if sys.argv[1] != "-" else None
    r = vg.adversarial(Brightness(), render, targets, steps=80, samples=8, seed=3,
                       max_gap=0.3, progress=False, checkpoint=checkpoint, checkpoint_every=1)
    torch.save({{"parameters": r.parameter_history()["loc"],
                "scores": torch.tensor([[h["d_real"], h["d_fake"], h["cost"]] for h in r.history]),
                "discriminator": r.discriminator.state_dict(), "renders": r.renders,
                "evaluated": r.renders_evaluated}}, sys.argv[2])
    """
)


def run_killed_script(checkpoint: str, out: Path, delay: float = 0.0) -> subprocess.Popen[bytes]:
    return start_script(KILLED, checkpoint, out, delay)


@pytest.mark.slow  # a subprocess importing torch; the in-process resume tests run by default
def test_a_run_killed_with_sigkill_resumes_bit_for_bit(tmp_path: Path) -> None:
    path = tmp_path / "killed.ckpt"
    process = run_killed_script(str(path), tmp_path / "never.pt", delay=0.01)
    killed_at = kill_after(process, path, 20)["step"]
    assert 20 <= killed_at < 80  # it really was interrupted mid-run
    resuming = run_killed_script(str(path), tmp_path / "resumed.pt")
    whole_run = run_killed_script("-", tmp_path / "whole.pt")
    assert resuming.wait(timeout=300) == 0 and whole_run.wait(timeout=300) == 0
    resumed, whole = (
        torch.load(tmp_path / name, weights_only=True) for name in ("resumed.pt", "whole.pt")
    )
    assert resumed.keys() == whole.keys()
    for key in ("parameters", "scores", "renders"):
        assert torch.equal(resumed[key], whole[key]), key
    for name, value in whole["discriminator"].items():
        assert torch.equal(resumed["discriminator"][name], value), name
    assert resumed["evaluated"] == whole["evaluated"] == 80 * 8
    assert len(whole["scores"]) == 80 and whole["parameters"][-1].item() != 0.2


def test_the_checkpoint_identity_holds_the_game_settings_by_their_names(tmp_path: Path) -> None:
    path = tmp_path / "run.pt"
    run(path, steps=1)
    identity = torch.load(path, weights_only=True)["run"]
    settings = ("samples", "lr", "lr_decay", "discriminator_lr", "max_gap", "seed")
    assert {key: identity[key] for key in settings} == {
        "samples": 8,
        "lr": 0.02,
        "lr_decay": 0.1,
        "discriminator_lr": 1e-2,
        "max_gap": 0.2,
        "seed": 0,
    }
    parts = ("distribution", "start", "render", "targets", "discriminator", "discriminator_shapes")
    assert sorted(identity) == sorted([*settings, *parts, "estimator", "estimator_code"])
