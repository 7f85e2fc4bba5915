"""``ember.utils.hooks``: the handle returned by every hook registration (PyTorch's
``torch.utils.hooks``)."""

from .._hook_handle import RemovableHandle

__all__ = ["RemovableHandle"]
