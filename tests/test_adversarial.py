"""vg.adversarial: distribution matching through a non-differentiable renderer."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.distributions import Distribution, Normal

import voidgrad as vg
from voidgrad.adversarial import AdversarialResult, ConvDiscriminator, adversarial
from voidgrad.adversarial_game import cosine_step_size
from voidgrad.problems.supershape import SupershapeMatching, log_normal_moments

SIZE = 16


def flat_images(z: torch.Tensor) -> torch.Tensor:
    """A constant image per sample, brightness z quantized to tenths (no useful gradient)."""
    level = (z.reshape(-1).clamp(0, 1) * 10).round() / 10
    return level[:, None, None, None].expand(-1, 1, SIZE, SIZE).contiguous()


def flat_targets(n: int = 64, level: float = 0.7) -> torch.Tensor:
    noise = 0.05 * torch.randn(n, generator=torch.Generator().manual_seed(0))
    return flat_images(level + noise)


class Brightness(nn.Module):
    def __init__(self, loc: float = 0.2) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.tensor([loc]))

    def forward(self) -> Distribution:
        return Normal(self.loc, 0.05)


def fit(steps: int = 60, **options: object) -> AdversarialResult:
    defaults: dict[str, object] = {"samples": 32, "seed": 0, "progress": False, "lr": 0.02}
    defaults.update(options)
    return adversarial(Brightness(), flat_images, flat_targets(), steps=steps, **defaults)  # type: ignore[arg-type]


def test_the_distribution_moves_toward_the_targets() -> None:
    result = fit(steps=150, discriminator_lr=1e-3)
    assert result.parameters["loc"].item() > 0.55
    assert len(result.history) == 150
    assert result.renders_evaluated == 150 * 32


def test_parameters_stay_put_until_the_discriminator_leads_by_max_gap() -> None:
    result = fit(steps=40, max_gap=0.3)
    updated = [record["distribution_updated"] for record in result.history]
    assert not updated[0] and any(updated)
    first = updated.index(True)
    history = result.parameter_history()["loc"]
    assert torch.equal(history[first - 1], torch.tensor([0.2]))
    assert not torch.equal(history[-1], torch.tensor([0.2]))
    record = result.history[first]
    assert record["d_real"] - record["d_fake"] >= 0.3


def test_without_max_gap_both_players_move_from_the_first_step() -> None:
    result = fit(steps=3, max_gap=None)
    assert all(r["distribution_updated"] and r["discriminator_updated"] for r in result.history)
    assert result.parameter_history()["loc"][0].item() != 0.2


def test_a_seed_replays_the_run_exactly() -> None:
    first, second = fit(steps=20), fit(steps=20)
    assert torch.equal(first.parameter_history()["loc"], second.parameter_history()["loc"])
    assert first.history[-1]["d_fake"] == second.history[-1]["d_fake"]


def test_a_callable_with_parameters_works_like_a_module() -> None:
    loc = torch.tensor([0.2], requires_grad=True)
    result = adversarial(
        lambda: Normal(loc, 0.05),
        flat_images,
        flat_targets(),
        parameters=[loc],
        steps=5,
        samples=32,
        seed=0,
        progress=False,
        max_gap=None,
    )
    assert result.parameters["param0"].item() == pytest.approx(loc.item())


def slow_pixel(z: torch.Tensor) -> torch.Tensor:
    """Renders one sample, sleeping longer for small z so workers finish out of order."""
    time.sleep(0.02 * float(1 - z.clamp(0, 1).item()))
    return flat_images(z)[0]


def test_renders_from_worker_processes_stay_paired_with_their_samples() -> None:
    renderer = vg.Evaluator(slow_pixel, backend="process", workers=2)
    try:
        result = adversarial(
            Brightness(0.5),
            renderer,
            flat_targets(),
            steps=2,
            samples=8,
            seed=1,
            progress=False,
            max_gap=None,
        )
    finally:
        renderer.close()
    assert torch.equal(result.renders, flat_images(result.samples))


def test_the_picture_is_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = fit(steps=2).save_figure(tmp_path / "match.png", flat_targets(), columns=4)
    assert path.stat().st_size > 1000


def test_the_step_size_decays_along_half_a_cosine() -> None:
    assert cosine_step_size(0.02, 0.1, 0, 100) == pytest.approx(0.02)
    assert cosine_step_size(0.02, 0.1, 50, 100) == pytest.approx(0.011)
    assert cosine_step_size(0.02, 0.1, 100, 100) == pytest.approx(0.002)


def test_the_default_discriminator_gives_one_logit_per_image() -> None:
    assert ConvDiscriminator(3)(torch.zeros(5, 3, 20, 24)).shape == (5,)
    with pytest.raises(ValueError, match="N, C, H, W"):
        ConvDiscriminator(1)(torch.zeros(1, 16, 16))
    with pytest.raises(ValueError, match="width"):
        ConvDiscriminator(1, width=0)


class OnlyLoss(vg.DistributionEstimator):
    """An estimator written before ask and tell: vg.expectation takes it, vg.adversarial not."""

    def loss(self, evaluate, dist, samples):  # type: ignore[no-untyped-def]
        return evaluate(dist.sample((samples,))).mean(0)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"targets": torch.zeros(64, SIZE, SIZE)}, ValueError, r"\[M, C, H, W\]"),
        ({"targets": torch.zeros(4, 1, SIZE, SIZE)}, ValueError, "at least samples"),
        ({"samples": 1}, ValueError, "samples"),
        ({"steps": 0}, ValueError, "steps"),
        ({"lr": -1.0}, ValueError, "lr"),
        ({"max_gap": 1.5}, ValueError, "max_gap"),
        ({"lr_decay": 0.0}, ValueError, "lr_decay"),
        ({"seed": -1}, ValueError, "seed"),
        ({"estimator": vg.GaussianSmoothing(0.1, 2)}, TypeError, "distribution estimator"),
        (
            {"render": lambda z: torch.zeros(len(z), 1, 8, 8)},
            ValueError,
            r"render must return images of shape \[N, 1, 16, 16\] like the targets",
        ),
        ({"estimator": vg.Pathwise()}, ValueError, "Pathwise differentiates f"),
        ({"estimator": OnlyLoss()}, TypeError, "OnlyLoss implements loss"),
        ({"distribution": nn.Identity()}, ValueError, "no parameters"),
        ({"distribution": lambda: Normal(0.0, 1.0)}, ValueError, "parameters="),
        ({"distribution": 3}, TypeError, "nn.Module or a callable"),
        (
            {"targets": torch.full((64, 1, SIZE, SIZE), float("nan"))},
            ValueError,
            "targets must be finite",
        ),
        ({"lr_decay": True}, ValueError, "lr_decay"),
        ({"max_gap": True}, ValueError, "max_gap"),
        ({"discriminator": 3}, TypeError, "discriminator must be a torch.nn.Module"),
    ],
)
def test_bad_input_is_rejected(change: dict[str, object], error: type, message: str) -> None:
    arguments: dict[str, object] = {
        "distribution": Brightness(),
        "render": flat_images,
        "targets": flat_targets(),
        "steps": 2,
        "samples": 8,
        "progress": False,
    }
    arguments.update(change)
    with pytest.raises(error, match=message):
        adversarial(**arguments)  # type: ignore[arg-type]


@pytest.mark.slow
def test_supershape_distribution_is_recovered_within_ten_percent() -> None:
    """Seed 000's task: mean and std of both shape parameters end within 10 % (~7 min)."""
    task = SupershapeMatching(seed=1000)
    targets = task.targets(1024)

    result = adversarial(task.learner(), task.render, targets, steps=800, seed=0, progress=False)
    loc, scale = result.parameters["loc"], result.parameters["log_scale"].exp()

    (mean, std), (hidden_mean, hidden_std) = (
        log_normal_moments(loc, scale),
        log_normal_moments(task.hidden_loc, task.hidden_scale),
    )
    assert torch.all((mean - hidden_mean).abs() <= 0.1 * hidden_mean), (mean, hidden_mean)
    assert torch.all((std - hidden_std).abs() <= 0.1 * hidden_std), (std, hidden_std)
