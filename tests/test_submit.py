"""``ember submit`` / ``ember job`` through Ray Jobs, on a head that ``ember up`` starts on the
loopback address (own ports, own temp dir, Ray token auth on) and ``ember down`` stops."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest
import yaml

pytestmark = pytest.mark.slow

pytest.importorskip("ray.job_submission")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _no_process_mentions(text: str) -> bool:
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        return False
            except OSError:
                pass
    return True


@pytest.fixture(scope="module")
def cluster():
    """(config path, environment for ember commands) of a one-node cluster on 127.0.0.1."""
    root = tempfile.mkdtemp(prefix="es", dir="/tmp")  # short: Ray's socket paths live under it
    gcs, dash, client, agent, agent_grpc, metrics, renv = _free_ports(7)
    name = f"esub{os.getpid()}"
    cfg = {
        "cluster_name": name,
        "provider": {"type": "local", "head_ip": "127.0.0.1", "worker_ips": []},
        "ember": {
            "workers_per_node": 2,
            "ray_port": gcs,
            "dashboard_port": dash,
            "temp_dir": root,
            "token": {"ray_auth": "token", "ray_token_path": os.path.join(root, "token")},
            "node": {
                "num_cpus": 3,
                "object_store_memory": 100 * 1024 * 1024,
                "ray_start_args": [
                    f"--ray-client-server-port={client}",
                    f"--dashboard-agent-listen-port={agent}",
                    f"--dashboard-agent-grpc-port={agent_grpc}",
                    f"--metrics-export-port={metrics}",
                    f"--runtime-env-agent-port={renv}",
                ],
            },
        },
    }
    path = os.path.join(root, "cluster.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    env = {**os.environ, "EMBER_STATE_DIR": os.path.join(root, "state")}
    for var in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"):
        env.pop(var, None)
    up = subprocess.run(
        [sys.executable, "-m", "ember.launcher.cli", "up", path],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield path, env
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "ember.launcher.cli", "down", path],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        marker = os.path.join(root, f"{name}-127.0.0.1")
        stopped = _no_process_mentions(marker + "/session_")
        subprocess.run(["rm", "-rf", root])
        assert down.returncode == 0, down.stdout + down.stderr
        assert stopped, f"processes of {marker} survived `ember down`"


def _ember(env, *args, cwd=None, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "ember.launcher.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "data.txt").write_text("payload-42\n")
    (tmp_path / "job.py").write_text(
        textwrap.dedent("""
        import os, sys
        code = int(sys.argv[1]) if len(sys.argv) > 1 else 0
        print("job sees", open("data.txt").read().strip(), "rank", os.environ.get("RANK", "-"))
        sys.exit(code)
    """)
    )
    (tmp_path / "sleepy.py").write_text(
        "import time\nprint('sleeping', flush=True)\ntime.sleep(120)\n"
    )
    return tmp_path


def test_submit_uploads_working_dir_streams_output_and_succeeds(cluster, workdir):
    path, env = cluster
    r = _ember(
        env, "submit", "--cluster", path, "--working-dir", str(workdir), "--", "python", "job.py"
    )
    assert r.returncode == 0, r.stderr
    assert "job sees payload-42" in r.stdout
    assert "succeeded" in r.stderr


def test_exit_code_follows_a_failed_job(cluster, workdir):
    path, env = cluster
    r = _ember(
        env,
        "submit",
        "--cluster",
        path,
        "--working-dir",
        str(workdir),
        "--",
        "python",
        "job.py",
        "3",
    )
    assert r.returncode == 3, r.stderr
    assert "job sees payload-42" in r.stdout
    assert "failed" in r.stderr


def test_no_wait_then_job_logs_status_and_list(cluster, workdir):
    path, env = cluster
    r = _ember(
        env,
        "submit",
        "--cluster",
        path,
        "--working-dir",
        str(workdir),
        "--no-wait",
        "--submission-id",
        f"nowait-{os.getpid()}",
        "--",
        "python",
        "job.py",
    )
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip()
    assert job_id == f"nowait-{os.getpid()}"
    r = _ember(env, "job", "logs", "-f", job_id, "--cluster", path)
    assert r.returncode == 0 and "job sees payload-42" in r.stdout
    r = _ember(env, "job", "status", job_id, "--cluster", path)
    assert r.returncode == 0 and f"{job_id}: SUCCEEDED" in r.stdout
    assert job_id in _ember(env, "job", "list", "--cluster", path).stdout


def test_job_stop(cluster, workdir):
    path, env = cluster
    r = _ember(
        env,
        "submit",
        "--cluster",
        path,
        "--working-dir",
        str(workdir),
        "--no-wait",
        "--",
        "python",
        "sleepy.py",
    )
    job_id = r.stdout.strip()
    deadline = time.time() + 60
    while "sleeping" not in _ember(env, "job", "logs", job_id, "--cluster", path).stdout:
        assert time.time() < deadline, "the job never started"
        time.sleep(0.5)
    r = _ember(env, "job", "stop", job_id, "--cluster", path)
    assert r.returncode == 0 and f"{job_id}: STOPPED" in r.stdout, r.stderr
    r = _ember(env, "job", "logs", "-f", job_id, "--cluster", path)
    assert r.returncode == 143 and "stopped" in r.stderr


def test_clear_errors_for_unknown_jobs_and_unreachable_servers(cluster):
    path, env = cluster
    r = _ember(env, "job", "status", "no-such-job", "--cluster", path)
    assert r.returncode != 0 and "no job with id 'no-such-job'" in r.stderr
    (port,) = _free_ports(1)
    r = _ember(env, "submit", "--address", f"http://127.0.0.1:{port}", "--", "python", "x.py")
    assert r.returncode != 0 and f"cannot reach Ray Jobs at http://127.0.0.1:{port}" in r.stderr
    r = _ember(env, "submit", "--cluster", path)
    assert r.returncode != 0 and "no command given" in r.stderr


def test_ember_launch_runs_inside_a_submitted_job(cluster, workdir):
    path, env = cluster
    r = _ember(
        env,
        "submit",
        "--cluster",
        path,
        "--working-dir",
        str(workdir),
        "--",
        sys.executable,
        "-m",
        "ember.launcher.cli",
        "launch",
        "--workers",
        "2",
        "job.py",
        timeout=180,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[rank0]: job sees payload-42 rank 0" in r.stdout
    assert "[rank1]: job sees payload-42 rank 1" in r.stdout


_RAY_JOB = """
import ray
print("job line before ray", flush=True)
ray.init()  # Ray logs "Connecting to existing Ray cluster ..."; its driver relays task prints


@ray.remote(num_cpus=0)
def task():
    print("job line from a task")


ray.get(task.remote())
print("job line after ray", flush=True)
"""


@pytest.mark.parametrize("verbose", [False, pytest.param(True, marks=pytest.mark.full)])
def test_ray_lines_of_a_job_go_to_the_log_and_show_only_with_verbose(
    cluster, workdir, tmp_path, verbose
):
    path, env = cluster
    (workdir / "ray_job.py").write_text(_RAY_JOB)
    logs = tmp_path / "logs"
    flags = ["--verbose"] if verbose else []
    argv = ["--cluster", path, "--log-dir", str(logs), *flags]
    r = _ember(env, "submit", *argv, "--working-dir", str(workdir), "--", "python", "ray_job.py")
    assert r.returncode == 0, r.stdout + r.stderr
    for line in ("job line before ray", "job line from a task", "job line after ray"):
        assert line in r.stdout
    # Ray's lines: the job's ray.init (in the job's log) and Ray's logger in `ember submit`
    ray_lines = (" -- Connecting to existing Ray cluster", " -- Uploading package")
    for ray_line in ray_lines:
        assert (ray_line in r.stdout + r.stderr) == verbose, r.stdout + r.stderr
    logged = (logs / "ray.log").read_text()
    assert all(ray_line in logged for ray_line in ray_lines), logged
    assert "job line" not in logged
    job_id = r.stderr.split("(ember submit) job ", 1)[1].split()[0]
    r = _ember(env, "job", "logs", job_id, *argv)
    assert r.returncode == 0 and "job line from a task" in r.stdout
    assert (ray_lines[0] in r.stdout) == verbose, r.stdout


def test_status_shows_nodes_resources_and_jobs(cluster):
    path, env = cluster
    r = _ember(env, "status", path)
    assert r.returncode == 0, r.stderr
    assert "1 node(s) alive" in r.stdout and "127.0.0.1" in r.stdout
    assert "jobs at http://127.0.0.1:" in r.stdout
    assert "SUCCEEDED" in r.stdout


def test_launch_with_an_embedded_config_starts_a_private_ray(cluster, workdir):
    _, env = cluster  # its state dir knows nothing of the `local` cluster: not up
    local = os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cluster_configs", "local.yaml"
    )
    r = _ember(env, "launch", "--cluster", local, "job.py", cwd=workdir, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    # workers_per_node: 2 from local.yaml
    assert "[rank0]: job sees payload-42 rank 0" in r.stdout
    assert "[rank1]: job sees payload-42 rank 1" in r.stdout
