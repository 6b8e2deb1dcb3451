"""Real external engines as black boxes: :mod:`~voidgrad.integrations.mitsuba` (Mitsuba 3).

Each module imports its engine lazily, so ``import voidgrad`` never needs it;
using one without its extra installed raises an ImportError that names the
extra (``pip install voidgrad[mitsuba]``).
"""
