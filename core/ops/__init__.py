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
# </sorting>
# <math>
# </math>
# <linalg_ext>
# </linalg_ext>
# <shape_ext>
# </shape_ext>
# <misc>
# </misc>

swapaxes = swapdims = transpose
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
__all__ = [_n for _n, _v in list(globals().items())
           if not _n.startswith("_") and callable(_v) and not isinstance(_v, _ModuleType)]
