"""``ember launch``: run a script on N workers with torchrun's variables set.

Each worker is a Ray actor (placed by the worker group) that starts the script as a child
process with RANK, LOCAL_RANK, WORLD_SIZE, ... in its environment, so a torchrun-style script
(``init_process_group`` + DDP) runs unchanged. Output lines stream to the terminal prefixed by
rank; the exit code is the job's (the first failing worker's); Ctrl-C stops every worker, and
so does SIGTERM (exit code 143).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

# (the moved helpers stay importable from here, their old home)
from ._launch_args import _at_least, _nnodes, _parse_env, _plan  # noqa: F401
from ._launch_attempt import _GROW, _first_line, _node_lost, _pump, _run_once  # noqa: F401
from ._launch_sigterm import _TERM, _on_sigterm, _sigterm_stops_job, _Terminated
from ._ray_output import add_verbose_args, routed_ray_output


def add_parser(sub) -> None:
    p = sub.add_parser(
        "launch",
        help="run a script on N workers (torchrun's variables set)",
        description="Run SCRIPT on N worker processes placed by Ray, with RANK, LOCAL_RANK, "
        "WORLD_SIZE, LOCAL_WORLD_SIZE, NODE_RANK, MASTER_ADDR and MASTER_PORT set. "
        "Default: an embedded local Ray started for the job and stopped after it.",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--address",
        help="address of an existing Ray cluster (ray://... or "
        "HOST:PORT); default: start a local Ray",
    )
    where.add_argument(
        "--cluster",
        metavar="CONFIG",
        help="a cluster config from cluster_configs/ (uses its head address)",
    )
    p.add_argument("--workers", type=_at_least(1), help="number of workers (default 1)")
    p.add_argument(
        "--nnodes",
        type=_nnodes,
        help="number of nodes (with --nproc-per-node), or MIN:MAX for an elastic job: it "
        "starts on as many nodes as have room (at least MIN), goes on with fewer when a node "
        "is lost (a restart, counted against --max-restarts) and restarts on more when a node "
        "joins (not counted), like torchrun",
    )
    p.add_argument("--nproc-per-node", type=_at_least(1), help="workers per node (with --nnodes)")
    p.add_argument(
        "--gpus-per-worker",
        type=_at_least(0, float),
        default=None,
        help="GPUs per worker (default 0, or the cluster config's)",
    )
    p.add_argument(
        "--cpus-per-worker",
        type=_at_least(0, float),
        default=None,
        help="CPUs per worker (default 1, or the cluster config's)",
    )
    p.add_argument(
        "--max-restarts",
        type=_at_least(0),
        default=0,
        help="restart all workers up to R times after a failure",
    )
    p.add_argument(
        "--placement",
        choices=["pack", "spread"],
        default=None,
        help="placement of workers over nodes (default pack; spread with --nnodes)",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="K=V",
        help="extra environment variable for the workers (repeatable)",
    )
    p.add_argument(
        "--working-dir",
        help="directory the workers run in (default: the current "
        "one); on an existing cluster it is uploaded to "
        "every node, so SCRIPT must lie inside it",
    )
    add_verbose_args(p, "launch")
    p.add_argument(
        "-m",
        dest="module",
        action="store_true",
        help="treat SCRIPT as a module name, like python -m",
    )
    p.add_argument("script", help="the training script (or module with -m)")
    p.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments for the script")
    p.set_defaults(func=run)


def run(args) -> int:
    import ray

    from ember.distributed.train._internal.ray_cluster import ensure_ray, shutdown_if_started
    from ember.distributed.train.config import ScalingConfig

    cfg, address, env = _cluster(args)
    n, strategy = _plan(args, cfg)
    env = {**env, **_parse_env(args.env)}
    if "EMBER_PROGRESS" not in os.environ and sys.stderr.isatty():
        env["EMBER_PROGRESS"] = "rank0"  # workers write to pipes: rank 0's bars should show
    script = args.script
    if not args.module and not os.path.exists(script):
        raise SystemExit(f"ember launch: script not found: {script}")
    cpus = (
        args.cpus_per_worker
        if args.cpus_per_worker is not None
        else (cfg.ember["cpus_per_worker"] if cfg is not None else 1)
    )
    gpus = (
        args.gpus_per_worker
        if args.gpus_per_worker is not None
        else (cfg.ember["gpus_per_worker"] if cfg is not None else 0)
    )
    resources = {"CPU": cpus}
    if gpus:
        resources["GPU"] = gpus
    scaling = ScalingConfig(
        num_workers=n,
        use_gpu=bool(gpus),
        resources_per_worker=resources,
        placement_strategy=strategy,
    )
    remote = bool(address or os.environ.get("RAY_ADDRESS")) and not ray.is_initialized()
    shipped = _ship_working_dir(args, script) if remote else None
    with _sigterm_stops_job(), routed_ray_output(args, "launch") as ray_out:
        started = ensure_ray(address, scaling, runtime_env=shipped)
        ray_out.relay_installed()
        try:
            _TERM["ready"] = True
            # ray.init installed its own handler, which ends in a crash dump
            signal.signal(signal.SIGTERM, _on_sigterm)
            if _TERM["pending"]:
                raise _Terminated
            return _run_started(ray, args, scaling, script, started, env, strategy)
        finally:
            shutdown_if_started()


def _run_started(ray, args, scaling, script, started, env, strategy) -> int:
    """Run the job (with its restarts) on the Ray that ``run`` made sure of."""
    cwd, script_path = _where_to_run(ray, args, script, started)
    cmd = (
        [sys.executable, "-u"]
        + (["-m", script] if args.module else [script_path])
        + list(args.script_args)
    )
    elastic = _elastic_range(args)
    code, lost, attempt = 1, [], 0
    while True:
        if lost:
            _settle(ray, lost)
        if elastic is None:
            _check_nodes(ray, args, strategy)
        if attempt and code != _GROW:
            print(
                f"(ember launch) job failed with exit code {code}; restarting "
                f"({attempt}/{args.max_restarts})",
                file=sys.stderr,
                flush=True,
            )
        # torchrun's variables: failures so far (membership changes do not count)
        run_env = {
            **env,
            "TORCHELASTIC_RESTART_COUNT": str(attempt),
            "TORCHELASTIC_MAX_RESTARTS": str(args.max_restarts),
        }
        code, lost = _run_once(ray, scaling, cmd, cwd, run_env, elastic)
        if code == _GROW:
            continue  # a node joined: restart on more nodes, not a failure
        if code == 0 or code == 130 or attempt >= args.max_restarts:
            break
        attempt += 1
    return code


def _elastic_range(args):
    """``(min nodes, max nodes, workers per node)`` for ``--nnodes MIN:MAX``, else None."""
    lo = getattr(args, "min_nnodes", None)
    if args.nnodes is None or lo is None or lo == args.nnodes:
        return None
    return lo, args.nnodes, args.nproc_per_node


def _cluster(args):
    """(validated config or None, Ray address or None, worker env) for --cluster/--address."""
    from . import auth

    if not args.cluster:
        if args.address or os.environ.get("RAY_ADDRESS"):
            # Ray never turns token auth on for an explicit address itself
            auth.apply_env(auth.default_env())
        return None, args.address, {}
    from . import local_cluster
    from .config import load
    from .up import cluster_addresses

    cfg = load(args.cluster)
    env = auth.job_env(cfg.ember)
    if (
        cfg.ember["embedded"]
        and cfg.provider == "local"
        and not local_cluster.is_up(local_cluster.read_state(cfg.name))
    ):
        auth.apply_to_driver(cfg.ember)  # a new Ray: its own default unless the config says
        return cfg, None, env  # an embedded Ray for this job, like plain `ember launch`
    auth.apply_to_cluster(cfg)
    return cfg, cluster_addresses(cfg)[0], env


def _ship_working_dir(args, script: str) -> dict | None:
    """On an existing cluster, --working-dir is uploaded and unpacked on every node (Ray's
    job-level runtime_env working_dir), so SCRIPT must lie inside it."""
    if not args.working_dir:
        return None
    root = os.path.abspath(args.working_dir)
    if not os.path.isdir(root):
        raise SystemExit(f"ember launch: --working-dir is not a directory: {root}")
    if not args.module and os.path.relpath(os.path.abspath(script), root).startswith(".."):
        raise SystemExit(
            f"ember launch: {script} is outside --working-dir {root}; the "
            "workers only get the files inside it"
        )
    return {"working_dir": root}


def _where_to_run(ray, args, script: str, started_here: bool) -> tuple:
    """(cwd for the script or None for the worker's own, the script's path).

    On an embedded Ray every worker shares this machine's files: the script runs where it is.
    When the job has a working_dir (uploaded by --working-dir, or by Ray Jobs for `ember
    submit --working-dir`), Ray unpacks it on every node and starts the workers in it: the
    script runs from there, by its path relative to the directory.
    """
    job_dir = (
        None if started_here else (ray.get_runtime_context().runtime_env or {}).get("working_dir")
    )
    if job_dir:
        base = os.path.abspath(args.working_dir) if args.working_dir else os.getcwd()
        rel = script if args.module else os.path.relpath(os.path.abspath(script), base)
        return None, rel
    cwd = os.path.abspath(args.working_dir or os.getcwd())
    return cwd, script if args.module else os.path.abspath(script)


def _check_nodes(ray, args, strategy: str) -> None:
    """Fail at once (instead of waiting for a placement) when too few nodes are alive."""
    if strategy != "STRICT_SPREAD" or not args.nnodes:
        return
    nodes = ray.nodes()
    alive = [n["NodeManagerAddress"] for n in nodes if n["Alive"]]
    if len(alive) < args.nnodes:
        dead = sorted({n["NodeManagerAddress"] for n in nodes if not n["Alive"]} - set(alive))
        lost = f"; lost: {', '.join(dead)}" if dead else ""
        raise SystemExit(
            f"ember launch: --nnodes {args.nnodes} needs {args.nnodes} nodes, "
            f"the cluster has {len(alive)} alive ({', '.join(alive)}){lost}"
        )


def _settle(ray, lost: list, timeout: float = 60.0) -> None:
    """Before a restart, let Ray decide about the nodes whose workers died: a node that still
    runs a task is fine; one that does not is waited for (bounded) until Ray marks it dead,
    so that the new placement avoids it."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(_noop)
    for info in lost:
        ref = probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(info.node_id, soft=False)
        ).remote()
        ready, _ = ray.wait([ref], timeout=3.0)
        try:
            if ready and ray.get(ready[0]) == 1:
                continue
        except Exception:  # the probe failed: the node is gone
            pass
        ray.cancel(ref, force=True)
        print(
            f"(ember launch) waiting for Ray to confirm that node {info.node_ip} is lost",
            file=sys.stderr,
            flush=True,
        )
        deadline = time.time() + timeout
        while time.time() < deadline and any(
            n["NodeID"] == info.node_id and n["Alive"] for n in ray.nodes()
        ):
            time.sleep(0.5)


def _noop() -> int:
    return 1
