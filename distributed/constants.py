"""``torch.distributed.constants``: the default timeouts of process groups and the store.

Libraries import them from this path (Lightning's collectives:
``from torch.distributed.constants import default_pg_timeout``).
"""

from __future__ import annotations

from datetime import timedelta

from .distributed_c10d import default_pg_timeout

__all__ = ["default_pg_timeout", "default_pg_nccl_timeout"]

#: NCCL groups' default. ember's NCCL groups time out like every other group (30 minutes);
#: PyTorch's is 10 minutes, and ``None`` in builds without NCCL.
default_pg_nccl_timeout: timedelta | None = default_pg_timeout
