"""The collective runtime under ``ember.distributed`` (private; see docs/architecture.md).

One floor below the public API: the per-process ``World`` (rendezvous, endpoints, aborts), the
op context, the transports (shared memory and its arena, futexes, TCP sockets, gRPC peer
streams, NCCL), the ``Comm`` the algorithms speak to, the collective algorithms, and the store
and its authentication. A process group's ``Communicator`` (``_communicator.py``) is the one
entry point of its collectives: it picks NCCL, the shared-memory arena or the algorithms.
Nothing here is imported by users; the public modules one floor up (``collectives``, ``p2p``,
``distributed_c10d``, ``store``) are its only callers.
"""
