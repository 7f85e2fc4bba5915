"""``ember doctor`` and ``python -m ember.utils.collect_env``: both entry points as a user runs
them (subprocesses), the report's fields against the machine, and each check's problem + fix."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
from importlib import metadata

import numpy as np
import pytest

from ember.utils import _env_checks, collect_env

COLLECT = [sys.executable, "-m", "ember.utils.collect_env"]
DOCTOR = [sys.executable, "-m", "ember.launcher.cli", "doctor"]


def _run(cmd, env=None, timeout=60):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_collect_env_json_report():
    # a mode Ray does not know, and a secret that must never be printed
    r = _run(COLLECT + ["--json"], env={"RAY_AUTH_MODE": "bogus", "EMBER_TOKEN": "s3cret"})
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["packages"]["numpy"] == np.__version__
    assert info["packages"]["ray"] == metadata.version("ray")
    assert info["system"]["python"] == sys.version.split()[0]
    assert info["system"]["cpus"] == os.cpu_count()
    st = os.statvfs("/dev/shm")
    assert info["shm"]["size_bytes"] == st.f_frsize * st.f_blocks
    assert [info["open_files"]["soft"], info["open_files"]["hard"]] == list(
        resource.getrlimit(resource.RLIMIT_NOFILE)
    )
    assert set(info["ports"]) == {str(p) for p in collect_env.DEFAULT_PORTS}
    assert {"cupy_usable", "runtime", "driver", "nccl", "gpus"} <= set(info["cuda"])
    assert {"local_cluster_up", "gcs_processes"} <= set(info["ray"])
    assert info["ray"]["auth_mode"] == "bogus"
    bad = [p for p in info["problems"] if p["check"] == "ray auth"]
    assert bad and "bogus" in bad[0]["problem"] and "RAY_AUTH_MODE=token" in bad[0]["fix"]
    assert info["env"]["EMBER_TOKEN"] == "set" and "s3cret" not in r.stdout
    for p in info["problems"]:
        assert set(p) == {"check", "problem", "fix"} and p["fix"]
    # the text form (what `python -m ember.utils.collect_env` prints) of the same report
    text = collect_env.format_env_info(info)
    assert f"numpy:             {np.__version__}" in text
    for field in (
        "grpcio:",
        "CUDA",
        "GPUs:",
        "Ray auth mode:     bogus",
        "Local Ray cluster:",
        "Default ports:",
        "/dev/shm:",
        "Open-file limit:",
        "Network ns:",
        "fix: export RAY_AUTH_MODE=token",
    ):
        assert field in text, field


def test_doctor_text_strict_and_address():
    port = _closed_port()
    r = _run(DOCTOR + ["--strict", "--address", f"127.0.0.1:{port}"])
    out = r.stdout
    assert out.startswith("ember doctor\n") and "Commands:          ray: " in out
    assert f"numpy:             {np.__version__}" in out
    assert f"Ray head 127.0.0.1:{port}: NO ANSWER" in out
    assert f"[address] nothing answers at 127.0.0.1:{port}" in out
    assert r.returncode == 1  # --strict: a problem was found
    assert "Traceback" not in r.stderr


def test_doctor_bad_address_is_one_line():
    r = _run(DOCTOR + ["--address", "nohostport"])
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        "ember doctor: error: argument --address: expected HOST:PORT, got 'nohostport'"
    )


def test_doctor_collect_json_fields():
    from ember.launcher.doctor import collect

    info = json.loads(json.dumps(collect(f"127.0.0.1:{_closed_port()}")))
    assert set(info["commands"]) == {"ray", "ember"}
    assert info["address_check"]["reachable"] is False


def test_token_mode_without_token(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    problems = []
    info = collect_env._ray(problems)
    assert info["auth_mode"] == "token" and not info["token_file"]
    assert any("ray get-auth-token --generate" in p["fix"] for p in problems)


@pytest.mark.parametrize("perm,flagged", [(0o600, False), (0o644, True)])
def test_token_file_permissions(tmp_path, monkeypatch, perm, flagged):
    tok = tmp_path / "auth_token"
    tok.write_text("abc")
    tok.chmod(perm)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tok))
    problems = []
    collect_env._ray(problems)
    assert any(p["fix"] == f"chmod 600 {tok}" for p in problems) == flagged


def test_port_in_use_is_reported(monkeypatch):
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        # the check reads the ports from its own module (core/utils/_env_checks.py)
        monkeypatch.setattr(_env_checks, "DEFAULT_PORTS", {port: "test server"})
        problems = []
        ports = collect_env._ports(problems, ray_up=False)
    assert ports[str(port)]["free"] is False
    assert len(problems) == 1 and f"port {port}" in problems[0]["problem"]
    assert collect_env._port_free(port)  # closed again: free


def test_small_shm_and_low_nofile(monkeypatch):
    class _St:
        f_frsize, f_blocks, f_bavail = 4096, 16384, 16384  # 64 MiB: docker's default

    monkeypatch.setattr(_env_checks.os, "statvfs", lambda path: _St())
    problems = []
    info = collect_env._shm(problems)
    assert info["size_bytes"] == 64 << 20
    assert "--shm-size" in problems[0]["fix"]
    monkeypatch.setattr(_env_checks.resource, "getrlimit", lambda which: (1024, 1 << 20))
    problems = []
    assert collect_env._open_files(problems) == {"soft": 1024, "hard": 1 << 20}
    assert problems[0]["fix"] == "ulimit -n 65536"


def test_cuda_report_from_cupy(monkeypatch):
    # no GPU here: a stand-in with CuPy's runtime API shows what the report makes of it
    import types

    from ember.backend import _cupy

    rt = types.SimpleNamespace(
        runtimeGetVersion=lambda: 12080,
        driverGetVersion=lambda: 12090,
        getDeviceCount=lambda: 2,
        getDeviceProperties=lambda i: {"name": b"NVIDIA H100", "totalGlobalMem": 80 << 30},
    )
    nccl = types.SimpleNamespace(get_version=lambda: 22703)
    cuda = types.ModuleType("cupy.cuda")
    cuda.runtime, cuda.nccl = rt, nccl
    cupy = types.ModuleType("cupy")
    cupy.cuda = cuda
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "cupy.cuda", cuda)
    monkeypatch.setattr(_cupy, "cupy", cupy)
    problems = []
    info = collect_env._cuda(problems)
    assert info["cupy_usable"] and problems == []
    assert (info["runtime"], info["driver"], info["nccl"]) == ("12.8", "12.9", "2.27.3")
    assert info["gpus"] == [
        {"index": i, "name": "NVIDIA H100", "memory_bytes": 80 << 30} for i in range(2)
    ]
    text = collect_env.format_env_info({**collect_env.get_env_info(), "cuda": info})
    assert "CUDA runtime:      12.8 (driver 12.9)" in text and "NCCL:              2.27.3" in text
    assert "GPUs:              0: NVIDIA H100 (80.0 GiB), 1: NVIDIA H100 (80.0 GiB)" in text

    def broken():
        raise RuntimeError("cudaErrorInsufficientDriver")

    rt.driverGetVersion = broken
    problems = []
    info = collect_env._cuda(problems)
    assert not info["cupy_usable"] and "cudaErrorInsufficientDriver" in info["error"]
    assert problems[0]["check"] == "cuda" and "nvidia-smi" in problems[0]["fix"]
