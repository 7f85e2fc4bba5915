"""Batching rules of the core op families, table-driven (see ``_vmap_tensor.py``). The generic
rule kinds (elementwise, passthrough, dim_op) live in ``_vmap_generic`` and are re-exported
here; this module holds the shape-op rules, the tables and ``install``.

A rule receives the original callable and the call's arguments (logical: as the user wrote
them for one sample) and makes one call of the original on physical tensors:

- elementwise / broadcasting ops: align the batch dims of every tensor argument and pad each
  sample to the same rank, then call the op (NumPy broadcasting does the rest);
- ops taking ``dim``: shift the dim(s) past the batch dims (a full reduction, ``dim=None``,
  flattens each sample first);
- shape ops: rewrite sizes and dims to the physical layout;
- the matmul family: align and pad to matmul's broadcasting batch dims.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any  # noqa: F401

from ..tensor import Tensor  # noqa: F401
from ._vmap_dispatch import RULES
from ._vmap_generic import (  # noqa: F401  (re-exported: every name stays importable here)
    _ABSENT,
    _batch_shape,
    _map_tensors,
    _shift,
    _tensor_args,
    _wrap_dim,
    dim_op,
    elementwise,
    passthrough,
)
from ._vmap_tensor import (  # noqa: F401
    BatchedTensor,
    align,
    is_batched,
    levels_of,
    merge_levels,
    unwrapped,
    wrap,
)


# ---- shape ops ---------------------------------------------------------------------------
def _sizes(args: tuple) -> tuple:
    """``f(x, 2, 3)`` or ``f(x, (2, 3))``: the sizes as a tuple."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    return tuple(args)


def _one(fn: Callable) -> Callable:
    """A rule from ``fn(physical x, k, logical ndim, batch shape, *rest, **kw)`` for single
    batched-input shape ops."""

    def rule(orig, args, kwargs):
        x = args[0]
        if not is_batched(x):
            raise RuntimeError(
                f"vmap: {getattr(orig, '__name__', orig)} got a batched "
                "argument other than its input; not supported"
            )
        levels = levels_of(x)
        k, nd, batch = len(levels), x.dim(), _batch_shape(x)
        with unwrapped(x):
            out = fn(x, k, nd, batch, *args[1:], **kwargs)
        return wrap(out, levels)

    return rule


def _reshape(p, k, nd, batch, *shape):
    return p.reshape(batch + _sizes(shape))


def _as(rule: Callable) -> Callable:
    """``view_as(x, other)``-style rules: only ``other``'s logical shape matters (read before
    ``x`` is unwrapped: ``other`` may be ``x`` itself)."""

    def as_rule(orig, args, kwargs):
        other = args[1] if len(args) > 1 else kwargs.pop("other")
        return rule(orig, (args[0], tuple(other.shape)), {})

    return as_rule


def _permute(p, k, nd, batch, *dims):
    dims = _sizes(dims)
    if len(dims) != nd:
        raise RuntimeError(
            f"permute(sparse_coo): number of dimensions in the tensor input does "
            f"not match the length of the desired ordering of dimensions i.e. "
            f"input.dim() = {nd} is not equal to len(dims) = {len(dims)}"
        )
    return p.permute(tuple(range(k)) + tuple(_wrap_dim(d, nd) + k for d in dims))


def _transpose(p, k, nd, batch, d0, d1):
    return p.transpose(_wrap_dim(d0, nd) + k, _wrap_dim(d1, nd) + k) if nd else p


def _t(p, k, nd, batch):
    if nd > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {nd}D")
    return p.transpose(k, k + 1) if nd == 2 else p


def _mT(p, k, nd, batch):
    return p.transpose(-2, -1)


def _expand(p, k, nd, batch, *sizes):
    sizes = _sizes(sizes)
    if len(sizes) < nd:
        raise RuntimeError(
            f"expand: the number of sizes provided ({len(sizes)}) must be greater "
            f"or equal to the number of dimensions in the tensor ({nd})"
        )
    p = p.reshape(batch + (1,) * (len(sizes) - nd) + tuple(p.shape[k:]))
    return p.expand(batch + tuple(sizes))


def _squeeze(p, k, nd, batch, dim=None):
    shape = tuple(p.shape[k:])
    if dim is None:
        dims = tuple(i for i, n in enumerate(shape) if n == 1)
    else:
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        dims = tuple(d for d in (_wrap_dim(d, nd) for d in dims) if nd and shape[d] == 1)
    return p.reshape(batch + tuple(n for i, n in enumerate(shape) if i not in dims))


def _unsqueeze(p, k, nd, batch, dim):
    return p.unsqueeze(_wrap_dim(dim, nd + 1) + k)


def _flatten(p, k, nd, batch, start_dim=0, end_dim=-1):
    if nd == 0:
        return p.reshape(batch + (1,))
    return p.flatten(_wrap_dim(start_dim, nd) + k, _wrap_dim(end_dim, nd) + k)


def _unflatten(p, k, nd, batch, dim, sizes):
    return p.unflatten(_wrap_dim(dim, nd) + k, sizes)


def _movedim(p, k, nd, batch, source, destination):
    return p.movedim(_shift(source, nd, k), _shift(destination, nd, k))


def _repeat(p, k, nd, batch, *sizes):
    sizes = _sizes(sizes)
    p = p.reshape(batch + (1,) * (len(sizes) - nd) + tuple(p.shape[k:]))
    return p.repeat((1,) * k + tuple(sizes))


def _tile(p, k, nd, batch, dims):
    dims = tuple(dims)
    dims = (1,) * (nd - len(dims)) + dims
    return _repeat(p, k, nd, batch, *dims)


def _roll(p, k, nd, batch, shifts, dims=None):
    if dims is None:
        return p.reshape(batch + (-1,)).roll(shifts, k).reshape(p.shape)
    return p.roll(shifts, _shift(dims, nd, k))


def _diagonal(p, k, nd, batch, offset=0, dim1=0, dim2=1):
    return p.diagonal(offset, _wrap_dim(dim1, nd) + k, _wrap_dim(dim2, nd) + k)


def _trace(p, k, nd, batch):
    return p.diagonal(0, k, k + 1).sum(-1)


def _tri(name):
    def fn(p, k, nd, batch, diagonal=0):
        return getattr(p, name)(diagonal)

    return fn


def _pad(p, k, nd, batch, pad, mode="constant", value=None):
    from ..nn import functional as F

    F = getattr(F.pad, "__wrapped__", F.pad)
    if mode != "constant" and nd < 2 + len(pad) // 2:
        return F(p, pad, mode, value)  # a sample without batch dim: the batch is N
    if mode != "constant":
        q = p.reshape(
            (-1,) + tuple(p.shape[k + 1 :])
            if nd > len(pad) // 2 + 1
            else (-1,) + tuple(p.shape[k:])
        )
        out = F(q, pad, mode, value)
        return out.reshape(
            batch + tuple(p.shape[k : k + nd - len(out.shape) + 1]) + tuple(out.shape[1:])
        )
    return F(p, pad, mode, value)


# ---- the table -------------------------------------------------------------------------------
ELEMENTWISE = """
abs absolute acos acosh add addcdiv addcmul angle arccos arccosh arcsin arcsinh arctan arctan2
arctanh asin asinh atan atan2 atanh bitwise_and bitwise_left_shift bitwise_not bitwise_or
bitwise_right_shift bitwise_xor ceil clamp clamp_max clamp_min clip copysign cos cosh deg2rad
digamma div divide eq erf erfc erfinv exp exp2 expm1 fix float_power floor floor_divide fmax
fmin fmod frac frexp gcd ge greater greater_equal gt heaviside hypot i0 igamma igammac imag
isfinite isinf isnan isneginf isposinf isreal lcm ldexp le lerp less less_equal lgamma log log10
log1p log2 logaddexp logaddexp2 logical_and logical_not logical_or logical_xor logit lt
masked_fill maximum minimum mul multiply mvlgamma nan_to_num ne neg negative nextafter not_equal
polygamma positive pow rad2deg real reciprocal remainder round rsqrt rsub sgn sigmoid sign
signbit sin sinc sinh sqrt square sub subtract tan tanh true_divide trunc where xlogy
relu relu6 gelu silu mish elu selu celu leaky_relu hardtanh hardsigmoid hardswish softplus
softsign softshrink hardshrink tanhshrink logsigmoid threshold conj conj_physical resolve_conj
resolve_neg isclose sinc xlog1py expit ndtr ndtri log_ndtr erfcx i0e i1 i1e entr zeta gammaln
gammainc gammaincc psi exp2 bessel_j0 bessel_j1 bessel_y0 bessel_y1 modified_bessel_i0
modified_bessel_i1 modified_bessel_k0 modified_bessel_k1 scaled_modified_bessel_k0
scaled_modified_bessel_k1 spherical_bessel_j0 airy_ai multigammaln
__add__ __radd__ __sub__ __rsub__ __mul__ __rmul__ __truediv__ __rtruediv__ __floordiv__
__rfloordiv__ __mod__ __rmod__ __pow__ __rpow__ __neg__ __pos__ __abs__ __invert__ __and__
__rand__ __or__ __ror__ __xor__ __rxor__ __lt__ __le__ __gt__ __ge__ __eq__ __ne__
__lshift__ __rshift__
""".split()

PASSTHROUGH = """
clone detach contiguous float double half bfloat16 int long short bool byte char to type cpu
cuda ones_like zeros_like empty_like full_like zero_ fill_ requires_grad_ cfloat cdouble
""".split()

# name -> (position of dim, keyword, default when a dim, extra)
DIM_OPS: dict[str, tuple] = {
    "sum": (1, "dim", _ABSENT),
    "mean": (1, "dim", _ABSENT),
    "nansum": (1, "dim", _ABSENT),
    "nanmean": (1, "dim", _ABSENT),
    "prod": (1, "dim", _ABSENT),
    "amax": (1, "dim", _ABSENT),
    "amin": (1, "dim", _ABSENT),
    "max": (1, "dim", _ABSENT),
    "min": (1, "dim", _ABSENT),
    "argmax": (1, "dim", _ABSENT),
    "argmin": (1, "dim", _ABSENT),
    "all": (1, "dim", _ABSENT),
    "any": (1, "dim", _ABSENT),
    "std": (1, "dim", _ABSENT),
    "var": (1, "dim", _ABSENT),
    "std_mean": (1, "dim", _ABSENT),
    "var_mean": (1, "dim", _ABSENT),
    "count_nonzero": (1, "dim", _ABSENT),
    "median": (1, "dim", _ABSENT),
    "nanmedian": (1, "dim", _ABSENT),
    "logsumexp": (1, "dim", _ABSENT),
    "norm": (2, "dim", _ABSENT),
    "vector_norm": (2, "dim", _ABSENT),
    "softmax": (1, "dim", _ABSENT),
    "log_softmax": (1, "dim", _ABSENT),
    "softmin": (1, "dim", _ABSENT),
    "cumsum": (1, "dim", _ABSENT),
    "cumprod": (1, "dim", _ABSENT),
    "cummax": (1, "dim", _ABSENT),
    "cummin": (1, "dim", _ABSENT),
    "logcumsumexp": (1, "dim", _ABSENT),
    "mode": (1, "dim", -1),
    "sort": (1, "dim", -1),
    "argsort": (1, "dim", -1),
    "topk": (2, "dim", -1),
    "kthvalue": (2, "dim", -1),
    "diff": (2, "dim", -1),
    "flip": (1, "dims", _ABSENT),
    "unbind": (1, "dim", 0),
    "split": (2, "dim", 0),
    "chunk": (2, "dim", 0),
    "tensor_split": (2, "dim", 0),
    "narrow": (1, "dim", _ABSENT),
    "select": (1, "dim", _ABSENT),
    "aminmax": (9, "dim", _ABSENT),
    "normalize": (2, "dim", 1),
    "glu": (1, "dim", -1),
}

SHAPE_OPS: dict[str, Callable] = {
    "reshape": _reshape,
    "view": _reshape,
    "permute": _permute,
    "transpose": _transpose,
    "swapaxes": _transpose,
    "swapdims": _transpose,
    "t": _t,
    "adjoint": _mT,
    "expand": _expand,
    "broadcast_to": _expand,
    "squeeze": _squeeze,
    "unsqueeze": _unsqueeze,
    "flatten": _flatten,
    "ravel": _flatten,
    "unflatten": _unflatten,
    "movedim": _movedim,
    "moveaxis": _movedim,
    "repeat": _repeat,
    "tile": _tile,
    "roll": _roll,
    "diagonal": _diagonal,
    "trace": _trace,
    "tril": _tri("tril"),
    "triu": _tri("triu"),
    "pad": _pad,
}


def _new_factory(orig, args, kwargs):
    """``x.new_ones(size)`` and friends: the result depends only on ``x``'s dtype and device,
    so it is one unbatched tensor of the logical size (functorch gives the same values)."""
    with unwrapped(args, kwargs):
        return orig(*args, **kwargs)


def _ember():
    import ember

    return ember


def _max_min_fallback(orig, args, kwargs):
    return elementwise(orig, args, kwargs)


def install() -> None:
    for name in ELEMENTWISE:
        RULES[name] = elementwise
    for name in PASSTHROUGH:
        RULES[name] = passthrough
    for name, (pos, kw, default) in DIM_OPS.items():
        fb = _max_min_fallback if name in ("max", "min") else None
        RULES[name] = dim_op(
            pos, kw, default, fallback=fb, values_only=name in ("max", "min", "median", "nanmedian")
        )
    RULES["unsqueeze"] = _one(_unsqueeze)
    for name, fn in SHAPE_OPS.items():
        RULES[name] = _one(fn)
    for name in ("new_ones", "new_zeros", "new_empty", "new_full"):
        RULES[name] = _new_factory
    RULES["view_as"] = RULES["reshape_as"] = _as(_one(_reshape))
    RULES["expand_as"] = _as(_one(_expand))
    # properties of the logical view
    BatchedTensor.T = property(lambda self: self.permute(*range(self.dim() - 1, -1, -1)))
    BatchedTensor.mT = property(lambda self: self.transpose(-2, -1))
    BatchedTensor.data = property(lambda self: self.detach())
    BatchedTensor.real = property(lambda self: _ember().real(self))
    BatchedTensor.imag = property(lambda self: _ember().imag(self))
