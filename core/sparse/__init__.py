"""``ember.sparse``: the sparse COO layout (PyTorch's ``torch.sparse``).

``ember.sparse_coo_tensor`` and ``Tensor.to_sparse`` build a :class:`SparseTensor`;
``ember.sparse.mm`` (also ``ember.spmm``, ``ember.mm``, ``ember.matmul`` and ``@`` with a sparse
operand) multiplies it by a dense matrix with gradients to both. See docs/sparse.md.
"""

from __future__ import annotations

from ..autograd import function as _function
from ..tensor import Tensor
from . import _ops, _route
from ._construct import sparse_coo_tensor
from ._coo import SparseTensor, _SparseData, sparse_coo
from ._ops import add, coalesce, mm, sum, to_dense, to_sparse

__all__ = ["SparseTensor", "add", "addmm", "log_softmax", "mm", "softmax", "spmm", "sum"]


def spmm(input, mat2):
    """``sparse @ dense`` (PyTorch's ``torch.spmm``): :func:`mm`."""
    return mm(input, mat2)


def addmm(mat, mat1, mat2, *, beta=1.0, alpha=1.0):
    """``beta * mat + alpha * (mat1 @ mat2)`` with a sparse ``mat1`` (dense result)."""
    out = mm(mat1, mat2)
    if alpha != 1:
        out = out * alpha
    return out + (mat if beta == 1 else mat * beta)


def softmax(input, dim: int, *, dtype=None):
    """Softmax over the stored entries along ``dim`` (missing entries count as -inf), as
    PyTorch's ``torch.sparse.softmax``; the result keeps ``input``'s pattern."""
    from ._softmax import sparse_softmax

    return sparse_softmax(input, dim, dtype, log=False)


def log_softmax(input, dim: int, *, dtype=None):
    """Log-softmax over the stored entries along ``dim`` (``torch.sparse.log_softmax``)."""
    from ._softmax import sparse_softmax

    return sparse_softmax(input, dim, dtype, log=True)


# ---- wiring: the route from Function.apply and the methods -----------------------------
_function._SparseData = _SparseData
_function._sparse_apply = _route.sparse_apply


def _r(fn):
    return lambda self, other: fn(other, self)


_SPARSE_METHODS = {
    "coalesce": coalesce,
    "to_dense": to_dense,
    "sum": _ops.sum,
    "mm": _ops.mm,
    "matmul": _ops.matmul,
    "smm": _ops.mm,
    "t": _ops.t,
    "transpose": _ops.transpose,
    "add": add,
    "sub": _ops.sub,
    "mul": _ops.mul,
    "div": _ops.div,
    "neg": _ops.neg,
    "__matmul__": _ops.matmul,
    "__rmatmul__": _r(_ops.matmul),
    "__add__": add,
    "__radd__": _r(add),
    "__sub__": _ops.sub,
    "__rsub__": _r(_ops.sub),
    "__mul__": _ops.mul,
    "__rmul__": _ops.mul,
    "__truediv__": _ops.div,
    "__neg__": _ops.neg,
}
# comparisons run on arrays without an autograd node: refuse them here, by name
for _op in ("eq", "ne", "lt", "le", "gt", "ge", "and", "or", "xor", "invert", "abs"):
    _SPARSE_METHODS.setdefault(f"__{_op}__", _route._refuse(_op))
for _name, _fn in _SPARSE_METHODS.items():
    setattr(SparseTensor, _name, _fn)

# dense tensors: to_sparse, to_dense (the identity) and the sparse-only queries with
# PyTorch's errors for the strided layout
Tensor.to_sparse = to_sparse
Tensor.to_sparse_coo = to_sparse
Tensor.to_dense = to_dense


def _dense_refusal(name: str, what: str = "sparse coordinate tensor", error=RuntimeError):
    def method(self, *args, **kwargs):
        if error is NotImplementedError:
            raise NotImplementedError(f"{name}() is only defined for sparse_coo tensors")
        raise error(f"{name} expected {what} layout but got Strided")

    method.__name__ = name
    # no cross-reference: SparseTensor has no page in the API reference (a broken reference
    # fails the docs build)
    method.__doc__ = f"Sparse COO tensors only (``layout=ember.sparse_coo``): ``{name}``."
    return method


for _name in ("coalesce", "is_coalesced", "indices"):
    setattr(Tensor, _name, _dense_refusal(_name))
Tensor.values = _dense_refusal("values", "sparse tensor")
for _name in ("_indices", "_values", "_nnz"):
    setattr(Tensor, _name, _dense_refusal(_name, error=NotImplementedError))


def _dense_sparse_dim(self) -> int:
    """The number of sparse dimensions: 0 for a dense tensor."""
    return 0


def _dense_dense_dim(self) -> int:
    """The number of dense dimensions: all of a dense tensor's."""
    return self.dim()


Tensor.sparse_dim = _dense_sparse_dim
Tensor.dense_dim = _dense_dense_dim


def _sparse_mask(self, mask: SparseTensor) -> SparseTensor:
    """``self`` at the specified entries of the sparse COO ``mask`` (its values ignored): a
    coalesced sparse tensor with ``mask``'s indices (Adagrad's sparse update)."""
    import ember

    if not isinstance(mask, SparseTensor):
        raise RuntimeError("sparse_mask expected sparse coordinate tensor layout but got Strided")
    if tuple(mask.shape) != tuple(self.shape):
        raise RuntimeError(
            f"sparse_mask(): operands have incompatible sizes; self has size {tuple(self.shape)}"
            f" but mask has size {tuple(mask.shape)}"
        )
    m = mask.coalesce()
    idx = m.indices()
    vals = self.detach()[tuple(idx[i] for i in range(idx.shape[0]))]
    return ember.sparse_coo_tensor(idx, vals, tuple(self.shape)).coalesce()


Tensor.sparse_mask = _sparse_mask
