r"""Dithering by expected SSIM: thousands of categorical choices and a black-box-friendly cost.

Every pixel (i, j) of an S × S image picks one of P grey levels c_1 < … < c_P
(evenly spaced in [0, 1]). With one categorical per pixel, x ~ p(x|θ) =
Π_ij OneHotCategorical(θ_ij), the image is x @ c and the cost is

    f(x) = 1 − SSIM(x @ c, t),

minimized in expectation, L(θ) = E_{x~p(x|θ)}[f(x)], e.g. by
``vg.expectation(problem.cost, OneHotCategorical(logits=θ), samples=N, ...)``.
SSIM is the standard one (Wang et al. 2004): a Gaussian window with σ = 1.5,
11 × 11 for S ≥ 128 and 7 × 7 below, valid positions only, C1 = 0.01²,
C2 = 0.03² for the range [0, 1], the mean of the SSIM map. f accepts relaxed
inputs (points of the simplex, rendered as grey mixtures), which is what
Gumbel-softmax and REBAR differentiate.

Targets: ``"procedural"`` (smooth gradients, a disc, a square, a ring of
sinusoidal stripes; no dependencies) or ``"china"`` (scikit-learn's bundled
sample image in grey, centre-cropped and area-resized; needs scikit-learn).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional

from voidgrad.validation import check_int

C1 = 0.01**2
C2 = 0.03**2
SIGMA = 1.5
TARGETS = ("procedural", "china")


def dither_target(kind: str, size: int) -> torch.Tensor:
    """The target grey image ``[size, size]`` in [0, 1], float32 (see the module doc)."""
    check_int("size", size, 8)
    if kind == "china":
        try:
            from sklearn.datasets import load_sample_image
        except ImportError as error:
            raise ImportError(
                "the 'china' target needs scikit-learn: pip install 'voidgrad[bench]'"
            ) from error
        rgb = load_sample_image("china.jpg").astype(np.float64) / 255.0
        grey = rgb @ np.array([0.299, 0.587, 0.114])
        h, w = grey.shape
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        square = torch.tensor(grey[top : top + side, left : left + side])
        image = functional.interpolate(square[None, None], size=(size, size), mode="area")[0, 0]
        return image.clamp(0, 1).to(torch.float32)
    if kind == "procedural":
        t = torch.linspace(0, 1, size, dtype=torch.float64)
        y, x = torch.meshgrid(t, t, indexing="ij")
        image = 0.15 + 0.7 * x * (0.6 + 0.4 * y)  # smooth two-way gradient
        disc = ((x - 0.32) ** 2 + (y - 0.35) ** 2).sqrt() < 0.18
        image = torch.where(disc, 0.9 - 0.5 * y, image)
        square = ((x - 0.72).abs() < 0.14) & ((y - 0.7).abs() < 0.14)
        image = torch.where(square, torch.full_like(image, 0.1), image)
        r = ((x - 0.72) ** 2 + (y - 0.28) ** 2).sqrt()
        ring = r < 0.2
        image = torch.where(ring, 0.5 + 0.45 * torch.cos(2 * math.pi * r / 0.07), image)
        return image.clamp(0, 1).to(torch.float32)
    raise ValueError(f"target must be one of {TARGETS}; got {kind!r}")


def gaussian_kernel(window: int, sigma: float = SIGMA) -> torch.Tensor:
    """The normalized 1-d Gaussian window ``[window]``, float32."""
    x = torch.arange(window, dtype=torch.float32) - (window - 1) / 2
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


class SSIM:
    """Mean SSIM of a batch of images ``[..., H, W]`` against one fixed target ``[H, W]``.

    The Gaussian filter (valid positions only) is applied as ``K @ image @ Kᵀ`` with
    the banded ``[H-w+1, H]`` matrix K of the 1-d window: two matrix products,
    much faster on one CPU thread than a one-channel ``conv2d``. Differentiable.

    Examples:
        >>> import torch
        >>> from voidgrad.problems import SSIM
        >>> target = torch.rand(16, 16, generator=torch.Generator().manual_seed(0))
        >>> ssim = SSIM(target, window=7)
        >>> scores = ssim(torch.stack([target, 1 - target]))  # a batch of two images
        >>> round(scores[0].item(), 4), bool(scores[1] < 0)  # identical, then inverted
        (1.0, True)
    """

    def __init__(self, target: torch.Tensor, window: int, sigma: float = SIGMA) -> None:
        size = target.shape[-1]
        if target.ndim != 2 or target.shape[-2] != size or size < window:
            raise ValueError(f"the target must be square [H, H] with H >= {window}")
        kernel = gaussian_kernel(window, sigma)
        band = torch.zeros(size - window + 1, size)
        for i in range(size - window + 1):
            band[i, i : i + window] = kernel
        self.band = band
        self.window = window
        self.target = target
        self.mu_y = self._filter(target)
        self.var_y = self._filter(target * target) - self.mu_y**2

    def _filter(self, images: torch.Tensor) -> torch.Tensor:
        """Separable Gaussian filter, valid positions only: ``[..., H-w+1, W-w+1]``."""
        band = self.band.to(images.dtype)
        return band @ images @ band.T

    def map(self, images: torch.Tensor) -> torch.Tensor:
        """The SSIM map ``[..., H-w+1, W-w+1]``."""
        moments = self._filter(torch.stack([images, images * images, images * self.target]))
        mu_x = moments[0]
        var_x = moments[1] - mu_x**2
        cov = moments[2] - mu_x * self.mu_y
        numerator = (2 * mu_x * self.mu_y + C1) * (2 * cov + C2)
        denominator = (mu_x**2 + self.mu_y**2 + C1) * (var_x + self.var_y + C2)
        return numerator / denominator

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Mean SSIM per image: ``[...]``."""
        return self.map(images).mean((-2, -1))


class DitherProblem:
    """Choose one of ``levels`` grey levels per pixel to maximize SSIM to a target (module doc).

    Args:
        target: ``"procedural"`` or ``"china"``.
        size: S, the image's side (≥ 8).
        levels: P, grey levels evenly spaced in [0, 1] (2 to 10).

    Attributes:
        target: the target image ``[S, S]``.
        palette: the grey levels ``[P]``.
        window: the SSIM window (11 for S ≥ 128, else 7).
        ssim: the :class:`SSIM` against the target.

    Examples:
        >>> import torch, voidgrad as vg
        >>> from voidgrad.problems import DitherProblem
        >>> problem = DitherProblem(size=16, levels=2)
        >>> logits = torch.zeros(16, 16, 2, requires_grad=True)  # one categorical per pixel
        >>> dist = torch.distributions.OneHotCategorical(logits=logits)
        >>> estimator = vg.GumbelSoftmax(temperature=0.5, seed=0)
        >>> loss = vg.expectation(problem.cost, dist, samples=8, estimator=estimator)
        >>> loss.backward()
        >>> logits.grad.shape
        torch.Size([16, 16, 2])
        >>> 0.0 < loss.item() < 2.0  # 1 − SSIM
        True
    """

    def __init__(self, target: str = "procedural", size: int = 64, levels: int = 2) -> None:
        check_int("levels", levels, 2)
        if levels > 10:
            raise ValueError(f"levels must be 2 to 10 grey levels; got {levels}")
        self.target = dither_target(target, size)
        self.palette = torch.linspace(0, 1, levels)
        self.size = size
        self.window = 11 if size >= 128 else 7
        self.ssim = SSIM(self.target, self.window)

    def render(self, x: torch.Tensor) -> torch.Tensor:
        """One-hot or relaxed ``[..., S, S, P]`` to grey images ``[..., S, S]``."""
        return x @ self.palette.to(x.dtype)

    def cost(self, x: torch.Tensor) -> torch.Tensor:
        """f: samples ``[N, S, S, P]`` to costs ``[N]``; differentiable."""
        return 1 - self.ssim(self.render(x))

    def ssim_of_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """SSIM of images given by palette indices ``[..., S, S]``."""
        return self.ssim(self.palette[indices])
