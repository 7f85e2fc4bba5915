"""The scalar, list, string and ``prim`` operations of TorchScript code, and the ``torch`` /
``ops`` namespaces that code from a PyTorch TorchScript archive runs against.

TorchScript writes every operation as ``torch.<aten op>(...)`` with the aten schema's argument
order, for tensors and for plain ints, floats, lists and strings alike
(``torch.add(i, 1)``, ``torch.len(xs)``, ``torch.append(xs, v)``, ``torch.eq(mode, 1)``).
Here each name resolves to one Python function: the tensor ops (``_torchscript_ops``) dispatch
to their scalar/list meaning when no argument is a Tensor.
"""

from __future__ import annotations

import builtins
import math
import sys
import warnings
from collections.abc import Callable
from typing import Any

import ember
from ember.tensor import Tensor

__all__ = ["TorchNamespace", "OpsNamespace", "dtype_of", "scalar_type", "SCALAR_TYPES"]

# c10::ScalarType's numbering: TorchScript code holds dtypes as these ints (``dtype=6``)
SCALAR_TYPES = [
    "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64",
    "complex32", "complex64", "complex128", "bool", "qint8", "quint8", "qint32", "bfloat16",
]  # fmt: skip
_CODE_OF = {name: i for i, name in enumerate(SCALAR_TYPES)}


def dtype_of(code: Any):
    """ember's dtype for a TorchScript dtype value (an int code, an ember dtype, or None)."""
    if code is None or not isinstance(code, int) or isinstance(code, bool):
        return code
    if not 0 <= code < len(SCALAR_TYPES):
        raise RuntimeError(f"TorchScript: unknown ScalarType code {code}")
    return getattr(ember, SCALAR_TYPES[code])


def scalar_type(t: Tensor) -> int:
    """``ops.prim.dtype(t)``: the tensor's dtype as TorchScript's int code."""
    name = str(t.dtype).rsplit(".", 1)[-1]
    return _CODE_OF.get(name, _CODE_OF.get({"float": "float32", "long": "int64"}.get(name), -1))


def _any_tensor(args) -> bool:
    return any(isinstance(a, Tensor) for a in args)


def poly(tensor_fn: Callable, scalar_fn: Callable) -> Callable:
    """One TorchScript op for tensors (``tensor_fn``) and for numbers/lists (``scalar_fn``)."""

    def op(*args, **kwargs):
        if _any_tensor(args) or _any_tensor(kwargs.values()):
            return tensor_fn(*args, **kwargs)
        return scalar_fn(*args, **kwargs)

    op.__name__ = getattr(tensor_fn, "__name__", "op")
    return op


def _floordiv(a, b):
    return a // b


def _div(a, b, rounding_mode=None):
    if rounding_mode == "trunc":
        return float(math.trunc(a / b))
    if rounding_mode == "floor":
        return float(a // b)
    return a / b


def _append(xs: list, v):
    xs.append(v)
    return xs


def _slice_list(xs, start=None, end=None, step=1):
    return xs[start:end:step]


def _format(fmt: str, *args) -> str:
    # aten::format fills each "{}" in turn; str.format is not used, as its "{0.attr}" fields
    # would let archive code read arbitrary attributes
    pieces = fmt.split("{}")
    out = [pieces[0]]
    for i, piece in enumerate(pieces[1:]):
        out.append(str(_show(args[i])) if i < len(args) else "{}")
        out.append(piece)
    return "".join(out)


def _show(a):
    if isinstance(a, float) and a == int(a) and abs(a) < 1e16:
        return f"{a:.1f}"  # TorchScript prints floats as 2. -> "2.0"
    return a


_EXCEPTIONS = {
    "builtins.ValueError": ValueError,
    "builtins.RuntimeError": RuntimeError,
    "builtins.TypeError": TypeError,
    "builtins.IndexError": IndexError,
    "builtins.KeyError": KeyError,
    "builtins.AssertionError": AssertionError,
    "builtins.NotImplementedError": NotImplementedError,
    "builtins.AttributeError": AttributeError,
    "builtins.ZeroDivisionError": ZeroDivisionError,
    "builtins.StopIteration": StopIteration,
    "builtins.Exception": Exception,
}


def _raise(msg, cls_name="builtins.RuntimeError"):
    # the archive names the Python exception class: only builtin ones are raised as such
    raise _EXCEPTIONS.get(cls_name, RuntimeError)(msg)


def _num_to_tensor(n):
    return ember.tensor(n)


def _missing(kind: str, name: str) -> NotImplementedError:
    frame = sys._getframe(2)  # the TorchScript code that looked the op up
    where = f"{frame.f_code.co_filename}, line {frame.f_lineno}"
    return NotImplementedError(
        f"ember.jit.load: the TorchScript operator {kind}{name} (used in {where}) is not "
        "supported by ember yet"
    )


class _Namespace:
    """Attribute access to an op table; a missing op raises NotImplementedError naming it
    and the archive's code file and line that uses it."""

    _kind = "torch."

    def __init__(self, table: dict[str, Any]) -> None:
        self.__dict__.update(table)

    def __getattr__(self, name: str):
        raise _missing(self._kind, name)


class TorchNamespace(_Namespace):
    """The ``torch`` of TorchScript code: aten ops by name (``torch.conv2d``, ``torch.len``)."""


class _PrimNamespace(_Namespace):
    _kind = "ops.prim."


class _AtenNamespace(_Namespace):
    _kind = "ops.aten."


class OpsNamespace:
    """The ``ops`` of TorchScript code (``ops.prim.NumToTensor``, ``ops.aten.<op>``)."""

    def __init__(self, aten: dict[str, Any]) -> None:
        self.prim = _PrimNamespace(PRIM_OPS)
        self.aten = _AtenNamespace(aten)

    def __getattr__(self, name: str):
        raise _missing("ops.", name)


def _device_type(d) -> str:
    return d.type if hasattr(d, "type") else str(d).split(":")[0]


def _min(*a):
    return builtins.min(a[0]) if len(a) == 1 else builtins.min(a)


def _max(*a):
    return builtins.max(a[0]) if len(a) == 1 else builtins.max(a)


PRIM_OPS: dict[str, Any] = {
    "NumToTensor": _num_to_tensor,
    "RaiseException": _raise,
    "device": lambda t: t.device,
    "dtype": scalar_type,
    "type": _device_type,
    "is_nested": lambda t: False,
    "is_cuda": lambda t: t.device.type == "cuda",
    "is_quantized": lambda t: False,
    "is_sparse": lambda t: False,
    "is_mkldnn": lambda t: False,
    "requires_grad": lambda t: bool(t.requires_grad),
    "data": lambda t: t.detach(),
    "shape": lambda t: list(t.shape),
    "layout": lambda t: 0,
    "grad": lambda t: t.grad,
    "unchecked_unwrap_optional": lambda x: x,
    "min": _min,
    "max": _max,
    "abs": builtins.abs,
    "name": lambda t: None,
    "index": lambda t: getattr(t, "index", None),
}

# ops on numbers, strings and lists (their tensor meaning, if any, is in _torchscript_ops)
SCALAR_OPS: dict[str, Any] = {
    "__is__": lambda a, b: a is b,
    "__isnot__": lambda a, b: a is not b,
    "__not__": lambda a: not a,
    "__and__": lambda a, b: a and b,
    "__or__": lambda a, b: a or b,
    "__xor__": lambda a, b: a != b,
    "__contains__": lambda xs, v: v in xs,
    "__getitem__": lambda xs, i: xs[i],
    "__range_length": lambda lo, hi, step: builtins.max(0, -((lo - hi) // step)),
    "__derive_index": lambda i, start, step: start + i * step,
    "len": builtins.len,
    "append": _append,
    "extend": lambda xs, ys: xs.extend(ys),
    "insert": lambda xs, i, v: xs.insert(i, v),
    "pop": lambda xs, *i: xs.pop(*i),
    "clear": lambda xs: xs.clear(),
    "reverse": lambda xs: xs.reverse(),
    "copy": lambda xs: xs.copy(),
    "list": builtins.list,
    "dict": builtins.dict,
    "keys": lambda d: builtins.list(d.keys()),
    "values": lambda d: builtins.list(d.values()),
    "items": lambda d: builtins.list(d.items()),
    "get": lambda d, k, default=None: d.get(k, default),
    "_set_item": lambda d, k, v: d.__setitem__(k, v),
    "format": _format,
    "join": lambda sep, xs: sep.join(xs),
    "startswith": lambda s, p, *a: s.startswith(p, *a),
    "endswith": lambda s, p, *a: s.endswith(p, *a),
    "lower": lambda s: s.lower(),
    "upper": lambda s: s.upper(),
    "strip": lambda s, chars=" \n\t\f\v": s.strip(chars),
    "split_str": lambda s, sep=None, maxsplit=-1: s.split(sep, maxsplit),
    "warn": lambda msg, stacklevel=2: warnings.warn(str(msg), stacklevel=2),
    "floordiv": _floordiv,
    "device": lambda d: ember.device(d),
    "is_grad_enabled": lambda: ember.is_grad_enabled(),
    "is_autocast_enabled": lambda *a: False,
    "is_autocast_cpu_enabled": lambda: False,
    "_assert": lambda cond, msg="": None if cond else _raise(msg, "builtins.AssertionError"),
    "floor": lambda x: math.floor(x),
    "ceil": lambda x: math.ceil(x),
    "log": math.log,
    "exp": math.exp,
    "sqrt": math.sqrt,
    "fabs": math.fabs,
    "isnan": math.isnan,
    "isinf": math.isinf,
    "gcd": math.gcd,
    "factorial": math.factorial,
    "_scalar_add": lambda a, b, alpha=1: a + alpha * b if alpha != 1 else a + b,
    "_scalar_sub": lambda a, b, alpha=1: a - alpha * b if alpha != 1 else a - b,
    "_scalar_div": _div,
    "_slice_list": _slice_list,
}
