"""The docs: the first pages' complete examples run and do what the text says; every
module has an API page; every formula of the guide renders; the Markdown says what it means.

The other ``python`` blocks of the guide are fragments (they name the user's ``fn``,
``x0`` or scene); these two are the ten-minute path of a new user, so they are run whole.

The formulas are LaTeX between ``$...$`` and ``$$...$$``, which ``pymdownx.arithmatex`` marks
and the hook ``docs/mathml.py`` turns into MathML at build time; the tests below find them as
arithmatex does and convert them with the hook's own function, without building the site.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import pkgutil
import re
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import torch

import voidgrad

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
# The pages a newcomer reads first: their formulas must render.
GUIDE = [DOCS / "index.md", *sorted((DOCS / "guide").glob("*.md"))]
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n.*?^[ \t]*\1[ \t]*$", re.DOTALL | re.MULTILINE)
_CODE_SPAN = re.compile(r"`[^`]*`")
# A ``:::`` line and its indented options: mkdocstrings' YAML, not Markdown.
_AUTODOC = re.compile(r"^::: .*(?:\n[ \t]+\S.*)*", re.MULTILINE)
# Link targets, [text](target) and [text][target]: names, not formulas.
_LINK_TARGET = re.compile(r"\]\([^)]*\)|\]\[[^\]]*\]")
# arithmatex's dollar syntax: $$ blocks on lines of their own, and $...$ with no space
# just inside either dollar.
_DISPLAY_MATH = re.compile(r"^[ \t]*\$\$(.*?)\$\$[ \t]*$", re.DOTALL | re.MULTILINE)
_INLINE_MATH = re.compile(r"(?<![\\$])\$(?![\s$])((?:\\.|[^\\$\n])+?)(?<!\s)\$(?!\$)")
# What a formula written as plain text leaves in the prose: x_{...}, x^{...}, θ_k, \cmd, a $.
_RAW_FORMULA = re.compile(r"_\{|\^\{|[^\W\d_]_[^\W\d_]|\\[A-Za-z]+|\$")


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


def docs_module(name: str) -> ModuleType:
    """``docs/<name>.py``, a module of the build that needs no MkDocs to import."""
    spec = importlib.util.spec_from_file_location(f"docs_{name}", DOCS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def api_pages() -> ModuleType:
    """``docs/api_pages.py``: the estimators page's sections for modules it does not list."""
    return docs_module("api_pages")


def test_every_module_has_an_api_page() -> None:
    pages = api_pages()
    rendered: set[str] = set()
    for page in (DOCS / "api").glob("*.md"):
        markdown = page.read_text()
        if page.relative_to(DOCS).as_posix() == pages.PAGE:
            assert pages.MARKER in markdown  # a new estimator module appears there by itself
            markdown = pages.with_unlisted_estimators(markdown)
        rendered |= pages.rendered_modules(markdown)
    modules = {info.name for info in pkgutil.walk_packages(voidgrad.__path__, prefix="voidgrad.")}
    assert modules - rendered == NOT_ON_API_PAGES


def test_an_estimator_module_the_page_does_not_list_gets_a_section() -> None:
    pages = api_pages()
    page = (DOCS / pages.PAGE).read_text()
    assert "voidgrad.estimators.spsa" not in pages.unlisted_estimator_modules(page)
    without_spsa = page.replace("::: voidgrad.estimators.spsa\n", "")
    unlisted = pages.unlisted_estimator_modules(without_spsa)
    assert set(unlisted) - set(pages.unlisted_estimator_modules(page)) == {
        "voidgrad.estimators.spsa"
    }
    rebuilt = pages.with_unlisted_estimators(without_spsa)
    assert "::: voidgrad.estimators.spsa\n    options:\n      heading_level: 3" in rebuilt
    assert pages.MARKER not in rebuilt


def mathml_hook() -> ModuleType:
    """``docs/mathml.py``, the build's LaTeX-to-MathML hook."""
    return docs_module("mathml")


def split_math(page: Path) -> tuple[list[str], list[str], str]:
    """The display formulas, the inline formulas and the prose left of ``page``, code removed."""
    text = _CODE_SPAN.sub("", _FENCE.sub("", page.read_text(encoding="utf-8")))
    display = _DISPLAY_MATH.findall(text)
    text = _DISPLAY_MATH.sub("", text)
    inline = _INLINE_MATH.findall(text)
    return display, inline, _INLINE_MATH.sub("", text)


def test_the_site_renders_dollar_math_with_the_mathml_hook() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert re.search(r"^  - docs/mathml\.py$", config, re.MULTILINE), "hook not configured"
    arithmatex = re.search(r"^  - pymdownx\.arithmatex:\n((?:      .*\n)+)", config, re.MULTILINE)
    assert arithmatex is not None, "pymdownx.arithmatex not configured"
    options = arithmatex.group(1)
    assert "generic: true" in options  # the LaTeX left as text, for the hook
    assert "inline_syntax: [dollar]" in options and "block_syntax: [dollar]" in options


@pytest.mark.parametrize("page", GUIDE, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_every_formula_of_the_guide_renders(page: Path) -> None:
    to_mathml = mathml_hook().to_mathml
    display, inline, prose = split_math(page)
    for latex in display:
        assert to_mathml(latex, display=True).startswith("<math")
    for latex in inline:
        assert to_mathml(latex, display=False).startswith("<math")
    raw = [m.group() for m in _RAW_FORMULA.finditer(_LINK_TARGET.sub("]", prose))]
    assert not raw, f"formula written as plain text (or a stray $) in {page.name}: {raw}"


def test_the_math_page_is_written_in_latex() -> None:
    display, inline, _ = split_math(DOCS / "guide" / "math.md")
    assert len(display) >= 20 and len(inline) >= 100


def test_a_formula_the_converter_would_garble_is_an_error() -> None:
    to_mathml = mathml_hook().to_mathml
    for latex, error in [
        (r"\notacommand x", r"\\notacommand not converted"),
        (r"\text{stop\_gradient}", r"\\_ not converted"),
        (r"\frac{1}{2", "never closed"),
        (r"x}", "closes no"),
        (r"a &= b", "alignment"),
        ("x^", "MissingSuperScriptOrSubscriptError"),
    ]:
        with pytest.raises(ValueError, match=error):
            to_mathml(latex, display=False)


def test_a_function_name_is_spaced_from_its_argument_as_in_tex() -> None:
    to_mathml = mathml_hook().to_mathml
    thin = '<mspace width="0.167em" />'
    assert f"<mi>log</mi>{thin}<mi>u</mi>" in to_mathml(r"\log u", display=False)
    assert f"<mi>ln</mi>{thin}<msub>" in to_mathml(r"\ln u_k", display=False)
    assert thin not in to_mathml(r"\log(1 - u)", display=False)
    assert thin not in to_mathml(r"\log -x", display=False)


def test_norm_bars_are_as_tall_as_the_text() -> None:
    to_mathml = mathml_hook().to_mathml
    assert to_mathml(r"\lvert x \rvert", display=False) == to_mathml("|x|", display=False)
    assert to_mathml(r"\lVert g \rVert^2", display=False) == to_mathml(r"\|g\|^2", display=False)
    assert 'stretchy="false">&#x02016;' in to_mathml(r"\lVert g \rVert", display=False)


def test_the_hook_writes_mathml_and_reports_what_it_cannot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook = mathml_hook()
    math = '<math xmlns="http://www.w3.org/1998/Math/MathML" display='

    page = SimpleNamespace(file=SimpleNamespace(src_path="guide/x.md"))
    html = (
        '<p><span class="arithmatex">\\(x &lt; \\theta\\)</span></p>'
        '<div class="arithmatex">\\[\\hat g = \\sum_i x_i\\]</div>'
        '<span class="arithmatex">\\(\\oops\\)</span>'
    )
    with caplog.at_level(logging.WARNING, logger="mkdocs.hooks.mathml"):
        out = hook.on_page_content(html, page=page, config=None, files=None)
    assert f'<span class="arithmatex">{math}"inline">' in out
    assert "<mo>&#x0003C;</mo><mi>&#x003B8;</mi>" in out  # &lt; unescaped before converting
    assert f'<div class="arithmatex">{math}"block">' in out
    assert '<span class="arithmatex">\\(\\oops\\)</span>' in out  # left as it was
    assert [r.getMessage() for r in caplog.records] == [
        "guide/x.md: formula not rendered: latex '\\\\oops': \\oops not converted "
        "(unknown to latex2mathml, or escaped inside \\text{})"
    ]


def test_every_list_starts_after_a_blank_line() -> None:
    """Python-Markdown reads a list right after a paragraph as more of the paragraph."""
    merged = []
    for page in sorted(DOCS.rglob("*.md")):
        text = _AUTODOC.sub("", _FENCE.sub("", page.read_text(encoding="utf-8")))
        in_item, previous = False, ""
        for number, line in enumerate(text.splitlines(), 1):
            if re.match(r"\s*(?:[-*+]|\d+\.) ", line):
                if previous.strip() and not in_item:
                    merged.append(f"{page.relative_to(DOCS)}:{number}: {line.strip()[:40]}")
                in_item = True
            elif not line.strip():
                in_item = False
            previous = line
    assert not merged


def test_no_page_points_outside_the_repository() -> None:
    outside = re.compile(r"\.\./shared|\bshared/|/work/|\bresearch/|/home/")
    found = [
        f"{page.relative_to(DOCS)}: {m.group()}"
        for page in sorted(DOCS.rglob("*.md"))
        for m in outside.finditer(page.read_text(encoding="utf-8"))
    ]
    assert not found


def test_the_estimators_page_puts_the_estimators_before_the_internals() -> None:
    text = (DOCS / "api" / "estimators.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^::: voidgrad\.estimators\.(\w+)$", text, re.MULTILINE)
    internals = text.index("\n## Internals: for writing a new estimator\n")
    first_internal = text.index("::: voidgrad.estimators.protocol")
    assert blocks[:3] == ["smoothing", "spsa", "finite_diff"]
    assert internals < first_internal
    for module in ["protocol", "base", "mirrored", "samplers", "control", "distributional"]:
        assert text.index(f"::: voidgrad.estimators.{module}\n") > internals
    for module in ["smoothing", "surrogate", "score", "pathwise", "relaxed", "relax", "arm"]:
        assert text.index(f"::: voidgrad.estimators.{module}\n") < internals
