"""Key-value stores for rendezvous: PyTorch's ``Store`` API over gRPC (``TCPStore``).

``TCPStore(host, port, world_size, is_master=True)`` hosts the store service on ``host:port``
(rank 0 does this in ``init_process_group``); every other process connects with
``is_master=False``. Every call carries the job token (``EMBER_TOKEN``); the server refuses and
logs calls without it. ``HashStore`` is the in-process variant and ``PrefixStore`` namespaces
keys, as in PyTorch (both in ``_store_base.py``, re-exported here).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

from ._runtime import _auth, _grace
from ._store_base import (  # noqa: F401 - the Store API and the in-process stores
    DEFAULT_TIMEOUT,
    HashStore,
    PrefixStore,
    Store,
    _as_bytes,
    _seconds,
)
from .errors import DistNetworkError, DistStoreError

_WORKERS_KEY = "__ember_store/workers"
_WORLD_KEY = "__ember_store/world_size"
# Slack added to an RPC deadline on top of the server-side wait it asks for.
_RPC_SLACK = 5.0
# The same for retries during a network blip: short, so a retry lands soon after the link is back.
_RETRY_SLACK = 2.0
# Calls that are safe to repeat when their reply may have been lost (a deadline passed): an
# ``add`` or ``compare_set`` that reached the master must not be applied twice.
_IDEMPOTENT = frozenset({"Set", "Get", "Wait", "Delete", "NumKeys", "MultiGet"})
# gRPC details that mean the master's process is gone, not that the network is down.
_GONE = ("refused", "reset", "Socket closed", "Broken pipe")

_no_retry = threading.local()


@contextlib.contextmanager
def no_retry():
    """Store calls in this thread fail at the first network error instead of retrying for the
    grace period (used where a job is already failing: its report must not wait)."""
    prev = getattr(_no_retry, "on", False)
    _no_retry.on = True
    try:
        yield
    finally:
        _no_retry.on = prev


class StoreUnreachableError(DistStoreError):
    """The store's master could not be reached for the whole grace period (a network partition
    or its host is down), as opposed to its process being gone."""


class TCPStore(Store):
    """A store served over gRPC by the master process (PyTorch's ``TCPStore`` constructor).

    Args:
        host_name: address the master binds to and clients connect to.
        port: the port; ``0`` on the master picks a free one (see ``.port``).
        world_size: number of processes using the store; when given, a mismatch between the
            master's and a client's value is an error, and the master waits for all of them if
            ``wait_for_workers``.
        is_master: host the service in this process.
        timeout: default timeout for connecting, ``get`` and ``wait``.
        wait_for_workers: the master blocks until ``world_size`` processes have connected.
        token: the job secret; defaults to ``$EMBER_TOKEN``.
    """

    def __init__(
        self,
        host_name: str,
        port: int,
        world_size: int | None = None,
        is_master: bool = False,
        timeout=DEFAULT_TIMEOUT,
        wait_for_workers: bool = True,
        *,
        token: str | None = None,
        _rank: int | None = None,
        **_ignored,
    ) -> None:
        super().__init__(timeout)
        import grpc

        from ember.protos import store_pb2, store_pb2_grpc

        self._grpc, self._pb = grpc, store_pb2
        self.host = _auth.normalize_host(host_name)
        self.world_size = world_size
        self._token = _auth.job_token(token)
        self._md = _auth.metadata(self._token)
        if _rank is not None:
            # init_process_group's store names its rank: a refusal then tells the waiting
            # ranks who was turned away (see _rendezvous_watch.py)
            self._md += (("x-ember-rank", str(int(_rank))),)
        self._server = None
        self._reconnect_lock = threading.Lock()
        if is_master:
            from ._runtime import _store_proc

            if _store_proc.in_own_process():  # off rank 0's GIL (issue #28)
                start = _store_proc.spawn
            else:
                from ._runtime._store_server import serve as start
            self._server, port = start(self.host, int(port), self._token, world_size)
        self.port = int(port)
        self.address = _auth.join_host_port(self.host, self.port)
        self._stub_class = store_pb2_grpc.StoreStub
        self._open_channel()
        self._connect()
        if world_size is not None:
            self._join(int(world_size), is_master and wait_for_workers)

    # ---- connection ---------------------------------------------------------------------
    def _open_channel(self) -> None:
        # A channel of its own connections: gRPC otherwise shares one TCP connection between
        # channels to the same address, and a reconnect would reuse the stalled one.
        options = _auth.CHANNEL_OPTIONS + [("grpc.use_local_subchannel_pool", 1)]
        self._channel = self._grpc.insecure_channel(self.address, options=options)
        self._stub = self._stub_class(self._channel)

    def _reconnect(self, stub) -> None:
        """Replace the channel whose call ``stub`` timed out (once, if several threads saw it):
        a fresh TCP connection resumes as soon as the link is back, while the old one waits out
        TCP's retransmission backoff."""
        with self._reconnect_lock:
            if self._stub is stub:
                old = self._channel
                self._open_channel()
                old.close()  # calls still on it end as CANCELLED and are retried

    def _connect(self) -> None:
        deadline = time.monotonic() + self._timeout
        while True:
            left = deadline - time.monotonic()
            try:
                self._grpc.channel_ready_future(self._channel).result(timeout=min(left, 10.0))
                break
            except self._grpc.FutureTimeoutError:
                if time.monotonic() >= deadline:
                    self._channel.close()
                    raise DistNetworkError(
                        f"could not reach the store at {self.address} within "
                        f"{self._timeout:g} s: is the master (rank 0) running and are "
                        "MASTER_ADDR/MASTER_PORT right?"
                    ) from None
                _auth.logger.warning(
                    "still waiting for the store at %s (the master, rank 0; "
                    "MASTER_ADDR/MASTER_PORT)",
                    self.address,
                )
        self.num_keys()  # proves the token before anything else happens

    def _join(self, world_size: int, wait: bool) -> None:
        if self._server is not None:
            self.set(_WORLD_KEY, str(world_size))
        master_world = int(self.get(_WORLD_KEY))
        if master_world != world_size:
            raise DistStoreError(
                f"world size mismatch: this process was started with world_size={world_size} "
                f"but the store's master at {self.address} has world_size={master_world}"
            )
        joined = self.add(_WORKERS_KEY, 1)
        if wait:
            deadline = time.monotonic() + self._timeout
            while joined < world_size:
                if time.monotonic() > deadline:
                    raise DistStoreError(
                        f"only {joined} of {world_size} processes connected to the store at "
                        f"{self.address} within {self._timeout:g} s"
                    )
                time.sleep(0.01)
                joined = self.add(_WORKERS_KEY, 0)

    def _call(self, method: str, request, wait: float = 0.0):
        """One RPC, retried with backoff on a fresh connection while the network is out, for
        the grace period (``EMBER_NET_GRACE_S``) but never past the store's timeout."""
        start = time.monotonic()
        timeout, delay, until, warned = wait + _RPC_SLACK, 0.05, None, False
        while True:
            stub = self._stub
            try:
                return getattr(stub, method)(request, metadata=self._md, timeout=timeout)
            except self._grpc.RpcError as e:
                if not self._transient(method, e, stub):
                    raise self._error(method, e) from None
                err = e
            now = time.monotonic()
            if until is None:
                until = start + min(_grace.grace_seconds(), max(self._timeout, wait + 1.0))
            if now >= until:
                raise StoreUnreachableError(
                    f"the store at {self.address} (hosted by rank 0) was unreachable for "
                    f"{now - start:.1f} s ({err.code().name}: {err.details()}): a network "
                    f"partition or rank 0's host is down (grace period {_grace.ENV})"
                ) from None
            if not warned:
                warned = True
                _auth.logger.warning(
                    "store call %s to %s failed (%s); retrying for up to %.0f s",
                    method,
                    self.address,
                    err.code().name,
                    until - now,
                )
            if err.code() == self._grpc.StatusCode.DEADLINE_EXCEEDED:
                self._reconnect(stub)
            time.sleep(min(delay, max(0.0, until - now)))
            delay = min(delay * 2, 1.0)
            timeout = max(0.5, min(wait + _RETRY_SLACK, until - time.monotonic()))

    def _transient(self, method: str, e, stub) -> bool:
        """Whether ``e`` may be a network blip worth retrying (see ``_call``)."""
        if getattr(_no_retry, "on", False):
            return False
        code, codes = e.code(), self._grpc.StatusCode
        if code == codes.CANCELLED:
            return stub is not self._stub  # its channel was replaced under it
        if code == codes.DEADLINE_EXCEEDED:
            return method in _IDEMPOTENT
        if code == codes.UNAVAILABLE:
            details = e.details() or ""
            return not any(g.lower() in details.lower() for g in _GONE)
        return False

    def _error(self, method: str, e) -> Exception:
        """The error for a failed RPC that is not retried."""
        code, codes = e.code(), self._grpc.StatusCode
        if code == codes.UNAUTHENTICATED:
            unset = ""
            if not os.environ.get(_auth.TOKEN_ENV):
                unset = (
                    " (it is unset here, so this user's token file was used: ranks on "
                    f"machines that do not share it need {_auth.TOKEN_ENV})"
                )
            return DistStoreError(
                f"the store at {self.address} refused this process's job "
                f"token: all ranks must share the same {_auth.TOKEN_ENV}{unset}"
            )
        if code == codes.UNAVAILABLE:
            return DistStoreError(
                f"lost the connection to the store at {self.address} "
                f"({e.details()}): did the master process exit?"
            )
        if code == codes.FAILED_PRECONDITION:  # e.g. add() on a non-integer
            return ValueError(e.details())
        if code == codes.DEADLINE_EXCEEDED:
            return DistStoreError(f"store call {method} to {self.address} timed out")
        return DistStoreError(
            f"store call {method} to {self.address} failed: {code.name}: {e.details()}"
        )

    # ---- the Store API --------------------------------------------------------------------
    def set(self, key, value):
        self._call("Set", self._pb.SetRequest(key=key, value=_as_bytes(value)))

    def get(self, key):
        reply = self._call(
            "Get", self._pb.GetRequest(key=key, timeout_ms=self._ms()), self._timeout
        )
        if not reply.found:
            raise self._timeout_error([key], self._timeout)
        return reply.value

    def add(self, key, amount):
        return self._call("Add", self._pb.AddRequest(key=key, amount=int(amount))).value

    def compare_set(self, key, expected_value, desired_value):
        req = self._pb.CompareSetRequest(
            key=key, expected=_as_bytes(expected_value), desired=_as_bytes(desired_value)
        )
        return self._call("CompareSet", req).value

    def wait(self, keys, timeout=None):
        t = self._timeout if timeout is None else _seconds(timeout)
        reply = self._call(
            "Wait", self._pb.WaitRequest(keys=list(keys), timeout_ms=int(t * 1000)), t
        )
        if reply.missing:
            raise self._timeout_error(list(reply.missing), t)

    def delete_key(self, key):
        return self._call("Delete", self._pb.DeleteRequest(key=key)).deleted

    def num_keys(self):
        return self._call("NumKeys", self._pb.NumKeysRequest()).count

    def multi_get_nowait(self, keys):
        reply = self._call("MultiGet", self._pb.MultiGetRequest(keys=list(keys)))
        return [v if f else None for f, v in zip(reply.found, reply.values)]

    def _ms(self) -> int:
        return int(self._timeout * 1000)

    # ---- lifetime -------------------------------------------------------------------------
    def close(self) -> None:
        """Close the client channel and, on the master, stop the service."""
        self._channel.close()
        if self._server is not None:
            # waits for the port to be released (a new store may bind it next) and ends the
            # service's threads
            self._server.stop(grace=None)
            self._server = None

    def __del__(self):
        # At interpreter exit gRPC's polling threads are gone and stopping a server would block
        # forever; the process is ending anyway.
        if sys.is_finalizing():
            return
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        role = "master" if self._server is not None else "client"
        return f"TCPStore({self.address}, {role})"
