"""``ember.profiler``: PyTorch's ``torch.profiler`` — per-op CPU (and CUDA) time, input
shapes, output memory, Python stacks; tables, Chrome traces and TensorBoard trace files.

See docs/profiling.md.
"""

from ._events import EventList, FunctionEvent, FunctionEventAvg
from .profiler import (
    ProfilerAction,
    ProfilerActivity,
    kineto_available,
    profile,
    record_function,
    schedule,
    supported_activities,
    tensorboard_trace_handler,
)

__all__ = [
    "profile",
    "schedule",
    "supported_activities",
    "tensorboard_trace_handler",
    "ProfilerAction",
    "ProfilerActivity",
    "kineto_available",
    "record_function",
    "EventList",
    "FunctionEvent",
    "FunctionEventAvg",
]
