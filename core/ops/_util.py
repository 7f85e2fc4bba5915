"""Helpers shared by the op families: dim normalisation and PyTorch's type promotion."""

from __future__ import annotations

import numpy as np

from ..backend.dtype import (
    _FLOAT,
    from_numpy_dtype,
    get_default_dtype,
    result_type_of,
    scalar_dtype,
)
from ..tensor import Tensor
from .convert import to_dtype_op


def wrap_dim(dim: int, ndim: int) -> int:
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(
            f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})"
        )
    return dim + n if dim < 0 else dim


def norm_dims(dim, ndim: int):
    """None -> None; int or sequence -> a sorted tuple of non-negative axes."""
    if dim is None:
        return None
    if isinstance(dim, (int, np.integer)):
        dims = (wrap_dim(int(dim), ndim),)
    else:
        dims = tuple(sorted(wrap_dim(int(d), ndim) for d in dim))
        if len(set(dims)) != len(dims):
            raise RuntimeError(f"dim {dims} appears multiple times in the list of dims")
    # a 0-d tensor accepts dim 0 / -1 and reduces to itself: no axis to reduce
    return dims if ndim else ()


def result_dtype(*operands):
    """PyTorch's result_type for tensors and Python scalars (returns an ember dtype)."""
    dims, zeros, scalars = [], [], []
    for o in operands:
        if isinstance(o, Tensor):
            d = from_numpy_dtype(o._data.dtype)
            (dims if o._data.ndim else zeros).append(d)
        elif o is not None:
            scalars.append(scalar_dtype(o))
    return result_type_of(dims, zeros, scalars)


def promote(a, b):
    """Cast tensor operands of a binary op to their common dtype; Python scalars stay weak.

    Fast path: two tensors of one dtype, or a tensor and a scalar of no higher category.
    """
    ta, tb = isinstance(a, Tensor), isinstance(b, Tensor)
    if ta and tb:
        if a._data.dtype == b._data.dtype:
            return a, b
    elif isinstance(b, np.generic) or isinstance(a, np.generic):
        # NumPy scalars (``x / np.sqrt(d_k)``, graykode's Transformer) are weak like Python
        # numbers in PyTorch; NumPy 2 would let an np.float64 lift a float32 array
        return promote(
            a.item() if isinstance(a, np.generic) else a,
            b.item() if isinstance(b, np.generic) else b,
        )
    elif ta and _scalar_fits(b, a._data.dtype):
        return a, (b if a._data.dtype.kind != "V" else _weak_scalar(b, a._data.dtype))
    elif tb and _scalar_fits(a, b._data.dtype):
        return (a if b._data.dtype.kind != "V" else _weak_scalar(a, b._data.dtype)), b
    # NumPy arrays (e.g. ``ndarray + tensor``, which NumPy defers to the tensor) take part as
    # tensors, as in PyTorch; NumPy scalars stay weak like Python numbers
    if not ta and isinstance(a, np.ndarray):
        a, ta = Tensor._wrap(a), True
    if not tb and isinstance(b, np.ndarray):
        b, tb = Tensor._wrap(b), True
    if not (ta and tb):
        _refuse_pytorch_tensor(b if ta else a)
    rt = result_dtype(a, b)
    npd = rt.np
    if ta and a._data.dtype != npd:
        a = to_dtype_op(a, rt)
    if tb and b._data.dtype != npd:
        b = to_dtype_op(b, rt)
    if not ta and not tb:
        raise TypeError("expected at least one tensor operand")
    return a, b


def _refuse_pytorch_tensor(operand) -> None:
    """A real PyTorch tensor mixed into ember arithmetic would otherwise fail deep in NumPy
    (``ember_t + torch_t``): name it, and the conversion."""
    from ..overrides import _is_pytorch_tensor_type, pytorch_tensor_error

    if _is_pytorch_tensor_type(type(operand)):
        raise pytorch_tensor_error("an arithmetic operand", type(operand))


def _weak_scalar(s, np_dtype):
    """NumPy keeps a tensor's dtype against a Python scalar, except for bfloat16 (ml_dtypes,
    kind "V"), which a Python float lifts to float32: give the scalar the tensor's dtype."""
    return np.asarray(s, dtype=np_dtype)


def _scalar_fits(s, np_dtype) -> bool:
    """A Python scalar whose category does not exceed the tensor's keeps the tensor's dtype."""
    kind = np_dtype.kind
    if isinstance(s, bool):
        return True
    if isinstance(s, int):
        return kind != "b"
    if isinstance(s, float):
        return kind in "fcV"
    if isinstance(s, complex):
        return kind == "c"
    return False


def float_dtype_for(t: Tensor):
    """Integer/bool tensors become the default float for ops like exp, mean, true division."""
    if t._data.dtype.kind in "fcV":
        return None
    return get_default_dtype()


def is_float_category(d) -> bool:
    return d.category >= _FLOAT


# ---- PyTorch's error wording ------------------------------------------------------------------
# ScalarType names (``Got: Long``) and the C++ type names some messages print (``dtype double``)
_SCALAR_TYPE_NAMES = {
    "bool": "Bool",
    "uint8": "Byte",
    "int8": "Char",
    "int16": "Short",
    "int32": "Int",
    "int64": "Long",
    "float16": "Half",
    "bfloat16": "BFloat16",
    "float32": "Float",
    "float64": "Double",
    "complex64": "ComplexFloat",
    "complex128": "ComplexDouble",
}
_CPP_TYPE_NAMES = {
    "bool": "bool",
    "uint8": "unsigned char",
    "int8": "signed char",
    "int16": "short int",
    "int32": "int",
    "int64": "long int",
    "float16": "c10::Half",
    "bfloat16": "c10::BFloat16",
    "float32": "float",
    "float64": "double",
    "complex64": "c10::complex<float>",
    "complex128": "c10::complex<double>",
}


def scalar_type_name(t) -> str:
    """``Long``, ``Float``... for a tensor or dtype, as PyTorch's messages name dtypes."""
    d = t.dtype if isinstance(t, Tensor) else t
    return _SCALAR_TYPE_NAMES.get(d.name, d.name)


def cpp_type_name(t) -> str:
    """``long int``, ``float``... (the C++ names some PyTorch messages print)."""
    d = t.dtype if isinstance(t, Tensor) else t
    return _CPP_TYPE_NAMES.get(d.name, d.name)


def broadcast_shapes(*shapes) -> tuple:
    """The broadcast shape, or PyTorch's error naming the sizes and the dimension that clash.

    Like PyTorch, sizes are compared from the last dimension backwards and the dimension is
    counted in the result.
    """
    cur = tuple(shapes[0])
    for s in shapes[1:]:
        n = max(len(cur), len(s))
        out = [0] * n
        for i in range(n - 1, -1, -1):
            off = n - 1 - i
            x = cur[len(cur) - 1 - off] if off < len(cur) else 1
            y = s[len(s) - 1 - off] if off < len(s) else 1
            if x != y and x != 1 and y != 1:
                raise RuntimeError(
                    f"The size of tensor a ({x}) must match the size of tensor b ({y}) at "
                    f"non-singleton dimension {i}"
                )
            out[i] = y if x == 1 else x
        cur = tuple(out)
    return cur


def raise_broadcast_error(err: Exception, *operands):
    """Re-raise a NumPy broadcasting failure of ``operands`` with PyTorch's message.

    Called from ``except ValueError`` around an op's ``apply``; any other failure is re-raised
    unchanged.
    """
    shapes = [o._data.shape for o in operands if isinstance(o, Tensor)]
    if shapes:
        try:
            broadcast_shapes(*shapes)
        except RuntimeError as mismatch:
            raise mismatch from None
    raise err


def deprecated_scalar_first(name: str, scalar, rest: tuple, args: tuple) -> tuple:
    """PyTorch's deprecated overloads that take the multiplier first, ``add(x, 0.5, y)``,
    ``x.add_(-lr, grad)``, ``addcmul_(1 - beta, g, g)`` (common in pre-1.5 scripts): warn as
    torch does and return the operands (``rest`` then ``args``) and the multiplier."""
    import numbers
    import warnings

    if len(args) != 1 or not isinstance(scalar, numbers.Number) or isinstance(scalar, bool):
        raise TypeError(
            f"{name}() got {len(args)} unexpected positional argument(s): the multiplier goes "
            f"in the keyword (alpha= / value=), e.g. {name}(input, other, alpha=2)"
        )
    warnings.warn(
        f"This overload of {name} is deprecated:\n\t{name}(Number, Tensor ...)\nConsider "
        "passing the multiplier as a keyword (alpha= or value=) instead.",
        UserWarning,
        stacklevel=3,
    )
    return (*rest, args[0]), scalar
