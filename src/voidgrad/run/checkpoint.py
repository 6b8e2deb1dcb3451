"""Checkpoints: atomic files that run no code and resume only the run that wrote them.

Files
    A checkpoint is a dict of tensors, numbers, strings, lists and dicts only,
    read back with ``torch.load(weights_only=True)``: loading it cannot run
    code, and a file holding anything else (a pickled object) is refused. It
    is written to a temporary file ``.<name>.XXXXXXXX`` in the same directory,
    flushed to disk, then renamed over the old one, so a run killed at any
    moment leaves either the previous checkpoint or the new one. Temporary
    files left by a writer killed mid-write are removed by the next save.

Damage
    :func:`load_checkpoint` turns an empty, truncated or foreign file, one of
    another format version or kind, or one missing an entry, into a
    :class:`CheckpointError` naming the file; :func:`restoring` does the same
    for whatever goes wrong while the contents are put back.

Identity
    A checkpoint records what defines its run (the method and its options,
    the start, the seed, a fingerprint of the objective, ...) under ``"run"``;
    :func:`check_same_run` refuses a resume whose run differs and names the
    first differing field. :func:`fingerprint` hashes code (see there for what
    it covers).

Exclusion
    :func:`run_lock` holds ``<path>.lock`` (``fcntl.flock``, non-blocking) for
    the duration of a run, so a second process on the same path fails at once
    instead of sharing (and overwriting) the state.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import re
import sys
import tempfile
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not locked there (see run_lock)
    fcntl = None  # type: ignore[assignment]

#: The checkpoint format this version writes and reads. Format 1 stored
#: derivative-free optimizers as pickles and no run identity; format 2 had a
#: layout of its own for each kind of run, before they shared one loop
#: (:mod:`voidgrad.run`). Both are refused.
FORMAT = 3

#: The Python version whose code objects a fingerprint hashes.
_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

#: Names of the temporary files ``tempfile.mkstemp(prefix=".<name>.")`` makes.
_TEMPORARY_SUFFIX = r"[a-z0-9_]{8}"

PathLike = str | os.PathLike[str]


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed here: damaged, foreign, of another run, or in use.

    The message names the file and what is wrong with it.
    """


# --------------------------------------------------------------------------- files


def check_checkpoint_path(checkpoint: object) -> Path | None:
    """``checkpoint`` as a Path (None stays None); TypeError unless it is a str or PathLike."""
    if checkpoint is None:
        return None
    if not isinstance(checkpoint, str | os.PathLike):
        raise TypeError(
            f"checkpoint must be a path (str or os.PathLike) or None; got "
            f"{type(checkpoint).__name__}"
        )
    return Path(checkpoint)


def save_checkpoint(path: PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically, removing stale temporary files first.

    Call it while holding :func:`run_lock` of ``path``: the stale files removed
    are every ``.<name>.XXXXXXXX`` temporary of this path, which a concurrent
    writer (excluded by the lock) would otherwise lose.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(path: PathLike) -> list[Path]:
    """Delete the temporary files a killed :func:`save_checkpoint` of ``path`` left; list them."""
    target = Path(path)
    pattern = re.compile(rf"\.{re.escape(target.name)}\.{_TEMPORARY_SUFFIX}")
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(target.parent):
            if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                Path(entry.path).unlink(missing_ok=True)
                removed.append(Path(entry.path))
    return removed


def load_checkpoint(
    path: PathLike, kind: str, required: Iterable[str] = ()
) -> dict[str, Any] | None:
    """The state saved at ``path`` by a ``kind`` run, or None if there is no file yet.

    Loads with ``weights_only=True``, so no code in the file runs. Raises
    :class:`CheckpointError` naming the file unless it is a dict of this
    ``FORMAT``, of this ``kind``, with every ``required`` entry and a
    ``"run"`` identity.
    """
    target = Path(path)
    if not target.exists():
        return None
    try:
        state = torch.load(target, weights_only=True, map_location="cpu")
    except Exception as error:  # torch raises EOFError, RuntimeError, UnpicklingError, OSError...
        raise CheckpointError(
            f"checkpoint {target} cannot be read: {load_failure(error)}; delete it or use "
            "another path"
        ) from error
    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint {target} is not a voidgrad checkpoint: it holds a "
            f"{type(state).__name__}, not a dict; delete it or use another path"
        )
    if state.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint {target} has format {state.get('format')!r}; this voidgrad reads "
            f"format {FORMAT} only (format 1 stored pickles and no run identity, format 2 another "
            "layout, so neither is resumed); delete it or use another path"
        )
    if state.get("kind") != kind:
        raise CheckpointError(
            f"checkpoint {target} was written by {state.get('kind')!r}, not {kind!r}; delete "
            "it or use another path"
        )
    missing = sorted({"run", *required} - set(state))
    if missing or not isinstance(state["run"], dict):
        raise CheckpointError(
            f"checkpoint {target} is damaged: it lacks {', '.join(missing) or 'a run dict'}; "
            "delete it or use another path"
        )
    return state


def load_failure(error: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in a line, for every loader.

    Without torch's advice to load it with ``weights_only=False``, which would
    run whatever the file holds.
    """
    text = str(error)
    if type(error).__name__ == "UnpicklingError":
        found = re.search(r"Unsupported global: [^.\n]*", text)
        if found:
            return (
                "it holds something other than tensors, numbers and strings, which voidgrad "
                "never loads because loading it could run code, so nothing in it was run "
                f"({found.group(0).strip()})"
            )
        return (
            "it is damaged or not a voidgrad file (it does not read as tensors, numbers and "
            "strings; a pickle of other objects is never loaded, so nothing in it was run)"
        )
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not first:
        first = "the file is empty or ends too early"
    return f"it is empty, truncated or damaged ({type(error).__name__}: {first[:200]})"


@contextlib.contextmanager
def restoring(path: PathLike) -> Iterator[None]:
    """Re-raise a failure to put a checkpoint's contents back as a CheckpointError naming it.

    Wrap only the restoring of saved state (not evaluations of the user's
    function, whose errors are theirs): a wrong type, a missing key or a shape
    mismatch deep in a ``load_state_dict`` then reads as a damaged file.
    """
    try:
        yield
    except CheckpointError:
        raise
    except (
        KeyError,
        TypeError,
        ValueError,
        IndexError,
        AttributeError,
        RuntimeError,
        AssertionError,
    ) as error:
        raise CheckpointError(
            f"checkpoint {path} cannot be resumed by this run: {type(error).__name__}: "
            f"{error}; it is damaged or was written otherwise; delete it or use another path"
        ) from error


@contextlib.contextmanager
def run_lock(path: PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` while the block runs; fail at once if held.

    The lock is ``fcntl.flock`` on a sidecar file that stays in place (removing
    it would let two processes lock two different files). The kernel releases
    it when the holder exits, however it dies, so a killed run never leaves
    the path locked. Processes forked while it is held (evaluation workers)
    close their copy of the handle at once: they would otherwise keep the
    lock after the run ends. Without ``fcntl`` (Windows) nothing is locked.

    Raises:
        CheckpointError: another process (or another run in this one) holds it.
    """
    target = Path(path)
    if fcntl is None:
        yield
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = Path(f"{target}.lock")
    try:
        handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise CheckpointError(
            f"checkpoint {target}: cannot open its lock file {lock} ({error.strerror})"
        ) from error
    held = True

    def close_in_child() -> None:
        if held:
            os.close(handle)

    # A handler cannot be unregistered; after the run it does nothing.
    os.register_at_fork(after_in_child=close_in_child)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(handle, 32).decode("ascii", "replace").strip()
            by = f" by process {holder}" if holder.isdigit() else ""
            raise CheckpointError(
                f"checkpoint {target} is in use{by} (it holds {lock}); wait for that run to "
                "end or use another path"
            ) from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, str(os.getpid()).encode("ascii"), 0)  # named in the error above
        yield
    finally:
        held = False
        os.close(handle)  # releases the lock


# --------------------------------------------------------------------------- identity


def identity_value(value: object) -> Any:
    """``value`` as checkpoint data that identifies it.

    Numbers, strings, None and tensors are kept as they are (tensors as CPU
    copies, NumPy arrays as tensors); lists, tuples and string-keyed dicts
    element by element; anything else (a function, an object) becomes its
    :func:`fingerprint`.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, np.ndarray) and value.dtype != object:
        return torch.from_numpy(np.array(value, copy=True))
    if isinstance(value, list | tuple):
        return [identity_value(item) for item in value]
    if isinstance(value, Mapping) and all(isinstance(key, str) for key in value):
        return {key: identity_value(value[key]) for key in sorted(value)}
    return fingerprint(value)


def fingerprint(value: object) -> dict[str, str]:
    """A hash of what ``value`` computes, stable across processes of one Python version.

    A function is hashed by its qualified name, its code (bytecode, constants,
    names; not its file or line numbers), its defaults, its closure and the
    global names its code uses, each of those by value when it is a constant
    (numbers, strings, tensors, arrays, tuples of them) and recursively when it
    is a function of the same module; other objects there (lists, dicts,
    instances: state rather than settings) count by their type only. A
    ``functools.partial`` adds its arguments, a bound method its function and
    the type of its object. Any other callable (an object with ``__call__``,
    an ``nn.Module``) counts by its class and the code of its ``__call__`` (or
    ``forward``) only, **not its attributes**: two instances of one class have
    the same fingerprint (``vg.minimize`` also re-evaluates the stored best
    point to tell them apart). Code objects differ between Python versions, so
    fingerprints of two versions are not compared (see :func:`same_value`).
    """
    digest = hashlib.sha256()
    _feed(digest, value, seen=set(), module=_module_of(value), depth=0)
    return {"fingerprint": digest.hexdigest()[:20], "python": _PYTHON}


_MAX_DEPTH = 8


def _module_of(value: object) -> str:
    """The module whose functions count by their code (others count by their name)."""
    function = _function_of(value)
    return type(value).__module__ if function is None else function.__module__


def _function_of(value: object) -> types.FunctionType | None:
    if isinstance(value, types.MethodType):
        value = value.__func__
    if isinstance(value, functools.partial):
        return _function_of(value.func)
    return value if isinstance(value, types.FunctionType) else None


def _feed(digest: Any, value: object, seen: set[int], module: str, depth: int) -> None:
    """Hash ``value`` into ``digest`` (see :func:`fingerprint`)."""

    def feed(item: object) -> None:
        _feed(digest, item, seen, module, depth + 1)

    def tag(text: str) -> None:
        digest.update(f"\x00{text}\x01".encode())

    if depth > _MAX_DEPTH:
        tag(f"deep:{type(value).__qualname__}")
    elif value is None or isinstance(value, bool | int | float | complex | str | bytes):
        tag(f"{type(value).__name__}:{value!r}")
    elif isinstance(value, torch.Tensor):
        tag(f"tensor:{value.dtype}:{value.layout}:{tuple(value.shape)}")
        digest.update(_tensor_bytes(value))
    elif isinstance(value, np.ndarray) and value.dtype != object:
        tag(f"array:{value.dtype.str}:{value.shape}")
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, list | tuple):
        tag(f"{type(value).__name__}:{len(value)}")
        for item in value:
            feed(item)
    elif isinstance(value, set | frozenset):  # order by content: set order varies by process
        parts = []
        for item in value:
            inner = hashlib.sha256()
            _feed(inner, item, seen, module, depth + 1)
            parts.append(inner.hexdigest())
        tag(f"set:{','.join(sorted(parts))}")
    elif isinstance(value, Mapping):
        tag(f"mapping:{len(value)}")
        for key in sorted(value, key=repr):
            feed(key)
            feed(value[key])
    elif isinstance(value, types.CodeType):
        _feed_code(digest, value, feed, tag)
    elif id(value) in seen:
        tag("seen")  # recursion (a function that calls itself)
    elif isinstance(value, types.FunctionType):
        seen.add(id(value))
        _feed_function(digest, value, feed, tag, module)
    elif isinstance(value, functools.partial):
        tag("partial")
        feed(value.func)
        feed(value.args)
        feed(value.keywords)
    elif isinstance(value, types.MethodType):
        tag(f"method of {type(value.__self__).__qualname__}")
        feed(value.__func__)
    elif isinstance(value, types.ModuleType):
        tag(f"module:{value.__name__}")
    elif isinstance(value, type):
        tag(f"class:{value.__module__}.{value.__qualname__}")
    else:
        kind = type(value)
        tag(f"object:{kind.__module__}.{kind.__qualname__}")
        for name in ("__call__", "forward"):  # the class's code (forward for an nn.Module)
            method = getattr(kind, name, None)
            if isinstance(method, types.FunctionType) and not method.__module__.startswith(
                "torch."
            ):
                seen.add(id(method))
                _feed_function(digest, method, feed, tag, module)


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    """The values of ``tensor`` as bytes; b"" where it has none to read (meta, nested)."""
    if tensor.is_nested or tensor.is_meta:
        return b""
    dense = tensor.detach().to("cpu")
    if dense.is_quantized:
        dense = dense.dequantize()
    if dense.layout != torch.strided:  # sparse COO/CSR/...: the same values, densely
        dense = dense.to_dense()
    return dense.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _feed_code(
    digest: Any, code: types.CodeType, feed: Callable[[object], None], tag: Callable[[str], None]
) -> None:
    # Not co_filename, co_firstlineno or the line tables: moving code does not change it.
    tag(f"code:{code.co_qualname}:{code.co_argcount}:{code.co_kwonlyargcount}:{code.co_flags}")
    digest.update(code.co_code)
    feed(code.co_names)
    feed(code.co_varnames)
    feed(code.co_freevars)
    feed(code.co_consts)


def _feed_function(
    digest: Any,
    function: types.FunctionType,
    feed: Callable[[object], None],
    tag: Callable[[str], None],
    module: str,
) -> None:
    tag(f"function:{function.__module__}.{function.__qualname__}")
    feed(function.__code__)
    feed(function.__defaults__)
    feed(function.__kwdefaults__)
    for cell in function.__closure__ or ():
        try:
            contents = cell.cell_contents
        except ValueError:  # an empty cell
            tag("empty cell")
        else:
            _feed_setting(contents, feed, tag, module)
    for name in sorted(_global_names(function.__code__)):
        if name in function.__globals__:
            tag(f"global:{name}")
            _feed_setting(function.__globals__[name], feed, tag, module)


def _feed_setting(
    value: object, feed: Callable[[object], None], tag: Callable[[str], None], module: str
) -> None:
    """Hash what a function reads from its closure or globals: constants and code, not state.

    Mutable containers (a list the function appends to, a cache dict) count by
    their type only, so that a function that records its calls keeps its
    fingerprint; functions of other modules (library code) count by name.
    """
    if isinstance(value, types.FunctionType) and value.__module__ != module:
        tag(f"function:{value.__module__}.{value.__qualname__}")
    elif _is_constant(value) or isinstance(
        value, types.FunctionType | functools.partial | types.ModuleType | type
    ):
        feed(value)
    else:
        tag(f"type:{type(value).__module__}.{type(value).__qualname__}")


def _global_names(code: types.CodeType) -> set[str]:
    """The names ``code`` and the code nested in it (lambdas, comprehensions) look up."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _global_names(constant)
    return names


def _is_constant(value: object) -> bool:
    """Whether ``value`` is a constant: a number, string, tensor, array, or tuple of them."""
    if value is None or isinstance(value, bool | int | float | complex | str | bytes):
        return True
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype != object
    if isinstance(value, tuple | frozenset):
        return all(_is_constant(item) for item in value)
    return False


def check_same_run(saved: Mapping[str, Any], run: Mapping[str, Any], path: PathLike) -> None:
    """Raise CheckpointError unless ``saved`` (a checkpoint's ``"run"``) matches ``run``.

    Every field of either must be equal in both (see :func:`same_value`); the
    error names the checkpoint and the first differing field with both values.
    """
    for key in sorted(set(saved) | set(run)):
        there, here = saved.get(key, _ABSENT), run.get(key, _ABSENT)
        if not same_value(there, here):
            raise CheckpointError(
                f"checkpoint {path} was written by another run: {_difference(key, there, here)}; "
                "delete it or use another path"
            )


class _Absent:
    def __repr__(self) -> str:
        return "not given"


_ABSENT = _Absent()


def same_value(there: object, here: object) -> bool:
    """Whether two identity values agree.

    Tensors must have the same dtype, shape and values (NaN equal to NaN);
    numbers compare by value (NaN equal to NaN); fingerprints of different
    Python versions are taken to agree (they cannot be compared).
    """
    if isinstance(there, torch.Tensor) or isinstance(here, torch.Tensor):
        return (
            isinstance(there, torch.Tensor)
            and isinstance(here, torch.Tensor)
            and there.dtype == here.dtype
            and there.shape == here.shape
            and (torch.equal(there, here) or _equal_with_nans(there, here))
        )
    if _is_fingerprint(there) and _is_fingerprint(here):
        assert isinstance(there, dict) and isinstance(here, dict)
        return there["python"] != here["python"] or there["fingerprint"] == here["fingerprint"]
    if isinstance(there, list) and isinstance(here, list):
        return len(there) == len(here) and all(map(same_value, there, here))
    if isinstance(there, dict) and isinstance(here, dict):
        return there.keys() == here.keys() and all(same_value(there[k], here[k]) for k in there)
    if isinstance(there, float) and isinstance(here, float) and math.isnan(there):
        return math.isnan(here)
    return (type(there) is type(here) or _both_numbers(there, here)) and there == here


def _equal_with_nans(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, NaN matching NaN (as for numbers; ``torch.equal`` never matches NaN)."""
    if not a.is_floating_point():
        return False
    return bool(((a == b) | (a.isnan() & b.isnan())).all())


def _both_numbers(a: object, b: object) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))


def _is_fingerprint(value: object) -> bool:
    return isinstance(value, dict) and value.keys() == {"fingerprint", "python"}


def _difference(key: str, there: object, here: object) -> str:
    """``key``'s two values, told apart readably."""
    if isinstance(there, torch.Tensor) and isinstance(here, torch.Tensor):
        if there.shape != here.shape:
            return f"{key} has shape {tuple(there.shape)} there, {tuple(here.shape)} here"
        if there.dtype != here.dtype:
            return f"{key} has dtype {there.dtype} there, {here.dtype} here"
        index = int((there != here).flatten().nonzero()[0])
        a, b = there.flatten()[index].item(), here.flatten()[index].item()
        return f"{key} differs at index {index} ({a!r} there, {b!r} here)"
    if _is_fingerprint(there) and _is_fingerprint(here):
        assert isinstance(there, dict) and isinstance(here, dict)
        return (
            f"{key} has code fingerprint {there['fingerprint']} there, {here['fingerprint']} "
            "here (another function, or its code, defaults, closure or globals changed)"
        )
    return f"{key}={_show(there)} there, {_show(here)} here"


def _show(value: object) -> str:
    if _is_fingerprint(value):
        assert isinstance(value, dict)
        return f"<code {value['fingerprint']}>"
    return repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
