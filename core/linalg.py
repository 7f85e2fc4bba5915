"""``ember.linalg``: norms (more as needed)."""

from .ops.linalg import linalg_norm as norm
from .ops.linalg import vector_norm

__all__ = ["norm", "vector_norm"]
