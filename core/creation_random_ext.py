"""The random in-place fills (``exponential_``, ``geometric_``, ``cauchy_``, ``log_normal_``)
and the per-element count draws (``poisson``, ``binomial``), re-exported by
:mod:`ember.creation_ext`, where they keep their ``__module__``."""

from __future__ import annotations

import math

import numpy as np

from .backend.device import get_array_module
from .ops.inplace import check_inplace
from .random import gen_for, torch_stream
from .tensor import Tensor


# ---- random in-place fills (ember's Generator: reproducible under manual_seed) -------------
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
    xp, u = _uniform01(self, generator)
    # trials up to the first success: 1, 2, ...
    return _fill(self, xp.maximum(xp.ceil(xp.log1p(-u) / math.log1p(-p)), 1))


def cauchy_(self: Tensor, median: float = 0.0, sigma: float = 1.0, *, generator=None) -> Tensor:
    xp, u = _uniform01(self, generator)
    return _fill(self, median + sigma * xp.tan(math.pi * (u - 0.5)))


def log_normal_(self: Tensor, mean: float = 1.0, std: float = 2.0, *, generator=None) -> Tensor:
    if std <= 0:
        raise RuntimeError(f"log_normal_ expects std > 0.0, but found std={std}")
    xp = get_array_module(self._data)
    dt = np.float64 if self._data.dtype == np.float64 else np.float32
    z = gen_for(generator, xp).standard_normal(self._data.shape, dtype=dt)
    return _fill(self, xp.exp(mean + std * z))


# ---- counts drawn per element (no gradient, as in torch) -------------------------------------
def _check_float_pair(a: Tensor, b: Tensor) -> None:
    if a.dtype != b.dtype:
        from .ops._util import scalar_type_name

        raise RuntimeError(f"Found dtype {scalar_type_name(b)} but expected {scalar_type_name(a)}")


def poisson(input: Tensor, generator=None) -> Tensor:
    """A Poisson draw for each rate in ``input``, in ``input``'s dtype."""
    xp = get_array_module(input._data)
    rates = input._data.astype(np.float64)
    if bool((rates < 0).any()):
        raise RuntimeError("invalid Poisson rate, expected rate to be non-negative")
    draws = gen_for(generator, xp).poisson(lam=rates, size=rates.shape)
    return Tensor._wrap(xp.asarray(draws, dtype=input._data.dtype))


def binomial(count: Tensor, prob: Tensor, generator=None) -> Tensor:
    """A Binomial(count, prob) draw for each element (broadcast), in ``count``'s dtype."""
    _check_float_pair(count, prob)
    xp = get_array_module(count._data)
    n, p = xp.broadcast_arrays(count._data.astype(np.float64), prob._data.astype(np.float64))
    draws = gen_for(generator, xp).binomial(n.astype(np.int64), xp.clip(p, 0.0, 1.0))
    return Tensor._wrap(xp.asarray(draws, dtype=count._data.dtype))


for _fn in (exponential_, geometric_, cauchy_, log_normal_, poisson, binomial):
    _fn.__module__ = "ember.creation_ext"
del _fn
