"""``ember._higher_order_ops.cond`` (torch._higher_order_ops.cond)."""

from ember._higher_order import cond

__all__ = ["cond"]
