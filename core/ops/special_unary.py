"""Special functions of one tensor with gradients (``torch.special`` and their ``torch.*``
names): lgamma, digamma, polygamma, the erf and ndtr families, Bessel i0/i1, logit, sinc,
entr, mvlgamma. Values and the backward formulas' special functions come from
:func:`special_eval._ev`, so double backward works too.
"""

from __future__ import annotations

import math

from ..autograd.function import Function
from ..tensor import Tensor
from ._docs import unary_doc
from .elementwise import _floatify, sigmoid
from .special_eval import _ev

_SQRT_PI = math.sqrt(math.pi)


_SQRT_2PI = math.sqrt(2 * math.pi)


class Lgamma(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _ev(ctx.xp, "gammaln", x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * _ev(ctx.xp, "psi", x)


class Digamma(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _ev(ctx.xp, "psi", x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * _ev(ctx.xp, "polygamma", 1, x)


class Polygamma(Function):
    @staticmethod
    def forward(ctx, x, n):
        ctx.save_for_backward(x)
        ctx.n = n
        return _ev(ctx.xp, "polygamma", n, x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * _ev(ctx.xp, "polygamma", ctx.n + 1, x), None


class Erf(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _ev(ctx.xp, "erf", x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (2 / _SQRT_PI) * ctx.xp.exp(-(x * x))


class Erfc(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _ev(ctx.xp, "erfc", x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (-2 / _SQRT_PI) * ctx.xp.exp(-(x * x))


class Erfinv(Function):
    @staticmethod
    def forward(ctx, x):
        out = _ev(ctx.xp, "erfinv", x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad * (_SQRT_PI / 2) * ctx.xp.exp(out * out)


class Erfcx(Function):
    @staticmethod
    def forward(ctx, x):
        out = _ev(ctx.xp, "erfcx", x)
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        return grad * (2 * x * out - 2 / _SQRT_PI)


class Ndtr(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _ev(ctx.xp, "ndtr", x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.xp.exp(x * x * -0.5) / _SQRT_2PI


class LogNdtr(Function):
    @staticmethod
    def forward(ctx, x):
        out = _ev(ctx.xp, "log_ndtr", x)
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        # pdf / cdf in log space: stays finite far in the left tail
        return grad * ctx.xp.exp(x * x * -0.5 - out) / _SQRT_2PI


class Ndtri(Function):
    @staticmethod
    def forward(ctx, x):
        out = _ev(ctx.xp, "ndtri", x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad * _SQRT_2PI * ctx.xp.exp(out * out * 0.5)


class I0(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _ev(ctx.xp, "i0", x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * _ev(ctx.xp, "i1", x)


class I0e(Function):
    @staticmethod
    def forward(ctx, x):
        out = _ev(ctx.xp, "i0e", x)
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        return grad * (_ev(ctx.xp, "i1e", x) - ctx.xp.sign(x) * out)


class I1(Function):
    @staticmethod
    def forward(ctx, x):
        out = _ev(ctx.xp, "i1", x)
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        xp = ctx.xp
        zero = x == 0
        safe = xp.where(zero, 1, x)  # no inf in the unused branch (its gradient would be nan)
        return grad * xp.where(zero, 0.5, _ev(xp, "i0", x) - out / safe)


class I1e(Function):
    @staticmethod
    def forward(ctx, x):
        out = _ev(ctx.xp, "i1e", x)
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        xp = ctx.xp
        zero = x == 0
        safe = xp.where(zero, 1, x)
        return grad * xp.where(zero, 0.5, _ev(xp, "i0e", x) - out * (xp.sign(x) + 1 / safe))


class Logit(Function):
    @staticmethod
    def forward(ctx, x, eps):
        ctx.save_for_backward(x)
        ctx.eps = eps
        z = x if eps is None else ctx.xp.clip(x, eps, 1 - eps)
        return ctx.xp.log(z / (1 - z))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        g = grad / (x * (1 - x))
        if ctx.eps is None:
            return g, None
        eps = ctx.eps
        return ctx.xp.where((x < eps) | (x > 1 - eps), 0 * g, g), None


class Sinc(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.sinc(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        xp = ctx.xp
        zero = x == 0
        px = math.pi * xp.where(zero, 1, x)
        d = (px * xp.cos(px) - xp.sin(px)) / (px * xp.where(zero, 1, x))
        return grad * xp.where(zero, 0, d)


class Entr(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _ev(ctx.xp, "entr", x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * -(1 + ctx.xp.log(x))


# ---- public functions ---------------------------------------------------------------------
def _unary(cls, name, summary: str):
    def op(input: Tensor) -> Tensor:
        return cls.apply(_floatify(input))

    op.__name__ = name
    op.__doc__ = unary_doc(summary)
    return op


lgamma = gammaln = _unary(
    Lgamma,
    "lgamma",
    "The natural logarithm of the absolute value of the gamma function, ln(abs(Gamma(x))).",
)


digamma = psi = _unary(Digamma, "digamma", "The digamma function, the derivative of ln Gamma(x).")


erf = _unary(
    Erf,
    "erf",
    "The error function erf(x) = 2/sqrt(pi) * integral from 0 to x of e^(-t^2) dt.",
)


erfc = _unary(Erfc, "erfc", "The complementary error function 1 - erf(x).")


erfinv = _unary(Erfinv, "erfinv", "The inverse error function, defined on (-1, 1).")


erfcx = _unary(Erfcx, "erfcx", "The scaled complementary error function e^(x^2) * erfc(x).")


ndtr = _unary(Ndtr, "ndtr", "The standard normal cumulative distribution function.")


log_ndtr = _unary(
    LogNdtr,
    "log_ndtr",
    "The logarithm of the standard normal CDF, accurate in the far left tail.",
)


ndtri = _unary(Ndtri, "ndtri", "The inverse of the standard normal CDF (the quantile function).")


i0 = _unary(I0, "i0", "The modified Bessel function of the first kind of order 0, I0(x).")


i0e = _unary(I0e, "i0e", "I0(x) scaled by e^-abs(x).")


i1 = _unary(I1, "i1", "The modified Bessel function of the first kind of order 1, I1(x).")


i1e = _unary(I1e, "i1e", "I1(x) scaled by e^-abs(x).")


sinc = _unary(Sinc, "sinc", "The normalized sinc function sin(pi x) / (pi x), 1 at 0.")


entr = _unary(Entr, "entr", "The elementwise entropy term -x ln(x): 0 at 0, -inf below 0.")


expit = sigmoid


def polygamma(n: int, input: Tensor) -> Tensor:
    """The ``n``-th derivative of the digamma function at ``input``.

    Args:
        n: the order, a non-negative integer (0 gives :func:`digamma`).
        input (Tensor): the points.
    """
    if n < 0:
        raise RuntimeError("polygamma(n, x) does not support negative n.")
    return Polygamma.apply(_floatify(input), int(n))


def logit(input: Tensor, eps: float | None = None) -> Tensor:
    """The log-odds ln(p / (1 - p)) of each element.

    Args:
        input (Tensor): probabilities.
        eps: clamp the input to ``[eps, 1 - eps]`` first (None: no clamping, so 0 and 1 give
            -inf and inf).
    """
    return Logit.apply(_floatify(input), None if eps is None else float(eps))


def mvlgamma(input: Tensor, p: int) -> Tensor:
    """Log of the multivariate gamma function of dimension ``p``."""
    if p < 1:
        raise RuntimeError("p has to be greater than or equal to 1")
    x = _floatify(input)
    if x.numel() and not bool((x._data > (p - 1) / 2).all()):
        raise RuntimeError(f"All elements must be greater than (p-1)/2 = {(p - 1) / 2}")
    out = lgamma(x)
    for i in range(1, p):
        out = out + lgamma(x - i / 2)
    return out + p * (p - 1) / 4 * math.log(math.pi)


multigammaln = mvlgamma
