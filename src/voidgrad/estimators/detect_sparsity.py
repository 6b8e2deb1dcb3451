r"""Finding a black box's dependency pattern by moving groups of parameters (group testing).

When the ``[outputs, d]`` pattern S of ``jac_sparsity`` is not known,
:func:`detect_sparsity` measures it. Each round splits the d parameters into
G groups and moves each group at once,

    x_g = θ + h · s ⊙ 1_g,     s_j = ±(1 + u_j), u_j ~ U(0, 1), a random sign,

recording which outputs changed: F_o(x_g) ≠ F_o(θ) (beyond ``tolerance``).
The random signs and magnitudes make an exact cancellation between the
members of a group improbable, so an output changes when one of its
dependencies moved.

*Digit rounds.* Number the parameters in a random order p(j) and write p(j)
in base G with D = ⌈log_G d⌉ digits; round r groups the parameters by digit
r (the last digit takes only ⌈d / G^(D−1)⌉ values: the other groups are
empty, and not evaluated). An output o that changed at the digit values A_r(o) in round r can only
depend on parameters whose digits lie in A_0(o) × … × A_{D−1}(o): with k_o
dependencies, at most k_o^D candidates, all true dependencies among them.

*Filter rounds.* Then ``filter_rounds`` rounds of random groups drop a
candidate j of o unless o changed at j's group (the COMP decoding of
non-adaptive group testing): a non-dependency survives a round with
probability about k_o/G. ``DetectedSparsity.candidates`` gives the count
after each round: a flat tail means the pattern has settled.

Cost: 1 + ((D − 1) · G + ⌈d / G^(D−1)⌉ + filter_rounds · G) · repeats
evaluations (d = 10⁶, G = 64: D = 4, 453 evaluations with the default 4
filter rounds), run through one
Evaluator, a few groups' points at a time. Memory: the candidates, at most
Σ_o k_o^D pairs after the digit rounds, refused above ``max_candidates``
(more groups G lower D). About Σ_o (k_o^D − k_o) (k_o/G)^filter_rounds false
dependencies are expected to remain: d = 1 000, k = 2, G = 32 leaves about
0.03; a false dependency costs variance, not bias.

What it cannot see: a dependency whose output does not move at step h (a
quantized, hard-edged or flat-at-θ output: F_o(θ + h s_j e_j) = F_o(θ)); a
dependency of an output whose moves cancel below its resolution within a
group in some round (two dependencies of a quantized output moved in
opposite directions; ``repeats`` lowers the odds), which drops it: a biased
estimate for that output (a 2-parameter blur rounded to steps of h: 40, 10
and 4 of 200 dependencies missed with 1, 2 and 3 repeats); or a noisy output
(it changes everywhere: give a ``tolerance`` or fix the noise's seed).
Outputs that never changed are counted in
``DetectedSparsity.silent_outputs`` and warned about: their rows are
empty, so the estimators give them no credit, which is right for a constant
output and wrong for one whose dependency hides below h.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from voidgrad.errors import NumericalWarning
from voidgrad.estimators.sparsity import JacobianSparsity
from voidgrad.evaluation.evaluator import Evaluator
from voidgrad.validation import check_int, check_positive, check_seed


@dataclass(frozen=True)
class DetectedSparsity:
    """What :func:`detect_sparsity` found.

    Attributes:
        pattern: the detected pattern; pass it (or this object) as ``jac_sparsity``.
        evaluations: the black-box evaluations spent (module doc: Cost).
        candidates: the dependencies left after each round (the first is the
            first round's candidates); a flat tail means the decoding settled.
        silent_outputs: outputs that did not change in any probe (empty rows).

    Examples:
        >>> import torch, voidgrad as vg
        >>> found = vg.detect_sparsity(lambda x: 2 * x, torch.zeros(50), step=0.1, groups=8)
        >>> found.pattern  # the identity: output o reads x_o
        JacobianSparsity(shape=[50, 50], nnz=50)
        >>> estimator = vg.SPSA(c=0.1, jac_sparsity=found)  # the pattern, or this object
    """

    pattern: JacobianSparsity
    evaluations: int
    candidates: tuple[int, ...]
    silent_outputs: int


def detect_sparsity(
    fn: Callable[..., object] | Evaluator,
    theta: torch.Tensor,
    *,
    step: float,
    groups: int = 64,
    filter_rounds: int = 4,
    repeats: int = 1,
    tolerance: float = 0.0,
    max_candidates: int = 50_000_000,
    seed: int = 0,
) -> DetectedSparsity:
    """The ``[outputs, d]`` dependency pattern of ``fn`` around ``theta`` (module doc).

    Args:
        fn: the black box ``fn(x) -> outputs`` for ``x`` of shape ``[d]``, or
            an :class:`~voidgrad.evaluation.evaluator.Evaluator` (its backend
            and budget apply). It must be deterministic, or noisy below
            ``tolerance``.
        theta: the point to probe at, ``[d]``.
        step: h, the probe's step; the moves are h to 2h per parameter.
        groups: G ≥ 2, the groups per round.
        filter_rounds: the rounds of random groups after the digit rounds.
        repeats: probes per group and round, each with its own signs and
            magnitudes; an output changed if any of them changed it (for
            hard-edged outputs, where moves can cancel below a step: each
            repeat multiplies the evaluations and lowers that risk).
        tolerance: an output counts as changed when it moves by more than this.
        max_candidates: refuse a decoding that would hold more candidate pairs.
        seed: seeds the numbering, the groups, the signs and the magnitudes.

    Examples:
        >>> import torch, voidgrad as vg
        >>> blur = lambda x: x + x.roll(1)  # output o reads x_o and x_(o−1)
        >>> found = vg.detect_sparsity(blur, torch.zeros(1000), step=0.1, groups=32)
        >>> found.pattern.nnz, found.evaluations  # the 2 000 true dependencies
        (2000, 193)
        >>> found.candidates  # after each digit round, then each filter round
        (1976, 3867, 2105, 2012, 2000, 2000)
    """
    evaluator = fn if isinstance(fn, Evaluator) else Evaluator(fn)
    if not isinstance(theta, torch.Tensor) or theta.ndim != 1 or not theta.is_floating_point():
        raise ValueError(
            "theta must be a floating tensor of shape [d]; got "
            + (f"shape {tuple(theta.shape)}" if isinstance(theta, torch.Tensor) else repr(theta))
        )
    d = theta.shape[0]
    check_positive("step", step)
    check_int("groups", groups, 2)
    check_int("filter_rounds", filter_rounds, 0)
    check_int("repeats", repeats, 1)
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be a number >= 0; got {tolerance!r}")
    check_int("max_candidates", max_candidates, 1)
    generator = torch.Generator().manual_seed(check_seed(seed, optional=False))
    theta = theta.detach()
    probe = _Probe(evaluator, theta, step, tolerance, repeats, generator)
    outputs = probe.base.shape[0]

    # Digit rounds: the candidates' numbers p(j), built digit by digit per output.
    numbering = torch.randperm(d, generator=generator)  # p(j)
    digits = _digits(d, groups)
    rows = torch.arange(outputs)
    codes = torch.zeros(outputs, dtype=torch.int64)
    candidates: list[int] = []
    for r in range(digits):
        place = groups**r
        changed = probe.changes(numbering // place % groups, groups)
        rows, codes = _extend(rows, codes, changed, place, max_candidates)
        if r == digits - 1:
            kept = codes < d
            rows, codes = rows[kept], codes[kept]
        candidates.append(int(rows.numel()))
    cols = torch.argsort(numbering)[codes]  # the parameter numbered p

    # Filter rounds: random groups; a candidate stays if its output changed at its group.
    for _ in range(filter_rounds):
        assignment = torch.randperm(d, generator=generator) % groups
        changed = probe.changes(assignment, groups)
        kept = changed[assignment[cols], rows]
        rows, cols = rows[kept], cols[kept]
        candidates.append(int(rows.numel()))

    pattern = JacobianSparsity(
        torch.sparse_coo_tensor(
            torch.stack([rows, cols]),
            torch.ones(rows.numel(), dtype=torch.bool),
            (outputs, d),
            check_invariants=True,
        )
    )
    silent_outputs = int((~probe.moved).sum())
    if silent_outputs:
        warnings.warn(
            f"detect_sparsity: {silent_outputs} of {outputs} outputs did not change in any "
            f"probe at step={step:g}; their rows are empty (no credit). That is right for a "
            "constant output; for a quantized or hard-edged one a dependency may hide below "
            "the step: try a larger step",
            NumericalWarning,
            stacklevel=2,
        )
    return DetectedSparsity(pattern, probe.evaluations, tuple(candidates), silent_outputs)


def _digits(d: int, groups: int) -> int:
    """D = ⌈log_G d⌉, the digits of the parameters' numbers in base G."""
    digits = 1
    while groups**digits < d:
        digits += 1
    return digits


class _Probe:
    """Moves groups of parameters from θ and says which outputs changed; counts evaluations."""

    def __init__(
        self,
        evaluator: Evaluator,
        theta: torch.Tensor,
        step: float,
        tolerance: float,
        repeats: int,
        generator: torch.Generator,
    ) -> None:
        self.evaluator, self.theta, self.step = evaluator, theta, step
        self.tolerance, self.repeats, self.generator = tolerance, repeats, generator
        self.base = _outputs(evaluator, theta.unsqueeze(0))[0]
        self.evaluations = 1
        self.moved = torch.zeros(self.base.shape[0], dtype=torch.bool)

    def changes(self, assignment: torch.Tensor, groups: int) -> torch.Tensor:
        """``[groups, outputs]`` (CPU): which outputs changed when each group moved.

        An empty group moves nothing and is not evaluated (its row stays False).
        """
        d = self.theta.shape[0]
        present = torch.bincount(assignment, minlength=groups) > 0
        compact = (present.cumsum(0) - 1)[assignment]  # group → its index among the present
        count = int(present.sum())
        changed = torch.zeros(groups, self.base.shape[0], dtype=torch.bool)
        for _ in range(self.repeats):
            magnitude = 1 + torch.rand(d, generator=self.generator, dtype=torch.float64)
            sign = torch.randint(0, 2, (d,), generator=self.generator) * 2 - 1
            moves = (self.step * sign * magnitude).to(self.theta.dtype)
            changed[present] |= _changes(
                self.evaluator, self.theta, compact, moves, count, self.base, self.tolerance
            )
            self.evaluations += count
        self.moved |= changed.any(0)
        return changed


def _extend(
    rows: torch.Tensor,
    codes: torch.Tensor,
    changed: torch.Tensor,
    place: int,
    max_candidates: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each partial number of an output, extended by every digit value that changed it.

    ``rows``/``codes``: the outputs and the partial numbers p mod ``place`` of
    the candidates so far; ``changed`` ``[G, outputs]``: this round's changes.
    Returns the candidates with one more digit: code + a · place, a ∈ A_r(o).
    """
    output_of_pair, digit_of_pair = changed.T.nonzero(as_tuple=True)  # sorted by output
    per_output = torch.bincount(output_of_pair, minlength=changed.shape[1])
    starts = per_output.cumsum(0) - per_output
    counts = per_output[rows]
    total = int(counts.sum())
    if total > max_candidates:
        raise ValueError(
            f"detect_sparsity: the decoding would hold {total} candidate dependencies, more "
            f"than max_candidates={max_candidates}: the outputs depend on too many parameters "
            "for this probe; use more groups, or give the pattern if it is known"
        )
    within = torch.arange(total) - (counts.cumsum(0) - counts).repeat_interleave(counts)
    digit = digit_of_pair[starts[rows].repeat_interleave(counts) + within]
    return rows.repeat_interleave(counts), codes.repeat_interleave(counts) + digit * place


def _changes(
    evaluator: Evaluator,
    theta: torch.Tensor,
    assignment: torch.Tensor,
    moves: torch.Tensor,
    groups: int,
    base: torch.Tensor,
    tolerance: float,
) -> torch.Tensor:
    """``[G, outputs]`` (CPU): which outputs moved when each group moved, a few groups at a time.

    The points of a chunk of groups are built at once (θ repeated, each group's
    moves scattered into its row), at most about 2²⁴ numbers per chunk.
    """
    d = theta.shape[0]
    chunk = max(1, 2**24 // d)
    changed = []
    for first in range(0, groups, chunk):
        last = min(groups, first + chunk)
        members = ((assignment >= first) & (assignment < last)).nonzero().squeeze(1)
        points = theta.expand(last - first, d).clone()
        row, column = (assignment[members] - first).to(theta.device), members.to(theta.device)
        points[row, column] += moves[members].to(theta.device)
        changed.append(((_outputs(evaluator, points) - base).abs() > tolerance).cpu())
    return torch.cat(changed)


def _outputs(evaluator: Evaluator, points: torch.Tensor) -> torch.Tensor:
    """The black box's outputs at ``points`` ``[N, d]``, flattened: ``[N, outputs]``."""
    values = torch.as_tensor(evaluator(points))
    return values.reshape(points.shape[0], -1)
