"""``ember.utils.deterministic``: the ``fill_uninitialized_memory`` switch of
:func:`ember.use_deterministic_algorithms`, as ``torch.utils.deterministic`` has it.

PyTorch fills the memory of :func:`torch.empty` and friends with NaN (or the largest integer)
while deterministic algorithms are on and this switch is set. ember keeps the value for
programs that set and read it (ultralytics' ``init_seeds`` turns it off); its NumPy ``empty``
does not fill.
"""

from __future__ import annotations

import sys
import types

from .._torch_misc import _flags

_flags.setdefault("fill_uninitialized_memory", True)


class _Deterministic(types.ModuleType):
    @property
    def fill_uninitialized_memory(self) -> bool:
        """Whether to fill uninitialized memory with a known value when
        :func:`ember.use_deterministic_algorithms` is set to ``True`` (default ``True``)."""
        return _flags["fill_uninitialized_memory"]

    @fill_uninitialized_memory.setter
    def fill_uninitialized_memory(self, mode: bool) -> None:
        if not isinstance(mode, bool):
            raise RuntimeError(f"expected a bool, but got {type(mode).__name__}")
        _flags["fill_uninitialized_memory"] = mode


sys.modules[__name__].__class__ = _Deterministic
