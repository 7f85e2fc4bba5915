"""``ember.nn.modules.module``: PyTorch's import path for ``Module`` and the global hooks."""

from .._module_hooks import (  # noqa: F401
    _global_buffer_registration_hooks,
    _global_module_registration_hooks,
    _global_parameter_registration_hooks,
    register_module_buffer_registration_hook,
    register_module_module_registration_hook,
    register_module_parameter_registration_hook,
)
from .._module_state import _EXTRA_STATE_KEY_SUFFIX  # noqa: F401
from ..module import (  # noqa: F401
    Module,
    _IncompatibleKeys,
    register_module_forward_hook,
    register_module_forward_pre_hook,
)
