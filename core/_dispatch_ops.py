"""The operator objects ``__torch_dispatch__`` sees (docs/torch_dispatch.md).

ember's ops are ``Function`` classes, not ATen operators; a dispatch mode or a dispatch
subclass is handed one :class:`DispatchOverload` per op class, named as ``ember.ops.aten``
names it (``aten.relu.default``, ``aten.linear.default``, ``aten.mm.default``), comparing
equal (``==``, ``in``, dict keys) to ``ember.ops.aten.<name>.<overload>``, and callable: a
call runs the op below autograd (through the next outer mode first, as in torch).

A few ops are reported in ATen's spelling with ATen's arguments, because handlers test for
those: ``Permute`` of a matrix as ``aten.t.default(x)``, ``Reshape`` as
``aten.view.default(x, shape)``, ``Matmul`` of two matrices / two stacks as ``aten.mm`` /
``aten.bmm``, ``Cast`` as ``aten._to_copy.default(x, dtype=...)``, ``Sum`` as
``aten.sum.default(x)`` / ``aten.sum.dim_IntList(x, dims, keepdim)``; indexing, ``cat`` and
convolutions (``aten.convolution``) are spelled in ``_dispatch_decomp.py``, which also runs
``linear`` / ``matmul`` as torch's decomposition under a mode. Every other op keeps its
own arguments (those of its ``Function.forward``) under the snake_case of its class name
(``CrossEntropyIndices`` -> ``aten.cross_entropy_indices.default``).

Backward nodes are reported as one named op each, ``aten.<op>_backward.default(*grads)``
(``aten.relu_backward.default``): ember's backward formulas are single kernels on raw arrays,
not ember ops, so there is nothing finer to see; calling it runs the node's backward and
returns one gradient (or None) per forward input.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

import numpy as np

from ._dispatch_decomp import register_spellings

__all__ = ["DispatchOverload", "BackwardOverload", "overload_for", "backward_overload_for"]

# Function class name -> the aten name it is reported under (others: snake_case of the class)
_NAMES = {
    "Relu": "relu",
    "Add": "add",
    "Sub": "sub",
    "Mul": "mul",
    "Div": "div",
    "Clone": "clone",
    "Contiguous": "clone",
    "Softmax": "_softmax",
    "LogSoftmax": "_log_softmax",
    "GetItem": "get_item",
}
# ops whose aten overload is not ``default``
_OVERLOADS = {"add": "Tensor", "sub": "Tensor", "mul": "Tensor", "div": "Tensor"}


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if (
            ch.isupper()
            and i
            and (not name[i - 1].isupper() or (i + 1 < len(name) and name[i + 1].islower()))
        ):
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


class _Arg:
    __slots__ = ("name", "type", "kwarg_only")

    def __init__(self, name: str, kwarg_only: bool = False) -> None:
        self.name, self.type, self.kwarg_only = name, "Any", kwarg_only

    def __repr__(self) -> str:
        return self.name


class DispatchSchema:
    """``func._schema``: the name, overload name and argument names of a reported op."""

    def __init__(self, name: str, overload: str, args: list[str]) -> None:
        self.name = f"aten::{name}"
        self.overload_name = "" if overload == "default" else overload
        self.arguments = [_Arg(a) for a in args]
        self.returns = [_Arg("result")]
        self.is_mutable = name.endswith("_") and not name.endswith("__")

    def __str__(self) -> str:
        over = f".{self.overload_name}" if self.overload_name else ""
        return f"{self.name}{over}({', '.join(a.name for a in self.arguments)}) -> Tensor"

    __repr__ = __str__


def _aten_packet(name: str):
    from .library._namespace import _aten_packet as packet

    try:
        return packet(name)
    except AttributeError:
        return None


class _OverloadBase:
    """What the two kinds of reported op share: names, equality with ember.ops.aten."""

    _name: str
    _overloadname: str

    @property
    def __name__(self) -> str:  # torch: ``aten.mm.default.__name__ == "mm.default"``
        return f"{self._name}.{self._overloadname}"

    def name(self) -> str:
        over = "" if self._overloadname == "default" else f".{self._overloadname}"
        return f"aten::{self._name}{over}"

    @property
    def namespace(self) -> str:
        return "aten"

    @property
    def overloadpacket(self):
        """``ember.ops.aten.<name>`` where ember has that name, else a packet of this op."""
        p = _aten_packet(self._name)
        return p if p is not None else _LocalPacket(self._name, self)

    _overloadpacket = overloadpacket

    def __repr__(self) -> str:
        return f"aten.{self._name}.{self._overloadname}"

    __str__ = __repr__

    def __eq__(self, other: Any) -> bool:
        key = _key(other)
        return key is not None and key == ("aten", self._name, self._overloadname)

    def __hash__(self) -> int:
        return hash(("aten", self._name, self._overloadname))

    def __deepcopy__(self, memo):  # op objects are singletons, as torch's
        return self


def _key(op: Any):
    name = getattr(op, "_name", None)
    over = getattr(op, "_overloadname", None)
    if name is None or over is None or not hasattr(op, "name"):
        return None
    return ("aten", name, over)


class _LocalPacket:
    def __init__(self, name: str, default) -> None:
        self.__name__, self.default = name, default

    def overloads(self) -> list[str]:
        return [self.default._overloadname]

    def __eq__(self, other: Any) -> bool:
        return getattr(other, "__name__", None) == self.__name__ and hasattr(other, "overloads")

    def __hash__(self) -> int:
        return hash(("aten-packet", self.__name__))

    def __repr__(self) -> str:
        return f"<OpOverloadPacket(op='aten.{self.__name__}')>"


class DispatchOverload(_OverloadBase):
    """The op a dispatch mode or subclass is handed for one ember ``Function`` class."""

    def __init__(self, cls: type, name: str, overload: str, to_apply=None, params=None) -> None:
        self._cls, self._name, self._overloadname = cls, name, overload
        self._to_apply = to_apply  # reported (args, kwargs) -> Function.apply's args
        if params is None:
            try:
                params = list(inspect.signature(cls.forward).parameters)[1:]
            except (TypeError, ValueError):
                params = []
        self._schema = DispatchSchema(name, overload, params)

    def apply_args(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if self._to_apply is None:
            return args, kwargs
        return self._to_apply(*args, **kwargs), {}

    def __call__(self, *args, **kwargs):
        from ._dispatch import call_overload

        return call_overload(self, args, kwargs)


class BackwardOverload(_OverloadBase):
    """``aten.<op>_backward.default``: one backward node, called with its output gradients."""

    def __init__(self, fwd_name: str) -> None:
        self._name, self._overloadname = f"{fwd_name}_backward", "default"
        self._schema = DispatchSchema(self._name, "default", ["grad_outputs"])

    def __call__(self, *grads):
        from ._dispatch import call_backward_overload

        return call_backward_overload(self, grads)


# ---- reported spellings: (name, overload, reported args, kwargs) and the way back -----------
def _permute(cls, args, kwargs):
    x, axes = args
    if getattr(x, "ndim", 0) == 2 and tuple(axes) == (1, 0):
        return _cached(cls, "t", "default", lambda x, *_: (x, (1, 0))), (x,), {}
    return _cached(cls, "permute", "default", None), args, kwargs


def _reshape(cls, args, kwargs):
    x, shape, view = args
    if not view and not _contiguous(x):  # torch's reshape of a contiguous tensor is a view
        return _cached(cls, "reshape", "default", lambda x, s: (x, tuple(s), False)), (x, shape), {}
    return _cached(cls, "view", "default", lambda x, s: (x, tuple(s), True)), (x, shape), {}


def _contiguous(x) -> bool:
    try:
        return bool(x.is_contiguous())
    except (AttributeError, NotImplementedError):
        return False


def _matmul(cls, args, kwargs):
    a, b = args
    na, nb = getattr(a, "ndim", 0), getattr(b, "ndim", 0)
    name = "mm" if na == nb == 2 else "bmm" if na == nb == 3 else "matmul"
    return _cached(cls, name, "default", None), args, kwargs


def _cast(cls, args, kwargs):
    from .backend.dtype import from_numpy_dtype

    x, np_dtype = args

    ov = _cached(cls, "_to_copy", "default", _to_copy_back)
    return ov, (x,), {"dtype": from_numpy_dtype(np_dtype)}


def _to_copy_back(x, *, dtype=None, **_):
    if dtype is None:
        raise NotImplementedError("aten._to_copy without dtype= is not an ember op (give dtype)")
    return (x, dtype.np)


def _sum(cls, args, kwargs):
    x, axes, keepdim = args
    if axes is None and not keepdim:
        return _cached(cls, "sum", "default", lambda x: (x, None, False)), (x,), {}
    dims = [axes] if isinstance(axes, int) else list(axes)
    ov = _cached(cls, "sum", "dim_IntList", lambda x, d, k=False: (x, tuple(d), k))
    return ov, (x, dims, keepdim), {}


_SPELLINGS = {"Permute": _permute, "Reshape": _reshape, "Matmul": _matmul, "Cast": _cast}
_SPELLINGS["Sum"] = _sum
_CACHE: dict = {}


def _cached(cls, name: str, overload: str, to_apply) -> DispatchOverload:
    key = (cls, name, overload)
    ov = _CACHE.get(key)
    if ov is None:
        params = _PARAMS.get(name) if to_apply is not None or name in _ATEN_ARGS else None
        ov = _CACHE[key] = DispatchOverload(cls, name, overload, to_apply, params)
    return ov


_ATEN_ARGS = ("mm", "bmm", "addmm")  # ops whose forward is ATen's but named otherwise
# ATen's argument names of the ops reported in ATen's spelling
_PARAMS = {
    "t": ["self"],
    "view": ["self", "size"],
    "reshape": ["self", "shape"],
    "mm": ["self", "mat2"],
    "bmm": ["self", "mat2"],
    "_to_copy": ["self", "dtype"],
    "sum": ["self", "dim", "keepdim"],
    "select": ["self", "dim", "index"],
    "slice": ["self", "dim", "start", "end", "step"],
    "index": ["self", "indices"],
    "cat": ["tensors", "dim"],
}


register_spellings(_SPELLINGS, _PARAMS, _NAMES)  # convolution (_dispatch_decomp.py)


def overload_for(cls: type, args: tuple, kwargs: dict) -> tuple[DispatchOverload, tuple, dict]:
    """The op, arguments and keywords a handler is given for ``cls.apply(*args, **kwargs)``."""
    spell = _SPELLINGS.get(cls.__name__) if cls.__module__.startswith("ember.ops") else None
    if spell is not None:
        return spell(cls, args, kwargs)
    name = _NAMES.get(cls.__name__) or _snake(cls.__name__)
    over = _OVERLOADS.get(name, "default")
    raw = tuple(i for i, a in enumerate(args) if _is_raw(a))
    if not raw:
        return _cached(cls, name, over, None), args, kwargs
    # ember's ops take index arrays raw (index_select's index): the handler gets tensors
    from .tensor import Tensor

    key = (cls, name, over, raw)
    ov = _CACHE.get(key)
    if ov is None:

        def back(*a, _raw=raw):
            return tuple(
                x._data if i in _raw and isinstance(x, Tensor) else x for i, x in enumerate(a)
            )

        ov = _CACHE[key] = DispatchOverload(cls, name, over, back)
    return ov, tuple(Tensor._wrap(a) if i in raw else a for i, a in enumerate(args)), kwargs


def _is_raw(a) -> bool:
    t = type(a)
    return t is np.ndarray or (t.__module__.startswith("cupy") and t.__name__ == "ndarray")


_BACKWARD: dict = {}


def backward_overload_for(cls: type) -> BackwardOverload:
    ov = _BACKWARD.get(cls)
    if ov is None:
        name = _NAMES.get(cls.__name__) or _snake(cls.__name__)
        ov = _BACKWARD[cls] = BackwardOverload(name.lstrip("_"))
    return ov


class MethodOverload(_OverloadBase):
    """A reported op that is a Tensor method rather than a ``Function`` (``aten.detach``)."""

    def __init__(self, name: str, kernel, overload: str = "default") -> None:
        self._name, self._overloadname, self._kernel = name, overload, kernel
        args = ["self"] if overload == "default" else ["self", "other"]
        self._schema = DispatchSchema(name, overload, args)

    def __call__(self, *args, **kwargs):
        from . import _dispatch

        if getattr(_dispatch._TLS, "stack", None):
            return _dispatch.call_mode(self, args, kwargs)
        if any(_dispatch.is_wrapper(a) for a in args):
            return _dispatch.dispatch_to_subclasses(self, args, kwargs)
        return self._kernel(*args, **kwargs)


def _plain_detach(x):
    from .tensor import Tensor

    return Tensor.detach(x)


DETACH = MethodOverload("detach", _plain_detach)


def _detach(self):
    from ._dispatch import dispatch_to_subclasses

    return dispatch_to_subclasses(DETACH, (self,), {})


def _repr(self) -> str:
    d = self._data
    return f"{type(self).__name__}(size={list(d.shape)}, dtype={self.dtype}, device={d.device})"


def setup_dispatch_subclass(cls: type, chain: list) -> bool:
    """A Tensor subclass that defines ``__torch_dispatch__`` (``Tensor.__init_subclass__``):
    ``__torch_function__`` is off unless it defines one (torch's wrapper subclasses set
    ``_disabled_torch_function_impl`` themselves), ``detach``/``.data`` dispatch as
    ``aten.detach``, and a default repr. True when no ``__torch_function__`` wrapping remains
    to be done."""
    own: set = set()
    for klass in chain:
        own.update(klass.__dict__)
    if "detach" not in own:
        cls.detach = _detach
    if "data" not in own:
        cls.data = property(_detach, None, None, "A detached alias (``aten.detach``).")
    if "__repr__" not in own:
        cls.__repr__ = _repr
    if any("_data" in k.__dict__.get("__annotations__", {}) for k in chain):
        cls._data = _SHARED_DATA
    if "__torch_function__" in own:
        return False
    from ._C import _disabled_torch_function_impl

    cls.__torch_function__ = _disabled_torch_function_impl
    return True


# PyTorch Geometric's EdgeIndex/Index keep their inner tensor in an attribute named ``_data``,
# ember's slot for a tensor's array. On a dispatch subclass that declares ``_data``, the name is
# shared by caller: ember's own code (module ``ember.*``) reads and writes the slot (the
# placeholder), everyone else the subclass's value. Only such classes pay the frame lookup.
def _shared_get(self):
    from .tensor import Tensor

    if sys._getframe(1).f_globals.get("__name__", "").startswith("ember"):
        return Tensor.__dict__["_data"].__get__(self)
    try:
        return self.__dict__["_user_data"]
    except KeyError:
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '_data'") from None


def _shared_set(self, value) -> None:
    from .tensor import Tensor

    if sys._getframe(1).f_globals.get("__name__", "").startswith("ember"):
        Tensor.__dict__["_data"].__set__(self, value)
    else:
        self.__dict__["_user_data"] = value


_SHARED_DATA = property(_shared_get, _shared_set)


def user_attr(t, name: str):
    """``getattr(t, name)`` as the subclass's own code sees it (``_data`` above)."""
    if name == "_data" and type(t).__dict__.get("_data") is _SHARED_DATA:
        return t.__dict__["_user_data"]
    return getattr(t, name)
