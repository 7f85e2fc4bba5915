"""``ember.utils.dlpack``: zero-copy exchange with other array libraries (PyTorch's
``torch.utils.dlpack``).

``from_dlpack(obj)`` wraps any DLPack producer (a NumPy array, a PyTorch CPU tensor, a CuPy
array, a legacy capsule) as an ``ember.Tensor`` sharing its memory; ``to_dlpack(tensor)`` makes
a legacy capsule. An ember tensor is itself a producer (``Tensor.__dlpack__``), so
``numpy.from_dlpack(t)`` and ``torch.from_dlpack(t)`` share its memory too. CUDA tensors go
through ``cupy.from_dlpack``.
"""

from __future__ import annotations

from .._tensor_protocol import DLDeviceType, from_dlpack, to_dlpack

__all__ = ["DLDeviceType", "from_dlpack", "to_dlpack"]
