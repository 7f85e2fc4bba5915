"""Shape methods of nested tensors (transpose, unflatten, flatten, reshape, indexing, chunk)
and the ``__torch_function__`` handlers of the participating functions (softmax, dropout,
matmul, cat, scaled_dot_product_attention)."""

from __future__ import annotations

from ..tensor import Tensor, _wrap_dim
from ._route import refuse
from ._tensor import NestedInt, NestedTensor


def _dim(nt: NestedTensor, d: int, what: str) -> int:
    d = _wrap_dim(d, nt.dim())
    if d == 0:
        raise RuntimeError(f"{what}(): not supported for nested tensors on dim=0 (the batch)")
    return d


# ---- shape methods ---------------------------------------------------------------------
def transpose(self: NestedTensor, dim0: int, dim1: int) -> NestedTensor:
    d0, d1 = _dim(self, dim0, "transpose"), _dim(self, dim1, "transpose")
    if self._comps is not None:
        return NestedTensor._strided([c.transpose(d0 - 1, d1 - 1) for c in self._comps])
    r = self._ragged_idx
    r = d1 if r == d0 else d0 if r == d1 else r
    return self._like(self._values.transpose(d0 - 1, d1 - 1), r)


def unflatten(self: NestedTensor, dim: int, sizes) -> NestedTensor:
    d = _dim(self, dim, "unflatten")
    sizes = tuple(sizes)
    if self._comps is not None:
        return NestedTensor._strided([c.unflatten(d - 1, sizes) for c in self._comps])
    r = self._ragged_idx
    if d == r:
        raise RuntimeError("unflatten(): not supported on the ragged dimension")
    values = self._values.unflatten(d - 1, sizes)
    return self._like(values, r + len(sizes) - 1 if d < r else r)


def flatten(self: NestedTensor, start_dim: int = 0, end_dim: int = -1) -> NestedTensor:
    s, e = _dim(self, start_dim, "flatten"), _wrap_dim(end_dim, self.dim())
    if e < s:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    if s == e:
        return self
    if self._comps is not None:
        return NestedTensor._strided([c.flatten(s - 1, e - 1) for c in self._comps])
    r = self._ragged_idx
    if s <= r <= e:
        raise RuntimeError("flatten(): cannot flatten the ragged dimension of a jagged tensor")
    values = self._values.flatten(s - 1, e - 1)
    return self._like(values, r - (e - s) if e < r else r)


def reshape(self: NestedTensor, *shape) -> NestedTensor:
    """PyTorch's nested reshape: the batch size stays, ``-1`` keeps a dimension's old size
    (it does not infer), and the ragged dimension may only be given as ``-1`` (or its
    ``NestedInt``)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    b = self.shape[0]
    if not shape or shape[0] not in (-1, b):
        raise RuntimeError(
            f"reshape(): the batch dimension of a nested tensor must stay {b}, got {list(shape)}"
        )
    inner = [int(s) if not isinstance(s, NestedInt) else s for s in shape[1:]]
    if self._comps is not None:
        out = []
        for c in self._comps:
            new = [c.shape[i] if s == -1 and i < c.dim() else s for i, s in enumerate(inner)]
            if any(isinstance(s, NestedInt) or s == -1 for s in new):
                raise RuntimeError(f"reshape(): cannot infer the size of {list(shape)}")
            out.append(c.reshape(new))
        return NestedTensor._strided(out)
    r = self._ragged_idx
    old = list(self._values.shape)
    if len(inner) < r or (inner[r - 1] != -1 and inner[r - 1] is not self._jsize):
        raise RuntimeError(
            f"reshape(): the ragged dimension {r} must be given as -1 (got {list(shape)})"
        )
    if any(inner[i] not in (-1, old[i]) for i in range(r - 1)):
        raise RuntimeError("reshape(): the dimensions before the ragged one must stay")
    new = [old[i] if s == -1 and i < len(old) else s for i, s in enumerate(inner)]
    new[r - 1] = old[r - 1]
    if any(s == -1 for s in new):
        raise RuntimeError(f"reshape(): cannot infer the size of {list(shape)}")
    return self._like(self._values.reshape(new))


def getitem(self: NestedTensor, index):
    """``nt[i]`` is component ``i`` (a dense tensor); ``nt[i, ...]`` indexes into it."""
    rest = ()
    if isinstance(index, tuple):
        index, rest = (index[0], index[1:]) if index else (slice(None), ())
    if isinstance(index, Tensor) and index.dim() == 0:
        index = int(index.item())
    if not isinstance(index, int) or isinstance(index, bool):
        raise RuntimeError(
            "slice(): not supported for NestedTensor on dim=0; index one component with an int"
        )
    comps = self.unbind()
    comp = comps[index]
    return comp[rest] if rest else comp


def chunk(self: NestedTensor, chunks: int, dim: int = 0):
    d = _dim(self, dim, "chunk")
    if self._comps is not None:
        parts = [c.chunk(chunks, d - 1) for c in self._comps]
        return tuple(NestedTensor._strided(p) for p in zip(*parts))
    if d == self._ragged_idx:
        raise RuntimeError("chunk(): not supported on the ragged dimension of a jagged tensor")
    return tuple(self._like(v) for v in self._values.chunk(chunks, d - 1))


def split(self: NestedTensor, split_size, dim: int = 0):
    d = _dim(self, dim, "split")
    if self._comps is not None:
        parts = [c.split(split_size, d - 1) for c in self._comps]
        return tuple(NestedTensor._strided(p) for p in zip(*parts))
    if d == self._ragged_idx:
        raise RuntimeError("split(): not supported on the ragged dimension of a jagged tensor")
    return tuple(self._like(v) for v in self._values.split(split_size, d - 1))


def _compare(name: str):
    """Comparisons (which build no autograd node in ember): on ``values`` / per component."""

    def method(self, other):
        from ._route import _same_structure, dense_operand

        if self._comps is not None:
            others = other._comps if isinstance(other, NestedTensor) else [other] * len(self)
            return NestedTensor._strided([getattr(c, name)(o) for c, o in zip(self._comps, others)])
        if isinstance(other, NestedTensor):
            if not _same_structure(self, other):
                raise RuntimeError(f"{name}: nested tensors of different structure")
            other = other._values
        elif isinstance(other, Tensor):
            other = dense_operand(self, other)
        return self._like(getattr(self._values, name)(other))

    method.__name__ = name
    return method


def _inplace(name: str):
    """In-place ops write into ``values`` (or each component)."""

    def method(self, *args, **kwargs):
        from ._route import dense_operand

        if self._comps is not None:
            for i, c in enumerate(self._comps):
                a = [x._comps[i] if isinstance(x, NestedTensor) else x for x in args]
                getattr(c, name)(*a, **kwargs)
        else:
            a = [
                x._values
                if isinstance(x, NestedTensor)
                else dense_operand(self, x)
                if isinstance(x, Tensor)
                else x
                for x in args
            ]
            getattr(self._values, name)(*a, **kwargs)
        self._version_counter[0] += 1
        return self

    method.__name__ = name
    return method


def permute(self: NestedTensor, *dims) -> NestedTensor:
    from ..ops.shape_views import permute as dense_permute

    return dense_permute(self, *dims)


def to_padded_tensor(self: NestedTensor, padding: float, output_size=None) -> Tensor:
    """``ember.nested.to_padded_tensor(self, padding, output_size)``."""
    from ._construct import to_padded_tensor as pad

    return pad(self, padding, output_size)


def _refusing(name: str):
    def method(self, *args, **kwargs):
        raise refuse(name)

    method.__name__ = name
    # Without its own docstring, the API reference would show the inherited Tensor method's.
    method.__doc__ = (
        f"Not supported on a nested tensor: raises ``NotImplementedError`` (use "
        f":meth:`unbind` or :func:`ember.nested.to_padded_tensor` for ``{name}``)."
    )
    return method


METHODS = {
    "transpose": transpose,
    "swapaxes": transpose,
    "swapdims": transpose,
    "unflatten": unflatten,
    "flatten": flatten,
    "reshape": reshape,
    "view": reshape,
    "__getitem__": getitem,
    "chunk": chunk,
    "split": split,
    "permute": permute,
    "to_padded_tensor": to_padded_tensor,
    **{n: _compare(n) for n in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__")},
    **{
        n: _inplace(n)
        for n in (
            "add_",
            "sub_",
            "mul_",
            "div_",
            "pow_",
            "clamp_",
            "relu_",
            "zero_",
            "fill_",
            "exp_",
            "tanh_",
            "sigmoid_",
            "neg_",
            "abs_",
            "copy_",
            "normal_",
            "uniform_",
        )
    },
    **{
        n: _refusing(n)
        for n in (
            "expand",
            "repeat",
            "squeeze",
            "unsqueeze",
            "narrow",
            "sort",
            "cumsum",
            "max",
            "min",
            "argmax",
            "argmin",
            "masked_fill",
            "masked_fill_",
            "index_select",
            "gather",
            "scatter",
            "t",
        )
    },
}


# ---- __torch_function__ ------------------------------------------------------------------
def _dropout(input, p=0.5, training=True, inplace=False):
    from ..nn import functional as F

    if input._comps is not None:
        return NestedTensor._strided([F.dropout(c, p, training) for c in input._comps])
    return input._like(F.dropout(input._values, p, training))


def _matmul(a, b):
    from ..ops.linalg import matmul

    strided = [t for t in (a, b) if isinstance(t, NestedTensor) and t._comps is not None]
    if strided:
        n = len(strided[0]._comps)
        as_ = a._comps if isinstance(a, NestedTensor) else [a] * n
        bs = b._comps if isinstance(b, NestedTensor) else [b] * n
        if len(as_) != len(bs) or any(
            isinstance(t, NestedTensor) and t._comps is None for t in (a, b)
        ):
            raise RuntimeError("matmul(): nested tensors of different layouts or batch sizes")
        return NestedTensor._strided([matmul(x, y) for x, y in zip(as_, bs)])
    if not isinstance(b, NestedTensor):
        if b.dim() != 2:
            raise refuse("matmul of a jagged tensor with a dense operand of other than 2 dims")
        if a._ragged_idx == a.dim() - 1:
            raise RuntimeError("matmul(): the last dimension of the jagged input is ragged")
        return a._like(matmul(a._values, b))
    if not isinstance(a, NestedTensor):
        # dense (n, k) @ jagged (B, ..., k, j): the ragged dimension must be the last, as
        # PyTorch's jagged matmul (each column of values is one row of a component)
        if a.dim() != 2 or b._ragged_idx != b.dim() - 1:
            raise RuntimeError(
                f"matmul(): not supported between inputs of shapes {list(a.shape)} and "
                f"{list(b.shape)} (a dense first operand needs 2 dims and a jagged second "
                "operand ragged in its last dimension)"
            )
        return b._like(matmul(a, b._values))
    # jagged (B, ..., n, j) @ jagged (B, ..., j, m): a contraction over the ragged dimension
    # gives a dense (B, ..., n, m), one matmul per component
    from ..ops.shape_joins import stack

    if a._ragged_idx != a.dim() - 1 or b._ragged_idx != b.dim() - 2:
        raise RuntimeError(
            f"matmul(): not supported between inputs of shapes {list(a.shape)} and "
            f"{list(b.shape)} (two jagged operands must contract over their ragged dimension: "
            "(B, ..., n, j) @ (B, ..., j, m))"
        )
    if a._lengths_list() != b._lengths_list():
        raise RuntimeError("matmul(): the jagged operands' components have different lengths")
    return stack([matmul(x, y) for x, y in zip(a.unbind(), b.unbind())], 0)


def _cat(tensors, dim=0):
    from ..ops.shape_joins import cat
    from ._route import _same_structure

    ts = list(tensors)
    if not all(isinstance(t, NestedTensor) for t in ts):
        raise RuntimeError("cat(): expected all tensors to be nested tensors")
    first = ts[0]
    d = _dim(first, dim, "cat")
    if first._comps is not None:
        if any(t._comps is None or len(t._comps) != len(first._comps) for t in ts):
            raise RuntimeError("cat(): nested tensors must have the same layout and batch size")
        return NestedTensor._strided(
            [cat([t._comps[i] for t in ts], d - 1) for i in range(len(first._comps))]
        )
    if d == first._ragged_idx:
        raise RuntimeError("cat(): not supported on the ragged dimension of a jagged tensor")
    if any(t._comps is not None or not _same_structure(first, t) for t in ts):
        raise RuntimeError("cat(): jagged tensors must share their offsets")
    return first._like(cat([t._values for t in ts], d - 1))


def torch_function(cls, func, types, args=(), kwargs=None):
    """``NestedTensor.__torch_function__``: the nested rules of the participating functions;
    the others run as written (their ops reach ``_route.nested_apply``)."""
    from ._sdpa import scaled_dot_product_attention

    kwargs = kwargs or {}
    name = getattr(func, "__name__", "")
    if name == "scaled_dot_product_attention":
        return scaled_dot_product_attention(*args, **kwargs)
    if name == "dropout":
        return _dropout(*args, **kwargs)
    if name == "matmul":
        return _matmul(*args, **kwargs)
    if name == "cat":
        return _cat(*args, **kwargs)
    if name in ("softmax", "silu", "gelu"):
        return func.__wrapped__(*args, **kwargs)
    if getattr(func, "_ember_any_type", False):  # the bounded set's others (view_as_real ...)
        raise refuse(name)
    # every other function runs as written: its ops reach _route.nested_apply
    from ..overrides import _no_subclass_dispatch

    with _no_subclass_dispatch():
        return func(*args, **kwargs)
