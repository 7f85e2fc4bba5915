"""The route ``Function.apply`` takes when an op reaches a nested tensor
(core/autograd/function.py): pointwise ops run on ``values`` (jagged) or per component
(strided); a few ops with dimensions (sum, mean, layer norm, linear, softmax) have rules; any
other op raises ``NotImplementedError`` naming it."""

from __future__ import annotations

import re
from importlib import import_module

import numpy as np

from ..ops.linalg import Matmul, Mv
from ..ops.reduction_sum import Mean, Sum
from ..tensor import Tensor
from ._tensor import NestedTensor


def _mod(name: str):
    # import_module, not ``from ..ops import x``: ember.ops answers unknown attributes with an
    # op namespace (ember.library), which would shadow a not-yet-imported submodule
    return import_module(f"ember.ops.{name}")


convert, nn_ops, norm_ops = _mod("convert"), _mod("nn_ops"), _mod("norm_ops")


def _functions_of(*names: str) -> set:
    from ..autograd.function import Function

    out = set()
    for m in map(_mod, names):
        for v in vars(m).values():
            if isinstance(v, type) and issubclass(v, Function) and v.__module__ == m.__name__:
                out.add(v)
    return out


# ops that act element by element (their other arguments are scalars or broadcast operands)
POINTWISE = _functions_of(
    "elementwise_unary",
    "elementwise_binary",
    "elementwise_division",
    "elementwise_select",
    "activation_ops",
    "math_ops",
    "special_unary",
) | {
    nn_ops.Gelu,
    nn_ops.MaskMul,
    convert.Cast,
    convert.Clone,
    convert.Contiguous,
    convert.ToDevice,
}


def op_name(cls) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()  # MaxPool2d -> max_pool2d


def refuse(name: str) -> NotImplementedError:
    return NotImplementedError(
        f"ember: the operation {name!r} is not supported for nested tensors (ember.nested "
        "supports pointwise ops, linear/matmul on the last dim, softmax, layer_norm, dropout, "
        "sum/mean, scaled_dot_product_attention, transpose/unflatten/flatten/reshape, cat, "
        "unbind); use nt.unbind() or ember.nested.to_padded_tensor() for the rest"
    )


def _same_structure(a: NestedTensor, b: NestedTensor) -> bool:
    if a._offsets is b._offsets and a._lengths is b._lengths:
        return a._ragged_idx == b._ragged_idx
    if a._ragged_idx != b._ragged_idx or a._offsets.shape != b._offsets.shape:
        return False
    if (a._lengths is None) != (b._lengths is None):
        return False
    same = bool((a._offsets.cpu()._data == b._offsets.cpu()._data).all())
    if same and a._lengths is not None:
        same = bool((a._lengths.cpu()._data == b._lengths.cpu()._data).all())
    return same


def _row_batch(nt: NestedTensor) -> np.ndarray:
    """The component index of every row of ``values`` along the ragged dimension."""
    total = int(nt._values.shape[nt._ragged_idx - 1])
    ends = np.asarray(nt._offsets.cpu()._data[1:], dtype=np.int64)
    return np.minimum(np.searchsorted(ends, np.arange(total), side="right"), len(ends) - 1)


def dense_operand(nt: NestedTensor, t: Tensor) -> Tensor:
    """A dense operand of a pointwise op, laid out to broadcast against ``nt.values()``.

    As PyTorch: it must have size 1 in the ragged dimension; a leading batch dimension of
    size B is expanded over each component's rows."""
    n, r = nt.dim(), nt._ragged_idx
    k = t.dim()
    if k == 0:
        return t
    if k > n:
        raise RuntimeError(
            f"cannot broadcast a dense tensor of shape {list(t.shape)} against a nested tensor "
            f"of {n} dimensions"
        )
    shape = tuple(t.shape)
    at_ragged = k - (n - r)  # index of the ragged dim in t (when k covers it)
    if at_ragged >= 0 and shape[at_ragged] != 1:
        raise RuntimeError(
            f"cannot broadcast a dense tensor of shape {list(shape)} against a nested tensor of "
            f"shape {list(nt.shape)}: its size in the ragged dimension must be 1"
        )
    if k < n:
        return t
    if shape[0] == 1:
        return t.squeeze(0)
    if shape[0] != nt.shape[0]:
        raise RuntimeError(
            f"cannot broadcast a dense tensor of shape {list(shape)} against a nested tensor "
            f"with batch size {nt.shape[0]}"
        )
    # (B, ..., 1, ...) -> one slice per row of values: (rows, ...) then into values' layout
    rows = t[Tensor._wrap(_row_batch(nt)).to(t.device)]
    rows = rows.squeeze(r)
    return rows.movedim(0, r - 1) if r > 1 else rows


def _pointwise(cls, args, kwargs):
    ref = next(a for a in args if isinstance(a, NestedTensor))
    new = []
    for a in args:
        if isinstance(a, NestedTensor):
            if a._comps is not None:
                raise RuntimeError("cannot mix jagged and strided nested tensors in one op")
            if a is not ref and not _same_structure(ref, a):
                raise RuntimeError(
                    f"{op_name(cls)}(): cannot combine nested tensors of different structure "
                    f"(shapes {list(ref.shape)} and {list(a.shape)})"
                )
            new.append(a._values)
        elif isinstance(a, Tensor):
            new.append(dense_operand(ref, a))
        else:
            new.append(a)
    out = cls.apply(*new, **kwargs)
    if isinstance(out, tuple):
        return tuple(ref._like(o) for o in out)
    return ref._like(out)


def _per_component(cls, args, kwargs):
    """Strided layout: run the op once per component (dense operands as they are)."""
    nts = [a for a in args if isinstance(a, NestedTensor)]
    b = len(nts[0]._comps)
    if any(a._comps is None or len(a._comps) != b for a in nts):
        raise RuntimeError(
            f"{op_name(cls)}(): nested tensors must all be strided with the same batch size"
        )
    outs = [
        cls.apply(*[a._comps[i] if isinstance(a, NestedTensor) else a for a in args], **kwargs)
        for i in range(b)
    ]
    return NestedTensor._strided(outs)


def _strided_dims(nt: NestedTensor, axes):
    if axes is None or 0 in axes:
        raise refuse("a reduction over the batch dimension of a strided nested tensor")
    return tuple(a - 1 for a in axes)


def _reduce(cls, args, kwargs):
    nt, axes, keepdim = args[0], args[1], args[2]
    if nt._comps is not None:
        dims = _strided_dims(nt, axes)
        return NestedTensor._strided([cls.apply(c, dims, keepdim) for c in nt._comps])
    r = nt._ragged_idx
    n = nt.dim()
    axes = tuple(range(n)) if axes is None else tuple(axes)
    rest = tuple(a - 1 for a in axes if a not in (0, r))
    if 0 in axes and r not in axes:
        raise RuntimeError(
            f"{op_name(cls)}(): reducing over the batch dimension of a jagged nested tensor "
            "needs the ragged dimension too"
        )
    if r not in axes:
        vals = cls.apply(nt._values, rest, keepdim)
        shift = 0 if keepdim else sum(1 for a in rest if a < r - 1)
        return nt._like(vals, r - shift)
    from ._segments import packed_values, segment_sum

    v = packed_values(nt)  # (rows, ...): the ragged dim first, only the components' rows
    vdims = [d for d in range(nt._values.dim()) if d != r - 1]
    red = tuple(1 + vdims.index(a) for a in rest)
    if red:
        v = cls.apply(v, red, False)
    if 0 in axes:  # batch and ragged dimensions together: over all rows
        out = cls.apply(v, (0,), False)
    else:
        out = segment_sum(nt, v)  # (B, ...)
        if cls is Mean:
            lens = Tensor._wrap(np.asarray(nt._lengths_list(), dtype=out._data.dtype))
            out = out / lens.to(out.device).reshape((-1,) + (1,) * (out.dim() - 1))
    return _keep(out, nt, axes) if keepdim else out


def _keep(out: Tensor, nt: NestedTensor, axes) -> Tensor:
    """Re-insert the reduced dimensions as size 1 (keepdim=True) into a dense result."""
    shape = []
    it = iter(out.shape)
    for d in range(nt.dim()):
        shape.append(1 if d in axes else next(it))
    return out.reshape(shape)


def _layer_norm(cls, args, kwargs):
    # LayerNorm(x, weight, bias, nd, eps); RmsNorm(x, weight, nd, eps)
    nt, nd = args[0], args[3 if cls is norm_ops.LayerNorm else 2]
    if nt._comps is not None:
        return _per_component(cls, args, kwargs)
    if nt.dim() - nd <= nt._ragged_idx:
        raise RuntimeError(
            "layer_norm(): normalizing over the ragged or batch dimension of a nested tensor is "
            "not supported"
        )
    return nt._like(cls.apply(nt._values, *args[1:], **kwargs))


def _last_dim_op(cls, args, kwargs):
    nt = args[0]
    if not isinstance(nt, NestedTensor) or any(isinstance(a, NestedTensor) for a in args[1:]):
        raise refuse(op_name(cls) + " with a nested weight")
    if nt._comps is not None:
        return _per_component(cls, args, kwargs)
    if nt._ragged_idx == nt.dim() - 1:
        raise RuntimeError(f"{op_name(cls)}(): the last dimension of the nested input is ragged")
    return nt._like(cls.apply(nt._values, *args[1:], **kwargs))


def _softmax(cls, args, kwargs):
    nt, dim = args[0], args[1]
    if nt._comps is not None:
        if dim == 0:
            raise refuse(f"{op_name(cls)} over the batch dimension")
        return NestedTensor._strided([cls.apply(c, dim - 1) for c in nt._comps])
    if dim == 0:
        raise refuse(f"{op_name(cls)} over the batch dimension of a jagged tensor")
    if dim == nt._ragged_idx:
        return _ragged_softmax(cls, nt)
    return nt._like(cls.apply(nt._values, dim - 1))


def _ragged_softmax(cls, nt: NestedTensor) -> NestedTensor:
    """(log_)softmax over the ragged dimension: within each component (its own length), as
    PyTorch's jagged softmax. One op per component, joined back along the ragged dimension,
    so padding never enters a sum and the gradient is the ops' own."""
    from ..ops.shape_joins import cat
    from ._segments import is_packed

    r = nt._ragged_idx - 1
    out = cat([cls.apply(c, r) for c in nt.unbind()], r)

    if is_packed(nt):
        return nt._like(out)
    # a non-contiguous view (gaps between components): the result is packed, new offsets
    offsets = np.concatenate([[0], np.cumsum(nt._lengths_list())]).astype(np.int64)
    return NestedTensor._jagged(out, Tensor._wrap(offsets).to(out.device), None, r + 1)


def _permute(cls, args, kwargs):
    nt, axes = args[0], tuple(args[1])
    if axes[0] != 0:
        raise RuntimeError("permute(): not supported for nested tensors on dim=0 (the batch)")
    inner = tuple(a - 1 for a in axes[1:])
    if nt._comps is not None:
        return NestedTensor._strided([c.permute(inner) for c in nt._comps])
    return nt._like(nt._values.permute(inner), axes.index(nt._ragged_idx))


def _split(cls, args, kwargs):
    nt, sizes, axis = args[0], tuple(args[1]), args[2]
    if axis == 0:
        if any(s != 1 for s in sizes):
            raise RuntimeError("split(): not supported for nested tensors on dim=0")
        return tuple(c.unsqueeze(0) for c in nt.unbind())  # ember.unbind squeezes them
    if nt._comps is not None:
        parts = [c.split(list(sizes), axis - 1) for c in nt._comps]
        return tuple(NestedTensor._strided(p) for p in zip(*parts))
    return tuple(nt._like(v) for v in nt._values.split(list(sizes), axis - 1))


_RULES = {
    Sum: _reduce,
    Mean: _reduce,
    norm_ops.LayerNorm: _layer_norm,
    _mod("norm_group_rms").RmsNorm: _layer_norm,
    _mod("shape_views").Permute: _permute,
    _mod("shape_joins").Split: _split,
    nn_ops.Linear: _last_dim_op,
    Matmul: _last_dim_op,
    Mv: _last_dim_op,
    nn_ops.Softmax: _softmax,
    nn_ops.LogSoftmax: _softmax,
}


def nested_apply(cls, args, kwargs):
    """Where ``Function.apply`` sends an op that reached a nested tensor."""
    rule = _RULES.get(cls)
    if rule is not None:
        return rule(cls, args, kwargs)
    if cls in POINTWISE:
        if any(isinstance(a, NestedTensor) and a._comps is not None for a in args):
            return _per_component(cls, args, kwargs)
        return _pointwise(cls, args, kwargs)
    raise refuse(op_name(cls))
