"""ember.fx.experimental: torch.fx.experimental's ``proxy_tensor.make_fx``."""

from . import proxy_tensor

__all__ = ["proxy_tensor"]
