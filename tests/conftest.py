"""Shared helpers for the test suite."""

from __future__ import annotations

import torch

# The suite's tensors are tiny: one thread is faster than two and immune to a busy machine.
torch.set_num_threads(1)


def assert_unbiased(samples: torch.Tensor, truth: torch.Tensor, z: float = 5.0) -> None:
    """CLT check: every component of the mean of ``samples`` ([K, ...]) is within z·se of truth.

    With z = 5 the false-failure probability per component under a fresh seed is
    about 6e-7 (TESTING.md §2); the tests are seeded, hence deterministic.
    """
    deviation, bound = clt_deviation(samples, truth, z)
    assert torch.all(deviation <= bound), (
        f"mean deviates from truth by {deviation.tolist()} > {z}·se = {bound.tolist()}"
    )


def clt_deviation(
    samples: torch.Tensor, truth: torch.Tensor, z: float = 5.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """|mean − truth| and the bound z·std/sqrt(K), per component."""
    K = samples.shape[0]
    mean = samples.mean(0)
    se = samples.std(0) / K**0.5
    return (mean - truth).abs(), z * se


def fails_unbiased_check(samples: torch.Tensor, truth: torch.Tensor, z: float = 5.0) -> bool:
    """True if the CLT check rejects (used to show the check has power)."""
    deviation, bound = clt_deviation(samples, truth, z)
    return bool(torch.any(deviation > bound))
