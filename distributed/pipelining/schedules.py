"""Pipeline schedules: ``ScheduleGPipe``, ``Schedule1F1B`` (one stage per rank),
``ScheduleInterleaved1F1B``, ``ScheduleLoopedBFS``, the zero-bubble schedules (several stages
per rank) and the V-shaped ``ScheduleZBVZeroBubble`` / ``ScheduleDualPipeV``, with PyTorch's
constructor and ``step(*args, target=..., losses=...)``.

``step`` splits the batch into ``n_microbatches`` along dim 0, runs this rank's actions in the
schedule's order (``_orders``), computes ``loss_fn(output, target)`` per micro-batch on the
last stage, and divides the gradients by ``n_microbatches`` (``scale_grads``), so a step's
gradients equal those of the whole batch's mean loss.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import ember

from ._orders import (
    Action,
    dual_pipe_v_order,
    gpipe_order,
    interleaved_order,
    looped_bfs_order,
    one_f_one_b_order,
    simulate,
    zero_bubble_orders,
)
from .microbatch import TensorChunkSpec, merge_chunks, split_args_kwargs_into_chunks
from .stage import PipelineStage

__all__ = [
    "PipelineScheduleMulti",
    "PipelineScheduleSingle",
    "Schedule1F1B",
    "ScheduleDualPipeV",
    "ScheduleGPipe",
    "ScheduleInterleaved1F1B",
    "ScheduleInterleavedZeroBubble",
    "ScheduleLoopedBFS",
    "ScheduleZBVZeroBubble",
]


class _PipelineSchedule:
    """Shared ``step`` machinery: micro-batching, the action loop, losses and outputs."""

    def __init__(
        self,
        stages: list[PipelineStage],
        n_microbatches: int,
        loss_fn: Callable | None = None,
        args_chunk_spec: tuple[TensorChunkSpec, ...] | None = None,
        kwargs_chunk_spec: dict[str, TensorChunkSpec] | None = None,
        output_merge_spec: Any = None,
        scale_grads: bool = True,
    ) -> None:
        if not isinstance(n_microbatches, int) or n_microbatches < 1:
            raise ValueError(f"n_microbatches must be a positive int, got {n_microbatches!r}")
        for s in stages:
            if not isinstance(s, PipelineStage):
                raise TypeError(f"expected PipelineStage, got {type(s).__name__}")
        self._stages = {s.stage_index: s for s in stages}
        self._n_microbatches = n_microbatches
        self._loss_fn = loss_fn
        self._has_backward = loss_fn is not None
        self._args_chunk_spec, self._kwargs_chunk_spec = args_chunk_spec, kwargs_chunk_spec
        self._output_merge_spec = output_merge_spec
        self.scale_grads = scale_grads
        first = stages[0]
        self._num_stages, self._group = first.num_stages, first.group
        self._group_size, self._rank = first.group_size, first.group_rank
        for s in stages:
            s._local = dict(self._stages)
            s.has_backward = self._has_backward
        self.pipeline_order: dict[int, list[Action]] = {}
        # the last step's compute, per action: (stage, "F"|"L"|"B", micro-batch, perf_counter
        # start, end, this thread's CPU seconds); an ember extension, for bubble measurements
        self.timeline: list[tuple[int, str, int, float, float, float]] = []
        self.step_start = self.step_end = 0.0

    def _check_orders(self) -> None:
        # every rank computes every rank's order; the simulator proves them deadlock-free
        simulate(self.pipeline_order, self._num_stages)

    def step(
        self,
        *args: Any,
        target: Any = None,
        losses: list | None = None,
        return_outputs: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Run one step over the whole batch ``args``/``kwargs`` (used by the rank holding
        stage 0), ``target`` (used by the rank holding the last stage); per-micro-batch losses
        are appended to ``losses``. Returns the merged output on the last stage's rank."""
        if self._has_backward and not ember.is_grad_enabled():
            raise RuntimeError(
                "step() requires gradients to be enabled for backward computation; it should "
                "not be used under ember.no_grad()"
            )
        if losses is not None and not isinstance(losses, list):
            raise TypeError(f"losses must be a list but got a {type(losses).__name__}")
        n = self._n_microbatches
        arg_mbs, kwarg_mbs = split_args_kwargs_into_chunks(
            args, kwargs, n, self._args_chunk_spec, self._kwargs_chunk_spec
        )
        has_last = self._num_stages - 1 in self._stages
        target_mbs = None
        if has_last and self._has_backward:
            if target is None:
                raise ValueError("the last stage needs target= to compute loss_fn")
            target_mbs = [t[0] for t in split_args_kwargs_into_chunks((target,), None, n)[0]]
        if 0 in self._stages and not args and not kwargs:
            raise ValueError("the rank holding stage 0 must pass the batch to step()")
        for s in self._stages.values():
            s.clear_runtime_states()
        self.step_start = time.perf_counter()
        mb_losses = self._run(arg_mbs, kwarg_mbs, target_mbs)
        self.step_end = time.perf_counter()
        self.timeline = sorted(
            (s.stage_index, *event) for s in self._stages.values() for event in s._events
        )
        if losses is not None and has_last and self._has_backward:
            losses.extend(mb_losses[i] for i in range(n))
        if has_last and return_outputs:
            return merge_chunks(
                self._stages[self._num_stages - 1].output_chunks, self._output_merge_spec
            )
        return None

    def _run(self, arg_mbs: list, kwarg_mbs: list, target_mbs: list | None) -> dict:
        mb_losses: dict[int, Any] = {}
        try:
            for a in self.pipeline_order[self._rank]:
                stage = self._stages[a.stage]
                if a.kind == "F":
                    if stage.is_first:
                        out = stage.forward_one_chunk(a.mb, arg_mbs[a.mb], kwarg_mbs[a.mb])
                    else:
                        out = stage.forward_one_chunk(a.mb)
                    if stage.is_last and self._has_backward:
                        t0, c0 = time.perf_counter(), time.thread_time()
                        mb_losses[a.mb] = self._loss_fn(out, target_mbs[a.mb])
                        t1, c1 = time.perf_counter(), time.thread_time()
                        stage._events.append(("L", a.mb, t0, t1, c1 - c0))
                elif not self._has_backward:
                    continue
                elif a.kind == "W":
                    stage.backward_weight_one_chunk(a.mb)
                else:  # "B", or "I": the input half of a split backward
                    stage.backward_one_chunk(a.mb, mb_losses.get(a.mb), a.kind == "B")
            for s in self._stages.values():
                s._wait_sends()
        finally:
            for s in self._stages.values():
                s._cache.clear()
                s._weight_work.clear()
        if self._has_backward and self.scale_grads:
            for s in self._stages.values():
                s.scale_grads(self._n_microbatches)
        return {i: v.detach() for i, v in mb_losses.items()}


class PipelineScheduleSingle(_PipelineSchedule):
    """A schedule with exactly one stage per rank (``num_stages == group size``)."""

    _order_fn: Callable = staticmethod(gpipe_order)

    def __init__(
        self,
        stage: PipelineStage,
        n_microbatches: int,
        loss_fn: Callable | None = None,
        args_chunk_spec: tuple[TensorChunkSpec, ...] | None = None,
        kwargs_chunk_spec: dict[str, TensorChunkSpec] | None = None,
        output_merge_spec: Any = None,
        scale_grads: bool = True,
    ) -> None:
        super().__init__(
            [stage], n_microbatches, loss_fn, args_chunk_spec, kwargs_chunk_spec,
            output_merge_spec, scale_grads,
        )  # fmt: skip
        name = type(self).__name__
        if stage.num_stages != stage.group_size:
            raise ValueError(
                f"{name} runs one stage per rank: num_stages ({stage.num_stages}) must equal "
                f"the group size ({stage.group_size})"
            )
        if stage.stage_index != stage.group_rank:
            raise ValueError(
                f"{name}: rank {stage.group_rank} must hold stage {stage.group_rank}, "
                f"got stage_index {stage.stage_index}"
            )
        p, m = stage.num_stages, n_microbatches
        self.pipeline_order = {r: type(self)._order_fn(r, p, m) for r in range(p)}
        self._check_orders()


class ScheduleGPipe(PipelineScheduleSingle):
    """GPipe: every micro-batch's forward, then every backward. Bubble (p-1)/(m+p-1); keeps
    all ``m`` micro-batches' activations alive."""

    _order_fn = staticmethod(gpipe_order)


class Schedule1F1B(PipelineScheduleSingle):
    """1F1B: warm-up forwards, then alternate one forward and one backward. Same bubble as
    GPipe, (p-1)/(m+p-1), with at most ``p - rank`` micro-batches' activations alive."""

    _order_fn = staticmethod(one_f_one_b_order)


class PipelineScheduleMulti(_PipelineSchedule):
    """A schedule with several stages per rank, placed in a loop: rank ``r`` holds stages
    ``r, r + p, r + 2p, ...``."""

    def __init__(
        self,
        stages: list[PipelineStage],
        n_microbatches: int,
        loss_fn: Callable | None = None,
        args_chunk_spec: tuple[TensorChunkSpec, ...] | None = None,
        kwargs_chunk_spec: dict[str, TensorChunkSpec] | None = None,
        output_merge_spec: Any = None,
        scale_grads: bool = True,
    ) -> None:
        if not isinstance(stages, (list, tuple)) or not stages:
            raise TypeError("stages must be a non-empty list of PipelineStage")
        super().__init__(
            list(stages), n_microbatches, loss_fn, args_chunk_spec, kwargs_chunk_spec,
            output_merge_spec, scale_grads,
        )  # fmt: skip
        name = type(self).__name__
        p, v = stages[0].group_size, len(stages)
        for s in stages:
            if s.num_stages != stages[0].num_stages:
                raise ValueError(
                    f"{name}: stages disagree on num_stages ({s.num_stages} vs "
                    f"{stages[0].num_stages})"
                )
        if self._num_stages != p * v:
            raise ValueError(
                f"{name}: num_stages ({self._num_stages}) must equal the group size ({p}) "
                f"times the stages per rank ({v})"
            )
        want = [self._rank + k * p for k in range(v)]
        got = sorted(s.stage_index for s in stages)
        if got != want:
            raise ValueError(f"{name}: rank {self._rank} must hold stages {want}, got {got}")
        self.pipeline_order = self._all_orders(p, v, n_microbatches)
        self._check_orders()

    def _all_orders(self, p: int, v: int, n_mb: int) -> dict[int, list[Action]]:
        """Every rank's action order (each schedule class defines its own)."""
        raise NotImplementedError


class ScheduleInterleaved1F1B(PipelineScheduleMulti):
    """Interleaved 1F1B (virtual stages): with ``v`` stages per rank the bubble shrinks to
    about (p-1)/(v*m+p-1)."""

    def _all_orders(self, p: int, v: int, n_mb: int) -> dict[int, list[Action]]:
        return {r: interleaved_order(r, p, v, n_mb) for r in range(p)}


class ScheduleLoopedBFS(PipelineScheduleMulti):
    """Looped BFS: each local stage runs all micro-batches' forwards before the next local
    stage (GPipe per stage, stages in a loop over the ranks); backwards in reverse."""

    def _all_orders(self, p: int, v: int, n_mb: int) -> dict[int, list[Action]]:
        return {r: looped_bfs_order(r, p, v, n_mb) for r in range(p)}

    def __init__(
        self,
        stages: list[PipelineStage],
        n_microbatches: int,
        loss_fn: Callable | None = None,
        output_merge_spec: Any = None,
        scale_grads: bool = True,
    ) -> None:
        super().__init__(
            stages, n_microbatches, loss_fn, output_merge_spec=output_merge_spec,
            scale_grads=scale_grads,
        )  # fmt: skip


class ScheduleInterleavedZeroBubble(PipelineScheduleMulti):
    """Zero-bubble pipeline parallelism (Qi et al. 2024) on the loop placement (rank ``r``
    holds stages ``r, r + p, ...``; one stage per rank is allowed): each backward is split
    into its input half ``I``, sent on at once, and its weight half ``W``, deferred to fill
    the time a rank would otherwise wait. The order is built by list scheduling on the ideal
    machine (``_orders.zero_bubble_orders``), not torch's ZB1P construction; gradients are the
    same as any schedule's. With one stage per rank and F = I = W its bubble is ZB-H1's,
    (p-1)/(3m+p-1), against 1F1B's (p-1)/(m+p-1)."""

    def _all_orders(self, p: int, v: int, n_mb: int) -> dict[int, list[Action]]:
        return zero_bubble_orders({s: s % p for s in range(p * v)}, n_mb)


class _VSchedule(_PipelineSchedule):
    """Two stages per rank in a V: rank ``r`` holds stages ``r`` and ``2p - 1 - r`` (so the
    last stage sits on rank 0 and the loss is computed where the batch enters). Sets the
    stages' rank mapping to the V; subclasses give the orders."""

    def __init__(
        self,
        stages: list[PipelineStage],
        n_microbatches: int,
        loss_fn: Callable | None = None,
        args_chunk_spec: tuple[TensorChunkSpec, ...] | None = None,
        kwargs_chunk_spec: dict[str, TensorChunkSpec] | None = None,
        output_merge_spec: Any = None,
        scale_grads: bool = True,
    ) -> None:
        name = type(self).__name__
        if not isinstance(stages, (list, tuple)) or len(stages) != 2:
            got = len(stages) if isinstance(stages, (list, tuple)) else type(stages).__name__
            raise ValueError(f"{name} needs exactly two stages per rank, got {got}")
        super().__init__(
            list(stages), n_microbatches, loss_fn, args_chunk_spec, kwargs_chunk_spec,
            output_merge_spec, scale_grads,
        )  # fmt: skip
        p, r = self._group_size, self._rank
        if self._num_stages != 2 * p:
            raise ValueError(
                f"{name}: num_stages ({self._num_stages}) must be twice the group size ({p})"
            )
        got, want = sorted(s.stage_index for s in stages), [r, 2 * p - 1 - r]
        if got != want:
            raise ValueError(f"{name}: rank {r} must hold stages {want}, got {got}")
        placement = {s: s if s < p else 2 * p - 1 - s for s in range(2 * p)}
        for s in stages:
            s.stage_index_to_group_rank = dict(placement)
        self.pipeline_order = self._all_orders(placement, p, n_microbatches)
        self._check_orders()

    def _all_orders(self, placement: dict, p: int, n_mb: int) -> dict[int, list[Action]]:
        raise NotImplementedError


class ScheduleZBVZeroBubble(_VSchedule):
    """The ZB-V schedule (Qi et al. 2024, section 6): exactly two stages per rank in a V,
    rank ``r`` holding stages ``r`` and ``2p - 1 - r`` (so the last stage sits on rank 0 and
    the loss is computed where the batch enters), with split backwards as in
    :class:`ScheduleInterleavedZeroBubble`. The stages' rank mapping is set to the V."""

    def _all_orders(self, placement: dict, p: int, n_mb: int) -> dict[int, list[Action]]:
        return zero_bubble_orders(placement, n_mb)


class ScheduleDualPipeV(_VSchedule):
    """DualPipeV (the V variant of DeepSeek-V3's DualPipe, arXiv 2412.19437; torch 2.7+'s
    ``ScheduleDualPipeV``): the V placement of :class:`ScheduleZBVZeroBubble`, with torch's
    order (``_orders.dual_pipe_v_order``): in the steady state each forward of one local stage
    is paired with a full backward of the other (on a GPU the pair's compute and
    communication overlap; here they run one after the other), and the warm-up and drain
    split backwards into ``I`` and deferred ``W``. Needs ``n_microbatches >= num_stages``."""

    def __init__(
        self,
        stages: list[PipelineStage],
        n_microbatches: int,
        loss_fn: Callable | None = None,
        args_chunk_spec: tuple[TensorChunkSpec, ...] | None = None,
        kwargs_chunk_spec: dict[str, TensorChunkSpec] | None = None,
        output_merge_spec: Any = None,
        scale_grads: bool = True,
    ) -> None:
        if isinstance(stages, (list, tuple)) and stages and isinstance(n_microbatches, int):
            n_stages = getattr(stages[0], "num_stages", None)
            if n_stages is not None and n_microbatches < n_stages:
                raise ValueError(
                    f"ScheduleDualPipeV requires at least as many micro-batches as stages, "
                    f"but got n_microbatches ({n_microbatches}) and num_stages ({n_stages})"
                )
        super().__init__(
            stages, n_microbatches, loss_fn, args_chunk_spec, kwargs_chunk_spec,
            output_merge_spec, scale_grads,
        )  # fmt: skip

    def _all_orders(self, placement: dict, p: int, n_mb: int) -> dict[int, list[Action]]:
        return {r: dual_pipe_v_order(r, p, n_mb) for r in range(p)}
