"""``ember._higher_order_ops`` (torch._higher_order_ops): the control-flow operators.

``cond`` and ``while_loop`` are ``ember.cond`` / ``ember.while_loop`` (``ember/_higher_order.py``);
``map``, ``scan``, ``associative_scan`` and ``foreach_map`` run eagerly as loops of ember
ops, so autograd, ``ember.compile`` (which unrolls them for the shapes it sees) and ``vmap`` go
through them.
"""

# Every name is bound from its own submodule, so that the submodules are imported here: a
# submodule imported later (``import ember._higher_order_ops.cond``, as tests/test_imports.py
# does) would otherwise replace the package's ``cond`` function with the module.
from .associative_scan import associative_scan
from .cond import cond
from .foreach_map import foreach_map
from .map import map  # noqa: A004 -- torch's name
from .scan import scan
from .while_loop import while_loop

__all__ = ["associative_scan", "cond", "foreach_map", "map", "scan", "while_loop"]
