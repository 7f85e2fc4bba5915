"""Batching rules of the remaining families: fft, complex views, statistics and composite
shape ops (see ``_vmap_tensor.py``). fft ops take dims (shifted past the batch dims; ``dim=None``
made explicit first); the rest are written as compositions of batched ops.
"""

from __future__ import annotations

from collections.abc import Callable

from ..tensor import Tensor
from ._vmap_dispatch import RULES
from ._vmap_rules import (
    _ABSENT,
    _wrap_dim,
    dim_op,
    elementwise,
    passthrough,
)
from ._vmap_tensor import levels_of, unwrapped, wrap


def _em():
    import ember

    return ember


def all_dims(pos: int, kw: str = "dim", s_pos: int | None = None) -> Callable:
    """Ops whose ``dim=None`` means every dim (fftn, fftshift, gradient): the dims are made
    explicit (the last ``len(s)`` with an ``s``), then shifted."""
    inner = dim_op(pos, kw, _ABSENT)

    def rule(orig, args, kwargs):
        args, kwargs = list(args), dict(kwargs)
        d = args[pos] if len(args) > pos else kwargs.get(kw)
        if d is None:
            nd = args[0].dim()
            s = None
            if s_pos is not None:
                s = args[s_pos] if len(args) > s_pos else kwargs.get("s")
            dims = tuple(range(nd - len(s), nd)) if s is not None else tuple(range(nd))
            if len(args) > pos:
                args[pos] = dims
            else:
                kwargs[kw] = dims
        return inner(orig, tuple(args), kwargs)

    return rule


def diag_rule(orig, args, kwargs):
    x = args[0]
    off = args[1] if len(args) > 1 else kwargs.get("diagonal", 0)
    if x.dim() == 1:
        return _em().diag_embed(x, off)
    return x.diagonal(off)


def diag_embed_rule(orig, args, kwargs):
    x = args[0]
    names = ("input", "offset", "dim1", "dim2")
    a = dict(zip(names, args))
    a.update(kwargs)
    nd = x.dim() + 1
    d1 = _wrap_dim(a.get("dim1", -2), nd) - nd
    d2 = _wrap_dim(a.get("dim2", -1), nd) - nd
    return passthrough(orig, (x, a.get("offset", 0), d1, d2), {})


def diagflat_rule(orig, args, kwargs):
    off = args[1] if len(args) > 1 else kwargs.get("offset", 0)
    return _em().diag_embed(args[0].reshape(-1), off)


def _atleast_one(n: int) -> Callable:
    def one(x):
        nd = x.dim()
        if nd >= n:
            return x
        if n == 3 and nd == 2:
            return x.unsqueeze(-1)
        if n == 3 and nd == 1:
            return x.reshape(1, -1, 1)
        return x.reshape((1,) * (n - nd) + tuple(x.shape))

    return one


def _atleast(n: int) -> Callable:
    one = _atleast_one(n)

    def rule(orig, args, kwargs):
        ts = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
        if len(args) == 1 and isinstance(args[0], Tensor):
            return one(args[0])
        return tuple(one(t) if isinstance(t, Tensor) else t for t in ts)

    return rule


def _split_dir(dim_of: Callable) -> Callable:
    def rule(orig, args, kwargs):
        x, sections = args[0], args[1]
        return _em().tensor_split(x, sections, dim_of(x))

    return rule


def _stack_like(prep: Callable, dim_of: Callable) -> Callable:
    def rule(orig, args, kwargs):
        ts = [prep(t) for t in args[0]]
        return _em().cat(ts, dim_of(ts[0]))

    return rule


def _col(t):
    return t.reshape(-1, 1) if t.dim() <= 1 else t


def broadcast_tensors_rule(orig, args, kwargs):
    ts = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
    shape = _em().broadcast_shapes(*(t.shape for t in ts))
    return tuple(t.expand(shape) for t in ts)


def meshgrid_rule(orig, args, kwargs):
    ts = list(args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args)
    indexing = kwargs.get("indexing", "ij")
    sizes = [t.numel() for t in ts]
    outs = []
    for i, t in enumerate(ts):
        shape = [1] * len(ts)
        shape[i] = -1
        outs.append(t.reshape(shape).expand(sizes))
    if indexing == "xy" and len(ts) >= 2:
        outs = [o.transpose(0, 1) for o in outs]
    return tuple(outs)


def cartesian_prod_rule(orig, args, kwargs):
    ts = args
    if len(ts) == 1:
        return ts[0]
    grids = meshgrid_rule(orig, ts, {"indexing": "ij"})
    return _em().stack([g.reshape(-1) for g in grids], 1)


def dist_rule(orig, args, kwargs):
    p = args[2] if len(args) > 2 else kwargs.get("p", 2)
    return _em().norm(args[0] - args[1], p)


def msort_rule(orig, args, kwargs):
    return _em().sort(args[0], 0)[0]


def sum_to_size_rule(orig, args, kwargs):
    x = args[0]
    size = (
        tuple(args[1]) if len(args) == 2 and isinstance(args[1], (tuple, list)) else tuple(args[1:])
    )
    lead = x.dim() - len(size)
    if lead:
        x = x.sum(tuple(range(lead)))
    dims = tuple(i for i, n in enumerate(size) if n == 1 and x.shape[i] != 1)
    return x.sum(dims, keepdim=True) if dims else x


def cov_rule(orig, args, kwargs):
    if kwargs.get("fweights") is not None or kwargs.get("aweights") is not None:
        raise RuntimeError("vmap: cov with fweights/aweights has no batching rule")
    x = args[0]
    corr = kwargs.get("correction", 1)
    if x.dim() < 2:
        x = x.reshape(1, -1)
    xc = x - x.mean(-1, keepdim=True)
    c = _em().matmul(xc, xc.transpose(-1, -2).conj()) / (x.shape[-1] - corr)
    return c.squeeze() if args[0].dim() < 2 else c


def corrcoef_rule(orig, args, kwargs):
    c = cov_rule(orig, args, {})
    if c.dim() == 0:
        return c / c
    d = c.diagonal(0, -2, -1).sqrt()
    return c / (d.unsqueeze(-1) * d.unsqueeze(-2))


def vander_rule(orig, args, kwargs):
    x = args[0]
    n = args[1] if len(args) > 1 else kwargs.get("N")
    inc = args[2] if len(args) > 2 else kwargs.get("increasing", False)
    n = x.shape[-1] if n is None else n
    powers = _em().arange(n, device=x.device)
    if not inc:
        powers = powers.flip(0)
    return (
        x.unsqueeze(-1) ** powers.to(x.dtype)
        if x.is_floating_point()
        else x.unsqueeze(-1) ** powers
    )


def quantile_rule(orig, args, kwargs):
    q = args[1]
    inner = dim_op(2, "dim", _ABSENT)
    out = inner(orig, args, kwargs)
    if isinstance(q, Tensor) and q.dim() == 1:
        # the q dim comes first in the physical result: move it behind the batch dims
        levels = levels_of(out)
        with unwrapped(out):
            p = out.movedim(0, len(levels))
        return wrap(p, levels)
    return out


FFT1 = "fft ifft rfft irfft hfft ihfft".split()
FFT2 = "fft2 ifft2 rfft2 irfft2 hfft2 ihfft2".split()
FFTN = "fftn ifftn rfftn irfftn hfftn ihfftn".split()


def install() -> None:
    RULES["vander"] = vander_rule
    for name in FFT1:
        RULES["fft." + name] = dim_op(2, "dim", -1)
    for name in FFT2:
        RULES["fft." + name] = dim_op(2, "dim", (-2, -1))
    for name in FFTN:
        RULES["fft." + name] = all_dims(2, "dim", s_pos=1)
    RULES["fft.fftshift"] = RULES["fft.ifftshift"] = all_dims(1, "dim")
    RULES["gradient"] = all_dims(9, "dim")
    for name in ("complex", "polar"):
        RULES[name] = elementwise
    for name in ("view_as_real", "view_as_complex", "resolve_conj", "resolve_neg", "conj_physical"):
        RULES[name] = passthrough
    RULES.update(
        {
            "diag": diag_rule,
            "diag_embed": diag_embed_rule,
            "diagflat": diagflat_rule,
            "atleast_1d": _atleast(1),
            "atleast_2d": _atleast(2),
            "atleast_3d": _atleast(3),
            "hsplit": _split_dir(lambda x: 1 if x.dim() > 1 else 0),
            "vsplit": _split_dir(lambda x: 0),
            "dsplit": _split_dir(lambda x: 2),
            "hstack": _stack_like(_atleast_one(1), lambda t: 1 if t.dim() > 1 else 0),
            "vstack": _stack_like(_atleast_one(2), lambda t: 0),
            "row_stack": _stack_like(_atleast_one(2), lambda t: 0),
            "dstack": _stack_like(_atleast_one(3), lambda t: 2),
            "column_stack": _stack_like(_col, lambda t: 1),
            "broadcast_tensors": broadcast_tensors_rule,
            "meshgrid": meshgrid_rule,
            "cartesian_prod": cartesian_prod_rule,
            "dist": dist_rule,
            "msort": msort_rule,
            "sum_to_size": sum_to_size_rule,
            "cov": cov_rule,
            "corrcoef": corrcoef_rule,
            "quantile": quantile_rule,
            "nanquantile": quantile_rule,
            "split_with_sizes": dim_op(2, "dim", 0),
            "unsafe_split": dim_op(2, "dim", 0),
            "unsafe_chunk": dim_op(2, "dim", 0),
            "narrow_copy": dim_op(1, "dim", _ABSENT),
            "unfold": dim_op(1, "dimension", _ABSENT),
            "rot90": dim_op(2, "dims", (0, 1)),
            "repeat_interleave": dim_op(2, "dim", _ABSENT),
            "trapezoid": dim_op(9, "dim", -1),
            "trapz": dim_op(9, "dim", -1),
            "cumulative_trapezoid": dim_op(9, "dim", -1),
        }
    )
