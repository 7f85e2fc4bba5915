"""``ember.return_types``: the named tuples ops return, as ``torch.return_types``.

Each is a ``namedtuple`` with PyTorch's type name and field names, so ``values, indices =
x.sort()`` and ``x.sort().values`` both work.  ``max``/``min`` are the tuples
``ember.max(x, dim)`` / ``ember.min(x, dim)`` return (defined beside them).
"""

from __future__ import annotations

from collections import namedtuple

from .ops.reduction import max_result as max  # noqa: A004 - torch.return_types.max
from .ops.reduction import min_result as min  # noqa: A004 - torch.return_types.min


def _repr(self) -> str:
    """PyTorch's layout: the qualified type name, then one field a line."""
    body = ",\n".join(f"{f}={v!r}" for f, v in zip(self._fields, self))
    return f"ember.return_types.{type(self).__name__}(\n{body})"


max.__repr__ = min.__repr__ = _repr


def _named(name: str, fields: list[str]):
    cls = namedtuple(name, fields, module=__name__)
    cls.__repr__ = _repr
    return cls


def _vi(name: str):
    return _named(name, ["values", "indices"])


topk = _vi("topk")
sort = _vi("sort")
kthvalue = _vi("kthvalue")
median = _vi("median")
nanmedian = _vi("nanmedian")
mode = _vi("mode")
cummax = _vi("cummax")
cummin = _vi("cummin")
aminmax = _named("aminmax", ["min", "max"])
histogram = _named("histogram", ["hist", "bin_edges"])
histogramdd = _named("histogramdd", ["hist", "bin_edges"])

__all__ = [
    "aminmax",
    "cummax",
    "cummin",
    "histogram",
    "histogramdd",
    "kthvalue",
    "max",
    "median",
    "min",
    "mode",
    "nanmedian",
    "sort",
    "topk",
]
