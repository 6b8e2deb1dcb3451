"""A Griffe extension for the docs build: Sphinx roles in docstrings become code spans.

voidgrad's docstrings are Google style but name other objects with Sphinx roles
(``:class:`~voidgrad.Evaluator```, ``:func:`make```), which Markdown would show as
literal text. This rewrites each role to a code span of the name as Sphinx would display
it (``~`` keeps the last component), without touching the source files.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):`(~?)([^`]+)`")


def _display(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    target = target.strip()
    if tilde:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_display, obj.docstring.value)
