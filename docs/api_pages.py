"""The estimators' API page lists every estimator module, a new one included.

A new estimator is one file in ``src/voidgrad/estimators/`` plus a registry entry: the
build (``docs/hooks.py``) replaces :data:`MARKER` on ``api/estimators.md`` with a section
for each module the page does not render yet, so the file needs no docs edit to appear.
Needs no MkDocs to import (the tests load it).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ESTIMATORS = ROOT / "src" / "voidgrad" / "estimators"
PAGE = "api/estimators.md"
MARKER = "<!-- estimator modules not listed above -->"


def rendered_modules(markdown: str) -> set[str]:
    """The modules a page renders: its ``::: module`` lines."""
    return {
        line.removeprefix("::: ").strip()
        for line in markdown.splitlines()
        if line.startswith("::: ")
    }


def unlisted_estimator_modules(markdown: str) -> list[str]:
    """The modules of ``voidgrad.estimators`` that ``markdown`` does not render, sorted."""
    modules = sorted(
        f"voidgrad.estimators.{path.stem}"
        for path in ESTIMATORS.glob("*.py")
        if path.stem != "__init__"
    )
    listed = rendered_modules(markdown)
    return [module for module in modules if module not in listed]


def with_unlisted_estimators(markdown: str) -> str:
    """``markdown`` with :data:`MARKER` replaced by a section per unlisted estimator module."""
    blocks = "".join(
        f"::: {module}\n    options:\n      heading_level: 3\n\n"
        for module in unlisted_estimator_modules(markdown)
    )
    return markdown.replace(MARKER, blocks)
