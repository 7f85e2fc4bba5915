"""Each rank's gRPC peer service (control: aborts; data: the streamed-chunk data plane).

``PeerServer`` hosts ``ember.peer.Peer`` on the rank's own address. ``Abort`` lets a failing
rank stop the others' waits at once, independent of the state of any data connection. ``Stream``
receives frames for ``GrpcStreamTransport``, the data plane for links where no raw socket can
be opened (``EMBER_DATA_PLANE=grpc``); measured here it moves about half of what raw sockets do
(DESIGN.md section 8), so the socket transport is the default between hosts.
"""

from __future__ import annotations

import queue
from concurrent import futures

from ..errors import DistNetworkError
from . import _auth, _frames
from ._inbox import Inbox
from ._opctx import SLICE
from ._transport import Transport

GRPC_PIECE_BYTES = 1 << 20  # 256 KiB - 1 MiB messages stream fastest (DESIGN.md section 8)
_SERVICE = "ember peer service"


def _servicer_class():
    from ember.protos import peer_pb2, peer_pb2_grpc

    class PeerServicer(peer_pb2_grpc.PeerServicer):
        def __init__(self, token: str, inbox: Inbox, on_abort) -> None:
            self.token, self.inbox, self.on_abort = token, inbox, on_abort

        def Stream(self, request_iterator, context):
            if not _auth.token_ok(context, self.token, _SERVICE):
                return peer_pb2.StreamAck()
            src, count = None, 0
            try:
                for msg in request_iterator:
                    if src is None:
                        src = msg.src
                    hdr = msg.header
                    frame = _frames.unpack(hdr[: _frames.HEADER_SIZE])
                    frame.info = bytes(hdr[_frames.HEADER_SIZE :])
                    if frame.kind == _frames.BYE:
                        self.inbox.peer_gone(src, "left the process group (destroy_process_group)")
                        break
                    self.inbox.deliver(src, frame, lambda view, data=msg.payload: _fill(view, data))
                    count += 1
            except Exception as e:  # the caller vanished mid-stream
                if src is not None:
                    self.inbox.peer_gone(src, f"broke its gRPC stream ({type(e).__name__})")
            else:
                if src is not None:
                    self.inbox.peer_gone(src, "closed its gRPC stream")
            return peer_pb2.StreamAck(frames=count)

        def Abort(self, request, context):
            if _auth.token_ok(context, self.token, _SERVICE):
                self.on_abort(request.rank, request.message)
            return peer_pb2.AbortReply()

    return PeerServicer


class PeerServer:
    """The rank's peer service; ``address`` is published in the store at rendezvous."""

    def __init__(self, bind_host: str, token: str, on_abort) -> None:
        import grpc

        from ember.protos import peer_pb2_grpc

        self.inbox = Inbox()
        self._pool = futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="ember-peer")
        self._server = grpc.server(self._pool, options=_auth.SERVER_OPTIONS)
        peer_pb2_grpc.add_PeerServicer_to_server(
            _servicer_class()(token, self.inbox, on_abort), self._server
        )
        try:
            port = self._server.add_insecure_port(_auth.join_host_port(bind_host, 0))
        except RuntimeError:
            port = 0
        if port == 0:
            raise DistNetworkError(f"the peer service could not bind to {bind_host}")
        self._server.start()
        self.address = _auth.join_host_port(bind_host, port)

    def stop(self) -> None:
        self._server.stop(grace=None).wait(5.0)
        self._pool.shutdown(wait=False, cancel_futures=True)  # (server.stop leaves it running)


def send_aborts(
    addresses: dict[int, str], token: str, rank: int, message: str, timeout: float = 2.0
) -> None:
    """Best effort: tell every rank in ``addresses`` that this job failed with ``message``."""
    import grpc

    from ember.protos import peer_pb2, peer_pb2_grpc

    calls = []
    for addr in addresses.values():
        channel = grpc.insecure_channel(addr, options=_auth.CHANNEL_OPTIONS)
        stub = peer_pb2_grpc.PeerStub(channel)
        calls.append(
            (
                channel,
                stub.Abort.future(
                    peer_pb2.AbortRequest(rank=rank, message=message),
                    metadata=_auth.metadata(token),
                    timeout=timeout,
                ),
            )
        )
    for channel, call in calls:
        try:
            call.result()
        except grpc.RpcError:
            pass
        channel.close()


class GrpcStreamTransport(Transport):
    """Frames over one client-streaming ``Peer.Stream`` call per peer and direction."""

    name = "grpc"

    def __init__(self, rank: int, token: str, server: PeerServer) -> None:
        self.rank, self.token = rank, token
        self.inbox = server.inbox
        self._queues: dict[int, queue.Queue] = {}
        self._calls = {}
        self._channels = []

    def connect(self, peers: dict[int, str], deadline: float) -> None:
        import time

        import grpc

        from ember.protos import peer_pb2_grpc

        for peer, addr in sorted(peers.items()):
            channel = grpc.insecure_channel(addr, options=_auth.CHANNEL_OPTIONS)
            try:
                grpc.channel_ready_future(channel).result(
                    timeout=max(0.1, deadline - time.monotonic())
                )
            except grpc.FutureTimeoutError:
                raise DistNetworkError(
                    f"could not reach rank {peer}'s peer service at {addr}"
                ) from None
            q: queue.Queue = queue.Queue(maxsize=16)
            self._queues[peer] = q
            self._channels.append(channel)
            self._calls[peer] = peer_pb2_grpc.PeerStub(channel).Stream.future(
                _drain(q), metadata=_auth.metadata(self.token)
            )
            self._calls[peer].add_done_callback(lambda call, p=peer: self._on_done(p, call))

    def _on_done(self, peer: int, call) -> None:
        if call.exception() is not None and not call.cancelled():
            self.inbox.peer_gone(peer, f"ended its gRPC stream ({call.exception().code().name})")

    def send(self, peer, ctx, channel, tag, data):
        from ember.protos import peer_pb2

        q = self._queues[peer]
        n, off = len(data), 0
        while True:
            k = min(GRPC_PIECE_BYTES, n - off)
            hdr = _frames.pack(_frames.DATA, channel, tag, ctx.seq, ctx.fp, k, n, -1, ctx.info)
            msg = peer_pb2.Frame(src=self.rank, header=hdr, payload=bytes(data[off : off + k]))
            while True:
                try:
                    q.put(msg, timeout=SLICE)
                    break
                except queue.Full:
                    if self._calls[peer].done():
                        raise ctx.peer_gone(peer, "ended its gRPC stream") from None
                    ctx.on_idle(peer)
            off += k
            if off >= n:
                return

    def post(self, peer, ctx, channel, tag, nbytes, dst=None, consume=None):
        return self.inbox.post(peer, ctx, channel, tag, nbytes, dst, consume)

    def wait(self, pending):
        self.inbox.wait(pending)

    def probe(self, peers, channel, tag):
        return self.inbox.probe(peers, channel, tag)

    def close(self, clean: bool = True) -> None:
        from ember.protos import peer_pb2

        bye = peer_pb2.Frame(src=self.rank, header=_frames.pack(_frames.BYE, 0, 0, 0, 0, 0, 0))
        for q in self._queues.values():
            try:
                if clean:
                    q.put(bye, timeout=1.0)
                q.put(None, timeout=1.0)  # ends the request stream
            except queue.Full:
                pass
        for call in self._calls.values():
            if not clean:
                call.cancel()
                continue
            try:
                call.result(timeout=2.0)  # let the queued frames (and BYE) reach the peer
            except Exception:
                pass
        for channel in self._channels:
            channel.close()


def _fill(view: memoryview, payload: bytes) -> None:
    view[:] = payload


def _drain(q: queue.Queue):
    while True:
        msg = q.get()
        if msg is None:
            return
        yield msg
