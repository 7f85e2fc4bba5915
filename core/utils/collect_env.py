"""What an issue report should paste: versions, devices and the machine checks ember relies on.

Run ``python -m ember.utils.collect_env`` (or ``ember doctor``, which adds the launcher's own
checks) and paste the output; ``--json`` prints the same report as JSON. Like PyTorch's
``torch.utils.collect_env`` it only looks: it never starts Ray, never initialises a process
group and never imports torch (versions are read from package metadata); as root it creates and
deletes one throwaway network namespace to see that ``ip netns`` works. Every problem found is
listed with the fix to apply.

Ray is never imported here (``core`` does not import Ray, and importing it costs seconds): its
version comes from metadata, its auth mode from the variables and token file Ray itself reads,
and a running local cluster from ``/tmp/ray/ray_current_cluster`` plus a TCP probe.

This file gathers the report (versions, CUDA/NCCL, environment) and formats it; the machine
checks (Ray, ports, ``/dev/shm``, open files, network namespaces) are in ``_env_checks.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata

# The machine checks (Ray, ports, /dev/shm, open files, network namespaces) and their
# constants live in _env_checks.py; re-exported here under their old names.
from ._env_checks import (
    DEFAULT_PORTS,  # noqa: F401
    MIN_OPEN_FILES,  # noqa: F401
    MIN_SHM_BYTES,  # noqa: F401
    RAY_TMP,  # noqa: F401
    _connects,  # noqa: F401
    _gcs_processes,  # noqa: F401
    _gib,
    _local_cluster,  # noqa: F401
    _netns,
    _open_files,
    _port_free,  # noqa: F401
    _ports,
    _problem,
    _ray,
    _shm,
)

# Distributions reported, in order: (label, candidate distribution names).
_PACKAGES = (
    ("ember", ("ember",)),
    ("numpy", ("numpy",)),
    ("scipy", ("scipy",)),
    ("cupy", ("cupy", "cupy-cuda13x", "cupy-cuda12x", "cupy-cuda11x")),
    ("ray", ("ray",)),
    ("grpcio", ("grpcio",)),
    ("protobuf", ("protobuf",)),
    ("safetensors", ("safetensors",)),
    ("pyyaml", ("PyYAML", "pyyaml")),
    ("onnx", ("onnx",)),
    ("onnxruntime", ("onnxruntime", "onnxruntime-gpu")),
    ("torch", ("torch",)),
)

# Shown as "set" / "unset" only: secrets.
_SECRET_VARS = ("EMBER_TOKEN", "RAY_AUTH_TOKEN")
_SHOWN_VARS = (
    "RAY_ADDRESS",
    "RAY_AUTH_MODE",
    "RAY_AUTH_TOKEN_PATH",
    "EMBER_BACKEND",
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "MASTER_ADDR",
    "MASTER_PORT",
)


def _version(names) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _packages() -> dict:
    return {label: _version(names) for label, names in _PACKAGES}


def _system() -> dict:
    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return {
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "os": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "memory_bytes": mem,
        "is_root": hasattr(os, "geteuid") and os.geteuid() == 0,
    }


def _cuda(problems: list) -> dict:
    """CuPy's view of CUDA (runtime, driver, NCCL, devices), else nvidia-smi's GPU list."""
    info = {
        "cupy_usable": False,
        "runtime": None,
        "driver": None,
        "nccl": None,
        "gpus": [],
        "error": None,
    }
    try:
        from ember.backend import _cupy
    except Exception as e:  # noqa: BLE001 - a broken backend import is itself the finding
        info["error"] = f"ember.backend failed to import: {e}"
        return info
    cp = _cupy.cupy
    if cp is None:
        info["error"] = _cupy._error
    else:
        rt = cp.cuda.runtime
        try:
            info["runtime"] = _cuda_version(rt.runtimeGetVersion())
            info["driver"] = _cuda_version(rt.driverGetVersion())
            for i in range(rt.getDeviceCount()):
                props = rt.getDeviceProperties(i)
                name = props["name"]
                info["gpus"].append(
                    {
                        "index": i,
                        "name": name.decode() if isinstance(name, bytes) else str(name),
                        "memory_bytes": int(props["totalGlobalMem"]),
                    }
                )
            info["cupy_usable"] = True
        except Exception as e:  # noqa: BLE001 - a driver error is the finding, not a crash
            info["error"] = f"CUDA query failed: {e}"
            _problem(
                problems,
                "cuda",
                info["error"],
                "check the driver with `nvidia-smi`; "
                "reinstall the CuPy wheel that matches its CUDA version",
            )
        try:
            from cupy.cuda import nccl

            v = nccl.get_version()
            info["nccl"] = f"{v // 10000}.{v // 100 % 100}.{v % 100}" if v >= 10000 else str(v)
        except Exception as e:  # noqa: BLE001 - NCCL is optional: report why it is missing
            info["nccl"] = None
            _problem(
                problems,
                "nccl",
                f"NCCL is not usable from CuPy ({e}): the nccl "
                "backend is unavailable (CuPy tensors go through host memory)",
                "pip install nvidia-nccl-cu12 (or the CUDA 13 wheel) matching your CuPy build",
            )
    if not info["gpus"]:
        info["gpus"] = _nvidia_smi_gpus()
        if info["gpus"] and cp is None:
            _problem(
                problems,
                "cupy",
                f"{len(info['gpus'])} GPU(s) seen by nvidia-smi but CuPy "
                f"is unusable: {info['error']}",
                "pip install 'ember[gpu]' (cupy-cuda12x or "
                "cupy-cuda13x, matching the driver's CUDA version)",
            )
    return info


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}"


def _nvidia_smi_gpus() -> list:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[0].isdigit():
            mib = int(parts[2]) if parts[2].isdigit() else 0
            gpus.append({"index": int(parts[0]), "name": parts[1], "memory_bytes": mib << 20})
    return gpus


def _env_vars() -> dict:
    shown = {k: os.environ[k] for k in _SHOWN_VARS if k in os.environ}
    shown.update({k: "set" for k in _SECRET_VARS if os.environ.get(k)})
    return shown


def get_env_info() -> dict:
    """The report as a dict (what ``--json`` prints); ``problems`` lists each with its fix."""
    problems: list = []
    system = _system()
    packages = _packages()
    info = {"system": system, "packages": packages, "cuda": _cuda(problems)}
    if packages["ray"] is None:
        _problem(
            problems,
            "ray",
            "Ray is not installed; distributed jobs and the launcher need it",
            "pip install 'ray[default]'",
        )
    info["ray"] = _ray(problems)
    info["ports"] = _ports(problems, info["ray"]["local_cluster_up"])
    info["shm"] = _shm(problems)
    info["open_files"] = _open_files(problems)
    info["netns"] = _netns(problems, system["is_root"])
    info["env"] = _env_vars()
    info["problems"] = problems
    return info


def _fmt_bytes(n) -> str:
    return "unknown" if n is None else _gib(n)


def format_env_info(info: dict, title: str = "ember environment") -> str:
    """Plain-text form of :func:`get_env_info`'s report."""
    s, c, r = info["system"], info["cuda"], info["ray"]
    lines = [
        title,
        "=" * len(title),
        f"Python:            {s['python']} ({s['python_executable']})",
        f"OS:                {s['os']}",
        f"CPUs / memory:     {s['cpus']} / {_fmt_bytes(s['memory_bytes'])}",
        "",
    ]
    for name, ver in info["packages"].items():
        lines.append(f"{name + ':':<19}{ver or 'not installed'}")
    lines.append("")
    if c["cupy_usable"]:
        lines.append(f"CUDA runtime:      {c['runtime']} (driver {c['driver']})")
        lines.append(f"NCCL:              {c['nccl'] or 'not available'}")
    else:
        lines.append(f"CUDA:              not usable ({c['error']})")
    gpus = (
        ", ".join(f"{g['index']}: {g['name']} ({_fmt_bytes(g['memory_bytes'])})" for g in c["gpus"])
        or "none"
    )
    lines.append(f"GPUs:              {gpus}")
    lines.append("")
    lines.append(f"Ray auth mode:     {r['auth_mode']} ({r['auth_mode_source']})")
    cluster = "not running"
    if r["local_cluster_up"]:
        cluster = f"up at {r['local_cluster_address']}"
    elif r["local_cluster_address"]:
        cluster = f"not reachable at {r['local_cluster_address']} (stale record)"
    lines.append(f"Local Ray cluster: {cluster}; gcs_server processes: {r['gcs_processes']}")
    if r["address_env"]:
        lines.append(f"RAY_ADDRESS:       {r['address_env']}")
    ports = ", ".join(
        f"{p} {'free' if v['free'] else v.get('held_by', 'IN USE')}"
        for p, v in info["ports"].items()
    )
    lines.append(f"Default ports:     {ports}")
    lines.append(
        f"/dev/shm:          {_fmt_bytes(info['shm']['size_bytes'])} "
        f"({_fmt_bytes(info['shm']['free_bytes'])} free)"
    )
    of = info["open_files"]
    lines.append(f"Open-file limit:   {of['soft']} (hard {of['hard']})")
    ns = info["netns"]
    lines.append(f"Network ns:        {'works' if ns['works'] else 'no: ' + str(ns['reason'])}")
    if info["env"]:
        lines.append("Environment:       " + " ".join(f"{k}={v}" for k, v in info["env"].items()))
    lines.append("")
    problems = info["problems"]
    if problems:
        lines.append(f"Problems ({len(problems)}):")
        for p in problems:
            lines.append(f"  - [{p['check']}] {p['problem']}")
            lines.append(f"    fix: {p['fix']}")
    else:
        lines.append("Problems: none found")
    return "\n".join(lines)


def get_pretty_env_info() -> str:
    """The text report, as ``torch.utils.collect_env.get_pretty_env_info``."""
    return format_env_info(get_env_info())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ember.utils.collect_env",
        description="Print the environment report to paste into an ember issue.",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    info = get_env_info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print("Collecting environment information...")
        print(format_env_info(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
