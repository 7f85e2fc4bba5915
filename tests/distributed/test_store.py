"""The rendezvous store on its own, like PyTorch's TCPStore (in-process server and clients)."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import pytest

from ember.distributed import (
    DistNetworkError,
    DistStoreError,
    HashStore,
    PrefixStore,
    TCPStore,
)


@pytest.fixture
def master():
    store = TCPStore("127.0.0.1", 0, is_master=True, timeout=timedelta(seconds=5), token="tok")
    yield store
    store.close()


def client(master, **kw):
    kw.setdefault("token", "tok")
    kw.setdefault("timeout", 5)
    return TCPStore("127.0.0.1", master.port, **kw)


def test_set_get_add_compare_set_delete(master):
    c = client(master)
    c.set("a", "1")
    c.set("b", b"\x00\xff")
    assert master.get("a") == b"1" and c.get("b") == b"\x00\xff"
    assert c.add("n", 3) == 3 and master.add("n", -1) == 2 and c.get("n") == b"2"
    assert c.compare_set("cs", "", "first") == b"first"  # missing + empty expected: set
    assert c.compare_set("cs", "wrong", "x") == b"first"  # mismatch: unchanged
    assert c.compare_set("cs", "first", "second") == b"second"
    assert c.compare_set("nokey", "x", "y") == b"x"  # PyTorch returns expected here
    assert c.check(["a", "b"]) and not c.check(["a", "zzz"])
    assert c.multi_get_nowait(["a", "zzz"]) == [b"1", None]
    assert c.num_keys() == master.num_keys() >= 4
    assert c.delete_key("a") is True and c.delete_key("a") is False
    with pytest.raises(ValueError, match="not an integer"):
        c.add("b", 1)
    c.close()


def test_get_and_wait_block_until_set(master):
    c = client(master)
    threading.Timer(0.3, lambda: master.set("late", "v")).start()
    t0 = time.monotonic()
    assert c.get("late") == b"v"
    assert 0.2 < time.monotonic() - t0 < 3
    threading.Timer(0.2, lambda: master.set("w2", "v")).start()
    c.wait(["late", "w2"])
    with pytest.raises(DistStoreError, match=r"wait timeout after 200ms, keys: /never"):
        c.wait(["never"], timedelta(milliseconds=200))
    c.set_timeout(timedelta(milliseconds=300))
    assert c.timeout == timedelta(milliseconds=300)
    with pytest.raises(DistStoreError, match="/missing"):
        c.get("missing")


def test_bad_token_is_refused_and_logged(master, caplog):
    with caplog.at_level(logging.WARNING, logger="ember.distributed"):
        with pytest.raises(DistStoreError, match="refused this process's job token"):
            client(master, token="nope")
    assert any(
        "refused a call" in r.getMessage() and "wrong" in r.getMessage() for r in caplog.records
    )


def test_unreachable_and_port_in_use(master):
    from dist_harness import free_port

    t0 = time.monotonic()
    with pytest.raises(DistNetworkError, match="could not reach the store"):
        TCPStore("127.0.0.1", free_port(), timeout=0.5, token="tok")
    assert time.monotonic() - t0 < 5
    with pytest.raises(DistNetworkError, match="could not bind"):
        TCPStore("127.0.0.1", master.port, is_master=True, timeout=1, token="tok")


def test_world_size_and_wait_for_workers():
    m = TCPStore(
        "127.0.0.1", 0, world_size=2, is_master=True, wait_for_workers=False, timeout=2, token="tok"
    )
    try:
        with pytest.raises(DistStoreError, match="world size mismatch.*world_size=3.*2"):
            TCPStore("127.0.0.1", m.port, world_size=3, timeout=2, token="tok")
        TCPStore("127.0.0.1", m.port, world_size=2, timeout=2, token="tok").close()
    finally:
        m.close()
    with pytest.raises(DistStoreError, match="only 1 of 2 processes"):
        TCPStore("127.0.0.1", 0, world_size=2, is_master=True, timeout=0.3, token="tok")


def test_master_binds_only_the_given_address(master):
    import socket

    from ember.distributed._runtime._auth import local_address_towards

    # The service listens on 127.0.0.1 only: this host's outward address must refuse it.
    # (A UDP "connect" picks the route without sending anything.)
    outward = local_address_towards("192.0.2.123")
    if outward.startswith("127."):
        pytest.skip("this machine has no non-loopback address")
    with socket.socket() as s:
        s.settimeout(1)
        assert s.connect_ex((outward, master.port)) != 0


def test_prefix_and_hash_store(master):
    for base in (HashStore(), client(master)):
        p1, p2 = PrefixStore("job1", base), PrefixStore("job2", base)
        p1.set("k", "one")
        p2.set("k", "two")
        assert p1.get("k") == b"one" and p2.get("k") == b"two"
        assert base.get("job1/k") == b"one"
        assert p1.add("c", 2) == 2 and p1.check(["k"]) and not p2.check(["c"])
        assert p1.compare_set("k", "one", "uno") == b"uno"
        p1.wait(["k"])
        assert p1.delete_key("k") and not p1.check(["k"])
    h = HashStore()
    h.set_timeout(timedelta(milliseconds=100))
    with pytest.raises(DistStoreError):
        h.get("missing")
    threading.Timer(0.05, lambda: h.set("x", "1")).start()
    h.set_timeout(timedelta(seconds=2))
    assert h.get("x") == b"1"
