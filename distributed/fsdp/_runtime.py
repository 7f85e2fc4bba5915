"""What an FSDP unit does around its forward and backward: unshard, views, prefetch, the
pre-backward hook (an autograd Function around the unit's outputs) and the end-of-backward
callback that finishes the gradient reductions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import ember
from ember import _interop
from ember.autograd import Function

from .api import BackwardPrefetch, ShardingStrategy


@dataclass
class _UnitConfig:
    """How a unit's handles behave (derived from the sharding strategy or the ZeRO stage)."""

    process_group: Any
    shard: bool  # flat parameters hold 1/N of the elements (False: NO_SHARD)
    keep_full: bool  # full parameters stay on every rank (ZeRO-1/2)
    reshard_after_forward: bool
    reduce: str  # "reduce_scatter" or "all_reduce"
    backward_prefetch: BackwardPrefetch | None = BackwardPrefetch.BACKWARD_PRE
    forward_prefetch: bool = False
    sync_module_states: bool = False
    bucket_bytes: int | None = None  # None: one flat parameter per dtype
    ignored_params: frozenset = field(default_factory=frozenset)
    ignored_modules: frozenset = field(default_factory=frozenset)
    strategy: ShardingStrategy | None = None
    mixed_precision: Any = None  # a _mixed_precision.MPPolicy (FSDP only)
    # HYBRID_SHARD: the group the reduced gradient shards are all-reduced over (the replicas of
    # this rank's shard on the other hosts); None: no replication
    replicate_group: Any = None
    offload_params: bool = False  # CPUOffload(offload_params=True): shards live on the host
    use_orig_params: bool = False  # the original parameters stay, as views of the flat shard


def config_for(strategy: ShardingStrategy, process_group, **kw) -> _UnitConfig:
    if strategy in (ShardingStrategy.FULL_SHARD, ShardingStrategy.HYBRID_SHARD):
        return _UnitConfig(
            process_group, True, False, True, "reduce_scatter", strategy=strategy, **kw
        )
    if strategy in (ShardingStrategy.SHARD_GRAD_OP, ShardingStrategy._HYBRID_SHARD_ZERO2):
        return _UnitConfig(
            process_group, True, False, False, "reduce_scatter", strategy=strategy, **kw
        )
    if strategy is ShardingStrategy.NO_SHARD:
        return _UnitConfig(
            process_group, False, False, False, "all_reduce", strategy=strategy, **kw
        )
    raise ValueError(
        f"unsupported sharding strategy {strategy!r}: use one of "
        f"{[s.name for s in ShardingStrategy]}"
    )


class _PreBackward(Function):
    """Identity on a unit's outputs; its backward runs before any of the unit's gradient
    computation and gathers the unit's parameters again (and prefetches the next unit)."""

    supports_double_backward = False

    @staticmethod
    def forward(ctx, unit, *arrays):
        ctx.unit = unit
        ctx.set_materialize_grads(False)
        return arrays if len(arrays) > 1 else arrays[0]

    @staticmethod
    def backward(ctx, *grads):
        ctx.unit._pre_backward()
        return (None, *grads)


def _flatten(obj):
    """The tensors inside ``obj`` (tensors, lists, tuples, namedtuples, dicts) and a function
    rebuilding ``obj`` from replacements."""
    if isinstance(obj, ember.Tensor):
        return [obj], lambda xs: xs[0]
    if isinstance(obj, (list, tuple)):
        parts = [_flatten(o) for o in obj]

        def rebuild_seq(xs):
            out, i = [], 0
            for ts, rb in parts:
                out.append(rb(xs[i : i + len(ts)]))
                i += len(ts)
            if hasattr(obj, "_fields"):  # namedtuple
                return type(obj)(*out)
            return type(obj)(out)

        return [t for ts, _ in parts for t in ts], rebuild_seq
    if isinstance(obj, dict):
        keys = list(obj)
        parts = [_flatten(obj[k]) for k in keys]

        def rebuild_map(xs):
            out, i = type(obj)(), 0
            for k, (ts, rb) in zip(keys, parts):
                out[k] = rb(xs[i : i + len(ts)])
                i += len(ts)
            return out

        return [t for ts, _ in parts for t in ts], rebuild_map
    return [], lambda xs: obj


def register_pre_backward(unit, output):
    """Route the unit's outputs that require grad through ``_PreBackward``."""
    tensors, rebuild = _flatten(output)
    idx = [i for i, t in enumerate(tensors) if t.requires_grad]
    if not idx:
        return output, False
    outs = _PreBackward.apply(unit, *[tensors[i] for i in idx])
    if not isinstance(outs, tuple):
        outs = (outs,)
    tensors = list(tensors)
    for i, t in zip(idx, outs):
        tensors[i] = t
    return rebuild(tensors), True


class RootState:
    """Per-iteration state kept by the root unit."""

    def __init__(self, units: list) -> None:
        self.units = units  # every unit under the root (root first), in module order
        self.exec_order: list = []  # units in the order their forward ran this iteration
        self.prev_exec_order: list = []
        self.callback_queued = False

    def start_iteration(self) -> None:
        if self.exec_order:
            self.prev_exec_order = self.exec_order
        self.exec_order = []

    def next_in_forward(self, unit):
        order = self.prev_exec_order
        try:
            i = order.index(unit)
        except ValueError:
            return None
        return order[i + 1] if i + 1 < len(order) else None

    def next_in_backward(self, unit):
        """The unit whose backward comes after ``unit``'s: the latest earlier one in forward
        order whose pre-backward has not run yet."""
        order = self.exec_order
        try:
            i = len(order) - 1 - order[::-1].index(unit)
        except ValueError:
            return None
        for j in range(i - 1, -1, -1):
            cand = order[j]
            if not cand._pre_backward_done and cand is not unit:
                return cand
        return None

    def ensure_callback(self, root) -> None:
        if not self.callback_queued:
            self.callback_queued = True
            _interop.queue_engine_callback(root._finalize_backward)


def clip_grad_norm_(root, max_norm: float, norm_type: float = 2.0):
    """Scale every unit's sharded gradients so that their global norm is at most
    ``max_norm``; returns that norm (before clipping), computed across all ranks."""
    from .. import distributed_c10d as c10d
    from ..reduce_op import ReduceOp

    p = float(norm_type)
    handles = [
        h for u in root.modules() if getattr(u, "_ember_fsdp_unit", False) for h in u._handles
    ]
    inf = p == float("inf")
    local = 0.0
    for h in handles:
        g = h.flat_param.grad
        if g is None or (h.nshards == 1 and h.rank != 0):  # replicated: count it once
            continue
        xp = ember.backend.get_array_module(_interop.array_of(g))
        a = xp.abs(_interop.array_of(g).astype(xp.float64))
        local = max(local, float(a.max())) if inf else local + float((a**p).sum())
    total = ember.tensor([local], dtype=ember.float64)
    if handles:
        c10d.all_reduce(
            total, op=ReduceOp.MAX if inf else ReduceOp.SUM, group=handles[0].config.process_group
        )
    norm = float(total[0]) if inf else float(total[0]) ** (1.0 / p)
    coef = float(max_norm) / (norm + 1e-6)
    if coef < 1.0:
        for h in handles:
            if h.flat_param.grad is not None:
                _interop.array_of(h.flat_param.grad)[...] *= coef
    return ember.tensor(norm)
