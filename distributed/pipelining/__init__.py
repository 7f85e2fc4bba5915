"""``ember.distributed.pipelining``: PyTorch's pipeline parallelism API.

Split a model into stages (by hand with ``PipelineStage``, or with ``pipe_split()`` /
``SplitPoint`` and ``pipeline(...)``), place one or more stages per rank, and drive them with
``ScheduleGPipe``, ``Schedule1F1B``, ``ScheduleInterleaved1F1B``, ``ScheduleLoopedBFS`` or the
zero-bubble ``ScheduleInterleavedZeroBubble`` / ``ScheduleZBVZeroBubble`` /
``ScheduleDualPipeV``. See docs/pipelining.md.
"""

from ._IR import Pipe, SplitPoint, pipe_split, pipeline
from .microbatch import TensorChunkSpec, merge_chunks, split_args_kwargs_into_chunks
from .schedules import (
    PipelineScheduleMulti,
    PipelineScheduleSingle,
    Schedule1F1B,
    ScheduleDualPipeV,
    ScheduleGPipe,
    ScheduleInterleaved1F1B,
    ScheduleInterleavedZeroBubble,
    ScheduleLoopedBFS,
    ScheduleZBVZeroBubble,
)
from .stage import PipelineStage

__all__ = [
    "Pipe",
    "SplitPoint",
    "pipe_split",
    "pipeline",
    "PipelineScheduleMulti",
    "PipelineScheduleSingle",
    "PipelineStage",
    "Schedule1F1B",
    "ScheduleDualPipeV",
    "ScheduleGPipe",
    "ScheduleInterleaved1F1B",
    "ScheduleInterleavedZeroBubble",
    "ScheduleLoopedBFS",
    "ScheduleZBVZeroBubble",
    "TensorChunkSpec",
    "merge_chunks",
    "split_args_kwargs_into_chunks",
]
