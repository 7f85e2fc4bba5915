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


def run_ranks(world: int, scenarios: str, outdir, timeout: float = 150) -> None:
    """Start ``world`` processes of the worker (torchrun's variables set) and wait for all;
    fail with every rank's stderr tail when one of them fails or times out."""
    port, token = free_port(), secrets.token_hex(16)
    procs = []
    for rank in range(world):
        env = dict(
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
        procs.append(
            subprocess.Popen(
                [sys.executable, WORKER, scenarios, str(outdir)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs, failed = [], False
    for p in procs:
        try:
            _, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                if q.poll() is None:
                    q.kill()
            _, err = p.communicate()
            err += "\n[timed out]"
        outputs.append(err)
        failed |= p.returncode != 0
    if failed:
        tails = "\n".join(
            f"--- rank {r} (exit {p.returncode}) ---\n{err[-3000:]}"
            for r, (p, err) in enumerate(zip(procs, outputs))
        )
        pytest.fail(f"{scenarios} on {world} ranks failed:\n{tails}")
