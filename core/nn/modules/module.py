"""``ember.nn.modules.module``: PyTorch's import path for ``Module`` and the global hooks."""

from ..module import (  # noqa: F401
    Module,
    _IncompatibleKeys,
    register_module_forward_hook,
    register_module_forward_pre_hook,
)
