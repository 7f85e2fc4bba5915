"""Docstrings of the Tensor methods whose binding (core/_tensor_methods.py) is a wrapper, a
lambda or a helper without one of its own: what ``help(x.name)`` and the API reference show."""

from __future__ import annotations

__all__ = ["METHOD_DOCS"]

_IN_PLACE = "In-place :meth:`{0}` (returns ``self``; shares the data's memory as views do)."
_RANDOM = "Fill this tensor in place with draws from {0}; returns ``self``."

METHOD_DOCS: dict[str, str] = {
    "H": "The conjugate transpose of a matrix (a 2-D tensor): ``x.mT.conj()`` for 2-D input.",
    "mH": "The conjugate transpose of the last two dimensions: ``x.mT.conj()``.",
    "cdouble": "``self.to(ember.complex128)``.",
    "cfloat": "``self.to(ember.complex64)``.",
    "char": "``self.to(ember.int8)``.",
    "copy_": "Copy ``src``'s values into this tensor (broadcast, converted to this dtype and "
    "device); returns ``self``. Differentiable with respect to ``src``.",
    "fill_": "Set every element to ``value``; returns ``self``.",
    "zero_": "Set every element to 0; returns ``self``.",
    "eig": "Removed in PyTorch 1.9, as here: raises, naming :func:`ember.linalg.eig`.",
    "lstsq": "Removed in PyTorch 1.9, as here: raises, naming :func:`ember.linalg.lstsq`.",
    "solve": "Removed in PyTorch 1.9, as here: raises, naming :func:`ember.linalg.solve`.",
    "squeeze_": _IN_PLACE.format("squeeze"),
    "unsqueeze_": _IN_PLACE.format("unsqueeze"),
    "transpose_": _IN_PLACE.format("transpose"),
    "swapaxes_": _IN_PLACE.format("swapaxes"),
    "swapdims_": _IN_PLACE.format("swapdims"),
    "t_": _IN_PLACE.format("t"),
    "new_tensor": "A new tensor holding a copy of ``data``, with this tensor's dtype and device "
    "unless given.",
    "new_empty": "An uninitialized tensor of ``size`` with this tensor's dtype and device "
    "unless given.",
    "new_empty_strided": "An uninitialized tensor of ``size`` and ``stride`` with this "
    "tensor's dtype and device unless given.",
    "new_zeros": "A tensor of zeros of ``size`` with this tensor's dtype and device unless given.",
    "new_ones": "A tensor of ones of ``size`` with this tensor's dtype and device unless given.",
    "new_full": "A tensor of ``size`` filled with ``fill_value``, with this tensor's dtype and "
    "device unless given.",
    "resize_as": "Deprecated PyTorch API: this tensor resized to ``tensor``'s shape (a view of "
    "the same data; differentiable).",
    "max": "With no ``dim``: the largest element. With ``dim``: ``(values, indices)`` of the "
    "largest along ``dim`` (see :func:`ember.max`).",
    "min": "With no ``dim``: the smallest element. With ``dim``: ``(values, indices)`` of the "
    "smallest along ``dim`` (see :func:`ember.min`).",
    "where": "``x.where(condition, y)`` is ``ember.where(condition, x, y)``: ``x`` where "
    "``condition`` holds, else ``y``.",
    "clamp_min": "``ember.clamp(x, min=min)``.",
    "clamp_max": "``ember.clamp(x, max=max)``.",
    "polygamma": "``x.polygamma(n)`` is ``ember.polygamma(n, x)``: the n-th derivative of the "
    "digamma function.",
    "softmax": "``ember.nn.functional.softmax(x, dim, dtype=dtype)``.",
    "log_softmax": "``ember.nn.functional.log_softmax(x, dim, dtype=dtype)``.",
    "hardshrink": "``ember.nn.functional.hardshrink(x, lambd)``.",
    "prelu": "``ember.nn.functional.prelu(x, weight)``.",
    "uniform_": _RANDOM.format("the uniform distribution on ``[from, to)`` (default [0, 1))"),
    "normal_": _RANDOM.format("the normal distribution (``mean``, ``std``; default 0, 1)"),
    "bernoulli_": _RANDOM.format("Bernoulli(``p``) (0 or 1; default p = 0.5)"),
    "random_": _RANDOM.format(
        "the integers of ``[from, to)`` (``random_(to)``: ``[0, to)``; no bound: ``[0, 2**24)``)"
    ),
    "exponential_": _RANDOM.format("the exponential distribution of rate ``lambd``"),
    "geometric_": _RANDOM.format("the geometric distribution of success probability ``p``"),
    "cauchy_": _RANDOM.format("the Cauchy distribution (``median``, ``sigma``)"),
    "log_normal_": _RANDOM.format("the log-normal distribution (``mean``, ``std`` of its log)"),
}
