"""THE table binding Tensor methods and operators to ops (DESIGN.md §3: one line per method).

Out-of-place methods call the op with the tensor first; ``name_`` methods are the in-place
variants built by ``ops.inplace.make_inplace`` over the out-of-place op. The rows of the wave-2
families (sorting, math, linalg_ext, shape_ext) live in ``core/_tensor_methods_ext.py`` and are
spliced in at their place, so ``METHODS`` keeps one order and one binding loop.
"""

from __future__ import annotations

import numpy as np

from . import _tensor_methods_ext as _ext
from . import creation, ops
from . import storage as _storage
from ._tensor_method_docs import METHOD_DOCS
from ._tensor_methods_ext import _operator, _r
from .backend.device import get_array_module
from .backend.meta import MetaArray
from .ops import inplace
from .random import torch_stream
from .tensor import Tensor


def _softmax(name):
    def method(self, dim, dtype=None):
        from .nn import functional  # (nn loads lazily)

        return getattr(functional, name)(self, dim, dtype=dtype)

    method.__name__ = name
    return method


def _functional(name):
    """A method spelling of ``nn.functional.<name>`` (``x.hardshrink(0.5)``, ``x.prelu(w)``)."""

    def method(self, *args, **kwargs):
        from .nn import functional  # (nn loads lazily)

        return getattr(functional, name)(self, *args, **kwargs)

    method.__name__ = name
    return method


def _fill_random(draw):
    def method(self, *args, generator=None, **kwargs):
        inplace.check_inplace(self)
        src = draw(self, *args, generator=generator, **kwargs)
        self._data[...] = src._data
        self._version_counter[0] += 1
        return self

    return method


def _stream(self, generator):
    """The CPU stream for an in-place draw into ``self`` (None on CuPy / meta: their own way)."""
    data = self._data
    if type(data) is np.ndarray:  # (the common case, without the module lookups)
        return torch_stream(generator, np)
    if isinstance(data, MetaArray):  # meta arrays answer NumPy as their module
        return None
    return torch_stream(generator, get_array_module(data))


def _uniform(self, a=0.0, b=1.0, *, generator=None):
    st = _stream(self, generator)
    if st is not None and self.dtype.is_floating_point:  # torch's uniform_ (core/_mt_stream.py)
        return Tensor._wrap(st.uniform_fill(self._data.shape, self._data.dtype, a, b))
    return (
        creation.rand(self.shape, generator=generator, dtype=self.dtype, device=self.device)
        * (b - a)
        + a
    )


def _normal(self, mean=0.0, std=1.0, *, generator=None):
    st = _stream(self, generator)
    if st is not None and (self._data.dtype.kind == "f" or self._data.dtype.name == "bfloat16"):
        # torch's normal_: non-contiguous targets take its one-at-a-time path
        data = self._data
        if data.flags.c_contiguous:
            return Tensor._wrap(st.normal_fill(data.shape, data.dtype, mean, std))
        # torch's one-at-a-time path fills in memory order (the axes by decreasing stride)
        order = sorted(range(data.ndim), key=lambda d: -abs(data.strides[d]))
        out = st.normal_fill(tuple(data.shape[d] for d in order), data.dtype, mean, std, False)
        return Tensor._wrap(out.transpose(np.argsort(order)))
    return (
        creation.randn(self.shape, generator=generator, dtype=self.dtype, device=self.device) * std
        + mean
    )


def _bernoulli(self, p=0.5, *, generator=None):
    st = _stream(self, generator)
    if st is not None:
        if isinstance(p, Tensor):
            probs = np.broadcast_to(p._data, self._data.shape)
            return Tensor._wrap(st.bernoulli_tensor(probs))
        return Tensor._wrap(st.bernoulli_scalar(self._data.shape, float(p)))
    return creation.bernoulli(self, p, generator=generator)


def _random(self, low=0, high=None, *, generator=None):
    st = _stream(self, generator)
    if st is not None and high is None and not low:  # random_(): [0, 2**digits] of the dtype
        return Tensor._wrap(st.random_full(self._data.dtype, tuple(self.shape)))
    if high is None:
        low, high = 0, low if low else 2**24
    return creation.randint(
        low, high, self.shape, generator=generator, dtype=self.dtype, device=self.device
    )


def _max(self, dim=None, keepdim=False, **kwargs):  # (kwargs: numpy's axis=/keepdims=)
    return ops.max(self, dim, keepdim, **kwargs)


def _min(self, dim=None, keepdim=False, **kwargs):
    return ops.min(self, dim, keepdim, **kwargs)


def _split(self, split_size, dim=0):
    """The tensor split into chunks along ``dim``: of ``split_size`` each (the last may be
    smaller), or of the sizes in the list ``split_size``; views of the tensor."""
    # torch's Tensor.split names its size ``split_size`` (BoTorch: x.split(split_size=n)),
    # torch.split ``split_size_or_sections``
    return ops.split(self, split_size, dim)


_split.__name__ = _split.__qualname__ = "split"


def _broadcast_to(self, *size, **kwargs):
    """``input`` broadcast to the shape ``size``; the method takes the sizes as separate
    integers too (``h.broadcast_to(batch, hidden)``, as speechbrain's Li-GRU), the function
    only a sequence."""
    return ops.expand(self, *size, **kwargs)


_broadcast_to.__name__ = _broadcast_to.__qualname__ = "broadcast_to"


METHODS = {
    # operators
    "__add__": _operator(ops.add, "__add__"),
    # commutative: ``2 * b`` records (b, 2) as torch does, so grad_fn.next_functions[0] is b's
    "__radd__": ops.add,
    "__sub__": _operator(ops.sub, "__sub__"),
    "__rsub__": _r(ops.sub),
    "__mul__": _operator(ops.mul, "__mul__"),
    "__rmul__": ops.mul,
    "__truediv__": _operator(ops.div, "__truediv__"),
    "__rtruediv__": _r(ops.div),
    "__floordiv__": ops.floor_divide,
    "__rfloordiv__": _r(ops.floor_divide),
    "__mod__": ops.remainder,
    "__rmod__": _r(ops.remainder),
    "__pow__": ops.pow,
    "__rpow__": _r(ops.pow),
    "__matmul__": _operator(ops.matmul, "__matmul__", ops.matmul.__wrapped__),
    "__rmatmul__": _r(ops.matmul),
    "__neg__": ops.neg,
    "__pos__": lambda self: self,
    "__abs__": ops.abs,
    "__invert__": ops.bitwise_not,
    "__and__": ops.bitwise_and,
    "__or__": ops.bitwise_or,
    "__xor__": ops.bitwise_xor,
    "__rand__": _r(ops.bitwise_and),
    "__ror__": _r(ops.bitwise_or),
    "__rxor__": _r(ops.bitwise_xor),
    "__eq__": ops.eq,
    "__ne__": ops.ne,
    "__lt__": ops.lt,
    "__le__": ops.le,
    "__gt__": ops.gt,
    "__ge__": ops.ge,
    "__getitem__": ops.getitem,
    "__setitem__": ops.setitem,
    # elementwise math
    "add": ops.add,
    "sub": ops.sub,
    "subtract": ops.sub,
    "mul": ops.mul,
    "multiply": ops.mul,
    "div": ops.div,
    "divide": ops.div,
    "true_divide": ops.div,
    "floor_divide": ops.floor_divide,
    "remainder": ops.remainder,
    "pow": ops.pow,
    "neg": ops.neg,
    "negative": ops.neg,
    "abs": ops.abs,
    "exp": ops.exp,
    "log": ops.log,
    "log1p": ops.log1p,
    "expm1": ops.expm1,
    "sqrt": ops.sqrt,
    "rsqrt": ops.rsqrt,
    "sin": ops.sin,
    "cos": ops.cos,
    "tanh": ops.tanh,
    "sigmoid": ops.sigmoid,
    "relu": ops.relu,
    "clamp": ops.clamp,
    "clip": ops.clamp,
    "sign": ops.sign,
    "floor": ops.floor,
    "ceil": ops.ceil,
    "round": ops.round,
    "trunc": ops.trunc,
    "frac": ops.frac,
    "square": ops.square,
    "reciprocal": ops.reciprocal,
    "maximum": ops.maximum,
    "minimum": ops.minimum,
    "where": lambda self, cond, other: ops.where(cond, self, other),
    "lerp": ops.lerp,
    "clamp_min": lambda self, m: ops.clamp(self, min=m),
    "clamp_max": lambda self, m: ops.clamp(self, max=m),
    # comparisons and logic
    "eq": ops.eq,
    "ne": ops.ne,
    "lt": ops.lt,
    "le": ops.le,
    "gt": ops.gt,
    "ge": ops.ge,
    "equal": ops.equal,
    "isclose": ops.isclose,
    "allclose": ops.allclose,
    "logical_and": ops.logical_and,
    "logical_or": ops.logical_or,
    "logical_xor": ops.logical_xor,
    "logical_not": ops.logical_not,
    "isnan": ops.isnan,
    "isinf": ops.isinf,
    "isfinite": ops.isfinite,
    # reductions
    "sum": ops.sum,
    "mean": ops.mean,
    "prod": ops.prod,
    "max": _max,
    "min": _min,
    "amax": ops.amax,
    "amin": ops.amin,
    "argmax": ops.argmax,
    "argmin": ops.argmin,
    "var": ops.var,
    "std": ops.std,
    "norm": ops.norm,
    "logsumexp": ops.logsumexp,
    "softmax": _softmax("softmax"),
    "log_softmax": _softmax("log_softmax"),
    "cumsum": ops.cumsum,
    "cumprod": ops.cumprod,
    "all": ops.all,
    "any": ops.any,
    "count_nonzero": ops.count_nonzero,
    # shape
    "reshape": ops.reshape,
    "view": ops.view,
    "view_as": ops.view_as,
    "reshape_as": ops.reshape_as,
    "permute": ops.permute,
    "transpose": ops.transpose,
    "swapaxes": ops.swapaxes,
    "swapdims": ops.transpose,
    "t": ops.t,
    "movedim": ops.movedim,
    "moveaxis": ops.movedim,
    "squeeze": ops.squeeze,
    "unsqueeze": ops.unsqueeze,
    "flatten": ops.flatten,
    "unflatten": ops.unflatten,
    "expand": ops.expand,
    "expand_as": ops.expand_as,
    "broadcast_to": _broadcast_to,
    "repeat": ops.repeat,
    "tile": ops.tile,
    "split": _split,
    "chunk": ops.chunk,
    "tensor_split": ops.tensor_split,
    "unbind": ops.unbind,
    "flip": ops.flip,
    "fliplr": ops.fliplr,
    "flipud": ops.flipud,
    "roll": ops.roll,
    "tril": ops.tril,
    "triu": ops.triu,
    "narrow": ops.narrow,
    "contiguous": ops.contiguous,
    "clone": ops.clone,
    # indexing
    "gather": ops.gather,
    "scatter": ops.scatter,
    "scatter_add": ops.scatter_add,
    "index_select": ops.index_select,
    "index_add": ops.index_add,
    "masked_fill": ops.masked_fill,
    "masked_select": ops.masked_select,
    "take_along_dim": ops.take_along_dim,
    "nonzero": ops.nonzero,
    "nonzero_static": ops.nonzero_static,
    "argwhere": ops.argwhere,
    # linear algebra
    "matmul": ops.matmul,
    "mm": ops.mm,
    "bmm": ops.bmm,
    "mv": ops.mv,
    "dot": ops.dot,
    "outer": ops.outer,
    "ger": ops.outer,
    # (sorting, math, linalg_ext, shape_ext: core/_tensor_methods_ext.py)
    **_ext.METHODS,
    # <misc>
    # storages: the memory block behind a tensor (core/storage.py)
    "untyped_storage": _storage.untyped_storage,
    "storage": _storage.typed_storage,
    "_typed_storage": _storage.typed_storage,
    "storage_offset": _storage.storage_offset,
    "set_": _storage.set_,
    "is_set_to": _storage.is_set_to,
    # (dunders and protocol attributes: core/_tensor_protocol.py)
    **__import__("ember._tensor_protocol", fromlist=["METHODS"]).METHODS,
    "hardshrink": _functional("hardshrink"),
    "prelu": _functional("prelu"),
    # </misc>
    # in place
    "copy_": inplace.copy_,
    "zero_": inplace.zero_,
    "fill_": inplace.fill_,
    "uniform_": _fill_random(_uniform),
    "normal_": _fill_random(_normal),
    "bernoulli_": _fill_random(_bernoulli),
    "random_": _fill_random(_random),
}

# ``x.op_(...)`` and ``x op= y`` for every op whose result has the input's shape.
_INPLACE = [
    "add",
    "sub",
    "mul",
    "div",
    "pow",
    "neg",
    "abs",
    "exp",
    "log",
    "log1p",
    "expm1",
    "sqrt",
    "rsqrt",
    "sin",
    "cos",
    "tanh",
    "sigmoid",
    "relu",
    "clamp",
    "clip",
    "sign",
    "floor",
    "ceil",
    "round",
    "trunc",
    "frac",
    "square",
    "reciprocal",
    "remainder",
    "floor_divide",
    "lerp",
    "clamp_min",
    "clamp_max",
    "masked_fill",
    "index_add",
    "scatter",
    "scatter_add",
    "maximum",
    "minimum",
    "true_divide",
    "multiply",
    "subtract",
    "divide",
    # (sorting, math, linalg_ext, shape_ext: core/_tensor_methods_ext.py)
    *_ext.INPLACE,
    # <misc>
    # </misc>
]
for _name in _INPLACE:
    METHODS[_name + "_"] = inplace.make_inplace(METHODS[_name], _name + "_")
for _op, _name in [
    ("add", "__iadd__"),
    ("sub", "__isub__"),
    ("mul", "__imul__"),
    ("div", "__itruediv__"),
    ("floor_divide", "__ifloordiv__"),
    ("remainder", "__imod__"),
    ("pow", "__ipow__"),
]:
    METHODS[_name] = METHODS[_op + "_"]
METHODS["__imatmul__"] = ops.matmul

for _name, _fn in METHODS.items():
    if _name in METHOD_DOCS and not (getattr(_fn, "__doc__", None) or "").strip():
        _fn.__doc__ = METHOD_DOCS[_name]
    setattr(Tensor, _name, _fn)
Tensor.__hash__ = object.__hash__  # __eq__ is elementwise; hashing stays by identity
