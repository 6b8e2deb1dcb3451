"""method="auto" (optimize/auto.py): the probe, the rules, auto runs as vg.minimize's default."""

from __future__ import annotations

import logging
import math
from dataclasses import replace

import pytest
import torch

import voidgrad as vg
from voidgrad.optimize.auto import (
    PROBE_DIRECTIONS,
    Auto,
    Probe,
    choose,
    probe_cost,
    probe_points,
    probe_step,
    read_probe,
    scale_steps,
)


def quadratic(x: torch.Tensor) -> float:
    return float((x - 1).pow(2).sum())


def staircase(x: torch.Tensor) -> float:
    """Piecewise constant: a quadratic of x rounded to 0.05 (a hard-edged loss)."""
    return float(((x * 20).round() / 20 - 1).pow(2).sum())


class Noisy:
    """A quadratic plus seeded noise: it takes a seed, and its value at a point varies with it."""

    def __call__(self, x: torch.Tensor, seed: int) -> float:
        noise = torch.randn((), generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
        return float((x - 1).pow(2).sum() + 0.01 * noise)


def probe_of(fn, x0: torch.Tensor, repeats: int = 0) -> Probe:
    step = probe_step(x0)
    X = probe_points(x0, step, repeats, torch.Generator().manual_seed(0))
    seeds = range(len(X))
    Y = torch.tensor(
        [fn(x) if repeats == 0 else fn(x, seed) for x, seed in zip(X, seeds, strict=True)],
        dtype=torch.float64,
    )
    return read_probe(Y, step, repeats)


SMOOTH = Probe(7, loss=1.0, step=1.5e-8, noisy=False, smooth=True, ratios=(2.0,) * 3)
ROUGH = Probe(7, loss=1.0, step=1.5e-8, noisy=False, smooth=False, ratios=(math.nan,) * 3)


def test_the_probe_rows_are_x0_then_one_and_two_steps_along_each_direction() -> None:
    x0 = torch.tensor([0.5, -3.0], dtype=torch.float64)
    step = probe_step(x0)
    assert step == pytest.approx(math.sqrt(torch.finfo(torch.float64).eps) * 3.0)
    X = probe_points(x0, step, repeats=2, generator=torch.Generator().manual_seed(0))
    assert X.shape == (probe_cost(2), 2) == (3 + 2 * PROBE_DIRECTIONS, 2)
    assert torch.equal(X[:3], x0.expand(3, 2))
    first, second = X[3:].split(PROBE_DIRECTIONS)
    assert torch.allclose(second - x0, 2 * (first - x0))


def test_a_smooth_float64_loss_reads_as_smooth_and_ratios_near_two() -> None:
    probe = probe_of(quadratic, torch.zeros(5, dtype=torch.float64))
    assert probe.smooth and not probe.noisy and probe.evaluations == 7
    assert all(abs(r - 2) < 1e-3 for r in probe.ratios)
    assert probe.loss == 5.0


@pytest.mark.parametrize(
    ("fn", "x0"),
    [
        (staircase, torch.zeros(5, dtype=torch.float64)),  # flat at the probe's step
        (quadratic, torch.zeros(5, dtype=torch.float32)),  # float32 round-off >> the step
        (lambda x: float(x.abs().sum() + (x > 0).sum()), torch.zeros(3, dtype=torch.float64)),
    ],
    ids=["piecewise-constant", "float32", "kinked-and-jumping"],
)
def test_a_loss_finite_differences_cannot_read_is_not_smooth(fn, x0) -> None:
    assert not probe_of(fn, x0).smooth


def test_a_loss_that_varies_with_its_seed_is_noisy_and_not_smooth() -> None:
    probe = probe_of(Noisy(), torch.zeros(3, dtype=torch.float64), repeats=2)
    assert probe.noisy and not probe.smooth and probe.evaluations == 9


@pytest.mark.parametrize(
    ("dim", "budget", "probe", "method"),
    [
        (10, 200, SMOOTH, "annealing"),  # 20 d, the probe's included: the local search
        (10, 199, SMOOTH, "smoothing"),  # just under 20 d
        (10, 10_000, ROUGH, "smoothing"),
        (100, 99, ROUGH, "spsa"),  # fewer evaluations than parameters
        (100, 99, SMOOTH, "spsa"),
        (100, 99, None, "spsa"),
        (10, 100, None, "smoothing"),  # no probe: never annealing
    ],
)
def test_the_rules_choose_by_smoothness_and_budget_per_parameter(dim, budget, probe, method):
    choice = choose(dim, budget, scale=2.0, probe=probe)
    assert choice.method == method and choice.probe is probe
    assert choice.budget == budget - (0 if probe is None else probe.evaluations)
    assert choice.reason and f"{budget / dim:.3g} evaluations per parameter" in choice.reason


def test_gradient_settings_are_in_units_of_the_scale() -> None:
    assert dict(choose(10, 1_000, scale=2.0, probe=ROUGH).options) == {
        "sigma": 1.0,
        "samples": 8,
        "lr": 0.1,
    }
    assert dict(choose(100, 50, scale=2.0, probe=ROUGH).options) == {
        "c": 0.2,
        "samples": 2,
        "lr": 0.1,
    }


def test_a_guide_chooses_adaptive_guided_smoothing() -> None:
    def guide(theta: torch.Tensor) -> torch.Tensor:
        return 2 * (theta - 1)

    choice = choose(10, 1_000, scale=1.0, probe=SMOOTH, guide=guide)
    assert choice.method == "guided"
    assert choice.options["guide"] is guide and choice.options["adapt"] is True


def test_auto_is_minimizes_default_and_solves_a_smooth_loss_with_annealing(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="voidgrad.optimize.auto"):
        result = vg.minimize(
            quadratic, torch.zeros(4, dtype=torch.float64), budget=400, progress=False
        )
    assert result.method == "auto" and result.choice is not None
    assert result.choice.method == "annealing" and result.choice.probe.smooth
    assert "chose annealing" in caplog.text and result.choice.reason in caplog.text
    assert result.fun < 1e-8 and result.nevals <= 400
    first = result.history[0]  # the probe is the first step, and counted
    assert first.evals == 7 and first.loss == 4.0
    assert result.choice.budget == 400 - 7
    assert "chose='annealing'" in repr(result)


def test_auto_chooses_smoothing_for_a_piecewise_constant_loss(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="voidgrad.optimize.auto"):
        result = vg.minimize(
            staircase, torch.zeros(3, dtype=torch.float64), budget=800, seed=0, progress=False
        )
    assert result.choice.method == "smoothing" and not result.choice.probe.smooth
    assert result.fun < staircase(torch.zeros(3)) / 10  # it made progress
    assert "did not scale as a smooth loss's" in result.choice.reason
    assert "units of scale=" in caplog.text and "pass scale=" in caplog.text
    assert result.history[0].evals == 7 + 2 * 13  # a budget of 800 affords the scale ladder


def test_auto_probes_a_seeded_loss_for_noise() -> None:
    result = vg.minimize(Noisy(), torch.zeros(3, dtype=torch.float64), budget=400, progress=False)
    assert result.choice.probe.noisy and result.choice.method == "smoothing"
    assert result.history[0].evals == 9  # x0 three times, then the six steps
    assert "noisy" in result.choice.reason


def test_a_budget_too_small_for_the_probe_chooses_without_it() -> None:
    result = vg.minimize(quadratic, torch.zeros(2, dtype=torch.float64), budget=100, progress=False)
    assert result.choice.probe is None and result.choice.method == "smoothing"
    assert result.choice.budget == 100 and result.history[0].evals == 8  # a smoothing step


def chosen_algorithm(dim: int, budget: int, **options: object) -> object:
    """The algorithm auto chose for the staircase from zeros, as the run's last step left it."""
    seen = {}

    def keep(record: object, state: object) -> None:
        seen["algorithm"] = state.algorithm.chosen

    x0 = torch.zeros(dim, dtype=torch.float64)
    vg.minimize(staircase, x0, budget=budget, progress=False, callback=keep, **options)
    return seen["algorithm"]


def test_the_scale_sets_the_chosen_methods_settings_and_lr_overrides_it() -> None:
    algorithm = chosen_algorithm(3, 400, scale=2.0)
    assert algorithm.estimator.sigma0 == 1.0
    assert algorithm.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    algorithm = chosen_algorithm(3, 400, scale=2.0, lr=0.3, lr_schedule=None)
    assert algorithm.optimizer.param_groups[0]["lr"] == 0.3


def test_without_a_scale_x0s_root_mean_square_sets_it() -> None:
    x0 = torch.tensor([3.0, -4.0], dtype=torch.float64)  # rms √12.5
    result = vg.minimize(staircase, x0, budget=400, progress=False)
    assert result.choice.options["sigma"] == pytest.approx(0.5 * math.sqrt(12.5))
    zero = vg.minimize(staircase, torch.zeros(2, dtype=torch.float64), budget=400, progress=False)
    assert zero.choice.options["sigma"] == 0.5  # x0 = 0: scale 1


def whole_and_resumed(fn, x0: torch.Tensor, budget: int, stop_at: int, path) -> tuple:
    """An uninterrupted auto run, and the same run stopped after ``stop_at`` steps and resumed."""
    whole = vg.minimize(fn, x0, budget=budget, seed=2, progress=False)
    stop = lambda record: record.step == stop_at  # noqa: E731
    vg.minimize(fn, x0, budget=budget, seed=2, progress=False, checkpoint=path, callback=stop)
    return whole, vg.minimize(fn, x0, budget=budget, seed=2, progress=False, checkpoint=path)


def test_a_resumed_auto_run_keeps_its_choice_and_ends_where_the_whole_run_does(tmp_path) -> None:
    x0 = torch.zeros(3, dtype=torch.float64)
    whole, resumed = whole_and_resumed(staircase, x0, 400, 10, tmp_path / "auto.ckpt")
    assert resumed.choice.method == whole.choice.method == "smoothing"
    assert repr(resumed.choice.probe) == repr(whole.choice.probe)  # NaN ratios: flat
    assert torch.equal(resumed.x_last, whole.x_last) and resumed.fun == whole.fun
    assert [r.loss for r in resumed.history] == [r.loss for r in whole.history]


def test_a_resumed_auto_run_does_not_probe_again(tmp_path) -> None:
    calls = {"n": 0}

    def fn(x: torch.Tensor) -> float:
        calls["n"] += 1
        return float(((x * 20).round() / 20 - 1).pow(2).sum())

    x0 = torch.zeros(3, dtype=torch.float64)
    path = tmp_path / "auto.ckpt"
    vg.minimize(
        fn,
        x0,
        budget=400,
        seed=2,
        progress=False,
        checkpoint=path,
        callback=lambda record: record.step == 10,
    )
    assert calls["n"] == 7 + 9 * 8  # the probe, then nine smoothing steps
    calls["n"] = 0
    vg.minimize(fn, x0, budget=400, seed=2, progress=False, checkpoint=path)
    assert calls["n"] == 1 + (400 - 79) // 8 * 8  # the best point's check, then the steps left


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"sigma": 0.3},
            ValueError,
            "method='auto' takes the options scale, guide and jac_sparsity; got sigma",
        ),
        ({"scale": 0}, ValueError, "scale must be a finite number > 0"),
        ({"scale": float("nan")}, ValueError, "scale must be a finite number > 0"),
        ({"guide": 3}, TypeError, "guide must be callable"),
    ],
)
def test_bad_auto_options_are_refused_naming_them(options, error, message) -> None:
    with pytest.raises(error, match=message):
        vg.minimize(quadratic, torch.zeros(2), budget=100, progress=False, **options)


def test_a_damaged_probe_in_a_checkpoint_is_refused() -> None:
    state = SMOOTH.state_dict()
    assert Probe.from_state(state) == SMOOTH
    del state["smooth"]
    with pytest.raises(ValueError, match="probe must be a probe's state_dict"):
        Probe.from_state(state)


def test_a_guide_runs_guided_smoothing_through_minimize() -> None:
    def guide(theta: torch.Tensor) -> torch.Tensor:
        return 2 * (theta - 1)  # the exact gradient: a perfect guide

    result = vg.minimize(
        staircase, torch.zeros(4, dtype=torch.float64), budget=800, guide=guide, progress=False
    )
    assert result.choice.method == "guided" and result.choice.options["guide"] is guide
    assert result.fun < staircase(torch.zeros(4)) / 10


def test_the_budgets_defaults_are_the_whole_runs_not_what_the_probe_left() -> None:
    # d = 1 000 at exactly 5 d: the lr decays, though the probe left 5 d - 33 to the method
    algorithm = chosen_algorithm(1000, 5_000)
    assert algorithm.scheduler is not None
    assert algorithm.scheduler.total_iters == (5_000 - 33) // 8


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_probes_and_runs_on_thetas_device() -> None:
    def on_device(x: torch.Tensor) -> torch.Tensor:
        assert x.device.type == "cuda"  # the probe's points and the chosen method's alike
        return ((x * 20).round() / 20 - 1).pow(2).sum()

    x0 = torch.zeros(3, dtype=torch.float64, device="cuda")
    result = vg.minimize(on_device, x0, budget=400, progress=False)
    assert result.choice.method == "smoothing" and result.x_last.device.type == "cuda"


def test_a_resumed_auto_run_that_chose_annealing_replays_it_exactly(tmp_path) -> None:
    x0 = torch.full((3,), 0.5, dtype=torch.float64)
    whole, resumed = whole_and_resumed(quadratic, x0, 300, 30, tmp_path / "auto.ckpt")
    assert resumed.choice.method == whole.choice.method == "annealing"
    assert torch.equal(resumed.x, whole.x) and resumed.fun == whole.fun
    assert resumed.history.column("loss") == whole.history.column("loss")


def test_an_auto_checkpoint_refuses_another_scale(tmp_path) -> None:
    path = tmp_path / "auto.ckpt"
    vg.minimize(
        staircase, torch.zeros(2, dtype=torch.float64), budget=200, progress=False, checkpoint=path
    )
    with pytest.raises(ValueError, match="scale=not given there, 2.0 here"):
        vg.minimize(
            staircase,
            torch.zeros(2, dtype=torch.float64),
            budget=200,
            scale=2.0,
            progress=False,
            checkpoint=path,
        )


def bowl(centre: float):
    """f = mean((x − centre)²): its minimum 0 lies |centre − x0| per coordinate from x0 = 0."""
    return lambda x: float((x - centre).pow(2).mean())


@pytest.mark.parametrize("distance", [0.05, 0.3, 2.0])
def test_the_scale_ladder_measures_the_distance_to_a_bowls_minimum(distance) -> None:
    x0 = torch.zeros(50, dtype=torch.float64)
    steps = scale_steps(x0)
    X = probe_points(x0, probe_step(x0), 0, torch.Generator().manual_seed(1), ladder=True)
    assert X.shape[0] == probe_cost(0, ladder=True) == 7 + 2 * len(steps)
    fn = bowl(distance)
    probe = read_probe(torch.tensor([fn(x) for x in X], dtype=torch.float64), 1e-8, 0, steps)
    assert distance / 2 <= probe.scale <= 2 * distance


def test_without_a_scale_the_smaller_of_x0s_and_the_probes_is_used() -> None:
    x0 = torch.full((4,), 3.0, dtype=torch.float64)  # root-mean-square 3
    near = Probe(33, loss=1.0, step=1e-8, noisy=False, smooth=False, ratios=(1.0,) * 3, scale=0.2)
    assert Auto().scale_for(x0, near) == 0.2
    assert Auto().scale_for(x0, replace(near, scale=10.0)) == 3.0
    assert Auto().scale_for(x0, replace(near, scale=None)) == 3.0
    assert Auto(scale=0.7).scale_for(x0, near) == 0.7


def test_a_given_scale_skips_the_ladder() -> None:
    result = vg.minimize(
        staircase, torch.zeros(3, dtype=torch.float64), budget=800, scale=1.0, progress=False
    )
    assert result.history[0].evals == 7 and result.choice.probe.scale is None
    guessed = vg.minimize(
        staircase, torch.zeros(3, dtype=torch.float64), budget=800, progress=False
    )
    assert guessed.choice.probe.scale is not None
    assert guessed.choice.options["sigma"] == pytest.approx(
        0.5 * min(1.0, guessed.choice.probe.scale)
    )


def per_pixel(x: torch.Tensor) -> torch.Tensor:
    """The staircase's terms, one per coordinate: per-output losses whose sum it is."""
    return ((x * 20).round() / 20 - 1).pow(2)


def test_per_output_losses_with_a_pattern_run_sparse_smoothing_on_their_sum() -> None:
    pattern = torch.eye(6, dtype=torch.bool)  # output i depends on parameter i alone
    x0 = torch.zeros(6, dtype=torch.float64)
    result = vg.minimize(per_pixel, x0, budget=800, jac_sparsity=pattern, progress=False)
    assert result.choice.method == "smoothing" and "per-output" in result.choice.reason
    assert result.choice.options["jac_sparsity"] is pattern
    assert result.fun == pytest.approx(float(per_pixel(result.x).sum()))  # the sum is the loss
    assert result.fun < float(per_pixel(x0).sum()) / 10
    assert result.history[0].loss == 6.0  # the probe's f(x0), summed


def test_a_per_output_loss_below_d_evaluations_runs_sparse_spsa() -> None:
    choice = choose(100, 99, scale=1.0, probe=None, jac_sparsity=torch.eye(100, dtype=torch.bool))
    assert choice.method == "spsa" and "jac_sparsity" in choice.options


def test_a_bad_pattern_is_refused_before_anything_runs() -> None:
    with pytest.raises((TypeError, ValueError), match="jac_sparsity"):
        vg.minimize(per_pixel, torch.zeros(3), budget=100, jac_sparsity="dense", progress=False)


def test_the_probes_helpers_refuse_bad_input_naming_it() -> None:
    x0 = torch.zeros(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="repeats must be an int >= 0"):
        probe_points(x0, 1e-8, -1, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"Y must hold the losses of the probe's 7 rows"):
        read_probe(torch.zeros(6, dtype=torch.float64), 1e-8, 0)
    with pytest.raises(ValueError, match=r"probe's 33 rows, shape \(33,\); got shape \(7, 2\)"):
        read_probe(torch.zeros(7, 2, dtype=torch.float64), 1e-8, 0, scale_steps(x0))


def test_build_algorithm_refuses_a_negative_spent_and_a_step_over_what_is_left() -> None:
    from voidgrad import registry
    from voidgrad.optimize.best import BestPoint
    from voidgrad.optimize.build import build_algorithm

    x0 = torch.zeros(2, dtype=torch.float64)
    common = {
        "evaluator": vg.Evaluator(quadratic),
        "x0": x0,
        "budget": 20,
        "seed": 0,
        "optimizer": "adam",
        "lr": None,
        "lr_schedule": None,
        "best": BestPoint(x0),
    }
    smoothing = registry.method("smoothing")
    with pytest.raises(ValueError, match="spent must be an int >= 0"):
        build_algorithm(smoothing, {}, spent=-1, **common)
    with pytest.raises(ValueError, match=r"budget 20 \(less 13 spent before it\) is too small"):
        build_algorithm(smoothing, {}, spent=13, **common)
