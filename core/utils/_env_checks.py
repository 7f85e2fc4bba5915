"""The machine checks of the environment report (``core/utils/collect_env.py``).

Ray (auth mode, a running local cluster, stray ``gcs_server`` processes), the default ports,
``/dev/shm``, the open-file limit and network namespaces. Each check returns its part of the
report and appends what it finds wrong, with the fix, to ``problems``. Ray is never imported
here: its auth mode comes from the variables and token file Ray itself reads, and a running
local cluster from ``/tmp/ray/ray_current_cluster`` plus a TCP probe. ``collect_env``
re-exports every name.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess

# Ports ember uses by default: cluster configs' ember.ray_port / dashboard_port, `ember serve`,
# and torchrun's MASTER_PORT (scripts written for torchrun keep it).
DEFAULT_PORTS = {
    6379: "Ray GCS (ember.ray_port)",
    8265: "Ray dashboard / Jobs (ember.dashboard_port)",
    8000: "ember serve HTTP",
    29500: "torchrun MASTER_PORT",
}

MIN_SHM_BYTES = 1 << 30  # the shared-memory transport and Ray's object store live in /dev/shm
MIN_OPEN_FILES = 8192  # every rank opens sockets to every peer, Ray opens many more
RAY_TMP = "/tmp/ray"


def _problem(problems: list, check: str, problem: str, fix: str) -> None:
    problems.append({"check": check, "problem": problem, "fix": fix})


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


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
