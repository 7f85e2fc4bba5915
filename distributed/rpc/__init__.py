"""``ember.distributed.rpc``: PyTorch's ``torch.distributed.rpc``.

``init_rpc`` / ``shutdown``, ``rpc_sync`` / ``rpc_async`` (an ``ember.futures.Future``) /
``remote`` (an ``RRef``), ``get_worker_info``, ``functions.async_execution``. Calls pickle the
function by reference and its arguments with ember tensors (``_wire.py``) and travel over the
job's token-authenticated TCP connections (``_agent.py``); inside a
``ember.distributed.autograd.context()`` they record the send/recv pairs that distributed
backward follows. See docs/distributed.md ("RPC").
"""

from . import functions
from .api import get_worker_info, init_rpc, remote, rpc_async, rpc_sync, shutdown
from .options import (
    DEFAULT_RPC_TIMEOUT_SEC,
    UNSET_RPC_TIMEOUT,
    BackendType,
    RpcBackendOptions,
    TensorPipeRpcBackendOptions,
    WorkerInfo,
)
from .rref import RRef

# torch.distributed.rpc.PyRRef is the C++ class behind RRef
PyRRef = RRef


def is_available() -> bool:
    """RPC is always built in ember."""
    return True


__all__ = [
    "DEFAULT_RPC_TIMEOUT_SEC",
    "UNSET_RPC_TIMEOUT",
    "BackendType",
    "PyRRef",
    "RRef",
    "RpcBackendOptions",
    "TensorPipeRpcBackendOptions",
    "WorkerInfo",
    "functions",
    "get_worker_info",
    "init_rpc",
    "is_available",
    "remote",
    "rpc_async",
    "rpc_sync",
    "shutdown",
]
