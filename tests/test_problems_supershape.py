"""The supershape renderer and the distribution-matching task."""

from __future__ import annotations

import math

import pytest
import torch

from voidgrad.problems.supershape import (
    LearnedLogNormal,
    SupershapeMatching,
    log_normal_moments,
    render_supershapes,
)


def test_renders_binary_images_of_the_requested_size() -> None:
    images = render_supershapes(torch.tensor([[6.0, 3.0], [3.0, 1.0]]), size=32)
    assert images.shape == (2, 1, 32, 32)
    assert set(images.unique().tolist()) <= {0.0, 1.0}
    assert 0 < images.mean() < 1


def test_n_equal_two_is_the_inscribed_disc() -> None:
    area = render_supershapes(torch.tensor([[5.0, 2.0]]), size=256).mean()
    assert area == pytest.approx(math.pi * 0.9**2 / 4, rel=0.01)


def test_four_lobes_have_fourfold_symmetry() -> None:
    image = render_supershapes(torch.tensor([[4.0, 3.0]]), size=48)[0, 0]
    assert torch.equal(torch.rot90(image), image)
    five = render_supershapes(torch.tensor([[5.0, 3.0]]), size=48)[0, 0]
    assert not torch.equal(torch.rot90(five), five)


def test_larger_n_is_spikier_and_smaller_n_rounder() -> None:
    shapes = torch.tensor([[6.0, 4.0], [6.0, 3.0], [6.0, 2.5], [6.0, 1.5]])
    areas = render_supershapes(shapes, 64).mean((1, 2, 3))
    assert areas[0] < areas[1] < areas[2]
    disc = math.pi * 0.9**2 / 4
    assert areas[3] < disc


def test_the_image_is_piecewise_constant_in_the_parameters() -> None:
    shapes = torch.tensor([[6.0, 3.0]])
    assert torch.equal(render_supershapes(shapes, 32), render_supershapes(shapes + 1e-7, 32))


@pytest.mark.parametrize(
    ("shapes", "size", "message"),
    [
        (torch.ones(3), 32, r"\[N, 2\]"),
        (torch.ones(2, 3), 32, r"\[N, 2\]"),
        (torch.tensor([[6.0, -0.5]]), 32, "positive"),
        (torch.ones(1, 2), 2, "size"),
    ],
)
def test_bad_input_is_rejected(shapes: torch.Tensor, size: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_supershapes(shapes, size)


def test_targets_are_seeded_draws_from_the_hidden_distribution() -> None:
    task = SupershapeMatching(size=32, seed=3)
    assert torch.equal(task.targets(5), task.targets(5))
    assert not torch.equal(task.targets(5), SupershapeMatching(size=32, seed=4).targets(5))
    assert task.targets(5).shape == (5, 1, 32, 32)
    sample = task.hidden_distribution().sample((4000,))
    assert sample.log().mean(0) == pytest.approx(task.hidden_loc.tolist(), abs=0.02)


def test_the_learner_starts_at_the_tasks_start() -> None:
    task = SupershapeMatching()
    learner = task.learner()
    dist = learner()
    assert dist.event_shape == (2,)
    assert torch.allclose(dist.base_dist.loc, task.start_loc)
    assert torch.allclose(dist.base_dist.scale, task.start_scale)
    assert {name for name, _ in learner.named_parameters()} == {"loc", "log_scale"}


def test_the_learner_rejects_mismatched_or_negative_scales() -> None:
    with pytest.raises(ValueError, match="one shape"):
        LearnedLogNormal(torch.zeros(2), torch.ones(3))
    with pytest.raises(ValueError, match="positive"):
        LearnedLogNormal(torch.zeros(2), torch.tensor([1.0, 0.0]))


def test_log_normal_moments_match_torch() -> None:
    loc, scale = torch.tensor([1.8, 1.1]), torch.tensor([0.1, 0.3])
    mean, std = log_normal_moments(loc, scale)
    reference = torch.distributions.LogNormal(loc, scale)
    assert torch.allclose(mean, reference.mean) and torch.allclose(std, reference.stddev)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"hidden_loc": torch.zeros(3)}, "hidden_loc"),
        ({"start_scale": torch.tensor([0.4, 0.0])}, "start_scale"),
        ({"size": 2}, "size"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_task_settings_are_rejected(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SupershapeMatching(**options)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must"):
        SupershapeMatching().targets(0)
