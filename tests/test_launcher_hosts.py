"""Stopping exactly what was started: a host's Ray session is killed by its session id and temp
dir, and unrelated processes survive (no Ray needed: stand-in processes play its part)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import pytest

from ember.launcher.hosts import Host, HostError

# A stand-in for `ray start`: leaves two daemons behind in its session and returns, like Ray's
# GCS and raylet (one names the session dir on its command line, one does not, like a worker).
_DAEMONS = """
import subprocess, sys
tmp = sys.argv[1]
for args in (["-c", "import time; time.sleep(120)", tmp + "/session_x/sockets/raylet"],
             ["-c", "import time; time.sleep(120)"]):
    subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=False)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def temp_dir():
    with tempfile.TemporaryDirectory(prefix="eh", dir="/tmp") as d:
        yield d


def test_kill_stops_the_session_and_nothing_else(temp_dir):
    host = Host("127.0.0.1", "head", temp_dir)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        sid, r = host.start_session([sys.executable, "-c", _DAEMONS, temp_dir])
        assert r.returncode == 0, r.stderr
        assert sid > 1 and sid != os.getsid(0)
        deadline = time.time() + 10
        while len(host.processes(sid)) < 2 and time.time() < deadline:
            time.sleep(0.1)
        pids = host.processes(sid)
        assert len(pids) == 2
        assert all(os.getsid(p) == sid for p in pids)
        result = host.kill(sid, grace=2.0)
        assert sorted(result["pids"]) == sorted(pids) and result["left"] == []
        time.sleep(0.2)
        assert not any(_alive(p) for p in pids)
        assert bystander.poll() is None  # an unrelated process of ours is untouched
        assert host.processes(sid) == []
    finally:
        bystander.kill()
        bystander.wait()


def test_a_reused_session_id_is_not_touched(temp_dir):
    # a session none of whose members names the temp dir is not ours, whatever its id
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
    )
    try:
        host = Host("127.0.0.1", "head", temp_dir)
        assert host.processes(other.pid) == []
        host.kill(other.pid, grace=0)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_failing_command_names_the_host(temp_dir):
    host = Host("127.0.0.1", "worker", temp_dir)
    with pytest.raises(
        HostError,
        match=r"host 127.0.0.1 \(local\): `sh -c 'exit 3'` exited "
        r"with code 3",
    ):
        host.run(["sh", "-c", "exit 3"])
    with pytest.raises(HostError, match="cannot run 'no-such-program-xyz'"):
        host.run(["no-such-program-xyz"])


def test_commands_over_ssh_are_quoted_and_stopped_the_same_way(temp_dir, tmp_path):
    # a stand-in for ssh that runs the remote command line with a shell here, as sshd would
    fake_ssh = ["sh", "-c", 'exec sh -c "$0"']
    host = Host(
        "10.0.0.9",
        "worker",
        temp_dir,
        ssh=fake_ssh,
        python=sys.executable,
        env={"EMBER_T": "a b;c"},
    )
    r = host.run(
        [
            sys.executable,
            "-c",
            "import os, sys; print(os.environ['EMBER_T'], sys.argv[1:])",
            "x y",
            "$HOME",
        ]
    )
    assert r.stdout.strip() == "a b;c ['x y', '$HOME']"
    # the Ray token goes over stdin, never on a command line
    from ember.launcher import auth

    token_path = str(tmp_path / "dir" / "token")
    host.run(
        auth.remote_token_command({"token": {"ray_token_path": token_path}}), input="secret-token"
    )
    assert open(token_path).read() == "secret-token"
    sid, r = host.start_session([sys.executable, "-c", _DAEMONS, temp_dir])
    assert r.returncode == 0 and sid > 1, r.stderr
    deadline = time.time() + 10
    while len(host.processes(sid)) < 2 and time.time() < deadline:
        time.sleep(0.1)
    pids = host.processes(sid)
    assert len(pids) == 2
    assert host.kill(sid, grace=1.0)["left"] == []
    time.sleep(0.2)
    assert not any(_alive(p) for p in pids)
