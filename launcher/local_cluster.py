"""``ember up``/``down`` for the ``local`` provider: ``ray start`` over a list of hosts.

The head gets ``ray start --head`` (GCS on ``ember.ray_port``, dashboard with Ray Jobs on
``ember.dashboard_port``, both bound to the head's own address), every worker ``ray start
--address HEAD``; each with its own ``--temp-dir`` and ``--node-ip-address``. What was started
is written to a state file (``~/.ember/clusters/<name>.json``, or under ``$EMBER_STATE_DIR``):
per host, how it is reached, its temp dir and the session id of its Ray processes, so that
``ember down`` stops exactly those processes, workers first, and nothing else.
"""

from __future__ import annotations

import json
import os
import shlex
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from . import auth
from .config import ClusterConfig, host_settings, host_temp_dir
from .hosts import Host, HostError, is_this_machine, ssh_argv

_state_lock = threading.Lock()  # workers start in parallel and record themselves


def state_dir() -> str:
    return os.environ.get("EMBER_STATE_DIR") or os.path.expanduser("~/.ember/clusters")


def state_path(name: str) -> str:
    return os.path.join(state_dir(), f"{name}.json")


def read_state(name: str) -> dict | None:
    try:
        with open(state_path(name)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def all_states() -> list[dict]:
    d = state_dir()
    if not os.path.isdir(d):
        return []
    out = []
    for fn in sorted(os.listdir(d)):
        if fn.endswith(".json"):
            with open(os.path.join(d, fn)) as f:
                out.append(json.load(f))
    return out


def _write_state(state: dict) -> None:
    os.makedirs(state_dir(), exist_ok=True)
    tmp = state_path(state["name"]) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1)
    os.replace(tmp, state_path(state["name"]))


def build_hosts(cfg: ClusterConfig) -> list[Host]:
    """The cluster's hosts, head first, each with how to reach it."""
    provider = cfg.raw["provider"]
    ips = [provider["head_ip"]] + list(provider.get("worker_ips") or [])
    hosts = []
    for i, ip in enumerate(ips):
        s = host_settings(cfg, ip)
        host = Host(
            ip=ip,
            role="head" if i == 0 else "worker",
            temp_dir=host_temp_dir(cfg, ip),
            env=dict(s.get("env") or {}),
            settings=s,
        )
        if s.get("command_prefix"):
            host.prefix = list(s["command_prefix"])
        elif not is_this_machine(ip):
            host.ssh = ssh_argv(ip, cfg.raw.get("auth") or {})
            host.python = cfg.ember["python"]
            host.ray = shlex.split(cfg.ember["ray"])
        hosts.append(host)
    return hosts


def host_from_state(entry: dict) -> Host:
    return Host(
        ip=entry["ip"],
        role=entry["role"],
        temp_dir=entry["temp_dir"],
        prefix=entry.get("prefix") or [],
        ssh=entry.get("ssh"),
        python=entry["python"],
        ray=entry.get("ray") or [],
    )


def ray_start_command(cfg: ClusterConfig, host: Host) -> list:
    e, s = cfg.ember, host.settings
    head_ip = cfg.raw["provider"]["head_ip"]
    cmd = [
        *host.ray,
        "start",
        f"--node-ip-address={host.ip}",
        f"--temp-dir={host.temp_dir}",
        "--disable-usage-stats",
    ]
    if host.role == "head":
        cmd += [
            "--head",
            f"--port={e['ray_port']}",
            "--include-dashboard=true",
            f"--dashboard-host={host.ip}",
            f"--dashboard-port={e['dashboard_port']}",
        ]
    else:
        cmd += [f"--address={head_ip}:{e['ray_port']}"]
    if s.get("num_cpus") is not None:
        cmd.append(f"--num-cpus={s['num_cpus']}")
    if s.get("num_gpus") is not None:
        cmd.append(f"--num-gpus={s['num_gpus']}")
    if s.get("resources"):
        cmd.append("--resources=" + json.dumps(s["resources"], separators=(",", ":")))
    if s.get("object_store_memory"):
        cmd.append(f"--object-store-memory={s['object_store_memory']}")
    return cmd + list(s.get("ray_start_args") or [])


def setup_commands(cfg: ClusterConfig, host: Host) -> list[str]:
    """Ray's order: initialization_commands, setup_commands, then the role's own."""
    raw = cfg.raw
    role_key = "head_setup_commands" if host.role == "head" else "worker_setup_commands"
    return [
        *(raw.get("initialization_commands") or []),
        *(raw.get("setup_commands") or []),
        *(raw.get(role_key) or []),
    ]


def plan(cfg: ClusterConfig) -> list[tuple[Host, list, list]]:
    """(host, setup commands, ray start command) for every host, head first."""
    return [(h, setup_commands(cfg, h), ray_start_command(cfg, h)) for h in build_hosts(cfg)]


def is_up(state: dict | None) -> bool:
    """True while the head's recorded Ray processes are running."""
    if not state or not state.get("hosts"):
        return False
    head = state["hosts"][0]
    try:
        return bool(host_from_state(head).processes(head["sid"]))
    except HostError:
        return False


def up(cfg: ClusterConfig, out=print, timeout: float = 300) -> dict:
    """Start the cluster's Ray processes; return the recorded state."""
    state = read_state(cfg.name)
    token = auth.ensure_local_token(cfg.ember)
    env = auth.resolved_ray_auth_env(cfg.ember)  # the mode named for every host and driver
    if token is None and env.get("RAY_AUTH_MODE") == "token":
        token = auth.ray_token()  # ``inherit`` with a token: ssh hosts need it too
    steps = plan(cfg)
    if is_up(state):
        env = state.get("auth_env") or env  # the mode the running head was started with
        return _complete(cfg, state, steps, env, token, out, timeout)
    if state:  # the head is gone: stop whatever is left of the old cluster before a fresh one
        out(f"cluster {cfg.name!r}: its head is not running; stopping what is left of it")
        down_state(state, out=out)
    head_ip = cfg.raw["provider"]["head_ip"]
    state = {
        "name": cfg.name,
        "config": os.path.abspath(cfg.path),
        "provider": "local",
        "head": f"{head_ip}:{cfg.ember['ray_port']}",
        "dashboard": f"http://{head_ip}:{cfg.ember['dashboard_port']}",
        "auth_env": env,
        "started_at": time.time(),
        "hosts": [],
    }
    try:
        _start_host(cfg, *steps[0], env, token, state, out, timeout)
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(steps) - 1))) as pool:
            futures = [
                pool.submit(_start_host, cfg, *step, env, token, state, out, timeout)
                for step in steps[1:]
            ]
            errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            raise errors[0]
    except BaseException:
        out(f"cluster {cfg.name!r}: start failed; stopping what was started")
        down_state(state, out=out)
        raise
    out(
        f"cluster {cfg.name!r} is up: {len(steps)} node(s), head {state['head']}, "
        f"dashboard {state['dashboard']}"
    )
    return state


def _complete(cfg, state: dict, steps: list, env: dict, token, out, timeout: float) -> dict:
    """The head is up: (re)start the workers whose Ray is not running (e.g. after a crash), or
    that the head has DEAD while their processes still run (after a partition, issue #28)."""
    from . import node_health as nh

    running, errors = {}, {}
    for entry in state["hosts"]:
        try:
            running[entry["ip"]] = bool(host_from_state(entry).processes(entry["sid"]))
        except HostError as e:
            running[entry["ip"]], errors[entry["ip"]] = None, str(e)
    auth.apply_env(env)
    alive = nh.query_alive(state["head"])
    checks = {
        h.ip: nh.HostCheck(
            h.ip,
            running.get(h.ip, False),
            # absent from Ray (e.g. the address is a name Ray reports otherwise): unknown
            None if alive is None else alive.get(h.ip),
            errors.get(h.ip, ""),
        )
        for h, _, _ in steps[1:]
    }
    actions = {ip: nh.decide(c) for ip, c in checks.items()}
    missing = [step for step in steps[1:] if actions[step[0].ip] in (nh.START, nh.RESTART)]
    manual = [step for step in steps[1:] if actions[step[0].ip] == nh.MANUAL]
    for host, _, start in manual:
        out(f"  {nh.reason(checks[host.ip])}; once it is reachable, run `ember up` again or:")
        out(f"    {nh.manual_command(host, start, env)}")
    if not missing:
        if not manual:
            out(
                f"cluster {cfg.name!r} is already up (head {state['head']}); `ember down` "
                "first to restart it"
            )
        return state
    out(
        f"cluster {cfg.name!r} is up; starting Ray on {len(missing)} host(s) where it is not "
        "running or the head has the node DEAD"
    )
    gone = {step[0].ip for step in missing}
    for entry in state["hosts"]:
        if entry["ip"] in gone and actions[entry["ip"]] == nh.RESTART:
            out(f"  {nh.reason(checks[entry['ip']])}")
            stop_host(entry, out=out)
    state["hosts"] = [h for h in state["hosts"] if h["ip"] not in gone]
    for step in missing:
        _start_host(cfg, *step, env, token, state, out, timeout)
    return state


def _start_host(
    cfg, host: Host, setup: list, start: list, env: dict, token, state: dict, out, timeout: float
) -> None:
    t0 = time.time()
    if token is not None and host.ssh:
        host.run(auth.remote_token_command(cfg.ember), input=token, timeout=60)
    for command in setup:
        host.run(["sh", "-c", command], env=env, timeout=timeout)
    sid, r = host.start_session(start, env=env, timeout=timeout)
    entry = {
        "ip": host.ip,
        "role": host.role,
        "sid": sid,
        "temp_dir": host.temp_dir,
        "prefix": host.prefix,
        "ssh": host.ssh,
        "python": host.python,
        "ray": host.ray,
    }
    if sid:
        with _state_lock:
            state["hosts"].append(entry)
            # head first in the file: `down` stops workers before it
            state["hosts"].sort(key=lambda h: h["role"] != "head")
            _write_state(state)
    if r.returncode != 0 or not sid:
        output = r.stdout + r.stderr
        tail = "\n".join("    " + s for s in output.strip().splitlines()[-25:])
        last = [s.strip() for s in output.splitlines() if s.strip()]
        raise HostError(
            f"host {host.ip} ({host.how}): `ray start` exited with code "
            f"{r.returncode} ({last[-1] if last else 'no output'}); check Ray's "
            f"logs under {host.temp_dir} on that host",
            tail,
        )
    out(
        f"  {host.role} {host.ip} ({host.how}): Ray started in {time.time() - t0:.1f} s "
        f"(session {sid}, temp dir {host.temp_dir})"
    )


def down(cfg: ClusterConfig, out=print, grace: float = 5.0) -> int:
    state = read_state(cfg.name)
    if state is None:
        out(f"cluster {cfg.name!r} is not up (no state in {state_path(cfg.name)})")
        return 0
    return down_state(state, out=out, grace=grace)


def down_state(state: dict, out=print, grace: float = 5.0) -> int:
    """Stop every recorded host (workers first, then the head); remove the state file."""
    failures = 0
    for entry in reversed(state.get("hosts", [])):
        stop_host(entry, out=out, grace=grace)
    for entry in state.get("hosts", []):
        try:
            left = host_from_state(entry).processes(entry["sid"])
        except HostError as e:
            out(f"  {entry['role']} {entry['ip']}: {e}")
            failures += 1
            continue
        if left:
            out(f"  {entry['role']} {entry['ip']}: processes still running: {left}")
            failures += 1
    if not failures:
        try:
            os.remove(state_path(state["name"]))
        except FileNotFoundError:
            pass
        out(f"cluster {state['name']!r} is down")
    return 1 if failures else 0


def stop_host(entry: dict, out=print, grace: float = 5.0) -> list:
    """Stop one host's Ray processes (grace 0: SIGKILL at once, as a crash would)."""
    try:
        result = host_from_state(entry).kill(entry["sid"], grace=grace)
    except HostError as e:
        out(f"  {entry['role']} {entry['ip']}: {e}")
        return []
    out(f"  {entry['role']} {entry['ip']}: stopped {len(result['pids'])} process(es)")
    return result["pids"]
