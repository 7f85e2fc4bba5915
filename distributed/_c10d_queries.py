"""Process-group state queries with PyTorch's names: ``is_initialized``, ``get_rank``,
``get_world_size``, ``get_backend``, ``get_global_rank``, ... (``distributed_c10d.py``
re-exports them, as ``torch.distributed.distributed_c10d`` has them)."""

from __future__ import annotations

import os

from ._runtime import _state


def is_available() -> bool:
    """Whether the distributed package can be used: always True in ember (the collectives
    run on every platform ember runs on).
    """
    return True


def is_initialized() -> bool:
    """Whether the default process group has been created by :func:`init_process_group`."""
    return _state.world is not None


def is_gloo_available() -> bool:
    """``"gloo"`` is accepted (as an alias of the CPU backend)."""
    return True


def is_nccl_available() -> bool:
    """Whether the NCCL backend can be used: CuPy with ``cupy.cuda.nccl`` is installed and a
    GPU is visible.
    """
    from ._runtime import _nccl

    return _nccl.available()


def is_torchelastic_launched() -> bool:
    """Whether this process was started by torchelastic (``torchrun``): True when the
    ``TORCHELASTIC_RUN_ID`` environment variable is set.
    """
    return os.environ.get("TORCHELASTIC_RUN_ID") is not None


def get_rank(group=None) -> int:
    """The rank of this process in ``group``.

    Args:
        group: the process group; None means the default group.

    Returns:
        The rank, from 0 to ``get_world_size(group) - 1``; -1 when the process is not a member
        of ``group`` or no process group has been initialized.
    """
    pg = _state.resolve_group(group)
    return -1 if pg is None else pg.rank()


def get_world_size(group=None) -> int:
    """The number of processes in ``group``.

    Args:
        group: the process group; None means the default group.

    Returns:
        The group's size; -1 when the process is not a member of ``group`` or no process group
        has been initialized.
    """
    pg = _state.resolve_group(group)
    return -1 if pg is None else pg.size()


def get_backend(group=None) -> str:
    """The backend name the group was created with, as given (``"gloo"`` stays ``"gloo"``,
    as in PyTorch); ``"undefined"`` when none was given, as PyTorch returns (ember then
    transports as with ``"auto"``)."""
    pg = _state.resolve_group(group)
    if pg is None:
        raise ValueError("Invalid process group specified")
    return pg.backend_name


def get_default_backend_for_device(device) -> str:
    """The backend PyTorch picks for ``device``: ``"gloo"`` for the CPU, ``"nccl"`` for CUDA
    (ember then runs its shared-memory/socket transports or NCCL through CuPy).

    Args:
        device (str or ember.device): a device or its type, e.g. ``"cpu"``, ``"cuda:1"``.
    """
    from ember.backend.device import device as _device

    kind = device.type if isinstance(device, _device) else str(device).split(":")[0]
    backends = {"cpu": "gloo", "cuda": "nccl"}
    if kind not in backends:
        raise RuntimeError(
            f"get_default_backend_for_device: no default backend for device type {kind!r}; "
            f"ember knows {sorted(backends)}"
        )
    return backends[kind]


def get_process_group_ranks(group) -> list[int]:
    """The global ranks of the members of ``group``, in group-rank order.

    Args:
        group: the process group; None means the default group.

    Returns:
        A list of global ranks; empty when no process group has been initialized.
    """
    pg = _state.resolve_group(group) if group is not None else _state.resolve_group(None)
    return list(pg.ranks) if pg is not None else []


def get_global_rank(group, group_rank: int) -> int:
    """Translate a rank within ``group`` to the rank in the default (world) group.

    Args:
        group: the process group.
        group_rank: a rank within ``group``.

    Raises:
        ValueError: ``group_rank`` is not a rank of ``group``.
    """
    pg = _state.resolve_group(group)
    if pg is None or not 0 <= group_rank < pg.size():
        raise ValueError(f"Group rank {group_rank} is not part of group {group}")
    return pg.ranks[group_rank]


def get_group_rank(group, global_rank: int) -> int:
    """Translate a global rank to its rank within ``group``.

    Args:
        group: the process group.
        global_rank: a rank in the default (world) group.

    Raises:
        ValueError: ``global_rank`` is not a member of ``group``.
    """
    pg = _state.resolve_group(group)
    if pg is None or global_rank not in pg.ranks:
        raise ValueError(f"Global rank {global_rank} is not part of group {group}")
    return pg.ranks.index(global_rank)
