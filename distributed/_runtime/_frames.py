"""The frame header every transport puts in front of a chunk.

A frame is a fixed 56-byte header, the sender's fingerprint description (``info_len`` bytes of
UTF-8, so a mismatch can name the other side's op and call site), then ``nbytes`` of payload
(inline on sockets and gRPC; in a shared-memory slot for the shm transport).
"""

from __future__ import annotations

import struct

MAGIC = b"EMB1"
HEADER = struct.Struct("<4sBBHIqQQQQi")
HEADER_SIZE = HEADER.size

# frame kinds
DATA = 1  # a chunk of a collective or point-to-point message
CREDIT = 2  # shm: the receiver released slot `slot` of the sender's ring
BYE = 3  # the sender is leaving the group cleanly (destroy_process_group)
ACK = 4  # socket: the sender has read `seq` data frames of this connection's peer (_link.py)
RESUME = 5  # socket, first frame on a (re)connection: the sender has read `seq` frames
PROBE = 6  # socket: a liveness probe on a new connection, closed at once (_link.py)


def channel_id(group_id: int, p2p: bool) -> int:
    """Collectives and point-to-point messages of a group travel on separate channels."""
    return group_id * 2 + (1 if p2p else 0)


class Frame:
    """A decoded header (the payload stays with the transport)."""

    __slots__ = ("kind", "channel", "tag", "seq", "fp", "nbytes", "total", "slot", "info")

    def __init__(self, kind, channel, tag, seq, fp, nbytes, total, slot, info=b""):
        self.kind = kind
        self.channel = channel
        self.tag = tag
        self.seq = seq
        self.fp = fp
        self.nbytes = nbytes  # this piece
        self.total = total  # the whole message this piece belongs to
        self.slot = slot
        self.info = info

    @property
    def key(self) -> tuple[int, int]:
        return (self.channel, self.tag)


def pack(
    kind: int,
    channel: int,
    tag: int,
    seq: int,
    fp: int,
    nbytes: int,
    total: int,
    slot: int = -1,
    info: bytes = b"",
) -> bytes:
    return HEADER.pack(MAGIC, kind, 0, len(info), channel, tag, seq, fp, nbytes, total, slot) + info


def unpack(buf) -> Frame:
    """Decode the fixed part of a header; ``info`` is filled in by the caller."""
    magic, kind, _flags, info_len, channel, tag, seq, fp, nbytes, total, slot = HEADER.unpack(buf)
    if magic != MAGIC:
        raise ValueError(
            f"bad frame magic {magic!r}: the peer is not an ember rank of this job "
            "or the stream is corrupt"
        )
    f = Frame(kind, channel, tag, seq, fp, nbytes, total, slot)
    f.info = info_len  # the caller reads that many bytes next and replaces this
    return f
