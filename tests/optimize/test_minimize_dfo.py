"""vg.minimize with the derivative-free baselines: budgets, counting, resuming, missing extras."""

from __future__ import annotations

import sys

import pytest
import torch

import voidgrad as vg
from tests.optimize.test_minimize import Counted

METHODS = [
    pytest.param("cma", "cma", id="cma"),
    pytest.param("nevergrad:TwoPointsDE", "nevergrad", id="nevergrad"),
    pytest.param("ga", "nevergrad", id="ga"),
    pytest.param("annealing", "scipy", id="annealing"),
]


@pytest.mark.parametrize(("method", "module"), METHODS)
def test_baselines_stay_within_budget_and_improve(method, module) -> None:
    pytest.importorskip(module)
    fn = Counted()
    x0 = torch.zeros(3, dtype=torch.float64)
    result = vg.minimize(fn, x0, method=method, budget=600, seed=0, progress=False)
    assert result.nevals == fn.calls <= 600
    assert result.history[-1].evals == fn.calls
    assert result.fun < 0.5 * fn(x0) and result.fun == pytest.approx(fn(result.x))
    assert result.x_last.shape == (3,)


def test_cma_resumes_from_its_checkpoint(tmp_path) -> None:
    pytest.importorskip("cma")
    x0 = torch.zeros(3, dtype=torch.float64)
    whole = vg.minimize(Counted(), x0, method="cma", budget=300, seed=2, progress=False)
    path = tmp_path / "cma.ckpt"
    vg.minimize(
        Counted(),
        x0,
        method="cma",
        budget=300,
        seed=2,
        progress=False,
        checkpoint=path,
        callback=lambda record: record.step == 5,
    )
    resumed = vg.minimize(
        Counted(), x0, method="cma", budget=300, seed=2, progress=False, checkpoint=path
    )
    assert resumed.fun == whole.fun and torch.equal(resumed.x, whole.x)
    assert resumed.nevals == whole.nevals


def test_a_missing_extra_names_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cma", None)
    with pytest.raises(ImportError, match=r"pip install 'voidgrad\[bench\]'"):
        vg.minimize(Counted(), torch.zeros(3), method="cma", budget=100, progress=False)


def test_a_budget_below_one_generation_is_an_error() -> None:
    pytest.importorskip("cma")
    with pytest.raises(ValueError, match="too small for one batch of 'cma'"):
        vg.minimize(Counted(), torch.zeros(3), method="cma", budget=2, progress=False)
