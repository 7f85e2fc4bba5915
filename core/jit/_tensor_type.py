"""``torch.TensorType``: TorchScript's type of tensors, for code that names it.

ember has no TorchScript type system (``ember.jit`` scripts by running Python); libraries
import ``TensorType`` for annotations (open_clip's text towers) or ask it about a tensor
(``TensorType.create_from_tensor(t).sizes()``). This class answers those questions from what
it was built with.
"""

from __future__ import annotations

from typing import Any


class TensorType:
    """The type of a tensor, optionally with its sizes, strides, dtype and device known."""

    def __init__(
        self,
        sizes: list[int | None] | None = None,
        strides: list[int] | None = None,
        dtype: Any = None,
        device: Any = None,
    ) -> None:
        self._sizes = None if sizes is None else list(sizes)
        self._strides = None if strides is None else list(strides)
        self._dtype, self._device = dtype, device

    @classmethod
    def get(cls) -> TensorType:
        """The type of any tensor (nothing known)."""
        return cls()

    @classmethod
    def getInferred(cls) -> TensorType:  # noqa: N802 - torch's name
        return cls()

    @staticmethod
    def create_from_tensor(t) -> TensorType:
        """The complete type of tensor ``t``."""
        return TensorType(list(t.shape), list(t.stride()), t.dtype, t.device)

    def with_sizes(self, other: list[int | None] | None) -> TensorType:
        """This type with other sizes (strides no longer known)."""
        return TensorType(other, None, self._dtype, self._device)

    def sizes(self) -> list[int] | None:
        """The sizes when all are known, else ``None``."""
        if self._sizes is None or any(s is None for s in self._sizes):
            return None
        return list(self._sizes)

    def varyingSizes(self) -> list[int | None] | None:  # noqa: N802 - torch's name
        return None if self._sizes is None else list(self._sizes)

    def strides(self) -> list[int] | None:
        return None if self._strides is None else list(self._strides)

    def device(self):
        return self._device

    def dtype(self):
        return self._dtype

    def scalarType(self) -> str | None:  # noqa: N802 - torch's name
        """The dtype's TorchScript name (``"Float"``), or ``None``."""
        if self._dtype is None:
            return None
        from ember._torch_rebuild import _STORAGE_DTYPES

        by_dtype = {v: k for k, v in _STORAGE_DTYPES.items()}
        return by_dtype.get(str(self._dtype).replace("ember.", ""))

    def kind(self) -> str:
        return "TensorType"

    def dim(self) -> int:
        if self._sizes is None:
            raise RuntimeError("TensorType.dim(): the number of dimensions is not known")
        return len(self._sizes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TensorType):
            return NotImplemented
        mine = (self._sizes, self._strides, self._dtype, self._device)
        return mine == (other._sizes, other._strides, other._dtype, other._device)

    def __hash__(self) -> int:
        return hash(("TensorType", self._dtype))

    def __repr__(self) -> str:
        return "Tensor"
