"""MkDocs hooks: publish every benchmark report under ``benchmarks/reports/`` as a page.

Each folder ``benchmarks/reports/<name>/`` becomes the page ``benchmarks/<name>/``:
its README.md, then the folder's other Markdown reports (``report*.md``, headings demoted
one level), then every figure the text does not already show, then links to the raw data
files. The figures and data files are copied with it, so the reports stay the single
source: nothing is duplicated in ``docs/``. The pages are appended to the "Benchmarks"
section of the nav, newest folder name first, and the marker ``<!-- reports -->`` in
``benchmarks/index.md`` is replaced by a list of them.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "benchmarks" / "reports"
IMAGES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"}
DATA = {".json", ".csv", ".txt"}
MARKER = "<!-- reports -->"


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
    for folder in _reports():
        base = f"benchmarks/{folder.name}"
        files.append(File.generated(config, f"{base}/index.md", content=_page(folder)))
        for path in sorted(folder.rglob("*")):
            suffix = path.suffix.lower()
            if path.is_file() and (suffix in IMAGES or suffix in DATA):
                rel = path.relative_to(folder).as_posix()
                files.append(File.generated(config, f"{base}/{rel}", abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if MARKER not in markdown:
        return markdown
    items = "".join(f"- [{_title(f)}]({f.name}/index.md)\n" for f in _reports())
    return markdown.replace(MARKER, items or "*(no reports yet)*\n")
