"""Shape ops: views (reshape, permute, expand...), joins and splits, flips, triangles, padding."""

from __future__ import annotations

import builtins

from ..autograd.function import Function
from ..tensor import Tensor
from ._util import result_dtype, scalar_type_name, wrap_dim
from .convert import to_dtype_op


class Reshape(Function):
    _view_of = 0

    @staticmethod
    def forward(ctx, x, shape, view):
        ctx.shape = x.shape
        if view:
            try:
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
        return ctx.xp.broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, grad):
        return grad, None  # the engine sums the gradient back to the input's shape


class Repeat(Function):
    @staticmethod
    def forward(ctx, x, reps):
        ctx.shape = (1,) * (len(reps) - x.ndim) + x.shape
        ctx.reps = reps
        return ctx.xp.tile(x, reps)

    @staticmethod
    def backward(ctx, grad):
        split = []
        for r, s in zip(ctx.reps, ctx.shape):
            split += [r, s]
        g = ctx.xp.reshape(grad, tuple(split))
        g = ctx.xp.sum(g, axis=tuple(range(0, len(split), 2)))
        return g, None


class Cat(Function):
    @staticmethod
    def forward(ctx, axis, *xs):
        ctx.axis = axis
        ctx.sizes = [x.shape[axis] for x in xs]
        return ctx.xp.concatenate(xs, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        out, start = [None], 0
        for n, need in zip(ctx.sizes, ctx.needs_input_grad[1:]):
            if need:
                idx = (builtins.slice(None),) * ctx.axis + (builtins.slice(start, start + n),)
                out.append(grad[idx])
            else:
                out.append(None)
            start += n
        return tuple(out)


class Stack(Function):
    @staticmethod
    def forward(ctx, axis, *xs):
        ctx.axis = axis
        return ctx.xp.stack(xs, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        idx = (builtins.slice(None),) * ctx.axis
        return (None,) + tuple(
            grad[idx + (i,)] if need else None for i, need in enumerate(ctx.needs_input_grad[1:])
        )


class Split(Function):
    _view_of = 0

    @staticmethod
    def forward(ctx, x, sizes, axis):
        ctx.axis = axis
        out, start = [], 0
        for n in sizes:
            idx = (builtins.slice(None),) * axis + (builtins.slice(start, start + n),)
            out.append(x[idx])
            start += n
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads):
        return ctx.xp.concatenate(grads, axis=ctx.axis), None, None


class Flip(Function):
    _view_of = 0

    @staticmethod
    def forward(ctx, x, axes):
        ctx.axes = axes
        return ctx.xp.flip(x, axis=axes)

    @staticmethod
    def backward(ctx, grad):
        return ctx.xp.flip(grad, axis=ctx.axes), None


class Roll(Function):
    @staticmethod
    def forward(ctx, x, shifts, axes):
        ctx.shifts, ctx.axes = shifts, axes
        return ctx.xp.roll(x, shifts, axis=axes)

    @staticmethod
    def backward(ctx, grad):
        neg = tuple(-s for s in ctx.shifts) if isinstance(ctx.shifts, tuple) else -ctx.shifts
        return ctx.xp.roll(grad, neg, axis=ctx.axes), None, None


class Tri(Function):
    @staticmethod
    def forward(ctx, x, k, upper):
        xp = ctx.xp
        rows, cols = x.shape[-2:]
        r = xp.arange(rows).reshape(-1, 1)
        c = xp.arange(cols).reshape(1, -1)
        mask = (c - r >= k) if upper else (c - r <= k)
        ctx.save_for_backward(mask)
        return xp.where(mask, x, xp.zeros((), dtype=x.dtype))

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None, None


class ConstantPad(Function):
    @staticmethod
    def forward(ctx, x, pad_width, value):
        ctx.slices = tuple(builtins.slice(lo, lo + n) for (lo, _), n in zip(pad_width, x.shape))
        return ctx.xp.pad(x, pad_width, mode="constant", constant_values=value)

    @staticmethod
    def backward(ctx, grad):
        return grad[ctx.slices], None, None


# ---- public functions ---------------------------------------------------------------------
def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
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


def reshape(input, *shape):
    """``input`` with a new shape holding the same elements in the same (row-major) order; one
    dimension may be -1 (inferred). A view where possible, else a copy.
    """
    shape = _infer(_shape_arg(shape), input._data.size, input._data.shape)
    return Reshape.apply(input, shape, False)


def view(input, *shape):
    """A view of ``input`` with a new shape (one dimension may be -1); it shares data with
    ``input``.
    """
    if len(shape) == 1 and not isinstance(shape[0], (int, tuple, list)):
        return _view_dtype(input, shape[0])
    shape = _infer(_shape_arg(shape), input._data.size, input._data.shape)
    return Reshape.apply(input, shape, True)


def _view_dtype(input, dt):
    from ..backend.dtype import to_dtype

    d = to_dtype(dt)
    if d.itemsize != input._data.itemsize:
        raise RuntimeError("view(dtype) with a different element size is not supported")
    out = Tensor._wrap(input._data.view(d.np))
    out._version_counter = input._version_counter
    out._base = input if input._base is None else input._base
    return out


def view_as(input, other):
    """``input.view(other.shape)``."""
    return view(input, other._data.shape)


def reshape_as(input, other):
    """``input.reshape(other.shape)``."""
    return reshape(input, other._data.shape)


def flatten(input, start_dim=0, end_dim=-1):
    """``input`` with the dimensions ``start_dim`` to ``end_dim`` merged into one."""
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


def permute(input, *dims):
    """A view of ``input`` with its dimensions reordered as ``dims``."""
    dims = _shape_arg(dims)
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


def expand(input, *sizes):
    """A view of ``input`` with its size-1 dimensions repeated to ``sizes`` without copying (-1
    keeps
    a size); new leading dimensions may be added.
    """
    sizes = _shape_arg(sizes)
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


def repeat(input, *sizes):
    """``input`` tiled ``sizes`` times along each dimension (a copy); see :func:`tile`."""
    reps = _shape_arg(sizes)
    if len(reps) < input._data.ndim:
        raise RuntimeError(
            "Number of dimensions of repeat dims can not be smaller than number of "
            "dimensions of tensor"
        )
    return Repeat.apply(input, reps)


def tile(input, dims):
    """``input`` repeated ``dims`` times along each dimension; shorter ``dims`` are padded with
    1s."""
    dims = tuple(dims)
    return repeat(input, (1,) * (input._data.ndim - len(dims)) + dims)


def _same_dtype(tensors):
    rt = result_dtype(*tensors)
    return [to_dtype_op(t, rt) for t in tensors]


def cat(tensors, dim=0):
    """The tensors joined along the existing dimension ``dim``; their other sizes must match.
    Empty 1-D tensors are skipped, as in PyTorch.
    """
    tensors = list(tensors)
    if not tensors:
        raise ValueError("ember.cat(): expected a non-empty list of Tensors")
    # PyTorch skips 1-D empty tensors (legacy behaviour)
    shaped = [t for t in tensors if not (t._data.ndim == 1 and t._data.shape[0] == 0)]
    if not shaped:
        return tensors[0]
    tensors = _same_dtype(shaped)
    ref = tensors[0]._data
    axis = wrap_dim(dim, ref.ndim)
    for i, t in enumerate(tensors[1:], 1):
        s = t._data.shape
        if len(s) != ref.ndim:
            raise RuntimeError(
                f"Tensors must have same number of dimensions: got {ref.ndim} and {len(s)}"
            )
        for d in range(ref.ndim):
            if d != axis and s[d] != ref.shape[d]:
                raise RuntimeError(
                    f"Sizes of tensors must match except in dimension {axis}. Expected size "
                    f"{ref.shape[d]} but got size {s[d]} for tensor number {i} in the list."
                )
    return Cat.apply(axis, *tensors)


concat = concatenate = cat


def stack(tensors, dim=0):
    """The tensors (all of one shape) joined along a new dimension ``dim``."""
    tensors = _same_dtype(list(tensors))
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    s0 = tensors[0]._data.shape
    for i, t in enumerate(tensors[1:], 1):
        if t._data.shape != s0:
            raise RuntimeError(
                f"stack expects each tensor to be equal size, but got {list(s0)} at entry 0 and "
                f"{list(t._data.shape)} at entry {i}"
            )
    return Stack.apply(wrap_dim(dim, len(s0) + 1), *tensors)


def hstack(tensors):
    """The tensors joined column-wise: along dimension 1, or 0 for 1-D tensors."""
    return cat(tensors, 0 if tensors[0]._data.ndim == 1 else 1)


def vstack(tensors):
    """The tensors joined row-wise: 1-D tensors become rows, then joined along dimension 0."""
    return cat([t if t._data.ndim > 1 else unsqueeze(t, 0) for t in tensors], 0)


def split(input, split_size_or_sections, dim=0):
    """``input`` split into chunks along ``dim``: of ``split_size`` each (the last may be smaller),
    or of the listed sizes. The chunks are views.
    """
    axis = wrap_dim(dim, input._data.ndim)
    n = input._data.shape[axis]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        if step <= 0 and n:
            raise RuntimeError(f"split_size can only be 0 if dimension size is 0, but got {step}")
        sizes = [builtins.min(step, n - i) for i in range(0, n, step)] if n else [0]
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != n:
            raise RuntimeError(
                f"split_with_sizes expects split_sizes to sum exactly to {n} (input tensor's size "
                f"at dimension {axis}), but got split_sizes={sizes}"
            )
    return Split.apply(input, tuple(sizes), axis)


def tensor_split(input, sections, dim=0):
    """``input`` split into ``sections`` near-equal parts along ``dim``, or before each index of
    a list.
    """
    n = input._data.shape[wrap_dim(dim, input._data.ndim)]
    q, r = divmod(n, sections)
    return split(input, [q + 1] * r + [q] * (sections - r), dim)


def chunk(input, chunks, dim=0):
    """``input`` split into at most ``chunks`` equal parts along ``dim`` (the last may be
    smaller)."""
    if chunks <= 0:
        raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    n = input._data.shape[wrap_dim(dim, input._data.ndim)]
    step = -(-n // chunks) if n else 1
    return split(input, step, dim)


def unbind(input, dim=0):
    """The slices of ``input`` along ``dim``, as a tuple of tensors without that dimension."""
    axis = wrap_dim(dim, input._data.ndim)
    return tuple(squeeze(p, axis) for p in split(input, 1, axis))


def flip(input, dims):
    """``input`` with the order of elements reversed along ``dims`` (a copy)."""
    dims = [dims] if isinstance(dims, int) else dims
    return Flip.apply(input, tuple(wrap_dim(d, input._data.ndim) for d in dims))


def fliplr(input):
    """``input`` reversed along dimension 1 (left-right)."""
    return flip(input, [1])


def flipud(input):
    """``input`` reversed along dimension 0 (up-down)."""
    return flip(input, [0])


def roll(input, shifts, dims=None):
    """``input`` rolled by ``shifts`` along ``dims``: elements pushed past the end come back at the
    start. With ``dims`` None, the flattened tensor is rolled and reshaped.
    """
    if dims is None:
        return reshape(Roll.apply(flatten(input), shifts, None), input._data.shape)
    if isinstance(shifts, int):
        shifts, dims = (shifts,), (dims,) if isinstance(dims, int) else tuple(dims)
    return Roll.apply(input, tuple(shifts), tuple(wrap_dim(d, input._data.ndim) for d in dims))


def tril(input, diagonal=0):
    """The lower triangle of the matrices in ``input``, zeros above diagonal ``diagonal`` (0 the
    main
    diagonal, positive above it).
    """
    return Tri.apply(input, diagonal, False)


def triu(input, diagonal=0):
    """The upper triangle of the matrices in ``input``, zeros below diagonal ``diagonal`` (0 the
    main diagonal, positive above it).
    """
    return Tri.apply(input, diagonal, True)


def narrow(input, dim, start, length):
    """A view of ``input`` holding ``length`` entries from ``start`` along ``dim``."""
    axis = wrap_dim(dim, input._data.ndim)
    n = input._data.shape[axis]
    start = int(start)
    if start < 0:
        start += n
    if not (0 <= start and start + length <= n):
        raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size ({n}).")
    return split(input, [start, length, n - start - length], axis)[1]


def pad(input, pad, mode="constant", value=None):
    """``F.pad`` for constant mode: pads the last dims, given as (left, right, top, bottom...)."""
    if len(pad) % 2:
        raise RuntimeError("Padding length must be divisible by 2")
    nd = input._data.ndim
    if len(pad) // 2 > nd:
        raise RuntimeError(
            f"Padding length should be less than or equal to two times the input "
            f"dimension but got padding length {len(pad)} and input of dimension "
            f"{nd}"
        )
    width = [(0, 0)] * nd
    for i in range(len(pad) // 2):
        width[nd - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    if mode != "constant":
        from .resample import pad_nonconstant

        return pad_nonconstant(input, width, mode)
    if builtins.any(lo < 0 or hi < 0 for lo, hi in width):
        # PyTorch narrows by each negative pad in turn: one that removes more than is left raises
        for (lo, hi), n in zip(width, input._data.shape):
            if n + builtins.min(lo, 0) < 0 or n + builtins.min(lo, 0) + builtins.min(hi, 0) < 0:
                raise RuntimeError("narrow(): length must be non-negative.")
        idx = tuple(
            builtins.slice(builtins.max(-lo, 0), n - builtins.max(-hi, 0))
            for (lo, hi), n in zip(width, input._data.shape)
        )
        from .indexing import getitem

        input = getitem(input, idx)
        width = [(builtins.max(lo, 0), builtins.max(hi, 0)) for lo, hi in width]
    return ConstantPad.apply(input, tuple(width), 0 if value is None else value)
