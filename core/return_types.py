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


def _from_sequence(cls) -> None:
    """Let ``cls(seq)`` build from one sequence of all the fields too: torch's return types are
    struct sequences, built that way (``torch.return_types.max([values, indices])``, as
    tensordict's reductions do); ``cls(values, indices)`` keeps working."""
    new = cls.__new__
    n = len(cls._fields)

    def __new__(c, *args, **kwargs):
        if not kwargs:
            if len(args) == n:  # the fields (ember's own calls): no second frame
                return tuple.__new__(c, args)
            if len(args) == 1 and isinstance(args[0], (tuple, list)):
                if len(args[0]) != n:
                    raise TypeError(
                        f"ember.return_types.{c.__name__}() takes a {n}-sequence "
                        f"({len(args[0])}-sequence given)"
                    )
                return tuple.__new__(c, args[0])
        return new(c, *args, **kwargs)  # keywords, and namedtuple's errors

    cls.__new__ = __new__


max.__repr__ = min.__repr__ = _repr
_from_sequence(max)
_from_sequence(min)


def _named(name: str, fields: list[str]):
    cls = namedtuple(name, fields, module=__name__)
    cls.__repr__ = _repr
    _from_sequence(cls)
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
