"""``GradBucket``: what a DDP communication hook receives (PyTorch's ``dist.GradBucket``).

A bucket is one range of DDP's flat gradient storage: ``buffer()`` is that range as a 1-D
tensor (the gradients of ``parameters()`` are copied into it, in that order, before the hook
runs), ``gradients()`` are its per-parameter views. A hook returns a ``Future`` whose value is
a tensor of ``buffer()``'s size; DDP copies it into the bucket (nothing is copied when the hook
wrote its result into ``buffer()`` itself) and the parameters' gradients become those values.
"""

from __future__ import annotations

from ember import _interop
from ember.tensor import Tensor


class GradBucket:
    """One DDP gradient bucket, as handed to a communication hook."""

    def __init__(self, index: int, is_last: bool, flat, views: list, params: list) -> None:
        self._index = index
        self._is_last = is_last
        self._buffer = _interop.wrap(flat)
        self._views = views
        self._params = params

    def index(self) -> int:
        """The bucket's index; bucket 0 holds the gradients that become ready first."""
        return self._index

    def is_last(self) -> bool:
        """Whether this is the last bucket of the iteration (the highest index)."""
        return self._is_last

    def buffer(self) -> Tensor:
        """The bucket's flattened gradients (a 1-D view of DDP's storage)."""
        return self._buffer

    def set_buffer(self, buffer: Tensor) -> None:
        """Replace the tensor ``buffer()`` returns (e.g. a compressed copy); DDP still reads
        the hook's result from its future."""
        if not isinstance(buffer, Tensor):
            raise TypeError(
                f"GradBucket.set_buffer: expected a Tensor, got {type(buffer).__name__}"
            )
        if buffer.numel() != self._buffer.numel():
            raise ValueError(
                f"GradBucket.set_buffer: the buffer has {buffer.numel()} elements, "
                f"the bucket {self._buffer.numel()}"
            )
        self._buffer = buffer

    def gradients(self) -> list[Tensor]:
        """Per parameter, its gradient as a view of the bucket's storage."""
        return [_interop.wrap(v) for v in self._views]

    def parameters(self) -> list[Tensor]:
        """The parameters whose gradients the bucket holds, in bucket order."""
        return list(self._params)

    def __repr__(self) -> str:
        return (
            f"GradBucket(index={self._index}, numel={self._buffer.numel()}, "
            f"dtype={self._buffer.dtype}, is_last={self._is_last})"
        )
