"""Shape ops that reshape or reorder dimensions (views where possible): reshape, view, flatten,
squeeze/unsqueeze, permute/transpose/movedim, expand/broadcast_to.
"""

from __future__ import annotations

import numpy as np

from ..autograd.function import Function
from ..tensor import Tensor
from ._util import scalar_type_name, wrap_dim

_ndarray = np.ndarray


class Reshape(Function):
    _view_of = 0

    @staticmethod
    def forward(ctx, x, shape, view):
        ctx.shape = x.shape
        if view:
            try:
                if type(x) is _ndarray:  # the method: np.reshape is ~0.5 us of Python around it
                    return x.reshape(shape, copy=False)
                return ctx.xp.reshape(x, shape, copy=False)
            except (ValueError, AttributeError, TypeError):
                raise RuntimeError(
                    "view size is not compatible with input tensor's size and stride (at least "
                    "one dimension spans across two contiguous subspaces). Use .reshape(...) "
                    "instead."
                ) from None
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        return ctx.xp.reshape(grad, ctx.shape), None, None


class Permute(Function):
    _view_of = 0

    @staticmethod
    def forward(ctx, x, axes):
        ctx.axes = axes
        return x.transpose(axes)

    @staticmethod
    def backward(ctx, grad):
        inv = [0] * len(ctx.axes)
        for i, a in enumerate(ctx.axes):
            inv[a] = i
        return ctx.xp.transpose(grad, tuple(inv)), None


class Expand(Function):
    _view_of = 0

    @staticmethod
    def forward(ctx, x, shape):
        lead = len(shape) - x.ndim
        if shape[lead:] == x.shape and all(s == 1 for s in shape[:lead]):
            # nothing repeats (the same shape, or only new leading dims of size 1): a plain
            # writable view, as torch's is (linear_operator writes into
            # ``x.expand_as(y).contiguous()``, transformers 5 into ``arange(n).expand((1, -1))``);
            # NumPy's broadcast_to always hands back a read-only array
            return x[(None,) * lead + (Ellipsis,)]
        return ctx.xp.broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, grad):
        return grad, None  # the engine sums the gradient back to the input's shape


# ---- public functions ---------------------------------------------------------------------
def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    # the common case, plain ints, returns the tuple as it is: a loop, not all(<generator>) and
    # tuple(<generator>) (~0.6 us of every view / reshape call)
    for s in shape:
        if type(s) is not int:
            break
    else:
        return shape if type(shape) is tuple else tuple(shape)
    if not all(type(s) is int for s in shape):  # 0-d integer tensors (torch takes them)
        from ..creation import _dim_int

        shape = tuple(_dim_int(s, "shape") for s in shape)
    return tuple(int(s) for s in shape)


def _infer(shape, numel, orig):
    if shape.count(-1) > 1:
        raise RuntimeError("only one dimension can be inferred")
    known = 1
    for s in shape:
        if s != -1:
            known *= s
    if -1 in shape:
        if known == 0 or numel % known:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    elif known != numel:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
    return shape


def _by_keyword(fn: str, args: tuple, value, key: str) -> tuple:
    # torch's methods also take their sizes by keyword: x.reshape(shape=...), x.view(size=...),
    # x.expand(size=...), x.permute(dims=...), x.repeat(repeats=...) (lightly's patchify)
    if value is None:
        return args
    if args:
        raise TypeError(f"{fn}() got multiple values for argument '{key}'")
    return (value,)


def reshape(input, *args, shape=None):
    """``input`` with a new shape holding the same elements in the same (row-major) order; one
    dimension may be -1 (inferred). A view where possible, else a copy.
    """
    shape = _by_keyword("reshape", args, shape, "shape")
    shape = _infer(_shape_arg(shape), input._data.size, input._data.shape)
    return Reshape.apply(input, shape, False)


def view(input, *args, size=None, dtype=None):
    """A view of ``input`` with a new shape (one dimension may be -1); it shares data with
    ``input``. ``view(dtype)`` (or ``view(dtype=...)``) reinterprets the bytes instead.
    """
    shape = _by_keyword("view", args, size, "size")
    if dtype is not None:
        if shape:
            raise TypeError("view() takes either a shape or dtype=, not both")
        return _view_dtype(input, dtype)
    if len(shape) == 1 and not isinstance(shape[0], (int, tuple, list, Tensor)):
        return _view_dtype(input, shape[0])
    shape = _infer(_shape_arg(shape), input._data.size, input._data.shape)
    return Reshape.apply(input, shape, True)


def _view_dtype(input, dt):
    from ..backend.dtype import to_dtype

    d = to_dtype(dt)
    a, old = input._data, input.dtype
    if d.itemsize != a.itemsize:
        # torch's rule: the last dim is contiguous and its bytes divide into the new elements
        # (it grows or shrinks by the size ratio); the other strides must divide too
        kind = "smaller" if d.itemsize < a.itemsize else "larger"
        if a.ndim == 0:
            raise RuntimeError(
                f"self.dim() cannot be 0 to view {_c10(old)} as {_c10(d)} (different element sizes)"
            )
        if a.shape[-1] != 1 and a.strides[-1] != a.itemsize:
            raise RuntimeError(
                f"self.stride(-1) must be 1 to view {_c10(old)} as {_c10(d)} (different element "
                "sizes), but got " + str(a.strides[-1] // a.itemsize)
            )
        if kind == "larger" and (a.shape[-1] * a.itemsize) % d.itemsize:
            ratio = d.itemsize // a.itemsize
            raise RuntimeError(
                f"self.size(-1) must be divisible by {ratio} to view {_c10(old)} as {_c10(d)} "
                f"(different element sizes), but got {a.shape[-1]}"
            )
        if a.shape[-1] == 1 and a.strides[-1] != a.itemsize:
            a = a.reshape(a.shape)  # a size-1 last dim may carry any stride; numpy needs 1
    out = Tensor._wrap(a.view(d.np))
    out._version_counter = input._version_counter
    out._base = input if input._base is None else input._base
    return out


def _c10(d) -> str:
    from ..backend.dtype import _C10_NAMES

    return _C10_NAMES.get(d.name, d.name)


def view_as(input, other):
    """``input.view(other.shape)``."""
    return view(input, other._data.shape)


def reshape_as(input, other):
    """``input.reshape(other.shape)``."""
    return reshape(input, other._data.shape)


def flatten(input, start_dim=0, end_dim=-1):
    """``input`` with the dimensions ``start_dim`` to ``end_dim`` merged into one."""
    if type(input) is not Tensor and getattr(input, "is_nested", False):
        return input.flatten(start_dim, end_dim)  # ember.nested's rule (the ragged dim)
    nd = input._data.ndim
    if nd == 0:
        return reshape(input, 1)
    s, e = wrap_dim(start_dim, nd), wrap_dim(end_dim, nd)
    if s > e:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    shp = input._data.shape
    n = 1
    for d in shp[s : e + 1]:
        n *= d
    return reshape(input, shp[:s] + (n,) + shp[e + 1 :])


def unflatten(input, dim, sizes):
    """``input`` with dimension ``dim`` split into the shape ``sizes`` (one entry may be -1)."""
    shp = input._data.shape
    d = wrap_dim(dim, len(shp))
    try:
        sizes = _infer(tuple(sizes), shp[d], shp)
    except RuntimeError:
        raise RuntimeError(
            f"unflatten: Provided sizes {list(sizes)} don't multiply up to the "
            f"size of dim {dim} ({shp[d]}) in the input tensor"
        ) from None
    return reshape(input, shp[:d] + sizes + shp[d + 1 :])


def squeeze(input, dim=None):
    """``input`` without its dimensions of size 1 (only those in ``dim``, an int or a tuple, when
    given).
    """
    shp = input._data.shape
    if dim is None:
        new = tuple(s for s in shp if s != 1)
    else:
        dims = {wrap_dim(d, len(shp)) for d in (dim if isinstance(dim, (tuple, list)) else [dim])}
        new = tuple(s for i, s in enumerate(shp) if not (i in dims and s == 1))
    return Reshape.apply(input, new, True)


def unsqueeze(input, dim):
    """``input`` with a new dimension of size 1 inserted at ``dim``."""
    shp = input._data.shape
    d = wrap_dim(dim, len(shp) + 1)
    return Reshape.apply(input, shp[:d] + (1,) + shp[d:], True)


def permute(input, *args, dims=None):
    """A view of ``input`` with its dimensions reordered as ``dims``."""
    dims = _shape_arg(_by_keyword("permute", args, dims, "dims"))
    nd = input._data.ndim
    if len(dims) != nd:
        raise RuntimeError(
            f"permute(sparse_coo): number of dimensions in the tensor input does not match the "
            f"length of the desired ordering of dimensions i.e. input.dim() = {nd} is not equal "
            f"to len(dims) = {len(dims)}"
        )
    axes = tuple(wrap_dim(d, nd) for d in dims)
    if len(set(axes)) != nd:
        raise RuntimeError("permute(): duplicate dims are not allowed.")
    return Permute.apply(input, axes)


def transpose(input, dim0, dim1):
    """A view of ``input`` with dimensions ``dim0`` and ``dim1`` swapped."""
    nd = input._data.ndim
    if nd < 2 and dim0 in (0, -1) and dim1 in (0, -1):
        return Reshape.apply(input, input._data.shape, True)
    axes = list(range(nd))
    a, b = wrap_dim(dim0, nd), wrap_dim(dim1, nd)
    axes[a], axes[b] = axes[b], axes[a]
    return Permute.apply(input, tuple(axes))


def swapaxes(input, axis0, axis1):
    """Alias for :func:`transpose` under NumPy's names (``torch.swapaxes(x, axis0, axis1)``)."""
    return transpose(input, axis0, axis1)


def t(input):
    """The transpose of a tensor of at most 2 dimensions (0-d and 1-d are returned as they are)."""
    if input._data.ndim > 2:
        raise RuntimeError(
            f"t() expects a tensor with <= 2 dimensions, but self is {input._data.ndim}D"
        )
    return transpose(input, 0, -1) if input._data.ndim == 2 else input


def movedim(input, source, destination):
    """``input`` with the dimension(s) ``source`` moved to the position(s) ``destination``."""
    nd = input._data.ndim
    src = [wrap_dim(s, nd) for s in (source if isinstance(source, (list, tuple)) else [source])]
    dst = [
        wrap_dim(s, nd)
        for s in (destination if isinstance(destination, (list, tuple)) else [destination])
    ]
    order = [i for i in range(nd) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return Permute.apply(input, tuple(order))


def expand(input, *args, size=None):
    """A view of ``input`` with its size-1 dimensions repeated to ``sizes`` without copying (-1
    keeps
    a size); new leading dimensions may be added.
    """
    sizes = _shape_arg(_by_keyword("expand", args, size, "size"))
    shp = input._data.shape
    if len(sizes) < len(shp):
        raise RuntimeError(
            f"expand(ember.{scalar_type_name(input)}Tensor{{{list(shp)}}}, size={list(sizes)}): "
            f"the number of "
            f"sizes provided ({len(sizes)}) must be greater or equal to the number of dimensions "
            f"in the tensor ({len(shp)})"
        )
    lead = len(sizes) - len(shp)
    full = [0] * len(sizes)
    for i in range(len(sizes) - 1, -1, -1):  # from the last dim, as PyTorch reports it
        s = sizes[i]
        cur = shp[i - lead] if i >= lead else 1
        if s == -1:
            if i < lead:
                raise RuntimeError(
                    f"The expanded size of the tensor (-1) isn't allowed in a leading, "
                    f"non-existing dimension {i}"
                )
            s = cur
        elif cur != 1 and cur != s:
            raise RuntimeError(
                f"The expanded size of the tensor ({s}) must match the existing size ({cur}) at "
                f"non-singleton dimension {i}.  Target sizes: {list(sizes)}.  Tensor sizes: "
                f"{list(shp)}"
            )
        full[i] = s
    return Expand.apply(input, tuple(full))


def expand_as(input, other):
    """``input.expand(other.shape)``."""
    return expand(input, other._data.shape)


def broadcast_to(input, size):
    """``input`` broadcast to the shape ``size``, as :func:`expand`."""
    return expand(input, size)
