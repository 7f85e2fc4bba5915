"""Profiler results: ``FunctionEvent``, ``FunctionEventAvg``, ``EventList`` with
``key_averages()``, ``table()`` and ``export_chrome_trace()`` (PyTorch's
``torch.autograd.profiler_util``)."""

from __future__ import annotations

import json
import os
import socket
from collections import OrderedDict

__all__ = ["FunctionEvent", "FunctionEventAvg", "EventList"]


def _format_time(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:.3f}s"
    if us >= 1e3:
        return f"{us / 1e3:.3f}ms"
    return f"{us:.3f}us"


def _format_memory(nbytes: int) -> str:
    # torch 2.x's units (KB / MB / GB; its 1.x tables said Kb / Mb / Gb)
    kb, mb, gb = 1024, 1024**2, 1024**3
    if abs(nbytes) >= gb:
        return f"{nbytes / gb:.2f} GB"
    if abs(nbytes) >= mb:
        return f"{nbytes / mb:.2f} MB"
    if abs(nbytes) >= kb:
        return f"{nbytes / kb:.2f} KB"
    return f"{nbytes} B"


class FunctionEvent:
    """One recorded op or range. Times are microseconds."""

    def __init__(
        self,
        id: int,
        name: str,
        thread: int,
        start_us: float,
        end_us: float,
        input_shapes=None,
        stack=None,
        cpu_memory_usage: int = 0,
        device_time: float = 0.0,
        is_user_annotation: bool = False,
        cat: str = "cpu_op",
    ) -> None:
        self.id, self.name, self.thread = id, name, thread
        self.start_us, self.end_us = start_us, end_us
        self.input_shapes = input_shapes or []
        self.stack = stack or []
        self.cpu_memory_usage = cpu_memory_usage
        self.device_time_total = device_time
        self.is_user_annotation = is_user_annotation
        self.cat = cat
        self.cpu_children: list[FunctionEvent] = []
        self.cpu_parent: FunctionEvent | None = None
        self.count = 1

    key = property(lambda self: self.name)
    cpu_time_total = property(lambda self: self.end_us - self.start_us)
    cpu_time = cpu_time_total
    cuda_time_total = property(lambda self: self.device_time_total)
    device_time = property(lambda self: self.device_time_total)

    @property
    def self_cpu_time_total(self) -> float:
        return self.cpu_time_total - sum(c.cpu_time_total for c in self.cpu_children)

    @property
    def self_cpu_memory_usage(self) -> int:
        return self.cpu_memory_usage - sum(c.cpu_memory_usage for c in self.cpu_children)

    @property
    def self_device_time_total(self) -> float:
        return self.device_time_total - sum(c.device_time_total for c in self.cpu_children)

    def __repr__(self) -> str:
        return (
            f"<FunctionEvent id={self.id} name={self.name} thread={self.thread} "
            f"cpu_time={_format_time(self.cpu_time_total)} "
            f"input_shapes={self.input_shapes}>"
        )


class FunctionEventAvg:
    """Events with the same key (and shapes/stack when grouped by them), summed."""

    def __init__(self) -> None:
        self.key: str | None = None
        self.count = 0
        self.cpu_time_total = 0.0
        self.self_cpu_time_total = 0.0
        self.device_time_total = 0.0
        self.self_device_time_total = 0.0
        self.cpu_memory_usage = 0
        self.self_cpu_memory_usage = 0
        self.input_shapes = None
        self.stack = None
        self.is_user_annotation = False

    def add(self, other) -> FunctionEventAvg:
        if self.key is None:
            self.key = other.key
            self.input_shapes = other.input_shapes
            self.stack = other.stack
            self.is_user_annotation = other.is_user_annotation
        self.count += other.count
        self.cpu_time_total += other.cpu_time_total
        self.self_cpu_time_total += other.self_cpu_time_total
        self.device_time_total += other.device_time_total
        self.self_device_time_total += other.self_device_time_total
        self.cpu_memory_usage += other.cpu_memory_usage
        self.self_cpu_memory_usage += other.self_cpu_memory_usage
        return self

    __iadd__ = add

    cpu_time = property(lambda self: self.cpu_time_total / max(self.count, 1))
    device_time = property(lambda self: self.device_time_total / max(self.count, 1))
    cuda_time = device_time
    cuda_time_total = property(lambda self: self.device_time_total)
    self_cuda_time_total = property(lambda self: self.self_device_time_total)

    def __repr__(self) -> str:
        return (
            f"<FunctionEventAvg key={self.key} self_cpu_time="
            f"{_format_time(self.self_cpu_time_total)} cpu_time="
            f"{_format_time(self.cpu_time)} input_shapes={self.input_shapes}>"
        )


# sort keys a table accepts (PyTorch's spellings; cuda_* are aliases of device_*)
SORT_KEYS = (
    "cpu_time",
    "cuda_time",
    "device_time",
    "cpu_time_total",
    "cuda_time_total",
    "device_time_total",
    "self_cpu_time_total",
    "self_cuda_time_total",
    "self_device_time_total",
    "cpu_memory_usage",
    "self_cpu_memory_usage",
    "count",
)


class EventList(list):
    """A list of events with PyTorch's reporting methods."""

    def __init__(
        self,
        *args,
        use_device: str | None = None,
        profile_memory: bool = False,
        with_stack: bool = False,
        trace_meta: dict | None = None,
    ) -> None:
        super().__init__(*args)
        self._use_device = use_device
        self._profile_memory = profile_memory
        self._with_stack = with_stack
        self._trace_meta = trace_meta or {}

    @property
    def self_cpu_time_total(self) -> float:
        return sum(e.self_cpu_time_total for e in self)

    def key_averages(
        self, group_by_input_shapes: bool = False, group_by_stack_n: int = 0
    ) -> EventList:
        """One ``FunctionEventAvg`` per op name (and input shapes / top ``n`` stack frames)."""
        stats: OrderedDict = OrderedDict()
        for e in self:
            key = (e.key,)
            if group_by_input_shapes:
                key += (str(e.input_shapes),)
            if group_by_stack_n:
                key += tuple(e.stack[:group_by_stack_n])
            stats.setdefault(key, FunctionEventAvg()).add(e)
        out = EventList(
            stats.values(),
            use_device=self._use_device,
            profile_memory=self._profile_memory,
            with_stack=self._with_stack,
        )
        out._grouped_shapes = group_by_input_shapes
        out._stack_n = group_by_stack_n
        return out

    def total_average(self) -> FunctionEventAvg:
        total = FunctionEventAvg()
        for e in self:
            total.add(e)
        total.key = "Total"
        return total

    def table(
        self,
        sort_by: str | None = None,
        row_limit: int = 100,
        max_src_column_width: int = 75,
        max_name_column_width: int = 55,
        max_shapes_column_width: int = 80,
        header: str | None = None,
        top_level_events_only: bool = False,
    ) -> str:
        """The events (or averages) as a text table, PyTorch's layout."""
        from ._table import build_table

        if sort_by is not None and sort_by not in SORT_KEYS:
            raise ValueError(f"table: unknown sort_by {sort_by!r}; use one of {list(SORT_KEYS)}")
        return build_table(
            self,
            sort_by,
            row_limit,
            max_src_column_width,
            max_name_column_width,
            max_shapes_column_width,
            header,
            top_level_events_only,
        )

    def export_chrome_trace(self, path: str) -> None:
        """Write the events as Chrome trace JSON (chrome://tracing, Perfetto)."""
        with open(path, "w") as f:
            json.dump(chrome_trace(self, self._trace_meta), f)

    def export_stacks(self, path: str, metric: str = "self_cpu_time_total") -> None:
        """Write ``frame;frame;... value`` lines (flamegraph.pl / speedscope input)."""
        with open(path, "w") as f:
            for e in self:
                if e.stack:
                    frames = ";".join(s.replace(";", ",") for s in reversed(e.stack))
                    f.write(f"{frames};{e.name} {int(getattr(e, metric))}\n")


def chrome_trace(events, meta: dict) -> dict:
    """The Chrome trace document: "X" (complete) events, "i" memory events, "M" names."""
    pid = os.getpid()
    trace = []
    threads = sorted({e.thread for e in events})
    trace.append(
        {"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": "python"}}
    )
    trace.append(
        {"ph": "M", "name": "process_labels", "pid": pid, "tid": 0, "args": {"labels": "CPU"}}
    )
    for t in threads:
        trace.append(
            {
                "ph": "M",
                "name": "thread_name",
                "pid": pid,
                "tid": t,
                "args": {"name": f"thread {t} (python)"},
            }
        )
    has_device = False
    allocated = 0  # the running total TensorBoard's memory view plots
    for i, e in enumerate(events):
        args = {"External id": i + 1, "Ev Idx": i}
        if e.input_shapes:
            args["Input Dims"] = e.input_shapes
        if e.stack:
            args["Call stack"] = ";".join(e.stack)
        trace.append(
            {
                "ph": "X",
                "cat": e.cat,
                "name": e.name,
                "pid": pid,
                "tid": e.thread,
                "ts": e.start_us,
                "dur": e.cpu_time_total,
                "args": args,
            }
        )
        if e.cpu_memory_usage:
            allocated += e.cpu_memory_usage
            trace.append(
                {
                    "ph": "i",
                    "s": "t",
                    "cat": "cpu_instant_event",
                    "name": "[memory]",
                    "pid": pid,
                    "tid": e.thread,
                    "ts": e.start_us,
                    "args": {
                        "Total Reserved": 0,
                        "Total Allocated": allocated,
                        "Bytes": e.cpu_memory_usage,
                        "Device Id": -1,
                        "Device Type": 0,
                        "Addr": 0,
                        "Ev Idx": len(events) + i,
                    },
                }
            )
        if e.device_time_total:  # pragma: no cover - GPU
            has_device = True
            trace.append(
                {
                    "ph": "X",
                    "cat": "kernel",
                    "name": e.name,
                    "pid": "GPU",
                    "tid": "stream",
                    "ts": e.start_us,
                    "dur": e.device_time_total,
                    "args": {"External id": i + 1},
                }
            )
    if has_device:  # pragma: no cover - GPU
        trace.append(
            {"ph": "M", "name": "process_name", "pid": "GPU", "tid": 0, "args": {"name": "GPU"}}
        )
    doc = {
        "schemaVersion": 1,
        "deviceProperties": [],
        "displayTimeUnit": "ms",
        "host_name": socket.gethostname(),
        "traceEvents": trace,
    }
    doc.update(meta)
    return doc
