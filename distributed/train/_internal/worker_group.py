"""A group of Ray actors, one per training worker, in one placement group.

Ranks are ordered by node, then by GPU id (or bundle order on CPU), and torchrun's variables
(RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, NODE_RANK, MASTER_ADDR, MASTER_PORT) plus the
job's secret token (EMBER_TOKEN) are exported into each actor before any user code runs.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

# Variables a worker must not inherit from the driver (they describe *its* place in a job).
_TORCHRUN_VARS = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "NODE_RANK",
    "GROUP_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "EMBER_DEVICE_INDEX",
)


@dataclass
class WorkerInfo:
    """Where one actor landed, and the rank it was given."""

    node_id: str
    node_ip: str
    hostname: str
    pid: int
    gpu_ids: list
    rank: int = -1
    local_rank: int = -1
    node_rank: int = -1
    local_world_size: int = 0


@ray.remote
class _Worker:
    """A training process. ``run`` executes a function in it; ``info`` says where it lives."""

    def info(self) -> tuple:
        ctx = ray.get_runtime_context()
        return (
            ctx.get_node_id(),
            ray.util.get_node_ip_address(),
            socket.gethostname(),
            os.getpid(),
            [str(g) for g in ray.get_gpu_ids()],
        )

    def free_port(self) -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("", 0))
            return s.getsockname()[1]

    def set_env(self, env: dict) -> None:
        for k in _TORCHRUN_VARS:
            os.environ.pop(k, None)
        os.environ.update({k: str(v) for k, v in env.items()})
        if "OMP_NUM_THREADS" in env:
            # NumPy's BLAS pool is already sized in this process: resize it in place (a
            # per-actor runtime_env would instead make Ray start fresh worker processes)
            from threadpoolctl import threadpool_limits

            self._threads = threadpool_limits(int(env["OMP_NUM_THREADS"]))

    def run(self, fn, *args, **kwargs):
        return fn(*args, **kwargs)


def _alive(actors: list | None, timeout: float = 10.0) -> list | None:
    """``actors`` if every one answers, else None (they are killed: start fresh ones)."""
    if not actors:
        return None
    try:
        ray.get([a.info.remote() for a in actors], timeout=timeout)
        return actors
    except Exception:  # noqa: BLE001 - a dead or stuck kept actor: replace them all
        for a in actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001
                pass
        return None


def order_ranks(infos: list[WorkerInfo], first_node: str | None = None) -> list[WorkerInfo]:
    """Sort workers by node (``first_node``, the driver's, first if present; the others in
    spawn order), then GPU id, then spawn order; assign rank, local rank, node rank and local
    world size in that order."""
    node_order: dict[str, int] = {}
    if first_node is not None and any(w.node_id == first_node for w in infos):
        node_order[first_node] = 0
    for w in infos:
        node_order.setdefault(w.node_id, len(node_order))

    def gpu_key(w):
        return [int(g) if g.isdigit() else g for g in w.gpu_ids]

    ordered = sorted(
        enumerate(infos), key=lambda p: (node_order[p[1].node_id], gpu_key(p[1]), p[0])
    )
    counts: dict[str, int] = {}
    for _, w in ordered:
        counts[w.node_id] = counts.get(w.node_id, 0) + 1
    seen: dict[str, int] = {}
    for rank, (_, w) in enumerate(ordered):
        w.rank = rank
        w.local_rank = seen.get(w.node_id, 0)
        seen[w.node_id] = w.local_rank + 1
        w.node_rank = node_order[w.node_id]
        w.local_world_size = counts[w.node_id]
    return [w for _, w in ordered]


def worker_envs(
    ordered: list[WorkerInfo], master_addr: str, master_port: int, token: str
) -> list[dict]:
    """Each ranked worker's environment: torchrun's variables, the job token and, on GPU
    nodes, ``CUDA_VISIBLE_DEVICES`` (all of the node's workers' GPUs, so that peers can reach
    each other's devices) with ``EMBER_DEVICE_INDEX``, the worker's own GPU in that list."""
    node_gpus: dict[str, list] = {}
    for w in ordered:
        # once each: workers given fractions of one GPU all report that GPU's id
        ids = node_gpus.setdefault(w.node_id, [])
        ids.extend(g for g in w.gpu_ids if g not in ids)
    envs = []
    for w in ordered:
        e = {
            "RANK": w.rank,
            "LOCAL_RANK": w.local_rank,
            "WORLD_SIZE": len(ordered),
            "LOCAL_WORLD_SIZE": w.local_world_size,
            "NODE_RANK": w.node_rank,
            "GROUP_RANK": w.node_rank,
            "MASTER_ADDR": master_addr,
            "MASTER_PORT": master_port,
            "EMBER_TOKEN": token,
        }
        if node_gpus[w.node_id]:
            e["CUDA_VISIBLE_DEVICES"] = ",".join(node_gpus[w.node_id])
        if w.gpu_ids:  # LOCAL_RANK, unless workers share GPUs
            e["EMBER_DEVICE_INDEX"] = node_gpus[w.node_id].index(w.gpu_ids[0])
        envs.append(e)
    return envs


def _enclosing_group(num_workers: int, bundle: dict):
    """``(placement group, first worker bundle)`` when the caller runs in a placement group
    whose last ``num_workers`` bundles each hold ``bundle``; ``(None, 0)`` otherwise."""
    from ray.util.placement_group import get_current_placement_group

    pg = get_current_placement_group()
    specs = list(getattr(pg, "bundle_specs", None) or []) if pg is not None else []
    if len(specs) < num_workers:
        return None, 0
    first = len(specs) - num_workers
    fits = all(spec.get(k, 0) >= v for spec in specs[first:] for k, v in bundle.items() if v)
    return (pg, first) if fits else (None, 0)


# Worker actors kept between runs by a process that asked for it (``reuse=True``): a Ray Tune
# trial actor that Tune reuses for the next trial keeps its placement group, so the next
# trial's workers can be the same processes, which saves each trial a Python process start
# and ember's import. Keyed by the enclosing group and the bundles used.
_KEPT: dict[tuple, list] = {}


class WorkerGroup:
    """Start ``num_workers`` actors with ``bundle`` resources each, ranked and configured.

    ``reuse``: inside an enclosing placement group (a Tune trial), take the actors a previous
    group of the same shape kept there (``shutdown(keep=True)``) instead of starting new ones.
    """

    def __init__(
        self,
        num_workers: int,
        bundle: dict,
        placement_strategy: str = "PACK",
        env: dict | None = None,
        start_timeout: float = 120.0,
        reuse: bool = False,
        place_timeout: float | None = None,
    ):
        self.num_workers = num_workers
        self.bundle = dict(bundle)
        self.token = (env or {}).get("EMBER_TOKEN") or secrets.token_hex(16)
        cpus = max(1, int(self.bundle.get("CPU", 1)))
        threads = {
            v: str(cpus) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        }
        self._env_vars = {**threads, **(env or {})}
        # Inside a placement group reserved for this group (a Ray Tune trial's
        # PlacementGroupFactory: an optional head bundle, then one bundle per worker), use its
        # bundles: a nested group would wait for resources the outer one already holds.
        outer, first = _enclosing_group(num_workers, self.bundle)
        self._owns_pg = outer is None
        self._pg = outer or placement_group(
            [self.bundle] * num_workers, strategy=placement_strategy
        )
        # (an elastic group tries a size with a shorter place_timeout, then one smaller)
        place_timeout = start_timeout if place_timeout is None else place_timeout
        ready, _ = ray.wait([self._pg.ready()], timeout=place_timeout)
        if not ready:
            remove_placement_group(self._pg)
            raise RuntimeError(
                f"could not place {num_workers} workers with {self.bundle} each "
                f"({placement_strategy}) within {place_timeout:.0f} s; the cluster has "
                f"{ray.cluster_resources()}"
            )
        self._keep_key = (
            (outer.id.hex(), first, num_workers, tuple(sorted(self.bundle.items())))
            if reuse and outer is not None
            else None
        )
        kept = _alive(_KEPT.pop(self._keep_key, None) if self._keep_key else None)
        custom = {k: v for k, v in self.bundle.items() if k not in ("CPU", "GPU", "memory")}
        self.actors = kept or [
            _Worker.options(
                num_cpus=self.bundle.get("CPU", 0),
                num_gpus=self.bundle.get("GPU", 0),
                resources=custom or None,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    self._pg, placement_group_bundle_index=first + i
                ),
            ).remote()
            for i in range(num_workers)
        ]
        try:
            raw = ray.get([a.info.remote() for a in self.actors], timeout=start_timeout)
        except Exception:
            self.shutdown()
            raise
        infos = [WorkerInfo(*r) for r in raw]
        index = {id(w): i for i, w in enumerate(infos)}  # spawn position of each actor
        ordered = order_ranks(infos, ray.get_runtime_context().get_node_id())
        self.actors = [self.actors[index[id(w)]] for w in ordered]
        self.infos = ordered
        master = ordered[0]
        port = ray.get(self.actors[0].free_port.remote())
        envs = worker_envs(ordered, master.node_ip, port, self.token)
        ray.get([a.set_env.remote({**self._env_vars, **e}) for a, e in zip(self.actors, envs)])
        self.master_addr, self.master_port = master.node_ip, port

    def execute_async(self, fn, *args, **kwargs) -> list:
        """Run ``fn`` in every worker; returns the Ray object refs in rank order."""
        return [a.run.remote(fn, *args, **kwargs) for a in self.actors]

    def execute_async_per_rank(self, fn, per_rank: list, *args, **kwargs) -> list:
        """Like :meth:`execute_async`, with ``per_rank[r]`` as rank r's last argument."""
        return [a.run.remote(fn, *args, per_rank[r], **kwargs) for r, a in enumerate(self.actors)]

    def execute(self, fn, *args, timeout: float | None = None, **kwargs) -> list:
        return ray.get(self.execute_async(fn, *args, **kwargs), timeout=timeout)

    def execute_single(self, rank: int, fn, *args, **kwargs):
        return ray.get(self.actors[rank].run.remote(fn, *args, **kwargs))

    def shutdown(self, keep: bool = False) -> None:
        """Kill the actors and free the placement group (only what this group started).

        ``keep`` (a group made with ``reuse=True`` in an enclosing placement group, after a
        clean run): leave the actors running for the next group of the same shape there."""
        if keep and getattr(self, "_keep_key", None) is not None and self.actors:
            _KEPT[self._keep_key] = self.actors
            self.actors = []
            return
        for a in getattr(self, "actors", []):
            try:
                ray.kill(a, no_restart=True)
            except Exception:
                pass
        self.actors = []
        if getattr(self, "_pg", None) is not None and getattr(self, "_owns_pg", True):
            try:
                remove_placement_group(self._pg)
            except Exception:
                pass
            self._pg = None

    def __len__(self) -> int:
        return self.num_workers
