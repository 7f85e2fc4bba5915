"""``ember.fft``'s core: the transform Functions and the n-dimensional transforms.

Three Functions carry every transform: complex-to-complex (fftn/ifftn), real-to-complex
(rfftn, one-sided in the last transformed dim) and complex-to-real (irfftn). The gradient of a
transform is its adjoint: the opposite transform under the dual normalisation (``backward`` <->
``forward``, ``ortho`` stays); the one-sided ones add the zero padding or the doubling of the
mirrored bins. Sizes ``n=``/``s=`` crop or zero-pad the input with differentiable ops first.
The one- and two-dimensional transforms (``fft_1d_2d``) are these over one or two dims.
"""

from __future__ import annotations

import numpy as np

from ..autograd.function import Function
from ..backend.dtype import get_default_dtype
from ..tensor import Tensor
from ._util import scalar_type_name, wrap_dim
from .complex_ops import conj, real_any
from .function_free import _xp_of

_DUAL = {"backward": "forward", "forward": "backward", "ortho": "ortho"}
_COMPLEX = {
    "float16": np.complex64,
    "float32": np.complex64,
    "float64": np.complex128,
    "complex64": np.complex64,
    "complex128": np.complex128,
}


def _norm(norm):
    if norm is None:
        return "backward"
    if norm not in _DUAL:
        raise ValueError(f"Invalid normalization mode: {norm}")
    return norm


class _ToComplex(Function):
    @staticmethod
    def forward(ctx, x):
        return x.astype(_COMPLEX[x.dtype.name])

    @staticmethod
    def backward(ctx, grad):
        return real_any(grad)


class C2C(Function):
    @staticmethod
    def forward(ctx, x, axes, norm, forward):
        ctx.axes, ctx.norm, ctx.fwd = axes, norm, forward
        fn = ctx.xp.fft.fftn if forward else ctx.xp.fft.ifftn
        return fn(x, axes=axes, norm=norm).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        if isinstance(grad, Tensor):
            return _c2c(grad, ctx.axes, _DUAL[ctx.norm], not ctx.fwd), None, None, None
        fn = ctx.xp.fft.ifftn if ctx.fwd else ctx.xp.fft.fftn
        return (
            fn(grad, axes=ctx.axes, norm=_DUAL[ctx.norm]).astype(grad.dtype, copy=False),
            None,
            None,
            None,
        )


class R2C(Function):
    """rfftn: the last axis is one-sided (n // 2 + 1 bins)."""

    @staticmethod
    def forward(ctx, x, axes, norm):
        ctx.axes, ctx.norm, ctx.n = axes, norm, x.shape[axes[-1]]
        return ctx.xp.fft.rfftn(x, axes=axes, norm=norm).astype(_COMPLEX[x.dtype.name], copy=False)

    @staticmethod
    def backward(ctx, grad):
        # adjoint: zero-fill the missing bins, inverse transform (dual norm), real part
        last = ctx.axes[-1]
        full = _resize(grad, last, ctx.n)
        if isinstance(full, Tensor):
            return real_any(_c2c(full, ctx.axes, _DUAL[ctx.norm], False)), None, None
        out = ctx.xp.fft.ifftn(full, axes=ctx.axes, norm=_DUAL[ctx.norm])
        return out.real.astype(grad.real.dtype, copy=False), None, None


class C2R(Function):
    """irfftn: the input's last axis holds n // 2 + 1 bins of a length-n real signal."""

    @staticmethod
    def forward(ctx, x, axes, norm, n):
        ctx.axes, ctx.norm, ctx.n = axes, norm, n
        s = [x.shape[a] for a in axes[:-1]] + [n]
        out = ctx.xp.fft.irfftn(x, s=s, axes=axes, norm=norm)
        return out.astype(x.real.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        last, n = ctx.axes[-1], ctx.n
        m = n // 2 + 1
        data = grad._data if isinstance(grad, Tensor) else grad
        xp = _xp_of(data)
        # the bins that stand for two mirrored ones of the full spectrum count twice
        w = np.ones(m, dtype=data.dtype)
        w[1 : 1 + n - m] = 2
        shape = [1] * data.ndim
        shape[last] = m
        w = xp.asarray(w.reshape(shape))
        if isinstance(grad, Tensor):
            return _r2c(grad, ctx.axes, _DUAL[ctx.norm]) * Tensor._wrap(w), None, None, None
        g = xp.fft.rfftn(grad, axes=ctx.axes, norm=_DUAL[ctx.norm])
        return (g * w).astype(_COMPLEX[data.dtype.name], copy=False), None, None, None


# ---- resizing and dispatch ---------------------------------------------------------------------
def _resize(x, axis: int, n: int):
    """Crop or zero-pad ``x`` along ``axis`` to length ``n`` (arrays or tensors)."""
    size = x.shape[axis]
    if size == n:
        return x
    if isinstance(x, Tensor):
        if n < size:
            return x.narrow(axis, 0, n)
        from .shape import cat

        shape = list(x.shape)
        shape[axis] = n - size
        zeros = Tensor._wrap(_xp_of(x._data).zeros(tuple(shape), dtype=x._data.dtype))
        return cat([x, zeros], axis)
    xp = _xp_of(x)
    if n < size:
        idx = [slice(None)] * x.ndim
        idx[axis] = slice(0, n)
        return x[tuple(idx)]
    width = [(0, 0)] * x.ndim
    width[axis] = (0, n - size)
    return xp.pad(x, width)


def _as_complex(x: Tensor) -> Tensor:
    if x._data.dtype.kind == "c":
        return x
    if x._data.dtype.kind not in "fV":
        x = x.to(get_default_dtype())
    return _ToComplex.apply(x)


def _as_real(name: str, x: Tensor) -> Tensor:
    if x._data.dtype.kind == "c":
        raise RuntimeError(f"{name} expects a real input tensor, but got {scalar_type_name(x)}")
    if x._data.dtype.kind not in "fV":
        x = x.to(get_default_dtype())
    return x


def _c2c(x: Tensor, axes, norm, forward) -> Tensor:
    return C2C.apply(_as_complex(x), tuple(axes), norm, forward)


def _r2c(x: Tensor, axes, norm) -> Tensor:
    return R2C.apply(x, tuple(axes), norm)


def _dims_sizes(x: Tensor, s, dim, name: str):
    """PyTorch's rules: dim=None with s -> the last len(s) dims; neither -> all dims."""
    nd = x.ndim
    if dim is None:
        dims = list(range(nd)) if s is None else list(range(nd - len(s), nd))
    else:
        dims = [dim] if isinstance(dim, int) else list(dim)
        dims = [wrap_dim(d, nd) for d in dims]
        if len(set(dims)) != len(dims):
            raise RuntimeError(f"{name} dims must be unique")
    if s is not None:
        s = [s] if isinstance(s, int) else list(s)
        if len(s) != len(dims):
            raise RuntimeError("When given, dim and shape arguments must have the same length")
    sizes = [x.shape[d] if s is None or s[i] == -1 else s[i] for i, d in enumerate(dims)]
    for n in sizes:
        if n < 1:
            raise RuntimeError(f"Invalid number of data points ({n}) specified")
    return dims, sizes


def _resized(x: Tensor, dims, sizes) -> Tensor:
    for d, n in zip(dims, sizes):
        x = _resize(x, d, n)
    return x


# ---- public functions ----------------------------------------------------------------------------
def fftn(input: Tensor, s=None, dim=None, norm=None, *, out=None) -> Tensor:
    """The n-dimensional discrete Fourier transform.

    Args:
        input (Tensor): the signal.
        s: the lengths of the transformed dimensions; the input is zero-padded or trimmed to them.
        dim: the dimensions to transform; default all dimensions (None).
        norm: ``"backward"`` (default: no scaling forward, 1/n inverse), ``"forward"`` (1/n
            forward) or ``"ortho"`` (1/sqrt(n) both ways).

    Returns:
        A complex tensor.
    """
    dims, sizes = _dims_sizes(input, s, dim, "fftn")
    return _c2c(_resized(_as_complex(input), dims, sizes), dims, _norm(norm), True)


def ifftn(input: Tensor, s=None, dim=None, norm=None, *, out=None) -> Tensor:
    """The inverse of :func:`fftn`.

    Args:
        input (Tensor): the signal.
        s: the lengths of the transformed dimensions; the input is zero-padded or trimmed to them.
        dim: the dimensions to transform; default all dimensions (None).
        norm: ``"backward"`` (default: no scaling forward, 1/n inverse), ``"forward"`` (1/n
            forward) or ``"ortho"`` (1/sqrt(n) both ways).

    Returns:
        A complex tensor.
    """
    dims, sizes = _dims_sizes(input, s, dim, "ifftn")
    return _c2c(_resized(_as_complex(input), dims, sizes), dims, _norm(norm), False)


def rfftn(input: Tensor, s=None, dim=None, norm=None, *, out=None) -> Tensor:
    """The n-dimensional Fourier transform of a real signal, one-sided in the last
    transformed dimension.

    Args:
        input (Tensor): the signal.
        s: the lengths of the transformed dimensions; the input is zero-padded or trimmed to them.
        dim: the dimensions to transform; default all dimensions (None).
        norm: ``"backward"`` (default: no scaling forward, 1/n inverse), ``"forward"`` (1/n
            forward) or ``"ortho"`` (1/sqrt(n) both ways).

    Returns:
        A complex tensor.
    """
    x = _as_real("rfftn", input)
    dims, sizes = _dims_sizes(x, s, dim, "rfftn")
    return _r2c(_resized(x, dims, sizes), dims, _norm(norm))


def irfftn(input: Tensor, s=None, dim=None, norm=None, *, out=None) -> Tensor:
    """The inverse of :func:`rfftn`.

    Args:
        input (Tensor): the signal.
        s: the lengths of the transformed dimensions; the input is zero-padded or trimmed to them.
        dim: the dimensions to transform; default all dimensions (None).
        norm: ``"backward"`` (default: no scaling forward, 1/n inverse), ``"forward"`` (1/n
            forward) or ``"ortho"`` (1/sqrt(n) both ways).

    Returns:
        A real tensor.
    """
    x = _as_complex(input)
    dims, sizes = _dims_sizes(x, s, dim, "irfftn")
    last = dims[-1]
    if s is None or (s[-1] if not isinstance(s, int) else s) == -1:
        sizes[-1] = 2 * (x.shape[last] - 1)
    n = sizes[-1]
    if n < 1:
        raise RuntimeError(f"Invalid number of data points ({n}) specified")
    x = _resized(x, dims[:-1], sizes[:-1])
    x = _resize(x, last, n // 2 + 1)
    return C2R.apply(x, tuple(dims), _norm(norm), n)


def hfftn(input: Tensor, s=None, dim=None, norm=None, *, out=None) -> Tensor:
    """The n-dimensional transform of a signal with Hermitian symmetry, given by its one-sided
    half in the last dimension.

    Args:
        input (Tensor): the signal.
        s: the lengths of the transformed dimensions; the input is zero-padded or trimmed to them.
        dim: the dimensions to transform; default all dimensions (None).
        norm: ``"backward"`` (default: no scaling forward, 1/n inverse), ``"forward"`` (1/n
            forward) or ``"ortho"`` (1/sqrt(n) both ways).

    Returns:
        A real tensor.
    """
    return irfftn(conj(_as_complex(input)), s, dim, _DUAL[_norm(norm)])


def ihfftn(input: Tensor, s=None, dim=None, norm=None, *, out=None) -> Tensor:
    """The inverse of :func:`hfftn`.

    Args:
        input (Tensor): the signal.
        s: the lengths of the transformed dimensions; the input is zero-padded or trimmed to them.
        dim: the dimensions to transform; default all dimensions (None).
        norm: ``"backward"`` (default: no scaling forward, 1/n inverse), ``"forward"`` (1/n
            forward) or ``"ortho"`` (1/sqrt(n) both ways).

    Returns:
        A complex tensor.
    """
    return conj(rfftn(input, s, dim, _DUAL[_norm(norm)]))
