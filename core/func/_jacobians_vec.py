"""Vectorized ``jacrev``/``jacfwd``: all rows (columns) of the Jacobian in one batched pass.

``jacrev`` maps :func:`vjp` over the standard basis of the outputs with :func:`vmap`: inside the
vmap the function runs once on inputs batched over the basis, and one backward pass carries
every cotangent at once (``N`` rows cost one batched forward and one batched backward instead
of ``N`` backward passes). ``jacfwd`` does the same with :func:`jvp` over the inputs' basis.
``chunk_size`` bounds the rows per pass (memory against speed), as in PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..tensor import Tensor
from ._pytree import tree_flatten, tree_unflatten
from ._vmap_tensor import _STACK, namespace_op

__all__ = ["jac_rows", "jac_cols"]

_eye = namespace_op("eye")


def _basis(likes: list[Tensor]) -> list[Tensor]:
    """The standard basis of the concatenated ``likes``, split per tensor: entry ``i`` has shape
    ``(N,) + likes[i].shape`` with ``N`` the total number of elements."""
    n = sum(t.numel() for t in likes)
    out, off = [], 0
    for t in likes:
        m = t.numel()
        e = _eye(n, dtype=t.dtype, device=t.device)[:, off : off + m]
        out.append(e.reshape((n,) + tuple(t.shape)))
        off += m
    return out


def _closure(func: Callable, args: tuple, kwargs: dict, nums: tuple[int, ...], has_aux: bool):
    """``func`` as a function of the differentiated arguments only, returning its flat
    outputs as a tuple."""

    def g(*diff):
        a = list(args)
        for i, d in zip(nums, diff):
            a[i] = d
        out = func(*a, **kwargs)
        if has_aux:
            out = out[0]
        return tuple(tree_flatten(out)[0])

    return g


def jac_rows(func, args, kwargs, nums, has_aux, flat_o, chunk_size) -> list[list[Tensor]]:
    r"""``blocks[i][j]``: Jacobian of output leaf ``i`` by flat input leaf ``j`` (shape
    ``o_i.shape + x_j.shape``), by one vmapped :func:`vjp` over the outputs' basis."""
    from ._transforms import vjp
    from ._vmap import vmap

    g = _closure(func, args, kwargs, nums, has_aux)
    primals = tuple(args[i] for i in nums)

    def row(*cots):
        _, fn = vjp(g, *primals)
        return tuple(tree_flatten(fn(tuple(cots)))[0])

    res = vmap(row, chunk_size=chunk_size)(*_basis(flat_o))
    xs = tree_flatten(primals)[0]
    blocks, off = [], 0
    for o in flat_o:
        n = o.numel()
        blocks.append(
            [r[off : off + n].reshape(tuple(o.shape) + tuple(x.shape)) for r, x in zip(res, xs)]
        )
        off += n
    return blocks


def jac_cols(func, args, kwargs, nums, has_aux, flat_o, randomness) -> list[list[Tensor]]:
    r"""As :func:`jac_rows`, by one vmapped :func:`jvp` over the inputs' basis."""
    from ._transforms import jvp
    from ._vmap import vmap

    g = _closure(func, args, kwargs, nums, has_aux)
    primals = tuple(args[i] for i in nums)
    xs, spec = tree_flatten(primals)

    def col(*tans):
        return jvp(g, primals, tree_unflatten(list(tans), spec))[1]

    res = vmap(col, randomness=randomness)(*_basis(xs))  # per output: (M,) + o.shape
    blocks = [[None] * len(xs) for _ in flat_o]
    off = 0
    for j, x in enumerate(xs):
        m = x.numel()
        for i, o in enumerate(flat_o):
            c = res[i][off : off + m].reshape((m,) + tuple(o.shape))
            blocks[i][j] = c.movedim(0, -1).reshape(tuple(o.shape) + tuple(x.shape))
        off += m
    return blocks


# Entering the outermost vmap patches ember's namespaces (a few ms); below this many basis
# vectors the one-at-a-time path is faster (measured: 16 rows 5 ms one at a time vs 12 ms
# vectorized, 64 rows 55 ms vs 15 ms, on this project's 2-core CI machine).
MIN_VECTORIZED = 32


def usable(flat: list[Any], chunk_size: int | None = None) -> bool:
    """Whether to take the vectorized path: a non-empty floating basis, large enough to pay
    for entering vmap (always inside a running vmap, or with an explicit ``chunk_size``)."""
    if not flat or not all(isinstance(t, Tensor) and t.is_floating_point() for t in flat):
        return False
    n = sum(t.numel() for t in flat)
    return n > 0 and (n >= MIN_VECTORIZED or chunk_size is not None or bool(_STACK))
