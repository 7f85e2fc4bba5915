"""``torch._functorch.python_key``: ``make_fx`` (``ember.fx.experimental.proxy_tensor``)."""

from __future__ import annotations

from ..fx.experimental.proxy_tensor import make_fx

__all__ = ["make_fx"]
