"""``ProcessGroup``: a set of ranks with its own sequence of collectives."""

from __future__ import annotations

from ._runtime import _frames
from ._runtime._comm import Comm
from ._runtime._communicator import Communicator
from ._runtime._opctx import OpContext
from .errors import DistributedError


class ProcessGroup:
    """A group of ranks (the default group or one made by ``new_group``).

    Collectives on a group are numbered; the number, the op and its arguments form the
    fingerprint that every rank's frames carry (see ``_opctx.py``).
    """

    def __init__(
        self, world, group_id: int, ranks: list[int], timeout: float, backend: str
    ) -> None:
        self.world = world
        self.group_id = group_id
        self.ranks = list(ranks)
        self.timeout = float(timeout)
        self.backend = backend  # ember's transport choice ("auto", "shm", "grpc", "nccl")
        self.backend_name = backend  # what the user asked for (get_backend); set by the caller
        self._seq = 0
        self._p2p_seq: dict = {}
        self.is_member = world.rank in self.ranks
        self.label = (
            "the default group" if group_id == 0 else f"group {group_id} (ranks {self.ranks})"
        )
        self.comm = self.p2p = self.communicator = None
        self.hosts: list[list[int]] = []
        if self.is_member:
            self.comm = Comm.of(world, self.ranks, _frames.channel_id(group_id, False))
            self.p2p = Comm.of(world, self.ranks, _frames.channel_id(group_id, True))
            index = {r: i for i, r in enumerate(self.ranks)}
            for host in world.hosts:
                members = [index[r] for r in host if r in index]
                if members:
                    self.hosts.append(members)
            # what the collectives talk to: picks NCCL, the arena or the algorithms per call
            self.communicator = Communicator(self)

    # PyTorch's ProcessGroup methods
    def rank(self) -> int:
        return self.ranks.index(self.world.rank) if self.is_member else -1

    def size(self) -> int:
        return len(self.ranks)

    def name(self) -> str:
        return "default_pg" if self.group_id == 0 else str(self.group_id)

    def __repr__(self) -> str:
        return f"ProcessGroup(id={self.group_id}, ranks={self.ranks}, backend={self.backend!r})"

    # ---- ranks --------------------------------------------------------------------------------
    def group_rank(self, global_rank: int, what: str = "rank") -> int:
        """Index of ``global_rank`` in this group, or a ``ValueError`` naming the argument."""
        try:
            return self.ranks.index(int(global_rank))
        except ValueError:
            raise ValueError(
                f"Invalid {what} {global_rank}: it is not a rank of {self.label} "
                f"(ranks {self.ranks})"
            ) from None

    @property
    def hierarchical(self) -> bool:
        """Several hosts, and at least one of them holds several of this group's ranks."""
        return len(self.hosts) > 1 and any(len(h) > 1 for h in self.hosts)

    def scratch(self, key: str, like, count: int | None = None):
        """A reusable flat buffer of ``count`` elements of ``like``'s dtype (default: its
        numel). Ops of a process run one at a time, so one buffer per key is enough."""
        import numpy as np

        dtype = np.dtype(like.dtype.np)
        count = like.numel() if count is None else int(count)
        return self.world.scratch(key, count * dtype.itemsize)[: count * dtype.itemsize].view(dtype)

    def shared_block(self, count: int, dtype):
        """A flat array of ``count`` ``dtype`` elements in this rank's shared-memory arena
        (``_shm_arena.py``), whose allreduce moves no data through messages; ``None``
        when the group's ranks are not all on this host or the arena is full. Every rank must
        hold the buffer of a collective in the arena, or none (agree on it first)."""
        arena = self.comm.arena if self.comm is not None else None
        return None if arena is None else arena.block(count, dtype)

    # ---- per-op context -------------------------------------------------------------------------
    def next_op(self, name: str, desc: str) -> OpContext:
        self.world.raise_if_aborted()
        self._seq += 1
        return OpContext(self.world, self, name, self._seq, desc)

    def p2p_op(self, name: str, desc: str, peer: int, tag: int) -> OpContext:
        self.world.raise_if_aborted()
        key = (name, peer, tag)
        self._p2p_seq[key] = self._p2p_seq.get(key, 0) + 1
        return OpContext(self.world, self, name, self._p2p_seq[key], desc, check_fp=False)

    # ---- stall reports (through the store, only while some rank is waiting) --------------------
    def _arrival_key(self, rank: int) -> str:
        return f"group/{self.group_id}/arrived/{rank}"

    def mark_arrival(self, seq: int, fp: int = 0, what: str = "") -> None:
        """Leave a mark that this rank waits in operation ``seq`` (with fingerprint ``fp``
        and description ``what``: ``OpContext.what``)."""
        try:
            self.world.store.set(self._arrival_key(self.world.rank), f"{seq} {fp} {what}")
            if fp:
                # Where this rank waits, whatever the group: a rank waiting in another group
                # with the same members is a mismatch that no frame can show (issue #28).
                self.world.store.set(f"waiting/{self.world.rank}", f"{self.group_id} {seq} {what}")
        except DistributedError:
            pass

    def _marks(self) -> list:
        """Per rank of the group: ``(seq, fp, what)`` of its last mark, or None."""
        marks = self.world.store.multi_get_nowait([self._arrival_key(r) for r in self.ranks])
        out = []
        for m in marks:
            if m is None:
                out.append(None)
                continue
            seq, fp, what = m.decode().split(" ", 2)
            out.append((int(seq), int(fp), what))
        return out

    def missing(self, seq: int):
        """Ranks that have not marked arrival at collective ``seq`` (best effort)."""
        try:
            marks = self._marks()
        except DistributedError:
            return "unknown (the store is unreachable)"
        return [r for r, m in zip(self.ranks, marks) if m is None or m[0] < seq]

    def conflicting(self, seq: int, fp: int):
        """A rank that waits in operation ``seq`` of this group with another fingerprint (a
        mismatch no message revealed, e.g. when both sides wait to receive), as
        ``(rank, what)``; None when there is none, or the store cannot tell."""
        try:
            marks = self._marks()
            where = self.world.store.multi_get_nowait([f"waiting/{r}" for r in self.ranks])
        except DistributedError:
            return None
        for r, m in zip(self.ranks, marks):
            if m is not None and m[0] == seq and m[1] not in (0, fp):
                return r, OpContext.describe(m[2], seq)
        for r, w in zip(self.ranks, where):
            other = self._other_group_wait(w)
            if other is not None and r != self.world.rank:
                return r, other
        return None

    def _other_group_wait(self, mark: bytes | None) -> str | None:
        """The description of a wait in another group with this group's members, in an
        operation this rank has not entered (so both wait for each other), else None."""
        if mark is None:
            return None
        gid, seq, what = mark.decode().split(" ", 2)
        other = self.world.groups.get(int(gid))
        if (
            other is None
            or other is self
            or sorted(other.ranks) != sorted(self.ranks)
            or other._seq >= int(seq)
        ):
            return None
        op, _, site = what.partition("\0")
        return f"{op} #{seq} on {other.label} at {site}"
