r"""What :func:`voidgrad.minimize` chooses from the budget when the caller does not.

A run knows its budget B and so its steps T = B // (evaluations a step). By
default (``lr_schedule="auto"``, no ``schedule`` among the method's options):

* **σ** anneals linearly from ``sigma`` to ``sigma``/10 over the T steps
  (:class:`~voidgrad.estimators.schedules.LinearAnneal`), for every method
  whose estimator takes a σ schedule (smoothing, guided, mixed, ZeroGrads);
  a step whose gradient estimate is exactly 0 (every difference vanished:
  a plateau at this σ) does not advance it, so the kernel keeps its width
  until it sees the loss change;
* **lr** decays linearly to 1 % over the T steps (:class:`LinearLrDecay`)
  when d ≥ 1 000 and B ≥ 5 d, and stays constant otherwise;
* **the kernel** of ``method="smoothing"`` is PRDPT's importance kernel
  below d = 1 000 and the plain Gaussian (``importance=False``) from
  d = 1 000 on.

Why (``benchmarks/reports/defaults-2026-12-03/report-schedules.md``:
``vg.minimize(method="smoothing")``, 8 samples a step, the loss of the final
iterate, medians of 3 seeds): the σ anneal beats a constant σ on rosenbrock,
akima, splines, caustic and digits_mlp, on every seed (1.1× to 900×); it ties
on sphere and on the texture at 1 d and loses 1.18× on rosenbrock at 20 d.
It can also leave a start on a plateau where it is, when σ shrinks before the
kernel reaches the slope (the plateau problem, 1 seed of 3): hence the hold on
flat steps (with it, the README's plateau example reaches 0 on seeds 0-4 at
2 000 evaluations, as with a constant σ; without it, on none). On top of the anneal, the lr decay
pays only where the run is noise-limited and long: the texture at d = 3 072
(1.7× at 5 d, 30× at 25 d); it loses everywhere else (caustic at 4 d 1.5×,
digits_mlp at 0.11 d 2.8×, rosenbrock 1.05-1.36×, splines 1.2-1.7×), so it
needs both a large d and a budget of many d. The crossover lies between the
caustic's 3.9 d (constant lr ahead 1.5×) and the texture's 5 d (decay ahead
1.7×): the rule decays from 5 d (``benchmarks/reports/auto-2026-12-03``,
where it took ``method="auto"`` on the texture from 1.96× the best bench
setting to 1.17×). The importance kernel of PRDPT
was 1.08-3.4× worse than the plain one at equal samples, on every seed but
one at d ≥ 1 000; below, with σ annealed, the two tied (0.78-1.25, wins
split), and on the plateau at ``vg.minimize``'s σ = 0.1 only the importance
kernel leaves the flat start (the plain one on none of seeds 0-4: its
offsets are mostly small, the Rayleigh magnitudes of PRDPT's never are).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from voidgrad.estimators.schedules import LinearAnneal
from voidgrad.validation import check_int, check_interval, check_positive

#: The ``lr_schedule`` that asks for the budget's default.
AUTO = "auto"

#: The lr decays only for d at least this …
DECAY_MIN_DIM = 1_000
#: … and a budget of at least this many evaluations per parameter.
DECAY_MIN_BUDGET_PER_DIM = 5
#: The lr decays to this fraction of its start.
DECAY_END_FACTOR = 0.01
#: The importance kernel is the default below this many parameters.
IMPORTANCE_MAX_DIM = 1_000
#: σ anneals to its start divided by this.
SIGMA_END_DIVISOR = 10


@dataclass(frozen=True)
class LinearLrDecay:
    """An ``lr_schedule`` for ``vg.minimize``: lr falls linearly to ``end_factor`` · lr.

    lr_t = lr · (1 − (1 − end_factor) · min(t, T)/T) with T = ``total_steps``:
    a noisy gradient's step keeps a fixed lr jittering at a noise floor, and
    decaying lr averages the noise out (σ's anneal does the same for the bias).

    Examples:
        >>> import torch
        >>> from voidgrad.optimize.defaults import LinearLrDecay
        >>> optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> scheduler = LinearLrDecay(end_factor=0.1, total_steps=2)(optimizer)
        >>> for _ in range(3):
        ...     optimizer.step()
        ...     scheduler.step()
        >>> round(optimizer.param_groups[0]["lr"], 6)
        0.1
    """

    end_factor: float
    total_steps: int

    def __post_init__(self) -> None:
        check_interval("end_factor", self.end_factor, 0, 1, closed_high=True)
        check_int("total_steps", self.total_steps, 1)

    def __call__(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LinearLR:
        return torch.optim.lr_scheduler.LinearLR(
            optimizer, start_factor=1.0, end_factor=self.end_factor, total_iters=self.total_steps
        )


def default_lr_schedule(dim: int, budget: int, steps: int) -> LinearLrDecay | None:
    """The budget's lr schedule: a decay to 1 % over ``steps`` for a long, high-d run, else None.

    Examples:
        >>> from voidgrad.optimize.defaults import default_lr_schedule
        >>> default_lr_schedule(dim=3072, budget=76_800, steps=9600)  # 25 d
        LinearLrDecay(end_factor=0.01, total_steps=9600)
        >>> default_lr_schedule(dim=20, budget=10_000, steps=1250) is None  # small d: constant
        True
    """
    check_int("dim", dim, 1)
    check_int("budget", budget, 1)
    check_int("steps", steps, 1)
    if dim >= DECAY_MIN_DIM and budget >= DECAY_MIN_BUDGET_PER_DIM * dim:
        return LinearLrDecay(DECAY_END_FACTOR, steps)
    return None


def default_importance(dim: int) -> bool:
    """The budget's kernel for ``dim`` parameters: PRDPT's importance kernel below 1 000.

    Examples:
        >>> from voidgrad.optimize.defaults import default_importance
        >>> default_importance(2), default_importance(1_000)
        (True, False)
    """
    return check_int("dim", dim, 1) < IMPORTANCE_MAX_DIM


def default_sigma_schedule(sigma: float, steps: int) -> LinearAnneal:
    """The budget's σ schedule: linear from ``sigma`` to ``sigma``/10 over ``steps``.

    Examples:
        >>> from voidgrad.optimize.defaults import default_sigma_schedule
        >>> default_sigma_schedule(0.5, 100)
        LinearAnneal(sigma_min=0.05, total_steps=100, constant_steps=0)
    """
    check_positive("sigma", sigma)
    check_int("steps", steps, 1)
    return LinearAnneal(sigma_min=sigma / SIGMA_END_DIVISOR, total_steps=steps)
