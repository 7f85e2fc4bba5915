"""Special functions with gradients (``torch.special`` and their ``torch.*`` names), split by
family (every name stays importable from here).

- ``special_eval``: ``_ev``, the evaluation through scipy.special (CPU) or cupyx (GPU), or
  ember's own ops during double backward;
- ``special_unary``: the functions of one tensor (lgamma, digamma, polygamma, erf family, ndtr
  family, Bessel i0/i1, logit, sinc, entr, mvlgamma);
- ``special_binary``: the functions of two tensors (xlogy, xlog1py, zeta, igamma/igammac) and
  ``_TENSOR_SPECIAL``, the table ``_ev`` uses during double backward.
"""

from __future__ import annotations

from .special_binary import (  # noqa: F401
    _TENSOR_SPECIAL,
    Igamma,
    Xlog1py,
    Xlogy,
    Zeta,
    _binary,
    gammainc,
    gammaincc,
    igamma,
    igammac,
    xlog1py,
    xlogy,
    zeta,
)
from .special_eval import (  # noqa: F401
    _ev,
    _not_implemented,
    _special_module,
)
from .special_unary import (  # noqa: F401
    _SQRT_2PI,
    _SQRT_PI,
    I0,
    I1,
    Digamma,
    Entr,
    Erf,
    Erfc,
    Erfcx,
    Erfinv,
    I0e,
    I1e,
    Lgamma,
    Logit,
    LogNdtr,
    Ndtr,
    Ndtri,
    Polygamma,
    Sinc,
    _unary,
    digamma,
    entr,
    erf,
    erfc,
    erfcx,
    erfinv,
    expit,
    gammaln,
    i0,
    i0e,
    i1,
    i1e,
    lgamma,
    log_ndtr,
    logit,
    multigammaln,
    mvlgamma,
    ndtr,
    ndtri,
    polygamma,
    psi,
    sinc,
)
