"""What the library adapters need around a library call: optional imports, a private
global RNG, single-threaded BLAS, and the memory available.

Some nevergrad optimizers call ``np.random.*`` directly, and importing nevergrad
draws from the global RNG too; :class:`PrivateGlobalRNG` swaps a private global
state in around each library call and restores the caller's afterwards (the
caller's draws are unaffected; it is not safe against *other threads* drawing
from ``np.random`` meanwhile, and costs about 0.25 ms per ask or tell).
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

INSTALL_HINT = "pip install 'voidgrad[bench]'"


def import_optional(module: str) -> Any:
    """Import an optional dependency, or raise ImportError with the install command.

    numpy's global RNG is restored afterwards: importing nevergrad draws from it
    (some optimizers are registered with randomly drawn settings).
    """
    saved = np.random.get_state()
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        raise ImportError(
            f"this method needs {top!r}, which is not installed: {INSTALL_HINT}"
        ) from e
    finally:
        np.random.set_state(saved)


class PrivateGlobalRNG:
    """A private state for numpy's global RNG, swapped in around library calls.

    Libraries that draw from ``np.random.*`` directly then draw from this state
    (reproducible from the seed), and the caller's global state is restored
    untouched afterwards. Not safe against other threads using ``np.random``
    during the call.
    """

    def __init__(self, seed: int) -> None:
        # A stream distinct from the library's own RandomState(seed).
        entropy = np.random.SeedSequence([seed, 0x5EED]).generate_state(8)
        self.state: Any = np.random.RandomState(entropy).get_state()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        saved = np.random.get_state()
        np.random.set_state(self.state)
        try:
            yield
        finally:
            self.state = np.random.get_state()
            np.random.set_state(saved)


class SingleThreadBLAS:
    """Limits BLAS to one thread inside ``limited()`` when threadpoolctl is installed.

    pycma's small matrix work with an oversubscribed OpenBLAS (busy evaluation
    workers) was measured 4-20× slower; without threadpoolctl, BLAS threading
    is left alone.
    """

    def __init__(self) -> None:
        self._controller: Any = None
        self._available = True

    def limited(self) -> contextlib.AbstractContextManager[Any]:
        if self._available and self._controller is None:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:
                self._available = False
            else:
                # Built once: it scans the loaded libraries (~10 ms); limit() is ~20 µs.
                self._controller = ThreadpoolController()
        if self._controller is None:
            return contextlib.nullcontext()
        return self._controller.limit(limits=1, user_api="blas")


@contextlib.contextmanager
def library_call(rng: PrivateGlobalRNG, blas: SingleThreadBLAS) -> Iterator[None]:
    """Run a library call on the private global RNG with BLAS on one thread."""
    with rng.active(), blas.limited():
        yield


def available_memory_bytes() -> int | None:
    """The memory available to new allocations (MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None
