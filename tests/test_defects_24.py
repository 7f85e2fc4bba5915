"""Issue #24, defects 2-5: get_backend() names, `ember up` failures as one line, the submitted
job's interpreter, Ray token auth across up/status/launch/submit/down."""

import socket

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- defect 2: get_backend() ---------------------------------------------------------------
@pytest.mark.parametrize("name", [None, "gloo", "GLOO"])
def test_get_backend_matches_torch(name):
    torch = pytest.importorskip("torch")
    import torch.distributed as tdist

    import ember.distributed as dist

    tdist.init_process_group(
        name, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1
    )
    try:
        want = (tdist.get_backend(), tdist.get_backend(tdist.new_group([0])))
    finally:
        tdist.destroy_process_group()
    dist.init_process_group(name, init_method="tcp://127.0.0.1:0?rank=0&world_size=1")
    try:
        assert (dist.get_backend(), dist.get_backend(dist.new_group([0]))) == want
    finally:
        dist.destroy_process_group()
    assert torch.__version__ and want[0] == ("undefined" if name is None else "gloo")


# ---- defect 4: every `ember up` failure is one line ----------------------------------------
_UP_CASES = {
    "unreachable": (
        "provider: {type: local, head_ip: no-such-host.invalid, worker_ips: []}\n"
        "auth: {ssh_user: nobody}\n",
        [
            "host no-such-host.invalid: cannot reach it over ssh",
            "ssh nobody@no-such-host.invalid true",
        ],
    ),
    "bad_key": (
        "provider: {type: local, head_ip: 127.0.0.1, worker_ips: []}\n"
        "ember: {workerz_per_node: 1}\n",
        ["ember.workerz_per_node: unknown key", "workers_per_node"],
    ),
    "bad_yaml": ("provider: [\n", ["not valid YAML"]),
    "missing": (None, ["file not found"]),
    "no_wrapper": (
        "provider: {type: local, head_ip: 127.0.0.1, worker_ips: []}\n"
        "ember: {node: {command_prefix: [/no/such/wrapper]}}\n",
        ["host 127.0.0.1: cannot run '/no/such/wrapper'"],
    ),
}


@pytest.mark.parametrize("case", sorted(_UP_CASES))
def test_up_failures_end_in_one_line(case, tmp_path, monkeypatch, capsys):
    from ember.launcher.cli import main

    monkeypatch.setenv("EMBER_STATE_DIR", str(tmp_path / "state"))
    text, wanted = _UP_CASES[case]
    path = tmp_path / f"{case}.yaml"
    if text is not None:
        path.write_text(f"cluster_name: {case[:3]}\n" + text)
    code = main(["up", str(path)])
    err = capsys.readouterr().err
    assert code in (1, 2)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[0].startswith("ember up: ") and all(w in err for w in wanted), err
    assert len(lines) == (3 if case == "bad_yaml" else 1), err  # YAML's own line/column


def test_up_with_an_unwritable_state_dir_is_one_line(tmp_path, monkeypatch, capsys):
    import os

    from ember.launcher.cli import main

    if os.geteuid() == 0:
        state = tmp_path / "file"  # root writes anywhere: a file where the directory goes
        state.write_text("")
    else:
        state = tmp_path / "ro"
        state.mkdir(mode=0o500)
    monkeypatch.setenv("EMBER_STATE_DIR", str(state / "clusters"))
    path = tmp_path / "c.yaml"
    path.write_text(
        "cluster_name: ro\nprovider: {type: local, head_ip: no-such-host.invalid, worker_ips: []}\n"
    )
    assert main(["up", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("ember up: ")


# ---- defect 3: Ray token auth, resolved the way Ray's head resolves it ----------------------
@pytest.mark.parametrize(
    "mode_env, token_file, want",
    [
        (None, True, {"RAY_AUTH_MODE": "token"}),  # Ray's head turns it on: so must drivers
        (None, False, {"RAY_AUTH_MODE": "disabled"}),
        ("disabled", True, {"RAY_AUTH_MODE": "disabled"}),
        ("TOKEN", False, {"RAY_AUTH_MODE": "token"}),
    ],
)
def test_inherit_resolves_to_the_mode_rays_head_picks(
    mode_env, token_file, want, tmp_path, monkeypatch
):
    from ember.launcher import auth

    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    if mode_env:
        monkeypatch.setenv("RAY_AUTH_MODE", mode_env)
    if token_file:
        (tmp_path / ".ray").mkdir()
        (tmp_path / ".ray" / "auth_token").write_text("a" * 64)
    assert auth.resolved_ray_auth_env({"token": {"ray_auth": "inherit"}}) == want
    assert auth.ray_token() == ("a" * 64 if token_file else None)
    explicit = {"token": {"ray_auth": "disabled"}}
    assert auth.resolved_ray_auth_env(explicit) == {"RAY_AUTH_MODE": "disabled"}


# ---- defect 5: the submitted entrypoint's interpreter -------------------------------------
@pytest.mark.parametrize(
    "cmd, python, want",
    [
        (["python", "job.py"], None, "SELF"),
        (["python3.11", "-m", "x"], None, "SELF"),
        (["python", "job.py"], "/bin/sh", "/bin/sh"),  # --python names it
        (["/usr/bin/python3", "job.py"], None, "/usr/bin/python3"),  # named in full: kept
        (["bash", "run.sh"], None, "bash"),
    ],
)
def test_a_leading_python_runs_the_submitting_interpreter(cmd, python, want):
    import argparse
    import os
    import sys

    from ember.launcher.submit import _pin_interpreter

    args = argparse.Namespace(python=python, cluster=None)
    got, path_dir = _pin_interpreter(args, cmd, "http://127.0.0.1:8265")
    want = sys.executable if want == "SELF" else want
    assert got == [want, *cmd[1:]]
    assert path_dir == (os.path.dirname(want) if got[0] != cmd[0] else None)


def test_a_python_that_is_not_executable_is_a_clear_error():
    import argparse

    from ember.launcher.submit import _pin_interpreter

    args = argparse.Namespace(python="/no/such/python", cluster=None)
    with pytest.raises(SystemExit, match="--python /no/such/python is not an executable"):
        _pin_interpreter(args, ["python", "j.py"], "http://127.0.0.1:8265")


def test_a_remote_head_without_python_says_how_to_choose(capsys):
    import argparse

    from ember.launcher.submit import _pin_interpreter

    args = argparse.Namespace(python=None, cluster=None)
    assert _pin_interpreter(args, ["python", "j.py"], "http://192.0.2.7:8265") == (
        ["python", "j.py"],
        None,
    )
    assert "pass --python PATH" in capsys.readouterr().err


# ---- defects 3 and 5 on a real cluster: a default `ember up` with ~/.ray/auth_token --------
@pytest.fixture(scope="module")
def token_cluster(tmp_path_factory):
    """A one-node cluster from a config without a token section (ray_auth: inherit), started
    while ~/.ray/auth_token exists and while the first `python` on PATH is not this one."""
    import os
    import secrets
    import subprocess
    import sys
    import tempfile

    import yaml

    pytest.importorskip("ray.job_submission")
    root = tempfile.mkdtemp(prefix="ed", dir="/tmp")  # short: Ray's socket paths live under it
    home, fake = os.path.join(root, "home"), os.path.join(root, "bin")
    os.makedirs(os.path.join(home, ".ray"))
    os.makedirs(fake)
    with open(os.path.join(home, ".ray", "auth_token"), "w") as f:
        f.write(secrets.token_hex(32))
    with open(os.path.join(fake, "python"), "w") as f:
        f.write("#!/bin/sh\necho 'the head PATH python ran' >&2\nexit 9\n")
    os.chmod(os.path.join(fake, "python"), 0o755)
    ports = [_free_port() for _ in range(7)]
    cfg = {
        "cluster_name": "d24",
        "provider": {"type": "local", "head_ip": "127.0.0.1", "worker_ips": []},
        "ember": {
            "workers_per_node": 1,
            "ray_port": ports[0],
            "dashboard_port": ports[1],
            "temp_dir": root,
            "node": {
                "num_cpus": 2,
                "object_store_memory": 100 * 1024 * 1024,
                "ray_start_args": [
                    f"--ray-client-server-port={ports[2]}",
                    f"--dashboard-agent-listen-port={ports[3]}",
                    f"--dashboard-agent-grpc-port={ports[4]}",
                    f"--metrics-export-port={ports[5]}",
                    f"--runtime-env-agent-port={ports[6]}",
                ],
            },
        },
    }
    path = os.path.join(root, "cluster.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    env = {
        **os.environ,
        "HOME": home,
        "EMBER_STATE_DIR": os.path.join(root, "state"),
        "PATH": f"{fake}:{os.environ['PATH']}",
    }
    for var in (
        "RAY_ADDRESS",
        "RAY_API_SERVER_ADDRESS",
        "RAY_AUTH_MODE",
        "RAY_AUTH_TOKEN",
        "RAY_AUTH_TOKEN_PATH",
    ):
        env.pop(var, None)

    def ember_cli(*args, timeout=120):
        return subprocess.run(
            [sys.executable, "-m", "ember.launcher.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=root,
        )

    up = ember_cli("up", path, timeout=180)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield path, root, ember_cli
    finally:
        down = ember_cli("down", path)
        if down.returncode != 0:
            _kill_processes_under(root)  # leave no Ray behind for the tests after this one
        assert down.returncode == 0 and "is down" in down.stdout, down.stdout + down.stderr


def _kill_processes_under(root: str) -> None:
    """SIGKILL every process whose command line names ``root`` (the cluster's temp dir: its
    Ray daemons and workers), for a teardown whose ``ember down`` failed."""
    import os
    import signal

    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
        except OSError:
            continue
        if root in cmdline and int(pid) != os.getpid():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


@pytest.mark.slow
def test_default_up_status_and_submit_with_a_ray_token(token_cluster):
    import json
    import os
    import sys

    path, root, ember_cli = token_cluster
    with open(os.path.join(root, "state", "d24.json")) as f:
        state = json.load(f)
    assert state["auth_env"] == {"RAY_AUTH_MODE": "token"}  # what the head runs with
    r = ember_cli("status", path)
    assert r.returncode == 0 and "1 node(s) alive" in r.stdout, r.stdout + r.stderr
    assert "Authentication" not in r.stderr
    job = os.path.join(root, "job")
    os.makedirs(job)
    with open(os.path.join(job, "job.py"), "w") as f:
        f.write("import sys\nimport ember, ray\nprint('interpreter', sys.executable)\n")
    r = ember_cli("submit", "--cluster", path, "--working-dir", job, "--", "python", "job.py")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"interpreter {sys.executable}" in r.stdout
