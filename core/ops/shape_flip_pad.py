"""Flips and rolls, triangles (tril/triu) and constant padding."""

from __future__ import annotations

import builtins

from ..autograd.function import Function
from ._util import wrap_dim
from .shape_views import flatten, reshape


class Flip(Function):
    # A copy, as torch.flip: NumPy's flip is a view, and an in-place op on the result
    # (timm's Mixup: ``x.flip(0).mul_(1 - lam)``) must not write through to ``x``.
    @staticmethod
    def forward(ctx, x, axes):
        ctx.axes = axes
        return ctx.xp.flip(x, axis=axes).copy()

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
