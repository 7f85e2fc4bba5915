"""The cold half of ``ShmTransport`` (a mixin): connecting to the local peers (mapping their
segments, opening the signalling sockets), and tearing it all down.

The data path (``send`` / ``post`` / ``wait`` and the frame pump) and the segment's creation
stay in ``_shm.py``, which re-exports ``SHM_DIR``.
"""

from __future__ import annotations

import atexit
import mmap
import os
import socket
import time

import numpy as np

from ..errors import DistBackendError
from . import _frames
from ._opctx import SLICE
from ._transport import await_registered, client_handshake, connect_with_retry

SHM_DIR = "/dev/shm"


class _ShmSetupMixin:
    """``connect`` / ``_register`` / ``unlink`` / ``close`` of ``ShmTransport``."""

    def connect(self, peers: dict[int, dict], deadline: float) -> None:
        """Map every local peer's segment and open the signalling sockets."""
        for peer, ep in sorted(peers.items()):
            fd = os.open(os.path.join(SHM_DIR, ep["segment"]), os.O_RDONLY)
            try:
                size = os.fstat(fd).st_size
                m = mmap.mmap(fd, size, prot=mmap.PROT_READ)
            finally:
                os.close(fd)
            self._in_maps.append(m)
            self._in[peer] = np.frombuffer(m, dtype=np.uint8)
            theirs = [r for r in self.local_ranks if r != peer]
            ring = ep["slots"] * ep["slot_bytes"]
            if ep["slot_bytes"] != self.slot_bytes or ep["slots"] != self.slots:
                raise DistBackendError(
                    f"rank {peer} uses shared-memory rings of {ep['slots']} x "
                    f"{ep['slot_bytes']} bytes, this rank {self.slots} x {self.slot_bytes}: "
                    "set EMBER_SHM_SLOTS / EMBER_SHM_SLOT_BYTES alike on every rank"
                )
            self._in_base[peer] = theirs.index(self.rank) * ring
            if self._own_arena is not None and ep.get("arena"):
                self._own_arena.attach(peer, ep["arena"])
            if peer < self.rank:
                sock = connect_with_retry(
                    socket.AF_UNIX, ep["uds"], deadline, f"rank {peer}", self.rendezvous_check
                )
                client_handshake(
                    sock, self.token, self.rank, peer, max(1.0, deadline - time.monotonic())
                )
                self._register(peer, sock)
        await_registered(
            self._ready,
            self._socks,
            peers,
            deadline,
            self.rendezvous_check,
            SLICE,
            lambda missing: (
                f"ranks {missing} did not connect to rank "
                f"{self.rank}'s shared-memory transport in time"
            ),
        )
        # Every rank sees the same endpoints, so all agree on whether the arena is usable.
        if self._own_arena is not None and all(ep.get("arena") for ep in peers.values()):
            self.arena = self._own_arena

    def _register(self, peer: int, sock: socket.socket) -> None:
        with self._ready:
            if peer in self._socks:
                sock.close()
                return
            self._socks[peer] = sock
            self._peer_of[sock.fileno()] = peer
            self._ready.notify_all()

    def unlink(self) -> None:
        """Remove the segments' names; mappings stay valid (called once every peer mapped
        them)."""
        try:
            os.unlink(self._path)
        except FileNotFoundError:
            pass
        if self._own_arena is not None:
            self._own_arena.unlink()

    def close(self, clean: bool = True) -> None:
        self._listener.close()
        bye = _frames.pack(_frames.BYE, 0, 0, 0, 0, 0, 0)
        for sock in self._socks.values():
            if clean:
                try:
                    sock.settimeout(1.0)
                    sock.sendall(bye)
                except OSError:
                    pass
            sock.close()
        self._socks.clear()
        self._peer_of.clear()
        self.unlink()
        if self._own_arena is not None:
            self._own_arena.close()
        self.arena = self._own_arena = None
        atexit.unregister(self.unlink)
        # Unmap the rings now (each mmap holds a descriptor and the pages until closed).
        self._in, self._out = {}, None
        for m in [*self._in_maps, self._map]:
            try:
                m.close()
            except BufferError:
                pass  # still exported: closed with its last array
        self._in_maps = []
