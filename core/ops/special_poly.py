"""``torch.special`` functions PyTorch gives no gradient: Bessel and Airy functions and the
classical orthogonal polynomials. Their outputs never require grad (as in PyTorch), so they
skip the Function machinery.
"""

from __future__ import annotations

from ..backend.dtype import get_default_dtype
from ..tensor import Tensor
from ._docs import polynomial_doc, unary_doc
from ._util import result_dtype
from .function_free import _xp_of
from .special_ops import _ev


def _float_np_dtype(*operands):
    d = result_dtype(*operands)
    return (d if d.is_floating_point else get_default_dtype()).np


def _values(x, dtype, xp):
    return xp.asarray(x._data if isinstance(x, Tensor) else x).astype(dtype, copy=False)


def _unary(scipy_name: str, name: str, summary: str):
    def op(input: Tensor) -> Tensor:
        xp = _xp_of(input._data)
        x = _values(input, _float_np_dtype(input), xp)
        return Tensor._wrap(_ev(xp, scipy_name, x))

    op.__name__ = name
    op.__doc__ = unary_doc(summary, grad="No gradient is recorded.")
    return op


bessel_j0 = _unary("j0", "bessel_j0", "The Bessel function of the first kind of order 0, J0(x).")
bessel_j1 = _unary("j1", "bessel_j1", "The Bessel function of the first kind of order 1, J1(x).")
bessel_y0 = _unary("y0", "bessel_y0", "The Bessel function of the second kind of order 0, Y0(x).")
bessel_y1 = _unary("y1", "bessel_y1", "The Bessel function of the second kind of order 1, Y1(x).")
modified_bessel_i0 = _unary(
    "i0", "modified_bessel_i0", "The modified Bessel function of the first kind of order 0, I0(x)."
)
modified_bessel_i1 = _unary(
    "i1", "modified_bessel_i1", "The modified Bessel function of the first kind of order 1, I1(x)."
)
modified_bessel_k0 = _unary(
    "k0", "modified_bessel_k0", "The modified Bessel function of the second kind of order 0, K0(x)."
)
modified_bessel_k1 = _unary(
    "k1", "modified_bessel_k1", "The modified Bessel function of the second kind of order 1, K1(x)."
)
scaled_modified_bessel_k0 = _unary("k0e", "scaled_modified_bessel_k0", "K0(x) scaled by e^x.")
scaled_modified_bessel_k1 = _unary("k1e", "scaled_modified_bessel_k1", "K1(x) scaled by e^x.")


def airy_ai(input: Tensor) -> Tensor:
    """The Airy function Ai(x) of each element. No gradient is recorded."""
    xp = _xp_of(input._data)
    x = _values(input, _float_np_dtype(input), xp)
    from .special_ops import _special_module

    mod = _special_module(xp)
    if hasattr(mod, "airy"):
        out = mod.airy(x)[0]
    else:  # no GPU Airy kernel: evaluate on the host
        import scipy.special

        out = xp.asarray(scipy.special.airy(x.get())[0])
    return Tensor._wrap(xp.asarray(out).astype(x.dtype, copy=False))


def spherical_bessel_j0(input: Tensor) -> Tensor:
    """sin(x) / x, and 1 at 0."""
    xp = _xp_of(input._data)
    x = _values(input, _float_np_dtype(input), xp)
    zero = x == 0
    safe = xp.where(zero, 1, x)
    return Tensor._wrap(xp.asarray(xp.where(zero, 1, xp.sin(safe) / safe)).astype(x.dtype))


# ---- orthogonal polynomials ------------------------------------------------------------------
# Each is (P_0, P_1, step) with P_{k+1} = step(k, x, P_k, P_{k-1}); degree n is taken per
# element (truncated to an integer, as PyTorch does) and negative degrees give 0.
_POLYS = {
    "chebyshev_polynomial_t": (lambda x: x, lambda k, x, p, q: 2 * x * p - q),
    "chebyshev_polynomial_u": (lambda x: 2 * x, lambda k, x, p, q: 2 * x * p - q),
    "chebyshev_polynomial_v": (lambda x: 2 * x - 1, lambda k, x, p, q: 2 * x * p - q),
    "chebyshev_polynomial_w": (lambda x: 2 * x + 1, lambda k, x, p, q: 2 * x * p - q),
    "hermite_polynomial_h": (lambda x: 2 * x, lambda k, x, p, q: 2 * x * p - 2 * k * q),
    "hermite_polynomial_he": (lambda x: x, lambda k, x, p, q: x * p - k * q),
    "laguerre_polynomial_l": (
        lambda x: 1 - x,
        lambda k, x, p, q: ((2 * k + 1 - x) * p - k * q) / (k + 1),
    ),
    "legendre_polynomial_p": (
        lambda x: x,
        lambda k, x, p, q: ((2 * k + 1) * x * p - k * q) / (k + 1),
    ),
}


def _polynomial(name: str, shifted: bool = False):
    first, step = _POLYS[name]

    def op(input, n) -> Tensor:
        t = input if isinstance(input, Tensor) else n
        xp = _xp_of(t._data)
        dtype = _float_np_dtype(input, n)
        x = _values(input, dtype, xp)
        if shifted:  # the shifted polynomials live on [0, 1]: P*(x) = P(2x - 1)
            x = 2 * x - 1
        deg = xp.trunc(_values(n, dtype, xp))
        x, deg = xp.broadcast_arrays(x, deg)
        result = xp.where(deg == 0, xp.ones_like(x), xp.zeros_like(x))
        top = int(deg.max()) if deg.size else 0
        prev, cur = xp.ones_like(x), first(x)
        for k in range(1, top + 1):
            result = xp.where(deg == k, cur, result)
            prev, cur = cur, step(k, x, cur, prev)
        return Tensor._wrap(xp.asarray(result, dtype=dtype))

    op.__name__ = ("shifted_" if shifted else "") + name
    op.__doc__ = polynomial_doc(_POLY_TITLES[name], shifted)
    return op


# The docstring titles of the polynomial families.
_POLY_TITLES = {
    "chebyshev_polynomial_t": "Chebyshev polynomial of the first kind T_n(x)",
    "chebyshev_polynomial_u": "Chebyshev polynomial of the second kind U_n(x)",
    "chebyshev_polynomial_v": "Chebyshev polynomial of the third kind V_n(x)",
    "chebyshev_polynomial_w": "Chebyshev polynomial of the fourth kind W_n(x)",
    "hermite_polynomial_h": "physicists' Hermite polynomial H_n(x)",
    "hermite_polynomial_he": "probabilists' Hermite polynomial He_n(x)",
    "laguerre_polynomial_l": "Laguerre polynomial L_n(x)",
    "legendre_polynomial_p": "Legendre polynomial P_n(x)",
}


chebyshev_polynomial_t = _polynomial("chebyshev_polynomial_t")
chebyshev_polynomial_u = _polynomial("chebyshev_polynomial_u")
chebyshev_polynomial_v = _polynomial("chebyshev_polynomial_v")
chebyshev_polynomial_w = _polynomial("chebyshev_polynomial_w")
shifted_chebyshev_polynomial_t = _polynomial("chebyshev_polynomial_t", shifted=True)
shifted_chebyshev_polynomial_u = _polynomial("chebyshev_polynomial_u", shifted=True)
shifted_chebyshev_polynomial_v = _polynomial("chebyshev_polynomial_v", shifted=True)
shifted_chebyshev_polynomial_w = _polynomial("chebyshev_polynomial_w", shifted=True)
hermite_polynomial_h = _polynomial("hermite_polynomial_h")
hermite_polynomial_he = _polynomial("hermite_polynomial_he")
laguerre_polynomial_l = _polynomial("laguerre_polynomial_l")
legendre_polynomial_p = _polynomial("legendre_polynomial_p")
