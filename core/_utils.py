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
