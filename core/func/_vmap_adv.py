"""Batching rules for indexing with *batched* index tensors (each sample picks or writes its own
positions): ``x[i, :, j]``, ``x[..., i]``, ``x[i] = v``, ``index_put``, ``put`` and
``masked_scatter``.

The physical index prepends one ``arange`` per vmap level to the sample's index, so one NumPy
advanced-indexing call serves every sample. NumPy puts the broadcast dims of advanced indices
first when they are separated by a slice; the batch aranges always come first, so where a
sample's advanced indices are adjacent but not leading (``x[:, i]``), their dims are moved back to
where the sample expects them. Boolean masks that are batched stay errors (data-dependent
shapes, as under ``torch.func.vmap``).
"""

from __future__ import annotations

from ..tensor import Tensor
from ._vmap_dispatch import RULES
from ._vmap_tensor import align, is_batched, level_size, levels_of, merge_levels, unwrapped, wrap

__all__ = ["install"]


def _em():
    import ember

    return ember


def _is_adv(i) -> bool:
    return isinstance(i, (Tensor, list)) or hasattr(i, "__array_namespace__")


def _is_mask(i) -> bool:
    return isinstance(i, Tensor) and str(i.dtype) == "ember.bool"


def _plan(x: Tensor, items: tuple):
    """Checks a batched-index subscript; returns (advanced positions, the result position of
    their dims in one sample's result, or None when they lead)."""
    for i in items:
        if is_batched(i) and (_is_mask(i) or i.is_floating_point()):
            raise RuntimeError(
                "vmap: indexing with a batched boolean mask has a data-dependent "
                "shape and cannot be batched (as in torch.func.vmap)"
            )
    adv = [n for n, i in enumerate(items) if _is_adv(i)]
    if any(_is_mask(items[n]) for n in adv):
        raise RuntimeError(
            "vmap: mixing a boolean mask with batched index tensors is not supported"
        )
    contiguous = adv == list(range(adv[0], adv[0] + len(adv)))
    if not contiguous or adv[0] == 0:
        return None
    consumed = sum(1 for i in items if i is not None and i is not Ellipsis)
    pos = 0
    for i in items[: adv[0]]:
        if i is Ellipsis:
            pos += x.dim() - consumed
        elif not isinstance(i, int):
            pos += 1  # a slice or None
    return pos


def _physical_index(items: tuple, lv: dict, target: tuple, device) -> tuple:
    """The sample's subscript with the batch aranges in front and batched indices expanded to
    ``target`` (padded so that all advanced indices broadcast)."""
    em = _em()
    k = len(target)
    tensors = [i for i in items if isinstance(i, Tensor)]
    nd = max((t.ndim - len(lv.get(id(t), ())) for t in tensors), default=0)
    out = []
    for i in items:
        if isinstance(i, list):
            i = em.tensor(i, device=device)
        if isinstance(i, Tensor):
            i = align(i, lv.get(id(i), ()), target, nd, expand=True)
        out.append(i)
    ar = []
    for j, level in enumerate(target):
        shape = [1] * (k + nd)
        shape[j] = level_size(level)
        ar.append(em.arange(level_size(level), device=device).reshape(shape))
    return tuple(ar) + tuple(out), nd


def getitem_rule(fallback):
    def rule(orig, args, kwargs):
        x, idx = args
        items = idx if isinstance(idx, tuple) else (idx,)
        if not any(is_batched(i) for i in items) or (not is_batched(x) and len(items) == 1):
            return fallback(orig, args, kwargs)
        if any(isinstance(i, int) for i in items):
            # PyTorch selects with integers first (x[1, :, i] == x[1][:, i]); NumPy would
            # count them as advanced indices
            first = tuple(
                i if isinstance(i, int) or i is Ellipsis else slice(None)
                for i in items
                if i is not None
            )
            x = x[first]
            items = tuple(i for i in items if not isinstance(i, int))
            return rule(orig, (x, items), kwargs)
        pos = _plan(x, items)
        target = merge_levels(levels_of(x), *(levels_of(i) for i in items))
        k = len(target)
        with unwrapped(x, items) as lv:
            p = align(x, lv.get(id(x), ()), target, expand=True)
            pidx, nd = _physical_index(items, lv, target, x.device)
            out = orig(p, pidx)
            if pos is not None and nd:
                out = out.movedim(tuple(range(k, k + nd)), tuple(range(k + pos, k + pos + nd)))
        return wrap(out, target)

    return rule


def setitem_rule(fallback):
    def rule(orig, args, kwargs):
        x, idx, v = args
        items = idx if isinstance(idx, tuple) else (idx,)
        if not any(is_batched(i) for i in items):
            return fallback(orig, args, kwargs)
        target = merge_levels(levels_of(x), levels_of(v), *(levels_of(i) for i in items))
        if levels_of(x) != target:
            raise RuntimeError(
                "vmap: x[index] = v with a batched index or value needs x batched "
                "too (each sample writes its own copy); clone x per sample first, "
                "or use index_put"
            )
        pos = _plan(x, items)
        k = len(target)
        with unwrapped(x, items, v) as lv:
            pidx, nd = _physical_index(items, lv, target, x.device)
            region = x[pidx]
            if isinstance(v, Tensor):
                v = align(v, lv.get(id(v), ()), target, region.ndim - k, expand=True)
                if pos is not None and nd:
                    v = v.movedim(tuple(range(k + pos, k + pos + nd)), tuple(range(k, k + nd)))
            orig(x, pidx, v)
        return None

    return rule


def index_put_rule(orig, args, kwargs):
    x, indices = args[0], tuple(args[1])
    values = args[2] if len(args) > 2 else kwargs["values"]
    acc = args[3] if len(args) > 3 else kwargs.get("accumulate", False)
    target = merge_levels(levels_of(x), levels_of(values), *(levels_of(i) for i in indices))
    if any(is_batched(i) and _is_mask(i) for i in indices):
        raise RuntimeError("vmap: index_put with a batched boolean mask cannot be batched")
    k = len(target)
    with unwrapped(x, indices, values) as lv:
        p = align(x, lv.get(id(x), ()), target, expand=True)
        pidx, _ = _physical_index(indices, lv, target, x.device)
        region_nd = p[pidx].ndim
        if isinstance(values, Tensor):
            values = align(values, lv.get(id(values), ()), target, region_nd - k, expand=True)
        out = orig(p, pidx, values, acc)
    return wrap(out, target)


def put_rule(orig, args, kwargs):
    em = _em()
    x, index = args[0], args[1]
    source = args[2] if len(args) > 2 else kwargs["source"]
    acc = args[3] if len(args) > 3 else kwargs.get("accumulate", False)
    target = merge_levels(levels_of(x), levels_of(index), levels_of(source))
    n, m = x.numel(), index.numel()  # per sample
    with unwrapped(x, index, source) as lv:
        p = align(x, lv.get(id(x), ()), target, expand=True)
        q = align(index, lv.get(id(index), ()), target, expand=True).reshape(-1, m)
        s = align(source, lv.get(id(source), ()), target, expand=True).reshape(-1, m)
        q = em.where(q < 0, q + n, q) + em.arange(q.shape[0], device=q.device).reshape(-1, 1) * n
        out = orig(p.reshape(-1), q.reshape(-1), s.reshape(-1), acc).reshape(p.shape)
    return wrap(out, target)


def masked_scatter_rule(orig, args, kwargs):
    em = _em()
    x, mask = args[0], args[1]
    source = args[2] if len(args) > 2 else kwargs["source"]
    m = mask.expand(x.shape).reshape(-1) if mask.shape != x.shape else mask.reshape(-1)
    pos = (m.long().cumsum(0) - 1).clamp(min=0)
    vals = em.gather(source.reshape(-1), 0, pos)
    return em.where(m, vals, x.reshape(-1)).reshape(x.shape)


def install() -> None:
    get, put_ = RULES["__getitem__"], RULES["__setitem__"]
    RULES["__getitem__"] = RULES["getitem"] = getitem_rule(get)
    RULES["__setitem__"] = RULES["setitem"] = setitem_rule(put_)
    RULES.update(
        {"index_put": index_put_rule, "put": put_rule, "masked_scatter": masked_scatter_rule}
    )
