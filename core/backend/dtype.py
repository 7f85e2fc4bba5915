"""Dtype objects with PyTorch's names, the NumPy mapping, and PyTorch's type promotion."""

from __future__ import annotations

import numpy as np

try:  # bfloat16 comes from ml_dtypes (maintained by the JAX team), if installed
    import ml_dtypes as _ml_dtypes
except ImportError:  # pragma: no cover
    _ml_dtypes = None

_BOOL, _INT, _FLOAT, _COMPLEX = 0, 1, 2, 3


class dtype:
    """A tensor element type; ``ember.float32`` etc. are the instances."""

    __slots__ = ("name", "np", "category", "itemsize", "is_signed")

    def __init__(self, name: str, np_dtype, category: int):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.category = category
        self.itemsize = self.np.itemsize
        self.is_signed = category != _BOOL and not name.startswith("uint")

    @property
    def is_floating_point(self) -> bool:
        return self.category == _FLOAT

    @property
    def is_complex(self) -> bool:
        return self.category == _COMPLEX

    def __repr__(self) -> str:
        return f"ember.{self.name}"

    def __reduce__(self):
        return (_by_name, (self.name,))

    def to_complex(self) -> dtype:
        return complex128 if self is float64 else complex64


#: Booleans (``ember.bool``).
bool_ = dtype("bool", np.bool_, _BOOL)
#: 8-bit unsigned integers.
uint8 = dtype("uint8", np.uint8, _INT)
# uint16/32/64: storage types with limited op support, as in PyTorch (no mixed promotion)
#: 16-bit unsigned integers.
uint16 = dtype("uint16", np.uint16, _INT)
#: 32-bit unsigned integers.
uint32 = dtype("uint32", np.uint32, _INT)
#: 64-bit unsigned integers.
uint64 = dtype("uint64", np.uint64, _INT)
#: 8-bit signed integers.
int8 = dtype("int8", np.int8, _INT)
#: 16-bit signed integers (also ``ember.short``).
int16 = dtype("int16", np.int16, _INT)
#: 32-bit signed integers (also ``ember.int``).
int32 = dtype("int32", np.int32, _INT)
#: 64-bit signed integers (also ``ember.long``), the dtype of indices.
int64 = dtype("int64", np.int64, _INT)
#: 16-bit IEEE floating point (also ``ember.half``).
float16 = dtype("float16", np.float16, _FLOAT)
#: 32-bit IEEE floating point (also ``ember.float``), the default floating dtype.
float32 = dtype("float32", np.float32, _FLOAT)
#: 64-bit IEEE floating point (also ``ember.double``).
float64 = dtype("float64", np.float64, _FLOAT)
#: Complex numbers of two float32 (also ``ember.cfloat``).
complex64 = dtype("complex64", np.complex64, _COMPLEX)
#: Complex numbers of two float64 (also ``ember.cdouble``).
complex128 = dtype("complex128", np.complex128, _COMPLEX)
#: Brain floating point: float32's exponent range with an 8-bit significand (from
#: ``ml_dtypes``; computed in float32 and rounded, see docs/api.md).
bfloat16 = dtype("bfloat16", _ml_dtypes.bfloat16, _FLOAT) if _ml_dtypes is not None else None

ALL = [
    d
    for d in (
        bool_,
        uint8,
        int8,
        int16,
        int32,
        int64,
        float16,
        bfloat16,
        float32,
        float64,
        complex64,
        complex128,
        uint16,
        uint32,
        uint64,
    )
    if d is not None
]
_NAMES = {d.name: d for d in ALL}
# PyTorch's aliases
_NAMES.update(
    half=float16,
    float=float32,
    double=float64,
    short=int16,
    int=int32,
    long=int64,
    cfloat=complex64,
    cdouble=complex128,
)
_FROM_NP = {d.np: d for d in ALL}

# 8-bit floats (from ml_dtypes): storage types, as in PyTorch -- cast to and from them with
# ``.to``; they take no part in type promotion. Kept out of ``ALL`` (no op support to test).


def _float8(name: str) -> dtype | None:
    np_type = getattr(_ml_dtypes, name, None)
    return dtype(name, np_type, _FLOAT) if np_type is not None else None


#: 8-bit float, 4 exponent and 3 mantissa bits, no infinities (storage only; from ml_dtypes).
float8_e4m3fn = _float8("float8_e4m3fn")
#: 8-bit float e4m3, no infinities or negative zero (storage only; from ml_dtypes).
float8_e4m3fnuz = _float8("float8_e4m3fnuz")
#: 8-bit float, 5 exponent and 2 mantissa bits (storage only; from ml_dtypes).
float8_e5m2 = _float8("float8_e5m2")
#: 8-bit float e5m2, no infinities or negative zero (storage only; from ml_dtypes).
float8_e5m2fnuz = _float8("float8_e5m2fnuz")
#: 8-bit exponent-only scale type e8m0 (storage only; from ml_dtypes).
float8_e8m0fnu = _float8("float8_e8m0fnu")
FLOAT8 = [
    d
    for d in (float8_e4m3fn, float8_e4m3fnuz, float8_e5m2, float8_e5m2fnuz, float8_e8m0fnu)
    if d is not None
]
_NAMES.update({d.name: d for d in FLOAT8})
_FROM_NP.update({d.np: d for d in FLOAT8})


class _NameOnlyDtype(dtype):
    """A PyTorch dtype NumPy has no type for: the name exists (programs test ``x.dtype in
    (..., torch.complex32)``), but a tensor of it cannot be made (``.np`` raises)."""

    __slots__ = ()

    def __init__(self, name: str, category: int, itemsize: int, is_signed: bool = True):
        self.name, self.category, self.itemsize = name, category, itemsize
        self.is_signed = is_signed

    @property
    def np(self):
        raise TypeError(f"ember.{self.name} is not supported: NumPy has no {self.name} type")


#: Complex numbers of two float16 (also ``ember.chalf``): named only, no tensor can hold it.
complex32 = _NameOnlyDtype("complex32", _COMPLEX, 4)
_NAMES.update(complex32=complex32, chalf=complex32)

# The sub-byte integer dtypes: named only (in torch they are shells for tensor subclasses
# such as torchao's, which index tables by them); no tensor of ember has one.
#: 1-bit unsigned integer (named only: tensor subclasses such as torchao's use it)
uint1 = _NameOnlyDtype("uint1", _INT, 1, is_signed=False)
#: 2-bit unsigned integer (named only: tensor subclasses such as torchao's use it)
uint2 = _NameOnlyDtype("uint2", _INT, 1, is_signed=False)
#: 3-bit unsigned integer (named only: tensor subclasses such as torchao's use it)
uint3 = _NameOnlyDtype("uint3", _INT, 1, is_signed=False)
#: 4-bit unsigned integer (named only: tensor subclasses such as torchao's use it)
uint4 = _NameOnlyDtype("uint4", _INT, 1, is_signed=False)
#: 5-bit unsigned integer (named only: tensor subclasses such as torchao's use it)
uint5 = _NameOnlyDtype("uint5", _INT, 1, is_signed=False)
#: 6-bit unsigned integer (named only: tensor subclasses such as torchao's use it)
uint6 = _NameOnlyDtype("uint6", _INT, 1, is_signed=False)
#: 7-bit unsigned integer (named only: tensor subclasses such as torchao's use it)
uint7 = _NameOnlyDtype("uint7", _INT, 1, is_signed=False)
#: 1-bit signed integer (named only: tensor subclasses such as torchao's use it)
int1 = _NameOnlyDtype("int1", _INT, 1)
#: 2-bit signed integer (named only: tensor subclasses such as torchao's use it)
int2 = _NameOnlyDtype("int2", _INT, 1)
#: 3-bit signed integer (named only: tensor subclasses such as torchao's use it)
int3 = _NameOnlyDtype("int3", _INT, 1)
#: 4-bit signed integer (named only: tensor subclasses such as torchao's use it)
int4 = _NameOnlyDtype("int4", _INT, 1)
#: 5-bit signed integer (named only: tensor subclasses such as torchao's use it)
int5 = _NameOnlyDtype("int5", _INT, 1)
#: 6-bit signed integer (named only: tensor subclasses such as torchao's use it)
int6 = _NameOnlyDtype("int6", _INT, 1)
#: 7-bit signed integer (named only: tensor subclasses such as torchao's use it)
int7 = _NameOnlyDtype("int7", _INT, 1)
SUB_BYTE = [
    uint1,
    uint2,
    uint3,
    uint4,
    uint5,
    uint6,
    uint7,
    int1,
    int2,
    int3,
    int4,
    int5,
    int6,
    int7,
]
_NAMES.update({d.name: d for d in SUB_BYTE})

_default_float = float32


def _by_name(name: str) -> dtype:
    return _NAMES[name]


def get_default_dtype() -> dtype:
    """The floating dtype of new tensors made from Python floats or by the factory functions
    (``float32`` unless :func:`set_default_dtype` changed it).
    """
    return _default_float


def set_default_dtype(d: dtype) -> None:
    """Set the default floating dtype: ``float16``, ``bfloat16``, ``float32`` or ``float64``.

    Raises:
        TypeError: ``d`` is not one of those.
    """
    global _default_float
    d = to_dtype(d)
    if d not in (float16, float32, float64, bfloat16):
        raise TypeError(f"only floating-point types are supported as the default type, got {d}")
    _default_float = d


def from_numpy_dtype(np_dtype) -> dtype:
    """The ember dtype of a NumPy dtype; raises for dtypes ember does not support."""
    d = _FROM_NP.get(np.dtype(np_dtype))
    if d is None:
        raise TypeError(
            f"can't convert np.ndarray of type {np.dtype(np_dtype)}. The only supported types are: "
            + ", ".join(x.name for x in ALL)
        )
    return d


def to_dtype(d) -> dtype:
    """Accept an ember dtype, a NumPy dtype/type, or a name like "float32"."""
    if isinstance(d, dtype):
        return d
    if isinstance(d, str) and d in _NAMES:
        return _NAMES[d]
    if d is float:
        return _default_float
    if d is int:
        return int64
    if d is bool:
        return bool_
    try:
        return from_numpy_dtype(d)
    except TypeError:
        raise TypeError(f"not a dtype: {d!r}") from None


def promote_types(a: dtype, b: dtype) -> dtype:
    """PyTorch's promote_types: an integer with a float gives that float (numpy would widen),
    uint8 with int8 gives int16, float16 with bfloat16 gives float32."""
    if a is b:
        return a
    if a in FLOAT8 or b in FLOAT8:
        raise RuntimeError(
            "Promotion for Float8 Types is not supported, attempted to promote "
            f"{_C10_NAMES[a.name]} and {_C10_NAMES[b.name]}"
        )
    if a in _BARE_UINTS or b in _BARE_UINTS:
        raise RuntimeError(
            "Promotion for uint16, uint32, uint64 types is not supported, attempted to promote "
            f"{_C10_NAMES[a.name]} and {_C10_NAMES[b.name]}"
        )
    if a.category != b.category:
        hi, lo = (a, b) if a.category > b.category else (b, a)
        if hi.category == _COMPLEX and lo is float64:
            return complex128
        return hi
    if a.category == _FLOAT and bfloat16 is not None and bfloat16 in (a, b):
        other = b if a is bfloat16 else a
        return float32 if other is float16 else other
    return from_numpy_dtype(np.promote_types(a.np, b.np))


_BARE_UINTS = (uint16, uint32, uint64)
_C10_NAMES = dict(
    bool="Bool",
    uint8="Byte",
    int8="Char",
    int16="Short",
    int32="Int",
    int64="Long",
    float16="Half",
    bfloat16="BFloat16",
    float32="Float",
    float64="Double",
    complex64="ComplexFloat",
    complex128="ComplexDouble",
    uint16="UInt16",
    uint32="UInt32",
    uint64="UInt64",
    float8_e4m3fn="Float8_e4m3fn",
    float8_e4m3fnuz="Float8_e4m3fnuz",
    float8_e5m2="Float8_e5m2",
    float8_e5m2fnuz="Float8_e5m2fnuz",
    float8_e8m0fnu="Float8_e8m0fnu",
)


def scalar_dtype(x) -> dtype:
    """The dtype a Python scalar takes as a 'wrapped number' in promotion."""
    if isinstance(x, bool):
        return bool_
    if isinstance(x, int):
        return int64
    if isinstance(x, complex):
        return _default_float.to_complex()
    return _default_float


def _combine_categories(higher: dtype | None, lower: dtype | None) -> dtype | None:
    # PyTorch's c10 combine_categories: a lower-priority operand only matters when it is of a
    # higher category (e.g. an int tensor plus a float scalar becomes the default float).
    if higher is None:
        return lower
    if lower is None:
        return higher
    if higher.category == _COMPLEX:
        return higher
    if lower.category == _COMPLEX:
        return higher.to_complex() if higher.category == _FLOAT else lower
    if higher.category == _FLOAT:
        return higher
    if higher is bool_ or lower.category == _FLOAT:
        return promote_types(higher, lower)
    return higher


def result_type_of(dim_dtypes, zero_dim_dtypes, scalar_dtypes) -> dtype:
    """PyTorch's result_type over three priority classes: dim tensors > 0-d tensors > scalars."""

    def fold(ds):
        out = None
        for d in ds:
            out = d if out is None else promote_types(out, d)
        return out

    return _combine_categories(
        fold(dim_dtypes), _combine_categories(fold(zero_dim_dtypes), fold(scalar_dtypes))
    )
