"""``ember.autograd.profiler``: PyTorch's legacy profiler spellings (``torch.autograd.profiler.
profile`` / ``record_function``), backed by ``ember.profiler``."""

from __future__ import annotations

import contextlib

from ..profiler import EventList, FunctionEvent, FunctionEventAvg, record_function
from ..profiler import profile as _profile
from ..profiler.profiler import ProfilerActivity

__all__ = [
    "profile",
    "record_function",
    "emit_nvtx",
    "emit_itt",
    "EventList",
    "FunctionEvent",
    "FunctionEventAvg",
]


class profile:
    """Context manager recording ops (the legacy autograd profiler).

    Args:
        enabled (bool): ``False`` makes it a no-op.
        use_cuda (bool): also time ops on CUDA (CUDA events; needs a GPU).
        use_device (str, optional): ``"cuda"`` is the same as ``use_cuda=True``.
        record_shapes, profile_memory, with_stack: as ``ember.profiler.profile``.
        with_flops, with_modules, use_kineto, use_cpu, experimental_config, acc_events,
        custom_trace_id_callback, post_processing_timeout_s, activity_filters: accepted
            for PyTorch compatibility.
    """

    def __init__(
        self,
        enabled: bool = True,
        *,
        use_cuda: bool = False,
        use_device: str | None = None,
        record_shapes: bool = False,
        with_flops: bool = False,
        profile_memory: bool = False,
        with_stack: bool = False,
        with_modules: bool = False,
        use_kineto: bool = False,
        use_cpu: bool = True,
        experimental_config=None,
        acc_events: bool = False,
        custom_trace_id_callback=None,
        post_processing_timeout_s=None,
        activity_filters=None,
    ) -> None:
        if use_device not in (None, "cuda", "cpu"):
            raise ValueError(
                f"profile: use_device must be 'cuda', 'cpu' or None, got {use_device!r}"
            )
        acts = [ProfilerActivity.CPU]
        if use_cuda or use_device == "cuda":
            acts.append(ProfilerActivity.CUDA)
        self.enabled = enabled
        self._prof = _profile(
            activities=acts,
            record_shapes=record_shapes,
            profile_memory=profile_memory,
            with_stack=with_stack,
        )
        self.function_events: EventList | None = None

    def __enter__(self):
        if self.enabled:
            self._prof.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._prof.stop()
            self.function_events = self._prof.events()

    def _check(self) -> EventList:
        if self.function_events is None:
            raise RuntimeError("Profiler didn't finish running")
        return self.function_events

    def key_averages(
        self,
        group_by_input_shape: bool = False,
        group_by_stack_n: int = 0,
        group_by_overload_name: bool = False,
    ) -> EventList:
        self._check()
        return self._prof.key_averages(group_by_input_shape, group_by_stack_n)

    def table(self, sort_by: str | None = None, row_limit: int = 100, **kwargs) -> str:
        return self._check().table(sort_by=sort_by, row_limit=row_limit, **kwargs)

    def export_chrome_trace(self, path: str) -> None:
        self._check()
        self._prof.export_chrome_trace(path)

    def export_stacks(self, path: str, metric: str = "self_cpu_time_total") -> None:
        self._check()
        self._prof.export_stacks(path, metric)

    def total_average(self) -> FunctionEventAvg:
        return self._check().total_average()

    @property
    def self_cpu_time_total(self) -> float:
        return self._check().self_cpu_time_total

    def __str__(self) -> str:
        return self.table() if self.function_events is not None else "<unfinished profile>"


@contextlib.contextmanager
def emit_nvtx(enabled: bool = True, record_shapes: bool = False):
    """NVTX ranges for nsys: ember's ``record_function`` ranges are not forwarded; a no-op."""
    yield


@contextlib.contextmanager
def emit_itt(enabled: bool = True, record_shapes: bool = False):
    """Intel ITT ranges: not supported by ember; a no-op."""
    yield
