"""The random in-place fills (``exponential_``, ``geometric_``, ``cauchy_``, ``log_normal_``)
and the per-element count draws (``poisson``, ``binomial``), re-exported by
:mod:`ember.creation_ext`, where they keep their ``__module__``."""

from __future__ import annotations

import math

import numpy as np

from . import _mt_samplers
from .backend.device import get_array_module
from .ops.inplace import check_inplace
from .random import gen_for, torch_stream
from .tensor import Tensor


# ---- random in-place fills (torch's numbers on NumPy arrays) ----------------------------------
def _fill(self: Tensor, values) -> Tensor:
    check_inplace(self)
    self._data[...] = values.astype(self._data.dtype, copy=False)
    self._version_counter[0] += 1
    return self


def _uniform01(self, generator):
    xp = get_array_module(self._data)
    dt = np.float64 if self._data.dtype == np.float64 else np.float32
    return xp, gen_for(generator, xp).random(self._data.shape, dtype=dt)


def exponential_(self: Tensor, lambd: float = 1.0, *, generator=None) -> Tensor:
    if lambd <= 0:
        raise RuntimeError(f"exponential_ expects lambda > 0.0, but found lambda={lambd}")
    xp = get_array_module(self._data)
    stream = torch_stream(generator, xp)
    if stream is not None and self._data.dtype.kind == "f":  # torch's draws
        return _fill(self, stream.exponential_fill(self._data.shape, self._data.dtype, lambd))
    xp, u = _uniform01(self, generator)
    return _fill(self, -xp.log1p(-u) / lambd)


def geometric_(self: Tensor, p: float, *, generator=None) -> Tensor:
    if not 0 < p < 1:
        raise RuntimeError(f"geometric_ expects p to be in (0, 1), but got p={p}")
    xp = get_array_module(self._data)
    stream = torch_stream(generator, xp)
    if stream is not None:  # torch's draws: ceil(log(u) / log1p(-p)), u a float64 uniform
        return _fill(self, _mt_samplers.geometric(stream, self._data.shape, p))
    xp, u = _uniform01(self, generator)
    # trials up to the first success: 1, 2, ...
    return _fill(self, xp.maximum(xp.ceil(xp.log1p(-u) / math.log1p(-p)), 1))


def cauchy_(self: Tensor, median: float = 0.0, sigma: float = 1.0, *, generator=None) -> Tensor:
    xp = get_array_module(self._data)
    stream = torch_stream(generator, xp)
    if stream is not None:  # torch's draws: median + sigma * tan(pi (u - 1/2)) in float64
        return _fill(self, _mt_samplers.cauchy(stream, self._data.shape, median, sigma))
    xp, u = _uniform01(self, generator)
    return _fill(self, median + sigma * xp.tan(math.pi * (u - 0.5)))


def log_normal_(self: Tensor, mean: float = 1.0, std: float = 2.0, *, generator=None) -> Tensor:
    if std <= 0:
        raise RuntimeError(f"log_normal_ expects std > 0.0, but found std={std}")
    xp = get_array_module(self._data)
    stream = torch_stream(generator, xp)
    if stream is not None:  # torch's draws: exp of float64 normals, one pair at a time
        return _fill(self, _mt_samplers.log_normal(stream, self._data.shape, mean, std))
    dt = np.float64 if self._data.dtype == np.float64 else np.float32
    z = gen_for(generator, xp).standard_normal(self._data.shape, dtype=dt)
    return _fill(self, xp.exp(mean + std * z))


# ---- counts drawn per element (no gradient, as in torch) -------------------------------------
def _check_float_pair(a: Tensor, b: Tensor) -> None:
    if a.dtype != b.dtype:
        from .ops._util import scalar_type_name

        raise RuntimeError(f"Found dtype {scalar_type_name(b)} but expected {scalar_type_name(a)}")


def _float_stream(generator, arr):
    """The torch stream to draw ``arr``'s parameters from (NumPy float32/float64), or None."""
    stream = torch_stream(generator, get_array_module(arr))
    return stream if stream is not None and arr.dtype in (np.float32, np.float64) else None


def poisson(input: Tensor, generator=None) -> Tensor:
    """A Poisson draw for each rate in ``input``, in ``input``'s dtype."""
    xp = get_array_module(input._data)
    rates = input._data.astype(np.float64)
    if bool((rates < 0).any()):
        raise RuntimeError("invalid Poisson rate, expected rate to be non-negative")
    stream = _float_stream(generator, input._data)
    if stream is not None:  # torch's draws (core/_mt_samplers.py)
        return Tensor._wrap(_mt_samplers.poisson(stream, input._data))
    draws = gen_for(generator, xp).poisson(lam=rates, size=rates.shape)
    return Tensor._wrap(xp.asarray(draws, dtype=input._data.dtype))


def binomial(count: Tensor, prob: Tensor, generator=None) -> Tensor:
    """A Binomial(count, prob) draw for each element of ``count`` (``prob`` broadcast to its
    shape), in ``count``'s dtype."""
    _check_float_pair(count, prob)
    xp = get_array_module(count._data)
    stream = _float_stream(generator, count._data)
    if stream is not None:  # torch's draws (core/_mt_samplers.py)
        p = np.broadcast_to(prob._data, count._data.shape)
        return Tensor._wrap(_mt_samplers.binomial(stream, count._data, p))
    n, p = xp.broadcast_arrays(count._data.astype(np.float64), prob._data.astype(np.float64))
    draws = gen_for(generator, xp).binomial(n.astype(np.int64), xp.clip(p, 0.0, 1.0))
    return Tensor._wrap(xp.asarray(draws, dtype=count._data.dtype))


def _standard_gamma(input: Tensor, generator=None) -> Tensor:
    """Gamma(``input``, 1) draws, differentiable in ``input`` (``torch._standard_gamma``)."""
    from .distributions.gamma import _standard_gamma as gamma

    return gamma(input, generator)


def _sample_dirichlet(input: Tensor, generator=None) -> Tensor:
    """Dirichlet draws over ``input``'s last dimension (``torch._sample_dirichlet``)."""
    from .distributions.dirichlet import _Dirichlet

    return _Dirichlet.apply(input, generator)


for _fn in (
    exponential_,
    geometric_,
    cauchy_,
    log_normal_,
    poisson,
    binomial,
    _standard_gamma,
    _sample_dirichlet,
):
    _fn.__module__ = "ember.creation_ext"
del _fn
