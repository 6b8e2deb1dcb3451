"""The complete code examples of the docs' first pages run and do what the text says.

The other ``python`` blocks of the guide are fragments (they name the user's ``fn``,
``x0`` or scene); these two are the ten-minute path of a new user, so they are run whole.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

import torch

DOCS = Path(__file__).resolve().parents[1] / "docs"
_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def run_block(page: str, index: int) -> dict[str, Any]:
    """Execute the ``index``-th python block of ``docs/page``; its variables, output muted."""
    blocks = _PYTHON_BLOCK.findall((DOCS / page).read_text())
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(blocks[index], f"docs/{page}", "exec"), namespace)
    return namespace


def test_the_home_page_example_finds_the_square() -> None:
    """Text: "It ends within 0.006 of the target after 2 400 evaluations"."""
    run = run_block("index.md", 0)
    error = (run["theta"].detach() - run["problem"].x_target).abs().max()
    assert error < 0.006
    assert run["loss_fn"].evaluator.stats.evals == 2400


def test_the_wrapping_example_finds_the_disc() -> None:
    """Text: theta ends "close to the target's centre (0.4, 0.5)" from (0.7, 0.6)."""
    run = run_block("guide/wrapping.md", 0)
    torch.testing.assert_close(run["theta"].detach(), torch.tensor([0.4, 0.5]), atol=0.02, rtol=0)
