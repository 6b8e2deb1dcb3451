"""Conversion of whatever a black box returns into a tensor, refusing what is not a loss.

A black box must return real numbers: a float or int, or a NumPy array or
torch tensor of a floating or integer dtype, with at least one element.
Anything else is a usage error, raised at once whatever the failure policy,
because it cannot be right for any parameters: a bool (``True`` would count
as a loss of 1), ``None`` (often a forgotten ``return``), a string, a list, a
complex number, a NumPy array of objects or strings, an empty array. A
black box that fails for some parameters should raise or return NaN; the
Evaluator's ``on_error`` policy then applies.

An output keeps the shape it was returned with, whatever its type: a NumPy
array or tensor of shape ``(1,)`` is a vector of one element, as one of
shape ``(3,)`` is a vector of three, and never a scalar (NumPy deprecated
reading such arrays as scalars in 1.25 and now refuses to). A scalar loss
is a float, an int, a NumPy scalar or a 0-d array or tensor; where one is
required (``vg.minimize``, ``vg.ZeroGrads``) an output of shape ``(1,)`` is
refused with its shape named. Floating NumPy outputs keep their precision:
float64 stays float64, like a Python float.
"""

from __future__ import annotations

import numbers
import reprlib

import numpy as np
import torch

# What a black box may return, for error messages.
_EXPECTED = (
    "a black box must return real numbers: a float or int, or a NumPy array or torch tensor "
    "of a floating or integer dtype"
)

_REAL_KINDS = "fiu"  # NumPy dtype kinds: floating, signed and unsigned integer


def as_output_tensor(value: object, detach: bool = True, where: str = "") -> torch.Tensor:
    """Return ``value`` as a real tensor with at least one element, detached by default.

    NumPy outputs are copied (so a black box may reuse its buffer), floats in
    their own precision, integers and ``longdouble`` as float64; Python
    numbers become float64; tensors keep their dtype. ``where`` (e.g. ``" at row 3"``) is
    put into error messages after "fn returned ...".

    Raises:
        TypeError: for a value that is not real numbers (see the module
            docstring), naming what it is.
        ValueError: for an empty output.

    Examples:
        >>> import numpy as np
        >>> as_output_tensor(np.float32(1.5))
        tensor(1.5000)
        >>> as_output_tensor(2)
        tensor(2., dtype=torch.float64)
        >>> as_output_tensor(True)
        Traceback (most recent call last):
        ...
        TypeError: fn returned bool True; a black box must return real numbers: ...
    """
    tensor = _as_tensor(value, detach)
    if tensor is None:
        raise TypeError(f"fn returned {describe_output(value)}{where}; {_EXPECTED}")
    if tensor.numel() == 0:
        raise ValueError(
            f"fn returned an empty output, {describe_output(value)}{where}; a black box must "
            "return at least one number"
        )
    return tensor


def describe_output(value: object) -> str:
    """A short description of a returned value for error messages: its type, dtype, shape.

    Examples:
        >>> import numpy as np
        >>> describe_output(0.5), describe_output(np.zeros((2, 1)))
        ('a Python float 0.5', 'a NumPy array of dtype float64 and shape (2, 1)')
    """
    if isinstance(value, torch.Tensor):
        return f"a torch tensor of dtype {value.dtype} and shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"a NumPy array of dtype {value.dtype} and shape {value.shape}"
    if isinstance(value, np.generic):
        return f"a NumPy scalar of dtype {value.dtype}: {reprlib.repr(value.item())}"
    if value is None:
        return "None (does fn end with a return statement?)"
    if type(value) in (int, float):
        return f"a Python {type(value).__name__} {reprlib.repr(value)}"
    return f"{type(value).__name__} {reprlib.repr(value)}"


def _as_tensor(value: object, detach: bool) -> torch.Tensor | None:
    """``value`` as a tensor if it holds real numbers, else ``None``."""
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool or value.is_complex():
            return None
        return value.detach() if detach else value
    if isinstance(value, np.ndarray | np.generic):
        array = np.asarray(value)
        if array.dtype.kind not in _REAL_KINDS:
            return None
        # A copy in native byte order handles big-endian and read-only buffers; floats keep
        # their precision (longdouble, which torch lacks, and integers become float64).
        kept = array.dtype if array.dtype.kind == "f" and array.dtype.itemsize <= 8 else np.float64
        return torch.from_numpy(np.array(array, dtype=np.dtype(kept).newbyteorder("=")))
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=torch.float64)
    return None
