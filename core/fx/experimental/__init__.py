"""ember.fx.experimental: torch.fx.experimental's ``proxy_tensor.make_fx`` and
``optimization.fuse``."""

from . import optimization, proxy_tensor

__all__ = ["optimization", "proxy_tensor"]
