"""Batching rules for ops whose per-sample result has a fixed shape but whose kernel mixes the
samples if called once on the physical array (``renorm``'s norm over "all other dims",
``block_diag``, ``histc``'s bins, the searching ops): each rule is written with batched public
ops, so it is itself vmap-aware and differentiable where the op is.

Ops whose output shape depends on the data (``unique``, ``masked_select``, ``nonzero``,
``x[mask]``, ``bincount`` without ``minlength``) stay errors, as under ``torch.func.vmap``.
"""

from __future__ import annotations

import math

from ._vmap_dispatch import RULES
from ._vmap_rules import _wrap_dim
from ._vmap_tensor import levels_of, unwrapped, wrap

__all__ = ["install"]


def _em():
    import ember

    return ember


def _arg(args, kwargs, i, name, default=None):
    return args[i] if len(args) > i else kwargs.get(name, default)


def renorm_rule(orig, args, kwargs):
    em = _em()
    x, p, dim, maxnorm = (
        _arg(args, kwargs, i, n) for i, n in enumerate(("input", "p", "dim", "maxnorm"))
    )
    if p <= 0:
        raise RuntimeError(f"renorm: non-positive-norm not supported, got p={p}")
    if maxnorm < 0:
        raise RuntimeError(f"renorm: expected maxnorm to be >= 0 but got {maxnorm}")
    axis = _wrap_dim(dim, x.dim())
    others = tuple(i for i in range(x.dim()) if i != axis)
    norms = em.linalg.vector_norm(x, p, others, keepdim=True)
    return x * em.where(norms > maxnorm, maxnorm / (norms + 1e-7), 1.0)  # PyTorch's 1e-7


def block_diag_rule(orig, args, kwargs):
    em = _em()
    mats = []
    for t in args:
        if t.dim() > 2:
            raise RuntimeError(
                f"torch.block_diag: Input tensors must have 2 or fewer dimensions. "
                f"Input {len(mats)} has {t.dim()} dimensions"
            )
        mats.append(t.reshape(1, 1) if t.dim() == 0 else t.reshape(1, -1) if t.dim() == 1 else t)
    cols = sum(m.shape[1] for m in mats)
    dtype = mats[0].dtype
    for m in mats[1:]:
        dtype = em.promote_types(dtype, m.dtype)
    rows, left = [], 0
    for m in mats:
        c = m.shape[1]
        rows.append(em.nn.functional.pad(m.to(dtype), (left, cols - left - c)))
        left += c
    return em.cat(rows, 0)


def histc_rule(orig, args, kwargs):
    x = args[0]
    bins = _arg(args, kwargs, 1, "bins", 100)
    lo = _arg(args, kwargs, 2, "min", 0)
    hi = _arg(args, kwargs, 3, "max", 0)
    return _hist(x, bins, lo, hi)[0]


def histogram_rule(orig, args, kwargs):
    em = _em()
    x = args[0]
    bins = _arg(args, kwargs, 1, "bins", 100)
    if not isinstance(bins, int) or kwargs.get("weight") is not None:
        raise RuntimeError(
            "vmap: histogram has a batching rule for an int number of bins without weight only"
        )
    rng = kwargs.get("range")
    lo, hi = (0, 0) if rng is None else rng
    counts, lo_t, hi_t = _hist(x, bins, lo, hi)
    steps = em.arange(bins + 1, dtype=x.dtype, device=x.device) / bins
    edges = lo_t + (hi_t - lo_t) * steps
    if kwargs.get("density", False):
        counts = counts / (counts.sum(-1, keepdim=True) * (hi_t - lo_t) / bins)
    return counts, edges


def _hist(x, bins, lo, hi):
    """Per-sample histogram counts, and each sample's (low, high) range as (batch.., 1)."""
    em = _em()
    levels = levels_of(x)
    with unwrapped(x):
        batch = tuple(x.shape[: len(levels)])
        flat = x.reshape((math.prod(batch), -1))
        if lo == hi:  # the range of each sample's data
            lo_t, hi_t = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
            same = lo_t == hi_t
            lo_t, hi_t = lo_t - same.to(flat.dtype), hi_t + same.to(flat.dtype)
        else:
            lo_t = em.full((flat.shape[0], 1), float(lo), dtype=flat.dtype, device=flat.device)
            hi_t = em.full((flat.shape[0], 1), float(hi), dtype=flat.dtype, device=flat.device)
        inside = (flat >= lo_t) & (flat <= hi_t)
        idx = ((flat - lo_t) * bins / (hi_t - lo_t)).floor().long().clamp(0, bins - 1)
        rows = em.arange(flat.shape[0], device=flat.device).reshape(-1, 1)
        counts = em.zeros(flat.shape[0] * bins, dtype=flat.dtype, device=flat.device)
        counts.index_add_(0, (rows * bins + idx)[inside], inside[inside].to(flat.dtype))
        out = counts.reshape(batch + (bins,))
        lo_t, hi_t = lo_t.reshape(batch + (1,)), hi_t.reshape(batch + (1,))
    return wrap(out, levels), wrap(lo_t, levels), wrap(hi_t, levels)


def combinations_rule(orig, args, kwargs):
    """The index tuples depend only on the length: compute them once, then gather."""
    em = _em()
    x = args[0]
    r = _arg(args, kwargs, 1, "r", 2)
    wr = _arg(args, kwargs, 2, "with_replacement", False)
    if x.dim() != 1:
        raise RuntimeError(f"Expect a 1D vector, but got shape {list(x.shape)}")
    idx = orig(em.arange(x.shape[0], device=x.device), r, wr)
    return x[idx]


def _search(seq, values, right: bool, out_int32: bool):
    """Insertion points of ``values`` into the sorted last dim of ``seq`` (per sample)."""
    em = _em()
    if seq.dim() == 1:
        cmp = values.unsqueeze(-1) >= seq if right else values.unsqueeze(-1) > seq
    else:
        cmp = (
            values.unsqueeze(-1) >= seq.unsqueeze(-2)
            if right
            else values.unsqueeze(-1) > seq.unsqueeze(-2)
        )
    return cmp.sum(-1).to(em.int32 if out_int32 else em.int64)


def searchsorted_rule(orig, args, kwargs):
    seq, values = _arg(args, kwargs, 0, "sorted_sequence"), _arg(args, kwargs, 1, "input")
    if kwargs.get("sorter") is not None:
        raise RuntimeError("vmap: searchsorted with sorter= has no batching rule; sort first")
    if not hasattr(values, "dim"):
        raise RuntimeError("vmap: searchsorted of a Python scalar has no batching rule")
    right = kwargs.get("right", False) or kwargs.get("side") == "right"
    return _search(seq, values, right, kwargs.get("out_int32", False))


def bucketize_rule(orig, args, kwargs):
    values, boundaries = _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "boundaries")
    if boundaries.dim() != 1:
        raise RuntimeError(
            f"boundaries tensor must be 1 dimension, but got dim({boundaries.dim()})"
        )
    return _search(boundaries, values, kwargs.get("right", False), kwargs.get("out_int32", False))


def isin_rule(orig, args, kwargs):
    elements = _arg(args, kwargs, 0, "elements")
    test = _arg(args, kwargs, 1, "test_elements")
    em = _em()
    if not hasattr(test, "dim"):
        test = em.tensor(test, device=elements.device)
    if not hasattr(elements, "dim"):
        elements = em.tensor(elements, device=test.device)
    out = (elements.unsqueeze(-1) == test.reshape(-1)).any(-1)
    return ~out if kwargs.get("invert", False) else out


def diff_rule(orig, args, kwargs):
    """``diff`` with ``prepend``/``append``: join them (batched) first."""
    em = _em()
    x = args[0]
    n = _arg(args, kwargs, 1, "n", 1)
    dim = _arg(args, kwargs, 2, "dim", -1)
    pre, app = _arg(args, kwargs, 3, "prepend"), _arg(args, kwargs, 4, "append")
    d = _wrap_dim(dim, x.dim())
    parts = [t for t in (pre, x, app) if t is not None]
    if len(parts) > 1:
        x = em.cat(
            [p if p.dim() else p.expand(x.shape[:d] + (1,) + x.shape[d + 1 :]) for p in parts], d
        )
    return _DIFF(orig, (x, n, d), {})


def cat_rule(orig, args, kwargs):
    """``cat`` also drops PyTorch's legacy empty (1-D, zero-size) inputs, as eager does."""
    tensors = args[0] if args else kwargs["tensors"]
    kept = [t for t in tensors if not (t.dim() == 1 and t.shape[0] == 0)] or list(tensors)
    return _CAT(
        orig, (kept,) + tuple(args[1:]), {k: v for k, v in kwargs.items() if k != "tensors"}
    )


def tensorinv_rule(orig, args, kwargs):
    em = _em()
    a = args[0]
    ind = _arg(args, kwargs, 1, "ind", 2)
    if ind <= 0:
        raise RuntimeError(f"Expected a strictly positive integer for 'ind', but got {ind}")
    head, tail = tuple(a.shape[:ind]), tuple(a.shape[ind:])
    inv = em.linalg.inv(a.reshape(math.prod(head), math.prod(tail)))
    return inv.reshape(tail + head)


def cov_rule(orig, args, kwargs):
    """``cov`` with ``fweights``/``aweights`` (NumPy's and PyTorch's weighted formula)."""
    fw, aw = kwargs.get("fweights"), kwargs.get("aweights")
    if fw is None and aw is None:
        return _COV(orig, args, kwargs)
    em = _em()
    x = args[0]
    corr = kwargs.get("correction", 1)
    if x.dim() < 2:
        x = x.reshape(1, -1)
    w = fw if aw is None else aw if fw is None else fw * aw
    w = w.to(x.dtype)
    v1 = w.sum()
    avg = (x * w).sum(-1, keepdim=True) / v1
    fact = v1 - corr if aw is None else v1 - corr * (w * aw).sum() / v1
    xc = x - avg
    c = em.matmul(xc * w, xc.transpose(-1, -2).conj()) / fact
    return c.squeeze() if args[0].dim() < 2 else c


def _strided_index(x, args, kwargs):
    """The flat positions an ``as_strided`` view of one (contiguous) sample reads: the op
    applied to ``arange(numel)``, which has no batch dims."""
    em = _em()
    size = _arg(args, kwargs, 0, "size")
    stride = _arg(args, kwargs, 1, "stride")
    offset = _arg(args, kwargs, 2, "storage_offset")
    flat = em.arange(x.numel(), device=x.device).reshape(tuple(x.shape))
    return em.as_strided(flat, size, stride, offset)


def as_strided_rule(orig, args, kwargs):
    x = args[0]
    return x.reshape(-1)[_strided_index(x, args[1:], kwargs)]


def as_strided_scatter_rule(orig, args, kwargs):
    em = _em()
    x, src = args[0], args[1]
    idx = _strided_index(x, args[2:], kwargs)
    if tuple(src.shape) != tuple(idx.shape):
        raise RuntimeError(
            f"expected src to have a size equal to the slice of self. src size = "
            f"{list(src.shape)}, slice size = {list(idx.shape)}"
        )
    flat = em.index_put(x.reshape(-1), (idx.reshape(-1),), src.reshape(-1).to(x.dtype))
    return flat.reshape(tuple(x.shape))


_DIFF = None
_CAT = None
_COV = None


def install() -> None:
    global _DIFF, _CAT, _COV
    _DIFF, _CAT, _COV = RULES["diff"], RULES["cat"], RULES["cov"]
    RULES.update(
        {
            "renorm": renorm_rule,
            "block_diag": block_diag_rule,
            "histc": histc_rule,
            "histogram": histogram_rule,
            "combinations": combinations_rule,
            "cov": cov_rule,
            "as_strided": as_strided_rule,
            "as_strided_scatter": as_strided_scatter_rule,
            "searchsorted": searchsorted_rule,
            "bucketize": bucketize_rule,
            "isin": isin_rule,
            "diff": diff_rule,
            "cat": cat_rule,
            "concat": cat_rule,
            "concatenate": cat_rule,
            "linalg.tensorinv": tensorinv_rule,
            "tensorinv": tensorinv_rule,
        }
    )
