"""A shared-memory arena per rank that every rank of its host maps writable.

Same-host collectives use it to move data without messages (``_arena_reduce.all_reduce``):
each rank's input lies in its own arena; the rank that owns a segment of the result reads that
segment straight from every arena, reduces it, and writes the result into every arena. Two
rounds of tiny notices on the transport's sockets order the steps. Against the message rings
this saves copying the data into and out of the rings, and most of the per-piece signalling
(2 ranks, 2.1 MB: 0.35 ms against 0.50 ms). Buffers outside the arena keep to the rings:
staging them into the arena costs more memory traffic than it saves (0.75 ms).

The arena is one sparse ``/dev/shm`` file of ``ARENA_BYTES`` (virtual); pages are reserved with
``posix_fallocate`` as blocks are handed out, so a full ``/dev/shm`` shows up as a failed
allocation (callers then keep their buffers in private memory), never as SIGBUS on a write.
Blocks are arrays owned by a caller such as DDP, which keeps its gradient buckets here.

Once a communicator's members have introduced themselves (the first call's notices travel on
the sockets), later calls order their steps with ``Signals``: counters each member writes in a
512-byte block of its own arena, which the others poll and then sleep on as a futex
(``_futex.py``). A notice then costs a store and a wake-up call instead of a socket frame.
Counters publish the data written before them only where stores become visible in program
order, so signals are used on x86-64 Linux and the sockets carry the notices elsewhere
(``EMBER_SHM_SIGNALS=0`` keeps the sockets everywhere).
"""

from __future__ import annotations

import mmap
import os
import threading
import weakref

import numpy as np

from . import _futex, _shm_reclaim

SHM_DIR = "/dev/shm"
ARENA_BYTES = int(os.environ.get("EMBER_SHM_ARENA_BYTES", 8 << 30))
SIGNALS = _futex.available() and os.environ.get("EMBER_SHM_SIGNALS", "1") != "0"
_ALIGN = 64
ARRIVED, DONE = 0, 1  # the counters of a signal block (int32 words 0 and 1)
_SIGNAL_BYTES = 512
_TEXT = 64  # where a signal block's description of its operation starts


class Signals:
    """One communicator's progress counters in shared memory (see the module docstring).

    Each member owns a block: int32 counters ``ARRIVED`` and ``DONE`` (the number of the call
    the member has reached, and finished); then, written before ``ARRIVED``, the int64
    offset, size, fingerprint and sequence number of its operation, the length of its
    description, and from byte 64 the description itself (UTF-8, rewritten only when it
    changes), so that a member that finds the fingerprints differ can name both operations.
    """

    def __init__(self, block: np.ndarray, offset: int) -> None:
        self.offset = offset  # of this member's block in its arena (peers are told it)
        self.nbytes = block.nbytes
        self.calls = 0
        self._block = block
        self._words, self._fields = block.view(np.int32), block.view(np.uint64)
        self._addr = block.__array_interface__["data"][0]
        self._what = None
        self._peers: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, int]] = {}

    def attach(self, member: int, block: np.ndarray) -> None:
        self._peers[member] = (
            block.view(np.int32),
            block.view(np.uint64),
            block,
            block.__array_interface__["data"][0],
        )

    def next_call(self) -> None:
        self.calls = self.calls % 0x7FFFFFFF + 1  # int32 counters; 0 is "never"

    def arrive(self, offset: int, nbytes: int, fp: int, seq: int, what: str) -> None:
        """Publish this member's operation and post ``ARRIVED``."""
        if what != self._what:
            text = what.encode()[: _SIGNAL_BYTES - _TEXT]
            self._block[_TEXT : _TEXT + len(text)] = np.frombuffer(text, dtype=np.uint8)
            self._fields[5] = len(text)
            self._what = what
        f = self._fields
        f[1], f[2], f[3], f[4] = offset, nbytes, fp, seq
        self.post(ARRIVED)

    def post(self, counter: int) -> None:
        """Set ``counter`` to this call's number and wake the members sleeping on it."""
        self._words[counter] = self.calls
        _futex.wake(self._addr + 4 * counter)

    def reached(self, member: int, counter: int) -> bool:
        return self._peers[member][0][counter] == self.calls

    def fields(self, member: int) -> tuple[int, int, int]:
        """``member``'s buffer offset, size and fingerprint (once it has arrived)."""
        f = self._peers[member][1]
        return int(f[1]), int(f[2]), int(f[3])

    def described(self, member: int) -> tuple[str, int]:
        """``member``'s description of its operation, and the operation's number."""
        _, f, block, _ = self._peers[member]
        return bytes(block[_TEXT : _TEXT + int(f[5])]).decode(errors="replace"), int(f[4])

    def sleep(self, member: int, counter: int, timeout: float) -> None:
        """Sleep until ``member`` moves ``counter`` (or ``timeout`` seconds)."""
        words, _, _, addr = self._peers[member]
        seen = int(words[counter])
        if seen != self.calls:
            _futex.wait(addr + 4 * counter, seen, timeout)


class Arena:
    """This rank's arena (see the module docstring) and the mappings of its peers' arenas."""

    def __init__(self, size: int = ARENA_BYTES) -> None:
        self.size = int(size) // _ALIGN * _ALIGN
        self.name = _shm_reclaim.segment_name("arena-")
        self._path = os.path.join(SHM_DIR, self.name)
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(self._fd, self.size)  # sparse: nothing is reserved yet
            self.mapping = mmap.mmap(self._fd, self.size)
        except OSError:
            self.close()
            raise
        self.view = np.frombuffer(self.mapping, dtype=np.uint8)
        self._base = self.view.__array_interface__["data"][0]
        self._free = [(0, self.size)]  # sorted, coalesced (offset, nbytes) holes
        self._high = 0  # [0, _high) has its pages reserved
        self._lock = threading.Lock()
        self._peers: dict[int, np.ndarray] = {}
        self._peer_maps: list[mmap.mmap] = []
        # per communicator (channel, member ranks): its Signals, or None where the members
        # could not all set them up (they then keep to socket notices)
        self.signals: dict[tuple, Signals | None] = {}

    # ---- peers ---------------------------------------------------------------------------------
    def attach(self, rank: int, name: str) -> None:
        """Map peer ``rank``'s arena (read-write: results are pushed into it)."""
        fd = os.open(os.path.join(SHM_DIR, name), os.O_RDWR)
        try:
            m = mmap.mmap(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        self._peer_maps.append(m)
        self._peers[rank] = np.frombuffer(m, dtype=np.uint8)

    def peer(self, rank: int) -> np.ndarray:
        return self._peers[rank]

    # ---- blocks --------------------------------------------------------------------------------
    def alloc(self, nbytes: int) -> int | None:
        """Offset of a fresh block of ``nbytes`` with its pages reserved, or ``None`` when the
        arena or ``/dev/shm`` is full."""
        need = max(_ALIGN, -(-int(nbytes) // _ALIGN) * _ALIGN)
        with self._lock:
            i = next((k for k, (_, size) in enumerate(self._free) if size >= need), None)
            if i is None:
                return None
            off, size = self._free[i]
            # First-fit from offset 0 keeps every block ever handed out inside [0, _high),
            # all of it reserved already: only the part beyond needs reserving (reserving
            # costs ~0.3 us a page even when the pages are there).
            if off + need > self._high:
                try:
                    os.posix_fallocate(self._fd, self._high, off + need - self._high)
                except OSError:
                    return None
                self._high = off + need
            if size == need:
                del self._free[i]
            else:
                self._free[i] = (off + need, size - need)
            return off

    def free(self, offset: int, nbytes: int) -> None:
        need = max(_ALIGN, -(-int(nbytes) // _ALIGN) * _ALIGN)
        with self._lock:
            holes = sorted(self._free + [(offset, need)])
            merged = [holes[0]]
            for off, size in holes[1:]:
                last_off, last_size = merged[-1]
                if last_off + last_size == off:
                    merged[-1] = (last_off, last_size + size)
                else:
                    merged.append((off, size))
            self._free = merged

    def block(self, count: int, dtype) -> np.ndarray | None:
        """A flat array of ``count`` ``dtype`` elements in a block of its own, or ``None``
        when out of space. The block is freed when the array and every view of it are gone
        (views keep their base array alive)."""
        nbytes = max(1, int(count) * np.dtype(dtype).itemsize)
        off = self.alloc(nbytes)
        if off is None:
            return None
        # its own root array (not a view of the whole arena), so memory reports size it right
        arr = np.frombuffer(self.mapping, dtype=dtype, count=int(count), offset=off)
        weakref.finalize(arr, self.free, off, nbytes)
        return arr

    def new_signals(self) -> Signals | None:
        """This member's signal block for a new communicator (``None``: not on this machine,
        or no room). Blocks live as long as the arena."""
        if not SIGNALS:
            return None
        off = self.alloc(_SIGNAL_BYTES)
        if off is None:
            return None
        block = self.view[off : off + _SIGNAL_BYTES]
        block[...] = 0
        return Signals(block, off)

    def peer_block(self, rank: int, offset: int) -> np.ndarray:
        return self._peers[rank][offset : offset + _SIGNAL_BYTES]

    def offset_of(self, arr: np.ndarray) -> int | None:
        """Where ``arr`` (contiguous) lies in this arena, or ``None`` if it lies elsewhere."""
        addr = arr.__array_interface__["data"][0] - self._base
        return addr if 0 <= addr and addr + arr.nbytes <= self.size else None

    # ---- teardown ------------------------------------------------------------------------------
    def unlink(self) -> None:
        try:
            os.unlink(self._path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Drop the name and the file descriptor; the mappings stay valid while arrays use
        them (NumPy views keep the maps alive)."""
        self.unlink()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        # Each mmap object holds a duplicate of its file's descriptor and the pages until it
        # is closed: close the peers' now (a mapping still exported to an array stays open,
        # and is closed with its last array).
        self._peers, self.signals, self.view = {}, {}, None
        maps = [*getattr(self, "_peer_maps", []), getattr(self, "mapping", None)]
        self._peer_maps = []
        for m in maps:
            try:
                if m is not None:
                    m.close()
            except BufferError:
                pass
