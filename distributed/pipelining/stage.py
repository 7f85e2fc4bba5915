"""``PipelineStage``: one stage of a pipeline, its forward/backward per micro-batch, and the
point-to-point traffic of activations (forward) and their gradients (backward).

A stage receives its inputs from the previous stage (or, for stage 0, from the step's
micro-batches), runs its submodule, and sends the outputs to the next stage. In backward it
receives the gradients of its outputs, back-propagates through the saved graph, and sends the
gradients of its inputs back. Stages of one rank (interleaved schedules) hand tensors over in
memory; other stages use ``ember.distributed`` ``isend``/``recv``.

Shapes travel once per step: before micro-batch 0's activations, a small header describes the
tensors, so stages need no ``input_args``; when given, the header is checked against them.
"""

from __future__ import annotations

import time
from typing import Any

import ember
import ember.distributed as dist
from ember.autograd._split import backward_input, backward_weight
from ember.nn import Module
from ember.tensor import Tensor

__all__ = ["PipelineStage"]

# Pipeline messages use tags far above the ones user code picks: kind, destination stage and
# micro-batch index make each message's tag unique within a step.
_TAG_BASE = 1 << 40
_FWD, _BWD, _META = 0, 1, 2
_META_LEN = 64
_DTYPES = [
    "float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8",
    "bool_", "complex64", "complex128",
]  # fmt: skip


def _tag(kind: int, num_stages: int, dst_stage: int, mb: int) -> int:
    return _TAG_BASE + ((kind * num_stages + dst_stage) << 24) + mb


def _as_tuple(x: Any) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _describe(ts: tuple) -> list[tuple[tuple, str]]:
    return [(tuple(t.shape), _dtype_name(t.dtype)) for t in ts]


def _dtype_name(d) -> str:
    name = d.name if d.name != "bool" else "bool_"
    if name not in _DTYPES:
        raise TypeError(f"pipeline stages cannot send tensors of dtype {d}")
    return name


def _encode(meta: list[tuple[tuple, str]]) -> Tensor:
    flat = [len(meta)]
    for shape, dt in meta:
        flat += [_DTYPES.index(dt), len(shape), *shape]
    if len(flat) > _META_LEN:
        raise ValueError(f"stage outputs too many/too high-rank tensors to describe: {meta}")
    return ember.tensor(flat + [0] * (_META_LEN - len(flat)), dtype=ember.int64)


def _decode(t: Tensor) -> list[tuple[tuple, str]]:
    v = [int(x) for x in t.tolist()]
    out, i = [], 1
    for _ in range(v[0]):
        dt, nd = _DTYPES[v[i]], v[i + 1]
        out.append((tuple(v[i + 2 : i + 2 + nd]), dt))
        i += 2 + nd
    return out


class PipelineStage:
    """A stage of a pipeline: ``submodule`` is the part of the model this stage runs.

    Args:
        submodule: the stage's module; its ``forward`` takes the previous stage's outputs.
        stage_index: this stage's index in ``[0, num_stages)``.
        num_stages: the pipeline's number of stages.
        device: where received tensors are placed.
        input_args: example inputs of ONE micro-batch (checked against what arrives).
        output_args: example outputs of one micro-batch (checked against what is produced).
        group: the process group carrying the pipeline (default: the world).
    """

    def __init__(
        self,
        submodule: Module,
        stage_index: int,
        num_stages: int,
        device: Any,
        input_args: Tensor | tuple[Tensor, ...] | None = None,
        output_args: Tensor | tuple[Tensor, ...] | None = None,
        group: Any = None,
    ) -> None:
        if not isinstance(submodule, Module):
            raise TypeError(f"submodule must be an ember.nn.Module, got {type(submodule).__name__}")
        if not isinstance(num_stages, int) or num_stages < 1:
            raise ValueError(f"num_stages must be a positive int, got {num_stages!r}")
        if not isinstance(stage_index, int) or not 0 <= stage_index < num_stages:
            raise ValueError(
                f"stage_index {stage_index!r} is out of range for num_stages {num_stages}"
            )
        self.submod = submodule
        self.stage_index, self.num_stages = stage_index, num_stages
        self.device = ember.device(device) if isinstance(device, str) else device
        self.group = group
        self.group_rank = dist.get_rank(group)
        self.group_size = dist.get_world_size(group)
        self._in_meta = None if input_args is None else _describe(_as_tuple(input_args))
        self._out_meta = None if output_args is None else _describe(_as_tuple(output_args))
        self.stage_index_to_group_rank = {s: s % self.group_size for s in range(num_stages)}
        self.has_backward = True
        self._local: dict[int, PipelineStage] = {}  # stages of this rank, set by the schedule
        self._inbox: dict = {}  # tensors handed over in memory by a stage of this rank
        self.clear_runtime_states()

    # ---- topology ----------------------------------------------------------------------------
    @property
    def is_first(self) -> bool:
        return self.stage_index == 0

    @property
    def is_last(self) -> bool:
        return self.stage_index == self.num_stages - 1

    def _global_rank(self, stage: int) -> int:
        r = self.stage_index_to_group_rank[stage]
        return r if self.group is None else dist.get_global_rank(self.group, r)

    def clear_runtime_states(self) -> None:
        """Forget the previous step's saved activations, outputs and pending sends."""
        self._cache: dict[int, tuple] = {}
        self._weight_work: dict[int, tuple] = {}  # split backwards waiting for their W half
        self.output_chunks: list = []
        self._sends: list = []
        # (kind, micro-batch, wall start, wall end, CPU seconds of this thread)
        self._events: list[tuple[str, int, float, float, float]] = []
        self._recv_meta_of_step: list = []
        # most micro-batches whose activations were kept at once (the schedule's memory cost)
        self.peak_microbatches_alive = 0
        self._inbox.clear()

    # ---- transport ---------------------------------------------------------------------------
    def _send(self, kind: int, dst_stage: int, mb: int, ts: tuple) -> None:
        if dst_stage in self._local:
            self._local[dst_stage]._inbox[(kind, mb)] = tuple(t.detach() for t in ts)
            return
        peer, tag = self._global_rank(dst_stage), _tag(kind, self.num_stages, dst_stage, mb)
        for t in ts:
            self._sends.append(dist.isend(t.detach().contiguous(), peer, group=self.group, tag=tag))

    def _recv(self, kind: int, src_stage: int, mb: int, meta: list) -> tuple:
        if src_stage in self._local:
            return self._inbox.pop((kind, mb))
        peer = self._global_rank(src_stage)
        tag = _tag(kind, self.num_stages, self.stage_index, mb)
        out = []
        for shape, dt in meta:
            buf = ember.empty(shape, dtype=getattr(ember, dt), device=self.device)
            dist.recv(buf, peer, group=self.group, tag=tag)
            out.append(buf)
        return tuple(out)

    def _send_meta(self, outs: tuple) -> None:
        meta = _describe(outs)
        if self._out_meta is not None and meta != self._out_meta:
            raise ValueError(
                f"stage {self.stage_index} produced outputs {meta} but output_args "
                f"describe {self._out_meta}"
            )
        if not self.is_last:
            self._send(_META, self.stage_index + 1, 0, (_encode(meta),))

    def _recv_meta(self) -> list:
        if self.stage_index - 1 in self._local:
            (hdr,) = self._inbox.pop((_META, 0))
        else:
            hdr = ember.zeros(_META_LEN, dtype=ember.int64)
            peer = self._global_rank(self.stage_index - 1)
            dist.recv(
                hdr, peer, group=self.group, tag=_tag(_META, self.num_stages, self.stage_index, 0)
            )
        meta = _decode(hdr)
        if self._in_meta is not None and meta != self._in_meta:
            raise ValueError(
                f"stage {self.stage_index} received inputs {meta} from stage "
                f"{self.stage_index - 1} but input_args describe {self._in_meta}"
            )
        return meta

    # ---- compute -----------------------------------------------------------------------------
    def forward_one_chunk(
        self, fwd_chunk_id: int, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        """Run micro-batch ``fwd_chunk_id`` through this stage: take inputs (``args`` on stage
        0, received ones elsewhere), run the submodule, send the outputs on."""
        if self.is_first:
            inputs, kwargs = tuple(args), dict(kwargs or {})
        else:
            if fwd_chunk_id == 0:
                self._recv_meta_of_step = self._recv_meta()
            meta = self._recv_meta_of_step
            inputs, kwargs = self._recv(_FWD, self.stage_index - 1, fwd_chunk_id, meta), {}
            if self.has_backward:
                inputs = tuple(
                    t.requires_grad_(True) if t.dtype.is_floating_point else t for t in inputs
                )
        t0, c0 = time.perf_counter(), time.thread_time()
        if self.has_backward:
            out = self.submod(*inputs, **kwargs)
        else:
            with ember.no_grad():
                out = self.submod(*inputs, **kwargs)
        self._events.append(("F", fwd_chunk_id, t0, time.perf_counter(), time.thread_time() - c0))
        outs = _as_tuple(out)
        for i, t in enumerate(outs):
            if not isinstance(t, Tensor):
                raise TypeError(
                    f"stage {self.stage_index} output {i} is a {type(t).__name__}; pipeline "
                    "stages must return tensors"
                )
        if fwd_chunk_id == 0:
            self._send_meta(outs)
        if self.is_last:
            self.output_chunks.append(out)
        else:
            self._send(_FWD, self.stage_index + 1, fwd_chunk_id, outs)
        if self.has_backward:
            self._cache[fwd_chunk_id] = (inputs, outs)
            alive = len(self._cache) + len(self._weight_work)  # W halves keep their graphs
            self.peak_microbatches_alive = max(self.peak_microbatches_alive, alive)
        return out

    def backward_one_chunk(
        self, bwd_chunk_id: int, loss: Tensor | None = None, full_backward: bool = True
    ) -> None:
        """Back-propagate micro-batch ``bwd_chunk_id``: from ``loss`` on the last stage, else
        from the received output gradients; send the input gradients to the previous stage.

        ``full_backward=False`` runs only the input half of a split backward (zero-bubble
        schedules); :meth:`backward_weight_one_chunk` runs the rest later."""
        inputs, outs = self._cache.pop(bwd_chunk_id)
        if self.is_last:
            if loss is None:
                raise RuntimeError(
                    f"the last stage needs a loss to run backward of micro-batch {bwd_chunk_id}"
                )
            roots, grads = [loss], None
        else:
            float_outs = [o for o in outs if o.dtype.is_floating_point]
            got = self._recv(_BWD, self.stage_index + 1, bwd_chunk_id, _describe(float_outs))
            pairs = [(o, g) for o, g in zip(float_outs, got) if o.requires_grad]
            roots, grads = [o for o, _ in pairs], [g for _, g in pairs]
        t0, c0 = time.perf_counter(), time.thread_time()
        floats = [x for x in inputs if x.dtype.is_floating_point]
        if full_backward:
            if roots:
                ember.autograd.backward(roots, grads)
            got = [x.grad for x in floats]
        else:
            got = self._backward_input(bwd_chunk_id, roots, grads, floats)
        kind = "B" if full_backward else "I"
        self._events.append((kind, bwd_chunk_id, t0, time.perf_counter(), time.thread_time() - c0))
        if not self.is_first:
            in_grads = tuple(
                g if g is not None else ember.zeros_like(x) for x, g in zip(floats, got)
            )
            self._send(_BWD, self.stage_index - 1, bwd_chunk_id, in_grads)

    def _backward_input(self, mb: int, roots: list, grads: list | None, floats: list) -> list:
        targets = [x for x in floats if x.requires_grad]
        if not roots or not targets:  # stage 0: no input gradients; the weight half does all
            self._weight_work[mb] = ("full", roots, grads)
            return [None] * len(floats)
        seeds = grads if grads is not None else [ember.ones_like(r) for r in roots]
        got, stash = backward_input(roots, seeds, targets)
        self._weight_work[mb] = ("split", stash)
        by_id = {id(x): g for x, g in zip(targets, got)}
        return [by_id.get(id(x)) for x in floats]

    def backward_weight_one_chunk(self, bwd_chunk_id: int) -> None:
        """The weight half of micro-batch ``bwd_chunk_id``'s split backward: accumulate the
        parameters' gradients (after ``backward_one_chunk(..., full_backward=False)``)."""
        work = self._weight_work.pop(bwd_chunk_id, None)
        if work is None:
            raise RuntimeError(
                f"stage {self.stage_index}: no input-gradient half of micro-batch "
                f"{bwd_chunk_id} to finish (call backward_one_chunk(full_backward=False) first)"
            )
        t0, c0 = time.perf_counter(), time.thread_time()
        if work[0] == "split":
            backward_weight(work[1])
        elif work[1]:
            ember.autograd.backward(work[1], work[2])
        self._events.append(("W", bwd_chunk_id, t0, time.perf_counter(), time.thread_time() - c0))

    def scale_grads(self, grad_scale_factor: int) -> None:
        """Divide this stage's parameter gradients by ``grad_scale_factor`` (the number of
        micro-batches: the step's gradient is the mean over micro-batches)."""
        if grad_scale_factor == 1:
            return
        with ember.no_grad():
            for p in self.submod.parameters():
                if p.grad is not None:
                    p.grad.div_(grad_scale_factor)

    def _wait_sends(self) -> None:
        for w in self._sends:
            w.wait()
        self._sends = []
