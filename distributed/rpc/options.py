"""RPC backend options and worker identity (``torch.distributed.rpc``'s names)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

# torch.distributed.rpc.constants
#: The timeout in seconds of an RPC when neither the call nor :func:`init_rpc`'s options set one.
DEFAULT_RPC_TIMEOUT_SEC = 60.0
DEFAULT_NUM_WORKER_THREADS = 16
DEFAULT_INIT_METHOD = "env://"
#: The ``timeout`` default of :func:`rpc_sync`, :func:`rpc_async` and :func:`remote`: use the
#: timeout of the backend options.
UNSET_RPC_TIMEOUT = -1.0


class BackendType(enum.Enum):
    """RPC backends. ember has one agent, answering to PyTorch's ``TENSORPIPE`` name: calls go
    over the job's token-authenticated TCP connections (see ``_agent.py``)."""

    TENSORPIPE = "TENSORPIPE"


class RpcBackendOptions:
    """Options every backend takes: ``rpc_timeout`` (seconds) and ``init_method``."""

    def __init__(
        self, rpc_timeout: float = DEFAULT_RPC_TIMEOUT_SEC, init_method: str = DEFAULT_INIT_METHOD
    ) -> None:
        self.rpc_timeout = float(rpc_timeout)
        self.init_method = init_method


class TensorPipeRpcBackendOptions(RpcBackendOptions):
    """PyTorch's options for the TensorPipe agent.

    Args:
        num_worker_threads: threads that run incoming calls (default 16).
        rpc_timeout: default timeout of ``rpc_sync``/``rpc_async``/``to_here``, seconds
            (default 60; 0 means no timeout).
        init_method: ``"env://"`` (``MASTER_ADDR``/``MASTER_PORT``) or ``"tcp://host:port"``.
        device_maps, devices: accepted for compatibility; tensors travel through host memory
            and arrive on the CPU.
    """

    def __init__(
        self,
        *,
        num_worker_threads: int = DEFAULT_NUM_WORKER_THREADS,
        rpc_timeout: float = DEFAULT_RPC_TIMEOUT_SEC,
        init_method: str = DEFAULT_INIT_METHOD,
        device_maps: dict | None = None,
        devices: list | None = None,
        _transports=None,
        _channels=None,
    ) -> None:
        super().__init__(rpc_timeout, init_method)
        if int(num_worker_threads) < 1:
            raise ValueError(f"num_worker_threads must be >= 1, got {num_worker_threads}")
        self.num_worker_threads = int(num_worker_threads)
        self.device_maps = dict(device_maps or {})
        self.devices = list(devices or [])

    def set_device_map(self, to: str, device_map: dict) -> None:
        """Record a device map for calls to ``to`` (kept for compatibility; see above)."""
        self.device_maps.setdefault(to, {}).update(device_map)

    def set_devices(self, devices: list) -> None:
        """Set the devices this worker's RPC agent uses (kept for compatibility)."""
        self.devices = list(devices)


@dataclass(frozen=True)
class WorkerInfo:
    """A worker's name and id (its rank in ``init_rpc``)."""

    name: str
    id: int

    def __repr__(self) -> str:
        return f"WorkerInfo(id={self.id}, name={self.name})"
