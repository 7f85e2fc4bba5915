"""``ember.sparse``: the sparse COO layout (PyTorch's ``torch.sparse``).

``ember.sparse_coo_tensor`` and ``Tensor.to_sparse`` build a :class:`SparseTensor`;
``ember.sparse.mm`` (also ``ember.spmm``, ``ember.mm``, ``ember.matmul`` and ``@`` with a sparse
operand) multiplies it by a dense matrix with gradients to both. See docs/sparse.md.
"""

from __future__ import annotations

from ..autograd import function as _function
from ..tensor import Tensor
from . import _compressed, _compressed_build, _compressed_ops, _ops, _route
from ._compressed import (
    SparseCompressedTensor,
    sparse_bsc,
    sparse_bsr,
    sparse_csc,
    sparse_csr,
)
from ._compressed_factories import (
    check_sparse_tensor_invariants,
    sparse_bsc_tensor,
    sparse_bsr_tensor,
    sparse_compressed_tensor,
    sparse_csc_tensor,
    sparse_csr_tensor,
)
from ._compressed_ops import sampled_addmm
from ._construct import sparse_coo_tensor
from ._coo import SparseTensor, _SparseData, sparse_coo
from ._ops import add, coalesce, mm, sum, to_dense, to_sparse

__all__ = [
    "SparseCompressedTensor",
    "SparseTensor",
    "add",
    "addmm",
    "check_sparse_tensor_invariants",
    "log_softmax",
    "mm",
    "sampled_addmm",
    "softmax",
    "spmm",
    "sum",
]


def spmm(input, mat2):
    """``sparse @ dense`` (PyTorch's ``torch.spmm``): :func:`mm`."""
    return mm(input, mat2)


def dsmm(input, mat2):
    """``sparse @ dense`` as a dense tensor (PyTorch's ``torch.dsmm``, exported as
    ``ember.dsmm``): :func:`mm`."""
    return mm(input, mat2)


def addmm(mat, mat1, mat2, *, beta=1.0, alpha=1.0):
    """``beta * mat + alpha * (mat1 @ mat2)`` with a sparse ``mat1`` (dense result)."""
    if isinstance(mat1, SparseCompressedTensor):
        return _compressed_ops.addmm(mat, mat1, mat2, beta=beta, alpha=alpha)
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


# ---- the compressed layouts (CSR, CSC, BSR, BSC): methods and conversions ----------------
def _r_c(fn):
    return lambda self, other: fn(other, self)


def _compressed_to_dense(self, dtype=None, *, masked_grad=None):
    """The dense tensor (differentiable w.r.t. the values)."""
    return _compressed_build.compressed_to_dense(self if dtype is None else self.to(dtype))


_C = _compressed_ops
_COMPRESSED_METHODS = {
    "to_dense": _compressed_to_dense,
    "sum": _C.sum,
    "mm": _C.matmul,
    "matmul": _C.matmul,
    "t": _C.t,
    "transpose": _C.transpose,
    "add": _C.add,
    "sub": _C.sub,
    "mul": _C.mul,
    "div": _C.div,
    "neg": _C.neg,
    "__matmul__": _C.matmul,
    "__rmatmul__": _r_c(_C.matmul),
    "__add__": _C.add,
    "__radd__": _r_c(_C.add),
    "__sub__": _C.sub,
    "__rsub__": _r_c(_C.sub),
    "__mul__": _C.mul,
    "__rmul__": _C.mul,
    "__truediv__": _C.div,
    "__neg__": _C.neg,
}
_COMPRESSED_METHODS["__abs__"] = lambda self: self._with_values(self._vals.abs())
for _op in ("eq", "ne", "lt", "le", "gt", "ge", "and", "or", "xor", "invert"):
    _COMPRESSED_METHODS.setdefault(f"__{_op}__", _route._refuse(_op))
for _name, _fn in _COMPRESSED_METHODS.items():
    setattr(SparseCompressedTensor, _name, _fn)


def _to_compressed_method(lay):
    def method(self, blocksize=None, dense_dim=None):
        return _compressed_build.to_layout(self, lay, blocksize, dense_dim)

    def method_rc(self, dense_dim=None):
        return _compressed_build.to_layout(self, lay, None, dense_dim)

    fn = method if lay in (sparse_bsr, sparse_bsc) else method_rc
    fn.__name__ = f"to_{lay.name}"
    fn.__doc__ = f"This tensor in the ``ember.{lay.name}`` layout (PyTorch's ``to_{lay.name}``)."
    return fn


for _lay in (sparse_csr, sparse_csc, sparse_bsr, sparse_bsc):
    for _cls in (Tensor, SparseTensor, SparseCompressedTensor):
        setattr(_cls, f"to_{_lay.name}", _to_compressed_method(_lay))

_coo_to_sparse = SparseTensor.to_sparse


def _to_sparse_any(self, sparse_dim=None, *, layout=None, blocksize=None, dense_dim=None):
    """This tensor in ``layout`` (sparse COO by default; ``ember.sparse_csr``/``csc``/``bsr``/
    ``bsc`` with ``blocksize`` for the block layouts), as PyTorch's ``Tensor.to_sparse``."""
    lay = _compressed_build._layout_of(layout) if layout is not None else None
    if lay is not None:
        return _compressed_build.to_layout(self, lay, blocksize, dense_dim)
    if isinstance(self, SparseCompressedTensor):
        return _compressed_build.compressed_to_coo(self)
    if isinstance(self, SparseTensor):
        return _coo_to_sparse(self, sparse_dim)
    return to_sparse(self, sparse_dim, layout=layout)


for _cls in (Tensor, SparseTensor, SparseCompressedTensor):
    _cls.to_sparse = _to_sparse_any
SparseCompressedTensor.to_sparse_coo = _compressed_build.compressed_to_coo


def _not_compressed(name: str, kind: str):
    def method(self, *args, **kwargs):
        raise RuntimeError(
            f"{name} expected sparse {kind} compressed tensor layout but got "
            f"{_compressed.layout_name(self)}"
        )

    method.__name__ = name
    method.__doc__ = (
        f"Sparse compressed tensors only (``layout=ember.sparse_csr``, ...): ``{name}``."
    )
    return method


for _cls in (Tensor, SparseTensor):
    _cls.crow_indices = _not_compressed("crow_indices", "row")
    _cls.col_indices = _not_compressed("col_indices", "row")
    _cls.ccol_indices = _not_compressed("ccol_indices", "column")
    _cls.row_indices = _not_compressed("row_indices", "column")


def _copy_of(name: str):
    def fn(input: Tensor) -> Tensor:
        return getattr(input, name)().clone()

    fn.__name__ = f"{name}_copy"
    fn.__doc__ = f"A copy of ``input.{name}()`` (PyTorch's ``torch.{name}_copy``)."
    return fn


crow_indices_copy = _copy_of("crow_indices")
col_indices_copy = _copy_of("col_indices")
ccol_indices_copy = _copy_of("ccol_indices")
row_indices_copy = _copy_of("row_indices")
indices_copy = _copy_of("indices")
values_copy = _copy_of("values")
