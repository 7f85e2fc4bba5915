"""Issue #28 item 5 and item 2 (parts): root and group identity are checked at the call;
refusals are logged with a rate limit; a single-host job binds loopback (real processes)."""

from __future__ import annotations

import pytest
from dist_harness import run_ranks

SLOW_TIMEOUT = 60  # collective timeout: a pass proves detection, not the timeout


def _init(backend):
    import ember.distributed as dist

    dist.init_process_group(backend, timeout=SLOW_TIMEOUT)
    return dist


def _timed(call):
    """Run the mismatched ``call``; return ("raised", message, seconds) or ("returned", ...)
    (timed here: process start-up on a loaded machine must not count)."""
    import time

    from ember.distributed import DistributedError

    t0 = time.monotonic()
    try:
        call()
    except DistributedError as e:
        return "raised", str(e), time.monotonic() - t0
    return "returned", None, time.monotonic() - t0


def _all_raise(res, ranks, *needles, within=15.0):
    for r in ranks:
        out = res[r]
        assert out is not None and out.ok, f"rank {r}: {out}"
        status, msg, secs = out.value
        assert status == "raised", f"rank {r} returned from the mismatched call"
        assert "collective mismatch" in msg, msg
        for n in needles:
            assert n in msg, (n, msg)
        assert secs < within, (r, secs, msg)  # far below the 60 s collective timeout


# ---- item 5: src/dst in the fingerprint, checked at the call ------------------------------------
def scenario_broadcast_src_per_rank(rank, backend, numel):
    import ember

    dist = _init(backend)
    t = ember.full((numel,), float(rank))
    # the last call: no later call may be the one to notice
    return _timed(lambda: dist.broadcast(t, src=rank))


@pytest.mark.parametrize(
    "backend,numel",
    [
        ("shm", 4),
        pytest.param("grpc", 4, marks=pytest.mark.full),
        pytest.param("shm", 1 << 18, marks=pytest.mark.full),  # the pipelined chain path
    ],
)
def test_broadcast_with_different_src_raises_on_every_rank_at_that_call(backend, numel):
    res = run_ranks(scenario_broadcast_src_per_rank, 2, backend, numel, timeout=40)
    _all_raise(res, range(2), "src=0", "src=1", "broadcast")


def scenario_rooted_root_per_rank(rank, backend, op):
    import ember

    dist = _init(backend)
    t = ember.full((4,), float(rank))
    other = 1 - rank  # each rank takes the other for the root: both only send
    if op == "gather":
        return _timed(lambda: dist.gather(t, None, dst=other))  # not the root: no list
    if op == "reduce":
        return _timed(lambda: dist.reduce(t, dst=other))
    return _timed(lambda: dist.scatter(t, [ember.ones(4)] * 2, src=rank))  # each its own root


@pytest.mark.full
@pytest.mark.parametrize(
    "op,needles",
    [
        ("gather", ("dst=0", "dst=1")),
        ("reduce", ("dst=0", "dst=1")),
        ("scatter", ("src=0", "src=1")),
    ],
)
def test_rooted_collectives_with_different_roots_raise_at_that_call(op, needles):
    res = run_ranks(scenario_rooted_root_per_rank, 2, "shm", op, timeout=40)
    _all_raise(res, range(2), op, *needles)


def scenario_other_group_same_members(rank, backend):
    import ember

    dist = _init(backend)
    g1 = dist.new_group([0, 1])
    g2 = dist.new_group([0, 1])
    return _timed(lambda: dist.all_reduce(ember.ones(4), group=g1 if rank == 0 else g2))


@pytest.mark.parametrize("backend", ["shm", pytest.param("grpc", marks=pytest.mark.full)])
def test_collective_on_another_group_with_same_members_raises_promptly(backend):
    res = run_ranks(scenario_other_group_same_members, 2, backend, timeout=40)
    _all_raise(res, range(2), "group 1", "group 2")


# ---- item 2: refusals logged with a rate limit ---------------------------------------------------
class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_refusal_log_shows_the_first_then_a_periodic_count(caplog):
    from ember.distributed._runtime._auth import RefusalLog

    clock = _Clock()
    log = RefusalLog(first=10, every=60.0, clock=clock)
    with caplog.at_level("WARNING", logger="ember.distributed"):
        shown = 0
        for i in range(4000):  # 4,000 refusals over 130 s
            clock.now = 1000.0 + i * 130.0 / 4000
            shown += log("ember store refused a call", "ipv4:127.0.0.1:5", "wrong x-ember-token")
    lines = [r.getMessage() for r in caplog.records]
    assert shown == len(lines) == 12, lines  # 10 in full, then one count per minute
    assert "later ones are counted" in lines[9]
    counted = [int(line.split()[0]) for line in lines[10:]]
    assert all("more refused" in line for line in lines[10:]), lines[10:]
    assert log.total == 4000 and 10 + sum(counted) <= 4000 and sum(counted) > 3500, counted
    with pytest.raises(ValueError, match="every > 0"):
        RefusalLog(every=0)


def test_store_flood_of_bad_tokens_logs_a_bounded_number_of_lines(monkeypatch, caplog):
    grpc = pytest.importorskip("grpc")
    from ember.distributed._runtime import _auth
    from ember.distributed.store import TCPStore
    from ember.protos import store_pb2, store_pb2_grpc

    monkeypatch.setattr(_auth, "log_refusal", _auth.RefusalLog(first=5, every=3600.0))
    # the patched limits apply in this process: serve the store here, not in the helper
    # process (whose own RefusalLog logs the same way, tests/distributed/test_store.py)
    monkeypatch.setenv("EMBER_STORE_PROCESS", "0")
    master = TCPStore("127.0.0.1", 0, is_master=True, token="good-token")
    channel = grpc.insecure_channel(master.address)
    stub = store_pb2_grpc.StoreStub(channel)
    refused = 0
    try:
        with caplog.at_level("WARNING", logger="ember.distributed"):
            for i in range(300):
                md = _auth.metadata("bad-token") if i % 2 else ()
                try:
                    stub.Set(store_pb2.SetRequest(key="k", value=b"v"), metadata=md, timeout=5)
                except grpc.RpcError as e:
                    refused += e.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        channel.close()
        master.close()
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refused == 300
    assert len(lines) == 5, lines  # not 300
    assert "missing x-ember-token" in lines[0] and "wrong x-ember-token" in lines[1], lines


# ---- item 2: a single-host job binds loopback ----------------------------------------------------
def scenario_endpoints(rank, backend):
    from ember.distributed._runtime import _state

    dist = _init(backend)
    w = _state.world
    dist.barrier()
    return {
        "store": w.master_host,
        "peer": w.peer_server.address,
        "data": [list(t.address) for t in w._owned if hasattr(t, "address")],
    }


def test_single_host_job_binds_loopback_not_the_routable_address():
    from ember.distributed._runtime import _auth

    routable = _auth.local_address_towards("192.0.2.200")
    if routable.startswith("127."):
        pytest.skip("this machine has no routable address")
    res = run_ranks(scenario_endpoints, 2, "grpc", env={"MASTER_ADDR": routable}, timeout=60)
    for r in range(2):
        assert res[r] is not None and res[r].ok, res[r]
        where = res[r].value
        assert where["store"] == "127.0.0.1", where
        assert where["peer"].startswith("127.0.0.1:"), where
        assert where["data"] and all(a[0] == "127.0.0.1" for a in where["data"]), where


@pytest.mark.parametrize("local,expect", [("2", "loopback"), ("1", "routable")])
def test_bind_host_keeps_the_routable_address_unless_single_host(monkeypatch, local, expect):
    from ember.distributed._runtime import _auth

    routable = _auth.local_address_towards("192.0.2.200")
    if routable.startswith("127."):
        pytest.skip("this machine has no routable address")
    monkeypatch.delenv("EMBER_BIND_ADDR", raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", local)
    want = "127.0.0.1" if expect == "loopback" else routable
    assert _auth.bind_host(routable, 2) == want
    assert _auth.bind_host("198.51.100.7", 2) == "198.51.100.7"  # not ours: never rewritten
    monkeypatch.setenv("EMBER_BIND_ADDR", routable)  # the user's choice wins
    assert _auth.bind_host(routable, 2) == routable


def test_docs_refusal_snippet_runs():
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "failure_modes.md")
    section = open(path).read().split("## Refused connections", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "docs/failure_modes.md", "exec"), {})
