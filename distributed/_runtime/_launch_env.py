"""Where ``init_process_group("env://")`` finds rank, world size and master: which launcher
started this process.

In order of precedence:

* **torchrun** / ``python -m torch.distributed.run`` and ember's own launcher: ``RANK``,
  ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` (+ ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``,
  ``GROUP_RANK``/``NODE_RANK``). Under torchrun ``MASTER_PORT`` belongs to the agent's own
  ``TCPStore`` (``TORCHELASTIC_USE_AGENT_STORE=True``); see ``agent_store_rendezvous``.
* **SLURM** (``srun``): ``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``, ``SLURM_NODEID``;
  master ``MASTER_ADDR``, else ``SLURM_LAUNCH_NODE_IPADDR``, else loopback on a one-node job;
  port ``MASTER_PORT``, else one derived from ``SLURM_JOB_ID`` and ``SLURM_STEP_ID``.
* **MPI** launchers: Open MPI's ``OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK/LOCAL_SIZE``, then
  MPICH/Intel MPI's ``PMI_RANK/PMI_SIZE`` (``MPI_LOCALRANKID``); master ``MASTER_ADDR``, else
  loopback when every rank is on this node; port ``MASTER_PORT``, else one derived from the
  launcher's job id.

A derived port lies in 20000-39999, mostly below Linux's ephemeral range (32768 and up), so an
outgoing connection rarely holds it; every rank derives the same one without talking.
"""

from __future__ import annotations

import json
import os
import secrets
import zlib
from dataclasses import dataclass

_PORT_BASE, _PORT_SPAN = 20000, 20000
# Variables that name an MPI job, in the order they are tried for a derived port.
_MPI_JOB_IDS = (
    "OMPI_MCA_ess_base_jobid",
    "OMPI_MCA_orte_ess_jobid",
    "PMIX_NAMESPACE",
    "PMI_KVSNAME",
    "PMI_JOBID",
)


@dataclass
class LaunchEnv:
    """What the launcher told this process (``None`` where it said nothing)."""

    launcher: str  # "env" (torchrun-style variables), "torchrun", "slurm" or "mpi"
    rank: int
    world_size: int
    master_addr: str | None
    master_port: int | None
    local_rank: int | None = None
    local_world_size: int | None = None
    node_rank: int | None = None

    def torchrun_variables(self) -> dict[str, str]:
        """The torchrun variables this environment implies (for ``os.environ``)."""
        out = {
            "RANK": self.rank,
            "WORLD_SIZE": self.world_size,
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": self.master_port,
            "LOCAL_RANK": self.local_rank,
            "LOCAL_WORLD_SIZE": self.local_world_size,
            "NODE_RANK": self.node_rank,
        }
        return {k: str(v) for k, v in out.items() if v is not None}


def _int(env, name: str) -> int | None:
    value = env.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def derived_port(job_id: str) -> int:
    """The port every rank of job ``job_id`` picks for the store when none is given."""
    return _PORT_BASE + zlib.crc32(job_id.encode()) % _PORT_SPAN


def _port(env, job_id: str | None) -> int | None:
    port = _int(env, "MASTER_PORT")
    if port is None and job_id:
        port = derived_port(job_id)
    return port


def _slurm(env) -> LaunchEnv:
    rank, world = _int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS")
    if world is None:
        raise ValueError(
            "SLURM_PROCID is set but SLURM_NTASKS is not: run the script with "
            "srun (or set RANK and WORLD_SIZE)"
        )
    host = env.get("MASTER_ADDR") or env.get("SLURM_LAUNCH_NODE_IPADDR")
    if host is None and _int(env, "SLURM_NNODES") == 1:
        host = "127.0.0.1"
    job = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    job_id = f"slurm-{job}.{env.get('SLURM_STEP_ID', '0')}" if job else None
    local_world = None
    tasks = env.get("SLURM_NTASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE", "")
    if tasks.isdigit():  # "2", not the "2(x3),1" form of an uneven allocation
        local_world = int(tasks)
    return LaunchEnv(
        "slurm",
        rank,
        world,
        host,
        _port(env, job_id),
        _int(env, "SLURM_LOCALID"),
        local_world,
        _int(env, "SLURM_NODEID"),
    )


def _mpi(env, rank_var: str, size_var: str, local_var: str, local_size_var: str) -> LaunchEnv:
    rank, world = _int(env, rank_var), _int(env, size_var)
    if world is None:
        raise ValueError(f"{rank_var} is set but {size_var} is not (or set RANK and WORLD_SIZE)")
    local_rank, local_world = _int(env, local_var), _int(env, local_size_var)
    host = env.get("MASTER_ADDR")
    if host is None and local_world == world:  # every rank on this node
        host = "127.0.0.1"
    job = next((env[v] for v in _MPI_JOB_IDS if env.get(v)), None)
    return LaunchEnv(
        "mpi", rank, world, host, _port(env, job and f"mpi-{job}"), local_rank, local_world
    )


def detect(env=None) -> LaunchEnv | None:
    """The launcher's description of this process, or ``None`` when no launcher set one."""
    env = os.environ if env is None else env
    if env.get("RANK") is not None or env.get("WORLD_SIZE") is not None:
        node = _int(env, "GROUP_RANK")
        return LaunchEnv(
            "torchrun" if env.get("TORCHELASTIC_RUN_ID") else "env",
            _int(env, "RANK"),
            _int(env, "WORLD_SIZE"),
            env.get("MASTER_ADDR"),
            _int(env, "MASTER_PORT"),
            _int(env, "LOCAL_RANK"),
            _int(env, "LOCAL_WORLD_SIZE"),
            node if node is not None else _int(env, "NODE_RANK"),
        )
    if env.get("SLURM_PROCID") is not None:
        return _slurm(env)
    if env.get("OMPI_COMM_WORLD_RANK") is not None:
        return _mpi(
            env,
            "OMPI_COMM_WORLD_RANK",
            "OMPI_COMM_WORLD_SIZE",
            "OMPI_COMM_WORLD_LOCAL_RANK",
            "OMPI_COMM_WORLD_LOCAL_SIZE",
        )
    if env.get("PMI_RANK") is not None:
        return _mpi(env, "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS")
    return None


def uses_agent_store(env=None) -> bool:
    """Whether ``MASTER_PORT`` is held by torchrun's agent store (so ember must stand beside
    it rather than bind it)."""
    env = os.environ if env is None else env
    return env.get("TORCHELASTIC_RUN_ID") is not None and env.get(
        "TORCHELASTIC_USE_AGENT_STORE", ""
    ).lower() in ("true", "1")


def agent_store_rendezvous(
    rank: int, world_size: int, master_addr: str, master_port: int, generation: int, timeout: float
):
    """ember's store, hosted by rank 0 beside torchrun's agent store; returns
    ``(store, token)``.

    Rank 0 binds ember's store to a free port on its own address towards the master and
    publishes ``host``, ``port`` (and a fresh job token when ``EMBER_TOKEN`` is not set)
    under a key of torchrun's store named by the restart attempt and init generation; the
    other ranks read it there. torchrun's store is only read and written through its own
    protocol: its port is never bound.
    """
    from ..store import TCPStore
    from . import _auth
    from ._torch_store import TorchStoreClient

    env = os.environ
    attempt = env.get("TORCHELASTIC_RESTART_COUNT", "0")
    key = f"ember/{env.get('TORCHELASTIC_RUN_ID', '')}/attempt_{attempt}/store/{generation}"
    with TorchStoreClient(master_addr, master_port, timeout) as agent:
        if rank == 0:
            own = env.get(_auth.TOKEN_ENV)
            token = own or secrets.token_hex(16)
            bind = _auth.bind_host(_auth.local_address_towards(master_addr), world_size)
            store = TCPStore(
                bind,
                0,
                world_size,
                is_master=True,
                timeout=timeout,
                wait_for_workers=False,
                token=token,
            )
            # A token the user set is never written to torchrun's (unauthenticated) store;
            # without one, a fresh token keeps other local jobs out of this one.
            agent.set(
                key,
                json.dumps(
                    {"host": store.host, "port": store.port, "token": None if own else token}
                ),
            )
        else:
            info = json.loads(agent.get(key))
            token = env.get(_auth.TOKEN_ENV) or info["token"]
            if token is None:
                raise ValueError(
                    f"rank 0 was started with {_auth.TOKEN_ENV} but rank {rank} "
                    "was not: set it for every rank or for none"
                )
            store = TCPStore(
                info["host"],
                info["port"],
                world_size,
                is_master=False,
                timeout=timeout,
                wait_for_workers=False,
                token=token,
            )
    return store, token
