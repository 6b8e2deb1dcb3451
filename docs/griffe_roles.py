"""A Griffe extension for the docs build: Sphinx roles in docstrings become links.

voidgrad's docstrings are Google style but name other objects with Sphinx roles
(``:class:`~voidgrad.Evaluator```, ``:func:`make```), which Markdown would show as
literal text. Once the package is loaded, each role is resolved as Sphinx would (the
object's own members, then its class's, its module's, then the ``voidgrad`` package) and
rewritten to an autorefs cross-reference to the object's canonical path, displayed as
Sphinx would display it (``~`` keeps the last component). The strict build fails on a
reference that names nothing the docs render, so every role is a checked link. The source
files are not touched.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):`(~?)([^`]+)`")
_PACKAGE = "voidgrad"


def _objects(obj: griffe.Object) -> Iterator[griffe.Object]:
    """``obj`` and every object defined inside it (aliases are documented where they point)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)  # type: ignore[arg-type]


def _scopes(obj: griffe.Object) -> Iterator[str]:
    """Where a relative name in ``obj``'s docstring is looked up, innermost first."""
    scope: griffe.Object | None = obj
    while scope is not None:
        yield scope.path
        scope = scope.parent
    yield _PACKAGE


def _canonical(target: str, obj: griffe.Object, collection: griffe.ModulesCollection) -> str:
    """The canonical path of the object ``target`` names, seen from ``obj``'s docstring."""
    candidates = [target] if target.startswith(f"{_PACKAGE}.") else []
    candidates += [f"{scope}.{target}" for scope in _scopes(obj)]
    for candidate in candidates:
        try:
            found = collection.get_member(candidate)
        except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            continue
        return found.final_target.path if found.is_alias else found.path
    raise ValueError(f"{obj.path}: the docstring role `{target}` names no object")


class SphinxRoles(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        for obj in _objects(pkg):
            if obj.docstring is None:
                continue

            def link(match: re.Match[str], obj: griffe.Object = obj) -> str:
                tilde, target = match.groups()
                target = target.strip()
                shown = target.rsplit(".", 1)[-1] if tilde else target
                return f"[`{shown}`][{_canonical(target, obj, loader.modules_collection)}]"

            obj.docstring.value = _ROLE.sub(link, obj.docstring.value)
