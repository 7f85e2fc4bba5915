"""Process-group management with PyTorch's names: ``init_process_group``, ``new_group``, ...

Like ``torch.distributed.distributed_c10d``, this module also re-exports the collectives
(``collectives.py``, ``p2p.py``) and ``ReduceOp``.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from datetime import timedelta

from ._c10d_queries import (  # noqa: F401 - the state queries, PyTorch's names here too
    get_backend,
    get_default_backend_for_device,
    get_global_rank,
    get_group_rank,
    get_process_group_ranks,
    get_rank,
    get_world_size,
    is_available,
    is_gloo_available,
    is_initialized,
    is_nccl_available,
    is_torchelastic_launched,
)
from ._runtime import _auth, _grace, _launch_env, _state
from ._runtime._state import GroupMember
from ._runtime._world import World, normalize_backend
from .collectives import (  # noqa: F401 - PyTorch's module exposes the collectives too
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
from .errors import DistributedError
from .p2p import P2POp, batch_isend_irecv, irecv, isend, recv, send  # noqa: F401
from .process_group import ProcessGroup
from .reduce_op import ReduceOp  # noqa: F401
from .store import TCPStore, no_retry

#: The default timeout of collectives and the store: 30 minutes, as PyTorch's.
default_pg_timeout = timedelta(minutes=30)

_own_store: TCPStore | None = None
_init_count = 0


class Backend(str):
    """Backend names (PyTorch's ``Backend``): ``Backend("GLOO") == "gloo"``; any name
    ``init_process_group`` accepts is valid (``"gloo"`` runs on ember's ``"auto"``)."""

    UNDEFINED = "undefined"
    AUTO = "auto"
    GLOO = "gloo"
    NCCL = "nccl"
    GRPC = "grpc"
    SHM = "shm"
    # PyTorch's other names, read as constants by libraries (ignite's native model); ember's
    # ``init_process_group`` refuses them with its usual "Invalid backend" error.
    MPI = "mpi"
    UCC = "ucc"
    XCCL = "xccl"
    FAKE = "fake"

    #: The backend ``init_process_group`` picks per device type when none is named (PyTorch's
    #: table, read by Lightning's DDP strategy); every one of them runs on ember's transports.
    default_device_backend_map: dict[str, str] = {"cpu": "gloo", "cuda": "nccl"}
    #: The names ember accepts, PyTorch's first.
    backend_list: list[str] = ["undefined", "gloo", "nccl", "auto", "grpc", "shm"]
    #: The device types each backend's collectives take.
    backend_capability: dict[str, list[str]] = {
        "gloo": ["cpu", "cuda"],
        "nccl": ["cuda"],
        "auto": ["cpu", "cuda"],
        "grpc": ["cpu", "cuda"],
        "shm": ["cpu"],
    }

    def __new__(cls, name: str):
        normalize_backend(name)  # validates
        return str.__new__(cls, str(name).lower())


# ---- init / destroy -----------------------------------------------------------------------------
def _seconds(timeout) -> float:
    if timeout is None:
        return default_pg_timeout.total_seconds()
    return timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    if value is None:
        raise ValueError(
            "Error initializing ember.distributed using env:// rendezvous: "
            f"environment variable {name} expected, but not set"
        )
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def _rendezvous_address(init_method, rank: int, world_size: int):
    """(rank, world_size, master host, master port) from ``init_method`` and the environment
    (torchrun's variables, else SLURM's or an MPI launcher's: ``_launch_env.py``)."""
    if init_method is None or init_method == "env://":
        launch = _launch_env.detect()
        if launch is None or launch.launcher in ("env", "torchrun"):
            rank = rank if rank >= 0 else _env_int("RANK")
            world_size = world_size if world_size >= 0 else _env_int("WORLD_SIZE")
            host = os.environ.get("MASTER_ADDR")
            if host is None:
                raise ValueError(
                    "Error initializing ember.distributed using env:// "
                    "rendezvous: environment variable MASTER_ADDR expected, but "
                    "not set"
                )
            return rank, world_size, host, _env_int("MASTER_PORT")
        rank = rank if rank >= 0 else launch.rank
        world_size = world_size if world_size >= 0 else launch.world_size
        if launch.master_addr is None:
            raise ValueError(
                f"Error initializing ember.distributed under {launch.launcher}: "
                "set MASTER_ADDR to the address of rank 0's node (it could not "
                "be derived from the launcher's environment)"
            )
        if launch.master_port is None:
            raise ValueError(
                f"Error initializing ember.distributed under {launch.launcher}: "
                "set MASTER_PORT (no job id to derive one from)"
            )
        # Scripts read torchrun's variables (LOCAL_RANK for the device, ...): provide them.
        for key, value in launch.torchrun_variables().items():
            os.environ.setdefault(key, value)
        return rank, world_size, launch.master_addr, launch.master_port
    url = urllib.parse.urlparse(init_method)
    if url.scheme != "tcp":
        raise ValueError(
            f"unsupported init_method {init_method!r}: use 'env://' or 'tcp://host:port'"
        )
    query = dict(urllib.parse.parse_qsl(url.query))
    rank = rank if rank >= 0 else int(query.get("rank", -1))
    world_size = world_size if world_size >= 0 else int(query.get("world_size", -1))
    if rank < 0:
        raise ValueError("rank parameter missing")
    if world_size < 0:
        raise ValueError("world size parameter missing")
    if url.hostname is None or url.port is None:
        raise ValueError(f"init_method {init_method!r} needs a host and a port")
    return rank, world_size, url.hostname, url.port


def init_process_group(
    backend: str | None = None,
    init_method: str | None = None,
    timeout: timedelta | None = None,
    world_size: int = -1,
    rank: int = -1,
    store=None,
    group_name: str = "",
    pg_options=None,
    device_id=None,
    network_grace: timedelta | float | None = None,
) -> None:
    """Join the job's default process group (PyTorch's signature).

    Args:
        backend: ``"auto"`` (default; shared memory between ranks on one host, sockets
            between hosts, NCCL for CuPy tensors), ``"shm"``, ``"grpc"`` (network data plane
            for every pair), ``"nccl"``; ``"gloo"`` is an alias of ``"auto"``.
        init_method: ``"env://"`` (default: ``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``,
            ``WORLD_SIZE``; without ``RANK``, SLURM's or an MPI launcher's variables, see
            ``_launch_env.py``; under torchrun, ember's store stands beside torchrun's) or
            ``"tcp://host:port"``.
        timeout: for the rendezvous and for every collective (default 30 minutes).
        world_size, rank: override the environment.
        store: an existing ``Store`` to rendezvous through (then ``rank`` and ``world_size``
            are required).
        network_grace: how long a lost network connection between ranks is ridden out before
            the job fails naming the unreachable peer (ember's addition; default
            ``EMBER_NET_GRACE_S`` or 60 s; see docs/failure_modes.md).

    The job secret comes from ``EMBER_TOKEN`` (under torchrun without it, rank 0 makes one and
    hands it to the others through torchrun's store; otherwise this user's private token file,
    ``~/.ember/job_token``; no token only with ``EMBER_INSECURE_NO_TOKEN=1``). ``group_name``,
    ``pg_options`` and ``device_id`` are accepted for compatibility and ignored.
    """
    global _own_store, _init_count
    if _state.world is not None:
        raise ValueError("trying to initialize the default process group twice!")
    # PyTorch reports Backend.UNDEFINED for a group created without a backend name
    backend_name = Backend.UNDEFINED if backend is None else str(backend).lower()
    backend = normalize_backend(backend)
    secs = _seconds(timeout)
    _grace.set_grace(network_grace)
    own_store = None
    if store is None:
        rank, world_size, host, port = _rendezvous_address(init_method, rank, world_size)
        _check_rank(rank, world_size)
        if init_method in (None, "env://") and _launch_env.uses_agent_store():
            # torchrun's agent store holds MASTER_PORT: stand beside it, never bind it.
            store, token = _launch_env.agent_store_rendezvous(
                rank, world_size, host, port, _init_count, secs
            )
            own_store = store
        else:
            token = _auth.job_token()
            host = _auth.bind_host(host, world_size)  # loopback when single-host
            store = own_store = TCPStore(
                host,
                port,
                world_size,
                is_master=rank == 0,
                timeout=secs,
                wait_for_workers=False,
                token=token,
                _rank=rank,
            )
        master_host = store.host
    else:
        if rank < 0 or world_size < 0:
            raise ValueError("rank and world_size must be given together with store")
        _check_rank(rank, world_size)
        token = _auth.job_token()
        master_host = getattr(store, "host", None) or getattr(
            getattr(store, "underlying_store", None), "host", "127.0.0.1"
        )
    world = World(rank, world_size, store, backend, secs, token, _init_count, master_host)
    _init_count += 1
    try:
        world.start()
        pg = ProcessGroup(world, 0, list(range(world_size)), secs, backend)
        pg.backend_name = backend_name
        world.groups[0] = pg
        world.next_group_id = 1
        _internal_barrier(pg)
        world.after_barrier()
    except BaseException as e:
        # tell the ranks waiting for this one why it will not come (issue #28)
        if isinstance(e, Exception) and world.abort_message is None:
            world.fail(DistributedError(f"rank {rank} failed to join: {e}"))
        world.close()
        if own_store is not None:
            own_store.close()
        raise
    _state.world, _own_store = world, own_store


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1:
        raise ValueError(f"world_size must be a positive integer, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(
            f"Invalid rank {rank}, rank should be in the interval [0, {world_size - 1}]"
        )


def _internal_barrier(pg: ProcessGroup) -> None:
    from ._runtime import _algorithms

    ctx = pg.next_op("init_barrier", "()")
    ctx.start()
    _algorithms.barrier(pg.comm, ctx)


def destroy_process_group(group=None) -> None:
    """Leave ``group``; with no argument, tear down the whole distributed state."""
    global _own_store
    world = _state.require_world()
    if group is not None and group is not world.groups.get(0):
        if isinstance(group, ProcessGroup):
            world.groups.pop(group.group_id, None)
        return
    _state.world = None
    store, _own_store = _own_store, None
    try:
        clean = world.abort_message is None
        world.close()
    finally:
        if store is not None:
            _close_store(store, world, clean)


def _close_store(store: TCPStore, world: World, clean: bool) -> None:
    # The master keeps serving until every rank has left, so that late ranks can still
    # finish their own teardown (and read an abort message) through it.
    try:
        left = world.store.add("left", 1)
        deadline = time.monotonic() + min(10.0, world.timeout)
        if store._server is not None and clean:
            while left < world.world_size and time.monotonic() < deadline:
                time.sleep(0.01)
                left = world.store.add("left", 0)
        elif clean:
            # Wait for the master to close its store: a re-initialisation in this process
            # (notebooks, sweeps, tests) would otherwise reach the old store at the same
            # address, and lose it while rank 0 waits for it in the new one.
            # (A store that no longer counts this rank is rank 0's next one: the old is gone.)
            # The master's store going away is the awaited signal, not a network blip: no
            # retrying it for the grace period (and no "retrying" warning at every exit).
            with no_retry():
                while left > 0 and time.monotonic() < deadline:
                    time.sleep(0.005)
                    left = world.store.add("left", 0)
    except DistributedError:
        pass
    store.close()


_LOCAL_GROUP_IDS = 1 << 24  # ids of locally synchronised groups start here (channel ids fit)


def _local_group_id(world, spec: str) -> int:
    """The id the members of a locally synchronised group agree on, through the store: the
    k-th such group over the same ranks takes the id its first member to arrive drew."""
    count = world.local_group_calls.get(spec, 0)
    world.local_group_calls[spec] = count + 1
    drawn = _LOCAL_GROUP_IDS + world.store.add("local_group_ids", 1)
    return int(world.store.compare_set(f"local_group/{spec}/{count}", "", str(drawn)).decode())


def new_group(
    ranks=None,
    timeout=None,
    backend=None,
    pg_options=None,
    use_local_synchronization: bool = False,
    group_desc=None,
    device_id=None,
):
    """A new group over ``ranks`` (global ranks; all of them by default).

    Like PyTorch, every rank of the job must call ``new_group`` in the same order, members or
    not; non-members get ``GroupMember.NON_GROUP_MEMBER``. With
    ``use_local_synchronization=True`` only the members call it (in the same order among
    themselves, for groups of the same ranks); a non-member's call just returns
    ``NON_GROUP_MEMBER``.
    """
    world = _state.require_world()
    n = world.world_size
    ranks = list(range(n)) if ranks is None else sorted({int(r) for r in ranks})
    bad = [r for r in ranks if not 0 <= r < n]
    if bad:
        raise ValueError(f"new_group: ranks {bad} are outside the world (ranks 0..{n - 1})")
    if not ranks:
        raise ValueError("new_group: ranks must not be empty")
    spec = json.dumps(ranks)
    if use_local_synchronization:
        if world.rank not in ranks:
            return GroupMember.NON_GROUP_MEMBER
        gid = _local_group_id(world, spec)
    else:
        gid = world.next_group_id
        world.next_group_id += 1
        first = world.store.compare_set(f"new_group/{gid}", "", spec).decode()
        if first != spec:
            raise world.fail(
                DistributedError(
                    f"new_group mismatch: the {gid}th new_group call was made with ranks {first} "
                    f"elsewhere but with ranks {spec} on rank {world.rank}"
                )
            )
    pg = ProcessGroup(
        world,
        gid,
        ranks,
        _seconds(timeout) if timeout is not None else world.timeout,
        normalize_backend(backend or world.backend),
    )
    pg.backend_name = str(backend).lower() if backend is not None else world.groups[0].backend_name
    world.groups[gid] = pg
    return pg if pg.is_member else GroupMember.NON_GROUP_MEMBER
