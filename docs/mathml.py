"""MkDocs hook: the pages' LaTeX, written out as MathML at build time.

``pymdownx.arithmatex`` (generic mode, ``mkdocs.yml``) marks ``$...$`` and ``$$...$$`` and
leaves the LaTeX in ``<span class="arithmatex">\\(...\\)</span>`` and
``<div class="arithmatex">\\[...\\]</div>``. This hook replaces the LaTeX inside by the MathML
that ``latex2mathml`` writes for it, so a browser draws the formulas itself, with the
reader's math font (Cambria Math, STIX Two Math, Latin Modern Math): no script, nothing
fetched when a page is read. The wrappers stay, so the theme's styles for display math
(centred, scrolling when wider than the page) apply. Browsers ignore MathML's column
alignment, so the pages write one display formula per line rather than ``align*`` or
``array`` rows.

``latex2mathml`` writes an unknown command as the text ``\\foo`` and an alignment ``&`` outside
an alignment environment as a character, silently; :func:`to_mathml` turns both, and
unbalanced braces, into errors. The hook logs each as a warning naming the page and the
formula, so ``mkdocs build --strict`` fails and the formula stays visible as LaTeX.
"""

from __future__ import annotations

import logging
import re
from html import unescape
from typing import TYPE_CHECKING

from latex2mathml import exceptions
from latex2mathml.commands import FUNCTIONS
from latex2mathml.converter import convert

if TYPE_CHECKING:
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files
    from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.hooks.mathml")

# arithmatex's generic output; its LaTeX is HTML-escaped (&amp;, &lt;, &gt;).
_MARKED = re.compile(
    r'(?P<open><(?P<tag>span|div) class="arithmatex">)'
    r"\\[(\[](?P<latex>.*?)\\[)\]]"
    r"(?P<close></(?P=tag)>)",
    re.DOTALL,
)
# latex2mathml's parse errors (an empty message; the class name says what is wrong).
_PARSE_ERRORS: tuple[type[Exception], ...] = tuple(
    error
    for error in vars(exceptions).values()
    if isinstance(error, type) and issubclass(error, Exception)
)
_LEFTOVER_COMMAND = re.compile(r"\\[A-Za-z]+|\\.")
# \log, \ln, \exp...: latex2mathml writes <mi>log</mi> with no space after it, so
# "\log u" reads "logu"; TeX puts a thin space there unless a bracket or an operator follows.
_FUNCTION_NAME = re.compile(
    r"(<mi>(?:" + "|".join(name.lstrip("\\") for name in FUNCTIONS) + r")</mi>)(?=<m[inrs])"
)
# latex2mathml writes \lvert and \lVert as stretchy bars, which a browser draws as tall as
# the whole formula; | and \| come out as bars of the text's height, as in TeX.
_BARS = {r"\lvert": "|", r"\rvert": "|", r"\lVert": r"\|", r"\rVert": r"\|"}
_BAR_COMMAND = re.compile(r"\\[lr](?:vert|Vert)(?![A-Za-z])")
# `&` that is not the start of an entity: latex2mathml's output for a stray alignment mark.
_BARE_AMPERSAND = re.compile(r"&(?!#x?[0-9A-Fa-f]+;|[A-Za-z]+;)")


def _check_braces(latex: str) -> None:
    depth = 0
    for brace in re.sub(r"\\.", "", latex):
        if brace == "{":
            depth += 1
        elif brace == "}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"latex {latex!r}: a '}}' closes no '{{'")
    if depth:
        raise ValueError(f"latex {latex!r}: {depth} '{{' never closed")


def to_mathml(latex: str, *, display: bool) -> str:
    """The MathML element ``<math display="block|inline">`` for ``latex``.

    Raises:
        ValueError: ``latex`` has unbalanced braces, a command the converter does not know,
            an ``&`` outside ``align*``/``split``/``array``/``cases``/``matrix``, or does not
            parse; the message quotes ``latex``.
    """
    _check_braces(latex)
    latex = _BAR_COMMAND.sub(lambda bar: _BARS[bar.group()] + " ", latex)
    try:
        mathml = convert(latex.strip(), display="block" if display else "inline")
    except _PARSE_ERRORS as error:
        raise ValueError(f"latex {latex!r}: {type(error).__name__} {error}".rstrip()) from error
    unknown = sorted(set(_LEFTOVER_COMMAND.findall(mathml)))
    if unknown:
        raise ValueError(
            f"latex {latex!r}: {', '.join(unknown)} not converted (unknown to latex2mathml, "
            "or escaped inside \\text{})"
        )
    if _BARE_AMPERSAND.search(mathml):
        raise ValueError(
            f"latex {latex!r}: '&' outside an alignment environment "
            "(align*, split, array, cases, matrix)"
        )
    return _FUNCTION_NAME.sub(r'\1<mspace width="0.167em" />', mathml)


def on_page_content(html: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    def replace(match: re.Match[str]) -> str:
        latex = unescape(match["latex"])
        try:
            mathml = to_mathml(latex, display=match["tag"] == "div")
        except ValueError as error:
            log.warning("%s: formula not rendered: %s", page.file.src_path, error)
            return match[0]
        return match["open"] + mathml + match["close"]

    return _MARKED.sub(replace, html)
