"""Fixtures of the sharding tests (the helpers live in sharding_procs.py)."""

from __future__ import annotations

import os
import secrets

import pytest
from sharding_procs import free_port, run_ranks


@pytest.fixture(scope="session")
def ckpt_dir(tmp_path_factory):
    """Checkpoints saved (sharded and full) by an FSDP run on 2 ranks, with its results."""
    out = tmp_path_factory.mktemp("sharding_ckpt")
    run_ranks(2, "ckpt_save", out)
    return out


_RUNS: dict = {}


@pytest.fixture(scope="session")
def sharding_run(tmp_path_factory):
    """``sharding_run(world)``: the output folder of the parity (+ memory on 2 ranks) run on
    ``world`` ranks, run once per session."""

    def get(world: int):
        if world not in _RUNS:
            out = tmp_path_factory.mktemp(f"parity{world}")
            run_ranks(world, "parity,memory" if world == 2 else "parity", out)
            _RUNS[world] = out
        return _RUNS[world]

    return get


@pytest.fixture(scope="module")
def pg1():
    """A one-rank process group in the test process (for in-process checks)."""
    import ember.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group is already initialized in this process")
    os.environ.setdefault("EMBER_TOKEN", secrets.token_hex(16))
    dist.init_process_group(init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()
