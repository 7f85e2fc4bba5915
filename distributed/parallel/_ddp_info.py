"""What a ``DistributedDataParallel`` reports about itself: PyTorch's ``static_graph`` flag and
``_get_ddp_logging_data()`` (Lightning's DDP strategy reads both when it tears down)."""

from __future__ import annotations

from typing import Any

from ..distributed_c10d import get_backend, get_rank


class DDPInfo:
    """Mixed into ``DistributedDataParallel``; reads attributes its ``__init__`` sets."""

    def _set_static_graph(self) -> None:
        r"""Declare the graph static (PyTorch's private switch, as ``static_graph=True``).

        ember's DDP keeps the flag only: it rebuilds buckets after the first iteration and
        finds unused parameters per iteration either way, so the flag changes no behaviour.
        """
        self.static_graph = True

    def _get_ddp_logging_data(self) -> dict[str, Any]:
        r"""The construction settings and runtime facts PyTorch's DDP logger records.

        ``can_set_static_graph`` is ``False``: ember gains nothing from ``static_graph=True``
        (see :meth:`_set_static_graph`), so it never suggests it.
        """
        group = self.process_group
        return {
            "module_name": type(self.module).__name__,
            "world_size": self.world_size,
            "rank": get_rank(group),
            "backend_name": str(get_backend(group)),
            "bucket_cap_bytes": self.bucket_bytes_cap,
            "find_unused_parameters": int(self.find_unused_parameters),
            "broadcast_buffers": int(self.broadcast_buffers),
            "static_graph": int(self.static_graph),
            "has_sync_bn": 0,
            "can_set_static_graph": 0,
        }
