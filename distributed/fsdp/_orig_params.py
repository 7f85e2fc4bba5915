"""``use_orig_params=True``: the original parameters stay registered, as views of the shard.

PyTorch's layout: each original parameter starts at an offset aligned to 16 bytes inside the
flat parameter; on a rank, the parameter's data is the 1-D slice of its elements that fall in
this rank's shard (numel 0 when none do), and its ``.grad`` is the matching slice of the flat
gradient (``None`` when it has no elements here). The optimizer steps on those views, so its
in-place updates land in the flat shard; a parameter whose data was replaced (``p.data = ...``)
is copied back into the shard before the next forward (PyTorch's write-back).
"""

from __future__ import annotations

import ember
from ember import _interop

_ALIGN_BYTES = 16  # PyTorch aligns every original parameter's start in the flat parameter


def aligned_offsets(numels: list[int], itemsize: int) -> tuple[list[int], int]:
    """Start offsets (in elements) of parameters of ``numels`` elements, and the total."""
    align = max(1, _ALIGN_BYTES // itemsize)
    offsets, off = [], 0
    for n in numels:
        off = -(-off // align) * align
        offsets.append(off)
        off += n
    return offsets, off


def local_range(handle, e) -> tuple[int, int]:
    """Entry ``e``'s elements inside this rank's shard, as ``[a, b)`` in shard coordinates
    (``a == b`` when the shard holds none of them)."""
    lo, hi = handle.shard_bounds()
    a, b = max(lo, e.offset), min(hi, e.offset + e.numel)
    if a >= b:
        return 0, 0
    return a - lo, b - lo


def bind(handle) -> None:
    """Point every original parameter at its view of the flat shard and register it on its
    module(s) again."""
    flat = handle._flat_array
    unsharded = not handle.config.shard  # NO_SHARD: the views keep the original shapes
    handle.orig_views = []
    for e, p in zip(handle.entries, handle.orig_params):
        a, b = local_range(handle, e) if not unsharded else (e.offset, e.offset + e.numel)
        view = flat[a:b]
        if unsharded:
            view = view.reshape(e.shape)
        handle.orig_views.append(view)
        with ember.no_grad():
            _interop.set_array(p, view)
        p.grad = None
        for module, name in e.aliases:
            module.__dict__.pop(name, None)
            module._parameters[name] = p


def use_sharded_views(handle) -> None:
    """Module attributes resolve to the original (sharded) parameters again."""
    for e in handle.entries:
        for module, name in e.aliases:
            module.__dict__.pop(name, None)


def write_back(handle) -> bool:
    """Copy parameters whose data was replaced into the flat shard (and view it again);
    return whether any was."""
    changed = False
    for e, p, view in zip(handle.entries, handle.orig_params, handle.orig_views):
        arr = _interop.array_of(p)
        if arr is view:
            continue
        if tuple(arr.shape) != tuple(view.shape):
            raise RuntimeError(
                f"FullyShardedDataParallel(use_orig_params=True): parameter "
                f"'{e.aliases[0][1]}' of {type(e.aliases[0][0]).__name__} was given data of "
                f"shape {tuple(arr.shape)}; this rank's view of it has shape "
                f"{tuple(view.shape)}. Change parameters in place or keep their sharded shape."
            )
        view[...] = arr
        _interop.set_array(p, view)
        changed = True
    return changed


def set_grads(handle, reduced) -> None:
    """Add the freshly reduced flat gradient shard ``reduced`` (host array, owned) to the
    original parameters' gradients and make those views of it (also ``flat_param.grad``)."""
    unsharded = not handle.config.shard
    for e, p, view in zip(handle.entries, handle.orig_params, handle.orig_views):
        if view.size == 0:
            p.grad = None
            continue
        a, b = (e.offset, e.offset + e.numel) if unsharded else local_range(handle, e)
        part = reduced[a:b]
        if p.grad is not None:  # accumulation across backward passes without zero_grad
            part += _interop.array_of(p.grad).reshape(-1).astype(part.dtype, copy=False)
        p.grad = _interop.wrap(part.reshape(view.shape))
    handle.flat_param.grad = _interop.wrap(reduced)
    for p in handle.orig_params:
        if p.grad is not None:
            _interop.run_post_accumulate_grad_hooks(p)
