"""Reconnect and resend over the socket data plane (``_link.py``, issue #28).

Two ranks on one machine use the socket data plane (backend ``grpc``); while they run a chain of
``all_reduce`` calls, one rank breaks its data connection again and again under the transport
(as a middlebox RST or a conntrack flush would). The ranks redial, resend what the other has not
read, and end with a result bitwise equal to the same chain computed without faults. (A peer
whose process is gone still fails the job at once, naming it: tests/distributed/test_failures.py,
``test_dead_peer_is_noticed``.)
"""

from __future__ import annotations

import os
import socket
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "distributed"))
from dist_harness import run_ranks  # noqa: E402

STEPS = 16
NUMEL = 1 << 18  # 1 MiB of float32 per call


def _data(rank: int) -> np.ndarray:
    return np.random.default_rng(rank).standard_normal(NUMEL).astype(np.float32)


def expected() -> np.ndarray:
    """The chain without a network: a two-rank sum is the same in either order."""
    a, b = _data(0), _data(1)
    for _ in range(STEPS):
        a = (a + b) * np.float32(0.5)
        b = a.copy()
    return a


def scenario_resets(rank: int, every_s: float):
    import threading

    import ember
    import ember.distributed as dist
    from ember.distributed._runtime import _state

    dist.init_process_group("grpc", timeout=60)
    tp = _state.world.transports[1 - rank]
    stop = threading.Event()

    fired = threading.Event()

    def breaker():  # rank 1 breaks the connection under the transport, over and over
        while True:
            link = tp._links[1 - rank]
            try:
                link.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            fired.set()
            if stop.wait(every_s):
                return

    t = ember.from_numpy(_data(rank))
    thread = threading.Thread(target=breaker, daemon=True)
    if rank == 1 and every_s > 0:
        # The first break lands before the chain starts, so at least one reset happens even
        # when the 16 calls would outrun the breaker's period (a quiet machine, or a loaded one
        # where the thread is not scheduled in time); the later ones land mid-collective.
        thread.start()
        fired.wait()
    for _ in range(STEPS):
        dist.all_reduce(t)
        t.mul_(0.5)
    stop.set()
    dist.barrier()
    resets = tp.resets
    dist.destroy_process_group()
    return t.numpy().tobytes(), resets


# 384 KiB pieces: the 512 KiB halves of the ring travel as one frame sent from the tensor itself
# (acknowledged before send returns) and one 128 KiB frame sent from a copy; 64 KiB pieces: every
# frame from a copy, many frames in flight
@pytest.mark.parametrize("piece", [384 << 10, pytest.param(64 << 10, marks=pytest.mark.full)])
def test_reset_mid_collective_is_bitwise_equal_to_no_fault(piece):
    env = {"EMBER_PIECE_BYTES": str(piece), "EMBER_RESEND_BUFFER_BYTES": str(1 << 20)}
    res = run_ranks(scenario_resets, 2, 0.05, env=env, timeout=90)
    want = expected().tobytes()
    for rank in (0, 1):
        assert res[rank].error is None, res[rank].error
        got, resets = res[rank].value
        assert got == want
        assert resets >= 1  # the connection really was replaced
