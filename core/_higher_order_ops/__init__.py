"""``ember._higher_order_ops`` (torch._higher_order_ops): the control-flow operators.

``cond`` and ``while_loop`` are ``ember.cond`` / ``ember.while_loop`` (``ember/_higher_order.py``);
``map``, ``scan`` and ``associative_scan`` run eagerly as loops of ember ops, so autograd,
``ember.compile`` (which unrolls them for the shapes it sees) and ``vmap`` go through them.
"""

from ember._higher_order import cond, while_loop

from .associative_scan import associative_scan
from .map import map  # noqa: A004 -- torch's name
from .scan import scan

__all__ = ["associative_scan", "cond", "map", "scan", "while_loop"]
