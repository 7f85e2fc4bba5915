"""Helpers shared by the distributions (``torch.distributions.utils``)."""

from __future__ import annotations

import numbers
from functools import update_wrapper
from operator import attrgetter

import numpy as np

import ember
from ember.backend.finfo import np_finfo
from ember.tensor import Tensor

__all__ = [
    "broadcast_all",
    "clamp_probs",
    "lazy_property",
    "logits_to_probs",
    "probs_to_logits",
    "tril_matrix_to_vec",
    "vec_to_tril_matrix",
    "euler_constant",
]

euler_constant = 0.57721566490153286060  # Euler-Mascheroni constant


def _finfo(dtype):
    return np_finfo(dtype.np if hasattr(dtype, "np") else np.dtype(str(dtype).split(".")[-1]))


def finfo_eps(t: Tensor) -> float:
    return float(np_finfo(t._data.dtype).eps)


def finfo_tiny(t: Tensor) -> float:
    return float(np_finfo(t._data.dtype).tiny)


def broadcast_all(*values):
    """Broadcast tensors and numbers to one shape; numbers become tensors of the default dtype
    (or the dtype and device of the first tensor argument)."""
    if not all(isinstance(v, (Tensor, numbers.Number)) for v in values):
        raise ValueError(
            "Input arguments must all be instances of numbers.Number, torch.Tensor or objects "
            "implementing __torch_function__."
        )
    if not all(isinstance(v, Tensor) for v in values):
        like = next((v for v in values if isinstance(v, Tensor)), None)
        opts = (
            {"dtype": ember.get_default_dtype()}
            if like is None
            else {"dtype": like.dtype, "device": like.device}
        )
        values = [v if isinstance(v, Tensor) else ember.tensor(v, **opts) for v in values]
    # ember.broadcast_shapes raises PyTorch's RuntimeError ("The size of tensor a (25) must
    # match the size of tensor b (2) ...") where NumPy's would be a ValueError
    shape = tuple(ember.broadcast_shapes(*(tuple(v.shape) for v in values)))
    return tuple(v if tuple(v.shape) == shape else v.expand(shape) for v in values)


def _standard_draw(kind, shape, like: Tensor, generator=None, **kw) -> Tensor:
    """A draw of NumPy/CuPy Generator method ``kind`` of ``shape`` as a tensor like ``like``."""
    from ember.random import gen_for, torch_stream

    xp = np if type(like._data) is np.ndarray else _cupy_module()
    dt = like._data.dtype
    stream = torch_stream(generator, xp) if dt.kind == "f" else None
    if stream is not None:
        # torch's CPU draws in the parameter's own dtype (Normal.rsample's ``normal_()``,
        # Uniform's ``rand``, Laplace's ``uniform_``, Exponential's ``exponential_()``), so
        # a seeded program samples the same numbers as under torch
        size = tuple(shape)
        if kind in ("standard_normal", "random"):
            return Tensor._wrap(np.asarray(getattr(stream, kind)(size, dtype=dt), dtype=dt))
        if kind == "uniform":
            return Tensor._wrap(stream.uniform_fill(size, dt, kw["low"], kw["high"]))
        if kind == "standard_exponential":
            return Tensor._wrap(stream.exponential_fill(size, dt, 1.0))
    gen = gen_for(generator, xp)
    out = getattr(gen, kind)(size=tuple(shape), **kw)
    return Tensor._wrap(xp.asarray(out, dtype=dt))


def _cupy_module():  # pragma: no cover - GPU
    from ember.backend import _cupy

    return _cupy.require_cupy()


def xp_of(t: Tensor):
    return np if type(t._data) is np.ndarray else _cupy_module()


def logits_to_probs(logits: Tensor, is_binary: bool = False) -> Tensor:
    """Unnormalized log-probabilities to probabilities: sigmoid if binary, else softmax."""
    if is_binary:
        return ember.sigmoid(logits)
    return logits.softmax(-1)


def clamp_probs(probs: Tensor) -> Tensor:
    """Clamp probabilities into the open interval ``(0, 1)`` (by the dtype's epsilon)."""
    eps = finfo_eps(probs)
    return probs.clamp(min=eps, max=1 - eps)


def probs_to_logits(probs: Tensor, is_binary: bool = False) -> Tensor:
    """Probabilities to logits: log-odds if binary, else log-probabilities."""
    ps_clamped = clamp_probs(probs)
    if is_binary:
        return ember.log(ps_clamped) - ember.log1p(-ps_clamped)
    return ember.log(ps_clamped)


def _standard_normal(shape, dtype, device) -> Tensor:
    """A standard normal draw of ``shape`` (torch.distributions.utils._standard_normal)."""
    return ember.empty(shape, dtype=dtype, device=device).normal_()


class lazy_property:
    """A property computed on first access and then stored on the instance; in ``torch.no_grad``
    style, accessing it on the class returns the wrapper itself."""

    def __init__(self, wrapped):
        self.wrapped = wrapped
        update_wrapper(self, wrapped)

    def __get__(self, instance, obj_type=None):
        if instance is None:
            return _lazy_property_and_property(self.wrapped)
        with ember.enable_grad():
            value = self.wrapped(instance)
        setattr(instance, self.wrapped.__name__, value)
        return value


class _lazy_property_and_property(lazy_property, property):
    def __init__(self, wrapped):
        property.__init__(self, wrapped)


def tril_matrix_to_vec(mat: Tensor, diag: int = 0) -> Tensor:
    """The lower triangle of the trailing ``n x n`` matrices, row by row, as vectors."""
    n = mat.shape[-1]
    if not ember.is_tensor(mat) or mat.shape[-2] != n:
        raise ValueError("Expected a square matrix")
    rows, cols = np.tril_indices(n, k=diag)
    flat = rows * n + cols
    idx = ember.tensor(flat, dtype=ember.int64, device=mat.device)
    return mat.reshape(*mat.shape[:-2], n * n).index_select(-1, idx)


def vec_to_tril_matrix(vec: Tensor, diag: int = 0) -> Tensor:
    """Inverse of :func:`tril_matrix_to_vec`: vectors back to lower-triangular matrices."""
    m = vec.shape[-1]
    n = 0
    while len(np.tril_indices(n, k=diag)[0]) < m:  # the smallest n whose triangle holds m
        n += 1
    rows, cols = np.tril_indices(n, k=diag)
    if len(rows) != m:
        raise ValueError("Incorrect vector size for the requested triangle")
    flat = ember.tensor(rows * n + cols, dtype=ember.int64, device=vec.device)
    batch = tuple(vec.shape[:-1])
    out = ember.zeros(*batch, n * n, dtype=vec.dtype, device=vec.device)
    out = out.scatter(-1, flat.expand(*batch, m), vec)
    return out.reshape(*batch, n, n)


def _sum_rightmost(value: Tensor, dim: int) -> Tensor:
    """Sum out the ``dim`` rightmost dimensions of ``value``."""
    if dim == 0:
        return value
    return value.reshape(*value.shape[: value.dim() - dim], -1).sum(-1)


def _broadcast_pair(a: Tensor, b: Tensor):
    shape = np.broadcast_shapes(tuple(a.shape), tuple(b.shape))
    return a.expand(shape), b.expand(shape)


def _bce_with_logits(logits: Tensor, target: Tensor) -> Tensor:
    """Elementwise binary cross-entropy with logits, softplus(l) - l * y (stable; its
    gradient in ``l`` is sigmoid(l) - y everywhere, 0 included)."""
    return _softplus(logits) - logits * target


def _softplus(x: Tensor) -> Tensor:
    from ember.nn import functional as F

    return F.softplus(x)


def _delegated(path: str) -> property:
    """A read-only property returning ``self.<path>`` (a dotted attribute path such as
    ``"base_dist.scale"``), for a distribution built on another one."""
    return property(attrgetter(path), doc=f"``self.{path}``")
