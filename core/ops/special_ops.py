"""Special functions with gradients (``torch.special`` and their ``torch.*`` names).

The values come from ``scipy.special`` on CPU and ``cupyx.scipy.special`` on GPU; each backward
is written with ``ctx.xp`` and :func:`_ev`, which under ``create_graph=True`` calls these same
differentiable ops, so double backward works too. Where PyTorch defines no derivative (the
``input`` of ``igamma``, the ``self`` of ``zeta``) backward raises PyTorch's error.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from ..autograd.function import Function
from ..tensor import Tensor
from ._docs import unary_doc
from ._util import promote, raise_broadcast_error
from .elementwise import _floatify, sigmoid

_SQRT_PI = math.sqrt(math.pi)
_SQRT_2PI = math.sqrt(2 * math.pi)


def _special_module(xp):
    """scipy.special, cupyx.scipy.special, or None when ``xp`` is ember's tensor namespace."""
    if xp is np:
        import scipy.special

        return scipy.special
    if getattr(xp, "__name__", "") == "cupy":
        import cupyx.scipy.special

        return cupyx.scipy.special
    return None


def _ev(xp, name: str, *args):
    """Special function ``name`` (scipy's name) of raw arrays, in the dtype of its float array
    arguments; of tensors (through ember's differentiable ops) during double backward."""
    mod = _special_module(xp)
    if mod is None:
        return getattr(_TENSOR_SPECIAL, name)(*args)
    ref = next((a for a in reversed(args) if hasattr(a, "dtype") and a.dtype.kind in "fV"), None)
    dtype = ref.dtype if ref is not None else None
    if dtype is not None and dtype.kind == "V":  # bfloat16: scipy has no loop for it
        args = tuple(
            a.astype(np.float32) if hasattr(a, "dtype") and a.dtype == dtype else a for a in args
        )
    fn = getattr(mod, name, None)
    if fn is None:  # no GPU kernel for this one: evaluate on the host
        import scipy.special

        out = xp.asarray(
            getattr(scipy.special, name)(*(a.get() if hasattr(a, "get") else a for a in args))
        )
    else:
        out = fn(*args)
    out = xp.asarray(out)
    return out.astype(dtype, copy=False) if dtype is not None and out.dtype != dtype else out


def _not_implemented(name: str):
    raise NotImplementedError(f"the derivative for '{name}' is not implemented.")


# ---- unary ---------------------------------------------------------------------------------
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


# ---- binary --------------------------------------------------------------------------------
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
