"""The op families. Each public function here is also exported as ``ember.<name>``."""

from .compare import (
    allclose,
    bitwise_and,
    bitwise_not,
    bitwise_or,
    bitwise_xor,
    eq,
    equal,
    ge,
    gt,
    isclose,
    isfinite,
    isinf,
    isnan,
    le,
    logical_and,
    logical_not,
    logical_or,
    logical_xor,
    lt,
    ne,
)
from .convert import clone, contiguous
from .elementwise import (
    abs,
    add,
    ceil,
    clamp,
    cos,
    div,
    exp,
    expm1,
    floor,
    floor_divide,
    frac,
    lerp,
    log,
    log1p,
    maximum,
    minimum,
    mul,
    neg,
    pow,
    reciprocal,
    relu,
    remainder,
    round,
    rsqrt,
    rsub,
    sigmoid,
    sign,
    sin,
    sqrt,
    square,
    sub,
    tanh,
    trunc,
    where,
)
from .indexing import (
    argwhere,
    gather,
    getitem,
    index_add,
    index_select,
    masked_fill,
    masked_select,
    nonzero,
    nonzero_static,
    scatter,
    scatter_add,
    setitem,
    take_along_dim,
)
from .linalg import (
    addmm,
    baddbmm,
    bmm,
    dot,
    einsum,
    ger,
    linalg_norm,
    matmul,
    mm,
    mv,
    norm,
    outer,
    vector_norm,
)
from .reduction import (
    all,
    amax,
    amin,
    any,
    argmax,
    argmin,
    count_nonzero,
    cumprod,
    cumsum,
    logsumexp,
    max,
    mean,
    min,
    prod,
    std,
    std_mean,
    sum,
    var,
    var_mean,
)
from .shape import (
    broadcast_to,
    cat,
    chunk,
    concat,
    concatenate,
    expand,
    expand_as,
    flatten,
    flip,
    fliplr,
    flipud,
    hstack,
    movedim,
    narrow,
    pad,
    permute,
    repeat,
    reshape,
    reshape_as,
    roll,
    split,
    squeeze,
    stack,
    swapaxes,
    t,
    tensor_split,
    tile,
    transpose,
    tril,
    triu,
    unbind,
    unflatten,
    unsqueeze,
    view,
    view_as,
    vstack,
)

# ---- wave-2 families (one import block each; keep each family's block in its section) ----
# <sorting>
# isort: split
from .histograms import bincount, histc, histogram, histogramdd  # noqa: E402
from .scans import cummax, cummin, logcumsumexp  # noqa: E402
from .sets import bucketize, isin, searchsorted, unique, unique_consecutive  # noqa: E402
from .sorting import (  # noqa: E402
    argsort,
    kthvalue,
    median,
    mode,
    msort,
    nanmedian,
    sort,
    topk,
)
from .statistics import (  # noqa: E402
    aminmax,
    corrcoef,
    cov,
    cumulative_trapezoid,
    diff,
    dist,
    gradient,
    nanmean,
    nanquantile,
    nansum,
    quantile,
    renorm,
    trapezoid,
    trapz,
)

# isort: split
# </sorting>
# <math>
# isort: split
from .compare import greater, greater_equal, less, less_equal, not_equal  # noqa: E402
from .math_extra import *  # noqa: E402, F403  (integer math, aliases, torch.<name>_)
from .math_ops import (  # noqa: E402
    acos,
    acosh,
    arccos,
    arccosh,
    arcsin,
    arcsinh,
    arctan,
    arctan2,
    arctanh,
    asin,
    asinh,
    atan,
    atan2,
    atanh,
    copysign,
    cosh,
    exp2,
    fmax,
    fmin,
    fmod,
    heaviside,
    hypot,
    log2,
    log10,
    logaddexp,
    logaddexp2,
    nan_to_num,
    nextafter,
    sinh,
    tan,
)
from .special_ops import (  # noqa: E402
    digamma,
    erf,
    erfc,
    erfinv,
    i0,
    igamma,
    igammac,
    lgamma,
    logit,
    mvlgamma,
    polygamma,
    sinc,
    xlogy,
)

# isort: split
# </math>
# <linalg_ext>
from .complex_ops import (
    adjoint,
    angle,
    complex,
    conj,
    conj_physical,
    imag,
    is_complex,
    is_conj,
    is_neg,
    polar,
    real,
    resolve_conj,
    resolve_neg,
    view_as_complex,
    view_as_real,
)
from .decomp import torch_cholesky as cholesky
from .decomp import torch_qr as qr
from .decomp import torch_svd as svd
from .lu_ops import geqrf, lu_unpack, orgqr, ormqr
from .lu_ops import torch_lu as lu
from .lu_ops import torch_lu_solve as lu_solve
from .matrix_ops import _torch_slogdet as slogdet
from .matrix_ops import (
    cholesky_inverse,
    cholesky_solve,
    det,
    logdet,
    matrix_exp,
    matrix_power,
    pinverse,
    triangular_solve,
)
from .matrix_ops import inv as inverse
from .matrix_products import (
    addbmm,
    addmv,
    addmv_,
    addr,
    chain_matmul,
    conj_physical_,
    cross,
    inner,
    kron,
    nuclear_norm,
    tensordot,
    trace,
    vdot,
)
from .spectral import istft, lobpcg, pca_lowrank, stft, svd_lowrank

# isort: split
# </linalg_ext>
# <shape_ext>
from .indexing_ext import (
    index_copy,
    index_fill,
    index_put,
    index_put_,
    index_reduce,
    masked_scatter,
    put,
    scatter_reduce,
    take,
    unravel_index,
)
from .shape_ext import (
    atleast_1d,
    atleast_2d,
    atleast_3d,
    block_diag,
    broadcast_shapes,
    broadcast_tensors,
    cartesian_prod,
    column_stack,
    combinations,
    dsplit,
    dstack,
    hsplit,
    meshgrid,
    narrow_copy,
    ravel,
    repeat_interleave,
    rot90,
    row_stack,
    select,
    select_scatter,
    slice_scatter,
    split_with_sizes,
    unsafe_chunk,
    unsafe_split,
    unsafe_split_with_sizes,
    vander,
    vsplit,
)
from .shape_ext_views import (
    as_strided,
    as_strided_,
    as_strided_scatter,
    diag,
    diag_embed,
    diagflat,
    diagonal,
    diagonal_scatter,
)
from .windows import (
    bartlett_window,
    blackman_window,
    hamming_window,
    hann_window,
    kaiser_window,
)

# </shape_ext>
# <misc>
# </misc>

swapdims = transpose
clip = clamp
true_divide = divide = div
multiply = mul
subtract = sub
negative = neg
absolute = abs
moveaxis = movedim

from types import ModuleType as _ModuleType  # noqa: E402

# The public op functions (what ``from ember.ops import *`` and ``ember.<name>`` export); the
# family submodules themselves stay out, so ``ember.linalg`` is not shadowed by ``ops.linalg``.
__all__ = [
    _n
    for _n, _v in list(globals().items())
    if not _n.startswith("_") and callable(_v) and not isinstance(_v, _ModuleType)
]


class _LoadLibraryError(OSError, RuntimeError):
    """An ``OSError`` as torch's failed load is (code guards optional kernels with ``except
    OSError``), and a ``RuntimeError`` for ember's callers."""


def load_library(path: str) -> None:
    """``torch.ops.load_library``: ember cannot load compiled operator libraries."""
    raise _LoadLibraryError(
        f"ember.ops.load_library({path!r}): ember cannot load compiled (C++/CUDA) operator "
        "libraries; wrap the kernel in Python with ember.library.custom_op (docs/custom_ops.md)"
    )


def __getattr__(name: str):
    # Reached only for names this package does not hold (never for a real op or submodule):
    # ``ember.ops.<namespace>`` of custom operators and ``ember.ops.aten`` (core/library/).
    import builtins
    import sys

    lib = sys.modules.get("ember.library._custom_op")
    if not name.isidentifier() or (
        # private probes (hasattr(ops, "_ember_out_wrapped")) are not namespaces, unless an
        # operator was defined in that namespace
        name.startswith("_")
        and name != "_c10d_functional"  # torch's native functional collectives (torchao)
        # (builtins.any: this module's ``any`` is the tensor op)
        and (lib is None or not builtins.any(q.startswith(name + "::") for q in lib.OPS))
    ):
        raise AttributeError(f"module 'ember.ops' has no attribute {name!r}")
    import importlib
    import importlib.util

    # ``from ..ops import nn_ops`` reaches here before the submodule is imported: never shadow it
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    from ..library._namespace import namespace

    ns = globals()[name] = namespace(name)  # later lookups are plain attribute reads
    return ns
