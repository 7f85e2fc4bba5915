"""Elementwise arithmetic and math, split by family (every name stays importable from here).

- ``elementwise_unary``: exp/log/sqrt/trig/tanh/sigmoid/relu/abs and the shared helpers
  (``_floatify``, the complex-gradient conjugation);
- ``elementwise_binary``: add/sub/mul/pow/neg/square/lerp;
- ``elementwise_division``: div (and its rounding modes), floor_divide, remainder, reciprocal,
  and the rounding functions (sign, floor, ceil, trunc, round, frac);
- ``elementwise_select``: maximum/minimum, clamp, where.
"""

from __future__ import annotations

from .elementwise_binary import (  # noqa: F401
    Add,
    Lerp,
    Mul,
    Neg,
    Pow,
    Sub,
    add,
    lerp,
    mul,
    neg,
    pow,
    rsub,
    square,
    sub,
)
from .elementwise_division import (  # noqa: F401
    Div,
    FloorDivide,
    ZeroGrad,
    _trunc_div,
    _zero_grad_unary,
    ceil,
    check_int_divisor,
    div,
    floor,
    floor_divide,
    frac,
    reciprocal,
    remainder,
    round,
    sign,
    trunc,
)
from .elementwise_select import (  # noqa: F401
    Clamp,
    Maximum,
    Minimum,
    Where,
    _scalar_pair_as_tensors,
    clamp,
    maximum,
    minimum,
    where,
)
from .elementwise_unary import (  # noqa: F401
    Abs,
    Cos,
    Exp,
    Expm1,
    Log,
    Log1p,
    Relu,
    Rsqrt,
    Sigmoid,
    Sin,
    Sqrt,
    Tanh,
    _cj,
    _cplx,
    _floatify,
    _unary,
    abs,
    cos,
    exp,
    expm1,
    log,
    log1p,
    relu,
    rsqrt,
    sigmoid,
    sin,
    sqrt,
    tanh,
)
