"""The gRPC store service (hosted by the master ``TCPStore``, normally rank 0)."""

from __future__ import annotations

import time
from concurrent import futures

from ..errors import DistNetworkError
from . import _auth
from ._kv import KeyValueTable
from ._rendezvous_watch import note_refusal

_SERVICE = "ember store"


def _servicer_class():
    from ember.protos import store_pb2 as pb
    from ember.protos import store_pb2_grpc

    class StoreServicer(store_pb2_grpc.StoreServicer):
        """Serves a ``KeyValueTable``; every method first checks the job token."""

        def __init__(self, token: str) -> None:
            self.kv = KeyValueTable()
            self.token = token

        def _ok(self, context) -> bool:
            note_refusal(self.kv, context, self.token)  # (a joining rank's, for the watch)
            return _auth.token_ok(context, self.token, _SERVICE)

        def Set(self, request, context):
            if self._ok(context):
                self.kv.set(request.key, request.value)
            return pb.SetResponse()

        def Get(self, request, context):
            if not self._ok(context):
                return pb.GetResponse()
            value = self.kv.get(request.key, request.timeout_ms / 1000.0)
            return pb.GetResponse(found=value is not None, value=value or b"")

        def Wait(self, request, context):
            if not self._ok(context):
                return pb.WaitResponse()
            missing = self.kv.wait(list(request.keys), request.timeout_ms / 1000.0)
            return pb.WaitResponse(missing=missing)

        def Add(self, request, context):
            if not self._ok(context):
                return pb.AddResponse()
            try:
                return pb.AddResponse(value=self.kv.add(request.key, request.amount))
            except ValueError as e:
                import grpc

                context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))

        def CompareSet(self, request, context):
            if not self._ok(context):
                return pb.CompareSetResponse()
            value = self.kv.compare_set(request.key, request.expected, request.desired)
            return pb.CompareSetResponse(value=value)

        def Delete(self, request, context):
            if not self._ok(context):
                return pb.DeleteResponse()
            return pb.DeleteResponse(deleted=self.kv.delete(request.key))

        def NumKeys(self, request, context):
            if not self._ok(context):
                return pb.NumKeysResponse()
            return pb.NumKeysResponse(count=self.kv.num_keys())

        def MultiGet(self, request, context):
            if not self._ok(context):
                return pb.MultiGetResponse()
            values = self.kv.multi_get(list(request.keys))
            return pb.MultiGetResponse(
                found=[v is not None for v in values], values=[v or b"" for v in values]
            )

    return StoreServicer


def serve(host: str, port: int, token: str, world_size: int | None):
    """Start the store service on ``host:port``; returns ``(server, bound_port)``."""
    import grpc

    from ember.protos import store_pb2_grpc

    # Blocking Get/Wait calls hold a thread each: leave room for every rank to wait at once.
    workers = 32 + 4 * int(world_size or 0)
    pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ember-store")
    server = grpc.server(pool, options=_auth.SERVER_OPTIONS)
    store_pb2_grpc.add_StoreServicer_to_server(_servicer_class()(token), server)
    address = _auth.join_host_port(host, port)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as e:  # newer grpcio raises instead of returning 0
        bound, reason = 0, str(e)
    else:
        reason = "address already in use or not an address of this machine"
    if bound == 0:
        server.stop(None)
        raise DistNetworkError(f"the store could not bind to {address}: {reason}")
    server.start()
    return _StoreServer(server, pool), bound


class _StoreServer:
    """The gRPC server and its thread pool, which ``server.stop()`` leaves running: ``stop``
    ends both, so that a destroyed process group leaves no threads behind (issue #28)."""

    def __init__(self, server, pool: futures.ThreadPoolExecutor) -> None:
        self.server, self.pool = server, pool

    def stop(self, grace=None, timeout: float = 5.0) -> None:
        self.server.stop(grace).wait(timeout)  # the port is free again after this
        self.pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + 1.0
        # idle workers exit at once; a handler still blocked in a long get() is left to end
        for t in list(getattr(self.pool, "_threads", ())):
            t.join(max(0.0, deadline - time.monotonic()))
