"""The legacy tensor types: ``ember.FloatTensor``, ``ember.LongTensor``, ... (and the
``ember.cuda.*Tensor`` ones).

As in PyTorch they are not subclasses of Tensor but type objects: calling one builds a tensor
of its dtype (``FloatTensor(2, 3)`` uninitialised, ``FloatTensor([1, 2])`` from data), and
``isinstance(t, ember.FloatTensor)`` checks the dtype and device of ``t``.
"""

from __future__ import annotations

from .backend.dtype import to_dtype
from .tensor import Size, Tensor


class tensortype(type):
    """Metaclass of the legacy types: dtype/device-aware ``isinstance`` and construction."""

    def __instancecheck__(cls, obj) -> bool:
        return (
            isinstance(obj, Tensor)
            and obj.dtype is cls.dtype
            and obj.device.type == cls._device_type
        )

    def __call__(cls, *args, device=None):
        from . import creation

        if cls._device_type == "cuda":
            from .backend.device import is_available

            if not is_available():
                raise TypeError(
                    f"type {cls.__module__}.{cls.__name__} not available. CUDA is not available."
                )
            device = device or "cuda"
        dt = cls.dtype
        if not args:
            return creation.empty(0, dtype=dt, device=device)
        if len(args) == 1 and isinstance(args[0], Tensor):
            src = args[0]
            if src.dtype is not dt:
                raise TypeError(f"expected {dt} (got {src.dtype})")
            return src
        if all(isinstance(a, int) and not isinstance(a, bool) for a in args) or (
            len(args) == 1 and isinstance(args[0], Size)
        ):
            size = tuple(args[0]) if isinstance(args[0], Size) else args
            return creation.empty(*size, dtype=dt, device=device)
        if len(args) != 1:
            raise TypeError(f"new() received an invalid combination of arguments: {args!r}")
        return creation.tensor(args[0], dtype=dt, device=device)

    def __repr__(cls) -> str:
        return f"<class '{cls.__module__}.{cls.__name__}'>"

    @property
    def is_cuda(cls) -> bool:
        return cls._device_type == "cuda"


_NAMES = {
    "FloatTensor": "float32",
    "DoubleTensor": "float64",
    "HalfTensor": "float16",
    "BFloat16Tensor": "bfloat16",
    "LongTensor": "int64",
    "IntTensor": "int32",
    "ShortTensor": "int16",
    "CharTensor": "int8",
    "ByteTensor": "uint8",
    "BoolTensor": "bool",
}


def make_types(device_type: str, module: str) -> dict[str, tensortype]:
    """The legacy type objects for one device type, named as ``module.<Name>``."""
    out = {}
    for name, dtype_name in _NAMES.items():
        out[name] = tensortype(
            name,
            (),
            {
                "dtype": to_dtype(dtype_name),
                "_device_type": device_type,
                "__module__": module,
                "__doc__": (
                    f"The legacy type of {dtype_name} tensors on {device_type}: "
                    f"``{name}(2, 3)`` makes an uninitialized tensor of that shape, "
                    f"``{name}([1, 2])`` one from data, and ``isinstance(t, {name})`` checks "
                    "the tensor's dtype and device."
                ),
            },
        )
    return out


globals().update(make_types("cpu", "ember"))
__all__ = list(_NAMES)
