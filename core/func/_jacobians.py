"""``jacrev``, ``jacfwd`` and ``hessian`` (PyTorch's ``torch.func`` signatures).

The Jacobian of an output ``y`` with respect to an input ``x`` has shape
``y.shape + x.shape``. Results nest as the function's output pytree, then (for a tuple
``argnums``) a tuple over the arguments, then each argument's pytree. ``jacrev`` builds it a
vectorized (``_jacobians_vec.py``: one vmapped vjp over the outputs' basis, or jvp over the
inputs' basis); where ``func`` uses an op vmap cannot batch, or ``jacrev``'s ``chunk_size=1``,
``jacrev`` builds it a row at a time (one backward pass per output element) and ``jacfwd`` a
column at a time (one forward-mode product per input element, see ``_forward.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ..tensor import Tensor
from ._common import (
    Level,
    detach_tree,
    normalize_argnums,
    one_hot,
    zeros,
)
from ._forward import ForwardGraph
from ._jacobians_vec import jac_cols, jac_rows, usable
from ._pytree import tree_unflatten
from ._vmap_tensor import namespace_op

stack = namespace_op("stack")  # vmap-aware: ember.stack is patched while a vmap runs

__all__ = ["jacrev", "jacfwd", "hessian"]


def _run(func, args, kwargs, argnums, has_aux, api):
    nums = normalize_argnums(argnums, len(args))
    level = Level()
    args, lifted = level.lift_args(args, nums)
    _, flat_o, spec_o, aux = level.call_flat(func, args, kwargs, has_aux, api)
    return level, lifted, flat_o, spec_o, aux


def _assemble(blocks, flat_o, spec_o, lifted, argnums):
    r"""``blocks[i][j]``: the Jacobian of output leaf i by flat input leaf j -> the pytree."""
    per_out = []
    for row in blocks:
        trees, k = [], 0
        for leaves, spec in lifted:
            trees.append(tree_unflatten(row[k : k + len(leaves)], spec))
            k += len(leaves)
        per_out.append(trees[0] if isinstance(argnums, int) else tuple(trees))
    return tree_unflatten(per_out, spec_o)


def _vectorized(how, func, args, kwargs, argnums, has_aux, flat_o, option, keep):
    r"""The Jacobian blocks by one vmapped pass over the basis (``_jacobians_vec.py``), or None
    where ``func`` uses an op that vmap cannot batch (then the one-at-a-time path runs: the same
    values, more passes)."""
    nums = normalize_argnums(argnums, len(args))
    try:
        blocks = how(func, args, kwargs, nums, has_aux, flat_o, option)
    except RuntimeError as e:
        if "vmap" not in str(e):
            raise
        return None
    if not keep:
        blocks = [[b.detach() for b in row] for row in blocks]
    return blocks


def _finish(jac, out, aux, keep, has_aux):
    if has_aux:
        return jac, (aux if keep else detach_tree(aux))
    return jac


def jacrev(
    func: Callable,
    argnums: int | tuple[int, ...] = 0,
    *,
    has_aux: bool = False,
    chunk_size: int | None = None,
    _preallocate_and_copy: bool = False,
) -> Callable:
    r"""Return a function computing the Jacobian of ``func`` with respect to the arguments at
    ``argnums``, by reverse mode.

    Args:
        func (Callable): returns a pytree of tensors (or ``(output, aux)`` with ``has_aux``).
        argnums (int or Tuple[int]): the positional arguments to differentiate.
        has_aux (bool): also return ``func``'s aux output.
        chunk_size (int, optional): the rows computed per batched pass. ``None`` (default):
            all rows in one pass (a vmapped vjp over the outputs' standard basis; for fewer
            than 32 rows outside a vmap, one backward pass per row, which is faster there);
            ``1``: one backward pass per row, which uses the least memory.

    Example::

        >>> x = ember.randn(3)
        >>> jacrev(ember.sin)(x)   # == ember.diag(x.cos())
    """
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size <= 0):
        raise ValueError("jacrev: `chunk_size` should be greater than 0.")

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any):
        level, lifted, flat_o, spec_o, aux = _run(
            func, args, kwargs, argnums, has_aux, "vjp(f, *primals)"
        )
        xs = [x for leaves, _ in lifted for x in leaves]
        cg = level.needs_graph(flat_o)
        blocks = None
        if chunk_size != 1 and usable(flat_o, chunk_size):
            blocks = _vectorized(
                jac_rows, func, args, kwargs, argnums, has_aux, flat_o, chunk_size, cg
            )
        if blocks is not None:
            jac = _assemble(blocks, flat_o, spec_o, lifted, argnums)
            return _finish(jac, flat_o, aux, cg, has_aux)
        blocks = []
        for o in flat_o:
            n = o.numel()
            rows = (
                [
                    level.vjp([o], xs, [one_hot(o, k)], create_graph=cg, retain_graph=True)
                    for k in range(n)
                ]
                if o.requires_grad
                else []
            )
            blocks.append(
                [
                    stack([r[j] for r in rows]).reshape(tuple(o.shape) + tuple(x.shape))
                    if rows
                    else zeros(tuple(o.shape) + tuple(x.shape), x)
                    for j, x in enumerate(xs)
                ]
            )
        jac = _assemble(blocks, flat_o, spec_o, lifted, argnums)
        return _finish(jac, flat_o, aux, cg, has_aux)

    return wrapper


_RANDOMNESS = ("error", "different", "same")


def jacfwd(
    func: Callable,
    argnums: int | tuple[int, ...] = 0,
    has_aux: bool = False,
    *,
    randomness: str = "error",
) -> Callable:
    r"""Return a function computing the Jacobian of ``func`` with respect to the arguments at
    ``argnums``, by forward mode (one Jacobian-vector product per input element).

    Args:
        func (Callable): returns a pytree of tensors (or ``(output, aux)`` with ``has_aux``).
        argnums (int or Tuple[int]): the positional arguments to differentiate.
        has_aux (bool): also return ``func``'s aux output.
        randomness (str): ``'error'``, ``'different'`` or ``'same'``: the policy for random
            ops under the vmap over the basis. With ``'error'``, a random op makes ember compute
            the columns one at a time from a single run of ``func`` instead.

    Example::

        >>> x = ember.randn(3)
        >>> jacfwd(ember.sin)(x)   # == ember.diag(x.cos())
    """
    if randomness not in _RANDOMNESS:
        raise RuntimeError(
            "Only allowed values for randomness are 'error', 'different', or "
            f"'same'. Got {randomness}"
        )

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any):
        level, lifted, flat_o, spec_o, aux = _run(
            func, args, kwargs, argnums, has_aux, "jvp(f, primals, tangents)"
        )
        xs = [x for leaves, _ in lifted for x in leaves]
        if usable(xs):
            blocks = _vectorized(
                jac_cols,
                func,
                args,
                kwargs,
                argnums,
                has_aux,
                flat_o,
                randomness,
                level.needs_graph(flat_o),
            )
            if blocks is not None:
                jac = _assemble(blocks, flat_o, spec_o, lifted, argnums)
                return _finish(jac, flat_o, aux, level.needs_graph(flat_o), has_aux)
        fg = ForwardGraph(level, xs, flat_o)
        cg = fg.needs_graph([])
        blocks = [[None] * len(xs) for _ in flat_o]
        for j, x in enumerate(xs):
            cols = []
            for k in range(x.numel()):
                tangents: list[Tensor | None] = [None] * len(xs)
                tangents[j] = one_hot(x, k)
                cols.append(fg.jvp(tangents, create_graph=cg))
            for i, o in enumerate(flat_o):
                shape = tuple(o.shape) + tuple(x.shape)
                blocks[i][j] = (
                    stack([c[i] for c in cols], dim=-1).reshape(shape) if cols else zeros(shape, o)
                )
        jac = _assemble(blocks, flat_o, spec_o, lifted, argnums)
        return _finish(jac, flat_o, aux, level.needs_graph(flat_o), has_aux)

    return wrapper


def hessian(func: Callable, argnums: int | tuple[int, ...] = 0) -> Callable:
    r"""Return a function computing the Hessian of scalar ``func`` with respect to the
    arguments at ``argnums``: ``jacfwd(jacrev(func, argnums), argnums)``, as in PyTorch.

    Example::

        >>> x = ember.randn(3)
        >>> hessian(lambda x: (x ** 3).sum())(x)   # == ember.diag(6 * x)
    """
    return jacfwd(jacrev(func, argnums), argnums)
