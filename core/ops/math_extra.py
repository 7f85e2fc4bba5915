"""Integer and classification math (gcd, lcm, shifts, signbit, isposinf, ...), frexp, the
trivial aliases (sgn, fix, positive), and ``torch.<name>_``: the top-level spellings of the
in-place methods (``torch.exp_(x)`` is ``x.exp_()``).
"""

from __future__ import annotations

import math
from collections import namedtuple

from ..tensor import Tensor
from . import _la_util
from ._docs import nograd_doc
from ._util import deprecated_scalar_first, scalar_type_name
from .elementwise import _floatify, div, mul, sign, trunc
from .elementwise_lowp import AddcdivLow, AddcmulLow, use_fused_low
from .function_free import _xp_of, binary_nograd
from .math_ops import exp2

bitwise_left_shift = binary_nograd("left_shift")
bitwise_right_shift = binary_nograd("right_shift")
bitwise_left_shift.__name__ = "bitwise_left_shift"
bitwise_right_shift.__name__ = "bitwise_right_shift"
_gcd = binary_nograd("gcd")
_lcm = binary_nograd("lcm")


def _integers_only(name, *operands):
    for t in operands:
        if isinstance(t, Tensor) and t._data.dtype.kind not in "iu":
            raise RuntimeError(f"\"{name}_cpu\" not implemented for '{scalar_type_name(t)}'")


def gcd(input: Tensor, other: Tensor) -> Tensor:
    """The greatest common divisor of integer tensors, elementwise (non-negative; gcd(0, 0) = 0)."""
    _integers_only("gcd", input, other)
    return _gcd(input, other)


def lcm(input: Tensor, other: Tensor) -> Tensor:
    """The least common multiple of integer tensors, elementwise (non-negative)."""
    _integers_only("lcm", input, other)
    return _lcm(input, other)


def _classify(fn, name):
    def op(input: Tensor) -> Tensor:
        xp = _xp_of(input._data)
        return Tensor._wrap(xp.asarray(fn(xp, input._data)))

    op.__name__ = name
    op.__doc__ = nograd_doc(name, binary=False)
    return op


def _is_float(d):
    return d.dtype.kind in "fV"


signbit = _classify(
    lambda xp, d: xp.signbit(d) if d.dtype.kind != "b" else xp.zeros(d.shape, bool), "signbit"
)
isposinf = _classify(
    lambda xp, d: xp.isposinf(d) if _is_float(d) else xp.zeros(d.shape, bool), "isposinf"
)
isneginf = _classify(
    lambda xp, d: xp.isneginf(d) if _is_float(d) else xp.zeros(d.shape, bool), "isneginf"
)
isreal = _classify(
    lambda xp, d: d.imag == 0 if d.dtype.kind == "c" else xp.ones(d.shape, bool), "isreal"
)


def sgn(input: Tensor) -> Tensor:
    """sign for real tensors; ``x / |x|`` (0 at 0) for complex ones."""
    if input._data.dtype.kind == "c":
        from .elementwise import abs as _abs
        from .elementwise import where

        mag = _abs(input)
        return where(mag == 0, input * 0, div(input, where(mag == 0, mag + 1, mag)))
    return sign(input)


fix = trunc


def positive(input: Tensor) -> Tensor:
    """``input`` itself (unary plus).

    Raises:
        RuntimeError: ``input`` is a bool tensor.
    """
    if input._data.dtype.kind == "b":
        raise RuntimeError("The `+` operator, on a bool tensor is not supported.")
    return input


frexp_result = namedtuple("frexp", ["mantissa", "exponent"])
frexp_result.__module__ = "ember.return_types"
frexp_result.__repr__ = _la_util.return_repr  # torch.return_types' layout


def frexp(input: Tensor):
    """``(mantissa, exponent)`` with ``input = mantissa * 2 ** exponent``, ``0.5 <= |m| < 1``."""
    d = input._data
    if d.dtype.kind not in "fV":
        raise RuntimeError("torch.frexp() only supports floating-point dtypes")
    xp = _xp_of(d)
    _, e = xp.frexp(d)
    exponent = Tensor._wrap(xp.asarray(e, dtype=xp.int32))
    # the mantissa as a division by an exact power of two: differentiable (grad / 2**e)
    scale = Tensor._wrap(xp.asarray(xp.ldexp(xp.ones_like(d), e), dtype=d.dtype))
    return frexp_result(div(input, scale), exponent)


# ---- compositions of differentiable ops ----------------------------------------------------
def deg2rad(input: Tensor) -> Tensor:
    """Each element converted from degrees to radians."""
    return mul(_floatify(input), math.pi / 180)


def rad2deg(input: Tensor) -> Tensor:
    """Each element converted from radians to degrees."""
    return mul(_floatify(input), 180 / math.pi)


def float_power(input, exponent) -> Tensor:
    """``input ** exponent`` computed in double precision (complex128 for complex operands)."""
    from ..backend.dtype import complex128, float64
    from .convert import to_dtype_op
    from .elementwise import pow

    cplx = any(
        isinstance(v, complex) or isinstance(v, Tensor) and v._data.dtype.kind == "c"
        for v in (input, exponent)
    )
    target = complex128 if cplx else float64

    def cast(v):
        if isinstance(v, Tensor):
            return v if v._data.dtype == target.np else to_dtype_op(v, target)
        return complex(v) if cplx else float(v)

    return pow(cast(input), cast(exponent))


def ldexp(input: Tensor, other: Tensor) -> Tensor:
    """``input * 2 ** other``."""
    return mul(_floatify(input), exp2(other))


def addcmul(input: Tensor, tensor1: Tensor, tensor2: Tensor, *args, value=1) -> Tensor:
    """``input + value * tensor1 * tensor2``, elementwise with broadcasting (also PyTorch's
    deprecated ``addcmul(input, value, tensor1, tensor2)``, with its warning)."""
    if args:
        (tensor1, tensor2), value = deprecated_scalar_first("addcmul", tensor1, (tensor2,), args)
    from .elementwise import add

    if use_fused_low(input, tensor1, tensor2):  # float16/bfloat16: torch's single rounding
        return AddcmulLow.apply(input, tensor1, tensor2, value)
    prod = mul(tensor1, tensor2)
    return add(input, prod if value == 1 else mul(prod, value))


def addcdiv(input: Tensor, tensor1: Tensor, tensor2: Tensor, *args, value=1) -> Tensor:
    """``input + value * tensor1 / tensor2``, elementwise with broadcasting (also PyTorch's
    deprecated ``addcdiv(input, value, tensor1, tensor2)``, with its warning)."""
    if args:
        (tensor1, tensor2), value = deprecated_scalar_first("addcdiv", tensor1, (tensor2,), args)
    from .elementwise import add, div

    if all(t._data.dtype.kind in "iub" for t in (tensor1, tensor2)):
        raise RuntimeError(
            "Integer division with addcdiv is no longer supported, and in a future release "
            "addcdiv will perform a true division of tensor1 and tensor2. The historic "
            "addcdiv behavior can be implemented as (input + value * torch.trunc(tensor1 / "
            "tensor2)).to(input.dtype) for integer inputs and as (input + value * tensor1 / "
            "tensor2) for float inputs. The future addcdiv behavior is just the latter "
            "implementation: (input + value * tensor1 / tensor2), for all dtypes."
        )
    if use_fused_low(input, tensor1, tensor2):
        return AddcdivLow.apply(input, tensor1, tensor2, value)
    q = div(tensor1, tensor2)
    return add(input, q if value == 1 else mul(q, value))


def float_power_(self: Tensor, exponent) -> Tensor:
    """In place: ``self`` must already have the double (or complex double) result dtype."""
    from ..backend.dtype import complex128, float64
    from .inplace import make_inplace

    cplx = (
        isinstance(exponent, complex)
        or (isinstance(exponent, Tensor) and exponent._data.dtype.kind == "c")
        or (self._data.dtype.kind == "c")
    )
    want = complex128 if cplx else float64
    if self._data.dtype != want.np:
        raise RuntimeError(
            f"the base given to float_power_ has dtype {scalar_type_name(self)} "
            f"but the operation's result requires dtype {scalar_type_name(want)}"
        )
    return make_inplace(float_power, "float_power_")(self, exponent)


# ---- torch.<name>_(input, ...) ---------------------------------------------------------------
def _top_level_inplace(name: str):
    def op(input: Tensor, *args, **kwargs) -> Tensor:
        return getattr(input, name)(*args, **kwargs)

    op.__name__ = name
    op.__doc__ = f"In-place version of ``{name[:-1]}``: ``input.{name}(...)``."
    return op


_TOP_LEVEL_INPLACE = """
abs_ acos_ acosh_ arccos_ arccosh_ arcsin_ arcsinh_ arctan_ arctanh_ asin_ asinh_ atan_ atanh_
ceil_ clamp_ clamp_max_ clamp_min_ clip_ cos_ cosh_ deg2rad_ erf_ erfc_ exp2_ exp_ expm1_ fix_
floor_ frac_ gcd_ i0_ lcm_ ldexp_ log10_ log1p_ log2_ log_ logit_ nan_to_num_ neg_ negative_
rad2deg_ reciprocal_ relu_ round_ rsqrt_ sigmoid_ sin_ sinc_ sinh_ sqrt_ square_ tan_ tanh_
trunc_ xlogy_ fill_ zero_
""".split()

for _name in _TOP_LEVEL_INPLACE:
    globals()[_name] = _top_level_inplace(_name)


def fill(input: Tensor, value) -> Tensor:
    """A tensor like ``input`` filled with ``value`` (differentiable in a tensor ``value``)."""
    return input.clone().fill_(value)


def clamp_min(input: Tensor, min) -> Tensor:
    """``max(input, min)`` elementwise: :func:`clamp` with a lower bound only."""
    from .elementwise import clamp

    return clamp(input, min=min)


def clamp_max(input: Tensor, max) -> Tensor:
    """``min(input, max)`` elementwise: :func:`clamp` with an upper bound only."""
    from .elementwise import clamp

    return clamp(input, max=max)


__all__ = [
    "bitwise_left_shift",
    "bitwise_right_shift",
    "gcd",
    "lcm",
    "signbit",
    "isposinf",
    "isneginf",
    "isreal",
    "sgn",
    "fix",
    "positive",
    "frexp",
    "clamp_min",
    "clamp_max",
    "fill",
    "deg2rad",
    "rad2deg",
    "float_power",
    "ldexp",
    "addcmul",
    "addcdiv",
    *_TOP_LEVEL_INPLACE,
]
