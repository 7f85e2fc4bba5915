"""The master store served by a helper process (issue #28): a flood of bad-token calls costs
the rank's own process nothing, and a killed rank leaves no store behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ember.distributed._runtime import _store_proc
from ember.distributed.store import TCPStore

FLOOD = textwrap.dedent(
    """
    import sys, grpc
    from ember.distributed._runtime import _auth
    from ember.protos import store_pb2, store_pb2_grpc
    stub = store_pb2_grpc.StoreStub(grpc.insecure_channel(sys.argv[1]))
    for _ in range(int(sys.argv[2])):
        try:
            stub.Set(store_pb2.SetRequest(key="k", value=b"v"),
                     metadata=_auth.metadata("bad"), timeout=5)
        except grpc.RpcError:
            pass
    """
)


def _flood_cpu(monkeypatch, own_process: bool, calls: int = 400) -> float:
    """This process's CPU seconds while another process sends ``calls`` bad-token calls."""
    monkeypatch.setenv("EMBER_STORE_PROCESS", "1" if own_process else "0")
    master = TCPStore("127.0.0.1", 0, is_master=True, token="good")
    try:
        assert isinstance(master._server, _store_proc.StoreHandle) is own_process
        t0 = time.process_time()
        subprocess.run([sys.executable, "-c", FLOOD, master.address, str(calls)], check=True)
        return time.process_time() - t0
    finally:
        master.close()


def test_a_bad_token_flood_costs_the_rank_nothing(monkeypatch):
    helper = _flood_cpu(monkeypatch, True)
    in_process = _flood_cpu(monkeypatch, False)
    # in process, each refused call runs Python on the rank's GIL; in the helper, none does
    assert helper < in_process / 3, (helper, in_process)


def test_the_store_survives_init_destroy_cycles_in_one_helper(monkeypatch):
    monkeypatch.setenv("EMBER_STORE_PROCESS", "1")
    pids = set()
    for i in range(3):
        m = TCPStore("127.0.0.1", 0, is_master=True, token="t")
        c = TCPStore("127.0.0.1", m.port, token="t")
        c.set("x", str(i).encode())
        assert m.get("x") == str(i).encode()
        pids.add(m._server.helper.proc.pid)
        c.close()
        m.close()
    assert len(pids) == 1 and os.getpid() not in pids


def test_a_killed_rank_leaves_no_store_behind():
    code = textwrap.dedent(
        """
        import os, sys, time
        os.environ["EMBER_STORE_PROCESS"] = "1"
        from ember.distributed.store import TCPStore
        m = TCPStore("127.0.0.1", 0, is_master=True, token="t")
        print(m._server.helper.proc.pid, flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    helper = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(helper, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail(f"the store helper {helper} outlived its SIGKILLed rank")
