"""The gallery's registry (examples/gallery.py) covers every example, once per picture."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def gallery_entries() -> tuple:
    spec = importlib.util.spec_from_file_location("gallery", EXAMPLES / "gallery.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.GALLERY


def test_every_example_draws_a_gallery_picture():
    scripts = {entry.script for entry in gallery_entries()}
    examples = {path.name for path in EXAMPLES.glob("*.py")} - {"gallery.py"}
    assert scripts == examples


def test_gallery_names_are_unique():
    names = [entry.name for entry in gallery_entries()]
    assert len(names) == len(set(names))
