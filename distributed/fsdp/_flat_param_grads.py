"""The gradient side of ``FlatParamHandle`` (a mixin): reduce each unit's full flat gradient
when its backward completes (or accumulate it under ``no_sync``), then average the reduced
shard into ``flat_param.grad`` (or the originals' grads with ``use_orig_params``).

Reductions are launched asynchronously (reduce-scatter for sharded strategies, all-reduce for
NO_SHARD and ZeRO-1) and waited for in ``finalize_grads``; HYBRID_SHARD sums the reduced shard
over the replica group there too.
"""

from __future__ import annotations

import numpy as np

from ember import _interop

from .. import distributed_c10d as c10d
from . import _orig_params as _orig


class _FlatGradMixin:
    """``post_backward`` / ``_reduce`` / ``finalize_grads`` of ``FlatParamHandle``."""

    def post_backward(self, full_grad) -> None:
        """The unit's gradients are complete: reduce them (or keep them under no_sync)."""
        owner = self.owner
        owner._ensure_final_callback()
        if not owner._sync_gradients:
            if self._acc_grad is None:
                self._acc_grad = full_grad
            else:
                self._acc_grad += full_grad
        else:
            if self._acc_grad is not None:
                full_grad += self._acc_grad
                self._acc_grad = None
            self._reduce(full_grad)
        if self.sharded_at_rest:
            self.reshard()
        owner._after_handle_backward(self)

    def _reduce(self, full_grad) -> None:
        pg = self.config.process_group
        if self.reduce is not None:
            full_grad = full_grad.astype(self.reduce)
        if self.world_size == 1:
            self._pending.append((None, full_grad))
        elif self.config.reduce == "reduce_scatter":
            out = _empty_like(full_grad, self.shard_size)
            work = c10d.reduce_scatter_tensor(
                _interop.wrap(out), _interop.wrap(full_grad), group=pg, async_op=True
            )
            self._pending.append((work, out))
        else:
            work = c10d.all_reduce(_interop.wrap(full_grad), group=pg, async_op=True)
            self._pending.append((work, full_grad))

    def finalize_grads(self) -> None:
        """Wait for the reductions and accumulate the averaged shard into ``flat_param.grad``."""
        pending, self._pending = self._pending, []
        lo, hi = self.shard_bounds()
        p = self.flat_param
        reduced = None  # use_orig_params: this backward's reduced shard, summed
        for work, arr in pending:
            if work is not None:
                work.wait()
            if self.replicate_group is not None:  # HYBRID_SHARD: sum over the replicas
                c10d.all_reduce(_interop.wrap(arr), group=self.replicate_group)
            if self.dp_size > 1:
                arr *= 1.0 / self.dp_size
            if arr.shape[0] != self.shard_size:
                arr = arr[lo:hi]  # a full gradient: ZeRO-1 keeps it, its shard is a view
            want = self.low if self.keep_low_grads else self.dtype
            if arr.dtype != want:  # mixed precision: the optimizer steps in the param dtype
                arr = arr.astype(want)
            if self.offload:  # CPUOffload: the gradient shard goes down to the host
                arr = _to_host(arr)
            if self.orig_params is not None:
                reduced = arr.copy() if reduced is None else reduced + arr
                continue
            if p.grad is None:
                p.grad = _interop.wrap(arr)
            else:
                _interop.array_of(p.grad)[...] += arr
            _interop.run_post_accumulate_grad_hooks(p)
        if reduced is not None:
            _orig.set_grads(self, reduced)


def _to_host(arr):
    """A host (NumPy) copy of a device array; NumPy arrays are returned as they are."""
    return arr if isinstance(arr, np.ndarray) else arr.get()


def _empty_like(arr, n: int):
    from ember.backend import get_array_module

    return get_array_module(arr).empty(n, dtype=arr.dtype)
