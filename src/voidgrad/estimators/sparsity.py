r"""The dependency pattern of a black box's outputs on its parameters (``jac_sparsity``).

S is a boolean ``[outputs, d]`` pattern: S[o, j] = 1 when output o of the
(flattened) black box may move with θ_j; 0 promises that it never does. A
mirrored estimator given S credits parameter j only with the outputs that
depend on it (Deliot, Heitz & Belcour 2024):

    ĝ_j = (1/n) Σ_i W_ij Σ_o S[o, j] v_o δF_o(i),

with δF(i) = ½[F(θ + τ_i) − F(θ − τ_i)] (antithetic) or F(θ + τ_i), and W_i
the estimator's weights. Where S is the true pattern, every dropped term has
zero mean (∂F_o/∂θ_j = 0 there), so ĝ keeps the dense estimator's
expectation; its variance then grows with the number of parameters per output
instead of with d. An output whose row of S is empty gets no credit at all:
it contributes nothing to any gradient, whatever it does. A pattern that
misses a real dependency drops that part of the gradient: a biased estimate.

The pattern is held as the sparse ``[d, outputs]`` matrix Sᵀ (CSR), so the
credit is one sparse-times-dense product, Sᵀ δ ``[d, n]``: memory is that of
the nonzeros, the values and the weights; no dense ``[outputs, d]`` matrix is
ever formed.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch


class JacobianSparsity:
    """A validated ``[outputs, d]`` dependency pattern (module doc).

    Args:
        pattern: a torch sparse COO or CSR tensor, a dense ``torch.bool``
            tensor, or a ``scipy.sparse`` matrix or array, of shape
            ``[outputs, d]``; its nonzero entries are the dependencies.

    Examples:
        >>> import torch
        >>> from voidgrad.estimators.sparsity import JacobianSparsity
        >>> pattern = JacobianSparsity(torch.tensor([[True, False], [True, True]]))
        >>> pattern.shape, pattern.nnz
        ((2, 2), 3)
        >>> pattern.credit(torch.tensor([[1.0, 10.0]]))  # Sᵀ δ for δ = (1, 10)
        tensor([[11., 10.]])
    """

    def __init__(self, pattern: object) -> None:
        rows, cols, shape = _coordinates(pattern)
        if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
            raise ValueError(
                f"jac_sparsity must be a 2-d [outputs, d] pattern with outputs, d >= 1; "
                f"got shape {tuple(shape)}"
            )
        outputs, d = int(shape[0]), int(shape[1])
        for name, index, size in (("row", rows, outputs), ("column", cols, d)):
            if index.numel() and (int(index.min()) < 0 or int(index.max()) >= size):
                raise ValueError(
                    f"jac_sparsity has a {name} index out of range: indices must lie in "
                    f"[0, {size}) for shape [{outputs}, {d}]; got {int(index.min())}..."
                    f"{int(index.max())}"
                )
        self.shape = (outputs, d)
        # Sᵀ's coordinates, sorted by parameter then output, without repeats.
        key = torch.unique(cols * outputs + rows)
        # int32 indices where they fit: half the memory, and torch's CSR product is ~2x faster.
        self._index = torch.int32 if max(outputs, d, key.numel()) < 2**31 else torch.int64
        self._cols = (key // outputs).to(self._index)
        self._rows = (key % outputs).to(self._index)
        self._matrices: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}

    @property
    def nnz(self) -> int:
        """The number of dependencies (nonzeros of S)."""
        return int(self._rows.numel())

    def check(self, out_shape: tuple[int, ...], d: int) -> None:
        """Refuse a black box whose outputs or parameters do not match the pattern."""
        outputs = int(np.prod(out_shape)) if out_shape else 1
        if (outputs, d) != self.shape:
            raise ValueError(
                f"jac_sparsity has shape [{self.shape[0]}, {self.shape[1]}] ([outputs, d]), "
                f"but the black box has {outputs} outputs (each of shape {tuple(out_shape)}, "
                f"flattened) and d = {d} parameters"
            )

    def transposed(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Sᵀ as a sparse ``[d, outputs]`` matrix of ones, built once per dtype and device."""
        key = (dtype, device)
        if key not in self._matrices:
            outputs, d = self.shape
            crow = torch.zeros(d + 1, dtype=torch.int64)
            crow[1:] = torch.bincount(self._cols, minlength=d).cumsum(0)
            with warnings.catch_warnings():
                # CSR, because its product with a dense matrix is 5-8x faster than COO's on
                # CPU (d = 10⁶, 4 outputs per parameter); torch calls its CSR support beta.
                warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
                self._matrices[key] = torch.sparse_csr_tensor(
                    crow.to(self._index).to(device),
                    self._rows.to(device),  # sorted by parameter, then output, no repeats
                    torch.ones(self.nnz, dtype=dtype, device=device),
                    size=(d, outputs),
                    check_invariants=False,
                )
        return self._matrices[key]

    def credit(self, differences: torch.Tensor) -> torch.Tensor:
        """``[K, d]``: (Sᵀ δ_k)_j = Σ_o S[o, j] δ_ko, for ``differences`` δ ``[K, outputs]``."""
        matrix = self.transposed(differences.dtype, differences.device)
        return (matrix @ differences.T).T

    def __repr__(self) -> str:
        return f"JacobianSparsity(shape={list(self.shape)}, nnz={self.nnz})"


def as_sparsity(pattern: object) -> JacobianSparsity | None:
    """``jac_sparsity`` as an estimator takes it: None, a :class:`JacobianSparsity` or a pattern."""
    if pattern is None or isinstance(pattern, JacobianSparsity):
        return pattern
    detected = getattr(pattern, "pattern", None)  # a DetectedSparsity from detect_sparsity
    if isinstance(detected, JacobianSparsity):
        return detected
    return JacobianSparsity(pattern)


def sparsity_repr(sparsity: JacobianSparsity | None) -> str:
    """``", jac_sparsity=JacobianSparsity(...)"`` for an estimator's repr; "" without one."""
    return "" if sparsity is None else f", jac_sparsity={sparsity!r}"


def _coordinates(pattern: object) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """The (rows, columns) of the nonzeros of ``pattern`` as int64 CPU tensors, and its shape."""
    if isinstance(pattern, torch.Tensor):
        tensor = pattern
        if tensor.layout in (torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr):
            tensor = tensor.to_sparse_coo()
        if tensor.layout == torch.sparse_coo:
            if tensor.sparse_dim() != 2 or tensor.dense_dim() != 0:
                raise ValueError(
                    "jac_sparsity must be a 2-d sparse [outputs, d] pattern; got a sparse "
                    f"tensor of shape {tuple(tensor.shape)} with {tensor.dense_dim()} dense "
                    "dimensions"
                )
            tensor = tensor.coalesce()
            kept = tensor.values() != 0
            indices = tensor.indices()[:, kept].cpu()
            return indices[0], indices[1], tuple(tensor.shape)
        if tensor.layout == torch.strided:
            if tensor.dtype != torch.bool:
                raise TypeError(
                    "a dense jac_sparsity must be a torch.bool tensor (True where an output "
                    f"depends on a parameter); got dtype {tensor.dtype}"
                )
            if tensor.ndim != 2:
                raise ValueError(
                    f"jac_sparsity must be a 2-d [outputs, d] pattern; got shape "
                    f"{tuple(tensor.shape)}"
                )
            rows, cols = tensor.cpu().nonzero(as_tuple=True)
            return rows, cols, tuple(tensor.shape)
    if _is_scipy_sparse(pattern):
        coo: Any = pattern.tocoo()  # type: ignore[attr-defined]
        kept = np.asarray(coo.data) != 0
        rows = torch.as_tensor(np.asarray(coo.row)[kept], dtype=torch.int64)
        cols = torch.as_tensor(np.asarray(coo.col)[kept], dtype=torch.int64)
        return rows, cols, tuple(int(n) for n in coo.shape)
    raise TypeError(
        "jac_sparsity must be a torch sparse (COO or CSR) tensor, a dense torch.bool tensor "
        f"or a scipy.sparse matrix of shape [outputs, d]; got {type(pattern).__name__}"
    )


def _is_scipy_sparse(pattern: object) -> bool:
    """Whether ``pattern`` is a scipy.sparse matrix or array (without importing scipy)."""
    module = type(pattern).__module__
    return module.startswith("scipy.sparse") and hasattr(pattern, "tocoo")
