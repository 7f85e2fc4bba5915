"""``ember submit`` and ``ember job status|logs|stop|list``: jobs through Ray Jobs.

``ember submit [--address http://HEAD:8265 | --cluster CONFIG] [--working-dir DIR] [--no-wait]
-- python script.py ...`` hands the command to the cluster's Ray Jobs server (the dashboard),
which runs it on the head node with the working directory uploaded. Unless ``--no-wait``, the
job's output streams to the terminal and the exit code follows the job's result: 0 when it
succeeded, the driver's exit code (or 1) when it failed, 143 when it was stopped. Ctrl-C stops
following (the job keeps running; ``ember job stop ID`` stops it).

Ray's own lines (its logger's notices in this process; in the job's output, Ray's log-format
lines and the ``(raylet)`` / ``(autoscaler)`` lines a job's ``ray.init`` relays) go to
``LOG_DIR/ray.log`` and reach the terminal only with ``--verbose``, as for ``ember launch``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import sys
import threading
import time

from ._ray_output import JobOutput, add_verbose_args, routed_ray_output

_TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
_PYTHON = re.compile(r"python(\d+(\.\d+)?)?")  # python, python3, python3.11


def add_parser(sub) -> None:
    p = sub.add_parser(
        "submit",
        help="run a command as a Ray Job on a cluster",
        description="Submit a command (after --) to the cluster's Ray Jobs "
        "server, stream its output and exit with its result.",
    )
    _where(p)
    p.add_argument("--working-dir", help="directory uploaded for the job (its cwd on the head)")
    p.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="K=V",
        help="environment variable for the job (repeatable)",
    )
    p.add_argument("--submission-id", help="job id to use (default: Ray picks one)")
    p.add_argument(
        "--python",
        metavar="PATH",
        help="interpreter that runs the command's leading `python` (default: this "
        "one when the head is this machine, ember.python for a --cluster "
        "whose head is another host)",
    )
    p.add_argument(
        "entrypoint",
        nargs=argparse.REMAINDER,
        help="-- the command, e.g. -- python train.py --epochs 2",
    )
    add_verbose_args(p, "submit")
    p.set_defaults(func=run_submit)

    job = sub.add_parser(
        "job",
        help="status, logs, stop or list of Ray Jobs",
        description="Inspect or stop jobs submitted with `ember submit`.",
    )
    jsub = job.add_subparsers(dest="job_command", metavar="ACTION", required=True)
    for name, helptext in (
        ("status", "a job's status"),
        ("logs", "a job's output"),
        ("stop", "stop a job"),
        ("list", "all jobs of the cluster"),
    ):
        q = jsub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:])
        _where(q)
        if name != "list":
            q.add_argument("job_id", metavar="ID", help="the job's submission id")
        if name == "logs":
            q.add_argument(
                "-f",
                "--follow",
                action="store_true",
                help="stream until the job ends; exit with its result",
            )
        if name == "stop":
            q.add_argument("--no-wait", action="store_true", help="do not wait for it to stop")
        add_verbose_args(q, "job")
        q.set_defaults(func=run_job)


def _where(p) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--address",
        help="Ray Jobs address, http://HEAD:8265 (default: "
        "$RAY_API_SERVER_ADDRESS, or the cluster `ember up` "
        "started, or http://127.0.0.1:8265)",
    )
    where.add_argument("--cluster", metavar="CONFIG", help="the cluster of a config")


def resolve_address(args) -> str:
    """The Ray Jobs (dashboard) URL for the command's --address/--cluster, or the defaults."""
    from . import auth

    if getattr(args, "cluster", None):
        from .config import load
        from .up import cluster_addresses

        cfg = load(args.cluster)
        auth.apply_to_cluster(cfg)
        address = cluster_addresses(cfg)[1]
    else:
        address = args.address or os.environ.get("RAY_API_SERVER_ADDRESS")
        ray_address = os.environ.get("RAY_ADDRESS", "")
        if not address and ray_address.startswith("http"):
            address = ray_address
        if address:
            auth.apply_env(auth.default_env())
        else:
            from .local_cluster import all_states, is_up

            states = [s for s in all_states() if is_up(s)]
            if len(states) == 1:
                auth.apply_env(states[0].get("auth_env") or auth.default_env())
                address = states[0]["dashboard"]
            else:
                auth.apply_env(auth.default_env())
        address = address or "http://127.0.0.1:8265"
    return address if "://" in address else f"http://{address}"


def client(address: str):
    """A JobSubmissionClient, or a clear exit when the Jobs server cannot be reached."""
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ...
        raise SystemExit(
            f"ember: cannot reach Ray Jobs at {address} (is the cluster up, with "
            f"its dashboard?): {e}"
        ) from None


def run_submit(args) -> int:
    with routed_ray_output(args, "submit") as ray_out:
        return _submit(args, JobOutput(ray_out))


def _submit(args, out: JobOutput) -> int:
    from .launch import _parse_env

    cmd = list(args.entrypoint)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise SystemExit(
            "ember submit: no command given: ember submit [options] -- python script.py ..."
        )
    env = _parse_env(args.env)
    if args.cluster:
        from . import auth
        from .config import load

        env = {**auth.job_env(load(args.cluster).ember), **env}
    if args.working_dir and not os.path.isdir(args.working_dir):
        raise SystemExit(f"ember submit: --working-dir is not a directory: {args.working_dir}")
    runtime_env = {}
    if args.working_dir:
        runtime_env["working_dir"] = args.working_dir
    if env:
        runtime_env["env_vars"] = env
    address = resolve_address(args)
    cmd, path_dir = _pin_interpreter(args, cmd, address)
    if path_dir and "PATH" not in env:
        # the job's own `python`/`ember` subprocesses find the same environment (Ray expands
        # ${PATH} to the head's)
        runtime_env["env_vars"] = env = {**env, "PATH": f"{path_dir}:${{PATH}}"}
    c = client(address)
    job_id = c.submit_job(
        entrypoint=shlex.join(cmd),
        runtime_env=runtime_env or None,
        submission_id=args.submission_id,
    )
    _note(f"job {job_id} submitted to {address}")
    if args.no_wait:
        print(job_id)
        _note(f"follow: ember job logs -f {job_id} --address {address}")
        return 0
    return follow(c, job_id, out=out)


def _pin_interpreter(args, cmd: list, address: str) -> tuple[list, str | None]:
    """Run a leading ``python`` of the entrypoint with the submitting environment's
    interpreter, not whatever ``python`` the Ray head's PATH finds (often a system Python
    without Ray or ember). Returns (the command, a directory for the front of the job's PATH)."""
    from urllib.parse import urlparse

    from .hosts import is_this_machine

    if "/" in cmd[0] or not _PYTHON.fullmatch(cmd[0]):  # a path names its interpreter
        return cmd, None
    python = getattr(args, "python", None)
    host = urlparse(address).hostname or ""
    if python is None and is_this_machine(host):
        python = sys.executable
    elif python is None and getattr(args, "cluster", None):
        from .config import load

        cfg = load(args.cluster)
        if cfg.provider == "local":
            python = cfg.ember["python"]  # the interpreter the config names for its hosts
    if python is None:
        _note(
            f"the head {host} is another machine: `{cmd[0]}` runs as its PATH finds it; "
            "pass --python PATH to name the interpreter (with ray and ember) there"
        )
        return cmd, None
    if os.path.isabs(python) and is_this_machine(host) and not os.access(python, os.X_OK):
        raise SystemExit(f"ember submit: --python {python} is not an executable file")
    return [python, *cmd[1:]], os.path.dirname(python) if os.path.isabs(python) else None


def follow(c, job_id: str, poll: float = 0.5, out: JobOutput | None = None) -> int:
    """Stream the job's output (through ``out``, which keeps Ray's lines apart; default:
    everything to stdout) until it ends; return the exit code its result maps to."""
    write = out.write if out is not None else sys.stdout.write
    lock = threading.Lock()
    printed = [0]
    closed = threading.Event()

    async def tail():
        async for chunk in c.tail_job_logs(job_id):
            with lock:
                if closed.is_set():
                    return
                write(chunk)
                printed[0] += len(chunk)

    thread = threading.Thread(target=lambda: asyncio.run(tail()), daemon=True)
    thread.start()
    try:
        while str(_call(c.get_job_status, job_id).value) not in _TERMINAL:
            time.sleep(poll)
    except KeyboardInterrupt:
        closed.set()
        if out is not None:
            out.flush()
        _note(f"stopped following; job {job_id} keeps running (stop it: ember job stop {job_id})")
        return 130
    thread.join(timeout=1.0)
    with lock:  # whatever the stream has not shown yet
        closed.set()
        rest = _call(c.get_job_logs, job_id)[printed[0] :]
    write(rest)
    if out is not None:
        out.flush()
    sys.stdout.flush()
    return _result(_call(c.get_job_info, job_id))


def _result(info) -> int:
    status = str(info.status.value)
    _note(
        f"job {info.submission_id} {status.lower()}" + (f": {info.message}" if info.message else "")
    )
    if status == "SUCCEEDED":
        return 0
    if status == "STOPPED":
        return 143
    code = getattr(info, "driver_exit_code", None)
    return code if isinstance(code, int) and code > 0 else 1


def _call(fn, job_id: str):
    try:
        return fn(job_id)
    except RuntimeError as e:
        if "404" in str(e) or "does not exist" in str(e):
            raise SystemExit(f"ember job: no job with id {job_id!r} on this cluster") from None
        raise


def _note(msg: str) -> None:
    print(f"(ember submit) {msg}", file=sys.stderr, flush=True)


def run_job(args) -> int:
    with routed_ray_output(args, "job") as ray_out:
        return _job(args, JobOutput(ray_out))


def _job(args, out: JobOutput) -> int:
    address = resolve_address(args)
    c = client(address)
    if args.job_command == "list":
        jobs = sorted(c.list_jobs(), key=lambda j: j.start_time or 0)
        for j in jobs:
            if j.submission_id:
                print(f"{j.submission_id}  {str(j.status.value):9s} {j.entrypoint}")
        return 0
    job_id = args.job_id
    if args.job_command == "status":
        info = _call(c.get_job_info, job_id)
        print(f"{job_id}: {info.status.value}")
        print(f"  entrypoint: {info.entrypoint}")
        if info.message:
            print(f"  message:    {info.message}")
        from ._live_status import table_from_log

        for line in table_from_log(_call(c.get_job_logs, job_id), str(info.status.value)):
            print(f"  {line}")
        return 0
    if args.job_command == "logs":
        if args.follow:
            return follow(c, job_id, out=out)
        out.write(_call(c.get_job_logs, job_id))
        out.flush()
        return 0
    # stop
    _call(c.get_job_status, job_id)  # a clear error for an unknown id
    c.stop_job(job_id)
    if args.no_wait:
        print(f"{job_id}: stop requested")
        return 0
    deadline = time.time() + 60
    while str(_call(c.get_job_status, job_id).value) not in _TERMINAL:
        if time.time() > deadline:
            print(f"{job_id}: still stopping after 60 s", file=sys.stderr)
            return 1
        time.sleep(0.3)
    print(f"{job_id}: {_call(c.get_job_status, job_id).value}")
    return 0
