"""``torch._C``: the few names of PyTorch's extension module that Python programs reach for.

Only the ``__torch_function__`` switches (``core/overrides.py``) live here: ember has no C++
extension, and everything else of ``torch._C`` is internal to PyTorch.
"""

from __future__ import annotations

from .overrides import (
    DisableTorchFunction,
    DisableTorchFunctionSubclass,
    _disabled_torch_function_impl,
)

__all__ = ["DisableTorchFunction", "DisableTorchFunctionSubclass"]

# a class body may say ``__torch_function__ = torch._C._disabled_torch_function_impl``
_disabled_torch_function_impl = classmethod(_disabled_torch_function_impl)
