"""Reductions with ``dim``/``keepdim`` (numpy's ``axis``/``keepdims`` accepted as aliases), split
by family (every name stays importable from here).

- ``reduction_sum``: sum/mean/prod, logsumexp, cumsum/cumprod;
- ``reduction_minmax``: max/min/amax/amin, argmax/argmin, all/any/count_nonzero;
- ``reduction_stats``: var/std and var_mean/std_mean.
"""

from __future__ import annotations

from .reduction_minmax import (  # noqa: F401
    AmaxAmin,
    MaxMin,
    _arg,
    _bool_reduce,
    _max_min,
    _xp,
    all,
    amax,
    amin,
    any,
    argmax,
    argmin,
    count_nonzero,
    max,
    max_result,
    min,
    min_result,
)
from .reduction_stats import (  # noqa: F401
    Var,
    std,
    std_mean,
    var,
    var_mean,
)
from .reduction_sum import (  # noqa: F401
    CumProd,
    CumSum,
    LogSumExp,
    Mean,
    Prod,
    Sum,
    _cumprod_grad_scan,
    _dims_kw,
    _expand_back,
    _scan,
    _sum_dtype,
    cumprod,
    cumsum,
    logsumexp,
    mean,
    prod,
    sum,
)
