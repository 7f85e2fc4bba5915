"""DDP's join hook (PyTorch's ``_DDPJoinHook``): what a rank that ran out of inputs does while
the others still train (``ember.distributed.algorithms.Join``).

Per iteration of the others, the joined rank makes the collectives their DDP forward and
backward make, in the same order and with the same shapes (ember checks every collective's
fingerprint): the buffer broadcasts, the all-reduce that says whether this iteration
synchronizes gradients, and the gradient all-reduces, with zeros as its gradients. Those
all-reduces average over the whole group, so the others' gradients are divided by the initial
world size (PyTorch's ``divide_by_initial_world_size=True``); with ``False`` the others scale
their averaged gradients by ``world_size / ranks_not_joined`` (``DistributedDataParallel``).
After all ranks joined, the last rank to join broadcasts its parameters and buffers, since the
joined ranks' models stopped updating.
"""

from __future__ import annotations

import ember

from .. import collectives
from ..algorithms.join import Join, Joinable, JoinHook
from ..distributed_c10d import get_rank
from ..reduce_op import ReduceOp
from ._ddp_hooks import HookWork

__all__ = ["DDPJoinHook", "JoinableDDP"]


class DDPJoinHook(JoinHook):
    """The join hook of one ``DistributedDataParallel`` (``ddp.join_hook()``)."""

    def __init__(self, ddp, divide_by_initial_world_size: bool = True) -> None:
        self.ddp = ddp
        ddp._divide_by_initial_world_size = bool(divide_by_initial_world_size)

    def main_hook(self) -> None:
        """Shadow one forward and backward of the ranks not joined."""
        ddp = self.ddp
        ddp._sync_buffers(joined=True)
        sync = ddp._global_requires_backward_grad_sync(joined=True)
        ddp.require_forward_param_sync = sync  # (as after a forward of the others)
        if not sync:
            return  # the others run this iteration under no_sync()
        if ddp._handed:  # the buckets move off the memory the last gradients still use
            ddp._renew()
        if ddp._comm_hook is not None:
            # the registered hook on zero buckets, bucket by bucket, as in backward
            for b in ddp._buckets:
                b.flat[...] = 0
                b.work = HookWork(ddp._comm_hook, ddp._buckets, b)
        elif ddp._overlap:
            # one all-reduce per bucket (the last one waited for at once, as in backward)
            for i, b in enumerate(ddp._buckets):
                b.flat[...] = 0
                ddp._reduce(b, b.flat, async_op=i < len(ddp._buckets) - 1)
        else:
            for flat in ddp._storages:  # one all-reduce per storage
                flat[...] = 0
                ddp._reduce(None, flat, async_op=False)
        for b in ddp._buckets:
            if b.work is not None:
                b.work.wait()
        ddp._reset_iteration_state()

    def post_hook(self, is_last_joiner: bool) -> None:
        """Broadcast the final model from the last rank to join (the largest such rank)."""
        ddp = self.ddp
        me = get_rank(ddp.process_group)
        common = ember.tensor([me if is_last_joiner else -1])
        collectives.all_reduce(common, op=ReduceOp.MAX, group=ddp.process_group)
        src = int(common.item())
        with ember.no_grad():
            for t in list(ddp.module.parameters()) + list(ddp.module.buffers()):
                collectives.broadcast(t, group=ddp.process_group, group_src=src)


def scale_for_joined(ddp) -> None:
    """With ``divide_by_initial_world_size=False``: turn the buckets' averages over the whole
    group into averages over the ranks not joined (counted by this iteration's notification)."""
    work, ddp._join_work = ddp._join_work, None
    if work is None or ddp._divide_by_initial_world_size or ddp._comm_hook is not None:
        return
    active = int(work.result()[0].item())
    if active == ddp.world_size or active <= 0:
        return
    factor = ddp.world_size / active
    for b in ddp._buckets:  # (raw arrays, before they become the gradients)
        b.flat *= b.flat.dtype.type(factor)


class JoinableDDP(Joinable):
    """``DistributedDataParallel``'s side of Join (a mixin): the buffer broadcast and the
    gradient-sync flag whose collectives a joined rank shadows, and the ``Joinable`` API."""

    def _sync_buffers(self, joined: bool = False) -> None:
        """Broadcast the buffers from rank 0 (under Join: from the highest rank not joined,
        as PyTorch does, since a joined rank's buffers are stale); PyTorch skips this after a
        forward that did not synchronize gradients (``require_forward_param_sync``)."""
        if not (
            self.broadcast_buffers
            and self.world_size > 1
            and self.modules_buffers  # (PyTorch's test: the buffers found at the last sync)
            and self.require_forward_param_sync
        ):
            return
        # collected afresh each time, as PyTorch does: buffers may be reassigned
        self.modules_buffers = buffers = list(self.module.buffers())
        if not buffers:
            return
        src = 0
        if self._join_config.enable:
            me = get_rank(self.process_group)
            common = ember.tensor([-1 if joined else me])
            collectives.all_reduce(common, op=ReduceOp.MAX, group=self.process_group)
            src = int(common.item())
        with ember.no_grad():
            for buf in buffers:
                collectives.broadcast(buf, group=self.process_group, group_src=src)

    def _global_requires_backward_grad_sync(self, joined: bool) -> bool:
        """Under Join: tell the joined ranks whether this iteration's backward synchronizes
        gradients (a joined rank gets the answer)."""
        sync = not joined and self.require_backward_grad_sync and ember.is_grad_enabled()
        flag = ember.tensor([1.0 if sync else 0.0])
        collectives.all_reduce(flag, group=self.process_group)
        return bool(flag.item())

    # ---- uneven inputs (ember.distributed.algorithms.Join) ---------------------------------------
    def join(
        self,
        divide_by_initial_world_size: bool = True,
        enable: bool = True,
        throw_on_early_termination: bool = False,
    ) -> Join:
        """A ``Join`` context over this model alone: ranks may run different numbers of
        iterations inside it; a rank that ran out of inputs shadows the others' gradient
        all-reduces with zeros. ``divide_by_initial_world_size``: average gradients over the
        whole group (``True``, PyTorch's default) or over the ranks not yet joined."""
        return Join(
            [self],
            enable,
            throw_on_early_termination,
            divide_by_initial_world_size=divide_by_initial_world_size,
        )

    def join_hook(self, **kwargs) -> DDPJoinHook:
        """The hook a joined rank runs for this model (``divide_by_initial_world_size``)."""
        # (other keywords are for other joinables of the same Join: ignored, as in PyTorch)
        return DDPJoinHook(self, kwargs.get("divide_by_initial_world_size", True))

    @property
    def join_device(self):
        return self._params[0].device if self._params else ember.device("cpu")

    @property
    def join_process_group(self):
        return self.process_group
