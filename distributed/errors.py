"""Errors raised by ``ember.distributed`` (PyTorch's ``DistError`` family, one base class)."""

from __future__ import annotations


class DistributedError(RuntimeError):
    """A collective, rendezvous or store operation failed (PyTorch's ``DistError``).

    Every failure of the distributed layer raises this class or a subclass: a mismatch between
    ranks, a timeout, a dead peer, a refused token, or bad arguments that only show up across
    ranks.
    """


class DistBackendError(DistributedError):
    """A transport (shared memory, socket, gRPC, NCCL) failed or a peer went away."""


class DistStoreError(DistributedError):
    """The rendezvous store failed: unreachable, timed out or refused the token."""


class DistNetworkError(DistributedError):
    """A network endpoint could not be reached or bound."""


# PyTorch's name for the base class.
DistError = DistributedError
