"""MkDocs hooks: the benchmark reports and the gallery, published from where they live.

The estimators' API page gains a section for any estimator module it does not list
(``docs/api_pages.py``).

The gallery page ``gallery/index.md`` is generated from ``examples/gallery.py``'s
``GALLERY`` and the pictures its run left in ``build/gallery/`` (``make docs`` runs it
first); an entry without a picture says why.

Each folder ``benchmarks/reports/<name>/`` becomes the page ``benchmarks/<name>/``:
its README.md, then the folder's other Markdown reports (``report*.md``, headings demoted
one level), then every figure the text does not already show, then links to the raw data
files. The figures and data files are copied with it, so the reports stay the single
source: nothing is duplicated in ``docs/``. The pages are appended to the "Benchmarks"
section of the nav, newest folder name first, and the marker ``<!-- reports -->`` in
``benchmarks/index.md`` is replaced by a list of them.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "benchmarks" / "reports"
IMAGES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"}
DATA = {".json", ".csv", ".txt"}
MARKER = "<!-- reports -->"
GALLERY_SCRIPT = ROOT / "examples" / "gallery.py"
GALLERY_BUILD = ROOT / "build" / "gallery"
API_PAGES_SCRIPT = ROOT / "docs" / "api_pages.py"


def _gallery_entries() -> tuple[Any, ...]:
    spec = importlib.util.spec_from_file_location("voidgrad_gallery", GALLERY_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.GALLERY


def _gallery_page() -> str:
    record = GALLERY_BUILD / "gallery.json"
    outcomes = (
        {o["name"]: o for o in json.loads(record.read_text(encoding="utf-8"))}
        if record.is_file()
        else {}
    )
    text = (
        "# Gallery\n\nEvery picture here was drawn by the example under it, run by "
        "`make docs` with the small settings shown (`examples/gallery.py`); leave them out "
        "for the full run.\n"
    )
    for entry in _gallery_entries():
        command = " ".join(["python", f"examples/{entry.script}", *entry.arguments])
        text += f"\n## {entry.title}\n\n{entry.caption}\n\n```bash\n{command}\n```\n\n"
        outcome = outcomes.get(entry.name)
        if (
            (GALLERY_BUILD / f"{entry.name}.png").is_file()
            and outcome
            and outcome["status"] == "ok"
        ):
            seconds = f"{outcome['seconds']:.0f} s in this build"
            text += f"![{entry.title}]({entry.name}.png)\n\n*{seconds}.*\n"
        else:
            why = (
                "not run"
                if outcome is None
                else f"{outcome['status']}: {outcome['detail'] or 'see the build log'}"
            )
            text += f"*Not drawn in this build ({why.splitlines()[0]}).*\n"
    return text


def _reports() -> list[Path]:
    if not REPORTS.is_dir():
        return []
    folders = [p for p in REPORTS.iterdir() if (p / "README.md").is_file()]
    return sorted(folders, key=lambda p: p.name, reverse=True)


def _title(folder: Path) -> str:
    for line in (folder / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].replace("`", "").strip()
    return folder.name


def _demote(text: str, heading: str) -> str:
    """Replace the first H1 by ``heading`` and push every other heading down one level."""
    out, fence, replaced = [], None, False
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            mark = stripped[:3]
            fence = None if fence == mark else (fence or mark)
        elif fence is None and re.match(r"#{1,5} ", line):
            if line.startswith("# ") and not replaced:
                line, replaced = heading, True
            else:
                line = "#" + line
        out.append(line)
    return "\n".join(out).rstrip() + "\n"


def _page(folder: Path) -> str:
    text = (folder / "README.md").read_text(encoding="utf-8").rstrip() + "\n"
    shown = text
    for extra in sorted(folder.glob("*.md")):
        if extra.name == "README.md":
            continue
        body = extra.read_text(encoding="utf-8")
        shown += body
        text += "\n" + _demote(body, f"## `{extra.name}`")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    figures = [p for p in files if p.suffix.lower() in IMAGES]
    figures = [p for p in figures if f"]({p.relative_to(folder).as_posix()})" not in shown]
    if figures:
        text += "\n## Figures\n"
        for fig in figures:
            rel = fig.relative_to(folder).as_posix()
            text += f"\n`{rel}`\n\n![{rel}]({rel})\n"
    data = [p for p in files if p.suffix.lower() in DATA]
    if data:
        text += "\n## Data files\n\n"
        text += "".join(
            f"- [`{p.relative_to(folder).as_posix()}`]({p.relative_to(folder).as_posix()})\n"
            for p in data
        )
    source = folder.relative_to(ROOT).as_posix()
    text += f"\n---\n\n*Generated at build time from `{source}/`.*\n"
    return text


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    for entry in config.nav or []:
        if isinstance(entry, dict) and "Benchmarks" in entry:
            section = entry["Benchmarks"]
            for folder in _reports():
                page = f"benchmarks/{folder.name}/index.md"
                if not any(isinstance(e, dict) and page in e.values() for e in section):
                    section.append({_title(folder): page})
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, "gallery/index.md", content=_gallery_page()))
    for entry in _gallery_entries():
        picture = GALLERY_BUILD / f"{entry.name}.png"
        if picture.is_file():
            files.append(
                File.generated(config, f"gallery/{entry.name}.png", abs_src_path=str(picture))
            )
    for folder in _reports():
        base = f"benchmarks/{folder.name}"
        files.append(File.generated(config, f"{base}/index.md", content=_page(folder)))
        for path in sorted(folder.rglob("*")):
            suffix = path.suffix.lower()
            if path.is_file() and (suffix in IMAGES or suffix in DATA):
                rel = path.relative_to(folder).as_posix()
                files.append(File.generated(config, f"{base}/{rel}", abs_src_path=str(path)))
    return files


def _api_pages() -> Any:
    spec = importlib.util.spec_from_file_location("voidgrad_api_pages", API_PAGES_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    api_pages = _api_pages()
    if page.file.src_uri == api_pages.PAGE:
        return api_pages.with_unlisted_estimators(markdown)
    if MARKER not in markdown:
        return markdown
    items = "".join(f"- [{_title(f)}]({f.name}/index.md)\n" for f in _reports())
    return markdown.replace(MARKER, items or "*(no reports yet)*\n")
