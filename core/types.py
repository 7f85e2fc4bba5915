"""``torch.types``: the type aliases PyTorch's annotations use.

Libraries import these at module level (ignite's NLP metrics: ``from torch.types import
Number``), so they must exist; they are plain aliases, nothing checks them at run time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import IO, Any

from . import Size as Size
from . import SymBool, SymFloat, SymInt, TypedStorage, UntypedStorage
from . import Tensor as Tensor
from . import device as _device
from . import dtype as _dtype
from . import layout as _layout
from . import qscheme as _qscheme

_bool = bool
_bytes = bytes
_complex = complex
_float = float
_int = int
_str = str
_size = Size | list[int] | tuple[int, ...]
_symsize = Size | Sequence[int | SymInt]

Number = int | float | bool
_Number = (int, float, bool)
IntLikeType = int | SymInt
FloatLikeType = float | SymFloat
BoolLikeType = bool | SymBool
py_sym_types = (SymInt, SymFloat, SymBool)
PySymType = SymInt | SymFloat | SymBool

Device = _device | str | int | None
Storage = TypedStorage | UntypedStorage
FileLike = str | os.PathLike | IO[bytes]

_TensorOrTensors = Tensor | Sequence[Tensor]
_TensorOrOptionalTensors = Tensor | None | Sequence[Tensor | None]
_TensorOrTensorsOrGradEdge = Tensor | Sequence[Tensor] | Any

__all__ = [
    "Device",
    "FileLike",
    "Number",
    "Storage",
    "IntLikeType",
    "FloatLikeType",
    "BoolLikeType",
    "PySymType",
    "py_sym_types",
    "_device",
    "_dtype",
    "_layout",
    "_qscheme",
]
