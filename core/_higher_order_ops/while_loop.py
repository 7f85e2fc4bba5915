"""``ember._higher_order_ops.while_loop`` (torch._higher_order_ops.while_loop)."""

from ember._higher_order import while_loop

__all__ = ["while_loop"]
