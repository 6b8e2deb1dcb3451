"""The gallery's registry (examples/gallery.py) covers every example, once per picture."""

from __future__ import annotations

import importlib.util
import re
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


def test_the_sparse_texture_example_draws_its_picture_and_lowers_the_loss(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("sparse_texture", EXAMPLES / "sparse_texture.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "texture.png"
    module.main(["--size", "16", "--evaluations", "20", "--seed", "1", "--out", str(out)])
    printed = capsys.readouterr().out
    found = re.search(r"loss (\S+) → (\S+) .* in (\d+) evaluations", printed)
    assert found is not None, printed
    start, answer, evaluations = float(found[1]), float(found[2]), int(found[3])
    assert evaluations == 20
    assert answer < 0.5 * start
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
