"""Sharding propagation for DTensor's elementwise operators, reductions and softmax.

Each operator picks the output placements from its operands' (PyTorch's strategies for the
cases a transformer meets), moves operands that do not fit with a differentiable
``redistribute``, and runs the ember op on the local pieces.
"""

from __future__ import annotations

from ._api import DTensor
from ._dispatch import (
    _as_dtensor,
    _check_same_mesh,
    _grad_sum_over,
    _moved,
    _no_partial,
    _norm_dim,
    _slice_to,
    _wrap,
)
from .placement_types import Partial, Replicate, Shard

__all__ = ["binary", "unary", "reduce", "softmax"]

# how an elementwise op treats Partial operands: "add" is linear in every operand (P + P is
# P), "mul" in each one separately (P * R is P), "div" in its numerator only; masked_fill in none
_LINEARITY = {
    "add": "add",
    "sub": "add",
    "mul": "mul",
    "div": "div",
    "masked_fill": "none",
    "polar": "none",
}


def _broadcast_shape(a, b) -> tuple[int, ...]:
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x != y and 1 not in (x, y):
            raise RuntimeError(
                f"The size of tensor a ({x}) must match the size of tensor b ({y}) at "
                "non-singleton dimension"
            )
        out.append(max(x, y))
    return tuple(out)


def binary(a, b, op: str, fn, *, reverse: bool = False) -> DTensor:
    """``fn(a_local, b_local)`` for ``op`` in ``add/sub/mul/div`` with broadcasting; either
    operand may be a Python number. ``reverse`` swaps the operands (``__radd__``...)."""
    if reverse:
        a, b = b, a
    mesh = _check_same_mesh((a, b), f"DTensor.{op}")
    a, b = _as_dtensor(a, mesh, f"DTensor.{op}"), _as_dtensor(b, mesh, f"DTensor.{op}")
    dts = [x for x in (a, b) if isinstance(x, DTensor)]
    out_shape = dts[0]._shape if len(dts) == 1 else _broadcast_shape(a._shape, b._shape)
    n = len(out_shape)
    kind = _LINEARITY[op]
    # per mesh dim: the placement of the output and what each operand must become
    want = {id(x): list(x.placements) for x in dts}
    out = []
    for i in range(mesh.ndim):
        places = [x.placements[i] for x in dts]
        shards = [
            (x, p.dim + n - x.ndim)
            for x, p in zip(dts, places)
            if isinstance(p, Shard) and x._shape[p.dim] == out_shape[p.dim + n - x.ndim]
        ]
        if shards:
            od = shards[0][1]
            for x, p in zip(dts, places):
                if not (isinstance(p, Shard) and p.dim + n - x.ndim == od):
                    want[id(x)][i] = Replicate()  # sliced locally below if it has the dim
            out.append(Shard(od))
            continue
        partial = [x for x, p in zip(dts, places) if isinstance(p, Partial)]
        scalar = len(dts) == 1
        if partial and kind == "add" and not scalar and len(partial) == len(dts):
            out.append(places[0] if all(p == places[0] for p in places) else Replicate())
        elif partial and kind == "mul" and (scalar or len(partial) == 1):
            out.append(partial[0].placements[i])
        elif partial and kind == "div" and partial == [a] and (scalar or b not in partial):
            out.append(a.placements[i])
        else:
            out.append(Replicate())
        if isinstance(out[-1], Replicate):
            for x in dts:
                want[id(x)][i] = Replicate()
        else:
            for x in dts:
                w = want[id(x)][i]
                if isinstance(w, Shard) or (isinstance(w, Partial) and w != out[-1]):
                    want[id(x)][i] = Replicate()
    locals_ = []
    for x in (a, b):
        if not isinstance(x, DTensor):
            locals_.append(x)
            continue
        x = _moved(x, want[id(x)])
        t = _grad_sum_over(x, out)
        off = n - x.ndim
        for i, q in enumerate(out):
            # a replicated operand that has the sharded dim (not broadcast) takes its slice
            if isinstance(q, Shard) and isinstance(x.placements[i], Replicate):
                d = q.dim - off
                if d >= 0 and x._shape[d] != 1:
                    t = _slice_to(t, mesh, i, d, x._shape[d])
        locals_.append(t)
    return _wrap(fn(*locals_), mesh, out, out_shape)


def unary(x: DTensor, fn, *, linear: bool = False) -> DTensor:
    """An elementwise ``fn`` of one DTensor; ``linear`` ops (neg, scaling) keep ``Partial``."""
    if not linear:
        x = _no_partial(x)
    return _wrap(fn(x._local_tensor), x.device_mesh, x.placements, x._shape)


def reduce(x: DTensor, kind: str, dim=None, keepdim: bool = False) -> DTensor:
    """``sum``/``mean`` over ``dim`` (an int, a sequence, or ``None`` for all). A reduced
    sharded dimension gives a ``Partial`` result, as in PyTorch."""
    n = x.ndim
    if dim is None:
        dims = tuple(range(n))
    else:
        dims = (dim,) if isinstance(dim, int) else tuple(dim)
        dims = tuple(sorted({_norm_dim(d, n, f"DTensor.{kind}") for d in dims}))
    # sum and mean are linear: a Partial('sum') stays partial; a mean over a sharded dim is
    # the partial sum of the local sums, each divided by the global count
    if any(p.is_partial() and not p.is_partial("sum") for p in x.placements):
        x = _no_partial(x)
    count = 1
    for d in dims:
        count *= x._shape[d]
    out_shape = [s for d, s in enumerate(x._shape) if d not in dims or keepdim]
    if keepdim:
        out_shape = [1 if d in dims else s for d, s in enumerate(x._shape)]
    out = []
    for p in x.placements:
        if isinstance(p, Shard) and p.dim in dims:
            out.append(Partial())
        elif isinstance(p, Shard):
            out.append(Shard(p.dim if keepdim else p.dim - sum(d < p.dim for d in dims)))
        else:
            out.append(p)
    t = x._local_tensor
    local = t.sum(dim=dims, keepdim=keepdim) if dims else t.clone()
    if kind == "mean":
        local = local / float(count)
    return _wrap(local, x.device_mesh, out, out_shape)


def softmax(x: DTensor, dim: int, fn) -> DTensor:
    """``softmax``/``log_softmax`` along ``dim``: that dimension must be whole on each rank,
    so a shard of it is gathered first (PyTorch does the same)."""
    dim = _norm_dim(dim, x.ndim, "DTensor.softmax")
    x = _moved(
        x,
        [Replicate() if p.is_partial() or p.is_shard(dim) else p for p in x.placements],
    )
    return _wrap(fn(x._local_tensor, dim), x.device_mesh, x.placements, x._shape)
