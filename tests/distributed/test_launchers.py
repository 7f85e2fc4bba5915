"""``init_process_group()`` under real launchers: torchrun (the real one, from the parity
extra), ``python -m torch.distributed.run``, and SLURM's and MPI launchers' environments
(simulated with plain processes). The script is the one in docs/distributed.md."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import uuid

import pytest

from ember.distributed._runtime import _launch_env
from ember.distributed._runtime._torch_store import TorchStoreClient
from ember.distributed.errors import DistStoreError

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "distributed.md"
# Variables a launcher sets: the children must see only the ones a test gives them.
_LAUNCH_PREFIXES = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "NODE_RANK",
    "GROUP_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "EMBER_TOKEN",
    "TORCHELASTIC",
    "SLURM_",
    "OMPI_",
    "PMI_",
    "PMIX_",
    "MPI_LOCAL",
)
# What the doc's script prints on each rank: the gradient is the mean of 3 * (rank + 1).
_EXPECTED = "backend=gloo grad=4.50 in_sync=True"


def _doc_script(tmp_path) -> pathlib.Path:
    text = DOC.read_text().split("## Launchers", 1)[1]
    block = re.search(r"```python\n(.*?)```", text, flags=re.S).group(1)
    # Also show what the launcher's environment became (LOCAL_RANK is set for the script).
    # One write per line: with unbuffered output (PYTHONUNBUFFERED) print's separate writes of
    # its arguments interleave between the two ranks.
    block += "import os, sys\nsys.stdout.write(f\"LOCAL_RANK {os.environ.get('LOCAL_RANK')}\\n\")\n"
    path = tmp_path / "train.py"
    path.write_text(block)
    return path


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LAUNCH_PREFIXES)}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_ranks(out: str, world: int = 2) -> None:
    for r in range(world):
        assert f"rank {r}/{world} {_EXPECTED}" in out, out
        assert f"LOCAL_RANK {r}" in out, out


# ---- torchrun -----------------------------------------------------------------------------------
def test_ddp_script_runs_under_torchrun(tmp_path):
    pytest.importorskip("torch")
    exe = shutil.which("torchrun")
    if exe is None:
        pytest.skip("torchrun is not on PATH")
    cmd = [exe]
    script = _doc_script(tmp_path)
    # torchrun's agent store takes MASTER_PORT; ember must stand beside it, not fight for it.
    r = subprocess.run(
        cmd + ["--nproc-per-node", "2", "--master-port", str(_free_port()), str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env=_clean_env(),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    _check_ranks(r.stdout)
    # No EMBER_TOKEN was given: rank 0 made one and handed it over through torchrun's store.
    assert "EMBER_TOKEN is not set" not in r.stderr, r.stderr


def test_torch_distributed_run_elastic_restart_and_reinit(tmp_path):
    """``python -m torch.distributed.run``: after a failed attempt the agent restarts the
    workers on the same agent store; the new attempt (and a second init in one process) must
    rendezvous afresh."""
    pytest.importorskip("torch")
    script = tmp_path / "elastic.py"
    script.write_text(
        "import os, sys, ember, ember.distributed as dist\n"
        "attempt = int(os.environ['TORCHELASTIC_RESTART_COUNT'])\n"
        "for generation in range(2):\n"
        "    dist.init_process_group('gloo')\n"
        "    t = ember.ones(2) * (dist.get_rank() + 1)\n"
        "    dist.all_reduce(t)\n"
        "    print(f'attempt {attempt} gen {generation} rank {dist.get_rank()} '\n"
        "          f'sum {t.tolist()}', flush=True)\n"
        "    dist.destroy_process_group()\n"
        "    if attempt == 0:\n"
        "        sys.exit(3)\n"
    )
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--max-restarts",
            "1",
            "--master-port",
            str(_free_port()),
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=_clean_env(),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    for rank in range(2):
        assert f"attempt 0 gen 0 rank {rank} sum [3.0, 3.0]" in r.stdout, r.stdout
        for gen in range(2):
            assert f"attempt 1 gen {gen} rank {rank} sum [3.0, 3.0]" in r.stdout, r.stdout


# ---- SLURM and MPI environments (plain processes) ------------------------------------------------
def _job_with_free_port() -> str:
    for _ in range(50):
        job = str(uuid.uuid4().int % 10**7)
        port = _launch_env.derived_port(f"slurm-{job}.0")
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))
            return job
        except OSError:
            continue
    raise RuntimeError("no free derived port")


def _slurm(rank: int) -> dict:
    return {
        "SLURM_PROCID": rank,
        "SLURM_NTASKS": 2,
        "SLURM_LOCALID": rank,
        "SLURM_NODEID": 0,
        "SLURM_NNODES": 1,
        "SLURM_TASKS_PER_NODE": 2,
        "SLURM_STEP_ID": 0,
        "SLURM_LAUNCH_NODE_IPADDR": "127.0.0.1",
    }


def _ompi(rank: int) -> dict:
    return {
        "OMPI_COMM_WORLD_RANK": rank,
        "OMPI_COMM_WORLD_SIZE": 2,
        "OMPI_COMM_WORLD_LOCAL_RANK": rank,
        "OMPI_COMM_WORLD_LOCAL_SIZE": 2,
    }


def _pmi(rank: int) -> dict:
    return {"PMI_RANK": rank, "PMI_SIZE": 2, "MPI_LOCALRANKID": rank, "MASTER_ADDR": "127.0.0.1"}


# MPICH's PMI_* variables take the same path as Open MPI's (test_detect_precedence_and_fields).
@pytest.mark.parametrize("launcher", ["slurm", "ompi"])
def test_ddp_script_runs_under_slurm_and_mpi_env(tmp_path, launcher):
    script = _doc_script(tmp_path)
    if launcher == "slurm":  # no MASTER_PORT: every rank derives it from the job id
        common = {"SLURM_JOB_ID": _job_with_free_port()}
    else:
        common = {"MASTER_PORT": _free_port()}
    make = {"slurm": _slurm, "ompi": _ompi}[launcher]
    procs = [
        subprocess.Popen(
            [sys.executable, str(script)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_clean_env(EMBER_TOKEN="t", **common, **make(r)),
        )
        for r in range(2)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, out + err
        outs.append(out)
    _check_ranks("".join(outs))


# ---- environment detection (no processes) --------------------------------------------------------
def test_detect_precedence_and_fields():
    env = {
        "RANK": "1",
        "WORLD_SIZE": "4",
        "MASTER_ADDR": "h",
        "MASTER_PORT": "5",
        "LOCAL_RANK": "1",
        "GROUP_RANK": "0",
        "SLURM_PROCID": "3",
        "SLURM_NTASKS": "8",
    }
    got = _launch_env.detect(env)
    assert (got.launcher, got.rank, got.world_size, got.local_rank, got.node_rank) == (
        "env",
        1,
        4,
        1,
        0,
    )
    got = _launch_env.detect({**env, "TORCHELASTIC_RUN_ID": "x"})
    assert got.launcher == "torchrun"
    slurm = {k: str(v) for k, v in _slurm(1).items()}
    slurm.update(
        SLURM_NNODES="2",
        SLURM_NODEID="1",
        SLURM_JOB_ID="77",
        SLURM_TASKS_PER_NODE="2(x2)",
        SLURM_NTASKS="4",
    )
    got = _launch_env.detect(slurm)
    assert (
        got.launcher,
        got.rank,
        got.world_size,
        got.local_rank,
        got.local_world_size,
        got.node_rank,
        got.master_addr,
    ) == ("slurm", 1, 4, 1, None, 1, "127.0.0.1")
    assert got.master_port == _launch_env.derived_port("slurm-77.0")
    assert 20000 <= got.master_port < 40000
    assert got.torchrun_variables()["NODE_RANK"] == "1"
    got = _launch_env.detect({**slurm, "MASTER_ADDR": "m", "MASTER_PORT": "1234"})
    assert (got.master_addr, got.master_port) == ("m", 1234)
    # Open MPI before PMI; a multi-node MPI job without MASTER_ADDR has no master address.
    mpi = {k: str(v) for k, v in {**_ompi(1), **_pmi(0)}.items()}
    mpi.update(OMPI_COMM_WORLD_SIZE="4", OMPI_MCA_ess_base_jobid="9")
    mpi.pop("MASTER_ADDR")
    got = _launch_env.detect(mpi)
    assert (got.launcher, got.rank, got.world_size, got.master_addr) == ("mpi", 1, 4, None)
    assert got.master_port == _launch_env.derived_port("mpi-9")
    assert _launch_env.detect({"PATH": "/bin"}) is None


@pytest.mark.parametrize(
    "env, message",
    [
        ({"SLURM_PROCID": "0"}, "SLURM_NTASKS is not"),
        (
            {"OMPI_COMM_WORLD_RANK": "x", "OMPI_COMM_WORLD_SIZE": "2"},
            "OMPI_COMM_WORLD_RANK must be an integer",
        ),
        ({"PMI_RANK": "0"}, "PMI_SIZE is not"),
    ],
)
def test_detect_bad_environment(env, message):
    with pytest.raises(ValueError, match=message):
        _launch_env.detect(env)


@pytest.mark.parametrize(
    "env, message",
    [
        (
            {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2", "MASTER_PORT": "1"},
            "under mpi: set MASTER_ADDR",
        ),
        ({"PMI_RANK": "0", "PMI_SIZE": "1", "MPI_LOCALNRANKS": "1"}, "under mpi: set MASTER_PORT"),
        ({}, "RANK expected"),
    ],
)
def test_init_process_group_names_what_is_missing(monkeypatch, env, message):
    import ember.distributed as dist

    for k in list(os.environ):
        if k.startswith(_LAUNCH_PREFIXES):
            monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValueError, match=message):
        dist.init_process_group("gloo")
    assert not dist.is_initialized()


# ---- get_backend / Backend -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gloo", "GLOO", "auto", "shm", None])
def test_get_backend_returns_the_name_given(name):
    import ember.distributed as dist

    dist.init_process_group(name, init_method="tcp://127.0.0.1:0?rank=0&world_size=1")
    try:
        expected = "undefined" if name is None else name.lower()  # torch's, as checked
        assert dist.get_backend() == expected
        assert dist.get_backend(dist.new_group([0])) == expected
        assert dist.get_backend(dist.new_group([0], backend="shm")) == "shm"
    finally:
        dist.destroy_process_group()


def test_backend_class_matches_torch():
    torch = pytest.importorskip("torch")
    import ember.distributed as dist

    for name in ("gloo", "GLOO", "nccl"):
        assert dist.Backend(name) == torch.distributed.Backend(name)
    with pytest.raises(ValueError, match="Invalid backend"):
        dist.Backend("bogus")


# ---- the TCPStore protocol client ----------------------------------------------------------------
@pytest.mark.parametrize("use_libuv", [True, False])
def test_torch_store_client_against_torch_tcpstore(use_libuv):
    torch = pytest.importorskip("torch")
    server = torch.distributed.TCPStore(
        "127.0.0.1", 0, is_master=True, wait_for_workers=False, use_libuv=use_libuv
    )
    with TorchStoreClient("127.0.0.1", server.port, timeout=0.3) as c:
        c.set("k", "v1")
        assert server.get("k") == b"v1"  # one key space with torch's own clients
        server.set("b", b"\x00\xff")
        assert c.get("b") == b"\x00\xff"
        assert c.add("n", 3) == 3 and server.add("n", 2) == 5 and c.add("n", 0) == 5
        assert c.check(["k", "b"]) and not c.check(["k", "nope"])
        with pytest.raises(DistStoreError, match="did not answer within 0.3 s"):
            c.get("never-set")


def test_torch_store_client_refuses_other_services():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        # A listener that never answers (not a TCPStore): the ping times out.
        with pytest.raises(DistStoreError, match="does not speak PyTorch's TCPStore"):
            TorchStoreClient("127.0.0.1", port, timeout=0.5)
