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
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
from importlib import metadata

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

# Ports ember uses by default: cluster configs' ember.ray_port / dashboard_port, `ember serve`,
# and torchrun's MASTER_PORT (scripts written for torchrun keep it).
DEFAULT_PORTS = {
    6379: "Ray GCS (ember.ray_port)",
    8265: "Ray dashboard / Jobs (ember.dashboard_port)",
    8000: "ember serve HTTP",
    29500: "torchrun MASTER_PORT",
}

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

MIN_SHM_BYTES = 1 << 30  # the shared-memory transport and Ray's object store live in /dev/shm
MIN_OPEN_FILES = 8192  # every rank opens sockets to every peer, Ray opens many more
RAY_TMP = "/tmp/ray"


def _version(names) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _problem(problems: list, check: str, problem: str, fix: str) -> None:
    problems.append({"check": check, "problem": problem, "fix": fix})


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


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


def _ray(problems: list) -> dict:
    """Ray's auth mode (as Ray 2.5x+ resolves it) and whether a local cluster is up."""
    mode = os.environ.get("RAY_AUTH_MODE")
    token_path = os.path.expanduser(os.environ.get("RAY_AUTH_TOKEN_PATH") or "~/.ray/auth_token")
    token_file = os.path.isfile(token_path)
    token_env = bool(os.environ.get("RAY_AUTH_TOKEN"))
    if mode:
        effective = mode.lower()
        source = "from RAY_AUTH_MODE"
    elif token_env or token_file:
        effective, source = "token", "RAY_AUTH_MODE unset; a token exists"
    else:
        effective, source = "default", "RAY_AUTH_MODE unset; no token"
    info = {
        "auth_mode": effective,
        "auth_mode_source": source,
        "token_path": token_path,
        "token_file": token_file,
        "token_env": token_env,
        "address_env": os.environ.get("RAY_ADDRESS"),
    }
    if effective not in ("token", "disabled", "default"):
        _problem(
            problems,
            "ray auth",
            f"RAY_AUTH_MODE={mode!r} is not a mode Ray knows",
            "export RAY_AUTH_MODE=token (or disabled)",
        )
    elif effective == "token" and not (token_env or token_file):
        _problem(
            problems,
            "ray auth",
            f"RAY_AUTH_MODE=token but no token at {token_path} and RAY_AUTH_TOKEN is unset",
            "ray get-auth-token --generate",
        )
    elif not mode and effective == "token":
        _problem(
            problems,
            "ray auth",
            "RAY_AUTH_MODE is unset: Ray turns token authentication "
            "on because a token exists, and warns about it at every start",
            "export RAY_AUTH_MODE=token",
        )
    elif not mode:
        _problem(
            problems,
            "ray auth",
            "RAY_AUTH_MODE is unset: Ray picks a mode itself and warns about it at every start",
            "ray get-auth-token --generate && export "
            "RAY_AUTH_MODE=token (or RAY_AUTH_MODE=disabled on a private host)",
        )
    if token_file and os.stat(token_path).st_mode & 0o077:
        _problem(
            problems,
            "ray auth",
            f"{token_path} is readable by other users",
            f"chmod 600 {token_path}",
        )
    info.update(_local_cluster())
    return info


def _local_cluster() -> dict:
    """The local cluster Ray would attach to (``ray_current_cluster``), probed over TCP."""
    address = None
    try:
        with open(os.path.join(RAY_TMP, "ray_current_cluster")) as f:
            address = f.read().strip() or None
    except OSError:
        pass
    up = False
    if address:
        host, _, port = address.rpartition(":")
        up = port.isdigit() and _connects(host or "127.0.0.1", int(port))
    return {
        "local_cluster_address": address,
        "local_cluster_up": up,
        "gcs_processes": _gcs_processes(),
    }


def _gcs_processes() -> int:
    """How many ``gcs_server`` processes run here (Ray heads, including other users')."""
    n = 0
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "gcs_server":
                    n += 1
        except OSError:
            continue
    return n


def _connects(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _ports(problems: list, ray_up: bool) -> dict:
    result = {}
    for port, use in DEFAULT_PORTS.items():
        free = _port_free(port)
        result[str(port)] = {"use": use, "free": free}
        if free:
            continue
        if ray_up and port in (6379, 8265):
            result[str(port)]["held_by"] = "the running local Ray cluster"
            continue
        _problem(
            problems,
            "ports",
            f"port {port} ({use}) is in use",
            f"find the owner with `ss -ltnp 'sport = :{port}'`; or choose another port "
            "(cluster config ember.ray_port / ember.dashboard_port, `ember serve --port`, "
            "MASTER_PORT)",
        )
    return result


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as servers bind: a port only in TIME_WAIT is free for them
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def _shm(problems: list) -> dict:
    try:
        st = os.statvfs("/dev/shm")
    except OSError as e:
        _problem(
            problems,
            "/dev/shm",
            f"/dev/shm is unusable ({e.strerror})",
            "mount a tmpfs on /dev/shm (docker: --shm-size=8g)",
        )
        return {"size_bytes": None, "free_bytes": None}
    size, free = st.f_frsize * st.f_blocks, st.f_frsize * st.f_bavail
    if size < MIN_SHM_BYTES:
        _problem(
            problems,
            "/dev/shm",
            f"/dev/shm is {_gib(size)}; the shared-memory transport "
            "and Ray's object store need more",
            "docker run --shm-size=8g ... (or `mount -o remount,size=8G /dev/shm` as root)",
        )
    elif free < MIN_SHM_BYTES:
        _problem(
            problems,
            "/dev/shm",
            f"only {_gib(free)} free in /dev/shm",
            "remove stale files in /dev/shm (left by killed jobs) or enlarge it",
        )
    return {"size_bytes": size, "free_bytes": free}


def _open_files(problems: list) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < MIN_OPEN_FILES:
        target = MIN_OPEN_FILES * 8 if hard == resource.RLIM_INFINITY else min(hard, 65536)
        fix = (
            f"ulimit -n {target}"
            if target >= MIN_OPEN_FILES
            else "raise the hard limit (nofile in /etc/security/limits.conf), then ulimit -n 65536"
        )
        _problem(
            problems,
            "open files",
            f"open-file limit is {soft}; Ray and many-rank jobs need >= {MIN_OPEN_FILES}",
            fix,
        )
    return {"soft": soft, "hard": hard}


def _netns(problems: list, is_root: bool) -> dict:
    """Whether ``ip netns`` works (the two-host tests and ``ember.launcher.netns`` need it)."""
    if shutil.which("ip") is None:
        _problem(
            problems,
            "netns",
            "`ip` (iproute2) is not installed; the multi-node tests will be skipped",
            "apt-get install iproute2",
        )
        return {"works": False, "reason": "ip not found"}
    if not is_root:
        return {"works": False, "reason": "needs root (the multi-node tests are skipped)"}
    name = f"ember-doctor-{os.getpid()}"
    try:
        add = subprocess.run(
            ["ip", "netns", "add", name], capture_output=True, text=True, timeout=10
        )
        if add.returncode == 0:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=10)
            return {"works": True, "reason": None}
        reason = add.stderr.strip() or f"exit code {add.returncode}"
    except (OSError, subprocess.TimeoutExpired) as e:
        reason = str(e)
    _problem(
        problems,
        "netns",
        f"`ip netns add` fails ({reason}); the multi-node tests will be skipped",
        "run in a container with CAP_SYS_ADMIN (docker run --privileged) or on "
        "a host where you are root",
    )
    return {"works": False, "reason": reason}


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
