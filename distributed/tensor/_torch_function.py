"""``DTensor.__torch_function__``: ember's participating functions (``ember.overrides``) called
with DTensors map to DTensor's operators, and DTensor's dtype methods.

``F.scaled_dot_product_attention`` -> ``ops.scaled_dot_product_attention`` (the head shard is
kept); ``view_as_complex``/``view_as_real`` run on the local pieces when the last dim is not
sharded (same placements); ``polar`` is elementwise; ``silu``/``gelu``/``dropout`` are
elementwise on the local pieces; ``softmax`` gathers a sharded ``dim``; ``matmul`` is
``ops.matmul``; ``cat``/``stack`` join local pieces when the joined dim is not sharded;
``F.linear``/``embedding``/``layer_norm``/``rms_norm`` are the operators of ``ops``;
``relu``/``tanh``/``sigmoid``/``leaky_relu`` are elementwise. Any other function runs as written
on the DTensor (its methods, as before these functions handed DTensors over); where that fails,
``NotImplementedError`` names the function.
"""

from __future__ import annotations

import math

from . import _attention, _nn_ops, _pointwise
from ._api import DTensor
from ._dispatch import _as_dtensor, _check_same_mesh, _moved, _no_partial, _wrap
from .debug import _comm_mode
from .placement_types import Replicate, Shard

__all__: list[str] = []


def _unshard_dims(x: DTensor, dims) -> DTensor:
    """``x`` with the tensor dims ``dims`` gathered (other shards kept)."""
    return _moved(
        x, [Replicate() if isinstance(p, Shard) and p.dim in dims else p for p in x.placements]
    )


def _view_as_complex(input):
    import ember

    x = _unshard_dims(input, (input.ndim - 1,))
    local = ember.view_as_complex(x._local_tensor.contiguous())
    return _wrap(local, x.device_mesh, x.placements, x._shape[:-1])


def _view_as_real(input):
    import ember

    local = ember.view_as_real(input._local_tensor)
    return _wrap(local, input.device_mesh, input.placements, (*input._shape, 2))


def _polar(abs, angle):  # noqa: A002 - PyTorch's argument names
    import ember

    return _pointwise.binary(abs, angle, "polar", ember.polar)


def _outer(input, vec2):
    # out[i, j]: input's shard stays on dim 0, vec2 is gathered (the common case: positions
    # x frequencies with one side sharded)
    mesh = _check_same_mesh((input, vec2), "outer")
    a, b = _as_dtensor(input, mesh, "outer"), _as_dtensor(vec2, mesh, "outer")
    a = _no_partial(a)
    b = _moved(b, [Replicate()] * mesh.ndim)
    return _wrap(
        a._local_tensor.outer(b._local_tensor),
        mesh,
        a.placements,
        (a._shape[0], b._shape[0]),
    )


def _elementwise(name: str):
    def run(input, *args, **kwargs):
        import ember.nn.functional as F

        fn = getattr(F, name)
        return _pointwise.unary(input, lambda t: fn(t, *args, **kwargs))

    return run


def _embedding(
    input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
    sparse=False,
):  # fmt: skip
    if max_norm is not None or scale_grad_by_freq or sparse:
        raise NotImplementedError(
            "F.embedding on a DTensor: max_norm, scale_grad_by_freq and sparse are not supported"
        )
    return _nn_ops.embedding(input, weight, padding_idx)


def _softmax(input, dim=None, _stacklevel=3, dtype=None):
    import ember.nn.functional as F

    if dim is None:
        raise RuntimeError("softmax on a DTensor: give dim")
    return _pointwise.softmax(input, dim, lambda t, d: F.softmax(t, d, dtype=dtype))


def _join(name: str, new_dim: bool):
    def run(tensors, dim=0):
        import ember

        tensors = list(tensors)
        mesh = _check_same_mesh(tensors, name)
        dts = [_as_dtensor(t, mesh, name) for t in tensors]
        if not all(isinstance(t, DTensor) for t in dts):
            raise TypeError(f"{name}: every operand must be a DTensor when one is")
        ndim = dts[0].ndim + (1 if new_dim else 0)
        d = dim % ndim
        # the joined dim (cat) must be whole; every operand takes the first one's placements
        if not new_dim:
            dts = [_unshard_dims(t, (d,)) for t in dts]
        dts = [_no_partial(t) for t in dts]
        places = dts[0].placements
        dts = [_moved(t, places) for t in dts]
        local = getattr(ember, name)([t._local_tensor for t in dts], d)
        shape = list(dts[0]._shape)
        if new_dim:
            shape.insert(d, len(dts))
            places = tuple(
                Shard(p.dim + 1) if isinstance(p, Shard) and p.dim >= d else p for p in places
            )
        else:
            shape[d] = sum(t._shape[d] for t in dts)
        return _wrap(local, mesh, places, shape)

    return run


_HANDLERS: dict | None = None


def _key(fn) -> tuple[str, str]:
    return getattr(fn, "__module__", ""), getattr(fn, "__qualname__", "")


def _handlers() -> dict:
    global _HANDLERS
    if _HANDLERS is None:
        import ember
        import ember.nn.functional as F

        _HANDLERS = {
            F.scaled_dot_product_attention: _attention.scaled_dot_product_attention,
            F.silu: _elementwise("silu"),
            F.gelu: _elementwise("gelu"),
            F.dropout: _elementwise("dropout"),
            F.softmax: _softmax,
            F.relu: _elementwise("relu"),
            F.tanh: _elementwise("tanh"),
            F.sigmoid: _elementwise("sigmoid"),
            F.leaky_relu: _elementwise("leaky_relu"),
            F.linear: _nn_ops.linear,
            F.embedding: _embedding,
            F.layer_norm: _nn_ops.layer_norm,
            F.rms_norm: _nn_ops.rms_norm,
            ember.view_as_complex: _view_as_complex,
            ember.view_as_real: _view_as_real,
            ember.polar: _polar,
            ember.outer: _outer,
            ember.matmul: _nn_ops.matmul,
            ember.cat: _join("cat", False),
            ember.stack: _join("stack", True),
        }
        # keyed by the defining module and name: ember binds some of these under extra
        # wrappers (out=, autocast) that keep them, and ``func`` is the participating wrapper
        _HANDLERS = {_key(f): h for f, h in _HANDLERS.items()}
    return _HANDLERS


def __torch_function__(cls, func, types, args=(), kwargs=None):
    """ember's participating functions on DTensors (``ember.overrides``)."""
    if _comm_mode._ACTIVE:  # CommDebugMode lists the DTensor operations
        _comm_mode._note_dtensor_op(func, args, kwargs or {})
    handler = _handlers().get(_key(func))
    if handler is not None:
        return handler(*args, **(kwargs or {}))
    name = getattr(func, "__name__", repr(func))
    message = (
        f"{getattr(func, '__module__', '')}.{name} is not implemented for DTensor "
        "(ember.distributed.tensor supports scaled_dot_product_attention, silu, gelu, "
        "dropout, softmax, relu, tanh, sigmoid, leaky_relu, linear, embedding, layer_norm, "
        "rms_norm, view_as_complex, view_as_real, polar, outer, matmul, cat, stack); call it "
        "on dtensor.to_local() or dtensor.full_tensor()"
    )
    # no rule: run the function as written on the DTensor (its methods), as it ran before the
    # broad set of functions handed DTensors over
    from ember.overrides import _no_tensor_like_dispatch

    try:
        with _no_tensor_like_dispatch():
            return func(*args, **(kwargs or {}))
    except (TypeError, AttributeError) as e:
        raise NotImplementedError(message) from e


# ---- dtype methods -------------------------------------------------------------------------
def _cast(dtype_name: str):
    def method(self, memory_format=None):
        return _pointwise.unary(self, lambda t: getattr(t, dtype_name)(), linear=True)

    method.__name__ = dtype_name
    return method


def _to(self, *args, **kwargs):
    """``to(dtype)`` (also ``to(device)`` on the same device, ``to(other)``): local pieces cast,
    placements kept."""
    return _pointwise.unary(self, lambda t: t.to(*args, **kwargs), linear=True)


def _type_as(self, other):
    return _to(self, other.dtype)


def _flatten(self, start_dim: int = 0, end_dim: int = -1):
    """``flatten`` as the ``reshape`` it is (a shard stays when ``reshape`` keeps it)."""
    from ._dispatch import _norm_dim
    from ._view import reshape

    if self.ndim == 0:
        return reshape(self, 1)
    lo = _norm_dim(start_dim, self.ndim, "DTensor.flatten")
    hi = _norm_dim(end_dim, self.ndim, "DTensor.flatten")
    if lo > hi:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    shape = self._shape
    return reshape(self, *shape[:lo], math.prod(shape[lo : hi + 1]), *shape[hi + 1 :])


METHODS = {
    "__torch_function__": classmethod(__torch_function__),
    "float": _cast("float"),
    "double": _cast("double"),
    "half": _cast("half"),
    "bfloat16": _cast("bfloat16"),
    "to": _to,
    "type_as": _type_as,
    "flatten": _flatten,  # llama2's apply_rotary_emb: view_as_real(...).flatten(3)
}
