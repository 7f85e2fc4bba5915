"""``ember launch``: run a script on N workers with torchrun's variables set.

Each worker is a Ray actor (placed by the worker group) that starts the script as a child
process with RANK, LOCAL_RANK, WORLD_SIZE, ... in its environment, so a torchrun-style script
(``init_process_group`` + DDP) runs unchanged. Output lines stream to the terminal prefixed by
rank; the exit code is the job's (the first failing worker's); Ctrl-C stops every worker.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def add_parser(sub) -> None:
    p = sub.add_parser(
        "launch", help="run a script on N workers (torchrun's variables set)",
        description="Run SCRIPT on N worker processes placed by Ray, with RANK, LOCAL_RANK, "
                    "WORLD_SIZE, LOCAL_WORLD_SIZE, NODE_RANK, MASTER_ADDR and MASTER_PORT set. "
                    "Default: an embedded local Ray started for the job and stopped after it.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--address", help="address of an existing Ray cluster (ray://... or "
                                         "HOST:PORT); default: start a local Ray")
    where.add_argument("--cluster", metavar="CONFIG",
                       help="a cluster config from cluster_configs/ (uses its head address)")
    p.add_argument("--workers", type=int, help="number of workers (default 1)")
    p.add_argument("--nnodes", type=int, help="number of nodes (with --nproc-per-node)")
    p.add_argument("--nproc-per-node", type=int, help="workers per node (with --nnodes)")
    p.add_argument("--gpus-per-worker", type=float, default=0, help="GPUs per worker")
    p.add_argument("--cpus-per-worker", type=float, default=1, help="CPUs per worker")
    p.add_argument("--max-restarts", type=int, default=0,
                   help="restart all workers up to R times after a failure")
    p.add_argument("--placement", choices=["pack", "spread"], default=None,
                   help="placement of workers over nodes (default pack; spread with --nnodes)")
    p.add_argument("--env", action="append", default=[], metavar="K=V",
                   help="extra environment variable for the workers (repeatable)")
    p.add_argument("--working-dir", help="directory the workers run in (default: the current "
                                         "one)")
    p.add_argument("-m", dest="module", action="store_true",
                   help="treat SCRIPT as a module name, like python -m")
    p.add_argument("script", help="the training script (or module with -m)")
    p.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments for the script")
    p.set_defaults(func=run)


def _parse_env(pairs: list[str]) -> dict:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"ember launch: --env expects K=V, got {pair!r}")
        env[key] = value
    return env


def _plan(args) -> tuple[int, str]:
    if args.workers is not None and (args.nnodes or args.nproc_per_node):
        raise SystemExit("ember launch: give either --workers or --nnodes/--nproc-per-node")
    if (args.nnodes is None) != (args.nproc_per_node is None):
        raise SystemExit("ember launch: --nnodes and --nproc-per-node go together")
    if args.nnodes is not None:
        n = args.nnodes * args.nproc_per_node
        strategy = "STRICT_SPREAD" if args.nproc_per_node == 1 and args.nnodes > 1 else "SPREAD"
    else:
        n = args.workers or 1
        strategy = "PACK"
    if args.placement:
        strategy = args.placement.upper()
    if n < 1:
        raise SystemExit(f"ember launch: the number of workers must be >= 1, got {n}")
    return n, strategy


def run(args) -> int:
    import ray

    from ember.distributed.ray_cluster import ensure_ray, shutdown_if_started
    from ember.distributed.train.config import ScalingConfig

    n, strategy = _plan(args)
    env = _parse_env(args.env)
    script = args.script
    if not args.module and not os.path.exists(script):
        raise SystemExit(f"ember launch: script not found: {script}")
    cwd = os.path.abspath(args.working_dir or os.getcwd())
    cmd = [sys.executable, "-u"] + (["-m", script] if args.module else
                                    [os.path.abspath(script)]) + list(args.script_args)
    address = args.address
    if args.cluster:
        from .cluster import head_address

        address = head_address(args.cluster)
    resources = {"CPU": args.cpus_per_worker}
    if args.gpus_per_worker:
        resources["GPU"] = args.gpus_per_worker
    scaling = ScalingConfig(num_workers=n, use_gpu=bool(args.gpus_per_worker),
                            resources_per_worker=resources,
                            placement_strategy=strategy)
    ensure_ray(address, scaling)
    try:
        code = 1
        for attempt in range(args.max_restarts + 1):
            code = _run_once(ray, scaling, cmd, cwd, env)
            if code == 0 or code == 130:
                break
            if attempt < args.max_restarts:
                print(f"(ember launch) job failed with exit code {code}; restarting "
                      f"({attempt + 1}/{args.max_restarts})", file=sys.stderr, flush=True)
        return code
    finally:
        shutdown_if_started()


def _run_once(ray, scaling, cmd, cwd, env) -> int:
    from ray.util.queue import Queue

    from ember.distributed.worker_group import WorkerGroup

    t0 = time.time()
    group = WorkerGroup(scaling.num_workers, scaling.bundle(), scaling.placement_strategy)
    queue = Queue()
    try:
        refs = group.execute_async(_child, cmd, cwd, env, queue)
        return _pump(ray, group, refs, queue, t0)
    except KeyboardInterrupt:
        print("(ember launch) interrupted: stopping all workers", file=sys.stderr, flush=True)
        return 130
    finally:
        group.shutdown()
        try:
            ray.kill(queue.actor, no_restart=True)
        except Exception:
            pass


def _pump(ray, group, refs, queue, t0) -> int:
    remaining = list(refs)
    codes: dict[int, int] = {}
    while True:
        _print_lines(queue)
        if not remaining:
            break
        ready, remaining = ray.wait(remaining, num_returns=len(remaining), timeout=0.05)
        for r in ready:
            rank = refs.index(r)
            try:
                codes[rank] = ray.get(r)
            except Exception as exc:
                info = group.infos[rank]
                print(f"(ember launch) worker rank {rank} on {info.node_ip} died: {exc}",
                      file=sys.stderr, flush=True)
                codes[rank] = 1
            if codes[rank] != 0:
                # like torchrun: one failure ends the job; the others are stopped
                _print_lines(queue)
                print(f"(ember launch) rank {rank} exited with code {codes[rank]}; stopping "
                      "the other workers", file=sys.stderr, flush=True)
                return codes[rank]
    return 0


def _print_lines(queue) -> None:
    while not queue.empty():
        for rank, stream, line in queue.get_nowait_batch(queue.qsize()):
            out = sys.stderr if stream == "err" else sys.stdout
            out.write(f"[rank{rank}]: {line}")
            out.flush()


def _child(cmd, cwd, extra_env, queue) -> int:
    """Inside a worker actor: run the script as a child process and stream its output."""
    import signal
    import subprocess
    import threading

    env = dict(os.environ)
    env.update(extra_env)
    rank = int(env.get("RANK", "0"))

    def die_with_parent():  # the child must not outlive a killed actor
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)

    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1,
                            preexec_fn=die_with_parent if sys.platform == "linux" else None)

    def forward(pipe, stream):
        for line in pipe:
            queue.put((rank, stream, line))

    threads = [threading.Thread(target=forward, args=(proc.stdout, "out"), daemon=True),
               threading.Thread(target=forward, args=(proc.stderr, "err"), daemon=True)]
    for t in threads:
        t.start()
    code = proc.wait()
    for t in threads:
        t.join(timeout=5)
    return code
