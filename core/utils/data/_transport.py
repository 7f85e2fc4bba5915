"""Moving batches from worker processes to the main process.

Objects are pickled with protocol 5 so that NumPy buffers (the data behind tensors) come out of
band. Small batches travel inline through the worker's pipe. Large ones are written once into a
fresh file in ``/dev/shm`` and only a short header crosses the pipe: the main process maps the
file, unlinks it at once and unpickles arrays that point straight into the mapping, so the data
is copied once (in the worker) instead of three times (pickle, pipe write, pipe read).

Measured on the 2-core dev machine (one worker sending to the main process, main-process CPU
per batch): 768 KiB 1.0 ms through a pipe vs 0.25 ms through shared memory; 6 MiB 7.7 ms vs
1.9 ms; 38 MiB 79 ms vs 12 ms. Below ~64 KiB the two cost the same, so small batches stay inline.
On the worker side ``pwrite`` into the file beat a ``posix_fallocate`` + ``mmap`` copy (3 MiB:
1.7 ms vs 2.5 ms; fresh pages dominate either way).

Where ``/dev/shm`` is missing or full, buffers follow the header through the pipe as separate
messages (no extra copy into the pickle stream), received into writable bytearrays.
"""

from __future__ import annotations

import glob
import mmap
import os
import pickle
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # multiprocessing loads only when workers start
    from multiprocessing.connection import Connection

_SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
_INLINE_LIMIT = 32 * 1024  # bytes of array data below which a batch goes through the pipe
_ALIGN = 64  # arrays start on cache-line boundaries inside the shared file
# The main process maps a file it received with every page at once, not one fault per page.
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


class Sender:
    """Worker side: sends objects on ``conn``, large buffers through shared-memory files named
    ``<prefix>-<n>`` (``prefix`` None disables shared memory)."""

    def __init__(self, conn: Connection, prefix: str | None) -> None:
        self.conn = conn
        self.prefix = prefix if _SHM_DIR is not None else None
        self.count = 0

    def send(self, obj) -> None:
        bufs: list[pickle.PickleBuffer] = []
        head = pickle.dumps(obj, protocol=5, buffer_callback=bufs.append)
        raws = [b.raw() for b in bufs]
        total = sum(r.nbytes for r in raws)
        if total < _INLINE_LIMIT:
            if bufs:
                head = pickle.dumps(obj, protocol=5)  # small: arrays in-band, one message
            self.conn.send_bytes(b"P" + head)
            return
        if self.prefix is not None and self._send_shm(head, raws):
            return
        self.conn.send_bytes(b"B" + pickle.dumps(([r.nbytes for r in raws], head), protocol=5))
        for r in raws:
            self.conn.send_bytes(r)

    def _send_shm(self, head: bytes, raws: list[memoryview]) -> bool:
        spans, offset = [], 0
        for r in raws:
            spans.append((offset, r.nbytes))
            offset += (r.nbytes + _ALIGN - 1) // _ALIGN * _ALIGN
        self.count += 1
        name = f"{self.prefix}-{self.count}"
        path = os.path.join(_SHM_DIR, name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            return False
        try:
            # write() rather than a mapping: one copy straight into the page cache, and a full
            # /dev/shm fails here with ENOSPC instead of killing the worker with SIGBUS.
            os.ftruncate(fd, offset)  # sets the size only; pages come with the writes
            for (start, n), r in zip(spans, raws):
                done = 0
                while done < n:
                    done += os.pwrite(fd, r[done:], start + done)
        except OSError:
            os.close(fd)
            os.unlink(path)
            return False
        os.close(fd)
        self.conn.send_bytes(b"S" + pickle.dumps((name, offset, spans, head), protocol=5))
        return True


def recv(conn: Connection):
    """Main side: receive one object sent by :class:`Sender` (raises EOFError if the pipe
    closed)."""
    msg = conn.recv_bytes()
    tag, body = msg[:1], memoryview(msg)[1:]
    if tag == b"P":
        return pickle.loads(body)
    if tag == b"S":
        name, size, spans, head = pickle.loads(body)
        path = os.path.join(_SHM_DIR, name)
        fd = os.open(path, os.O_RDWR)
        try:
            mm = mmap.mmap(fd, size, flags=_MAP_FLAGS)
        finally:
            os.close(fd)
            os.unlink(path)  # the mapping keeps the pages until the last array goes away
        view = memoryview(mm)
        return pickle.loads(head, buffers=[view[s : s + n] for s, n in spans])
    if tag == b"B":
        sizes, head = pickle.loads(body)
        bufs = []
        for n in sizes:
            buf = bytearray(n)
            conn.recv_bytes_into(buf)
            bufs.append(buf)
        return pickle.loads(head, buffers=bufs)
    raise RuntimeError(f"DataLoader: corrupt message from a worker (tag {tag!r})")


def remove_leftovers(prefix: str) -> None:
    """Unlink shared-memory files of ``prefix`` that were sent but never received."""
    if _SHM_DIR is None:
        return
    for path in glob.glob(os.path.join(_SHM_DIR, glob.escape(prefix) + "-*")):
        try:
            os.unlink(path)
        except OSError:
            pass
