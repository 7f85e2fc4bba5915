"""The per-process runtime behind the default process group: rendezvous, endpoints,
transports, aborts.

Rendezvous (through the store, keys under ``ember/<n>/``): each process claims its rank (two
processes with one RANK is an error), checks the world size against rank 0's, publishes its
host identity, pid and endpoints (the gRPC peer service and the TCP data listener, bound to the
address that routes to the master), and reads everyone else's. Ranks that share a host then
publish their shared-memory segments. Transports connect, a barrier over them proves every
pair works, and the shared-memory names are unlinked (the mappings live on, nothing leaks if a
process dies).
"""

from __future__ import annotations

import json
import os
import threading
import time
import weakref

from ..errors import DistBackendError, DistributedError, DistStoreError
from ..store import PrefixStore, StoreUnreachableError, no_retry
from ..work import Executor
from . import _auth, _shm
from ._peer import GrpcStreamTransport, PeerServer, send_aborts
from ._rendezvous_watch import RendezvousWatch
from ._shm_reclaim import namespace_tag
from ._socket import SocketTransport

BACKENDS = ("auto", "shm", "grpc", "nccl")
_ALIASES = {
    None: "auto",
    "": "auto",
    "gloo": "auto",
    "cpu:gloo,cuda:nccl": "nccl",
    "undefined": "auto",
}


def normalize_backend(backend) -> str:
    name = str(backend).lower() if backend is not None else None
    name = _ALIASES.get(name, name)
    if name not in BACKENDS:
        raise ValueError(
            f"Invalid backend: '{backend}'; ember supports 'auto', 'grpc', 'shm', "
            "'nccl' and 'gloo' (an alias of 'auto')"
        )
    return name


class World:
    """Everything ``init_process_group`` sets up (see the module docstring)."""

    def __init__(
        self,
        rank: int,
        world_size: int,
        store,
        backend: str,
        timeout: float,
        token: str,
        generation: int,
        master_host: str,
    ) -> None:
        self.rank, self.world_size = rank, world_size
        self.backend, self.timeout, self.token = backend, timeout, token
        self.base_store = store
        self.store = PrefixStore(f"ember/{generation}", store)
        self.master_host = master_host
        self.stall_interval = float(os.environ.get("EMBER_STALL_WARNING_S", 30.0))
        self.executor = Executor()
        self.abort_message: str | None = None
        self._abort_lock = threading.Lock()
        self.infos: list[dict] = []
        self.transports: dict = {}
        self._owned: list = []
        self.peer_server: PeerServer | None = None
        self.hosts: list[list[int]] = []  # global ranks grouped by host, in rank order
        self.nccl: list = []  # the groups' NCCL communicators, destroyed in close()
        self.groups: dict = {}
        self.next_group_id = 0
        self.local_group_calls: dict[str, int] = {}  # new_group(use_local_synchronization)
        self._scratch: dict = {}
        self._closers: list = []  # weak methods run first by close() (see on_close)
        self.watch = RendezvousWatch(self)

    # ---- set-up -----------------------------------------------------------------------------
    def start(self) -> None:
        deadline = time.monotonic() + self.timeout
        host = _auth.host_identity()
        # (the pid namespace tells the rendezvous watch whether the pid can be checked here)
        claim = f"{host}|{os.getpid()}|{namespace_tag()}.{os.urandom(4).hex()}"
        owner = self.store.compare_set(f"rank/{self.rank}", "", claim).decode()
        if owner != claim:
            raise DistributedError(
                f"rank {self.rank} was already claimed by another process (host "
                f"{owner.split('|')[0]}, pid {owner.split('|')[1]}): every process needs its own "
                "RANK"
            )
        self.watch.start()
        if self.rank == 0:
            self.store.set("world_size", str(self.world_size))
        master_world = int(self._get_or_fail("world_size", [0]))
        if master_world != self.world_size:
            raise DistributedError(
                f"world size mismatch: this process (rank {self.rank}) was started with "
                f"world_size={self.world_size} but rank 0 has world_size={master_world}"
            )
        bind = _auth.bind_host(_auth.local_address_towards(self.master_host), self.world_size)
        self.peer_server = PeerServer(bind, self.token, self.on_remote_abort)
        sock = None
        if self.backend != "shm" and self.world_size > 1:
            sock = SocketTransport(self.rank, self.token, bind)
            sock.rendezvous_check = self.watch.check
            self._owned.append(sock)
        info = {
            "rank": self.rank,
            "host": host,
            "hostname": os.uname().nodename,
            "pid": os.getpid(),
            "peer": self.peer_server.address,
            "tcp": sock.endpoint() if sock else None,
        }
        self.store.set(f"info/{self.rank}", json.dumps(info))
        self.infos = [json.loads(v) for v in self._wait_all("info", deadline)]
        by_host: dict[str, list[int]] = {}
        for i in self.infos:
            by_host.setdefault(i["host"], []).append(i["rank"])
        self.hosts = list(by_host.values())
        local = by_host[host]
        self._connect(sock, local, deadline)

    def _connect(self, sock, local: list[int], deadline: float) -> None:
        remote = [r for r in range(self.world_size) if r not in local]
        if self.backend == "shm" and remote:
            where = {i["rank"]: i["hostname"] for i in self.infos}
            raise DistributedError(
                "backend 'shm' needs every rank on one host, but ranks are spread over "
                f"{len(self.hosts)} hosts ({where}); use backend='auto'"
            )
        use_shm = self.backend in ("shm", "auto", "nccl") and len(local) > 1
        if use_shm:
            if not _shm.available():
                if self.backend == "shm":
                    raise DistBackendError("backend 'shm' is not available on this machine")
                use_shm = False
        if use_shm:
            shm = _shm.ShmTransport(self.rank, self.token, local)
            shm.rendezvous_check = self.watch.check
            self._owned.append(shm)
            self.store.set(f"shm/{self.rank}", json.dumps(shm.endpoint()))
            eps = self._wait_all("shm", deadline, ranks=local)
            shm.connect({r: json.loads(e) for r, e in zip(local, eps) if r != self.rank}, deadline)
            for r in local:
                if r != self.rank:
                    self.transports[r] = shm
        net_peers = [
            r for r in range(self.world_size) if r != self.rank and r not in self.transports
        ]
        if net_peers and os.environ.get("EMBER_DATA_PLANE", "socket") == "grpc":
            grpc_tp = GrpcStreamTransport(self.rank, self.token, self.peer_server)
            self._owned.append(grpc_tp)
            grpc_tp.connect({r: self.infos[r]["peer"] for r in net_peers}, deadline)
            self.transports.update({r: grpc_tp for r in net_peers})
        elif net_peers:
            sock.connect({r: self.infos[r]["tcp"] for r in net_peers}, deadline)
            self.transports.update({r: sock for r in net_peers})

    def after_barrier(self) -> None:
        """Every peer has mapped our segment: drop its name so nothing can leak."""
        self.watch.stop()
        for tp in self._owned:
            if isinstance(tp, _shm.ShmTransport):
                tp.unlink()

    def _get_or_fail(self, key: str, ranks: list[int]):
        try:
            return self.store.get(key)
        except DistStoreError:
            raise DistributedError(
                f"rendezvous timed out after {self.timeout:g} s: rank(s) {ranks} did not join"
            ) from None

    def _wait_all(self, what: str, deadline: float, ranks=None) -> list[bytes]:
        ranks = list(range(self.world_size)) if ranks is None else ranks
        keys = [f"{what}/{r}" for r in ranks]
        try:
            # in slices, so that a dead or refused rank fails the wait within seconds
            while True:
                self.watch.check()
                left = deadline - time.monotonic()
                try:
                    self.store.wait(keys, max(0.1, min(left, 4 * self.watch.interval)))
                    break
                except DistStoreError:
                    if left <= 4 * self.watch.interval:
                        raise
        except DistStoreError:
            have = self.store.multi_get_nowait(keys)
            missing = [r for r, v in zip(ranks, have) if v is None]
            raise DistributedError(
                f"rendezvous timed out after {self.timeout:g} s: ranks {missing} did not join "
                f"(world_size={self.world_size})"
            ) from None
        return self.store.multi_get_nowait(keys)

    def scratch(self, key: str, nbytes: int):
        """A cached uint8 buffer of at least ``nbytes`` (grown, never shrunk, until destroy)."""
        buf = self._scratch.get(key)
        if buf is None or buf.nbytes < nbytes:
            import numpy as np

            buf = self._scratch[key] = np.empty(max(nbytes, 1), dtype=np.uint8)
        return buf

    # ---- queries ------------------------------------------------------------------------------
    def transport_for(self, rank: int):
        return self.transports[rank]

    def describe(self, rank: int) -> str:
        if 0 <= rank < len(self.infos):
            i = self.infos[rank]
            return f"host {i['hostname']}, pid {i['pid']}"
        return "unknown process"

    # ---- failure handling -------------------------------------------------------------------
    def raise_if_aborted(self) -> None:
        if self.abort_message is not None:
            raise DistributedError(self.abort_message)

    def poll_abort(self) -> None:
        try:
            value = self.store.multi_get_nowait(["abort"])[0]
        except StoreUnreachableError as e:  # retried for the grace period first (store.py)
            raise self.fail(
                DistBackendError(f"rank {self.rank} lost rank 0 ({self.describe(0)}): {e}")
            ) from None
        except DistStoreError as e:
            raise self.fail(
                DistBackendError(
                    f"rank {self.rank} lost the rendezvous store hosted by rank 0 ({e}); rank 0 "
                    "probably exited or crashed"
                )
            ) from None
        if value is not None:
            self._set_abort(value.decode())
            self.raise_if_aborted()

    def pending_abort(self) -> str | None:
        """The job's abort message if one was set here or in the store (no error if the store
        is gone)."""
        if self.abort_message is None:
            try:
                with no_retry():  # a failure is being reported: no waiting out a partition
                    value = self.store.multi_get_nowait(["abort"])[0]
            except DistStoreError:
                value = None
            if value is not None:
                self._set_abort(value.decode())
        return self.abort_message

    def _set_abort(self, message: str) -> bool:
        with self._abort_lock:
            if self.abort_message is not None:
                return False
            self.abort_message = message
            return True

    def fail(self, err: DistributedError) -> DistributedError:
        """Record ``err`` as the job's failure and tell the other ranks; returns ``err``."""
        message = f"{err} (reported by rank {self.rank})"
        if self._set_abort(message):
            try:
                with no_retry():  # best effort: an unreachable store must not delay the error
                    self.store.set("abort", message)
            except DistributedError:
                pass
            peers = {i["rank"]: i["peer"] for i in self.infos if i["rank"] != self.rank}
            send_aborts(peers, self.token, self.rank, message)
        return err

    def on_remote_abort(self, rank: int, message: str) -> None:
        self._set_abort(message)

    # ---- teardown -----------------------------------------------------------------------------
    def on_close(self, method) -> None:
        """Call the bound ``method`` when this world closes (held weakly, so the owner can go
        first): users of shared memory (DDP's buckets) move out of it there, or its pages
        would stay mapped, and held, for as long as the owner lives (issue #28)."""
        self._closers.append(weakref.WeakMethod(method))

    def close(self) -> None:
        self.watch.stop()
        clean = self.abort_message is None
        self.executor.drain(timeout=self.timeout if clean else 1.0)
        self.executor.close()
        closers, self._closers = self._closers, []
        for ref in closers:
            method = ref()
            if method is not None:
                method()
        for nc in self.nccl:
            nc.close()
        for tp in self._owned:
            tp.close(clean)
        if self.peer_server is not None:
            self.peer_server.stop()
        # Drop what holds mappings and sockets now rather than at the next garbage collection
        # (groups and communicators refer back to this world).
        self._owned, self.transports, self._scratch = [], {}, {}
        for pg in self.groups.values():
            pg.comm = pg.p2p = None
