"""The nested tensor, PyTorch's ``torch.nested`` (docs/nested.md).

A :class:`NestedTensor` is a ``Tensor`` subclass for a batch of tensors whose sizes differ in
some dimensions. It has one of two layouts:

* ``ember.jagged`` (``layout=torch.jagged``): one ragged dimension. The components are packed
  along that dimension into one dense ``values`` tensor, with ``offsets`` (``B + 1`` int64
  boundaries) and optional ``lengths`` (a non-contiguous view, from :func:`ember.nested.narrow`).
  ``values`` has the logical shape without the batch dimension, the ragged dimension replaced
  by the total length: a ``(B, j1, H, D)`` tensor transposed to ``(B, H, j1, D)`` has values of
  shape ``(H, total, D)`` (``_ragged_idx`` says where the ragged dimension is), as in PyTorch.
* ``ember.strided`` (the default of ``nested_tensor``): a list of component tensors of the same
  number of dimensions, any of which may differ in size; every op runs per component.

Its ``_data`` is a :class:`_NestedData` placeholder (the logical shape and the dtype), so the
attributes that read ``_data`` work and any op that reaches ``Function.apply`` with a nested
argument is handed to ``_route.nested_apply``: the op's nested rule (on ``values`` or per
component) or ``NotImplementedError`` naming the op. Autograd lives on ``values`` (or the
components): every nested op is built from differentiable ops on them.

The size of a ragged dimension is a :class:`NestedInt` (printed ``j1``, like PyTorch's SymInt):
equal only to itself, shared by nested tensors with the same offsets, and never an ``int``.
"""

from __future__ import annotations

from .._torch_misc import jagged, strided
from ..tensor import Size, Tensor, _parse_to, _wrap_dim
from ._size import NestedInt, _NestedData, nested_int_for, unsupported


class NestedTensor(Tensor):
    """A batch of tensors of different sizes (``is_nested``); build one with
    :func:`ember.nested.nested_tensor` and friends."""

    # jagged: _values/_offsets/_lengths/_ragged_idx/_jsize; strided: _comps
    __slots__ = ("_values", "_offsets", "_lengths", "_ragged_idx", "_jsize", "_comps")

    # ---- construction -------------------------------------------------------------------
    @staticmethod
    def _empty(shape, dtype) -> NestedTensor:
        t = object.__new__(NestedTensor)
        t._data = _NestedData(shape, dtype)
        t._output_nr = 0
        t._version_counter = [0]
        t._base = None
        t._hooks = None
        t._post_acc_hooks = None
        t._values = t._offsets = t._lengths = t._jsize = t._comps = None
        t._ragged_idx = 1
        return t

    @staticmethod
    def _jagged(values, offsets, lengths=None, ragged_idx=1, jsize=None) -> NestedTensor:
        """A jagged nested tensor over ``values`` (ragged dimension at ``ragged_idx - 1``)."""
        if jsize is None:
            jsize = nested_int_for(offsets if lengths is None else lengths)
        shape = list(values._data.shape)
        shape[ragged_idx - 1] = jsize
        t = NestedTensor._empty((int(offsets.shape[0]) - 1, *shape), values._data.dtype)
        t._values, t._offsets, t._lengths = values, offsets, lengths
        t._ragged_idx, t._jsize = ragged_idx, jsize
        return t

    @staticmethod
    def _strided(comps) -> NestedTensor:
        """A strided nested tensor of the component tensors ``comps``."""
        comps = list(comps)
        if not comps:
            shape = (0,)
            dtype = None
        else:
            nd = comps[0].dim()
            if any(c.dim() != nd for c in comps):
                raise RuntimeError(
                    "All Tensors given to nested_tensor must have the same dimension. Found "
                    f"dimensions {sorted({c.dim() for c in comps})}."
                )
            sizes = [c.shape for c in comps]
            shape = (len(comps),) + tuple(
                sizes[0][d] if all(s[d] == sizes[0][d] for s in sizes) else NestedInt()
                for d in range(nd)
            )
            dtype = comps[0]._data.dtype
        if dtype is None:
            import numpy as np

            dtype = np.dtype(np.float32)
        t = NestedTensor._empty(shape, dtype)
        t._comps = comps
        return t

    def _like(self, values, ragged_idx=None) -> NestedTensor:
        """A jagged nested tensor with this one's offsets around new ``values``."""
        return NestedTensor._jagged(
            values,
            self._offsets,
            self._lengths,
            self._ragged_idx if ragged_idx is None else ragged_idx,
            self._jsize,
        )

    @property
    def _is_jagged(self) -> bool:
        return self._comps is None

    def _parts(self) -> list[Tensor]:
        """The differentiable tensors that hold the data (autograd state)."""
        return [self._values] if self._comps is None else self._comps

    # ---- autograd state is the values' (or the components') -----------------------------
    @property
    def requires_grad(self) -> bool:
        return any(p.requires_grad for p in self._parts())

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        for p in self._parts():
            p.requires_grad = value

    @property
    def grad_fn(self):
        for p in self._parts():
            if p.grad_fn is not None:
                return p.grad_fn
        return None

    @grad_fn.setter
    def grad_fn(self, value) -> None:
        if value is not None:
            raise RuntimeError("grad_fn of a nested tensor cannot be set")

    @property
    def grad(self):
        if self._comps is None:
            g = self._values.grad
            return None if g is None else self._like(g)
        gs = [c.grad for c in self._comps]
        if all(g is None for g in gs):
            return None
        return NestedTensor._strided(
            [c.new_zeros(c.shape) if g is None else g for c, g in zip(self._comps, gs)]
        )

    @grad.setter
    def grad(self, value) -> None:
        if value is None:
            for p in self._parts():
                p.grad = None
            return
        if not isinstance(value, NestedTensor):
            raise RuntimeError("the gradient of a nested tensor must be a nested tensor")
        for p, g in zip(self._parts(), value._parts()):
            p.grad = g

    @property
    def is_leaf(self) -> bool:
        return all(p.grad_fn is None for p in self._parts())

    def requires_grad_(self, requires_grad: bool = True) -> NestedTensor:
        for p in self._parts():
            p.requires_grad_(requires_grad)
        return self

    def retain_grad(self) -> None:
        for p in self._parts():
            p.retain_grad()

    def detach(self) -> NestedTensor:
        if self._comps is None:
            return self._like(self._values.detach())
        return NestedTensor._strided([c.detach() for c in self._comps])

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Backward from a nested output: ``gradient`` must be a nested tensor of the same
        structure (a nested tensor is never a scalar)."""
        from ..autograd import backward

        if not isinstance(gradient, NestedTensor):
            raise RuntimeError(
                "grad can be implicitly created only for scalar outputs; a nested tensor "
                "needs a nested gradient (or reduce it first, e.g. nt.values().sum())"
            )
        backward(self._parts(), gradient._parts(), retain_graph, create_graph, inputs=inputs)

    # ---- layout queries -----------------------------------------------------------------
    @property
    def is_nested(self) -> bool:
        return True

    @property
    def layout(self):
        return strided if self._comps is not None else jagged

    @property
    def device(self):
        parts = self._parts()
        if not parts:
            from ..backend.device import CPU

            return CPU
        return parts[0].device

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def is_meta(self) -> bool:
        return False

    @property
    def shape(self) -> Size:
        return Size(self._data.shape)

    def size(self, dim: int | None = None):
        if dim is None:
            return Size(self._data.shape)
        d = _wrap_dim(dim, self._data.ndim)
        s = self._data.shape[d]
        if self._comps is not None and isinstance(s, NestedInt):
            raise RuntimeError(f"Given dimension {d} is irregular and does not have a size.")
        return s

    def numel(self) -> int:
        return sum(p.numel() for p in self._parts())

    nelement = numel

    def element_size(self) -> int:
        return self._data.dtype.itemsize

    def values(self) -> Tensor:
        """The packed components: jagged layout, a differentiable view; strided layout, the
        flattened components one after the other (torch's buffer; ember keeps the strided
        components apart, so this is a differentiable copy)."""
        if self._comps is not None:
            from ..ops.shape_joins import cat

            return cat([c.reshape(-1) for c in self._comps], 0)
        return self._values

    def _strided_meta(self, what: str, fn) -> Tensor:
        if self._comps is None:
            raise RuntimeError(f"{what}() is only supported for layout=ember.strided")
        from ..backend.dtype import int64
        from ..creation import tensor as _tensor

        rows = [fn(c) for c in self._comps]
        return _tensor(rows, dtype=int64)

    def _nested_tensor_size(self) -> Tensor:
        """The ``(B, ndim)`` int64 shapes of the components (strided layout)."""
        return self._strided_meta("_nested_tensor_size", lambda c: list(c.shape))

    def _nested_tensor_strides(self) -> Tensor:
        """The ``(B, ndim)`` int64 strides of the components as packed in ``values()``."""
        return self._strided_meta("_nested_tensor_strides", lambda c: list(c.contiguous().stride()))

    def _nested_tensor_storage_offsets(self) -> Tensor:
        """The ``B`` int64 offsets of the components in ``values()``."""
        starts, n = [], 0
        for c in self._comps or []:
            starts.append(n)
            n += c.numel()
        return self._strided_meta("_nested_tensor_storage_offsets", lambda c: 0).new_tensor(starts)

    def offsets(self) -> Tensor:
        """The ``B + 1`` int64 boundaries of the components in ``values()``."""
        if self._comps is not None:
            raise RuntimeError("offsets() is only supported for layout=ember.jagged")
        return self._offsets

    def lengths(self):
        """The component lengths of a non-contiguous jagged tensor, else None."""
        if self._comps is not None:
            raise RuntimeError("lengths() is only supported for layout=ember.jagged")
        return self._lengths

    def _lengths_list(self) -> list[int]:
        off = [int(v) for v in self._offsets.cpu()._data.tolist()]
        if self._lengths is not None:
            return [int(v) for v in self._lengths.cpu()._data.tolist()]
        return [off[i + 1] - off[i] for i in range(len(off) - 1)]

    def _starts_list(self) -> list[int]:
        return [int(v) for v in self._offsets.cpu()._data.tolist()[:-1]]

    def is_contiguous(self, memory_format=None) -> bool:
        if self._comps is not None:
            return all(c.is_contiguous() for c in self._comps)
        return self._lengths is None and self._values.is_contiguous()

    # ---- conversions --------------------------------------------------------------------
    def to(self, *args, **kwargs) -> NestedTensor:
        dev, dt, copy = _parse_to(args, kwargs)
        if self._comps is not None:
            return NestedTensor._strided(
                [c.to(device=dev, dtype=dt, copy=copy) for c in self._comps]
            )
        values = self._values.to(device=dev, dtype=dt, copy=copy)
        if values is self._values:
            return self
        if dev is None:
            return self._like(values)
        lengths = None if self._lengths is None else self._lengths.to(dev)
        offsets = self._offsets.to(dev)
        return NestedTensor._jagged(values, offsets, lengths, self._ragged_idx, self._jsize)

    def type(self, dtype=None):
        if dtype is None:
            return f"ember.nested.{self.dtype}"
        return self.to(dtype)

    def clone(self, *, memory_format=None) -> NestedTensor:
        if self._comps is not None:
            return NestedTensor._strided([c.clone() for c in self._comps])
        return self._like(self._values.clone())

    def contiguous(self, memory_format=None) -> NestedTensor:
        if self.is_contiguous():
            return self
        from ._construct import as_nested_tensor

        return as_nested_tensor(self.unbind(), layout=self.layout)

    def unbind(self, dim: int = 0) -> tuple[Tensor, ...]:
        """The components (differentiable views of ``values``)."""
        if _wrap_dim(dim, self.dim()) != 0:
            raise RuntimeError("unbind(): only supported for nested tensors on dim=0")
        if self._comps is not None:
            return tuple(self._comps)
        r = self._ragged_idx - 1
        return tuple(
            self._values.narrow(r, s, n) for s, n in zip(self._starts_list(), self._lengths_list())
        )

    def __len__(self) -> int:
        return self._data.shape[0]

    def __iter__(self):
        return iter(self.unbind())

    def numpy(self, *, force: bool = False):
        raise unsupported("numpy()")

    def item(self):
        raise unsupported("item()")

    def tolist(self):
        return [c.tolist() for c in self.unbind()]

    def stride(self, dim=None):
        raise unsupported("stride()")

    def data_ptr(self) -> int:
        raise unsupported("data_ptr()")

    @property
    def data(self) -> NestedTensor:
        return self.detach()

    def __setitem__(self, index, value):
        raise unsupported("index assignment")

    def __bool__(self) -> bool:
        raise unsupported("bool()")

    def __repr__(self) -> str:
        if self._comps is None:
            size = ", ".join(str(s) for s in self._data.shape)
            return (
                f"NestedTensor(size=({size}), offsets={self._offsets!r}, "
                f"contiguous={self.is_contiguous()})"
            )
        if not self._comps:
            return "nested_tensor([\n\n])"
        body = ",\n".join(
            "\n".join("  " + ln if ln else ln for ln in repr(c).split("\n")) for c in self._comps
        )
        return f"nested_tensor([\n{body}\n])"

    __str__ = __repr__

    def __reduce_ex__(self, protocol):
        # pickling (multiprocessing, Ray): the components, on the CPU, no graph
        comps = [c.detach().cpu() for c in self.unbind()]
        return (_rebuild_nested, (comps, self.layout.name, self.requires_grad))

    def __deepcopy__(self, memo):
        t = self.detach().clone()
        if self.requires_grad:
            t.requires_grad_()
        memo[id(self)] = t
        return t


def _rebuild_nested(comps, layout_name: str, requires_grad: bool = False) -> NestedTensor:
    from ._construct import nested_tensor

    return nested_tensor(
        comps, layout=jagged if layout_name == "jagged" else strided, requires_grad=requires_grad
    )
