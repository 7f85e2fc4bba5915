"""``ember.profiler.profile``: PyTorch's profiler API over ember's op hooks.

CPU time per op comes from ``Function.apply`` (every differentiable op, forward), the autograd
engine (each node's backward, as ``autograd::engine::evaluate_function: XBackward0``) and the
no-grad builders (comparisons, logical ops); ``record_function`` adds user ranges. With
``ProfilerActivity.CUDA`` on a GPU, each op on CuPy arrays is bracketed by CUDA events and its
device time read when recording stops.
"""

from __future__ import annotations

import enum
import functools
import gzip
import json
import os
import socket
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from . import _record
from ._events import EventList, FunctionEvent, chrome_trace
from ._schedule import ProfilerAction, _default_schedule, schedule

__all__ = [
    "profile",
    "schedule",
    "ProfilerAction",
    "ProfilerActivity",
    "record_function",
    "tensorboard_trace_handler",
    "supported_activities",
    "kineto_available",
]


class ProfilerActivity(enum.Enum):
    """The devices a :class:`profile` can record: ``CPU`` and ``CUDA`` (``XPU`` and ``MTIA``
    exist for PyTorch's names; ember has no such devices)."""

    CPU = 0
    XPU = 1
    MTIA = 2
    CUDA = 3
    HPU = 4
    PrivateUse1 = 5


def supported_activities() -> set:
    """CPU always; CUDA when CuPy sees a GPU."""
    from ..cuda._lazy import has_cuda

    return {ProfilerActivity.CPU, ProfilerActivity.CUDA} if has_cuda() else {ProfilerActivity.CPU}


def kineto_available() -> bool:
    """ember's profiler is its own, not Kineto."""
    return False


class record_function:
    """Label a block (context manager) or a function (decorator) in the profile.

    Args:
        name (str): the label shown in the table and the trace.
        args (str, optional): extra text kept with the range.
    """

    def __init__(self, name: str, args: str | None = None) -> None:
        if not isinstance(name, str):
            raise TypeError(f"record_function: name must be a str, got {type(name).__name__}")
        self.name, self.args = name, args
        self._token = None

    def __enter__(self):
        self._token = _record.push_range(self.name)
        return self

    def __exit__(self, *exc) -> bool:
        token, self._token = self._token, None
        _record.pop_range(token, self.name)
        return False

    def __call__(self, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with record_function(self.name, self.args):
                return fn(*args, **kwargs)

        return wrapper


def _finish(rec: _record.Recorder, use_device: str | None) -> list[FunctionEvent]:
    """Raw events -> FunctionEvents with parents/children (per thread, by nesting)."""
    events = []
    raw = sorted(rec.events, key=lambda r: (r.tid, r.t0, -r.t1))
    for i, r in enumerate(raw):
        dev = 0.0
        if r.cuda is not None:  # pragma: no cover - GPU
            from ..backend import _cupy

            r.cuda[1].synchronize()
            dev = _cupy.cupy.cuda.get_elapsed_time(r.cuda[0], r.cuda[1]) * 1000.0
        events.append(
            FunctionEvent(
                i,
                r.name,
                r.tid,
                rec.to_us(r.t0),
                rec.to_us(r.t1),
                r.shapes,
                r.stack,
                r.mem,
                dev,
                r.cat == _record.USER_ANNOTATION,
                r.cat,
            )
        )
    stack: list = []
    for e, r in zip(events, raw):
        while stack and (stack[-1][1].tid != r.tid or stack[-1][1].t1 <= r.t0):
            stack.pop()
        if stack:
            parent = stack[-1][0]
            e.cpu_parent = parent
            parent.cpu_children.append(e)
        stack.append((e, r))
    return events


class profile:
    """Profile ops (PyTorch's ``torch.profiler.profile``).

    Args:
        activities: ``ProfilerActivity.CPU`` and/or ``ProfilerActivity.CUDA`` (default: what
            :func:`supported_activities` returns).
        schedule: ``step -> ProfilerAction`` (see :func:`schedule`); without one, everything
            between start and stop is recorded.
        on_trace_ready: called with this profiler whenever a recorded cycle ends (e.g.
            :func:`tensorboard_trace_handler`).
        record_shapes (bool): keep each op's input shapes.
        profile_memory (bool): keep the bytes each op allocated for its outputs.
        with_stack (bool): keep the Python call stack of each op (``Source Location``).
        with_flops (bool): accepted for PyTorch compatibility; ignored. So are
            ``with_modules``, ``experimental_config``, ``execution_trace_observer``,
            ``acc_events``, ``custom_trace_id_callback`` and ``post_processing_timeout_s``.
        use_cuda (bool, optional): deprecated spelling of ``ProfilerActivity.CUDA``.
    """

    def __init__(
        self,
        *,
        activities: Iterable[ProfilerActivity] | None = None,
        schedule: Callable[[int], ProfilerAction] | None = None,
        on_trace_ready: Callable[..., Any] | None = None,
        record_shapes: bool = False,
        profile_memory: bool = False,
        with_stack: bool = False,
        with_flops: bool = False,
        with_modules: bool = False,
        experimental_config=None,
        execution_trace_observer=None,
        acc_events: bool = False,
        use_cuda: bool | None = None,
        custom_trace_id_callback=None,
        post_processing_timeout_s=None,
    ) -> None:
        acts = set(activities) if activities is not None else supported_activities()
        for a in acts:
            if not isinstance(a, ProfilerActivity):
                raise TypeError(f"profile: activities must be ProfilerActivity members, got {a!r}")
        if use_cuda:
            warnings.warn(
                "The attribute `use_cuda` will be deprecated soon, please use "
                "``activities=[ProfilerActivity.CUDA]`` instead.",
                FutureWarning,
                stacklevel=2,
            )
            acts.add(ProfilerActivity.CUDA)
        if schedule is not None and not callable(schedule):
            raise TypeError("profile: schedule must be callable (step -> ProfilerAction)")
        if on_trace_ready is not None and not callable(on_trace_ready):
            raise TypeError("profile: on_trace_ready must be callable (profiler -> None)")
        self.activities = acts
        self.schedule = schedule or _default_schedule
        self.record_steps = schedule is not None  # ProfilerStep#N ranges, as PyTorch
        self.on_trace_ready = on_trace_ready
        self.record_shapes, self.profile_memory = record_shapes, profile_memory
        self.with_stack, self.with_flops, self.with_modules = with_stack, with_flops, with_modules
        self.acc_events = acc_events
        self.step_num = 0
        self.current_action = ProfilerAction.NONE
        self._rec: _record.Recorder | None = None
        self._events: list[FunctionEvent] | None = None
        self._metadata: dict = {}
        self._step_token = None

    # ---- lifecycle -----------------------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.step_num = 0
        self.current_action = self.schedule(0)
        if self._recording(self.current_action):
            self._start_trace()
        if self.record_steps:
            self._step_token = _record.push_range("ProfilerStep#0")

    def stop(self) -> None:
        self._end_step()
        if self._rec is not None:
            self._stop_trace()
            if self.on_trace_ready is not None:
                self.on_trace_ready(self)
        self.current_action = ProfilerAction.NONE

    def step(self) -> None:
        """Mark the end of a training step: the schedule decides what the next one does."""
        self._end_step()
        prev = self.current_action
        self.step_num += 1
        self.current_action = self.schedule(self.step_num)
        if prev is ProfilerAction.RECORD_AND_SAVE or (
            self._recording(prev) and not self._recording(self.current_action)
        ):
            if prev is not ProfilerAction.RECORD_AND_SAVE:
                warnings.warn(
                    "Incomplete profiler cycle: the schedule left RECORD without RECORD_AND_SAVE",
                    stacklevel=2,
                )
            self._stop_trace()
            if self.on_trace_ready is not None:
                self.on_trace_ready(self)
        if self._recording(self.current_action) and self._rec is None:
            self._start_trace()
        if self.record_steps:
            self._step_token = _record.push_range(f"ProfilerStep#{self.step_num}")

    @staticmethod
    def _recording(action: ProfilerAction) -> bool:
        return action in (ProfilerAction.RECORD, ProfilerAction.RECORD_AND_SAVE)

    def _end_step(self) -> None:
        token, self._step_token = self._step_token, None
        _record.pop_range(token, f"ProfilerStep#{self.step_num}")

    def _start_trace(self) -> None:
        self._rec = _record.Recorder(
            self.record_shapes,
            self.profile_memory,
            self.with_stack,
            ProfilerActivity.CUDA in self.activities,
        )
        self._events = None
        _record.start(self._rec)

    def _stop_trace(self) -> None:
        rec, self._rec = self._rec, None
        _record.stop(rec)
        self._mem_rec = (rec.mem_events, _record._perf(), rec.to_us)
        self._events = _finish(rec, "cuda" if rec.use_cuda else None)
        self._base_ns = rec.wall0

    # ---- results -------------------------------------------------------------------------
    def events(self) -> EventList:
        """The events of the last recorded cycle."""
        if self._events is None:
            raise RuntimeError(
                "Profiler didn't finish running: no results before the first recorded cycle ends"
            )
        return EventList(
            self._events,
            use_device="cuda" if any(e.device_time_total for e in self._events) else None,
            profile_memory=self.profile_memory,
            with_stack=self.with_stack,
            trace_meta=self._trace_meta(),
        )

    def key_averages(
        self,
        group_by_input_shape: bool = False,
        group_by_stack_n: int = 0,
        group_by_overload_name: bool = False,
    ) -> EventList:
        """Events averaged per op name (and input shapes / stack frames when asked)."""
        if group_by_input_shape and not self.record_shapes:
            raise ValueError(
                "key_averages(group_by_input_shape=True) needs profile(record_shapes=True)"
            )
        if group_by_stack_n and not self.with_stack:
            raise ValueError("key_averages(group_by_stack_n=...) needs profile(with_stack=True)")
        return self.events().key_averages(group_by_input_shape, group_by_stack_n)

    def _trace_meta(self) -> dict:
        meta = {
            "record_shapes": int(self.record_shapes),
            "profile_memory": int(self.profile_memory),
            "with_stack": int(self.with_stack),
            "baseTimeNanoseconds": getattr(self, "_base_ns", 0),
            # torch's (kineto's) trace id: 32 upper-case hex digits per trace
            "trace_id": uuid.uuid4().hex.upper(),
        }
        meta.update(self._metadata)
        return meta

    def export_chrome_trace(self, path: str) -> None:
        """Write the last cycle as Chrome trace JSON (gzip when ``path`` ends in ``.gz``)."""
        doc = chrome_trace(self.events(), self._trace_meta())
        doc["traceName"] = path
        if path.endswith(".gz"):
            with gzip.open(path, "wt") as f:
                json.dump(doc, f)
        else:
            with open(path, "w") as f:
                json.dump(doc, f)

    def export_memory_timeline(self, path: str, device: str | None = None) -> None:
        """Write the memory held by op outputs over the last cycle: ``.html`` (a plot),
        ``.json`` / ``.json.gz`` (``[times, sizes by category]``) or ``.raw.json.gz``
        (``(time, action, bytes, category)``), as PyTorch. Needs ``record_shapes``,
        ``profile_memory`` and ``with_stack``; every byte is in the "Unknown" category."""
        from . import _memory_timeline

        _memory_timeline.export(self, path, device)

    def export_stacks(self, path: str, metric: str = "self_cpu_time_total") -> None:
        if not self.with_stack:
            raise ValueError("export_stacks needs profile(with_stack=True)")
        self.events().export_stacks(path, metric)

    def add_metadata(self, key: str, value: str) -> None:
        self._metadata[key] = value

    def add_metadata_json(self, key: str, value: str) -> None:
        self._metadata[key] = json.loads(value)


def tensorboard_trace_handler(
    dir_name: str,
    worker_name: str | None = None,
    use_gzip: bool = False,
    use_python_export: bool = False,
):
    """An ``on_trace_ready`` that writes ``<worker>.<ns>.pt.trace.json[.gz]`` into
    ``dir_name`` (the layout TensorBoard's profiler plugin reads)."""
    os.makedirs(dir_name, exist_ok=True)

    def handler(prof: profile) -> None:
        name = worker_name or f"{socket.gethostname()}_{os.getpid()}"
        fname = f"{name}.{time.time_ns()}.pt.trace.json" + (".gz" if use_gzip else "")
        prof.export_chrome_trace(os.path.join(dir_name, fname))

    return handler
