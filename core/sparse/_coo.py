"""The sparse COO tensor, PyTorch's ``torch.sparse_coo`` layout.

A :class:`SparseTensor` is an ``Tensor`` subclass holding an int64 ``(sparse_dim, nnz)``
indices tensor, a dense ``(nnz, *dense_shape)`` values tensor and the full size. Its ``_data``
is a :class:`_SparseData` placeholder (shape, dtype and nothing else), so the attributes that
read ``_data`` (``shape``, ``dim``, ``numel``, ``dtype``) work, and any dense op it reaches is
stopped in ``Function.apply`` (core/autograd/function.py) and handed to ``_ops.sparse_apply``:
that runs the op's sparse rule or raises ``NotImplementedError`` naming the op and the layout.

Autograd lives on the values tensor: every sparse op is built from differentiable ops on
``values`` (and the dense operand), so ``requires_grad``/``grad_fn``/``grad`` of a sparse tensor
are those of its values, and the gradient of a sparse leaf is a sparse tensor with the leaf's
indices (PyTorch's sparse gradient, restricted to the stored entries).
"""

from __future__ import annotations

from .._shape_only import ShapeOnly
from .._torch_misc import layout
from ..tensor import Tensor, _parse_to

#: PyTorch's ``torch.sparse_coo``: the layout of :class:`SparseTensor`.
sparse_coo = layout._by_name.get("sparse_coo") or layout("sparse_coo")


def _unsupported(what: str) -> NotImplementedError:
    return NotImplementedError(
        f"{what} is not supported for tensors with layout ember.sparse_coo; call .to_dense() first"
    )


class _MissingArrayAttribute(NotImplementedError, AttributeError):
    """An array attribute a sparse tensor's placeholder lacks: NotImplementedError for the
    user, AttributeError for ``hasattr``/``getattr(..., default)`` probes in ember's code."""


class _SparseData(ShapeOnly):
    """The ``_data`` of a sparse tensor: its shape and dtype, no elements. A NumPy ufunc or
    function reached with it, or any other array attribute, raises NotImplementedError."""

    __slots__ = ("shape", "dtype")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        raise _unsupported(f"the operation {ufunc.__name__!r}")

    def __array_function__(self, func, types, args, kwargs):
        raise _unsupported(f"the operation {func.__name__!r}")

    def __init__(self, shape, dtype) -> None:
        self.shape = tuple(shape)
        self.dtype = dtype

    def __array__(self, dtype=None, copy=None):
        raise _unsupported("conversion to a NumPy array")

    def __getattr__(self, name):
        raise _MissingArrayAttribute(
            f"array attribute {name!r} is not supported for tensors with layout "
            "ember.sparse_coo; call .to_dense() first"
        )


class SparseTensor(Tensor):
    """A sparse COO tensor (``layout=ember.sparse_coo``); build one with
    :func:`ember.sparse_coo_tensor` or :meth:`Tensor.to_sparse`."""

    # _cache: derived data of the indices (segment plans of sparse/_ops.py), never saved
    __slots__ = ("_idx", "_vals", "_coalesced", "_cache")

    @staticmethod
    def _make(indices: Tensor, values: Tensor, shape, coalesced: bool) -> SparseTensor:
        t = object.__new__(SparseTensor)
        t._data = _SparseData(shape, values._data.dtype)
        t._output_nr = 0
        t._version_counter = [0]
        t._base = None
        t._hooks = None
        t._post_acc_hooks = None
        t._idx = indices
        t._vals = values
        t._coalesced = bool(coalesced)
        t._cache = None
        return t

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
        if g is None:
            return None
        if self._coalesced:
            return SparseTensor._make(self._idx, g, self.shape, True)
        # the gradient w.r.t. each distinct position: repeated entries of an uncoalesced
        # leaf share it, so keep one copy per position (PyTorch's coalesced sparse grad)
        from ._ops import _first_of_each

        idx, first = _first_of_each(self._idx._data, tuple(self.shape[: self.sparse_dim()]))
        return SparseTensor._make(Tensor._wrap(idx), Tensor._wrap(g._data[first]), self.shape, True)

    @grad.setter
    def grad(self, value) -> None:
        if value is None:
            self._vals.grad = None
        elif isinstance(value, SparseTensor) and value._idx is self._idx:
            self._vals.grad = value._vals
        else:
            raise RuntimeError("the gradient of a sparse tensor must share its indices")

    @property
    def is_leaf(self) -> bool:
        return self._vals.grad_fn is None

    def requires_grad_(self, requires_grad: bool = True) -> SparseTensor:
        self._vals.requires_grad_(requires_grad)
        return self

    def detach(self) -> SparseTensor:
        return SparseTensor._make(self._idx, self._vals.detach(), self.shape, self._coalesced)

    def backward(self, *args, **kwargs):
        raise _unsupported("backward() from a sparse tensor")

    # ---- layout queries -----------------------------------------------------------------
    @property
    def layout(self):
        return sparse_coo

    @property
    def is_sparse(self) -> bool:
        return True

    @property
    def device(self):
        return self._vals.device

    @property
    def is_cuda(self) -> bool:
        return self._vals.is_cuda

    @property
    def is_meta(self) -> bool:
        return False

    def sparse_dim(self) -> int:
        """The number of sparse dimensions (the rows of ``indices``)."""
        return int(self._idx.shape[0])

    def dense_dim(self) -> int:
        """The number of dense dimensions (the trailing dims of ``values``)."""
        return self._vals.dim() - 1

    def _nnz(self) -> int:
        """The number of stored entries (duplicates included until :meth:`coalesce`)."""
        return int(self._vals.shape[0])

    def is_coalesced(self) -> bool:
        """Whether the indices are sorted and free of duplicates."""
        return self._coalesced

    def _coalesced_(self, coalesced: bool) -> SparseTensor:
        self._coalesced = bool(coalesced)
        return self

    def indices(self) -> Tensor:
        """The ``(sparse_dim, nnz)`` int64 indices of a coalesced tensor."""
        if not self._coalesced:
            raise RuntimeError(
                "Cannot get indices on an uncoalesced tensor, please call .coalesce() first"
            )
        return self._idx

    def values(self) -> Tensor:
        """The ``(nnz, *dense_shape)`` values of a coalesced tensor (differentiable)."""
        if not self._coalesced:
            raise RuntimeError(
                "Cannot get values on an uncoalesced tensor, please call .coalesce() first"
            )
        return self._vals

    def _indices(self) -> Tensor:
        """The indices, coalesced or not."""
        return self._idx

    def _values(self) -> Tensor:
        """The values, coalesced or not, outside the graph (as PyTorch's ``_values``)."""
        return self._vals.detach()

    def to_sparse(self, sparse_dim: int | None = None) -> SparseTensor:
        if sparse_dim is not None and sparse_dim != self.sparse_dim():
            raise _unsupported("to_sparse(sparse_dim) with a different sparse_dim")
        return self

    to_sparse_coo = to_sparse

    # ---- conversions --------------------------------------------------------------------
    def to(self, *args, **kwargs) -> SparseTensor:
        dev, dt, copy = _parse_to(args, kwargs)
        vals = self._vals.to(device=dev, dtype=dt, copy=copy)
        if vals is self._vals:
            return self
        idx = self._idx if dev is None else self._idx.to(dev)
        return SparseTensor._make(idx, vals, self.shape, self._coalesced)

    def type(self, dtype=None):
        if dtype is None:
            return f"ember.sparse.{self.dtype.name}"
        return self.to(dtype)

    def clone(self, *, memory_format=None) -> SparseTensor:
        return SparseTensor._make(
            self._idx.clone(), self._vals.clone(), self.shape, self._coalesced
        )

    def numpy(self, *, force: bool = False):
        raise _unsupported("numpy()")

    def tolist(self):
        raise _unsupported("tolist()")

    def item(self):
        raise _unsupported("item()")

    def is_contiguous(self, memory_format=None) -> bool:
        raise _unsupported("is_contiguous()")

    def stride(self, dim=None):
        raise _unsupported("stride()")

    def data_ptr(self) -> int:
        raise _unsupported("data_ptr()")

    def element_size(self) -> int:
        return self._vals.element_size()

    @property
    def data(self) -> SparseTensor:
        return self.detach()

    def __getitem__(self, index):
        from ._select import route_getitem  # an integer along one dimension, as select()

        return route_getitem((self, index), {})

    def __setitem__(self, index, value):
        raise _unsupported("index assignment")

    def __iter__(self):
        from ._select import select

        if self.dim() == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (select(self, 0, i) for i in range(self.shape[0]))

    def __bool__(self) -> bool:
        raise _unsupported("bool()")

    def __repr__(self) -> str:
        from ._format import sparse_repr

        return sparse_repr(self)

    def __reduce_ex__(self, protocol):
        # pickling (multiprocessing, Ray): the parts, on the CPU, no graph
        return (
            _rebuild_sparse,
            (
                self._idx.cpu().detach(),
                self._vals.cpu().detach(),
                tuple(self.shape),
                self._coalesced,
                self.requires_grad,
            ),
        )

    def __deepcopy__(self, memo):
        t = SparseTensor._make(
            self._idx.clone(), self._vals.detach().clone(), self.shape, self._coalesced
        )
        t._vals.requires_grad = self._vals.requires_grad
        memo[id(self)] = t
        return t


def _rebuild_sparse(indices, values, shape, coalesced, requires_grad=False) -> SparseTensor:
    t = SparseTensor._make(indices, values, shape, coalesced)
    if requires_grad:
        t._vals.requires_grad = True
    return t
