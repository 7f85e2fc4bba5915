"""Reports from the workers to the driver.

Each ``report()`` returns once the driver holds the report, so a checkpoint reported survives
its worker dying a moment later. The driver puts every report into one queue of events, which
its monitor loop blocks on together with the workers' ends: nothing polls.

Two inboxes, one interface (``client()``, ``flush()``, ``close()``):

* ``SocketInbox``, the default: the driver listens on a TCP port. Each worker connects on its
  first report, proves the job token with an HMAC (as the collectives' data connections do),
  and sends length-prefixed pickles; the driver answers each one once it is queued. Between
  reports nothing runs, in any process.
* ``ActorInbox``: a small async Ray actor, for a driver the workers cannot connect to (Ray
  Client, ``ray://``). An idle Ray actor still wakes about 100 times a second, about 1% of a
  core, and on a machine whose cores the training workers fill that time is taken from them
  (measured: an extra idle actor costs 2-layer mlp DDP ~0.007 of scaling efficiency on 2
  cores). So it is only the fallback.
"""

from __future__ import annotations

import os
import pickle
import queue
import socket
import struct
import threading
import time

from .._runtime import _auth, _transport
from ..errors import DistributedError
from ._internal.hang_watch import DUMP, Beat

_CLOSED = "__ember_inbox_closed__"  # what the actor's next() returns once it is drained
_LEN = struct.Struct("<Q")
_ACK = b"\x01"


def open_inbox(events: queue.Queue, token: str):
    """The inbox for this driver: reports arrive in ``events`` as ``("report", item)``."""
    import ray

    if _workers_can_connect():
        return SocketInbox(events, token, ray.util.get_node_ip_address())
    return ActorInbox(events)


def _workers_can_connect() -> bool:
    """False for a Ray Client driver (``ray://``), which may sit outside the cluster's network."""
    import ray

    return not ray.util.client.ray.is_connected()


def queued_reports(events: queue.Queue) -> list:
    """The reports queued in ``events`` now, in order (other events are dropped)."""
    items = []
    while True:
        try:
            kind, item = events.get_nowait()
        except queue.Empty:
            return items
        if kind == "report" and not isinstance(item, Beat):
            items.append(item)


# ---- the default: a socket in the driver ---------------------------------------------------------
class SocketInbox:
    """Driver side: accepts the workers' connections and queues what they send."""

    def __init__(self, events: queue.Queue, token: str, host: str) -> None:
        self._events = events
        self._lock = threading.Lock()  # orders queueing against close()
        self._closed = False
        self._conns: set[socket.socket] = set()
        self.want_stacks = False  # answer beats with DUMP (the hang watch, hang_watch.py)
        host = _auth.normalize_host(host)
        sock = socket.create_server(
            (host, 0), family=socket.AF_INET6 if ":" in host else socket.AF_INET
        )
        self.address = sock.getsockname()[:2]
        self._listener = _transport.Listener(sock, token, self._serve_async, "report inbox")

    def client(self) -> ReportClient:
        return ReportClient(*self.address)

    def _serve_async(self, rank: int, conn: socket.socket) -> None:
        with self._lock:
            if self._closed:
                conn.close()
                return
            self._conns.add(conn)
        threading.Thread(
            target=self._serve, args=(conn,), daemon=True, name=f"ember-reports-{rank}"
        ).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            head = bytearray(_LEN.size)
            while True:
                _transport.recv_exact(conn, memoryview(head))
                payload = bytearray(_LEN.unpack(head)[0])
                _transport.recv_exact(conn, memoryview(payload))
                item = pickle.loads(payload)
                beat = isinstance(item, Beat)
                with self._lock:
                    if self._closed:  # unanswered: that worker's report() raises
                        return
                    self._events.put(("beat" if beat else "report", item))
                conn.sendall(DUMP if beat and self.want_stacks else _ACK)
        except (OSError, ConnectionError):
            return  # the worker ended (or close() shut the connection)
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def flush(self) -> None:
        """Every report acknowledged so far is queued already: a report is acknowledged only
        once it is in the queue."""

    def close(self) -> None:
        """Stop taking reports: once this returns, nothing more is queued."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conns = list(self._conns)
        self._listener.close()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class ReportClient:
    """Worker side of ``SocketInbox`` (travels to the workers pickled; connects on first use)."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()  # report() may be called from several threads

    def __getstate__(self):
        return {"address": self.address}

    def __setstate__(self, state) -> None:
        self.__init__(*state["address"])

    def beat(self, beat: Beat) -> bytes:
        """Send a hang-watch heartbeat; the driver's answer (``ACK`` or ``DUMP``)."""
        return self.put(beat)

    def put(self, item) -> bytes:
        payload = pickle.dumps(item, protocol=5)
        with self._lock:
            if self._sock is None:
                self._sock = self._connect()
            try:
                self._sock.sendall(_LEN.pack(len(payload)))
                self._sock.sendall(payload)
                ack = self._sock.recv(1)
            except OSError:
                ack = b""
            if ack == DUMP and isinstance(item, Beat):
                return ack
            if ack != _ACK:
                self._sock.close()
                self._sock = None
                # a follow-on error (the driver ends the run when another rank fails): the
                # Trainer reports the root cause before it
                raise DistributedError(
                    f"report(): the Trainer's driver at {self._where()} did "
                    "not take the report (it ended the run, or it is gone)"
                )
            return ack

    def _where(self) -> str:
        return _auth.join_host_port(*self.address)

    def _connect(self) -> socket.socket:
        host = self.address[0]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        deadline = time.monotonic() + 30.0
        rank = int(os.environ.get("RANK", "-1"))
        while True:
            sock = _transport.connect_with_retry(
                family, self.address, deadline, "the Trainer's report inbox"
            )
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                _transport.client_handshake(sock, _auth.job_token(), rank, -1, timeout=30.0)
                return sock
            except (ConnectionError, TimeoutError) as e:
                # closed before the challenge (the listener sheds a flood): not a refusal
                sock.close()
                if time.monotonic() + 0.05 < deadline:
                    time.sleep(0.05)
                    continue
                err = e
            except Exception as e:
                sock.close()
                err = e
            raise RuntimeError(
                f"report(): the Trainer's driver at {self._where()} refused "
                f"this worker (rank {rank}): the job tokens differ "
                f"({_auth.TOKEN_ENV}) or the handshake failed: {err}"
            ) from None


# ---- the fallback: an async actor ----------------------------------------------------------------
class _InboxActor:
    def __init__(self) -> None:
        import asyncio
        from collections import deque

        self._asyncio = asyncio
        self._items: deque = deque()
        self._waiter = None
        self._closed = False

    async def put(self, item) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(item)
            self._waiter = None
        else:
            self._items.append(item)

    async def next(self):
        """The next item, once there is one (one call outstanding at a time); ``_CLOSED``
        after ``drain``."""
        if self._items:
            return self._items.popleft()
        if self._closed:
            return _CLOSED
        self._waiter = self._asyncio.get_running_loop().create_future()
        return await self._waiter

    async def drain(self) -> list:
        """Close the inbox and return the items queued. An outstanding ``next()`` returns
        ``_CLOSED`` (at once, or when it starts: an async actor may start calls out of
        order), unless it had already returned an item, which comes before these."""
        self._closed = True
        items = list(self._items)
        self._items.clear()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(_CLOSED)
        return items


class _ActorClient:
    def __init__(self, actor) -> None:
        self.actor = actor

    def put(self, item) -> None:
        import ray

        ray.get(self.actor.put.remote(item))

    def beat(self, beat: Beat) -> bytes:
        """Through the actor the driver cannot answer: hangs are found, stacks not sent."""
        self.put(beat)
        return _ACK


class ActorInbox:
    """Driver side of the actor inbox: a thread keeps one ``next()`` call outstanding and
    queues what it returns."""

    def __init__(self, events: queue.Queue) -> None:
        import ray

        self._events = events
        self._drained = False
        self.actor = ray.remote(num_cpus=0)(_InboxActor).remote()
        self._pump = threading.Thread(target=self._run, daemon=True, name="ember-reports")
        self._pump.start()

    def client(self) -> _ActorClient:
        return _ActorClient(self.actor)

    def _run(self) -> None:
        import ray

        while True:
            try:
                item = ray.get(self.actor.next.remote())
            except Exception:  # the actor is gone (killed by close(), or Ray shut down)
                return
            if isinstance(item, str) and item == _CLOSED:
                return
            self._events.put(("report", item))

    def flush(self) -> None:
        """Queue every report sent so far. The actor stays up: reports sent later are
        accepted (so that a healthy rank's ``report()`` does not fail) and dropped."""
        import ray

        if self._drained:
            return
        self._drained = True
        try:
            items = ray.get(self.actor.drain.remote())
        except Exception:
            items = []
        self._pump.join(timeout=30.0)
        for item in items:
            self._events.put(("report", item))

    def close(self) -> None:
        """Stop taking reports: once this returns, every report sent is queued, in order."""
        import ray

        self.flush()
        try:
            ray.kill(self.actor, no_restart=True)
        except Exception:
            pass
