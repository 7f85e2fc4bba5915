"""``ZeroDataParallel``: ZeRO-1 and ZeRO-2 as a module wrapper (ember's choice of shape).

Built on FSDP's flat-parameter machinery with full parameters kept on every rank: the module's
parameters are bucketed (``bucket_cap_mb``) into flat storages, and ``parameters()`` yields
one flat parameter per bucket that VIEWS this rank's 1/N of that storage. An ordinary
optimizer built over ``model.parameters()`` therefore keeps state for 1/N of the elements
(ZeRO-1). Gradients are reduced per bucket as soon as backward has finished with it:

- ``stage=1``: all-reduced; each rank keeps the full averaged gradient (its shard is a view);
- ``stage=2``: reduce-scattered; each rank keeps only its shard's averaged gradient.

The optimizer updates the shards in place; the next forward (or ``state_dict``) all-gathers
the buckets whose shard changed. Per rank, float32 with Adam: ZeRO-1 ``8Ψ + 8Ψ/N`` bytes,
ZeRO-2 ``4Ψ + 12Ψ/N``. For PyTorch's ZeRO-1 API (an optimizer wrapper used with DDP) see
``ZeroRedundancyOptimizer``.
"""

from __future__ import annotations

import ember
from ember.nn import Module

from .. import distributed_c10d as c10d
from ..fsdp._init_utils import check_wrappable
from ..fsdp._runtime import _UnitConfig
from ..fsdp.fully_sharded_data_parallel import FullyShardedDataParallel

__all__ = ["ZeroDataParallel"]


class ZeroDataParallel(FullyShardedDataParallel):
    r"""Data parallelism with sharded optimizer state (``stage=1``) and gradients (``stage=2``).

    Build the optimizer after wrapping, over ``model.parameters()``. Parameters and buffers
    are broadcast from rank 0 at wrap time (like DDP); buffers again before each forward when
    ``broadcast_buffers``. State dicts use the original names (``state_dict``,
    ``FullyShardedDataParallel.optim_state_dict`` and the sharded checkpoints of
    ``ember.distributed.fsdp.checkpoint`` all work on this wrapper).

    Args:
        module (nn.Module): the module to wrap.
        stage (int): 1 (shard optimizer state) or 2 (also gradients). Default: 2.
        process_group: the group (default: the world).
        bucket_cap_mb (float): bucket size; each bucket's reduction starts as soon as
            backward is done with its parameters. Default: 25.
        broadcast_buffers (bool): broadcast buffers from rank 0 before each forward.
    """

    def __init__(
        self,
        module: Module,
        stage: int = 2,
        process_group=None,
        bucket_cap_mb: float = 25,
        broadcast_buffers: bool = True,
    ):
        Module.__init__(self)
        if stage not in (1, 2):
            raise ValueError(
                f"ZeroDataParallel: stage must be 1 or 2, got {stage!r} (use "
                "FullyShardedDataParallel for ZeRO-3)"
            )
        check_wrappable(module, type(self).__name__)
        if any(getattr(m, "_ember_fsdp_unit", False) for m in module.modules()):
            raise RuntimeError(
                "ZeroDataParallel: the module contains FullyShardedDataParallel "
                "units; use one sharding wrapper"
            )
        if not c10d.is_initialized():
            raise RuntimeError(
                "ZeroDataParallel needs a process group: call "
                "ember.distributed.init_process_group() first"
            )
        if bucket_cap_mb <= 0:
            raise ValueError(f"bucket_cap_mb must be positive, got {bucket_cap_mb}")
        self.stage = stage
        self.broadcast_buffers = broadcast_buffers
        config = _UnitConfig(
            process_group,
            shard=True,
            keep_full=True,
            reshard_after_forward=False,
            reduce="reduce_scatter" if stage == 2 else "all_reduce",
            backward_prefetch=None,
            sync_module_states=True,
            bucket_bytes=int(bucket_cap_mb * 1024 * 1024),
        )
        self._setup(module, config)

    def forward(self, *args, **kwargs):
        """Run the wrapped module (after broadcasting its buffers from rank 0 when
        ``broadcast_buffers``)."""
        pg = self._config.process_group
        if self.broadcast_buffers and c10d.get_world_size(pg) > 1:
            with ember.no_grad():
                for b in self._fsdp_wrapped_module.buffers():
                    c10d.broadcast(b, src=0, group=pg)
        return super().forward(*args, **kwargs)

    def extra_repr(self) -> str:
        n = sum(h.numel for h in self._handles)
        return f"stage={self.stage}, buckets={len(self._handles)}, numel={n}"
