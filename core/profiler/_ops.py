"""``ember.ops.profiler``: the profiler's range operators, as torch's ``torch.ops.profiler``.

``_record_function_enter(name, args=None)`` opens a ``record_function`` range and returns a
handle (a 0-d int64 tensor); ``_record_function_exit(handle)`` closes it. They exist as
operators so that a graph can hold a range: an FX tracer that turns ``record_function``
blocks into calls of these ops (pytorch/examples' ``fx/profiling_tracer.py`` does) gives a
``GraphModule`` whose runs show the range in the profile. ``_record_function_enter_new``
is the same enter (torch's newer spelling returns an object; here the same handle).

Registered when ``ember.ops.profiler`` is first reached (``library._namespace``). The exit
and the enters are marked side-effecting, so ``Graph.eliminate_dead_code`` keeps them, as torch
keeps its profiler ops.
"""

from __future__ import annotations

import itertools

from .. import Tensor, tensor
from ..fx.node import has_side_effect
from ..library import custom_op
from ..library._custom_op import OPS
from . import _record

_OPEN: dict[int, tuple] = {}  # handle id -> (token, name, args)
_IDS = itertools.count(1)


def _enter(name: str, args: str | None) -> Tensor:
    if not isinstance(name, str):
        raise TypeError(
            f"profiler::_record_function_enter: name must be a str, got {type(name).__name__}"
        )
    key = next(_IDS)
    _OPEN[key] = (_record.push_range(name), name, args)
    return tensor(key)


@custom_op("profiler::_record_function_enter", mutates_args=())
def _record_function_enter(name: str, args: str | None = None) -> Tensor:
    """Open a profiler range named ``name``; returns its handle for the exit."""
    return _enter(name, args)


@custom_op("profiler::_record_function_enter_new", mutates_args=())
def _record_function_enter_new(name: str, args: str | None = None) -> Tensor:
    """``_record_function_enter`` under torch's newer name."""
    return _enter(name, args)


@custom_op("profiler::_record_function_exit", mutates_args=())
def _record_function_exit(handle: Tensor) -> None:
    """Close the range ``handle`` (from an enter) opened; an unknown handle raises."""
    key = int(handle.item())  # a Tensor: the op's schema checks it
    entry = _OPEN.pop(key, None)
    if entry is None:
        raise RuntimeError(
            f"profiler::_record_function_exit: handle {key} is not an open range (each "
            "handle closes once, after its _record_function_enter)"
        )
    token, name, args = entry
    _record.pop_range(token, name, () if args is None else (args,))


for _name in ("_record_function_enter", "_record_function_enter_new", "_record_function_exit"):
    _op = OPS[f"profiler::{_name}"]
    has_side_effect(_op.overload)  # the node target of ``ops.profiler.<name>.default``
    has_side_effect(_op.packet)  # ... and of ``ops.profiler.<name>`` (a tracer may record it)
