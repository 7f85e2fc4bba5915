"""``ember.special``: PyTorch's ``torch.special`` namespace.

The functions live in ``ember.ops`` (special_ops, special_poly, elementwise, math_ops); this
module gives them their ``torch.special`` names.
"""

from __future__ import annotations

from .ops.elementwise import expm1, log1p, round
from .ops.elementwise import sigmoid as expit
from .ops.math_ops import exp2
from .ops.reduction import logsumexp
from .ops.special_ops import (
    digamma,
    entr,
    erf,
    erfc,
    erfcx,
    erfinv,
    gammainc,
    gammaincc,
    gammaln,
    i0,
    i0e,
    i1,
    i1e,
    log_ndtr,
    logit,
    multigammaln,
    ndtr,
    ndtri,
    polygamma,
    psi,
    sinc,
    xlog1py,
    xlogy,
    zeta,
)
from .ops.special_poly import (
    airy_ai,
    bessel_j0,
    bessel_j1,
    bessel_y0,
    bessel_y1,
    chebyshev_polynomial_t,
    chebyshev_polynomial_u,
    chebyshev_polynomial_v,
    chebyshev_polynomial_w,
    hermite_polynomial_h,
    hermite_polynomial_he,
    laguerre_polynomial_l,
    legendre_polynomial_p,
    modified_bessel_i0,
    modified_bessel_i1,
    modified_bessel_k0,
    modified_bessel_k1,
    scaled_modified_bessel_k0,
    scaled_modified_bessel_k1,
    shifted_chebyshev_polynomial_t,
    shifted_chebyshev_polynomial_u,
    shifted_chebyshev_polynomial_v,
    shifted_chebyshev_polynomial_w,
    spherical_bessel_j0,
)


def softmax(input, dim: int, *, dtype=None):
    """Softmax over ``dim``: e^x / sum(e^x), computed stably.

    Args:
        input (Tensor): the input.
        dim: the dimension to normalize over.
        dtype: cast the input to this dtype first.
    """
    from .nn import functional  # (nn loads lazily)

    return functional.softmax(input, dim, dtype=dtype)


def log_softmax(input, dim: int, *, dtype=None):
    """The logarithm of :func:`softmax` over ``dim``, computed directly (x - logsumexp(x)).

    Args:
        input (Tensor): the input.
        dim: the dimension to normalize over.
        dtype: cast the input to this dtype first.
    """
    from .nn import functional

    return functional.log_softmax(input, dim, dtype=dtype)


__all__ = [
    "airy_ai",
    "bessel_j0",
    "bessel_j1",
    "bessel_y0",
    "bessel_y1",
    "chebyshev_polynomial_t",
    "chebyshev_polynomial_u",
    "chebyshev_polynomial_v",
    "chebyshev_polynomial_w",
    "digamma",
    "entr",
    "erf",
    "erfc",
    "erfcx",
    "erfinv",
    "exp2",
    "expit",
    "expm1",
    "gammainc",
    "gammaincc",
    "gammaln",
    "hermite_polynomial_h",
    "hermite_polynomial_he",
    "i0",
    "i0e",
    "i1",
    "i1e",
    "laguerre_polynomial_l",
    "legendre_polynomial_p",
    "log1p",
    "log_ndtr",
    "log_softmax",
    "logit",
    "logsumexp",
    "modified_bessel_i0",
    "modified_bessel_i1",
    "modified_bessel_k0",
    "modified_bessel_k1",
    "multigammaln",
    "ndtr",
    "ndtri",
    "polygamma",
    "psi",
    "round",
    "scaled_modified_bessel_k0",
    "scaled_modified_bessel_k1",
    "shifted_chebyshev_polynomial_t",
    "shifted_chebyshev_polynomial_u",
    "shifted_chebyshev_polynomial_v",
    "shifted_chebyshev_polynomial_w",
    "sinc",
    "softmax",
    "spherical_bessel_j0",
    "xlog1py",
    "xlogy",
    "zeta",
]


def _share_out_wrappers() -> None:
    """Where a name here is the same op as a top-level ember function that core/_out_arg.py
    gave an ``out=`` keyword, use that wrapper (``special.gammaln is ember.lgamma``, and
    ``out=`` works on both)."""
    import ember

    wrapped = {
        id(f._ember_out_wrapped): f
        for f in vars(ember).values()
        if hasattr(f, "_ember_out_wrapped")
    }
    g = globals()
    for name in __all__:
        w = wrapped.get(id(g.get(name)))
        if w is not None:
            g[name] = w


_share_out_wrappers()
