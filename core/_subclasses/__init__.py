"""``ember._subclasses`` (torch._subclasses): the names libraries import from it.

ember traces with real arrays (``ember.fx`` / ``ember.export``), so it has no fake tensors;
``fake_tensor.is_fake`` answers ``False`` for every input, which is what libraries such as
kornia test before taking a fast path.
"""

from . import fake_tensor

__all__ = ["fake_tensor"]
