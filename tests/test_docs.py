"""The docs: the first pages' complete examples run and do what the text says; every
module has an API page.

The other ``python`` blocks of the guide are fragments (they name the user's ``fn``,
``x0`` or scene); these two are the ten-minute path of a new user, so they are run whole.
"""

from __future__ import annotations

import contextlib
import io
import pkgutil
import re
from pathlib import Path
from typing import Any

import torch

import voidgrad

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


# Documented elsewhere: the command line in the README and `voidgrad --help`; the errors
# on the `voidgrad` page, where they are exported.
NOT_ON_API_PAGES = {"voidgrad.cli", "voidgrad.errors"}


def test_every_module_has_an_api_page() -> None:
    rendered = {
        line.removeprefix("::: ").strip()
        for page in (DOCS / "api").glob("*.md")
        for line in page.read_text().splitlines()
        if line.startswith("::: ")
    }
    modules = {info.name for info in pkgutil.walk_packages(voidgrad.__path__, prefix="voidgrad.")}
    assert modules - rendered == NOT_ON_API_PAGES
