"""The generic batching-rule kinds that the tables of ``_vmap_rules`` (and the other
``_vmap_*`` modules) are built from: ``elementwise`` (align the batch dims, pad each sample to
one rank), ``passthrough`` and ``dim_op`` (shift ``dim`` past the batch dims), with their
helpers. Re-exported by ``_vmap_rules``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..tensor import Tensor
from ._vmap_tensor import align, is_batched, levels_of, merge_levels, unwrapped, wrap

_ABSENT = object()


def _wrap_dim(d: int, nd: int) -> int:
    n = max(nd, 1)
    if not -n <= d < n:
        raise IndexError(
            f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {d})"
        )
    return d + n if d < 0 else d


def _tensor_args(args: tuple, kwargs: dict) -> list[Tensor]:
    return [a for a in list(args) + list(kwargs.values()) if isinstance(a, Tensor)]


def _batch_shape(x: Tensor) -> tuple[int, ...]:
    return tuple(x._data.shape[: len(levels_of(x))])


# ---- elementwise -------------------------------------------------------------------------
def elementwise(orig: Callable, args: tuple, kwargs: dict):
    """Align batch dims and pad ranks of every tensor argument; call once."""
    ts = _tensor_args(args, kwargs)
    target = merge_levels(*(levels_of(t) for t in ts))
    nd = max(t.dim() for t in ts)
    with unwrapped(args, kwargs) as lv:

        def fix(a):
            return align(a, lv[id(a)], target, nd) if id(a) in lv else a

        out = orig(*[fix(a) for a in args], **{k: fix(v) for k, v in kwargs.items()})
    return wrap(out, target)


def passthrough(orig: Callable, args: tuple, kwargs: dict):
    """Ops that act on each element or copy the whole tensor (clone, detach, dtype casts,
    ``*_like`` creation): the physical call is the batched result."""
    x = args[0]
    levels = levels_of(x)
    with unwrapped(args, kwargs):
        out = orig(*args, **kwargs)
    return wrap(out, levels)


# ---- ops taking dims -------------------------------------------------------------------
def dim_op(
    pos: int,
    kw: str = "dim",
    default: Any = _ABSENT,
    extra: int = 0,
    fallback: Callable | None = None,
    values_only: bool = False,
) -> Callable:
    """A rule for ops with a dim (int or sequence) argument at ``pos``/``kw``; ``default`` is
    the signature's default when it is a dim; ``None`` (or ``()``) means every dim: each sample
    is flattened first. ``extra``: the op accepts dims up to ``ndim + extra`` (unsqueeze).
    ``values_only``: without a dim the op returns a value, with one (values, indices)."""

    def rule(orig, args, kwargs):
        x = args[0]
        if not is_batched(x) or (len(args) > pos and isinstance(args[pos], Tensor)):
            if fallback is not None:
                return fallback(orig, args, kwargs)
            raise RuntimeError(
                f"vmap: {getattr(orig, '__name__', orig)} expects its first "
                "argument batched and its dim an int"
            )
        levels = levels_of(x)
        k, nd = len(levels), x.dim()
        args, kwargs = list(args), dict(kwargs)
        if len(args) > pos:
            d, slot = args[pos], "a"
        elif kw in kwargs:
            d, slot = kwargs[kw], "k"
        elif default is not _ABSENT:
            d, slot = default, "k"
        else:
            d, slot = None, "k"
        keepdim = kwargs.get(
            "keepdim",
            args[pos + 1] if len(args) > pos + 1 and isinstance(args[pos + 1], bool) else False,
        )
        batch = _batch_shape(x)
        flat = d is None or (isinstance(d, (tuple, list)) and len(d) == 0)
        with unwrapped(x):
            p = x
            if flat:
                p = p.reshape(batch + (-1,))
                new = k
            elif nd == 0 and extra == 0:
                p = p.reshape(batch + (1,))
                new = _shift(d, 1, k)
            else:
                new = _shift(d, nd + extra, k)
            if (
                flat
                and d is None
                and slot == "k"
                and kw not in kwargs
                and default is _ABSENT
                and len(args) <= pos
            ):
                kwargs[kw] = new
            elif slot == "a":
                args[pos] = new
            else:
                kwargs[kw] = new
            args[0] = p
            out = orig(*args, **kwargs)
            if flat and d is None and values_only and not keepdim:
                out = out[0]  # max(x), median(x): the value, not (values, indices)
            if flat and keepdim:
                out = _map_tensors(out, lambda t: t.reshape(batch + (1,) * nd))
            elif nd == 0 and extra == 0:
                out = _map_tensors(out, lambda t: t.reshape(batch + tuple(t.shape[k + 1 :])))
        return wrap(out, levels)

    return rule


def _shift(d, nd: int, k: int):
    if isinstance(d, (tuple, list)):
        return type(d)(_wrap_dim(int(i), nd) + k for i in d)
    return _wrap_dim(int(d), nd) + k


def _map_tensors(out, fn):
    if isinstance(out, Tensor):
        return fn(out)
    if isinstance(out, tuple):
        items = [_map_tensors(o, fn) for o in out]
        return type(out)(*items) if hasattr(out, "_fields") else tuple(items)
    if isinstance(out, list):
        return [_map_tensors(o, fn) for o in out]
    return out
