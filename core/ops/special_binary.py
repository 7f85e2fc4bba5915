"""Special functions of two tensors with gradients: xlogy, xlog1py, zeta, igamma/igammac
(``gammainc``/``gammaincc``), broadcast against each other. Where PyTorch defines no derivative
(the ``input`` of ``igamma``, the ``self`` of ``zeta``) backward raises PyTorch's error.
"""

from __future__ import annotations

from types import SimpleNamespace

from ..autograd.function import Function
from ..tensor import Tensor
from ._util import promote, raise_broadcast_error
from .elementwise import _floatify
from .special_eval import _ev, _not_implemented
from .special_unary import (
    digamma,
    entr,
    erf,
    erfc,
    erfcx,
    erfinv,
    i0,
    i0e,
    i1,
    i1e,
    lgamma,
    log_ndtr,
    ndtr,
    ndtri,
    polygamma,
)


class Xlogy(Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return _ev(ctx.xp, "xlogy", x, y)

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        xp = ctx.xp
        nx, ny = ctx.needs_input_grad
        gx = grad * xp.log(y) if nx else None  # log y at x == 0 too, as torch
        return gx, (grad * x / y if ny else None)


class Xlog1py(Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return _ev(ctx.xp, "xlog1py", x, y)

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        xp = ctx.xp
        nx, ny = ctx.needs_input_grad
        gx = grad * xp.log1p(y) if nx else None
        return gx, (grad * x / (y + 1) if ny else None)


class Zeta(Function):
    @staticmethod
    def forward(ctx, x, q):
        ctx.save_for_backward(x, q)
        return _ev(ctx.xp, "zeta", x, q)

    @staticmethod
    def backward(ctx, grad):
        x, q = ctx.saved_tensors
        if ctx.needs_input_grad[0]:
            _not_implemented("zeta")
        return None, grad * -x * _ev(ctx.xp, "zeta", x + 1, q)


class Igamma(Function):
    """Regularized lower (``upper=False``) or upper incomplete gamma function."""

    @staticmethod
    def forward(ctx, a, x, upper):
        ctx.save_for_backward(a, x)
        ctx.upper = upper
        return _ev(ctx.xp, "gammaincc" if upper else "gammainc", a, x)

    @staticmethod
    def backward(ctx, grad):
        a, x = ctx.saved_tensors
        if ctx.needs_input_grad[0]:
            _not_implemented("igammac: input" if ctx.upper else "igamma: input")
        xp = ctx.xp
        d = xp.exp((a - 1) * xp.log(x) - x - _ev(xp, "gammaln", a))
        return None, (-grad if ctx.upper else grad) * d, None


# ---- public functions ---------------------------------------------------------------------
def _binary(cls, a, b, *extra):
    a, b = promote(a, b)
    a, b = _floatify(a), _floatify(b)
    try:
        return cls.apply(a, b, *extra)
    except ValueError as err:
        raise_broadcast_error(err, a, b)


def xlogy(input, other) -> Tensor:
    """x * ln(y) elementwise, defined as 0 where x is 0 (even where y is 0); NaN where y is NaN."""
    return _binary(Xlogy, input, other)


def xlog1py(input, other) -> Tensor:
    """x * ln(1 + y) elementwise, defined as 0 where x is 0; NaN where y is NaN."""
    return _binary(Xlog1py, input, other)


def zeta(input, other) -> Tensor:
    """The Hurwitz zeta function, sum over k >= 0 of 1 / (k + q)^x, for x = ``input`` and
    q = ``other``."""
    return _binary(Zeta, input, other)


def igamma(input: Tensor, other: Tensor) -> Tensor:
    """The regularized lower incomplete gamma function P(a, x), for a = ``input`` and
    x = ``other``. Differentiable with respect to ``other`` only.
    """
    return _binary(Igamma, input, other, False)


def igammac(input: Tensor, other: Tensor) -> Tensor:
    """The regularized upper incomplete gamma function Q(a, x) = 1 - P(a, x), for a = ``input``
    and x = ``other``. Differentiable with respect to ``other`` only.
    """
    return _binary(Igamma, input, other, True)


gammainc, gammaincc = igamma, igammac


# What ``_ev`` calls during double backward (scipy's names -> ember's differentiable ops).
_TENSOR_SPECIAL = SimpleNamespace(
    gammaln=lgamma,
    psi=digamma,
    polygamma=polygamma,
    erf=erf,
    erfc=erfc,
    erfinv=erfinv,
    erfcx=erfcx,
    ndtr=ndtr,
    log_ndtr=log_ndtr,
    ndtri=ndtri,
    i0=i0,
    i0e=i0e,
    i1=i1,
    i1e=i1e,
    entr=entr,
    xlogy=xlogy,
    xlog1py=xlog1py,
    zeta=zeta,
    gammainc=igamma,
    gammaincc=igammac,
)
