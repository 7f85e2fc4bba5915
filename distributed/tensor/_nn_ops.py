"""Sharding propagation for the DTensor operators of a transformer layer: ``linear``,
``matmul``, ``embedding``, ``layer_norm`` and ``rms_norm``.

Each picks, per mesh dimension, the cheapest layout PyTorch's strategies would (e.g. linear:
``x Replicate`` x ``weight Shard(0)`` -> ``Shard(-1)``; ``x Shard(-1)`` x ``weight Shard(1)``
-> ``Partial``), redistributes operands that fit none (differentiably) and runs the ember op
on the local pieces. See ``_dispatch`` for the gradient rule of replicated operands.
"""

from __future__ import annotations

from ._api import DTensor, _chunk_bounds
from ._dispatch import (
    _as_dtensor,
    _check_same_mesh,
    _grad_sum_over,
    _moved,
    _wrap,
    _zero_unless_first,
)
from .placement_types import Partial, Replicate, Shard

__all__ = ["linear", "matmul", "embedding", "layer_norm", "rms_norm"]

R = Replicate()


def _linear_choice(px, pw, last: int):
    """(x placement, weight placement, output placement) on one mesh dim for x @ w.T."""
    sx = px.dim if isinstance(px, Shard) else None
    sw = pw.dim if isinstance(pw, Shard) else None
    if px.is_replicate() and pw.is_replicate():
        return R, R, R
    if sx is not None and sx != last and not pw.is_shard(0):
        return px, R, Shard(sx)  # batch-sharded input, weight gathered if need be
    if px.is_replicate() and sw == 0:
        return R, pw, Shard(last)  # colwise
    if sx == last and sw == 1:
        return px, pw, Partial()  # rowwise
    if px.is_partial() and pw.is_replicate():
        return px, R, px
    if px.is_replicate() and pw.is_partial():
        return R, pw, pw
    if sx == last and pw.is_replicate():
        return px, Shard(1), Partial()  # slice the weight locally
    if px.is_replicate() and sw == 1:
        return Shard(last), pw, Partial()  # slice the input locally
    if sw == 0:
        return R, pw, Shard(last)
    return R, R, R


def linear(x, weight, bias=None) -> DTensor:
    """``F.linear`` on DTensors: ``x [..., in]``, ``weight [out, in]``, ``bias [out]``."""
    mesh = _check_same_mesh((x, weight, bias), "linear")
    x, weight = _as_dtensor(x, mesh, "linear"), _as_dtensor(weight, mesh, "linear")
    if x._shape[-1] != weight._shape[-1]:
        lead = x._shape[:-1] or (1,)
        raise RuntimeError(
            f"mat1 and mat2 shapes cannot be multiplied ({'x'.join(map(str, lead))}x"
            f"{x._shape[-1]} and {weight._shape[1]}x{weight._shape[0]})"
        )
    last = x.ndim - 1
    choice = [_linear_choice(px, pw, last) for px, pw in zip(x.placements, weight.placements)]
    x = _moved(x, [c[0] for c in choice])
    weight = _moved(weight, [c[1] for c in choice])
    out = [c[2] for c in choice]
    b_local = None
    if bias is not None:
        bias = _as_dtensor(bias, mesh, "linear")
        bias = _moved(bias, [Shard(0) if q.is_shard(last) else R for q in out])
        b_local = _grad_sum_over(bias, out)
        # a partial output gets the bias once: on the first rank of each partial mesh dim
        partial_dims = [i for i, q in enumerate(out) if q.is_partial()]
        b_local = _zero_unless_first(b_local, mesh, partial_dims)
    import ember.nn.functional as F

    local = F.linear(_grad_sum_over(x, out), _grad_sum_over(weight, out), b_local)
    return _wrap(local, mesh, out, (*x._shape[:-1], weight._shape[0]))


def _matmul_choice(pa, pb, nb: int):
    m, k_a, k_b, n = nb, nb + 1, nb, nb + 1
    sa = pa.dim if isinstance(pa, Shard) else None
    sb = pb.dim if isinstance(pb, Shard) else None
    if pa.is_replicate() and pb.is_replicate():
        return R, R, R
    if sa is not None and sa < nb and (sb == sa or pb.is_replicate()):
        return pa, pa, pa  # batch dims shard together
    if pa.is_replicate() and sb is not None and sb < nb:
        return pb, pb, pb
    if sa == m and pb.is_replicate():
        return pa, R, pa
    if pa.is_replicate() and sb == n:
        return R, pb, Shard(n)
    if (sa == k_a or pa.is_replicate()) and (sb == k_b or pb.is_replicate()):
        return Shard(k_a), Shard(k_b), Partial()
    if pa.is_partial() and pb.is_replicate():
        return pa, R, pa
    if pa.is_replicate() and pb.is_partial():
        return R, pb, pb
    return R, R, R


def matmul(a, b) -> DTensor:
    """``a @ b`` on DTensors with at least 2 dims and equal batch dims (others are gathered)."""
    mesh = _check_same_mesh((a, b), "matmul")
    a, b = _as_dtensor(a, mesh, "matmul"), _as_dtensor(b, mesh, "matmul")
    if a._shape[-1] != b._shape[-2 if b.ndim > 1 else 0]:
        raise RuntimeError(
            f"matmul: shapes {a._shape} and {b._shape} cannot be multiplied "
            f"({a._shape[-1]} != {b._shape[-2 if b.ndim > 1 else 0]})"
        )
    if a.ndim < 2 or b.ndim < 2 or a._shape[:-2] != b._shape[:-2]:
        a, b = _no_shard(a), _no_shard(b)
        local = a._local_tensor @ b._local_tensor
        return _wrap(local, mesh, (R,) * mesh.ndim, tuple(local.shape))
    nb = a.ndim - 2
    choice = [_matmul_choice(pa, pb, nb) for pa, pb in zip(a.placements, b.placements)]
    a = _moved(a, [c[0] for c in choice])
    b = _moved(b, [c[1] for c in choice])
    out = [c[2] for c in choice]
    local = _grad_sum_over(a, out) @ _grad_sum_over(b, out)
    return _wrap(local, mesh, out, (*a._shape[:-1], b._shape[-1]))


def _no_shard(x: DTensor) -> DTensor:
    return _moved(x, (R,) * x.device_mesh.ndim)


def embedding(input, weight, padding_idx=None) -> DTensor:
    """``F.embedding`` with a DTensor ``weight``: a vocabulary shard (``Shard(0)``) looks up
    the indices it holds and gives a ``Partial`` result (zeros for the others); an embedding
    dimension shard (``Shard(1)``) gives ``Shard(-1)``."""
    import ember
    import ember.nn.functional as F

    mesh = weight.device_mesh
    if not isinstance(input, DTensor):
        input = DTensor(input, mesh, (R,) * mesh.ndim, tuple(input.shape))
    if any(p.is_partial() for p in input.placements):
        raise RuntimeError("embedding: indices cannot be Partial")
    last = input.ndim
    w_target, in_target, out, vocab_dims = [], [], [], []
    for i, (pi, pw) in enumerate(zip(input.placements, weight.placements)):
        if pw.is_partial() or (isinstance(pi, Shard) and not pw.is_replicate()):
            pw = R
        if pw.is_shard(0) and not vocab_dims:
            vocab_dims.append(i)
            w_target.append(pw), in_target.append(R), out.append(Partial())
        elif pw.is_shard(1):
            w_target.append(pw), in_target.append(R), out.append(Shard(last))
        elif isinstance(pi, Shard):
            w_target.append(R), in_target.append(pi), out.append(pi)
        else:
            w_target.append(R), in_target.append(R), out.append(R)
    weight, input = _moved(weight, w_target), _moved(input, in_target)
    idx = input._local_tensor
    w_local = _grad_sum_over(weight, out)
    if vocab_dims:
        i = vocab_dims[0]
        lo, hi = _chunk_bounds(weight._shape[0], mesh.size(i))[mesh.get_coordinate()[i]]
        keep = (idx >= lo) & (idx < hi)
        local_idx = ember.where(keep, idx - lo, ember.zeros_like(idx))
        pad = None
        if padding_idx is not None and lo <= padding_idx % weight._shape[0] < hi:
            pad = padding_idx % weight._shape[0] - lo
        res = F.embedding(local_idx, w_local, pad)
        res = res * keep.unsqueeze(-1).to(res.dtype)
    else:
        res = F.embedding(idx, w_local, padding_idx)
    return _wrap(res, mesh, out, (*input._shape, weight._shape[1]))


def _norm_inputs(x: DTensor, nd: int, params):
    """x with its normalized (trailing ``nd``) dims and partials gathered; params replicated."""
    x = _moved(
        x,
        [
            R if p.is_partial() or (isinstance(p, Shard) and p.dim >= x.ndim - nd) else p
            for p in x.placements
        ],
    )
    mesh = x.device_mesh
    out = []
    for p in params:
        if p is None:
            out.append(None)
            continue
        if not isinstance(p, DTensor):  # a plain parameter is the same on every rank
            p = DTensor(p, mesh, (R,) * mesh.ndim, tuple(p.shape))
        out.append(_grad_sum_over(_no_shard(p), x.placements))
    return x, out


def layer_norm(x: DTensor, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    """``F.layer_norm`` on a DTensor: leading-dim shards (batch, sequence) stay sharded."""
    import ember.nn.functional as F

    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    x, (w, b) = _norm_inputs(x, len(shape), (weight, bias))
    local = F.layer_norm(x._local_tensor, shape, w, b, eps)
    return _wrap(local, x.device_mesh, x.placements, x._shape)


def rms_norm(x: DTensor, normalized_shape, weight=None, eps: float | None = None):
    """``F.rms_norm`` on a DTensor: leading-dim shards stay sharded."""
    import ember.nn.functional as F

    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    x, (w,) = _norm_inputs(x, len(shape), (weight,))
    local = F.rms_norm(x._local_tensor, shape, w, eps)
    return _wrap(local, x.device_mesh, x.placements, x._shape)
