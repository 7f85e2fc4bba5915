"""The rest of ``torch.distributed``'s small public helpers: backend availability, the debug
level, the node-local rank, subgroups of equal size, complex-safe reductions and a
distributed ``breakpoint``."""

from __future__ import annotations

import os
import sys
from enum import Enum

from ._c10d_queries import get_rank, get_world_size, is_nccl_available
from .distributed_c10d import new_group
from .reduce_op import ReduceOp

__all__ = [
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
    "set_debug_level",
    "set_debug_level_from_env",
    "supports_complex",
]


def is_mpi_available() -> bool:
    """ember has no MPI backend."""
    return False


def is_ucc_available() -> bool:
    """ember has no UCC backend."""
    return False


def is_xccl_available() -> bool:
    """ember has no XCCL (Intel GPU) backend."""
    return False


def is_backend_available(backend: str) -> bool:
    """Whether ``init_process_group(backend=...)`` accepts ``backend`` here: ``gloo`` (ember's
    CPU transports), ``auto``/``cpu:gloo``-style names, and ``nccl`` where CuPy's NCCL and a
    GPU are present."""
    name = str(backend).lower()
    if name == "nccl" or name.endswith(":nccl"):
        return is_nccl_available()
    return name in ("gloo", "auto", "undefined") or name.endswith(":gloo")


class DebugLevel(Enum):
    """``TORCH_DISTRIBUTED_DEBUG``'s levels."""

    OFF = 0
    INFO = 1
    DETAIL = 2


_debug_level = [None]


def set_debug_level(level: DebugLevel) -> None:
    """Set the debug level (``DETAIL`` makes collectives check their arguments across ranks
    where ember can, as ``TORCH_DISTRIBUTED_DEBUG=DETAIL`` does)."""
    if not isinstance(level, DebugLevel):
        raise TypeError(f"set_debug_level expects a DebugLevel, got {type(level).__name__}")
    _debug_level[0] = level


def set_debug_level_from_env() -> None:
    """Read the level from ``TORCH_DISTRIBUTED_DEBUG`` (``OFF``, ``INFO`` or ``DETAIL``)."""
    raw = os.environ.get("TORCH_DISTRIBUTED_DEBUG", "OFF").strip().upper() or "OFF"
    if raw not in DebugLevel.__members__:
        raise ValueError(
            f"The value of TORCH_DISTRIBUTED_DEBUG must be OFF, INFO, or DETAIL, got {raw!r}"
        )
    _debug_level[0] = DebugLevel[raw]


def get_debug_level() -> DebugLevel:
    """The debug level: the last :func:`set_debug_level`, else ``TORCH_DISTRIBUTED_DEBUG``."""
    if _debug_level[0] is None:
        set_debug_level_from_env()
    return _debug_level[0]


def get_node_local_rank(fallback_rank: int | None = None) -> int:
    """This process's rank on its node: ``LOCAL_RANK`` as torchrun (and ``ember launch``) set
    it, else ``fallback_rank``; neither is an error."""
    if "LOCAL_RANK" in os.environ:
        return int(os.environ["LOCAL_RANK"])
    if fallback_rank is not None:
        return int(fallback_rank)
    raise RuntimeError(
        "LOCAL_RANK is not in the environment. Consider passing fallback_rank to allow "
        "`get_node_local_rank` to work, assuming you are not running in a multi-device "
        "context and want the code to run locally instead."
    )


def new_subgroups(group_size: int | None = None, group=None, timeout=None, backend=None,
                  pg_options=None, group_desc=None):  # fmt: skip
    """Split the world into consecutive subgroups of ``group_size`` ranks (default: one per
    node, by ``LOCAL_WORLD_SIZE``); every rank must call it. Returns ``(the subgroup this rank
    is in, all subgroups)``."""
    if group is not None:
        raise ValueError("new_subgroups: `group` is not supported (split the default group)")
    world = get_world_size()
    if group_size is None:
        group_size = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if group_size <= 0:
        raise ValueError("The arg 'group_size' must be positive")
    if world % group_size:
        raise ValueError(
            f"The world size ({world}) must be divisible by 'group_size' ({group_size})"
        )
    ranks = [list(range(s, s + group_size)) for s in range(0, world, group_size)]
    return new_subgroups_by_enumeration(ranks, timeout=timeout, backend=backend)


def new_subgroups_by_enumeration(ranks_per_subgroup_list, timeout=None, backend=None,
                                 pg_options=None, group_desc=None):  # fmt: skip
    """One subgroup per list of global ranks (disjoint lists); every rank must call it.
    Returns ``(the subgroup this rank is in or None, all subgroups)``."""
    if not ranks_per_subgroup_list:
        raise ValueError("The arg 'ranks_per_subgroup_list' cannot be empty")
    seen: dict[int, int] = {}
    for i, ranks in enumerate(ranks_per_subgroup_list):
        for r in ranks:
            if r in seen:
                raise ValueError(
                    f"Rank {r} has appeared in both subgroup {seen[r]} and subgroup {i}"
                )
            seen[r] = i
    me = get_rank()
    mine, groups = None, []
    for ranks in ranks_per_subgroup_list:
        pg = new_group(ranks=ranks, timeout=timeout, backend=backend)
        groups.append(pg)
        if me in ranks:
            mine = pg
    return mine, groups


def supports_complex(reduceOp) -> bool:
    """Whether ``reduceOp`` is defined on complex tensors (not MAX, MIN, PRODUCT or the
    bitwise reductions)."""
    denied = (ReduceOp.MAX, ReduceOp.MIN, ReduceOp.PRODUCT, ReduceOp.BAND, ReduceOp.BOR,
              ReduceOp.BXOR)  # fmt: skip
    return reduceOp not in denied


def breakpoint(rank: int = 0, skip: int = 0, timeout_s: float = 3600) -> None:  # noqa: A001
    """Stop rank ``rank`` in pdb (reading this terminal's stdin, as torch's); the other ranks
    wait at a barrier until it continues. ``skip``: let that many calls pass first."""
    from . import barrier

    if skip > 0:
        key = (rank, sys._getframe(1).f_code.co_filename, sys._getframe(1).f_lineno)
        _skips[key] = _skips.get(key, 0) + 1
        if _skips[key] <= skip:
            return
    if get_rank() == rank:
        import pdb

        try:
            stdin = open("/dev/stdin")  # noqa: SIM115  (kept open while pdb reads it)
        except OSError:
            stdin = sys.stdin
        debugger = pdb.Pdb(stdin=stdin)
        debugger.message(
            f"\n!!! ATTENTION !!!\n\nType 'up' to get to the frame that called "
            f"dist.breakpoint(rank={rank})\n"
        )
        debugger.set_trace(sys._getframe(1))
    barrier()


_skips: dict = {}
