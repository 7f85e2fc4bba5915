"""``ember.distributed``: PyTorch's ``torch.distributed`` API on shared memory, sockets,
gRPC and NCCL.

Start every process with torchrun's variables (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``, plus ``EMBER_TOKEN``, the job secret) and call ``init_process_group()``.
See docs/distributed.md.
"""

from ._c10d_extras import (
    DebugLevel,
    breakpoint,
    get_debug_level,
    get_node_local_rank,
    is_backend_available,
    is_mpi_available,
    is_ucc_available,
    is_xccl_available,
    new_subgroups,
    new_subgroups_by_enumeration,
    set_debug_level,
    set_debug_level_from_env,
    supports_complex,
)
from ._objects import (
    all_gather_object,
    broadcast_object_list,
    gather_object,
    recv_object_list,
    scatter_object_list,
    send_object_list,
)
from ._runtime._state import GroupMember, group
from .collectives import (
    all_gather,
    all_gather_into_tensor,
    all_reduce,
    all_to_all,
    all_to_all_single,
    barrier,
    broadcast,
    gather,
    monitored_barrier,
    reduce,
    reduce_scatter,
    reduce_scatter_tensor,
    scatter,
)
from .distributed_c10d import (
    Backend,
    default_pg_timeout,
    destroy_process_group,
    get_backend,
    get_default_backend_for_device,
    get_global_rank,
    get_group_rank,
    get_process_group_ranks,
    get_rank,
    get_world_size,
    init_process_group,
    is_available,
    is_gloo_available,
    is_initialized,
    is_nccl_available,
    is_torchelastic_launched,
    new_group,
)
from .errors import DistBackendError, DistError, DistNetworkError, DistributedError, DistStoreError
from .p2p import P2POp, batch_isend_irecv, irecv, isend, recv, send
from .process_group import ProcessGroup
from .reduce_op import ReduceOp
from .store import HashStore, PrefixStore, Store, TCPStore
from .work import Future, Work

# PyTorch's deprecated alias
reduce_op = ReduceOp

__all__ = [
    "Backend",
    "DistBackendError",
    "DistError",
    "DistNetworkError",
    "DistStoreError",
    "DistributedError",
    "Future",
    "GroupMember",
    "HashStore",
    "P2POp",
    "PrefixStore",
    "ProcessGroup",
    "ReduceOp",
    "Store",
    "TCPStore",
    "Work",
    "all_gather",
    "all_gather_into_tensor",
    "all_gather_object",
    "all_reduce",
    "all_to_all",
    "all_to_all_single",
    "barrier",
    "batch_isend_irecv",
    "broadcast",
    "broadcast_object_list",
    "default_pg_timeout",
    "destroy_process_group",
    "gather",
    "gather_object",
    "get_backend",
    "get_default_backend_for_device",
    "get_global_rank",
    "get_group_rank",
    "get_process_group_ranks",
    "get_rank",
    "get_world_size",
    "group",
    "init_process_group",
    "irecv",
    "is_available",
    "is_gloo_available",
    "is_initialized",
    "is_nccl_available",
    "is_torchelastic_launched",
    "isend",
    "monitored_barrier",
    "new_group",
    "recv",
    "reduce",
    "reduce_op",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "scatter",
    "scatter_object_list",
    "send",
    # ---- the small helpers (_c10d_extras.py) and objects point to point
    "DebugLevel",
    "breakpoint",
    "get_debug_level",
    "get_node_local_rank",
    "is_backend_available",
    "is_mpi_available",
    "is_ucc_available",
    "is_xccl_available",
    "new_subgroups",
    "new_subgroups_by_enumeration",
    "recv_object_list",
    "send_object_list",
    "set_debug_level",
    "set_debug_level_from_env",
    "supports_complex",
]

# ---- parameter sharding (issue 7): the memory report; the sharding packages load on import
# (ember.distributed.fsdp, ember.distributed.optim) as in PyTorch.
from .memory import memory_report, memory_summary  # noqa: E402

__all__ += ["memory_report", "memory_summary"]

# ---- data parallelism and the Trainer (issue 6) ----------------------------------------------
from . import train  # noqa: E402
from .algorithms import GradBucket  # noqa: E402  (what a DDP communication hook receives)
from .parallel.ddp import DataParallel, DistributedDataParallel  # noqa: E402
from .train import (  # noqa: E402
    Checkpoint,
    CheckpointConfig,
    DataConfig,
    FailureConfig,
    Result,
    RunConfig,
    ScalingConfig,
    Trainer,
    TrainingFailedError,
    get_checkpoint,
    get_context,
    get_dataset_shard,
    prepare_data_loader,
    prepare_model,
    report,
)

__all__ += ["GradBucket"]
__all__ += [
    "DataParallel",
    "DistributedDataParallel",
    "train",
    "Trainer",
    "TrainingFailedError",
    "ScalingConfig",
    "RunConfig",
    "FailureConfig",
    "CheckpointConfig",
    "Checkpoint",
    "Result",
    "report",
    "get_checkpoint",
    "get_context",
    "prepare_model",
    "prepare_data_loader",
    "DataConfig",
    "get_dataset_shard",
]

# ---- device meshes (issue 27) -------------------------------------------------------------------
from .device_mesh import DeviceMesh, init_device_mesh  # noqa: E402

__all__ += ["DeviceMesh", "init_device_mesh"]


# ---- RPC and distributed autograd: loaded on first use ------------------------------------------
def __getattr__(name: str):
    if name in ("rpc", "autograd"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
