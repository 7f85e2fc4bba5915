"""``torch.jit.annotations``: the type names TorchScript code imports (``List``, ``Tuple``,
``Dict``, ``Optional``, ...) and the ``BroadcastingList`` markers, which outside the script
compiler are plain ``List``s."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple, Union  # noqa: UP035

from ..futures import Future

__all__ = [
    "Any",
    "BroadcastingList1",
    "BroadcastingList2",
    "BroadcastingList3",
    "Callable",
    "Dict",
    "Future",
    "List",
    "Optional",
    "Tuple",
    "Union",
]

# ``BroadcastingList2[int]`` accepts an int or a pair in TorchScript; in Python it is List
BroadcastingList1 = BroadcastingList2 = BroadcastingList3 = List  # noqa: UP006
