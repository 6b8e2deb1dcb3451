"""ZeroGrads: the surrogate fits, the unbiased mode is unbiased, state round-trips, bad input."""

from __future__ import annotations

import copy

import pytest
import torch

import voidgrad as vg
from tests.conftest import assert_unbiased, fails_unbiased_check
from voidgrad.estimators.surrogate import MLPSurrogate

A = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
THETA = torch.tensor([0.3, -0.1, 0.8, 0.2], dtype=torch.float64)


def quadratic(x: torch.Tensor) -> float:
    """L(x) = Σ a_i x_i² + x_0 x_1: a Gaussian-smoothed quadratic has the same gradient."""
    return float((A * x**2).sum() + x[0] * x[1])


def exact_gradient(x: torch.Tensor) -> torch.Tensor:
    grad = 2 * A * x
    grad[0] += x[1]
    grad[1] += x[0]
    return grad


def estimates(estimator: vg.ZeroGrads, K: int) -> torch.Tensor:
    loss_fn = vg.blackbox(quadratic, estimator)
    grads = []
    for _ in range(K):
        theta = THETA.clone().requires_grad_(True)
        loss_fn(theta).backward()
        grads.append(theta.grad)
    return torch.stack(grads)


@pytest.mark.parametrize("control_scale", [None, 1.0])
def test_the_unbiased_mode_is_unbiased_while_the_surrogate_learns(control_scale) -> None:
    estimator = vg.ZeroGrads(sigma=0.2, samples=4, control_scale=control_scale, seed=0)
    assert_unbiased(estimates(estimator, 600), exact_gradient(THETA))


def test_the_control_coefficient_grows_as_the_surrogate_learns_the_loss() -> None:
    estimator = vg.ZeroGrads(sigma=0.3, samples=16, fit_steps=10, surrogate_lr=1e-2, seed=1)
    assert estimator.control_coefficient == 0.0  # h ≡ 0 at first: plain smoothing
    betas = []
    for _ in range(80):
        estimates(estimator, 1)
        betas.append(estimator.control_coefficient)
    assert sum(betas[40:]) / 40 > 0.4


def test_the_check_has_power_against_the_plain_surrogate_gradient_early_on() -> None:
    """A barely trained surrogate's own gradient (the biased mode) is far from the truth."""
    estimator = vg.ZeroGrads(sigma=0.2, samples=4, fit_steps=1, unbiased=False, seed=0)
    assert fails_unbiased_check(estimates(estimator, 200), exact_gradient(THETA))


@pytest.mark.parametrize("frame", ["moving", "fixed"])
def test_the_surrogate_gradient_learns_the_loss_gradient(frame) -> None:
    estimator = vg.ZeroGrads(
        sigma=0.3, samples=16, fit_steps=10, surrogate_lr=1e-2, unbiased=False, frame=frame, seed=1
    )
    grads = estimates(estimator, 80)
    late = grads[-10:].mean(0)
    truth = exact_gradient(THETA)
    assert torch.nn.functional.cosine_similarity(late, truth, dim=0) > 0.95


def test_a_zero_output_layer_gives_no_gradient_before_any_fit() -> None:
    estimator = vg.ZeroGrads(sigma=0.2, samples=4, fit_steps=0, unbiased=False, seed=0)
    assert torch.equal(estimates(estimator, 1)[0], torch.zeros(4, dtype=torch.float64))
    random_start = vg.ZeroGrads(
        sigma=0.2, samples=4, fit_steps=0, unbiased=False, zero_output=False, seed=0
    )
    assert estimates(random_start, 1)[0].abs().sum() > 0


def test_the_moving_frame_centres_inputs_on_the_current_parameters() -> None:
    moving = vg.ZeroGrads(sigma=0.2, samples=4, seed=0)
    fixed = vg.ZeroGrads(sigma=0.2, samples=4, frame="fixed", seed=0)
    for estimator in (moving, fixed):
        for theta in (THETA, THETA + 1):
            vg.blackbox(quadratic, estimator)(theta.clone().requires_grad_(True)).backward()
    assert torch.equal(moving._center, THETA + 1) and torch.equal(fixed._center, THETA)


def test_replay_keeps_the_last_steps_samples() -> None:
    estimator = vg.ZeroGrads(sigma=0.2, samples=4, replay=2, seed=2)
    estimates(estimator, 5)
    assert len(estimator._buffer) == 3 and all(x.shape == (4, 4) for x, _ in estimator._buffer)


def test_inner_smoothing_evaluates_away_from_the_fitting_points() -> None:
    seen = []

    def recording(x: torch.Tensor) -> float:
        seen.append(x.clone())
        return quadratic(x)

    estimator = vg.ZeroGrads(sigma=0.2, samples=2, inner_sigma=0.1, seed=3)
    theta = THETA.clone().requires_grad_(True)
    vg.blackbox(recording, estimator)(theta).backward()
    plus, minus = seen
    assert not torch.allclose(plus - THETA, THETA - minus)  # not an exact antithetic pair


def test_state_dict_continues_identically() -> None:
    first = vg.ZeroGrads(sigma=0.2, samples=4, replay=1, seed=4)
    estimates(first, 3)
    second = vg.ZeroGrads(sigma=0.2, samples=4, replay=1, seed=99)
    second.load_state_dict(copy.deepcopy(first.state_dict()))  # as a save and load would
    assert torch.equal(estimates(first, 3), estimates(second, 3))


def test_minimize_resumes_zerograds_bit_for_bit(tmp_path) -> None:
    x0 = torch.zeros(4, dtype=torch.float64)
    options = {"method": "zerograds", "budget": 320, "seed": 5, "progress": False, "sigma": 0.2}
    whole = vg.minimize(quadratic, x0, **options)
    path = tmp_path / "zg.ckpt"
    vg.minimize(quadratic, x0, checkpoint=path, callback=lambda r: r.step == 7, **options)
    resumed = vg.minimize(quadratic, x0, checkpoint=path, **options)
    assert torch.equal(resumed.x_last, whole.x_last) and resumed.fun == whole.fun


def test_large_inputs_get_a_low_rank_first_layer() -> None:
    full = MLPSurrogate(1000, width=64)
    low = MLPSurrogate(200_000, width=64, rank=8)
    assert sum(p.numel() for p in low.first.parameters()) == 200_000 * 8 + 8 * 64 + 64
    assert sum(p.numel() for p in full.first.parameters()) == 1000 * 64 + 64
    estimator = vg.ZeroGrads(sigma=0.1, samples=2, rank=8, low_rank_above=4096, seed=0)
    theta = torch.zeros(5000, requires_grad=True)
    vg.blackbox(lambda x: float((x**2).sum()), estimator)(theta).backward()
    assert isinstance(estimator.surrogate, MLPSurrogate) and len(estimator.surrogate.first) == 2


def test_positional_encoding_widens_the_input() -> None:
    surrogate = MLPSurrogate(3, width=8, encoding_levels=2)
    assert surrogate.first[0].in_features == 3 * 5
    assert surrogate(torch.zeros(4, 3)).shape == (4,)


def test_a_vector_output_is_refused_with_a_suggestion() -> None:
    estimator = vg.ZeroGrads(sigma=0.1, samples=2)
    with pytest.raises(ValueError, match="ZeroGrads needs a scalar loss.*use vg.GaussianSmoothing"):
        vg.blackbox(lambda x: x * 2, estimator)(torch.zeros(3, requires_grad=True))


def test_one_trajectory_at_a_time() -> None:
    with pytest.raises(ValueError, match="one surrogate per optimization"):
        vg.blackbox(quadratic, vg.ZeroGrads(sigma=0.1, samples=2))(
            torch.zeros(2, 4, requires_grad=True)
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigma": 0}, "sigma must be a finite number > 0"),
        ({"samples": 3}, "samples must be even"),
        ({"fit_steps": -1}, "fit_steps must be an int >= 0"),
        ({"replay": 1.5}, "replay must be an int >= 0"),
        ({"inner_sigma": -0.1}, "inner_sigma must be a number >= 0"),
        ({"surrogate_lr": 0}, "surrogate_lr must be a finite number > 0"),
        ({"frame": "absolute"}, "frame must be 'moving' or 'fixed'"),
        ({"control_scale": float("nan")}, "control_scale must be a finite number or None"),
        # The default network's options, checked before the first (evaluating) step.
        ({"rank": 0}, "rank must be an int >= 1; got 0"),
        ({"low_rank_above": 0}, "low_rank_above must be an int >= 1"),
        ({"width": 2.5}, "width must be an int >= 1"),
        ({"depth": 0}, "depth must be an int >= 1"),
        ({"encoding_levels": -1}, "encoding_levels must be an int >= 0"),
        ({"activation": "gelu"}, "activation must be one of"),
    ],
)
def test_bad_arguments(kwargs, message) -> None:
    arguments = {"sigma": 0.1, "samples": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        vg.ZeroGrads(**arguments)


def test_bad_network_options() -> None:
    with pytest.raises(ValueError, match="activation must be one of"):
        MLPSurrogate(3, activation="gelu")
    with pytest.raises(ValueError, match="rank must be a positive int or None"):
        MLPSurrogate(3, rank=0)


def test_a_schedule_anneals_sigma_and_the_moving_frame_follows_it() -> None:
    schedule = vg.LinearAnneal(0.05, total_steps=4)
    estimator = vg.ZeroGrads(sigma=0.2, samples=4, schedule=schedule, seed=0)
    loss_fn = vg.blackbox(quadratic, estimator)
    for _ in range(4):
        loss_fn(THETA.clone().requires_grad_(True)).backward()
        estimator.step()
    assert estimator.sigma == pytest.approx(0.05) and estimator.input_scale == pytest.approx(0.05)
    fixed = vg.ZeroGrads(sigma=0.2, samples=4, schedule=schedule, frame="fixed")
    fixed.steps = 4
    assert fixed.sigma == pytest.approx(0.05) and fixed.input_scale == pytest.approx(0.2)
    with pytest.raises(ValueError, match="must not exceed sigma"):
        vg.ZeroGrads(sigma=0.01, schedule=schedule)


def test_a_fixed_control_scale_is_the_reported_coefficient() -> None:
    assert vg.ZeroGrads(sigma=0.1, control_scale=0.25).control_coefficient == 0.25


def test_a_given_surrogate_leaves_the_sampled_offsets_as_they_were() -> None:
    """The default network's seed is drawn up front, so a paired comparison sees one stream."""
    theta = torch.zeros(1, 3)
    default = vg.ZeroGrads(sigma=0.1, seed=5).ask(theta).inputs
    given = vg.ZeroGrads(sigma=0.1, seed=5, surrogate=MLPSurrogate(3)).ask(theta).inputs
    assert torch.equal(default, given)


# -- the reference code's options (inputs, targets, order, theta_steps, activate_output) --------


def ask_tell(estimator: vg.ZeroGrads, theta: torch.Tensor):
    """One hand-driven step at ``theta``: the query, the values, the estimate (not updated)."""
    query = estimator.ask(theta[None])
    values = torch.tensor([[quadratic(x) for x in query.inputs[0]]], dtype=theta.dtype)
    return query, values, estimator.tell(query, values)


def reference(**options) -> vg.ZeroGrads:
    """The reference mode with the reference code's input and target options."""
    return vg.ZeroGrads(
        sigma=0.2, samples=4, unbiased=False, inputs="raw", targets="raw", seed=0, **options
    )


def surrogate_gradient(network: torch.nn.Module, theta: torch.Tensor) -> torch.Tensor:
    """∇_θ h(θ) by autograd, h read on raw inputs and targets."""
    x = theta.detach().clone().to(torch.float32).requires_grad_(True)
    (grad,) = torch.autograd.grad(network(x[None]).sum(), x)
    return grad.to(theta.dtype)


def adam_fitted(network: torch.nn.Module, inputs, targets, steps: int, lr: float):
    """A copy of ``network`` after ``steps`` Adam steps on MSE(h(inputs), targets)."""
    network = copy.deepcopy(network)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(network(inputs), targets).backward()
        optimizer.step()
    return network


def test_raw_inputs_feed_the_points_themselves_and_input_scale_divides_them() -> None:
    for input_scale, divisor in ((None, 1.0), (4.0, 4.0)):
        estimator = reference(frame="moving", input_scale=input_scale)
        query, _, estimate = ask_tell(estimator, THETA)
        expected = (query.inputs[0] / divisor).to(torch.float32)
        torch.testing.assert_close(estimate.fit.inputs, expected, rtol=0, atol=0)


def test_raw_targets_are_the_losses_themselves_with_replay() -> None:
    estimator = reference(replay=1, frame="moving")
    _, first, estimate = ask_tell(estimator, THETA)
    estimator.update(estimate)
    _, second, estimate = ask_tell(estimator, THETA + 0.5)
    expected = torch.cat([first[0], second[0]]).to(torch.float32)
    torch.testing.assert_close(estimate.fit.targets, expected, rtol=0, atol=0)
    assert estimator._standardization.scale == 1.0 and estimator._standardization.shift == 0.0


def test_fit_first_reads_the_surrogate_after_the_fit_and_step_first_before() -> None:
    for order in ("fit-first", "step-first"):
        estimator = reference(order=order)
        estimator.update(ask_tell(estimator, THETA)[2])  # a first fit, so h is not trivial
        _, _, estimate = ask_tell(estimator, THETA + 0.1)
        before = surrogate_gradient(estimator.surrogate, THETA + 0.1)
        estimator.update(estimate)
        after = surrogate_gradient(estimator.surrogate, THETA + 0.1)
        gradient = estimate.vjp(torch.ones(1, dtype=torch.float64))[0][0]
        assert not torch.allclose(before, after)
        torch.testing.assert_close(gradient, before if order == "step-first" else after)


def test_theta_steps_reuse_one_batch_and_fit_it_once_in_the_reference_order() -> None:
    for order in ("fit-first", "step-first"):
        estimator = reference(order=order, theta_steps=3, fit_steps=2, surrogate_lr=1e-2)
        _, _, first = ask_tell(estimator, THETA)
        initial = copy.deepcopy(estimator.surrogate)
        fitted = adam_fitted(initial, first.fit.inputs, first.fit.targets, 2, 1e-2)
        estimator.update(first)
        generator = estimator._generator.get_state()
        for theta in (THETA + 0.1, THETA + 0.2):
            reused, _, estimate = ask_tell(estimator, theta)
            assert reused.inputs.shape == (1, 0, 4) and estimate.value == first.value
            # step-first: all three steps follow the surrogate before the batch's fit
            network = initial if order == "step-first" else fitted
            gradient = estimate.vjp(torch.ones(1, dtype=torch.float64))[0][0]
            torch.testing.assert_close(gradient, surrogate_gradient(network, theta))
            estimator.update(estimate)
        assert torch.equal(estimator._generator.get_state(), generator)  # nothing drawn
        for mine, theirs in zip(estimator.surrogate.parameters(), fitted.parameters(), strict=True):
            torch.testing.assert_close(mine, theirs)
        assert ask_tell(estimator, THETA)[0].inputs.shape == (1, 4, 4)  # the next batch samples


def test_theta_steps_state_round_trips_in_the_middle_of_a_batch() -> None:
    first = reference(order="step-first", theta_steps=3)
    first.update(ask_tell(first, THETA)[2])
    second = reference(order="step-first", theta_steps=3)
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    for theta in (THETA + 0.1, THETA + 0.2, THETA + 0.3, THETA + 0.4):
        estimates = [ask_tell(estimator, theta)[2] for estimator in (first, second)]
        gradients = [e.vjp(torch.ones(1, dtype=torch.float64))[0] for e in estimates]
        assert torch.equal(*gradients) and torch.equal(estimates[0].value, estimates[1].value)
        for estimator, estimate in zip((first, second), estimates, strict=True):
            estimator.update(estimate)


def test_a_batch_must_be_updated_in_order() -> None:
    estimator = reference(theta_steps=2)
    estimator.update(ask_tell(estimator, THETA)[2])
    _, _, estimate = ask_tell(estimator, THETA)
    estimator.update(estimate)
    again = copy.copy(estimate)  # the batch's last estimate, as if it had not been used
    again.used = False
    with pytest.raises(ValueError, match="must be updated in the order"):
        estimator.update(again)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"inputs": "centred"}, "inputs must be 'relative' or 'raw'; got 'centred'"),
        ({"targets": "log"}, "targets must be 'standardized' or 'raw'; got 'log'"),
        ({"order": "fit"}, "order must be 'fit-first' or 'step-first'; got 'fit'"),
        ({"theta_steps": 0, "unbiased": False}, "theta_steps must be an int >= 1"),
        ({"theta_steps": 2}, "theta_steps > 1 needs unbiased=False"),
    ],
)
def test_bad_reference_options(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        vg.ZeroGrads(sigma=0.1, samples=4, **kwargs)
    with pytest.raises(TypeError, match="activate_output must be True or False; got 1"):
        vg.ZeroGrads(sigma=0.1, activate_output=1)


def test_an_activated_output_is_the_activation_of_the_last_layer() -> None:
    torch.manual_seed(0)
    network = MLPSurrogate(3, width=8, depth=2, zero_output=False, activate_output=True)
    u = torch.randn(5, 3)
    hidden = torch.nn.functional.leaky_relu(network.first(u))
    hidden = torch.nn.functional.leaky_relu(network.hidden[0](hidden))
    expected = torch.nn.functional.leaky_relu(network.out(hidden)).squeeze(-1)
    torch.testing.assert_close(network(u), expected, rtol=0, atol=0)
    assert (network.out(hidden).squeeze(-1) < 0).any()  # the activation changes something


# -- as_guide and observe -----------------------------------------------------------------------


def test_the_guide_is_the_surrogate_gradient_at_theta() -> None:
    estimator = vg.ZeroGrads(sigma=0.2, samples=4, seed=0, zero_output=False)
    guide = estimator.as_guide()
    assert torch.equal(guide(THETA), torch.zeros(4, dtype=torch.float64))  # not fitted yet
    for theta in (THETA, THETA + 0.3):
        estimates(estimator, 1)
        x = theta.clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(estimator.predict(x[None]).sum(), x)
        vector = guide(theta)
        assert vector.shape == (4,) and vector.dtype == torch.float64 and not vector.requires_grad
        torch.testing.assert_close(vector, expected)
        assert guide(theta.float()).dtype == torch.float32


def test_the_guide_evaluates_nothing_and_trains_nothing() -> None:
    estimator = vg.ZeroGrads(sigma=0.2, samples=4, seed=0)
    evaluator = vg.Evaluator(quadratic)
    loss_fn = vg.blackbox(quadratic, estimator, evaluator=evaluator)
    loss_fn(THETA.clone().requires_grad_(True)).backward()
    spent, weights = evaluator.stats.evals, copy.deepcopy(estimator.surrogate.state_dict())
    with torch.no_grad():  # as GuidedSmoothing may call it
        estimator.as_guide()(THETA)
    assert evaluator.stats.evals == spent
    assert all(torch.equal(w, estimator.surrogate.state_dict()[k]) for k, w in weights.items())


def test_observe_fits_others_samples_as_update_fits_its_own() -> None:
    own = reference(replay=1)
    other = reference(replay=1)
    for theta in (THETA, THETA + 0.2):
        query, values, estimate = ask_tell(own, theta)
        own.update(estimate)
        points = torch.cat([query.inputs[0], theta[None]])  # a failed evaluation is dropped
        other.observe(points, torch.cat([values[0], torch.tensor([float("nan")]).double()]))
    for mine, theirs in zip(own.surrogate.parameters(), other.surrogate.parameters(), strict=True):
        assert torch.equal(mine, theirs)


def test_observe_centres_the_moving_frame_on_the_points() -> None:
    estimator = vg.ZeroGrads(sigma=0.2, samples=4, seed=0)
    points = torch.stack([THETA + 0.1, THETA - 0.1])
    estimator.observe(points, torch.tensor([1.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(estimator._center, THETA)


def test_observe_refuses_what_is_not_a_batch_of_scalar_losses() -> None:
    estimator = vg.ZeroGrads(sigma=0.2, samples=4)
    with pytest.raises(ValueError, match=r"y must be a tensor of scalar losses \[n\] = \[2\]"):
        estimator.observe(torch.zeros(2, 3), torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"x must be a floating tensor of points \[n, d\]"):
        estimator.observe(torch.zeros(3), torch.zeros(3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_the_reference_options_and_the_guide_run_on_the_device_of_theta() -> None:
    theta = THETA.cuda()
    on_device = reference(order="step-first", theta_steps=2)
    for _ in range(3):
        query = on_device.ask(theta[None])
        values = query.inputs[0].sub(1).pow(2).sum(-1)[None]
        estimate = on_device.tell(query, values)
        assert estimate.vjp(torch.ones(1, device="cuda"))[0].device.type == "cuda"
        on_device.update(estimate)
    assert next(on_device.surrogate.parameters()).device.type == "cuda"
    assert on_device.as_guide()(theta).device.type == "cuda"
    guided = vg.GuidedSmoothing(0.1, 8, guide=on_device.as_guide(), seed=0)
    x = theta.clone().requires_grad_(True)
    vg.blackbox(lambda p: (p - 1).pow(2).sum(), guided)(x).backward()
    assert x.grad is not None and x.grad.device.type == "cuda"


# ------------------------------------------------------------ replay="auto" and the fit's R²


def test_auto_replay_keeps_enough_steps_for_2d_samples_within_the_memory_cap() -> None:
    auto = vg.ZeroGrads(sigma=0.1, samples=4, replay="auto")
    assert auto.replay_steps(20, 4) == 9  # ⌈40/4⌉ − 1: 40 samples with this step's
    assert auto.replay_steps(3, 8) == 1  # ⌈6/4⌉ − 1
    assert auto.replay_steps(35_152, 4) == 2**28 // (4 * 35_152 * 4)  # the cap: 477
    capped = vg.ZeroGrads(sigma=0.1, samples=4, replay="auto", replay_bytes=4 * 20 * 4 * 3)
    assert capped.replay_steps(20, 4) == 3
    assert vg.ZeroGrads(sigma=0.1, samples=4, replay=5).replay_steps(20, 4) == 5


def test_auto_replay_fits_on_the_recent_steps_it_sizes() -> None:
    d, sizes = 6, []
    zerograds = vg.ZeroGrads(sigma=0.1, samples=4, replay="auto", seed=0)  # 2 earlier steps
    theta = torch.zeros(1, d, dtype=torch.float64)
    for _ in range(5):
        query = zerograds.ask(theta)
        estimate = zerograds.tell(query, query.inputs.pow(2).sum(-1))
        sizes.append(estimate.fit.inputs.shape[0])
        zerograds.update(estimate)
    assert sizes == [4, 8, 12, 12, 12]


def test_bad_replay_options_are_refused() -> None:
    with pytest.raises(ValueError, match="replay must be an int >= 0 or 'auto'; got 'all'"):
        vg.ZeroGrads(sigma=0.1, replay="all")
    with pytest.raises(ValueError, match="replay_bytes"):
        vg.ZeroGrads(sigma=0.1, replay="auto", replay_bytes=0)


def test_r2_is_the_centred_out_of_sample_fit_of_h_before_this_steps_fit() -> None:
    zerograds = vg.ZeroGrads(sigma=0.3, samples=8, seed=0)
    theta = torch.tensor([[0.5, -0.2, 1.0]], dtype=torch.float64)
    r2 = []
    for _ in range(60):
        query = zerograds.ask(theta)
        y = query.inputs.pow(2).sum(-1)
        if zerograds._center is not None:  # replay by hand, from the surrogate as it stands
            h = zerograds.predict(query.inputs[0]).detach()
            yc, hc = y[0] - y[0].mean(), h - h.mean()
            expected = float(1 - (yc - hc).pow(2).sum() / yc.pow(2).sum())
        estimate = zerograds.tell(query, y)
        if zerograds._center is None:
            assert estimate.stats["r2"] == 0.0  # the zero-initialized output: a constant h
        else:
            assert estimate.stats["r2"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
        r2.append(estimate.stats["r2"])
        zerograds.update(estimate)
    assert sum(r2[-10:]) / 10 > 0.5  # a quadratic is learned (measured: about 0.9)


def test_minimize_keeps_the_surrogate_r2_in_the_history() -> None:
    def loss(x: torch.Tensor) -> float:
        return float((x - 1).pow(2).sum())

    result = vg.minimize(loss, [0.0, 0.0], method="zerograds", budget=40, progress=False)
    column = result.history.column("surrogate_r2")
    assert len(column) == 10 and all(isinstance(value, float) for value in column)
    plain = vg.minimize(loss, [0.0, 0.0], method="smoothing", budget=40, progress=False)
    assert set(plain.history.column("surrogate_r2")) == {None}
