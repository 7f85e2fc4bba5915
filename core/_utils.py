"""A few of ``torch._utils``'s helpers that libraries import by that path (fastai's fp16 utils
flatten parameter lists into one buffer with them)."""

from __future__ import annotations

from collections.abc import Sequence

from .tensor import Tensor

__all__ = ["_flatten_dense_tensors", "_unflatten_dense_tensors"]


def _flatten_dense_tensors(tensors: Sequence[Tensor]) -> Tensor:
    """One 1-D tensor holding every tensor of ``tensors`` flattened, in order (a copy)."""
    from . import cat

    tensors = list(tensors)
    if not tensors:
        raise ValueError("_flatten_dense_tensors: expected a non-empty sequence of tensors")
    if len(tensors) == 1:
        return tensors[0].contiguous().view(-1)
    return cat([t.contiguous().view(-1) for t in tensors])


def _unflatten_dense_tensors(flat: Tensor, tensors: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """Views of ``flat`` shaped like each tensor of ``tensors`` (the inverse of
    :func:`_flatten_dense_tensors`)."""
    total = sum(t.numel() for t in tensors)
    if flat.numel() != total:
        raise ValueError(
            f"_unflatten_dense_tensors: flat has {flat.numel()} elements, the tensors need {total}"
        )
    outputs = []
    offset = 0
    for t in tensors:
        n = t.numel()
        outputs.append(flat.narrow(0, offset, n).view_as(t))
        offset += n
    return tuple(outputs)


def _get_available_device_type() -> str | None:
    r"""The accelerator type this process can use (``"cuda"``), or ``None`` on a CPU-only host
    (``torch._utils._get_available_device_type``)."""
    import ember

    if ember.cuda.is_available():
        return "cuda"
    return None


def _get_device_module(device_type: str):
    r"""``ember.<device_type>`` (``ember.cuda``, ``ember.cpu``): the module of a device type."""
    import ember

    module = getattr(ember, device_type, None) if isinstance(device_type, str) else None
    if module is None:
        raise RuntimeError(
            f"Device '{device_type}' does not have a corresponding module registered as "
            f"'torch.{device_type}'."
        )
    return module


__all__ += ["_get_available_device_type", "_get_device_module"]


def _take_tensors(tensors: Sequence[Tensor], size_limit: int):
    """Yield lists of ``tensors`` of one type each, every list holding at most ``size_limit``
    bytes (or one tensor bigger than that); within a type the input order is kept. A list is
    yielded when it fills, the partly filled ones at the end (torch._utils._take_tensors;
    mmengine buckets its all-reduces with it)."""
    buckets: dict[str, list] = {}  # type -> [tensors, bytes]
    for t in tensors:
        if getattr(t, "is_sparse", False):
            idx, val = t._indices(), t._values()
            nbytes = idx.numel() * idx.element_size() + val.numel() * val.element_size()
        else:
            nbytes = t.numel() * t.element_size()
        bucket = buckets.setdefault(t.type(), [[], 0])
        if bucket[1] and bucket[1] + nbytes > size_limit:
            yield bucket[0]
            bucket = buckets[t.type()] = [[], 0]
        bucket[0].append(t)
        bucket[1] += nbytes
    for chunk, _ in buckets.values():
        if chunk:
            yield chunk


__all__ += ["_take_tensors"]


def __getattr__(name: str):
    # torch._utils.ExceptionWrapper (torchdata's stateful DataLoader imports it from here):
    # the DataLoader's own, loaded on first use
    if name in ("ExceptionWrapper", "KeyErrorMessage"):
        from .utils.data import _worker

        return getattr(_worker, name)
    raise AttributeError(f"module 'ember._utils' has no attribute {name!r}")
