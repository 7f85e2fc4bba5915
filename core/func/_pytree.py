"""The pytree of ``ember.func``: ``ember.utils._pytree`` (one implementation serves both).

This module keeps the old import path; ``LEAF`` is the leaf spec (printed ``*``).
"""

from __future__ import annotations

from ..utils._pytree import _LEAF_SPEC as LEAF
from ..utils._pytree import TreeSpec, tree_flatten, tree_map, tree_unflatten

__all__ = ["TreeSpec", "LEAF", "tree_flatten", "tree_unflatten", "tree_map"]
