"""The sparse compressed layouts, PyTorch's ``torch.sparse_csr`` / ``sparse_csc`` /
``sparse_bsr`` / ``sparse_bsc``.

A :class:`SparseCompressedTensor` holds int64 **compressed indices** (``crow_indices`` of CSR/BSR,
``ccol_indices`` of CSC/BSC; shape ``(*batch, n_compressed + 1)``), int64 **plain indices**
(``col_indices`` / ``row_indices``; ``(*batch, nnz)``) and a **values** tensor
(``(*batch, nnz, *blocksize, *dense)``). As with the COO :class:`SparseTensor`, its ``_data`` is a
shape-and-dtype :class:`_SparseData` placeholder, so a dense op it reaches is stopped in
``Function.apply`` and routed to ``_compressed_ops.compressed_apply``; autograd lives on the
values tensor (the gradient of a leaf is a compressed tensor with the leaf's own pattern).
"""

from __future__ import annotations

from .._torch_misc import layout
from ..tensor import Tensor, _parse_to
from ._coo import _SparseData


def _layout(name: str):
    return layout._by_name.get(name) or layout(name)


#: PyTorch's ``torch.sparse_csr``: compressed sparse rows (:class:`SparseCompressedTensor`).
sparse_csr = _layout("sparse_csr")
#: PyTorch's ``torch.sparse_csc``: compressed sparse columns.
sparse_csc = _layout("sparse_csc")
#: PyTorch's ``torch.sparse_bsr``: block compressed sparse rows.
sparse_bsr = _layout("sparse_bsr")
#: PyTorch's ``torch.sparse_bsc``: block compressed sparse columns.
sparse_bsc = _layout("sparse_bsc")
COMPRESSED_LAYOUTS = (sparse_csr, sparse_csc, sparse_bsr, sparse_bsc)
ROW_LAYOUTS = (sparse_csr, sparse_bsr)  # compressed along rows
BLOCK_LAYOUTS = (sparse_bsr, sparse_bsc)

#: torch's names for the layouts in its messages (``... but got SparseCsr``)
_TORCH_NAMES = {
    "strided": "Strided",
    "sparse_coo": "Sparse",
    "sparse_csr": "SparseCsr",
    "sparse_csc": "SparseCsc",
    "sparse_bsr": "SparseBsr",
    "sparse_bsc": "SparseBsc",
}


def layout_name(t) -> str:
    """``t``'s layout as torch spells it in messages (``SparseCsr``, ``Strided``)."""
    return _TORCH_NAMES.get(t.layout.name, t.layout.name)


def unsupported(what: str, lay) -> NotImplementedError:
    return NotImplementedError(
        f"{what} is not supported for tensors with layout ember.{lay.name}; call .to_dense() first"
    )


class SparseCompressedTensor(Tensor):
    """A sparse compressed tensor (``layout`` one of ``ember.sparse_csr``, ``sparse_csc``,
    ``sparse_bsr``, ``sparse_bsc``); build one with :func:`ember.sparse_csr_tensor` and
    friends or :meth:`Tensor.to_sparse_csr`."""

    # _cache: derived element indices of sparse/_compressed_ops.py, never saved
    __slots__ = ("_cidx", "_pidx", "_vals", "_layout", "_cache")

    @staticmethod
    def _make(cidx: Tensor, pidx: Tensor, values: Tensor, shape, lay) -> SparseCompressedTensor:
        t = object.__new__(SparseCompressedTensor)
        t._data = _SparseData(shape, values._data.dtype)
        t._output_nr = 0
        t._version_counter = [0]
        t._base = None
        t._hooks = None
        t._post_acc_hooks = None
        t._cidx = cidx
        t._pidx = pidx
        t._vals = values
        t._layout = lay
        t._cache = None
        return t

    def _with_values(self, values: Tensor) -> SparseCompressedTensor:
        """The same pattern with other values (shape of the dense part may not change)."""
        return SparseCompressedTensor._make(
            self._cidx, self._pidx, values, self.shape, self._layout
        )

    # ---- autograd state is the values' --------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._vals.requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        self._vals.requires_grad = value

    @property
    def grad_fn(self):
        return self._vals.grad_fn

    @grad_fn.setter
    def grad_fn(self, value) -> None:
        if value is not None:
            raise RuntimeError("grad_fn of a sparse tensor cannot be set")

    @property
    def grad(self):
        g = self._vals.grad
        return None if g is None else self._with_values(g)

    @grad.setter
    def grad(self, value) -> None:
        if value is None:
            self._vals.grad = None
        elif isinstance(value, SparseCompressedTensor) and value._cidx is self._cidx:
            self._vals.grad = value._vals
        else:
            raise RuntimeError("the gradient of a sparse tensor must share its indices")

    @property
    def is_leaf(self) -> bool:
        return self._vals.grad_fn is None

    def requires_grad_(self, requires_grad: bool = True) -> SparseCompressedTensor:
        self._vals.requires_grad_(requires_grad)
        return self

    def detach(self) -> SparseCompressedTensor:
        return self._with_values(self._vals.detach())

    def backward(self, *args, **kwargs):
        raise unsupported("backward() from a sparse tensor", self._layout)

    # ---- layout queries -----------------------------------------------------------------
    @property
    def layout(self):
        return self._layout

    @property
    def is_sparse(self) -> bool:
        return False  # torch: COO only

    @property
    def is_sparse_csr(self) -> bool:
        return self._layout is sparse_csr  # torch: CSR only, not CSC/BSR/BSC

    @property
    def device(self):
        return self._vals.device

    @property
    def is_cuda(self) -> bool:
        return self._vals.is_cuda

    @property
    def is_meta(self) -> bool:
        return False

    def _batch_dim(self) -> int:
        return self._cidx.dim() - 1

    def _blocksize(self) -> tuple:
        if self._layout in BLOCK_LAYOUTS:
            b = self._batch_dim() + 1
            return tuple(int(s) for s in self._vals.shape[b : b + 2])
        return (1, 1)

    def sparse_dim(self) -> int:
        """2: rows and columns (batch and dense dims excluded)."""
        return 2

    def dense_dim(self) -> int:
        """The number of trailing dense dims of each stored element."""
        return self.dim() - self._batch_dim() - 2

    def _nnz(self) -> int:
        """The number of stored elements (blocks for BSR/BSC) per batch entry."""
        return int(self._pidx.shape[-1])

    def _check_layout(self, name: str, rows: bool):
        if (self._layout in ROW_LAYOUTS) != rows:
            kind = "row" if rows else "column"
            raise RuntimeError(
                f"{name} expected sparse {kind} compressed tensor layout but got "
                f"{layout_name(self)}"
            )

    def crow_indices(self) -> Tensor:
        """The compressed row indices of a CSR/BSR tensor."""
        self._check_layout("crow_indices", True)
        return self._cidx

    def col_indices(self) -> Tensor:
        """The column index of each stored element of a CSR/BSR tensor."""
        self._check_layout("col_indices", True)
        return self._pidx

    def ccol_indices(self) -> Tensor:
        """The compressed column indices of a CSC/BSC tensor."""
        self._check_layout("ccol_indices", False)
        return self._cidx

    def row_indices(self) -> Tensor:
        """The row index of each stored element of a CSC/BSC tensor."""
        self._check_layout("row_indices", False)
        return self._pidx

    def values(self) -> Tensor:
        """The stored values (differentiable)."""
        return self._vals

    def _values(self) -> Tensor:
        return self._vals.detach()

    def indices(self):
        raise RuntimeError(
            f"indices expected sparse coordinate tensor layout but got {layout_name(self)}"
        )

    def is_coalesced(self):
        raise RuntimeError(
            f"is_coalesced expected sparse coordinate tensor layout but got {layout_name(self)}"
        )

    # ---- conversions --------------------------------------------------------------------
    def to(self, *args, **kwargs) -> SparseCompressedTensor:
        dev, dt, copy = _parse_to(args, kwargs)
        vals = self._vals.to(device=dev, dtype=dt, copy=copy)
        if vals is self._vals:
            return self
        c, p = (self._cidx, self._pidx) if dev is None else (self._cidx.to(dev), self._pidx.to(dev))
        return SparseCompressedTensor._make(c, p, vals, self.shape, self._layout)

    def type(self, dtype=None):
        if dtype is None:
            return f"ember.sparse.{self.dtype.name}"
        return self.to(dtype)

    def clone(self, *, memory_format=None) -> SparseCompressedTensor:
        return SparseCompressedTensor._make(
            self._cidx.clone(), self._pidx.clone(), self._vals.clone(), self.shape, self._layout
        )

    def element_size(self) -> int:
        return self._vals.element_size()

    @property
    def data(self) -> SparseCompressedTensor:
        return self.detach()

    def __repr__(self) -> str:
        from ._format import compressed_repr

        return compressed_repr(self)

    def __reduce_ex__(self, protocol):
        # pickling (multiprocessing, Ray): the parts, on the CPU, no graph
        return (
            _rebuild_compressed,
            (
                self._cidx.cpu().detach(),
                self._pidx.cpu().detach(),
                self._vals.cpu().detach(),
                tuple(self.shape),
                self._layout.name,
                self.requires_grad,
            ),
        )

    def __deepcopy__(self, memo):
        t = self.clone().detach()
        t._vals.requires_grad = self._vals.requires_grad
        memo[id(self)] = t
        return t


def _refuse(name: str):
    def method(self, *args, **kwargs):
        raise unsupported(name, self._layout)

    method.__name__ = name
    return method


for _name in ("numpy", "tolist", "item", "is_contiguous", "data_ptr", "__getitem__"):
    setattr(SparseCompressedTensor, _name, _refuse(_name))
for _name in ("__setitem__", "__iter__", "__bool__"):
    setattr(SparseCompressedTensor, _name, _refuse(_name))


def _stride(self, dim=None):
    raise RuntimeError(f"Sparse {layout_name(self)[6:].upper()} tensors do not have strides")


SparseCompressedTensor.stride = _stride


def _rebuild_compressed(cidx, pidx, values, shape, layout_name, requires_grad=False):
    t = SparseCompressedTensor._make(cidx, pidx, values, shape, layout._by_name[layout_name])
    if requires_grad:
        t._vals.requires_grad = True
    return t
