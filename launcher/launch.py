"""``ember launch``: run a script on N workers with torchrun's variables set.

Each worker is a Ray actor (placed by the worker group) that starts the script as a child
process with RANK, LOCAL_RANK, WORLD_SIZE, ... in its environment, so a torchrun-style script
(``init_process_group`` + DDP) runs unchanged. Output lines stream to the terminal prefixed by
rank; the exit code is the job's (the first failing worker's); Ctrl-C stops every worker, and
so does SIGTERM (exit code 143).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time

from ._live_status import LaunchStatus
from ._ray_output import add_verbose_args, routed_ray_output
from ._worker_io import Printer, run_child


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


def _at_least(low: int, kind: type = int):
    """An argparse type: a ``kind`` number >= ``low``; anything else is argparse's one-line
    error naming the option (not a traceback, nor a Ray started for zero workers)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if not value >= low:  # also NaN
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse's messages name the type by it
    return parse


def _nnodes(text: str) -> tuple[int, int]:
    """``--nnodes``: ``N`` or torchrun's elastic ``MIN:MAX``, as ``(min, max)``."""
    lo, sep, hi = text.partition(":")
    try:
        lo_n = int(lo)
        hi_n = int(hi) if sep else lo_n
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or MIN:MAX, got {text!r}") from None
    if lo_n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    if lo_n > hi_n:
        raise argparse.ArgumentTypeError(f"MIN:MAX needs MIN <= MAX, got {lo_n} > {hi_n}")
    return lo_n, hi_n


def _parse_env(pairs: list[str]) -> dict:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"ember launch: --env expects K=V, got {pair!r}")
        env[key] = value
    return env


def _plan(args, cfg=None) -> tuple[int, str]:
    if isinstance(args.nnodes, tuple):  # --nnodes MIN:MAX (or N): keep MAX as args.nnodes
        args.min_nnodes, args.nnodes = args.nnodes
    else:
        args.min_nnodes = args.nnodes
    if args.workers is not None and (args.nnodes or args.nproc_per_node):
        raise SystemExit("ember launch: give either --workers or --nnodes/--nproc-per-node")
    per_node = cfg.ember["workers_per_node"] if cfg is not None else None
    if args.nnodes is not None and args.nproc_per_node is None and per_node:
        args.nproc_per_node = per_node  # the cluster config's workers_per_node
    if (args.nnodes is None) != (args.nproc_per_node is None):
        raise SystemExit("ember launch: --nnodes and --nproc-per-node go together")
    if args.nnodes is not None:
        n = args.nnodes * args.nproc_per_node
        strategy = "STRICT_SPREAD" if args.nproc_per_node == 1 and args.nnodes > 1 else "SPREAD"
        most = cfg.max_nodes() if cfg is not None else None
        if most is not None and args.nnodes > most:
            raise SystemExit(
                f"ember launch: --nnodes {args.nnodes} but the cluster of "
                f"{cfg.path} has at most {most} node(s)"
            )
    else:
        n = args.workers or per_node or 1
        strategy = "PACK"
    if args.placement:
        strategy = args.placement.upper()
    if n < 1:
        raise SystemExit(f"ember launch: the number of workers must be >= 1, got {n}")
    return n, strategy


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


class _Terminated(BaseException):
    """SIGTERM arrived: the job is stopped like on Ctrl-C and exits with 143 (128 + 15)."""


# "ready": Ray is up, so a SIGTERM may interrupt at once; before that it is only noted, so
# that a half-started Ray is not left behind. "pending": one arrived.
_TERM = {"ready": False, "pending": False, "seen": False}


def _on_sigterm(signum, frame) -> None:
    if _TERM["seen"]:
        return  # the first one is already stopping the job: let the clean-up finish
    _TERM["pending"] = True
    if _TERM["ready"]:
        _TERM["seen"] = True
        raise _Terminated


@contextlib.contextmanager
def _sigterm_stops_job():
    """SIGTERM (from an orchestrator, ``kill``, a job scheduler) stops every worker and shuts
    down the Ray started for the job, then exits with 143 and no traceback or crash dump."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    _TERM.update(ready=False, pending=False, seen=False)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    except BaseException:
        # Raised inside a Ray call, _Terminated reaches here wrapped (a SystemError from
        # Ray's signal check): once SIGTERM arrived, whatever ends the job is its doing.
        if not _TERM["pending"]:
            raise
        print(
            "(ember launch) terminated by SIGTERM: all workers stopped", file=sys.stderr, flush=True
        )
        raise SystemExit(128 + signal.SIGTERM) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


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


# _run_once's code when an elastic job stops its workers to restart on more nodes
_GROW = -1


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


def _run_once(ray, scaling, cmd, cwd, env, elastic=None) -> tuple[int, list]:
    """One attempt: (exit code, infos of workers whose actor died); ``_GROW`` when an
    elastic job (``elastic``: min nodes, max nodes, workers per node) stopped to grow."""
    from ray.util.queue import Queue
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from ember.distributed.train._internal.worker_group import WorkerGroup

    token = {"EMBER_TOKEN": env["EMBER_TOKEN"]} if "EMBER_TOKEN" in env else None
    grow = None
    if elastic is None:
        group = WorkerGroup(
            scaling.num_workers, scaling.bundle(), scaling.placement_strategy, env=token
        )
    else:
        from ._elastic import elastic_group

        group, grow = elastic_group(WorkerGroup, scaling, token, *elastic)
    # the output queue lives on the driver's node and takes no CPU: it must neither compete
    # with the workers for slots nor die with a worker node
    here = ray.get_runtime_context().get_node_id()
    queue = Queue(
        actor_options={
            "num_cpus": 0,
            "scheduling_strategy": NodeAffinitySchedulingStrategy(here, soft=False),
        }
    )
    lost: list = []
    try:
        refs = group.execute_async(run_child, cmd, cwd, env, queue)
        status = None
        if LaunchStatus.wanted():  # a live per-rank table under the output, on a terminal
            status = LaunchStatus([info.node_ip for info in group.infos])
        try:
            return _pump(ray, group, refs, queue, Printer(status), lost, grow), lost
        finally:
            if status is not None:
                status.close()
    except KeyboardInterrupt:
        print("(ember launch) interrupted: stopping all workers", file=sys.stderr, flush=True)
        return 130, lost
    except BaseException:
        if _TERM["pending"]:  # _Terminated, possibly wrapped by Ray (see _sigterm_stops_job)
            print("(ember launch) SIGTERM: stopping all workers", file=sys.stderr, flush=True)
        raise
    finally:
        group.shutdown()
        try:
            ray.kill(queue.actor, no_restart=True)
        except Exception:
            pass


def _pump(ray, group, refs, queue, printer, lost: list, grow=None) -> int:
    remaining = list(refs)
    codes: dict[int, int] = {}
    next_look = time.monotonic() + 1.0
    while True:
        printer.drain(queue)
        if not remaining:
            break
        if grow is not None and time.monotonic() >= next_look:
            next_look = time.monotonic() + 1.0
            more = grow()
            if more:
                printer.drain(queue)
                print(
                    f"(ember launch) {more} more node(s) have room; restarting the workers on "
                    "more nodes (a membership change: not counted against --max-restarts)",
                    file=sys.stderr,
                    flush=True,
                )
                return _GROW
        ready, remaining = ray.wait(remaining, num_returns=len(remaining), timeout=0.05)
        for r in ready:
            rank = refs.index(r)
            try:
                codes[rank] = ray.get(r)
            except Exception as exc:
                info = group.infos[rank]
                lost.append(info)
                print(
                    f"(ember launch) worker rank {rank} on node {info.node_ip} died"
                    f"{_node_lost(ray, info)}: {_first_line(exc)}",
                    file=sys.stderr,
                    flush=True,
                )
                codes[rank] = 1
            if printer.status is not None:
                printer.drain(queue)
                printer.status.finished(rank, codes[rank])
            if codes[rank] != 0:
                # like torchrun: one failure ends the job; the others are stopped
                printer.drain(queue)
                print(
                    f"(ember launch) rank {rank} exited with code {codes[rank]}; stopping "
                    "the other workers",
                    file=sys.stderr,
                    flush=True,
                )
                return codes[rank]
    return 0


def _node_lost(ray, info) -> str:
    """A note on the worker's node: its Ray processes gone, or the node unreachable (a
    partition: its processes may still run), told apart by probing its raylet (issue #28)."""
    from ._node_reach import lost_note

    try:
        nodes = ray.nodes()
    except Exception:  # the GCS itself may be gone
        return ""
    return lost_note(nodes, info.node_id, info.node_ip)


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
