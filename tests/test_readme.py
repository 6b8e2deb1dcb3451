"""The README: every ``python`` block runs as written, each in a fresh interpreter.

A block is a whole program (its imports, its data), so a newcomer can paste it. A block
that needs an optional extra names it (``pip install "voidgrad[rl]"``) and is skipped
where that extra is not installed. Blocks slower than the quickstart ones (over ~6 s)
are marked ``slow`` (``make test-all``); the README states their runtime.

Most of a quick block's 5 s is starting Python and importing torch, so the default run
runs the quick blocks one after another in one interpreter, each in a namespace of its
own (a missing import still fails); ``make test-all`` runs every block in an interpreter
of its own.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import resource
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

_EXTRA = re.compile(r"voidgrad\[([\w,]+)\]")

# Blocks of more than ~6 s (the others: 5–6 s, most of it importing torch), by a line of
# their code; measured on 2 idle cores, and the README says how long they take.
SLOW = {
    "for method in [",  # four methods, 16 000 evaluations: ~27 s
    "task = vg.problems.SupershapeMatching",  # 200 adversarial steps: ~32 s
    "family = vg.problems.TextureFamily",  # 50 second-order meta steps: ~9 s
    "result = vg.rl.train",  # 10 000 CartPole steps: ~8 s
}
# A hang guard only: the limit that matters is the block's CPU time, which a busy
# machine does not inflate.
WALL_LIMIT_S = 600
CPU_LIMIT_S = 120


def fenced_blocks(text: str) -> list[tuple[str, str, str]]:
    """(language, code, the heading above it) of each fenced block of a Markdown text."""
    blocks: list[tuple[str, str, str]] = []
    heading, language, lines = "top", None, []
    for line in text.splitlines(keepends=True):
        if language is None and line.startswith("```"):
            language, lines = line[3:].strip(), []
        elif language is None and line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.startswith("```"):
            blocks.append((language or "", "".join(lines), heading))
            language = None
        elif language is not None:
            lines.append(line)
    return blocks


def python_blocks(text: str) -> list[tuple[str, str]]:
    """(id, code) of each ``python`` block; the id is its number and the heading above it."""
    blocks = [
        (code, heading) for language, code, heading in fenced_blocks(text) if language == "python"
    ]
    return [(f"{i} {heading}", code) for i, (code, heading) in enumerate(blocks, 1)]


def extras_named(code: str) -> set[str]:
    return {extra for group in _EXTRA.findall(code) for extra in group.split(",")}


def requirement_name(requirement: str) -> str:
    """The distribution a requirement such as ``"ray>=2.9"`` names, lower case."""
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()


def missing_requirements(extras: set[str]) -> list[str]:
    """The requirements of ``extras`` (from pyproject.toml) that are not installed."""
    missing = []
    for extra in sorted(extras):
        for requirement in PYPROJECT["optional-dependencies"][extra]:
            name = requirement_name(requirement)
            try:
                importlib.metadata.distribution(name)
            except importlib.metadata.PackageNotFoundError:
                missing.append(f"{name} (voidgrad[{extra}])")
    return missing


def _case(block: tuple[str, str]) -> object:
    block_id, code = block
    marks = [pytest.mark.slow] if any(code_key in code for code_key in SLOW) else []
    return pytest.param(code, id=block_id, marks=marks)


BLOCKS = python_blocks(README)


def run_python(arguments: list[str], cwd: Path) -> float:
    """Run ``python *arguments`` in ``cwd``; fail with its stderr unless it succeeds.

    Returns the CPU seconds it took.
    """
    # One thread, as in conftest.py: the blocks' tensors are small, and on a busy machine
    # several threads are slower, not faster.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = subprocess.run(
        [sys.executable, *arguments],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=WALL_LIMIT_S,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert run.returncode == 0, f"a block failed:\n{run.stderr[-3000:]}"
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


@pytest.mark.slow
@pytest.mark.parametrize("code", [_case(block) for block in BLOCKS])
def test_the_block_runs(code: str, tmp_path: Path) -> None:
    missing = missing_requirements(extras_named(code))
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    (tmp_path / "block.py").write_text(code)
    cpu = run_python(["block.py"], tmp_path)
    assert cpu < CPU_LIMIT_S, f"the block took {cpu:.0f} s of CPU (README promises < 2 min)"


_RUN_EACH = """
import runpy, sys
for path in sys.argv[1:]:
    print(path, flush=True)  # the failing block is the last one named
    runpy.run_path(path, run_name="__main__")
"""


def test_the_quick_blocks_run_in_one_interpreter(tmp_path: Path) -> None:
    """Every quick block, in order, each as ``__main__`` in a fresh namespace."""
    paths = []
    for number, (_, code) in enumerate(BLOCKS, 1):
        if any(code_key in code for code_key in SLOW) or missing_requirements(extras_named(code)):
            continue
        path = tmp_path / f"block_{number}.py"
        path.write_text(code)
        paths.append(path.name)
    assert paths, "the README has no quick block"
    (tmp_path / "run_each.py").write_text(_RUN_EACH)
    cpu = run_python(["run_each.py", *paths], tmp_path)
    assert cpu < CPU_LIMIT_S * len(paths)


def test_the_readme_opens_with_the_home_page_example() -> None:
    """The first block is docs/index.md's complete example, word for word."""
    home = python_blocks((ROOT / "docs" / "index.md").read_text())
    assert BLOCKS[0][1] == home[0][1]


def test_a_fresh_machine_is_set_up_with_make_demo_and_make_test() -> None:
    """The project rule: the first shell block is exactly these two commands."""
    first_shell = next(code for language, code, _ in fenced_blocks(README) if language == "bash")
    commands = [line.split("#")[0].strip() for line in first_shell.splitlines()]
    assert [command for command in commands if command] == ["make demo", "make test"]


def test_every_block_names_the_extras_its_imports_need() -> None:
    """An import outside the standard library and the core needs the extra named in the block."""
    core = {requirement_name(r) for r in PYPROJECT["dependencies"]}
    distributions = importlib.metadata.packages_distributions()
    for block_id, code in BLOCKS:
        allowed = core | {"voidgrad"}
        for extra in extras_named(code):
            allowed |= {requirement_name(r) for r in PYPROJECT["optional-dependencies"][extra]}
        for module in imported_modules(code):
            if module in sys.stdlib_module_names:
                continue
            names = {name.lower() for name in distributions.get(module, [module])}
            assert names & allowed, f"{block_id}: imports {module} without naming its extra"


def imported_modules(code: str) -> set[str]:
    """Top-level names of the modules a block imports."""
    modules = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module.split(".")[0])
    return modules


def test_every_slow_entry_names_a_block() -> None:
    """SLOW cannot go stale: each entry still matches a block of the README."""
    for code_key in SLOW:
        assert any(code_key in code for _, code in BLOCKS), f"no README block has {code_key!r}"


_LINK = re.compile(r"\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_reaches_a_file_and_heading() -> None:
    """The README's links into docs/ work on GitHub: the file exists, and so does the anchor."""
    for target in _LINK.findall(README):
        if "://" in target:
            continue
        path, _, anchor = target.partition("#")
        assert (ROOT / path).is_file(), f"the README links to {path}, which does not exist"
        if anchor:
            headings = [
                line.lstrip("#")
                for line in (ROOT / path).read_text().splitlines()
                if line.startswith("#")
            ]
            assert anchor in {github_anchor(h) for h in headings}, f"no heading #{anchor} in {path}"
