"""Fixtures for the distributed tests: process pools shared across a session."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from dist_harness import Pool  # noqa: E402

_POOLS: dict = {}


def _get_pool(world_size: int, backend: str, hosts: tuple | None = None, env: tuple = ()) -> Pool:
    key = (world_size, backend, hosts, env)
    pool = _POOLS.get(key)
    if pool is not None and pool.broken:
        pool.close()
        pool = None
    if pool is None:

        def rank_env(r):
            return {**dict(env), **({"EMBER_HOST_ID": hosts[r]} if hosts else {})}

        pool = _POOLS[key] = Pool(world_size, backend, env=rank_env)
    return pool


@pytest.fixture(scope="session")
def pools():
    """``pools(world_size, backend, hosts=None, env=())`` -> a live ``Pool`` (reused while
    healthy).

    ``hosts`` fakes a host identity per rank (``EMBER_HOST_ID``) to exercise cross-host paths
    on one machine; ``env`` adds environment variables, as a tuple of (name, value) pairs.
    """
    yield _get_pool
    for pool in _POOLS.values():
        pool.close()
    _POOLS.clear()


@pytest.fixture
def rpc_solo(monkeypatch):
    """RPC with one worker named "solo", in this process (calls to itself go through the same
    wire); shut down after the test."""
    from dist_harness import free_port

    import ember.distributed.rpc as rpc

    monkeypatch.setenv("EMBER_TOKEN", "solo-test")
    opts = rpc.TensorPipeRpcBackendOptions(init_method=f"tcp://127.0.0.1:{free_port()}")
    rpc.init_rpc("solo", rank=0, world_size=1, rpc_backend_options=opts)
    yield
    rpc.shutdown()
