"""PyTorch's default DDP communication hooks
(``torch.distributed.algorithms.ddp_comm_hooks.default_hooks``).

Each hook has the ``hook(state, bucket) -> Future[Tensor]`` signature that
``DistributedDataParallel.register_comm_hook`` takes; ``state`` is the process group to
reduce over (``None``: the default group).

* ``allreduce_hook``: divide by the group size, then sum: DDP's own averaging.
* ``fp16_compress_hook`` / ``bf16_compress_hook``: communicate a float16 / bfloat16 copy of
  the bucket (divided by the group size first, so the sum cannot overflow), then write the
  result back into the bucket in its own dtype. Half the bytes on the wire; the gradients keep
  the rounding of the low-precision sum. (PyTorch refuses the bf16 hook without NCCL; ember's
  transports reduce bfloat16 on every backend, so it works on CPU too.)
* ``fp16_compress_wrapper(hook)`` / ``bf16_compress_wrapper(hook)``: run any hook on a
  compressed copy of the bucket and cast its result back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ember

from ... import collectives
from ...distributed_c10d import get_world_size
from ...work import Future
from ..grad_bucket import GradBucket

__all__ = ["allreduce_hook", "fp16_compress_hook", "bf16_compress_hook",
           "fp16_compress_wrapper", "bf16_compress_wrapper"]


def _all_reduce_future(process_group, tensor: ember.Tensor) -> Future:
    """Sum ``tensor`` over the group (in place); a future of ``[tensor]``."""
    work = collectives.all_reduce(tensor, group=process_group, async_op=True)
    if work is None:  # this rank is not a member of the group: nothing to reduce
        fut = Future()
        fut.set_result([tensor])
        return fut
    return work.get_future()


def allreduce_hook(process_group, bucket: GradBucket) -> Future:
    """Average the bucket over the group: ``buffer / world_size``, then an allreduce.

    DDP with this hook gives the same gradients as DDP without a hook.

    Example::
        >>> ddp_model.register_comm_hook(process_group, allreduce_hook)  # doctest: +SKIP
    """
    tensor = bucket.buffer()
    # divide first, so that low-precision buffers cannot overflow in the sum
    tensor.div_(get_world_size(process_group))
    return _all_reduce_future(process_group, tensor).then(lambda fut: fut.value()[0])


def _compress_hook(dtype, process_group, bucket: GradBucket) -> Future:
    buffer = bucket.buffer()
    compressed = buffer.to(dtype).div_(get_world_size(process_group))

    def decompress(fut: Future) -> ember.Tensor:
        # written back into the bucket itself, so DDP has nothing more to copy
        with ember.no_grad():
            buffer.copy_(fut.value()[0])
        return buffer

    return _all_reduce_future(process_group, compressed).then(decompress)


def fp16_compress_hook(process_group, bucket: GradBucket) -> Future:
    """Allreduce a ``float16`` copy of the bucket divided by the group size; the result is
    cast back into the bucket's dtype.

    Example::
        >>> ddp_model.register_comm_hook(process_group, fp16_compress_hook)  # doctest: +SKIP
    """
    return _compress_hook(ember.float16, process_group, bucket)


def bf16_compress_hook(process_group, bucket: GradBucket) -> Future:
    """Allreduce a ``bfloat16`` copy of the bucket divided by the group size; the result is
    cast back into the bucket's dtype.

    Example::
        >>> ddp_model.register_comm_hook(process_group, bf16_compress_hook)  # doctest: +SKIP
    """
    return _compress_hook(ember.bfloat16, process_group, bucket)


def _compress_wrapper(dtype, hook: Callable[[Any, GradBucket], Future]):
    def wrapper_hook(hook_state, bucket: GradBucket) -> Future:
        original = bucket.buffer()
        bucket.set_buffer(original.to(dtype))
        fut = hook(hook_state, bucket)

        def decompress(f: Future) -> ember.Tensor:
            with ember.no_grad():
                original.copy_(f.value())
            return original

        return fut.then(decompress)

    return wrapper_hook


def fp16_compress_wrapper(hook: Callable[[Any, GradBucket], Future]):
    """Run ``hook`` on a ``float16`` copy of the bucket and cast its result back:
    ``fp16_compress_wrapper(allreduce_hook)`` is ``fp16_compress_hook``."""
    wrapped = _compress_wrapper(ember.float16, hook)
    wrapped.__name__ = wrapped.__qualname__ = "fp16_compress_wrapper_hook"
    return wrapped


def bf16_compress_wrapper(hook: Callable[[Any, GradBucket], Future]):
    """Run ``hook`` on a ``bfloat16`` copy of the bucket and cast its result back."""
    wrapped = _compress_wrapper(ember.bfloat16, hook)
    wrapped.__name__ = wrapped.__qualname__ = "bf16_compress_wrapper_hook"
    return wrapped
