"""Conversion of whatever a black box returns into a tensor."""

from __future__ import annotations

import numbers

import numpy as np
import torch


def as_output_tensor(value: object, detach: bool = True) -> torch.Tensor:
    """Return ``value`` (a number, NumPy array or tensor) as a real tensor, detached by default.

    Raises:
        TypeError: for anything else, or for complex or non-numeric arrays.
    """
    if isinstance(value, torch.Tensor):
        tensor = value.detach() if detach else value
    elif isinstance(value, np.ndarray | np.generic):
        tensor = torch.from_numpy(np.asarray(value))
    elif isinstance(value, numbers.Real):
        tensor = torch.tensor(float(value), dtype=torch.float64)
    else:
        raise TypeError(
            "a black box must return a float, a NumPy array or a torch tensor; "
            f"got {type(value).__name__}"
        )
    if tensor.is_complex():
        raise TypeError(f"a black box must return real numbers; got dtype {tensor.dtype}")
    return tensor
