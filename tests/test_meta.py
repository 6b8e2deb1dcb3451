"""vg.meta: meta-learned initialisation and step sizes (Metappearance, Meta-SGD)."""

from __future__ import annotations

import hashlib
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.killing import kill_after, start_script
from voidgrad.meta import MetaLearner, MetaRecord
from voidgrad.problems.appearance import FourierMLP, TextureFamily
from voidgrad.run.checkpoint import CheckpointError, run_lock

X = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
Y = torch.randn(8, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def regression(f: nn.Module) -> torch.Tensor:
    return (f(X) - Y).pow(2).mean()


def tiny_model() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)).double()


def central_difference(learner: MetaLearner, tensor: torch.Tensor, index: tuple[int, ...]) -> float:
    h = 1e-6
    values = []
    for sign in (1, -1):
        with torch.no_grad():
            tensor[index] += sign * h
            values.append(float(learner.meta_loss([regression])))
            tensor[index] -= sign * h
    return (values[0] - values[1]) / (2 * h)


@pytest.mark.parametrize(
    ("which", "name", "index"),
    [("init", "0.weight", (1, 0)), ("lr", "2.bias", (0,)), ("lr", "0.weight", (3, 1))],
)
def test_second_order_meta_gradient_matches_finite_differences(
    which: str, name: str, index: tuple[int, ...]
) -> None:
    learner = MetaLearner(tiny_model(), inner_steps=3, inner_lr=0.3)
    learner.meta_loss([regression]).backward()
    tensor = getattr(learner, which)[name]
    assert tensor.grad is not None
    assert float(tensor.grad[index]) == pytest.approx(
        central_difference(learner, tensor, index), rel=1e-6, abs=1e-9
    )


def test_first_order_meta_gradient_is_the_loss_gradient_at_the_adapted_point() -> None:
    learner = MetaLearner(tiny_model(), inner_steps=3, inner_lr=0.3, first_order=True)
    learner.meta_loss([regression]).backward()
    adapted = learner.adapt(regression)
    regression(adapted).backward()
    for (name, value), (_, parameter) in zip(
        learner.init.items(), adapted.named_parameters(), strict=True
    ):
        assert value.grad is not None and parameter.grad is not None
        assert torch.allclose(value.grad, parameter.grad, atol=1e-12), name
    second = MetaLearner(tiny_model(), inner_steps=3, inner_lr=0.3)
    second.meta_loss([regression]).backward()
    assert not torch.allclose(second.init["0.weight"].grad, learner.init["0.weight"].grad)  # type: ignore[arg-type]


def test_adaptation_is_meta_sgd_from_the_initialisation() -> None:
    learner = MetaLearner(tiny_model(), inner_steps=2, inner_lr=0.3)
    assert torch.equal(learner.adapt(regression, steps=0)[0].weight, learner.init["0.weight"])
    manual = tiny_model()
    for _ in range(2):
        manual.zero_grad()
        regression(manual).backward()
        with torch.no_grad():
            for p in manual.parameters():
                p -= 0.3 * p.grad  # type: ignore[operator]
    adapted = learner.adapt(regression)
    for a, b in zip(adapted.parameters(), manual.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-12)
    losses = learner.adaptation_losses(regression)
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_initialization_is_a_copy_at_the_meta_learned_start() -> None:
    learner = MetaLearner(tiny_model(), inner_steps=1, inner_lr=0.3, meta_lr=0.1)
    learner.meta_fit(lambda generator: regression, steps=3, progress=False)
    model = learner.initialization()
    assert model is not learner.model
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, learner.init[name])
        assert not parameter.requires_grad or parameter.grad is None
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # a copy: the learner's θ* is untouched
    assert not torch.equal(next(model.parameters()), learner.init["0.weight"])


def small_texture_model(seed: int) -> FourierMLP:
    return FourierMLP(2, 3, width=32, depth=2, frequencies=8, scale=2.0, seed=seed)


def sgd_errors(task: object, model: nn.Module, steps: int, lr: float) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = task(model)  # type: ignore[operator]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return task.error(model)  # type: ignore[attr-defined]


def test_meta_learned_initialisation_beats_random_init_on_held_out_textures() -> None:
    family = TextureFamily(batch=128)
    learner = MetaLearner(
        small_texture_model(0), inner_steps=3, inner_lr=0.05, meta_batch=4, seed=0
    )
    history = learner.meta_fit(family, steps=60, progress=False)
    assert len(history) == 60
    assert sum(r["meta_loss"] for r in history[-10:]) < sum(r["meta_loss"] for r in history[:10])
    for task in family.held_out(4):
        meta_error = task.error(learner.adapt(task))
        random_error = sgd_errors(task, small_texture_model(1), steps=3, lr=0.05)
        assert meta_error < 0.5 * random_error


def test_fixed_step_sizes_stay_fixed() -> None:
    learner = MetaLearner(
        small_texture_model(0), inner_steps=1, inner_lr=0.05, learn_lr=False, seed=0
    )
    learner.meta_fit(TextureFamily(batch=32), steps=2, progress=False)
    assert all(bool((a == 0.05).all()) for a in learner.lr.values())


def test_saved_state_loads_with_weights_only(tmp_path: Path) -> None:
    family = TextureFamily(batch=32)
    learner = MetaLearner(small_texture_model(0), inner_steps=2, inner_lr=0.05, seed=0)
    learner.meta_fit(family, steps=3, progress=False)
    learner.save(tmp_path / "meta.pt")
    fresh = MetaLearner(small_texture_model(5), inner_steps=2, inner_lr=0.05)
    fresh.load(tmp_path / "meta.pt")
    for name in learner.init:
        assert torch.equal(fresh.init[name], learner.init[name])
        assert torch.equal(fresh.lr[name], learner.lr[name])
    # no temporary file left; the lock file stays (see run_lock)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.pt", "meta.pt.lock"]


def saved_tiny_learner(path: Path, **settings: object) -> MetaLearner:
    learner = MetaLearner(tiny_model(), inner_steps=2, seed=0, **settings)  # type: ignore[arg-type]
    learner.save(path)
    return learner


@pytest.mark.parametrize(
    ("setting", "other"),
    [
        ("inner_steps", 3),
        ("inner_lr", 0.5),
        ("learn_lr", False),
        ("first_order", True),
        ("meta_lr", 0.1),
        ("meta_batch", 2),
    ],
)
def test_load_refuses_a_file_written_with_other_settings(
    tmp_path: Path, setting: str, other: object
) -> None:
    path = tmp_path / "meta.pt"
    saved_tiny_learner(path)
    options: dict[str, object] = {"inner_steps": 2, setting: other}
    learner = MetaLearner(tiny_model(), **options)  # type: ignore[arg-type]
    before = {n: p.detach().clone() for n, p in learner.init.items()}
    with pytest.raises(ValueError, match=rf"^{path} was written by a MetaLearner with {setting}="):
        learner.load(path)
    assert learner.inner_steps == options["inner_steps"]
    assert all(torch.equal(before[n], learner.init[n]) for n in before)  # nothing changed


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 1)).double(),
            r"init\['0.weight'\] has shape \(4, 2\) .* this model's parameter has shape \(5, 2\)",
        ),
        (
            nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)),  # float32
            r"dtype torch.float64; this model's parameter has .* dtype torch.float32",
        ),
        (nn.Sequential(nn.Linear(2, 1)).double(), r"'init' holds parameters \['0.bias'"),
    ],
)
def test_load_refuses_other_shapes_dtypes_and_names(
    tmp_path: Path, model: nn.Module, message: str
) -> None:
    path = tmp_path / "meta.pt"
    saved_tiny_learner(path)
    with pytest.raises(ValueError, match=rf"^{path}: .*{message}"):
        MetaLearner(model, inner_steps=2).load(path)


def test_load_names_a_damaged_file(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    saved_tiny_learner(good)
    damaged = {
        "empty.pt": b"",
        "truncated.pt": good.read_bytes()[: good.stat().st_size // 2],
        "garbage.pt": bytes(range(256)) * 4,
    }
    for name, data in damaged.items():
        (tmp_path / name).write_bytes(data)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    torch.save({"init": {}, "lr": {}, "inner_steps": 2}, tmp_path / "other.pt")
    for name in [*damaged, "list.pt", "other.pt"]:
        path = tmp_path / name
        with pytest.raises(ValueError, match=rf"{path}(:| is not| was)"):
            MetaLearner(tiny_model(), inner_steps=2).load(path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        MetaLearner(tiny_model(), inner_steps=2).load(tmp_path / "missing.pt")


class _PlantsAMarker:
    """Unpickling this runs code: it creates the file ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))  # opening for writing creates the file


def test_load_runs_no_code_from_the_file(tmp_path: Path) -> None:
    path, marker = tmp_path / "evil.pt", tmp_path / "marker"
    learner = saved_tiny_learner(path)
    state = learner.state_dict()
    state["init"]["0.bias"] = _PlantsAMarker(marker)
    torch.save(state, path)
    with pytest.raises(ValueError, match=rf"cannot load {path}: .*nothing in it was run"):
        MetaLearner(tiny_model(), inner_steps=2, seed=0).load(path)
    assert not marker.exists()


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "meta.pt"
    learner = saved_tiny_learner(path)
    saved = path.read_bytes()

    def fail_midway(obj: object, f: object, *args: object, **kwargs: object) -> None:
        if isinstance(f, str | Path):
            f = open(f, "wb")  # noqa: SIM115 (closed below)
        f.write(b"half a file")  # type: ignore[union-attr]
        f.close()  # type: ignore[union-attr]
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        learner.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == saved  # the previous file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.pt", "meta.pt.lock"]


@pytest.mark.parametrize("seed", [-1, 1.5, True, 2**64])
def test_bad_seeds_are_refused(seed: object) -> None:
    # seed=-1 was passed on to manual_seed, which silently takes it as another seed
    with pytest.raises(ValueError, match=r"^seed must be a non-negative int or None; got"):
        MetaLearner(tiny_model(), seed=seed)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"inner_steps": 0}, "inner_steps"),
        ({"inner_lr": 0.0}, "inner_lr"),
        ({"meta_batch": 0}, "meta_batch"),
        ({"model": nn.ReLU()}, "no trainable parameters"),
    ],
)
def test_bad_settings_are_rejected(arguments: dict[str, object], message: str) -> None:
    options: dict[str, object] = {"model": tiny_model()}
    options.update(arguments)
    with pytest.raises(ValueError, match=message):
        MetaLearner(**options)  # type: ignore[arg-type]


def test_bad_tasks_and_calls_are_named() -> None:
    learner = MetaLearner(tiny_model(), inner_steps=1)
    with pytest.raises(ValueError, match="scalar"):
        learner.meta_loss([lambda f: (f(X) - Y).pow(2)])
    with pytest.raises(ValueError, match="scalar"):
        learner.meta_loss([lambda f: 1.0])  # type: ignore[list-item,return-value]
    with pytest.raises(ValueError, match="at least one"):
        learner.meta_loss([])
    with pytest.raises(ValueError, match="steps"):
        learner.meta_fit(TextureFamily(), steps=0)
    with pytest.raises(TypeError, match="task_sampler"):
        learner.meta_fit(3, steps=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="nn.Module"):
        MetaLearner(lambda x: x)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- meta-training runs


def digest(tensors: dict[str, torch.Tensor]) -> str:
    """A hash of named tensors, bit for bit."""
    hashed = hashlib.sha256()
    for name, tensor in tensors.items():
        hashed.update(name.encode())
        hashed.update(tensor.detach().contiguous().numpy().tobytes())
    return hashed.hexdigest()[:32]


def texture_learner(seed: int | None = 3) -> MetaLearner:
    model = FourierMLP(2, 3, width=16, depth=1, frequencies=4, seed=0)
    return MetaLearner(model, inner_steps=2, inner_lr=0.05, meta_lr=1e-2, seed=seed)


def test_a_seeded_meta_fit_is_bit_identical_to_the_one_before_the_run_loop() -> None:
    # Recorded with meta_fit as it was before it ran on the one run loop (commit 39b574c).
    learner = texture_learner()
    history = learner.meta_fit(TextureFamily(batch=32), steps=6, progress=False)
    assert history is learner.history
    assert [(r["step"], r["meta_loss"].hex()) for r in history] == [
        (0.0, "0x1.eae2b20000000p-3"),
        (1.0, "0x1.37fab40000000p-2"),
        (2.0, "0x1.05cb380000000p-2"),
        (3.0, "0x1.b85ece0000000p-3"),
        (4.0, "0x1.a0e3b40000000p-3"),
        (5.0, "0x1.a725ca0000000p-4"),
    ]
    assert digest(learner.init) == "c581f910f12f582353862dc1f92937e2"
    assert digest(learner.lr) == "aa37d8eda1d7027242e0ff6b9eb20654"


def assert_same_learners(a: MetaLearner, b: MetaLearner) -> None:
    assert a.history == b.history
    for name in a.init:
        assert torch.equal(a.init[name], b.init[name]), name
        assert torch.equal(a.lr[name], b.lr[name]), name
    assert torch.equal(a._generator.get_state(), b._generator.get_state())


def test_a_resumed_meta_fit_replays_the_uninterrupted_one(tmp_path: Path) -> None:
    family = TextureFamily(batch=32)
    whole = texture_learner()
    whole.meta_fit(family, steps=6, progress=False)
    path = tmp_path / "meta.ckpt"
    first = texture_learner()
    first.meta_fit(family, steps=6, progress=False, checkpoint=path, callback=lambda r: r.step == 3)
    assert len(first.history) == 3
    resumed = texture_learner(seed=None)  # a learner seeded otherwise is another run
    with pytest.raises(CheckpointError, match="seed=3 there, None here"):
        resumed.meta_fit(family, steps=6, progress=False, checkpoint=path)
    resumed = texture_learner()
    history = resumed.meta_fit(family, steps=6, progress=False, checkpoint=path)
    assert len(history) == 6
    assert_same_learners(resumed, whole)


def test_more_steps_continue_a_finished_meta_fit_exactly(tmp_path: Path) -> None:
    family = TextureFamily(batch=32)
    whole = texture_learner()
    whole.meta_fit(family, steps=5, progress=False)
    path = tmp_path / "meta.ckpt"
    texture_learner().meta_fit(family, steps=2, progress=False, checkpoint=path)
    again = texture_learner()
    again.meta_fit(family, steps=2, progress=False, checkpoint=path)  # finished: restored only
    assert len(again.history) == 2
    longer = texture_learner()
    longer.meta_fit(family, steps=5, progress=False, checkpoint=path)
    assert_same_learners(longer, whole)


def test_the_meta_fit_checkpoint_is_the_run_loops_layout(tmp_path: Path) -> None:
    path = tmp_path / "meta.ckpt"
    learner = texture_learner()
    learner.meta_fit(TextureFamily(batch=32), steps=2, progress=False, checkpoint=path)
    state = torch.load(path, weights_only=True)
    assert (state["format"], state["kind"], state["evaluator"]) == (3, "vg.meta", None)
    assert sorted(state["algorithm"]) == ["generator", "learner", "optimizer"]
    assert state["algorithm"]["optimizer"]["state"]  # Adam's moments travel with the run
    assert torch.equal(state["algorithm"]["generator"], learner._generator.get_state())
    assert state["loop"]["step"] == state["loop"]["spent"] == 2 and state["loop"]["finished"]
    assert [r["step"] for r in state["loop"]["history"]] == [1, 2]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"meta_lr": 0.1}, "meta_lr=0.01 there, 0.1 here"),
        ({"meta_batch": 2}, "meta_batch=4 there, 2 here"),
        ({"seed": 4}, "seed=3 there, 4 here"),
        ({"sampler": TextureFamily.held_out}, "task_sampler has code fingerprint"),
        ({"model": FourierMLP(2, 3, width=8, depth=1, frequencies=4)}, "parameters="),
    ],
)
def test_a_meta_fit_checkpoint_of_another_run_is_refused_naming_the_field(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    path = tmp_path / "meta.ckpt"
    texture_learner().meta_fit(TextureFamily(batch=32), steps=1, progress=False, checkpoint=path)
    settings: dict[str, object] = {"inner_steps": 2, "inner_lr": 0.05, "meta_lr": 1e-2, "seed": 3}
    model = change.pop("model", FourierMLP(2, 3, width=16, depth=1, frequencies=4, seed=0))
    sampler = change.pop("sampler", TextureFamily(batch=32))
    learner = MetaLearner(model, **(settings | change))  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match=f"meta.ckpt was written by another run: {message}"):
        learner.meta_fit(sampler, steps=2, progress=False, checkpoint=path)  # type: ignore[arg-type]


def test_a_damaged_meta_fit_checkpoint_is_named(tmp_path: Path) -> None:
    path = tmp_path / "meta.ckpt"
    texture_learner().meta_fit(TextureFamily(batch=32), steps=1, progress=False, checkpoint=path)
    state = torch.load(path, weights_only=True)
    state["algorithm"]["generator"] = torch.zeros(3)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="meta.ckpt cannot be resumed by this run"):
        texture_learner().meta_fit(
            TextureFamily(batch=32), steps=2, progress=False, checkpoint=path
        )
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="meta.ckpt cannot be read"):
        texture_learner().meta_fit(
            TextureFamily(batch=32), steps=2, progress=False, checkpoint=path
        )
    texture_learner().save(path)  # a learned initialisation is not a training run
    with pytest.raises(CheckpointError, match="meta.ckpt has format 'voidgrad.meta.MetaLearner/1'"):
        texture_learner().meta_fit(
            TextureFamily(batch=32), steps=2, progress=False, checkpoint=path
        )


def test_a_meta_fit_callback_sees_the_records_and_the_run() -> None:
    seen: list[tuple[MetaRecord, int]] = []

    def watch(record: MetaRecord, state: object) -> bool:
        seen.append((record, len(state.algorithm.learner.history)))  # type: ignore[attr-defined]
        return record.step == 2

    learner = texture_learner()
    history = learner.meta_fit(TextureFamily(batch=32), steps=10, progress=False, callback=watch)
    assert [(record.step, size) for record, size in seen] == [(1, 1), (2, 2)]
    assert [r["meta_loss"] for r in history] == [record.meta_loss for record, _ in seen]


def test_save_and_meta_fit_refuse_a_path_in_use(tmp_path: Path) -> None:
    path = tmp_path / "meta.pt"
    learner = texture_learner()
    with run_lock(path):
        with pytest.raises(CheckpointError, match="in use"):
            learner.save(path)
        with pytest.raises(CheckpointError, match="in use"):
            learner.meta_fit(TextureFamily(batch=32), steps=1, progress=False, checkpoint=path)
    assert not path.exists()


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"checkpoint": 7}, TypeError, "checkpoint must be a path"),
        ({"checkpoint_every": 0}, ValueError, "checkpoint_every must be an int >= 1; got 0"),
        ({"callback": 3}, TypeError, "callback must be callable; got int"),
        ({"steps": 1.5}, ValueError, "steps must be an int >= 1; got 1.5"),
    ],
)
def test_bad_meta_fit_arguments_are_named(
    options: dict[str, object], error: type[Exception], message: str
) -> None:
    arguments: dict[str, object] = {"steps": 2, "progress": False} | options
    with pytest.raises(error, match=message):
        tiny = MetaLearner(tiny_model(), inner_steps=1)
        tiny.meta_fit(lambda generator: regression, **arguments)  # type: ignore[arg-type]


KILLED = textwrap.dedent(
    """
    import os, sys, time, torch, voidgrad as vg
    from voidgrad.problems.appearance import FourierMLP, TextureFamily
    def slow(record):  # slow only while it is to be killed; no part of the run
        time.sleep(float(os.environ.get("DELAY", "0")))
    model = FourierMLP(2, 3, width=16, depth=1, frequencies=4, seed=0)
    learner = vg.meta.MetaLearner(model, inner_steps=2, inner_lr=0.05, meta_lr=1e-2, seed=3)
    checkpoint = sys.argv[1] if sys.argv[1] != "-" else None
    history = learner.meta_fit(TextureFamily(batch=32), steps=16, progress=False,
                               checkpoint=checkpoint, checkpoint_every=1, callback=slow)
    torch.save({"init": learner.init, "lr": learner.lr, "history": history,
                "generator": learner._generator.get_state()}, sys.argv[2])
    """
)


def run_killed_script(checkpoint: str, out: Path, delay: float = 0.0) -> subprocess.Popen[bytes]:
    return start_script(KILLED, checkpoint, out, delay)


@pytest.mark.slow  # a subprocess importing torch; the in-process resume tests run by default
def test_a_meta_fit_killed_with_sigkill_resumes_bit_identically(tmp_path: Path) -> None:
    path = tmp_path / "killed.ckpt"
    killed = kill_after(run_killed_script(str(path), tmp_path / "never.pt", delay=0.2), path, 3)
    assert killed["step"] >= 3 and not killed["finished"]  # it really was interrupted mid-run
    assert run_killed_script(str(path), tmp_path / "resumed.pt").wait(timeout=300) == 0
    assert run_killed_script("-", tmp_path / "whole.pt").wait(timeout=300) == 0
    resumed, whole = (
        torch.load(tmp_path / name, weights_only=True) for name in ("resumed.pt", "whole.pt")
    )
    assert resumed["history"] == whole["history"] and len(whole["history"]) == 16
    assert torch.equal(resumed["generator"], whole["generator"])
    for field in ("init", "lr"):
        for name, tensor in whole[field].items():
            assert torch.equal(resumed[field][name], tensor), (field, name)


def test_the_task_generator_is_seeded_and_advanced_by_meta_training() -> None:
    def learner() -> MetaLearner:
        return MetaLearner(nn.Linear(1, 1), inner_steps=1, seed=3)

    first, second = learner(), learner()
    assert torch.equal(first.task_generator.get_state(), second.task_generator.get_state())
    first.meta_fit(
        lambda generator: lambda f: f(torch.rand(1, 1, generator=generator)).pow(2).mean(),
        steps=1,
        progress=False,
    )
    assert not torch.equal(first.task_generator.get_state(), second.task_generator.get_state())
