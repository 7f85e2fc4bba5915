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

import numpy as np

import ember
from ember import _interop

from ... import collectives
from ...distributed_c10d import get_world_size
from ...parallel._half import float_to_half, half_to_float
from ...work import Future
from ..grad_bucket import GradBucket

__all__ = [
    "allreduce_hook",
    "fp16_compress_hook",
    "bf16_compress_hook",
    "fp16_compress_wrapper",
    "bf16_compress_wrapper",
]


def _all_reduce_future(process_group, tensor: ember.Tensor) -> Future:
    """Sum ``tensor`` over the group (in place); a future of ``[tensor]``."""
    work = collectives.all_reduce(tensor, group=process_group, async_op=True)
    if work is None:  # this rank is not a member of the group: nothing to reduce
        fut = Future()
        fut.set_result([tensor])
        return fut
    return work.get_future()


def _div_by_world_size_(tensor: ember.Tensor, n: int) -> ember.Tensor:
    """``tensor.div_(n)``, with a fast path for float16.

    NumPy has no vectorized float16 arithmetic: each element of a float16 ufunc is converted
    to float32, computed, and rounded back one at a time, ~30x the time of the float32 loop
    (5-10 ms per 2 MiB of gradients, several such passes per bucket). The same result comes
    from two vectorized casts around a float32 division: float32 division is correctly
    rounded, so rounding its quotient to float16 gives exactly the float16 division's value.
    """
    if n == 1:
        return tensor
    if tensor.dtype is not ember.float16:
        return tensor.div_(n)
    arr = _interop.array_of(tensor)
    if isinstance(arr, np.ndarray) and arr.flags.c_contiguous:
        # NumPy's own casts are ~20x slower on float16 subnormals (``_half.py``)
        wide = half_to_float(arr)
        wide /= np.float32(n)
        float_to_half(wide, arr)
    else:
        wide = arr.astype("float32")
        wide /= n  # a Python int keeps float32 (as PyTorch's float opmath for a Half tensor)
        arr[...] = wide  # the rounding back to float16
    _interop.bump_version(tensor)
    return tensor


def _copy_back_(dst: ember.Tensor, src: ember.Tensor) -> None:
    """``dst.copy_(src)`` for the hooks' decompression (same shape, no autograd): one cast
    straight into ``dst``'s array."""
    if dst.shape != src.shape:
        raise ValueError(
            f"the communicated bucket has shape {tuple(src.shape)}, the bucket {tuple(dst.shape)}"
        )
    out, arr = _interop.array_of(dst), _interop.array_of(src)
    if (
        isinstance(arr, np.ndarray)
        and arr.dtype == np.float16
        and out.dtype == np.float32
        and out.flags.c_contiguous
        and arr.flags.c_contiguous
    ):
        half_to_float(arr, out=out)  # NumPy's cast is ~5x slower on subnormals
    else:
        out[...] = arr
    _interop.bump_version(dst)


def allreduce_hook(process_group, bucket: GradBucket) -> Future:
    """Average the bucket over the group: ``buffer / world_size``, then an allreduce.

    DDP with this hook gives the same gradients as DDP without a hook.

    Example::
        >>> ddp_model.register_comm_hook(process_group, allreduce_hook)  # doctest: +SKIP
    """
    tensor = bucket.buffer()
    # divide first, so that low-precision buffers cannot overflow in the sum
    _div_by_world_size_(tensor, get_world_size(process_group))
    return _all_reduce_future(process_group, tensor).then(lambda fut: fut.value()[0])


def _compress(buffer: ember.Tensor, dtype) -> ember.Tensor:
    """``buffer.to(dtype)``; float32 -> float16 of NumPy arrays by ``_half.float_to_half``."""
    arr = _interop.array_of(buffer)
    if (
        dtype is ember.float16
        and isinstance(arr, np.ndarray)
        and arr.dtype == np.float32
        and arr.flags.c_contiguous
    ):
        return _interop.wrap(float_to_half(arr, np.empty(arr.shape, np.float16)))
    return buffer.to(dtype)


def _compress_hook(dtype, process_group, bucket: GradBucket) -> Future:
    buffer = bucket.buffer()
    compressed = _div_by_world_size_(_compress(buffer, dtype), get_world_size(process_group))

    def decompress(fut: Future) -> ember.Tensor:
        # written back into the bucket itself, so DDP has nothing more to copy
        _copy_back_(buffer, fut.value()[0])
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
            _copy_back_(original, f.value())
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
