"""Autocast's state and the hook the listed public ops carry (``@autocast_op("name")``).

The hot path when no autocast region is active is one list-item test in the wrapper. Inside a
region, the wrapper looks the op up in the device's policy (``_policy.py``), casts its tensor
arguments (differentiably, so gradients come back in each input's own dtype) and runs the op
with autocast switched off, as PyTorch's autocast kernels exclude their own dispatch key: an op
built from other listed ops (``addmm`` = ``matmul`` + ``add``) is cast once, at the top.
"""

from __future__ import annotations

import functools

import numpy as np

from ..backend.dtype import bfloat16, float16
from ._policy import FP32, LOWER, POLICIES

# ON[0]: is any device's autocast enabled (and not suspended inside a cast op)? The only thing
# the wrapped ops read when autocast is off.
ON = [False]
# device type -> [enabled, ember dtype]; torch's defaults: float16 on CUDA, bfloat16 on CPU.
DEVICES: dict[str, list] = {"cuda": [False, float16], "cpu": [False, bfloat16]}
CACHE_ENABLED = [True]
NESTING = [0]
# id(leaf float32 parameter) -> (parameter, its low-precision copy): torch's weight-cast cache,
# cleared when the outermost autocast region exits.
CACHE: dict[int, tuple] = {}

_LOW = frozenset(np.dtype(d.np) for d in (float16, bfloat16) if d is not None)
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_Tensor = None
_cast = None


def is_float(dt) -> bool:
    """Floating dtype? (ml_dtypes' bfloat16 has kind "V", not "f".)"""
    return dt.kind == "f" or dt in _LOW


def refresh() -> None:
    """Recompute ``ON`` after a device's enabled flag changed."""
    ON[0] = any(state[0] for state in DEVICES.values())


def _bind() -> None:
    global _Tensor, _cast
    from ..ops.convert import Cast
    from ..tensor import Tensor

    _Tensor, _cast = Tensor, Cast.apply


def _device_type(data) -> str:
    return "cpu" if type(data) is np.ndarray else "cuda"


def cast_tensor(t, np_dtype):
    """``t`` cast to ``np_dtype`` through the graph, from the weight cache where torch caches."""
    if t._data.dtype == np_dtype:
        return t
    cache = (
        CACHE_ENABLED[0]
        and np_dtype in _LOW
        and t._data.dtype == _F32
        and t.requires_grad
        and t.grad_fn is None
        and t._base is None
    )
    if cache:
        hit = CACHE.get(id(t))
        if hit is not None and hit[0] is t:
            return hit[1]
    out = _cast(t, np_dtype)
    if cache:
        CACHE[id(t)] = (t, out)
    return out


def _walk(obj, fn):
    """Apply ``fn`` to every tensor in ``obj`` (tensors, lists and tuples of them)."""
    if isinstance(obj, _Tensor):
        return fn(obj)
    if type(obj) in (list, tuple):
        return type(obj)(_walk(o, fn) for o in obj)
    return obj


def _tensors(obj, out: list) -> list:
    if isinstance(obj, _Tensor):
        out.append(obj)
    elif type(obj) in (list, tuple):
        for o in obj:
            _tensors(o, out)
    return out


def _widest(tensors):
    """The promote policy's dtype: float64 if any, else float32 unless all share one dtype."""
    best = None
    for t in tensors:
        dt = t._data.dtype
        if not is_float(dt) or dt == best:
            continue
        best = dt if best is None else (_F64 if _F64 in (dt, best) else _F32)
    return best


def _dispatch(name, fn, args, kwargs):
    if _Tensor is None:
        _bind()
    found = _tensors(args, [])
    if not found:
        found = _tensors(tuple(kwargs.values()), [])
    device = _device_type(found[0]._data) if found else "cpu"
    state = DEVICES.get(device)
    kind = POLICIES[device].get(name) if state is not None and state[0] else None
    if kind is not None:
        if kind == LOWER:
            target = np.dtype(state[1].np)
        elif kind == FP32:
            target = _F32
        else:
            target = _widest(found + _tensors(tuple(kwargs.values()), []))

        def conv(t):
            dt = t._data.dtype
            if (
                not is_float(dt)
                or dt == target
                or dt == _F64
                or _device_type(t._data) != device
                or (kind == FP32 and dt not in _LOW)
            ):
                return t
            return cast_tensor(t, target)

        if target is not None:
            args = _walk(args, conv)
            kwargs = {k: _walk(v, conv) for k, v in kwargs.items()} if kwargs else kwargs
    ON[0] = False  # the op's own building blocks run uncast
    try:
        return fn(*args, **kwargs)
    finally:
        refresh()


def autocast_op(name: str):
    """Mark a public op as autocast-aware under its ATen name (see ``_policy.py``)."""

    def deco(fn):
        from .._numpy_names import renamer
        from ..overrides import _PLAIN, _tensor_like, any_relevant, handle_torch_function
        from ..tensor import Tensor

        ren = renamer(fn)  # NumPy's axis=/keepdims= (``torch.softmax(x, axis=-1)``), or None

        @functools.wraps(fn)
        def op(*args, **kwargs):
            if ren is not None and kwargs:
                ren(kwargs)
            # a tensor-like argument, any of them as in torch (DTensor), goes to its
            # __torch_function__: the test lives here so that these ops pay no second wrapper
            # (core/_torch_function.py); Tensors and Python scalars leave at the first tests
            relevant = any_relevant(args, kwargs)
            for x in relevant:
                if type(x) is not Tensor and type(x) not in _PLAIN and _tensor_like(x):
                    return handle_torch_function(op, relevant, *args, **kwargs)
            if ON[0]:
                return _dispatch(name, fn, args, kwargs)
            return fn(*args, **kwargs)

        op.__ember_torch_function__ = True
        if ren is not None:
            op._ember_numpy_names = fn
        return op

    return deco
