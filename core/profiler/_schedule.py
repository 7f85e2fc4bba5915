"""The profiler's step schedule (``ProfilerAction``, ``schedule``), re-exported by
:mod:`ember.profiler.profiler`, where they keep their ``__module__``."""

from __future__ import annotations

import enum
from collections.abc import Callable


class ProfilerAction(enum.Enum):
    """What a :func:`schedule` tells the profiler to do at a step: ``NONE``, ``WARMUP`` (trace
    but discard), ``RECORD``, or ``RECORD_AND_SAVE`` (the last step of a cycle: record, then
    call ``on_trace_ready``)."""

    NONE = 0
    WARMUP = 1
    RECORD = 2
    RECORD_AND_SAVE = 3


def schedule(
    *,
    wait: int,
    warmup: int,
    active: int,
    repeat: int = 0,
    skip_first: int = 0,
    skip_first_wait: int = 0,
) -> Callable[[int], ProfilerAction]:
    """The action for each step: skip ``skip_first`` steps, then cycles of ``wait`` idle,
    ``warmup`` and ``active`` recorded steps (the last one saves), ``repeat`` times (0:
    forever). ``skip_first_wait=1`` skips the first cycle's wait."""
    for n, v in (
        ("wait", wait),
        ("warmup", warmup),
        ("repeat", repeat),
        ("skip_first", skip_first),
    ):
        if not isinstance(v, int) or v < 0:
            raise ValueError(f"schedule: {n} must be a non-negative int, got {v!r}")
    if not isinstance(active, int) or active < 1:
        raise ValueError(f"schedule: active must be a positive int, got {active!r}")

    def schedule_fn(step: int) -> ProfilerAction:
        if step < 0:
            raise ValueError(f"schedule: step must be non-negative, got {step}")
        if step < skip_first:
            return ProfilerAction.NONE
        step -= skip_first
        if skip_first_wait:
            step += wait
        cycle = wait + warmup + active
        if repeat > 0 and step / cycle >= repeat:
            return ProfilerAction.NONE
        mod = step % cycle
        if mod < wait:
            return ProfilerAction.NONE
        if mod < wait + warmup:
            return ProfilerAction.WARMUP
        return ProfilerAction.RECORD if mod < cycle - 1 else ProfilerAction.RECORD_AND_SAVE

    return schedule_fn


def _default_schedule(step: int) -> ProfilerAction:
    return ProfilerAction.RECORD


for _obj in (ProfilerAction, schedule):
    _obj.__module__ = "ember.profiler.profiler"
del _obj
