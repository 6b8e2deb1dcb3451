"""Smoke test of an installed voidgrad wheel (make wheel-smoke): it imports, minimizes, runs.

Run with the fresh venv's Python; it fails if voidgrad comes from anywhere but that venv.
"""

import subprocess
import sys
from pathlib import Path

import torch

import voidgrad as vg

where = Path(vg.__file__).resolve()
if not where.is_relative_to(Path(sys.prefix).resolve()):
    sys.exit(f"voidgrad imported from {where}, not from the venv {sys.prefix}")
result = vg.minimize(
    lambda x: float((x**2).sum()), torch.ones(2), budget=400, lr=0.1, seed=0, progress=False
)
if not result.fun < 0.5:
    sys.exit(f"a tiny vg.minimize did not descend: {result}")
script = Path(sys.executable).with_name("voidgrad")
subprocess.run([str(script), "--help"], check=True, stdout=subprocess.DEVNULL)
print(f"wheel smoke test passed: voidgrad {vg.__version__} from {where.parent}")
