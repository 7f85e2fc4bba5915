"""Joins and splits along a dimension: cat/stack (and hstack/vstack), split/tensor_split/chunk/
unbind/narrow, and repeat/tile.
"""

from __future__ import annotations

import builtins

from .._torch_function import torch_function_dispatch
from ..autograd.function import Function
from ._util import result_dtype, wrap_dim
from .convert import to_dtype_op
from .shape_views import _shape_arg, squeeze, unsqueeze


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
        out = ctx.xp.concatenate(xs, axis=axis)
        # torch's result is contiguous whatever its inputs' layouts (numpy's keeps theirs, and
        # a .view() after cat of transposed pieces would fail)
        return out if out.flags.c_contiguous else ctx.xp.ascontiguousarray(out)

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
        out = ctx.xp.stack(xs, axis=axis)
        return out if out.flags.c_contiguous else ctx.xp.ascontiguousarray(out)

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


# ---- public functions ---------------------------------------------------------------------
def repeat(input, *sizes, repeats=None):
    """``input`` tiled ``sizes`` times along each dimension (a copy); see :func:`tile`."""
    if repeats is not None:  # x.repeat(repeats=(2, 1)), torch's keyword
        if sizes:
            raise TypeError("repeat() got multiple values for argument 'repeats'")
        sizes = (repeats,)
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


@torch_function_dispatch(sequence=True)
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


@torch_function_dispatch(sequence=True)
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
    if not isinstance(sections, int):  # indices (ascending): cut before each, as torch
        cuts = [0] + [builtins.min(builtins.max(int(i), 0), n) for i in sections] + [n]
        return split(input, [b - a for a, b in zip(cuts, cuts[1:])], dim)
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
    if input._data.shape[axis] == 0:
        return ()  # no slices (split would give one empty chunk)
    return tuple(squeeze(p, axis) for p in split(input, 1, axis))


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
