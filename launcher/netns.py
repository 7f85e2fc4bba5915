"""A two-host Ray cluster on one machine: two network namespaces joined by a veth pair.

For demos, benchmarks and the multi-node tests (needs root and ``ip netns``)::

    python -m ember.launcher.netns up              # namespaces + `ember up` on them
    python -m ember.launcher.netns exec -- ember status
    python -m ember.launcher.netns exec -- ember launch --nnodes 2 --nproc-per-node 1 train.py
    python -m ember.launcher.netns down            # `ember down`, then the namespaces go

The head lives in ``<name>-head`` at ``<subnet>.1``, the worker in ``<name>-work`` at
``<subnet>.2`` (default 10.78.0.0/24, an address range used only on that link). The namespaces
have no route anywhere else, so all cluster traffic stays on the veth pair or loopback.
``exec`` runs a command in the head's namespace with ``RAY_ADDRESS`` and the cluster's Ray auth
settings in its environment.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass

DEFAULT_NAME = "embg"
DEFAULT_SUBNET = "10.78.0"


@dataclass
class NetnsPair:
    """Two namespaces (``<name>-head``, ``<name>-work``) joined by a veth pair."""

    name: str = DEFAULT_NAME
    subnet: str = DEFAULT_SUBNET

    @property
    def head_ns(self) -> str:
        return f"{self.name}-head"

    @property
    def worker_ns(self) -> str:
        return f"{self.name}-work"

    @property
    def head_ip(self) -> str:
        return f"{self.subnet}.1"

    @property
    def worker_ip(self) -> str:
        return f"{self.subnet}.2"

    def prefix(self, ns: str) -> list:
        return ["ip", "netns", "exec", ns]

    def exists(self) -> bool:
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        names = {line.split()[0] for line in out.splitlines() if line.strip()}
        return self.head_ns in names or self.worker_ns in names

    def create(self) -> None:
        if self.exists():
            raise RuntimeError(
                f"network namespace {self.head_ns} or {self.worker_ns} exists "
                "already (a cluster of this name is up; `down` it first)"
            )
        vh, vw = f"{self.name[:12]}-h", f"{self.name[:12]}-w"  # interface names: <= 15 chars
        steps = [
            ["ip", "netns", "add", self.head_ns],
            ["ip", "netns", "add", self.worker_ns],
            [
                "ip",
                "link",
                "add",
                vh,
                "netns",
                self.head_ns,
                "type",
                "veth",
                "peer",
                "name",
                vw,
                "netns",
                self.worker_ns,
            ],
        ]
        for ns, dev, ip in ((self.head_ns, vh, self.head_ip), (self.worker_ns, vw, self.worker_ip)):
            steps += [
                ["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev],
                ["ip", "-n", ns, "link", "set", "lo", "up"],
                ["ip", "-n", ns, "link", "set", dev, "up"],
            ]
        try:
            for cmd in steps:
                subprocess.run(cmd, check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError as e:
            self.destroy()
            raise RuntimeError(f"`{' '.join(e.cmd)}` failed: {e.stderr.strip()}") from None

    def destroy(self) -> None:
        """Remove both namespaces (their veth ends go with them)."""
        for ns in (self.worker_ns, self.head_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def write_config(
    pair: NetnsPair,
    path: str,
    *,
    temp_root: str = "/tmp/ember-ray",
    cpus_per_node: int = 2,
    env: dict | None = None,
    token_path: str | None = None,
) -> str:
    """Write the cluster config (local provider) for the two namespaces to ``path``."""
    import yaml

    host = {
        "num_cpus": cpus_per_node,
        "object_store_memory": 200 * 1024 * 1024,
        "env": dict(env or {}),
    }
    cfg = {
        "cluster_name": pair.name,
        "provider": {"type": "local", "head_ip": pair.head_ip, "worker_ips": [pair.worker_ip]},
        "ember": {
            "backend": "grpc",
            "workers_per_node": 1,
            "temp_dir": temp_root,
            "token": {
                "ray_auth": "token",
                "ray_token_path": token_path
                or os.path.join(os.path.dirname(os.path.abspath(path)), f"{pair.name}.token"),
                "job": "per_job",
            },
            "node": host,
            "hosts": {
                pair.head_ip: {"command_prefix": pair.prefix(pair.head_ns)},
                pair.worker_ip: {"command_prefix": pair.prefix(pair.worker_ns)},
            },
        },
    }
    with open(path, "w") as f:
        f.write("# written by `python -m ember.launcher.netns up`: two namespaces on a veth\n")
        yaml.safe_dump(cfg, f, sort_keys=False)
    return path


def head_env(config_path: str) -> dict:
    """Environment for a command run in the head namespace as a driver of the cluster."""
    from . import auth
    from .config import load

    cfg = load(config_path)
    return {
        **os.environ,
        **auth.cluster_auth_env(cfg),
        "RAY_ADDRESS": f"{cfg.raw['provider']['head_ip']}:{cfg.ember['ray_port']}",
    }


def _config_path(name: str) -> str:
    from .local_cluster import state_dir

    return os.path.join(state_dir(), f"{name}.yaml")


def main(argv: list | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m ember.launcher.netns",
        usage="%(prog)s [options] {up,down,exec} [-- COMMAND ...]",
        description="A two-namespace Ray cluster on this machine.",
    )
    p.add_argument("action", choices=["up", "down", "exec"])
    p.add_argument(
        "--name", default=DEFAULT_NAME, help=f"namespace prefix (default {DEFAULT_NAME})"
    )
    p.add_argument(
        "--subnet",
        default=DEFAULT_SUBNET,
        help=f"first three octets of the /24 (default {DEFAULT_SUBNET})",
    )
    p.add_argument("--cpus", type=int, default=2, help="logical CPUs per node (default 2)")
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = p.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    from . import local_cluster
    from .config import load

    pair = NetnsPair(args.name, args.subnet)
    path = _config_path(args.name)
    if args.action == "up":
        if os.geteuid() != 0:
            raise SystemExit("netns: needs root (ip netns)")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pair.create()
        try:
            write_config(pair, path, cpus_per_node=args.cpus)
            local_cluster.up(load(path))
        except BaseException:
            pair.destroy()
            raise
        print(
            f"config: {path}\nrun:    python -m ember.launcher.netns exec -- ember launch "
            f"--cluster {path} --nnodes 2 --nproc-per-node 1 SCRIPT"
        )
        return 0
    if args.action == "down":
        code = local_cluster.down(load(path)) if os.path.exists(path) else 0
        pair.destroy()
        print(f"namespaces {pair.head_ns} and {pair.worker_ns} removed")
        return code
    if not cmd:
        raise SystemExit("netns exec: no command (netns exec -- COMMAND ...)")
    return subprocess.call(pair.prefix(pair.head_ns) + cmd, env=head_env(path))


if __name__ == "__main__":
    sys.exit(main())
