"""DitherProblem and its SSIM: a reference convolution, differentiability, validation."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional

from voidgrad.problems import SSIM, DitherProblem
from voidgrad.problems.dither import C1, C2, gaussian_kernel


def reference_ssim(image: torch.Tensor, target: torch.Tensor, window: int) -> torch.Tensor:
    """Mean SSIM with a 2-d Gaussian conv2d, valid positions (Wang et al. 2004)."""
    k = gaussian_kernel(window).double()
    kernel = (k[:, None] * k[None, :])[None, None]

    def blur(x: torch.Tensor) -> torch.Tensor:
        return functional.conv2d(x[None, None], kernel)[0, 0]

    mu_x, mu_y = blur(image), blur(target)
    var_x = blur(image * image) - mu_x**2
    var_y = blur(target * target) - mu_y**2
    cov = blur(image * target) - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + C1) * (2 * cov + C2)) / (
        (mu_x**2 + mu_y**2 + C1) * (var_x + var_y + C2)
    )
    return ssim.mean()


def test_ssim_matches_a_two_dimensional_gaussian_convolution():
    generator = torch.Generator().manual_seed(0)
    target = torch.rand((20, 20), generator=generator, dtype=torch.float64)
    image = torch.rand((20, 20), generator=generator, dtype=torch.float64)
    ssim = SSIM(target, window=7)
    torch.testing.assert_close(ssim(image), reference_ssim(image, target, 7))
    torch.testing.assert_close(ssim(target), torch.tensor(1.0, dtype=torch.float64))


def test_cost_is_batched_and_differentiable_at_relaxed_inputs():
    problem = DitherProblem(size=16, levels=3)
    logits = torch.zeros((4, 16, 16, 3), requires_grad=True)
    costs = problem.cost(torch.softmax(logits + torch.randn(4, 16, 16, 3), -1))
    assert costs.shape == (4,)
    costs.sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_nearest_levels_beat_a_flat_grey_image():
    problem = DitherProblem(size=32, levels=4)
    nearest = (problem.target[..., None] - problem.palette).abs().argmin(-1)
    flat = torch.full((32, 32), 1, dtype=torch.long)
    assert problem.ssim_of_indices(nearest) > problem.ssim_of_indices(flat) + 0.3
    assert problem.window == 7 and DitherProblem(size=128).window == 11


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"levels": 1}, "levels must be an int >= 2"),
        ({"levels": 11}, "2 to 10 grey levels"),
        ({"target": "lena"}, "target must be one of"),
        ({"size": 4}, "size must be an int >= 8"),
    ],
)
def test_bad_settings_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        DitherProblem(**arguments)


def test_ssim_needs_a_square_target_as_wide_as_its_window():
    with pytest.raises(ValueError, match="square"):
        SSIM(torch.zeros(10, 12), window=7)
    with pytest.raises(ValueError, match="square"):
        SSIM(torch.zeros(5, 5), window=7)
