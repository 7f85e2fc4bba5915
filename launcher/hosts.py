"""Running commands on a cluster host, and stopping exactly the processes ember started there.

A host is reached one of three ways: directly (the address belongs to this machine), through a
command prefix run on this machine (``ip netns exec NS``, ``docker exec CONTAINER`` — set
``ember.hosts[ip].command_prefix``), or over ssh (``auth.ssh_user`` / ``auth.ssh_private_key``).

``ray start`` is run under ``setsid``, so every Ray process it leaves behind (GCS, raylet,
dashboard, agents, workers) shares one new session id, which is recorded. Stopping a host kills
the members of that session — plus any process whose command line names the host's own Ray temp
dir — and nothing else: never ``ray stop``, which would take every Ray on the machine with it.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass, field

# Runs on the host (``python -c``): list or kill a Ray session's processes. argv: mode, session
# id, the host's Ray temp dir, grace seconds. Ray's processes name their session directory
# (``<temp dir>/session_...``) or ``--temp-dir=<temp dir>`` on their command lines; a session
# only counts as ours while some member still does, so a reused session id is never touched.
_PROC_SCRIPT = r"""
import json, os, signal, sys, time
mode, sid, tmp, grace = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
marks = (tmp + "/session_", "--temp-dir=" + tmp + " ", "--temp_dir=" + tmp + " ")
me = {os.getpid(), os.getppid()}
def scan():
    by_sid, by_marker = [], []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in me:
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            if rest[0] == "Z":
                continue
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace") + " "
        except (OSError, IndexError):
            continue
        named = any(m in cmd for m in marks)
        if sid > 1 and int(rest[3]) == sid:
            by_sid.append((int(d), named))
        elif named:
            by_marker.append(int(d))
    ours = [p for p, _ in by_sid] if any(m for _, m in by_sid) else []
    return sorted(set(ours + by_marker))
pids = scan()
if mode == "kill":
    sig = signal.SIGTERM if grace > 0 else signal.SIGKILL
    for p in pids:
        try:
            os.kill(p, sig)
        except OSError:
            pass
    deadline = time.time() + grace
    while time.time() < deadline and scan():
        time.sleep(0.1)
    for p in scan():
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.05)
print(json.dumps({"pids": pids, "left": scan() if mode == "kill" else pids}))
"""


class HostError(RuntimeError):
    """A command on a cluster host failed: the message (one line) names the host, what failed
    and what to check; ``detail`` holds the tail of the command's output, when there was one."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


@dataclass
class Host:
    """One machine of a cluster, and how to run commands on it."""

    ip: str
    role: str  # "head" or "worker"
    temp_dir: str
    prefix: list = field(default_factory=list)  # run on this machine before the command
    ssh: list | None = None  # ssh argv (ending with user@ip) when the host is remote
    python: str = sys.executable
    ray: list = field(
        default_factory=lambda: [os.path.join(os.path.dirname(sys.executable), "ray")]
    )
    env: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    @property
    def how(self) -> str:
        if self.ssh:
            return "ssh"
        return "prefix: " + shlex.join(self.prefix) if self.prefix else "local"

    def argv(self, cmd: list, env: dict | None = None) -> list:
        """The full command line that runs ``cmd`` on this host."""
        if self.ssh:
            env = {**self.env, **(env or {})}
            assign = [f"{k}={v}" for k, v in env.items()]
            return [*self.ssh, shlex.join((["env", *assign] if assign else []) + list(cmd))]
        return [*self.prefix, *cmd]

    def run(
        self,
        cmd: list,
        *,
        env: dict | None = None,
        input: str | None = None,
        timeout: float = 300,
        check: bool = True,
    ) -> subprocess.CompletedProcess:
        argv = self.argv(cmd, env)
        full_env = None if self.ssh else {**os.environ, **self.env, **(env or {})}
        feed = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
        try:
            r = subprocess.run(
                argv, env=full_env, capture_output=True, text=True, timeout=timeout, **feed
            )
        except FileNotFoundError as e:
            raise HostError(f"host {self.ip}: cannot run {argv[0]!r}: {e.strerror}") from None
        except subprocess.TimeoutExpired:
            raise HostError(
                f"host {self.ip}: `{shlex.join(cmd)}` did not finish within {timeout:.0f} s"
            ) from None
        if self.ssh and r.returncode == 255:  # ssh's own failure: the host was not reached
            raise HostError(
                f"host {self.ip}: cannot reach it over ssh ({_last_line(r.stderr)}); "
                f"check that it is up and that `ssh {self.ssh[-1]} true` works with "
                "the config's auth (ssh_user, ssh_private_key)",
                _tail(r.stderr),
            )
        if check and r.returncode != 0:
            raise HostError(
                f"host {self.ip} ({self.how}): `{_short(cmd)}` exited with code "
                f"{r.returncode}: {_last_line(r.stdout + r.stderr)}",
                _tail(r.stdout + r.stderr),
            )
        return r

    def start_session(
        self, cmd: list, *, env: dict | None = None, timeout: float = 300
    ) -> tuple[int, subprocess.CompletedProcess]:
        """Run ``cmd`` in a new session on the host; return (session id, result)."""
        wrapped = ["setsid", "-w", "sh", "-c", 'echo "EMBER_SID=$$"; exec "$@"', "ember", *cmd]
        r = self.run(wrapped, env=env, timeout=timeout, check=False)
        sid = 0
        for line in r.stdout.splitlines():
            if line.startswith("EMBER_SID="):
                sid = int(line.split("=", 1)[1])
                break
        return sid, r

    def processes(self, sid: int) -> list[int]:
        """PIDs of the Ray processes of session ``sid`` (and of this host's temp dir)."""
        return self._proc("list", sid, 0.0)["pids"]

    def kill(self, sid: int, grace: float = 5.0) -> dict:
        """Stop the session's processes: SIGTERM, then SIGKILL after ``grace`` s (0: at once).
        Returns ``{"pids": [...], "left": [...]}``."""
        return self._proc("kill", sid, grace)

    def _proc(self, mode: str, sid: int, grace: float) -> dict:
        r = self.run(
            [
                self.python,
                "-c",
                _PROC_SCRIPT,
                mode,
                str(sid),
                self.temp_dir.rstrip("/"),
                str(grace),
            ],
            timeout=grace + 60,
        )
        return json.loads(r.stdout.strip().splitlines()[-1])


def is_this_machine(ip: str) -> bool:
    """True when ``ip`` is an address of this machine (in this network namespace)."""
    if ip in ("localhost", "127.0.0.1", "::1", socket.gethostname()):
        return True
    try:
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((ip, 0))
        return True
    except OSError:
        return False


def ssh_argv(ip: str, auth: dict) -> list:
    user = auth.get("ssh_user")
    argv = [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=accept-new",
        "-o",
        "ConnectTimeout=15",
    ]
    if auth.get("ssh_private_key"):
        argv += ["-i", os.path.expanduser(auth["ssh_private_key"])]
    if auth.get("ssh_proxy_command"):
        argv += ["-o", f"ProxyCommand={auth['ssh_proxy_command']}"]
    return argv + [f"{user}@{ip}" if user else ip]


def _last_line(text: str) -> str:
    """The last non-empty line of a command's output (where ssh and Ray put the error)."""
    lines = [s.strip() for s in text.strip().splitlines() if s.strip()]
    return lines[-1] if lines else "no output"


def _short(cmd: list, limit: int = 80) -> str:
    text = shlex.join(cmd)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join("    " + s for s in text.strip().splitlines()[-lines:])
