"""Run N real ranks of sharding_worker.py (RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys

import pytest

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sharding_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_ranks(
    script: str, world: int, args: list, timeout: float = 150, env: dict | None = None
) -> str:
    """Start ``world`` processes of ``script args...`` with torchrun's variables (and ``env``)
    set, and wait for all; return every failed rank's stderr tail ('' when all exited 0). A
    timeout kills the rest."""
    port, token = free_port(), secrets.token_hex(16)
    procs = []
    for rank in range(world):
        e = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(world),
            LOCAL_WORLD_SIZE=str(world),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            EMBER_TOKEN=token,
            OMP_NUM_THREADS="1",
            OPENBLAS_NUM_THREADS="1",
        )
        e.update(env or {})
        cmd = [sys.executable, script, *map(str, args)]
        procs.append(
            subprocess.Popen(
                cmd, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
        )
    fails = []
    for rank, p in enumerate(procs):
        try:
            _, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                if q.poll() is None:
                    q.kill()
            _, err = p.communicate()
            err += "\n[timed out]"
        if p.returncode != 0:
            name = os.path.basename(script)
            fails.append(f"--- {name} rank {rank} (exit {p.returncode}) ---\n{err[-3000:]}")
    return "\n".join(fails)


def run_ranks(world: int, scenarios: str, outdir, timeout: float = 150) -> None:
    """Run ``world`` ranks of sharding_worker.py on ``scenarios``; fail with every failed
    rank's stderr tail."""
    failures = launch_ranks(WORKER, world, [scenarios, outdir], timeout)
    if failures:
        pytest.fail(f"{scenarios} on {world} ranks failed:\n{failures}")
