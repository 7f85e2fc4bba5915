"""Statistics built from differentiable ops: nansum, nanmean, aminmax, quantile, nanquantile,
diff, gradient, trapezoid/trapz, cumulative_trapezoid, cov, corrcoef, dist, renorm.

Each is a composition of ops that already have gradients (and double backward), so their
derivatives are PyTorch's without a Function of their own; what is found on raw arrays
(orders, ranks, coefficients) enters as constants.
"""

from __future__ import annotations

import builtins

import numpy as np

from .. import return_types
from ..backend.dtype import from_numpy_dtype, get_default_dtype
from ..backend.meta import is_meta
from ..tensor import Tensor
from ._util import result_dtype, scalar_type_name, wrap_dim
from .compare import isnan, logical_not, logical_xor
from .convert import to_dtype_op
from .elementwise import lerp, sqrt, where
from .function_free import _xp_of  # (meta arrays: the meta namespace)
from .linalg import matmul, vector_norm
from .reduction import amax, amin, cumsum, mean, sum
from .shape import cat, movedim, narrow, reshape, unsqueeze
from .sorting import _gather, argsort_raw


def _floating(t: Tensor) -> Tensor:
    return t if t._data.dtype.kind in "fcV" else to_dtype_op(t, get_default_dtype())


def _const(t: Tensor, array) -> Tensor:
    """A constant tensor of ``t``'s dtype and device from an array or number."""
    xp = _xp_of(t._data)
    return Tensor._wrap(xp.asarray(array, dtype=t._data.dtype))


# ---- NaN-aware reductions -----------------------------------------------------------------
def nansum(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """``sum`` treating NaN as zero."""
    x = where(isnan(input), 0.0, input) if input._data.dtype.kind in "fcV" else input
    return sum(x, dim, keepdim, dtype=dtype)


def nanmean(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """``mean`` of the non-NaN elements."""
    x = input if dtype is None else to_dtype_op(input, dtype)
    if x._data.dtype.kind not in "fcV":
        raise RuntimeError(
            "nanmean(): expected input to have floating point or complex dtype "
            f"but got {scalar_type_name(x)}"
        )
    count = sum(logical_not(isnan(x)), dim, keepdim)
    return nansum(x, dim, keepdim) / to_dtype_op(count, x.dtype)


def aminmax(input: Tensor, *, dim: int | None = None, keepdim: bool = False):
    """``(amin, amax)`` of ``input`` (over ``dim`` or all elements)."""
    if input._data.size == 0 and dim is None:
        raise RuntimeError(
            "aminmax(): cannot compute aminmax over an empty dimension as the "
            "operation has no identity."
        )
    if dim is None:
        lo, hi = amin(input), amax(input)
        if keepdim:
            shape = (1,) * input._data.ndim
            lo, hi = reshape(lo, shape), reshape(hi, shape)
    else:
        lo, hi = amin(input, dim, keepdim), amax(input, dim, keepdim)
    return return_types.aminmax(lo, hi)


# ---- quantiles ----------------------------------------------------------------------------
_INTERPOLATIONS = ("linear", "lower", "higher", "midpoint", "nearest")


def _quantile(input, q, dim, keepdim, interpolation, ignore_nan, name):
    if input._data.dtype.kind not in "f":
        raise RuntimeError(f"{name}() input tensor must be either float or double dtype")
    if interpolation not in _INTERPOLATIONS:
        raise RuntimeError(
            f"{name}() interpolation must be one of linear, lower, higher, "
            f"midpoint or nearest. Got {interpolation}"
        )
    xp = _xp_of(input._data)
    dt = input._data.dtype
    if isinstance(q, Tensor):
        if q._data.ndim > 1:
            raise RuntimeError(f"{name}() q must be a scalar or 1D tensor")
        if q._data.dtype != dt:
            raise RuntimeError(f"{name}() q tensor must be same dtype as the input tensor")
        scalar_q, qs = q._data.ndim == 0, xp.asarray(q._data).reshape(-1)
    else:
        scalar_q, qs = isinstance(q, (int, float)), np.asarray(q, dtype=dt).reshape(-1)
    # (a meta q has no values to check; numbers given for a meta input are checked)
    if qs.size and not is_meta(qs) and not bool(((qs >= 0) & (qs <= 1)).all()):
        bad = float(qs[~((qs >= 0) & (qs <= 1))][0])
        raise RuntimeError(f"{name}() q must be in the range [0, 1] but got {bad}")
    qs = xp.asarray(qs)
    ndim = input._data.ndim
    if dim is None:
        x, out_shape = reshape(input, (-1,)), ((1,) * ndim if keepdim else ())
    else:
        axis = wrap_dim(dim, ndim)
        x = movedim(input, axis, -1) if ndim else reshape(input, (1,))
        shape = input._data.shape
        out_shape = shape[:axis] + ((1,) if keepdim else ()) + shape[axis + 1 :] if ndim else ()
    d = x._data
    n = d.shape[-1]
    if n == 0:
        raise IndexError(f"{name}() input tensor must be non-empty")
    order = argsort_raw(xp, d, d.ndim - 1)
    valid = (n - xp.isnan(d).sum(axis=-1, keepdims=True)).astype(dt)
    if ignore_nan:  # the ranks among the non-NaN values; a slice of NaNs only gives NaN
        rank = qs * xp.maximum(valid - 1, 0)
    else:  # a slice with a NaN gives NaN: NaNs sort last, so point at the last element
        rank = xp.where(valid < n, n - 1, qs * (n - 1))
    if interpolation == "nearest":
        rank = xp.round(rank)
    elif interpolation == "lower":
        rank = xp.floor(rank)
    elif interpolation == "higher":
        rank = xp.ceil(rank)
    lo = xp.floor(rank).astype(np.int64)
    hi = xp.ceil(rank).astype(np.int64)
    below = _gather(x, x._data.ndim - 1, xp.take_along_axis(order, lo, -1))
    if interpolation in ("linear", "midpoint"):
        above = _gather(x, x._data.ndim - 1, xp.take_along_axis(order, hi, -1))
        weight = rank - lo if interpolation == "linear" else xp.full(rank.shape, 0.5, dt)
        below = lerp(below, above, _const(x, weight))
    # (..., nq) -> (nq, ...) with the reduced dim dropped or kept
    if scalar_q:
        return reshape(below, out_shape)
    return reshape(movedim(below, -1, 0), (qs.size,) + out_shape)


def quantile(
    input: Tensor,
    q,
    dim: int | None = None,
    keepdim: bool = False,
    *,
    interpolation: str = "linear",
) -> Tensor:
    """The ``q``-th quantiles of ``input`` along ``dim`` (all elements when None). A 1-D ``q``
    adds a leading dimension. Slices holding a NaN give NaN."""
    return _quantile(input, q, dim, keepdim, interpolation, False, "quantile")


def nanquantile(
    input: Tensor,
    q,
    dim: int | None = None,
    keepdim: bool = False,
    *,
    interpolation: str = "linear",
) -> Tensor:
    """``quantile`` ignoring NaNs."""
    return _quantile(input, q, dim, keepdim, interpolation, True, "nanquantile")


# ---- differences and integrals ------------------------------------------------------------
def _slice(x: Tensor, axis: int, start: int, stop: int) -> Tensor:
    n = x._data.shape[axis]
    start, stop = start % (n + 1) if start < 0 else start, stop if stop >= 0 else n + stop
    return narrow(x, axis, start, builtins.max(stop - start, 0))


def diff(
    input: Tensor,
    n: int = 1,
    dim: int = -1,
    prepend: Tensor | None = None,
    append: Tensor | None = None,
) -> Tensor:
    """The ``n``-th forward difference along ``dim`` (``!=`` for bool tensors)."""
    if input._data.ndim == 0:
        raise RuntimeError("diff expects input to be at least one-dimensional")
    if n < 0:
        raise RuntimeError(f"order must be non-negative but got {n}")
    axis = wrap_dim(dim, input._data.ndim)
    parts = [p for p in (prepend, input, append) if p is not None]
    x = cat(parts, axis) if len(parts) > 1 else input
    for _ in range(n):
        size = x._data.shape[axis]
        if size == 0:
            break
        a, b = narrow(x, axis, 1, size - 1), narrow(x, axis, 0, size - 1)
        x = logical_xor(a, b) if x._data.dtype.kind == "b" else a - b
    return x


def _along(t: Tensor, values, axis: int, ndim: int) -> Tensor:
    """A 1-D constant shaped to broadcast along ``axis`` of an ``ndim``-d tensor."""
    shape = [1] * ndim
    shape[axis] = -1
    return _const(t, values).reshape(shape)


def gradient(input: Tensor, *, spacing=1, dim=None, edge_order: int = 1) -> tuple:
    """Central differences in the interior and one-sided ones (first or second order) at the
    edges, along each of ``dim``; ``spacing`` is a step per dim or coordinate tensors."""
    x = _floating(input)
    ndim = x._data.ndim
    dims = (
        list(range(ndim))
        if dim is None
        else ([wrap_dim(dim, ndim)] if isinstance(dim, int) else [wrap_dim(d, ndim) for d in dim])
    )
    if edge_order not in (1, 2):
        raise RuntimeError("torch.gradient only supports edge_order=1 and edge_order=2.")
    if isinstance(spacing, (int, float, Tensor)):
        spacing = [spacing] * len(dims)
    spacing = list(spacing)
    if len(spacing) == 1 and len(dims) > 1:
        spacing = spacing * len(dims)
    if len(spacing) != len(dims):
        raise RuntimeError(
            f"torch.gradient expected spacing to be unspecified, a scalar or "
            f"it's spacing and dim arguments to have the same length, but got "
            f"a spacing argument of length {len(spacing)} and a dim argument "
            f"of length {len(dims)}."
        )
    outs = []
    for axis, h in zip(dims, spacing):
        n = x._data.shape[axis]
        if n < edge_order + 1:
            raise RuntimeError(
                "torch.gradient expected each dimension size to be at least edge_order+1"
            )
        outs.append(_gradient_1d(x, axis, h, edge_order, n))
    return tuple(outs)


def _gradient_1d(x: Tensor, axis: int, h, edge_order: int, n: int) -> Tensor:
    ndim = x._data.ndim

    def f(i, j=None):  # x[i:j] along the axis
        return _slice(x, axis, i, n if j is None else j)

    if isinstance(h, Tensor) and h._data.ndim:
        c = np.asarray(
            _xp_of(h._data).asnumpy(h._data) if not isinstance(h._data, np.ndarray) else h._data,
            dtype=np.float64,
        )
        dx = np.diff(c)
    else:
        dx = np.full(n - 1, float(h.item() if isinstance(h, Tensor) else h))
    d1, d2 = dx[:-1], dx[1:]
    a = -d2 / (d1 * (d1 + d2))
    b = (d2 - d1) / (d1 * d2)
    c_ = d1 / (d2 * (d1 + d2))
    interior = (
        f(0, -2) * _along(x, a, axis, ndim)
        + f(1, -1) * _along(x, b, axis, ndim)
        + f(2) * _along(x, c_, axis, ndim)
    )
    if edge_order == 1:
        first = (f(1, 2) - f(0, 1)) / float(dx[0])
        last = (f(n - 1) - f(n - 2, n - 1)) / float(dx[-1])
    else:
        p, q = float(dx[0]), float(dx[1])
        first = (
            f(0, 1) * (-(2 * p + q) / (p * (p + q)))
            + f(1, 2) * ((p + q) / (p * q))
            + f(2, 3) * (-p / (q * (p + q)))
        )
        p, q = float(dx[-2]), float(dx[-1])
        last = (
            f(n - 3, n - 2) * (q / (p * (p + q)))
            + f(n - 2, n - 1) * (-(p + q) / (p * q))
            + f(n - 1) * ((2 * q + p) / (q * (p + q)))
        )
    return cat([first, interior, last], axis)


def _trapezoid_parts(y: Tensor, x, dx, dim: int):
    """The areas of the trapezoids along ``dim`` (not yet summed) and the axis."""
    y = _floating(y)
    axis = wrap_dim(dim, y._data.ndim)
    n = y._data.shape[axis]
    mid = (
        narrow(y, axis, 1, builtins.max(n - 1, 0)) + narrow(y, axis, 0, builtins.max(n - 1, 0))
    ) / 2
    if x is None:
        return mid * (1 if dx is None else dx), axis
    x = _floating(x)
    if x._data.ndim == 1:  # coordinates along dim, broadcast over the other dims
        steps = diff(x)
        shape = [1] * y._data.ndim
        shape[axis] = -1
        steps = reshape(steps, tuple(shape))
    else:
        steps = diff(x, dim=dim)
    return mid * steps, axis


def trapezoid(y: Tensor, x: Tensor | None = None, *, dx=None, dim: int = -1) -> Tensor:
    """The trapezoidal rule along ``dim`` (sample points ``x`` or a constant step ``dx``)."""
    parts, axis = _trapezoid_parts(y, x, dx, dim)
    return sum(parts, axis)


def trapz(y: Tensor, x: Tensor | None = None, *, dx=None, dim: int = -1) -> Tensor:
    """Alias of ``trapezoid``."""
    return trapezoid(y, x, dx=dx, dim=dim)


def cumulative_trapezoid(y: Tensor, x: Tensor | None = None, *, dx=None, dim: int = -1) -> Tensor:
    """The running trapezoidal integral along ``dim`` (one element fewer than ``y``)."""
    parts, axis = _trapezoid_parts(y, x, dx, dim)
    return cumsum(parts, axis)


# ---- covariance and distances -------------------------------------------------------------
def cov(
    input: Tensor,
    *,
    correction: int = 1,
    fweights: Tensor | None = None,
    aweights: Tensor | None = None,
) -> Tensor:
    """The covariance matrix of the variables in the rows of ``input`` (observations in
    columns), with frequency and/or importance weights."""
    if input._data.ndim > 2:
        raise RuntimeError(
            f"cov(): expected input to have two or fewer dimensions but got an "
            f"input with {input._data.ndim} dimensions"
        )
    x = _floating(input)
    rows = reshape(x, (1, -1)) if x._data.ndim < 2 else x
    n_obs = rows._data.shape[1]
    w = None
    if fweights is not None:
        if fweights._data.dtype.kind not in "iu":
            raise RuntimeError(
                "cov(): expected fweights to have integral dtype but got "
                f"fweights with {from_numpy_dtype(fweights._data.dtype)} dtype"
            )
        w = to_dtype_op(fweights, x.dtype)
    if aweights is not None:
        if aweights._data.dtype.kind not in "f":
            raise RuntimeError(
                "cov(): expected aweights to have floating point dtype but got "
                f"aweights with {from_numpy_dtype(aweights._data.dtype)} dtype"
            )
        rt = result_dtype(x, aweights)  # float64 weights promote the result, as PyTorch
        if rt != x.dtype:
            x, rows = to_dtype_op(x, rt), to_dtype_op(rows, rt)
            w = None if w is None else to_dtype_op(w, rt)
        aw = to_dtype_op(aweights, x.dtype)
        w = aw if w is None else w * aw
    if w is None:
        avg = mean(rows, 1, keepdim=True)
        fact = n_obs - correction
        centered = rows - avg
        out = matmul(centered, centered.t()) / builtins.max(fact, 0)
    else:
        w_sum = sum(w)
        avg = sum(rows * w, 1, keepdim=True) / w_sum
        fact = w_sum - correction if aweights is None else w_sum - correction * sum(w * aw) / w_sum
        fact = where(fact > 0, fact, 0.0)
        centered = rows - avg
        out = matmul(centered * w, centered.t()) / fact
    return reshape(out, ()) if x._data.ndim < 2 else out


def corrcoef(input: Tensor) -> Tensor:
    """Pearson correlation coefficients of the rows of ``input`` (clipped to [-1, 1])."""
    c = cov(input)
    if c._data.ndim == 0:
        return c / c
    xp = _xp_of(c._data)
    k = xp.arange(c._data.shape[0])
    std = sqrt(c[k, k])
    c = c / unsqueeze(std, 1) / unsqueeze(std, 0)
    return c.clamp(-1, 1)


def dist(input: Tensor, other: Tensor, p: float = 2) -> Tensor:
    """The ``p``-norm of ``input - other`` (broadcast), over all elements."""
    return vector_norm(input - other, p)


def renorm(input: Tensor, p: float, dim: int, maxnorm: float) -> Tensor:
    """Each slice along ``dim`` whose ``p``-norm exceeds ``maxnorm`` is scaled down to it."""
    if p <= 0:
        raise RuntimeError(f"renorm: non-positive-norm not supported, got p={p}")
    if maxnorm < 0:
        raise RuntimeError(f"renorm: expected maxnorm to be >= 0 but got {maxnorm}")
    ndim = input._data.ndim
    axis = wrap_dim(dim, ndim)
    others = tuple(i for i in range(ndim) if i != axis)
    norms = vector_norm(input, p, others, keepdim=True)
    # PyTorch divides by norm + 1e-7
    return input * where(norms > maxnorm, maxnorm / (norms + 1e-7), 1.0)
