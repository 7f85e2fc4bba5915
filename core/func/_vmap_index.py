"""Batching rules of joining, splitting and indexing ops (see ``_vmap_tensor.py``):
cat/stack, gather/scatter/take_along_dim, index_select, ``x[index]`` and ``x[index] = v``, the
index-update and ``*_scatter`` ops. Tensors that index one another are batched alike (expanded
over each other's batch dims) and dims are shifted past the batch dims.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from ..tensor import Tensor
from ._vmap_dispatch import RULES
from ._vmap_rules import _one, _wrap_dim
from ._vmap_tensor import align, is_batched, level_size, levels_of, merge_levels, unwrapped, wrap


def _join(orig, args, kwargs, extra):
    tensors = list(args[0])
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    target = merge_levels(*(levels_of(t) for t in tensors))
    nd = max(t.dim() for t in tensors)
    with unwrapped(tensors) as lv:
        phys = [align(t, lv.get(id(t), ()), target, expand=True) for t in tensors]
        out = orig(phys, _wrap_dim(dim, nd + extra) + len(target))
    return wrap(out, target)


def cat_rule(orig, args, kwargs):
    return _join(orig, args, kwargs, 0)


def stack_rule(orig, args, kwargs):
    return _join(orig, args, kwargs, 1)


def _index_pair(orig, args, kwargs, dim_first: bool):
    """gather / take_along_dim / scatter family: input and index (and src) batched alike."""
    x = args[0]
    if dim_first:
        dim, rest = args[1], list(args[2:])
    else:
        rest = list(args[1:])
        dim = rest.pop(1) if len(rest) > 1 else kwargs.pop("dim", None)
    ts = (
        [x]
        + [r for r in rest if isinstance(r, Tensor)]
        + [v for v in kwargs.values() if isinstance(v, Tensor)]
    )
    target = merge_levels(*(levels_of(t) for t in ts))
    nd = x.dim()
    k = len(target)
    with unwrapped(args, kwargs) as lv:

        def fix(a):
            return align(a, lv.get(id(a), ()), target, expand=True) if isinstance(a, Tensor) else a

        p = fix(x)
        rest = [fix(r) for r in rest]
        kw = {n: fix(v) for n, v in kwargs.items()}
        if dim is None:  # take_along_dim over the flattened sample
            batch = tuple(p.shape[:k])
            p = p.reshape(batch + (-1,))
            rest = [r.reshape(batch + (-1,)) if isinstance(r, Tensor) else r for r in rest]
            out = orig(p, rest[0], k, *rest[1:], **kw)
        elif dim_first:
            out = orig(p, _wrap_dim(dim, nd) + k, *rest, **kw)
        else:
            out = orig(p, rest[0], _wrap_dim(dim, nd) + k, *rest[1:], **kw)
    return wrap(out, target)


def gather_rule(orig, args, kwargs):
    return _index_pair(orig, args, kwargs, True)


def take_along_dim_rule(orig, args, kwargs):
    return _index_pair(orig, args, kwargs, False)


def index_select_rule(orig, args, kwargs):
    x, dim, index = args[0], args[1], args[2] if len(args) > 2 else kwargs["index"]
    if is_batched(index):
        # each sample picks its own rows: a gather with the index broadcast over the sample
        nd = x.dim()
        d = _wrap_dim(dim, nd)
        shape = [1] * nd
        shape[d] = -1
        full = list(x.shape)
        full[d] = index.shape[0]
        return _ember().gather(x, d, index.reshape(shape).expand(full))
    return _one(lambda p, k, nd, b, dim, index: orig(p, _wrap_dim(dim, nd) + k, index))(
        orig, (x, dim, index), {}
    )


def _ember():
    import ember

    return ember


# ---- indexing ------------------------------------------------------------------------------
def _is_adv(i) -> bool:
    return isinstance(i, (Tensor, list)) or hasattr(i, "__array_namespace__")


def getitem_rule(orig, args, kwargs):
    x, idx = args
    items = idx if isinstance(idx, tuple) else (idx,)
    batched_idx = [i for i in items if is_batched(i)]
    if not is_batched(x):
        if len(items) == 1 and batched_idx:  # plain[batched index]: each sample picks rows
            with unwrapped(items[0]) as lv:
                out = orig(x, items[0])
            return wrap(out, lv[id(items[0])])
        raise RuntimeError(
            "vmap: indexing a tensor with batched indices is only supported as "
            "x[index] (one index tensor)"
        )
    levels = levels_of(x)
    adv = [n for n, i in enumerate(items) if _is_adv(i)]
    if adv and adv != list(range(adv[0], adv[0] + len(adv))):
        raise RuntimeError(
            "vmap: indexing with advanced indices separated by slices is not "
            "supported (NumPy would move their dims to the front)"
        )
    if batched_idx:
        if (
            adv[0] != 0
            or len(adv) != 1
            or batched_idx[0].dtype.is_floating_point
            or str(batched_idx[0].dtype) == "ember.bool"
        ):
            raise RuntimeError(
                "vmap: a batched index tensor is supported as the first index (integer) only"
            )
        ix = items[0]
        target = merge_levels(levels, levels_of(ix))
        with unwrapped(x, ix) as lv:
            p = align(x, lv[id(x)], target, expand=True)
            q = align(ix, lv[id(ix)], target, expand=True)
            ar = []
            for j, lvl in enumerate(target):
                shape = [1] * q.ndim
                shape[j] = level_size(lvl)
                ar.append(_ember().arange(level_size(lvl), device=q.device).reshape(shape))
            out = orig(p, tuple(ar) + (q,) + tuple(items[1:]))
        return wrap(out, target)
    with unwrapped(x, items):
        out = orig(x, (slice(None),) * len(levels) + tuple(items))
    return wrap(out, levels)


def _pair(dim_positions: tuple[int, ...], defaults: tuple) -> Callable:
    """input/src pairs with dims (select_scatter, slice_scatter, diagonal_scatter): both
    batched alike, the dims shifted."""

    def rule(orig, args, kwargs):
        x, src = args[0], args[1]
        target = merge_levels(levels_of(x), levels_of(src))
        nd, k = x.dim(), len(target)
        args = list(args)
        names = {2: "dim", 3: "dim1", 4: "dim2"}
        for pos, default in zip(dim_positions, defaults):
            name = (
                names.get(pos, "dim")
                if orig.__name__ != "diagonal_scatter"
                else {3: "dim1", 4: "dim2"}[pos]
            )
            if len(args) > pos:
                args[pos] = _wrap_dim(args[pos], nd) + k
            else:
                kwargs = dict(kwargs)
                kwargs[name] = _wrap_dim(kwargs.get(name, default), nd) + k
        with unwrapped(x, src) as lv:
            args[0] = align(x, lv.get(id(x), ()), target, expand=True)
            args[1] = align(src, lv.get(id(src), ()), target, expand=True)
            out = orig(*args, **kwargs)
        return wrap(out, target)

    return rule


def index_update(orig, args, kwargs):
    """index_add / index_copy / index_fill / index_reduce: a 1-D unbatched index along dim."""
    x, dim, index = args[0], args[1], args[2]
    if is_batched(index):
        return _index_update_as_scatter(orig.__name__, args, kwargs)
    rest = list(args[3:])
    ts = (
        [x]
        + [r for r in rest if isinstance(r, Tensor)]
        + [v for v in kwargs.values() if isinstance(v, Tensor)]
    )
    target = merge_levels(*(levels_of(t) for t in ts))
    nd = x.dim()
    with unwrapped(args, kwargs) as lv:

        def fix(a):
            if isinstance(a, Tensor) and a is not index:
                return align(a, lv.get(id(a), ()), target, expand=True)
            return a

        out = orig(
            fix(x),
            _wrap_dim(dim, nd) + len(target),
            index,
            *[fix(r) for r in rest],
            **{n: fix(v) for n, v in kwargs.items()},
        )
    return wrap(out, target)


def _index_update_as_scatter(name: str, args: tuple, kwargs: dict):
    """A batched index (each sample updates its own rows): the scatter op that index_* is a
    special case of, with the 1-D index broadcast along ``dim`` over the sample's shape."""
    em = _ember()
    x, dim, index = args[0], args[1], args[2]
    nd = x.dim()
    d = _wrap_dim(dim, nd)
    view = [1] * max(nd, 1)
    view[d] = -1
    idx = index.reshape(view)
    if name == "index_fill":
        value = args[3] if len(args) > 3 else kwargs["value"]
        shape = list(x.shape)
        shape[d] = index.shape[0]
        return em.scatter(x, d, idx.expand(shape), value)
    src = args[3] if len(args) > 3 else kwargs["source"]
    idx = idx.expand(tuple(src.shape))
    if name == "index_add":
        return em.scatter_add(x, d, idx, src * kwargs.get("alpha", 1))
    if name == "index_copy":
        return em.scatter(x, d, idx, src)
    reduce = args[4] if len(args) > 4 else kwargs["reduce"]
    return em.scatter_reduce(x, d, idx, src, reduce, include_self=kwargs.get("include_self", True))


def setitem_rule(orig, args, kwargs):
    x, idx, v = args
    items = idx if isinstance(idx, tuple) else (idx,)
    vl = levels_of(v)
    if not is_batched(x) or any(lv not in levels_of(x) for lv in vl):
        raise RuntimeError(
            "vmap: inplace arithmetic(self, *extra_args) is not possible because there exists a "
            "Tensor `other` in extra_args that has more elements than `self`. This happened due "
            "to `other` being vmapped over but `self` not being vmapped over in a vmap. Please "
            "try to use out-of-place operators instead of inplace."
        )
    if any(is_batched(i) for i in items):
        raise RuntimeError("vmap: assignment through a batched index tensor has no batching rule")
    adv = [n for n, i in enumerate(items) if _is_adv(i)]
    if adv and adv != list(range(adv[0], adv[0] + len(adv))):
        raise RuntimeError(
            "vmap: assignment with advanced indices separated by slices is not supported"
        )
    levels = levels_of(x)
    k = len(levels)
    with unwrapped(x, v) as lv:
        pidx = (slice(None),) * k + tuple(items)
        if isinstance(v, Tensor):
            region = x[pidx]
            v = align(v, lv.get(id(v), ()), levels, region.ndim - k)
        orig(x, pidx, v)
    return None


def take_rule(orig, args, kwargs):
    return args[0].reshape(-1)[args[1]]


def install() -> None:
    RULES.update(
        {
            "cat": cat_rule,
            "concat": cat_rule,
            "concatenate": cat_rule,
            "stack": stack_rule,
            "gather": gather_rule,
            "take_along_dim": take_along_dim_rule,
            "index_select": index_select_rule,
            "__getitem__": getitem_rule,
            "getitem": getitem_rule,
            "__setitem__": setitem_rule,
            "setitem": setitem_rule,
            "take": take_rule,
            "select_scatter": _pair((2,), (0,)),
            "slice_scatter": _pair((2,), (0,)),
            "diagonal_scatter": _pair((3, 4), (0, 1)),
        }
    )
    for name in ("scatter", "scatter_add", "scatter_reduce"):
        RULES[name] = functools.partial(_index_pair, dim_first=True)
    for name in ("index_add", "index_copy", "index_fill", "index_reduce"):
        RULES[name] = index_update
