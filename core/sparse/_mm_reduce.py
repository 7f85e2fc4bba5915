"""``torch.sparse.mm(csr, dense, reduce)``: the product with each row's terms reduced by
``sum``, ``mean``, ``max`` or ``min`` instead of summed (PyTorch Geometric's ``spmm``).

Row ``i`` of the result reduces ``A[i, j] * B[j, :]`` over the stored ``j`` of row ``i``; a row
with no stored element gives 0, as PyTorch's. Built from differentiable ember ops (a gather,
a product and ``segment_reduce`` over the row pointers), so gradients reach ``B`` and the
values of ``A``.
"""

from __future__ import annotations

from ..tensor import Tensor

_REDUCE = {"sum": "sum", "mean": "mean", "max": "amax", "amax": "amax"}
_REDUCE.update(min="amin", amin="amin")


def mm_reduce(mat1, mat2: Tensor, reduce: str) -> Tensor:
    """``mat1 @ mat2`` with ``reduce`` over each row's terms; ``mat1`` a 2-D CSR tensor."""
    from ..ops import segment
    from ._compressed import SparseCompressedTensor, layout_name

    kind = _REDUCE.get(reduce)
    if kind is None:
        raise RuntimeError(f"sparse_mm_reduce: reduce type of {reduce} has not been enabled.")
    if not (isinstance(mat1, SparseCompressedTensor) and mat1.layout.name == "sparse_csr"):
        lay = layout_name(mat1) if isinstance(mat1, Tensor) else type(mat1).__name__
        raise RuntimeError(
            f"sparse.mm with reduce={reduce!r} expects a 2-D sparse CSR first operand, got "
            f"{lay} (convert with .to_sparse_csr())"
        )
    if mat2.dim() != 2 or mat1.shape[1] != mat2.shape[0]:
        raise RuntimeError(
            f"mat1 and mat2 shapes cannot be multiplied ({mat1.shape[0]}x{mat1.shape[1]} and "
            f"{'x'.join(map(str, mat2.shape))})"
        )
    if mat1.values().dtype != mat2.dtype:
        raise RuntimeError(
            f"sparse.mm: expected mat1 and mat2 to have the same dtype, but got: "
            f"{mat1.values().dtype} != {mat2.dtype}"
        )
    crow, col = mat1.crow_indices(), mat1.col_indices()
    terms = mat1.values().unsqueeze(1) * mat2.index_select(0, col.long())
    lengths = crow[1:] - crow[:-1]
    out = segment.segment_reduce(terms, kind, lengths=lengths.long(), initial=None)
    if kind != "sum":  # empty rows: NaN (mean) or -inf/inf (amax/amin) -> 0, as torch
        out = out.masked_fill((lengths == 0).unsqueeze(1), 0.0)
    return out
