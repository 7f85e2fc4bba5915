"""``ember up CONFIG`` / ``ember down CONFIG`` / ``ember status [CONFIG]``.

The config is validated first (nothing starts on a bad file). Then, by provider:

- ``local`` (default ``ember.launcher: ember``): ember starts ``ray start`` on the listed hosts
  itself and records what it started (:mod:`ember.launcher.local_cluster`);
- cloud providers, or ``ember.launcher: ray``: Ray's own ``ray up``/``ray down`` on the config
  without its ``ember:`` section;
- a KubeRay ``RayCluster`` manifest: ``kubectl apply -f`` / ``kubectl delete -f``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile

from . import auth, local_cluster
from .config import ClusterConfig, load


def add_parser(sub) -> None:
    p = sub.add_parser(
        "up",
        help="bring a cluster up from a config in cluster_configs/",
        description="Validate CONFIG, then start the cluster: `ray start` over "
        "the listed hosts for the local provider, Ray's `ray up` for "
        "cloud providers, `kubectl apply` for a KubeRay manifest.",
    )
    p.add_argument("config", metavar="CONFIG", help="cluster config (YAML)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate and print what would run on each host; start nothing",
    )
    p.add_argument("-y", "--yes", action="store_true", help="no confirmation prompts (ray up)")
    p.set_defaults(func=run_up)

    p = sub.add_parser(
        "down",
        help="stop a cluster started with `ember up`",
        description="Stop the cluster of CONFIG: exactly the Ray processes "
        "`ember up` started (local provider), or `ray down` / "
        "`kubectl delete`.",
    )
    p.add_argument("config", metavar="CONFIG", help="cluster config (YAML)")
    p.add_argument("-y", "--yes", action="store_true", help="no confirmation prompts (ray down)")
    p.add_argument(
        "--grace",
        type=float,
        default=5.0,
        help="seconds between SIGTERM and SIGKILL (local provider; default 5)",
    )
    p.set_defaults(func=run_down)

    p = sub.add_parser(
        "status",
        help="nodes, resources and jobs of a cluster",
        description="Show the nodes, resources and jobs of the cluster of CONFIG "
        "(or of --address, $RAY_ADDRESS, or the one cluster `ember "
        "up` has running).",
    )
    p.add_argument("config", metavar="CONFIG", nargs="?", help="cluster config (YAML)")
    p.add_argument("--address", help="Ray address HOST:PORT (instead of CONFIG)")
    p.set_defaults(func=run_status)


# ---------------------------------------------------------------- up / down


def run_up(args) -> int:
    cfg = load(args.config)
    if cfg.kind == "kuberay":
        return _kubectl(["apply", "-f", cfg.path], args.dry_run)
    if cfg.ember["launcher"] == "ray":
        return _ray_cli("up", cfg, args)
    if args.dry_run:
        print(f"{cfg.path}: valid. `ember up` would run, host by host:")
        for host, setup, start in local_cluster.plan(cfg):
            print(f"  {host.role} {host.ip} ({host.how}):")
            for command in setup:
                print(f"    sh -c {command!r}")
            print(f"    {' '.join(start)}")
        return 0
    state = local_cluster.up(cfg)
    print(
        f"  jobs:   ember launch --cluster {cfg.path} --nnodes {len(state['hosts'])} "
        f"--nproc-per-node {cfg.ember['workers_per_node']} SCRIPT\n"
        f"          ember submit --cluster {cfg.path} -- python SCRIPT\n"
        f"  status: ember status {cfg.path}\n  stop:   ember down {cfg.path}"
    )
    return 0


def run_down(args) -> int:
    cfg = load(args.config)
    if cfg.kind == "kuberay":
        return _kubectl(["delete", "-f", cfg.path], False)
    if cfg.ember["launcher"] == "ray":
        return _ray_cli("down", cfg, args)
    return local_cluster.down(cfg, grace=args.grace)


def _ray_cli(verb: str, cfg: ClusterConfig, args) -> int:
    """Run Ray's own ``ray up``/``ray down`` on the config minus its ``ember:`` section."""
    import yaml

    ray_exe = shutil.which("ray") or os.path.join(os.path.dirname(sys.executable), "ray")
    fd, path = tempfile.mkstemp(prefix=f"ember-{cfg.name}-", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(cfg.ray_config(), f, sort_keys=False)
    cmd = (
        [ray_exe, verb, path]
        + (["--no-config-cache"] if verb == "up" else [])
        + (["-y"] if args.yes else [])
    )
    try:
        if getattr(args, "dry_run", False):
            print(
                f"{cfg.path}: valid (ember's checks, Ray's schema and Ray's prepare_config). "
                f"`ember up` would run:\n  {' '.join(cmd[:2])} <{cfg.path} without ember:> "
                f"{' '.join(cmd[3:])}".rstrip()
            )
            return 0
        env = {**os.environ, **auth.ray_auth_env(cfg.ember)}  # Ray's tools resolve inherit
        return subprocess.call(cmd, env=env)
    finally:
        os.remove(path)


def _kubectl(args: list, dry_run: bool) -> int:
    cmd = ["kubectl", *args]
    if dry_run:  # kubectl's own dry run needs an API server; ours needs nothing
        print(
            f"{args[-1]}: valid (ember's checks and Ray's KubeRay conversion). `ember up` "
            f"would run:\n  {' '.join(cmd)}"
        )
        return 0
    if shutil.which("kubectl") is None:
        raise SystemExit(
            "ember: kubectl not found: install it and point it at a Kubernetes "
            "cluster with the KubeRay operator"
        )
    return subprocess.call(cmd)


# ---------------------------------------------------------------- status


def run_status(args) -> int:
    dashboard = None
    if args.config:
        cfg = load(args.config)
        if cfg.kind == "kuberay":
            return _kubectl(["get", "raycluster", cfg.name, "-o", "wide"], False)
        auth.apply_to_cluster(cfg)
        address, dashboard = cluster_addresses(cfg)
        state = local_cluster.read_state(cfg.name) if cfg.provider == "local" else None
        if state:
            _print_hosts(state)
    else:
        address = args.address or os.environ.get("RAY_ADDRESS")
        if address:
            auth.apply_env(auth.default_env())
        else:
            states = [s for s in local_cluster.all_states() if local_cluster.is_up(s)]
            if not states:
                raise SystemExit(
                    "ember status: no cluster: pass CONFIG or --address, or set RAY_ADDRESS"
                )
            if len(states) > 1:
                names = ", ".join(f"{s['name']} ({s['config']})" for s in states)
                raise SystemExit(f"ember status: several clusters are up ({names}); pass CONFIG")
            state = states[0]
            auth.apply_env(state.get("auth_env") or auth.default_env())
            address, dashboard = state["head"], state["dashboard"]
            _print_hosts(state)
    return show_ray(address, dashboard)


def cluster_addresses(cfg: ClusterConfig) -> tuple[str, str | None]:
    """(Ray address, dashboard URL) of the cluster of a config."""
    state = local_cluster.read_state(cfg.name) if cfg.provider == "local" else None
    if state:
        return state["head"], state["dashboard"]
    from .cluster import head_address

    address = head_address(cfg.path)
    host = address.rsplit(":", 1)[0]
    return address, f"http://{host}:{cfg.ember['dashboard_port']}"


def _print_hosts(state: dict) -> None:
    print(f"cluster {state['name']!r} (started by `ember up` from {state['config']})")
    for entry in state["hosts"]:
        try:
            n = len(local_cluster.host_from_state(entry).processes(entry["sid"]))
            alive = f"{n} Ray processes" if n else "NOT RUNNING"
        except Exception as e:  # noqa: BLE001 - an unreachable host is a status, not an error
            alive = f"unreachable: {e}"
        print(f"  {entry['role']:6s} {entry['ip']:15s} session {entry['sid']:<8d} {alive}")


@contextlib.contextmanager
def proxy_bypassed(address: str):
    """Inside, connections to ``address``'s host and to loopback skip the HTTP proxy set in the
    environment (``http_proxy``/``https_proxy``/``grpc_proxy``).

    Ray's driver (``ray.init(address=...)``) reaches the head's GCS through gRPC, which honours
    those variables: with a proxy that cannot reach the cluster's private addresses, each
    ``ember up``/``ember status`` stalled ~10-20 s in ``ray.init`` before going direct. The
    head's host, ``127.0.0.1`` and ``localhost`` join ``no_proxy``/``NO_PROXY`` (existing
    entries kept) and both are restored on exit."""
    hostport = address.split("://", 1)[-1].split("/", 1)[0]  # ray://h:p, http://h:p/ too
    if hostport.startswith("["):  # [v6]:port
        host = hostport[1:].partition("]")[0]
    else:  # v4:port, name:port, or a bare address (a v6 one has several colons)
        host = hostport.rpartition(":")[0] if hostport.count(":") == 1 else hostport
    saved = {k: os.environ.get(k) for k in ("no_proxy", "NO_PROXY")}
    current = [e.strip() for v in saved.values() if v for e in v.split(",") if e.strip()]
    wanted = [h for h in (host, "127.0.0.1", "localhost") if h and h not in current]
    value = ",".join(dict.fromkeys(current + wanted))
    try:
        if wanted:
            os.environ["no_proxy"] = os.environ["NO_PROXY"] = value
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def reachable(address: str, timeout: float = 5.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def show_ray(address: str, dashboard: str | None) -> int:
    import ray

    if "://" not in address and not reachable(address):
        print(f"ember status: cannot reach the Ray head at {address}", file=sys.stderr)
        return 1
    with proxy_bypassed(address):
        ctx = ray.init(
            address=address, include_dashboard=False, logging_level="error", log_to_driver=False
        )
        try:
            nodes = ray.nodes()
            total, free = ray.cluster_resources(), ray.available_resources()
            dashboard = dashboard or (f"http://{ctx.dashboard_url}" if ctx.dashboard_url else None)
        finally:
            ray.shutdown()
    print(f"Ray at {address}: {sum(n['Alive'] for n in nodes)} node(s) alive")
    for n in sorted(nodes, key=lambda n: (not n["Alive"], n["NodeManagerAddress"])):
        res = n.get("Resources") or {}
        head = " head" if "node:__internal_head__" in res else ""
        print(
            f"  {n['NodeManagerAddress']:15s} {'alive' if n['Alive'] else 'DEAD':5s} "
            f"CPU {res.get('CPU', 0):g}  GPU {res.get('GPU', 0):g}{head}"
        )
    for r in ("CPU", "GPU"):
        if total.get(r):
            print(f"  {r}: {total[r] - free.get(r, 0):g} of {total[r]:g} in use")
    if dashboard:
        with proxy_bypassed(dashboard):  # the Jobs API is HTTP: requests honours the proxy
            _print_jobs(dashboard)
    return 0


def _print_jobs(dashboard: str) -> None:
    from .submit import client

    try:
        jobs = client(dashboard).list_jobs()
    except SystemExit as e:
        print(f"  jobs: {e}")
        return
    jobs = [j for j in jobs if j.submission_id]
    print(f"jobs at {dashboard}: {len(jobs)}")
    for j in sorted(jobs, key=lambda j: j.start_time or 0)[-20:]:
        print(f"  {j.submission_id}  {str(j.status.value):9s} {j.entrypoint[:60]}")
