"""The RPC agent: one per process, between ``init_rpc`` and ``shutdown``.

Each worker listens on a TCP port of its own (authenticated with the job token, as the
collectives' data connections: ``_transport.Listener``) and publishes ``(name, host, port)``
in the rendezvous store. A call opens (once per peer) a connection to the callee and sends
length-prefixed frames ``(kind, msg_id, ctx, ac_id, body)``: ``body`` is the payload pickled
by ``_wire``; ``ctx``/``ac_id`` are the distributed autograd context and the message's
send/recv id. The callee runs requests on a pool of ``num_worker_threads`` threads and answers
on the same connection (``reply``); the caller's reader thread completes the call's future.
A call to this worker itself goes the same way (a loopback connection).
"""

from __future__ import annotations

import heapq
import itertools
import pickle
import queue
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ember.futures import Future

from .._runtime import _auth, _transport
from . import _wire
from ._wire import recv_frame, remote_error, remote_exception, send_frame
from .options import WorkerInfo

_agent: Agent | None = None


def current() -> Agent:
    if _agent is None:
        raise RuntimeError(
            "RPC has not been initialized. Call ember.distributed.rpc.init_rpc first."
        )
    return _agent


class _Pending:
    __slots__ = ("fut", "peer", "ctx", "what")

    def __init__(self, fut, peer, ctx, what) -> None:
        self.fut, self.peer, self.ctx, self.what = fut, peer, ctx, what


class Agent:
    """See the module docstring. ``handlers`` maps a request kind to
    ``fn(agent, caller, ctx, obj) -> value or Future`` (run on a worker thread)."""

    handlers: dict = {}

    def __init__(self, name, rank, world_size, store, own_store, token, options) -> None:
        self.name, self.rank, self.world_size = name, int(rank), int(world_size)
        self.store, self._own_store, self.token = store, own_store, token
        self.options = options
        self.timeout = float(options.rpc_timeout)
        self.info = WorkerInfo(name, self.rank)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._deadlines: list = []
        self._conns: dict[int, tuple] = {}  # peer -> (sock, send lock)
        self._dial_locks: dict[int, threading.Lock] = {}
        self._inbound: set = set()
        self._closed = False
        self._pool = ThreadPoolExecutor(options.num_worker_threads, thread_name_prefix="ember-rpc")
        self.owned: dict = {}  # rref id -> rref._OwnerEntry (the values this worker owns)
        self.owned_lock = threading.Lock()
        self._oneway: queue.SimpleQueue = queue.SimpleQueue()  # (peer, kind, obj), from __del__
        master = getattr(store, "host", None) or getattr(
            getattr(store, "underlying_store", None), "host", "127.0.0.1"
        )
        host = _auth.bind_host(_auth.local_address_towards(master), world_size)
        host = _auth.normalize_host(host)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, 0), family=family)
        self.address = sock.getsockname()[:2]
        self._listener = _transport.Listener(sock, token, self._on_peer, "rpc agent")
        self._watch = threading.Thread(target=self._watch_deadlines, daemon=True, name="rpc-timer")
        self._watch.start()
        self._sender = threading.Thread(target=self._send_oneway, daemon=True, name="rpc-oneway")
        self._sender.start()
        self.workers: dict[int, WorkerInfo] = {}
        self._addresses: dict[int, tuple] = {}

    # ---- rendezvous ---------------------------------------------------------------------
    def join(self, timeout: float) -> None:
        self.store.set(f"rpc/worker/{self.rank}", pickle.dumps((self.name, *self.address)))
        names: dict[str, int] = {}
        for r in range(self.world_size):
            self.store.wait([f"rpc/worker/{r}"], timeout)
            name, host, port = pickle.loads(self.store.get(f"rpc/worker/{r}"))
            if name in names:
                raise RuntimeError(
                    f"init_rpc: worker name {name!r} is used by ranks {names[name]} and {r}; "
                    "every worker needs a unique name"
                )
            names[name] = r
            self.workers[r] = WorkerInfo(name, r)
            self._addresses[r] = (host, port)

    def resolve(self, to) -> WorkerInfo:
        """The worker ``to`` names: a ``WorkerInfo``, a name or an id."""
        if isinstance(to, WorkerInfo):
            return self.resolve(to.id)
        if isinstance(to, str):
            for info in self.workers.values():
                if info.name == to:
                    return info
            known = sorted(w.name for w in self.workers.values())
            raise ValueError(f"unknown RPC worker name {to!r}; known: {known}")
        if isinstance(to, int) and to in self.workers:
            return self.workers[to]
        raise ValueError(f"unknown RPC destination {to!r} (a worker name, id or WorkerInfo)")

    # ---- outgoing -----------------------------------------------------------------------
    def _connection(self, peer: int):
        conn = self._conns.get(peer)
        if conn is not None:
            return conn
        with self._dial_locks.setdefault(peer, threading.Lock()):  # one dial per peer
            conn = self._conns.get(peer)
            if conn is not None:
                return conn
            if self._closed:
                raise RuntimeError(f"RPC agent of {self.name!r} is shut down")
            sock = self._dial(peer)
            conn = (sock, threading.Lock())
            with self._lock:
                self._conns[peer] = conn
        threading.Thread(
            target=self._read_replies, args=(peer, sock), daemon=True, name=f"rpc-in-{peer}"
        ).start()
        return conn

    def _dial(self, peer: int) -> socket.socket:
        host, port = self._addresses[peer]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        what = f"RPC worker {self.workers[peer].name!r}"
        deadline = time.monotonic() + max(self.timeout, 30.0)
        while True:
            sock = _transport.connect_with_retry(family, (host, port), deadline, what)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                _transport.client_handshake(sock, self.token, self.rank, peer, timeout=30.0)
                return sock
            except (ConnectionError, TimeoutError):
                # closed before the challenge (a busy listener sheds or times out): try again
                sock.close()
                if time.monotonic() + 0.05 > deadline:
                    raise
                time.sleep(0.05)

    def request(self, to, kind: str, obj, timeout: float | None = None, ctx=None) -> Future:
        """Send ``obj`` to worker ``to`` as a ``kind`` request; a future for the answer."""
        from .. import autograd as dist_autograd

        peer = self.resolve(to).id
        fut: Future = Future()
        if ctx is None:
            ctx = dist_autograd._current()
        elif ctx is False:  # a message of distributed autograd itself: no context
            ctx = None
        body, tensors = _wire.dumps(obj)
        ac_id = None
        if ctx is not None:
            ctx.workers.add(peer)
            sent = _wire.grad_tensors(tensors)
            if sent:
                ac_id = ctx.record_send(sent)
        msg_id = next(self._ids)
        secs = self.timeout if timeout is None or timeout < 0 else float(timeout)
        what = f"{kind} to {self.workers[peer].name!r}"
        with self._lock:
            self._pending[msg_id] = _Pending(fut, peer, ctx, what)
            if secs > 0:
                heapq.heappush(self._deadlines, (time.monotonic() + secs, msg_id, secs))
        try:
            sock, lock = self._connection(peer)
            send_frame(sock, lock, (kind, msg_id, None if ctx is None else ctx.id, ac_id, body))
        except BaseException as e:
            with self._lock:
                self._pending.pop(msg_id, None)
            fut.set_exception(RuntimeError(f"RPC {what} failed to send: {e}"))
        return fut

    def oneway(self, peer: int, kind: str, obj) -> None:
        """Queue a request whose answer nobody waits for (safe from ``__del__``)."""
        self._oneway.put((peer, kind, obj))

    def _send_oneway(self) -> None:
        while True:
            item = self._oneway.get()
            if item is None:
                return
            peer, kind, obj = item
            if kind == "_flush":
                obj.set()
                continue
            if self._closed:
                continue
            try:
                sock, lock = self._connection(peer)
                body, _ = _wire.dumps(obj)
                send_frame(sock, lock, (kind, 0, None, None, body))
            except Exception:
                pass  # the peer is gone: nothing left to release there

    def flush_oneway(self) -> None:
        done = threading.Event()
        self._oneway.put((self.rank, "_flush", done))
        done.wait(10.0)

    def _read_replies(self, peer: int, sock: socket.socket) -> None:
        reason = "closed the connection"
        try:
            while True:
                _kind, msg_id, ok, ac_id, body = recv_frame(sock)
                with self._lock:
                    p = self._pending.pop(msg_id, None)
                if p is None:
                    continue  # timed out already
                if not ok:
                    p.fut.set_exception(remote_exception(body))
                    continue
                try:
                    value, tensors = _wire.loads(body)
                    if p.ctx is not None and ac_id is not None:
                        p.ctx.record_recv(peer, ac_id, _wire.grad_tensors(tensors))
                except BaseException as e:
                    p.fut.set_exception(
                        RuntimeError(f"RPC {p.what}: could not unpickle the reply: {e!r}")
                    )
                    continue
                p.fut.set_result(value)
                # drop this loop's references: a value held here (an RRef) would outlive the
                # caller's last use until the next reply arrives
                p = value = tensors = None
        except (OSError, ConnectionError, EOFError) as e:
            reason = f"closed the connection ({e})"
        name = self.workers[peer].name
        with self._lock:
            lost = [m for m, p in self._pending.items() if p.peer == peer]
            pend = [self._pending.pop(m) for m in lost]
            if self._conns.get(peer, (None,))[0] is sock:
                del self._conns[peer]
        for p in pend:
            p.fut.set_exception(RuntimeError(f"RPC {p.what} failed: worker {name!r} {reason}"))

    def _watch_deadlines(self) -> None:
        while not self._closed:
            now = time.monotonic()
            expired = []
            with self._lock:
                while self._deadlines and self._deadlines[0][0] <= now:
                    _, msg_id, secs = heapq.heappop(self._deadlines)
                    p = self._pending.pop(msg_id, None)
                    if p is not None:
                        expired.append((p, secs))
                wait = self._deadlines[0][0] - now if self._deadlines else 0.05
            for p, secs in expired:
                p.fut.set_exception(
                    RuntimeError(
                        f"RPC ran for more than set timeout ({secs * 1000:.0f} ms) and will now "
                        f"be marked with an error ({p.what})"
                    )
                )
            time.sleep(min(max(wait, 0.001), 0.05))

    def outstanding(self) -> int:
        with self._lock:
            return len(self._pending)

    # ---- incoming -----------------------------------------------------------------------
    def _on_peer(self, rank: int, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._inbound.add(conn)
        threading.Thread(
            target=self._serve, args=(rank, conn), daemon=True, name=f"rpc-serve-{rank}"
        ).start()

    def _serve(self, caller: int, conn: socket.socket) -> None:
        lock = threading.Lock()
        try:
            while True:
                kind, msg_id, ctx_id, ac_id, body = recv_frame(conn)
                self._pool.submit(
                    self._handle, caller, conn, lock, kind, msg_id, ctx_id, ac_id, body
                )
        except (OSError, ConnectionError, EOFError, RuntimeError):
            pass  # the caller went away (or the pool is shut down)
        finally:
            with self._lock:
                self._inbound.discard(conn)
            conn.close()

    def _handle(self, caller, conn, lock, kind, msg_id, ctx_id, ac_id, body) -> None:
        from .. import autograd as dist_autograd

        ctx = None
        try:
            obj, tensors = _wire.loads(body)
            if ctx_id is not None:
                ctx = dist_autograd._get_or_create(ctx_id)
                ctx.workers.add(caller)
                if ac_id is not None:
                    ctx.record_recv(caller, ac_id, _wire.grad_tensors(tensors))
            with dist_autograd._as_current(ctx):
                result = self.handlers[kind](self, caller, obj)
        except BaseException as e:
            if msg_id:
                self._reply_error(conn, lock, msg_id, e)
            return
        if not msg_id:
            return
        if isinstance(result, _AsyncResult):
            result.future.add_done_callback(
                lambda f: self._reply_future(conn, lock, msg_id, f, caller, ctx)
            )
        else:
            self._reply(conn, lock, msg_id, result, caller, ctx)

    def _reply_future(self, conn, lock, msg_id, fut, caller, ctx) -> None:
        try:
            value = fut.wait()
        except BaseException as e:
            self._reply_error(conn, lock, msg_id, e)
            return
        self._reply(conn, lock, msg_id, value, caller, ctx)

    def _reply(self, conn, lock, msg_id, value, caller, ctx) -> None:
        try:
            body, tensors = _wire.dumps(value)
            ac_id = None
            if ctx is not None:
                sent = _wire.grad_tensors(tensors)
                if sent:
                    ac_id = ctx.record_send(sent)
            frame = ("reply", msg_id, True, ac_id, body)
        except BaseException as e:
            frame = ("reply", msg_id, False, None, remote_error(e, self.info))
        try:
            send_frame(conn, lock, frame)
        except OSError:
            pass  # the caller is gone

    def _reply_error(self, conn, lock, msg_id, exc) -> None:
        try:
            send_frame(conn, lock, ("reply", msg_id, False, None, remote_error(exc, self.info)))
        except OSError:
            pass

    # ---- the end ------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns = [c[0] for c in self._conns.values()] + list(self._inbound)
            self._conns.clear()
            pend = list(self._pending.values())
            self._pending.clear()
        self._oneway.put(None)
        self._listener.close()
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for p in pend:
            p.fut.set_exception(RuntimeError(f"RPC {p.what} failed: RPC was shut down"))
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self.owned_lock:
            self.owned.clear()


class _AsyncResult:
    """A handler's answer that is still coming (an ``@async_execution`` function's future)."""

    __slots__ = ("future",)

    def __init__(self, future) -> None:
        self.future = future
