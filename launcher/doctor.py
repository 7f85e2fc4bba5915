"""``ember doctor``: is this machine ready for ember? The environment report plus launcher checks.

It prints :mod:`ember.utils.collect_env`'s report (versions, CUDA/NCCL, Ray auth mode and local
cluster, ports, /dev/shm, open files, network namespaces) with the launcher's own checks added:
the ``ray`` and ``ember`` commands on PATH and, with ``--address``, whether that cluster's head
answers. Nothing is started. Exit code 0 always (it is a report, not a gate) unless ``--strict``
is given, then 1 when a problem was found.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "doctor",
        help="check this machine's environment (paste the output into issues)",
        description="Report versions (Python, NumPy, CuPy/CUDA/NCCL, Ray, grpcio, ...), Ray's "
        "auth mode and local cluster, GPUs, ports, /dev/shm, the open-file limit "
        "and network namespaces; each problem comes with the fix to apply.",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--address",
        metavar="HOST:PORT",
        type=_host_port,
        help="also check that this Ray head (GCS address) answers over TCP",
    )
    p.add_argument("--strict", action="store_true", help="exit with 1 if a problem was found")
    p.set_defaults(func=run)


def _commands(problems: list) -> dict:
    """The executables the launcher runs: ``ray`` (start/stop, cluster launcher) and ``ember``."""
    bindir = os.path.dirname(sys.executable)
    found = {}
    for name, need in (
        ("ray", "ember launch/up start Ray with it"),
        ("ember", "the console script of `pip install -e .`"),
    ):
        path = shutil.which(name) or shutil.which(name, path=bindir)
        found[name] = path
        if path is None:
            _add(
                problems,
                "commands",
                f"`{name}` is not on PATH ({need})",
                f"pip install -e . in this environment, or add {bindir} to PATH",
            )
    return found


def _host_port(value: str) -> str:
    host, sep, port = value.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return f"{host}:{port}"


def _address(address: str, problems: list) -> dict:
    from ember.utils.collect_env import _connects

    host, _, port = _host_port(address).rpartition(":")
    ok = _connects(host, int(port), timeout=3.0)
    if not ok:
        _add(
            problems,
            "address",
            f"nothing answers at {host}:{port}",
            "check the head is up (`ember status --cluster CONFIG`) and that this machine can "
            "reach it (firewall, ember.ray_port)",
        )
    return {"address": f"{host}:{port}", "reachable": ok}


def _add(problems: list, check: str, problem: str, fix: str) -> None:
    problems.append({"check": check, "problem": problem, "fix": fix})


def collect(address: str | None = None) -> dict:
    """The environment report with the launcher's checks merged into ``problems``."""
    from ember.utils.collect_env import get_env_info

    info = get_env_info()
    info["commands"] = _commands(info["problems"])
    if address:
        info["address_check"] = _address(address, info["problems"])
    return info


def run(args) -> int:
    info = collect(args.address)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        from ember.utils.collect_env import format_env_info

        text = format_env_info(info, title="ember doctor")
        cmds = "   ".join(f"{k}: {v or 'NOT FOUND'}" for k, v in info["commands"].items())
        extra = [f"Commands:          {cmds}"]
        if "address_check" in info:
            a = info["address_check"]
            extra.append(f"Ray head {a['address']}: {'answers' if a['reachable'] else 'NO ANSWER'}")
        # the launcher's lines go just above the problem list
        head, sep, tail = text.rpartition("\nProblems")
        print(head.rstrip("\n") + "\n" + "\n".join(extra) + "\n" + sep + tail)
    return 1 if args.strict and info["problems"] else 0
