"""Per-operation context: fingerprint, call site, and what a blocked wait does meanwhile.

Every collective gets an ``OpContext`` when it is issued: a sequence number within its group,
a description of what must agree across ranks (op, shapes, dtype, root, reduce op), and the
Python call site. Its 64-bit fingerprint rides in every frame header, its description and call
site too, so a receiver that sees a different fingerprint can name both sides.

While a transport waits for a peer it calls ``on_idle`` every ``SLICE`` seconds. That is where
aborts from other ranks are noticed, where stalls are reported (naming the ranks that have not
arrived, from arrival marks that waiting ranks leave in the store), and where the collective
timeout turns into a ``DistributedError`` instead of a hang.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sys
import time

from ..errors import DistBackendError, DistributedError
from . import _progress

logger = logging.getLogger("ember.distributed")

SLICE = 0.2  # seconds a transport blocks before calling on_idle
_POLL_EVERY = 1.0  # seconds between checks of the store's abort key while waiting
_PUBLISH_AFTER = 0.5  # a rank waiting this long marks its arrival in the store

_SKIP_DIRS: tuple[str, ...] = ()


def _skip_dirs() -> tuple[str, ...]:
    # Frames inside ember (core/ and distributed/) are not the user's call site: DDP's
    # gradient hooks should point at the user's loss.backward(), not at ember's internals.
    global _SKIP_DIRS
    if not _SKIP_DIRS:
        import ember

        _SKIP_DIRS = (
            os.path.dirname(ember.__file__) + os.sep,
            # ember.distributed (this file lives in its _runtime/ since the move, issue 24)
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
            os.path.dirname(__import__("threading").__file__) + os.sep + "threading",
        )
    return _SKIP_DIRS


def call_site() -> str:
    """``file:line in function`` of the nearest caller outside ember."""
    skip = _skip_dirs()
    f = sys._getframe(1)
    while f is not None and f.f_code.co_filename.startswith(skip):
        f = f.f_back
    if f is None:
        return "<ember internals>"
    return f"{_shown_path(f.f_code.co_filename)}:{f.f_lineno} in {f.f_code.co_name}"


@functools.lru_cache(maxsize=256)
def _shown_path(path: str) -> str:
    """The path relative to the working directory when it lies below it (cached: relpath calls
    getcwd, which costs more than the rest of a small collective's bookkeeping)."""
    try:
        rel = os.path.relpath(path)
        return rel if not rel.startswith("..") else path
    except ValueError:
        return path


def fingerprint(text: str) -> int:
    """A stable 64-bit hash (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


@functools.lru_cache(maxsize=1024)
def _op_hash(group_id: int, what: str) -> int:
    return fingerprint(f"{group_id}|{what}")


def op_fingerprint(group_id: int, seq: int, what: str) -> int:
    """The fingerprint of operation number ``seq`` described by ``what`` (odd, never 0): a
    cached hash of the description mixed with the number, which differs for every ``seq``;
    hashing afresh per call costs more than the rest of a small collective's bookkeeping."""
    return ((_op_hash(group_id, what) ^ (seq * 0x9E3779B97F4A7C15)) & _MASK64) | 1


_MASK64 = (1 << 64) - 1


class OpContext:
    """One operation's identity and its waiting policy (see the module docstring)."""

    __slots__ = (
        "world",
        "group",
        "name",
        "seq",
        "desc",
        "site",
        "fp",
        "_info",
        "timeout",
        "deadline",
        "started",
        "_published",
        "_next_warn",
        "_next_poll",
    )

    def __init__(
        self,
        world,
        group,
        name: str,
        seq: int,
        desc: str,
        site: str | None = None,
        check_fp: bool = True,
    ):
        self.world = world
        self.group = group
        self.name = name
        self.seq = seq
        self.desc = desc
        self.site = site if site is not None else call_site()
        # A zero fingerprint disables the check (point-to-point messages compare sizes only).
        self.fp = op_fingerprint(group.group_id, seq, name + desc) if check_fp else 0
        self._info = None
        self.timeout = group.timeout
        self.started = self.deadline = 0.0

    def start(self) -> OpContext:
        _progress.stamp()  # this rank is not hung (the Trainer's hang watch)
        self.started = time.monotonic()
        self.deadline = self.started + self.timeout
        self._published = False
        self._next_warn = self.started + self.world.stall_interval
        self._next_poll = self.started + _POLL_EVERY
        return self

    @property
    def what(self) -> str:
        """The operation and its call site without its sequence number (the same for every
        step of a training loop), NUL-separated; ``describe`` formats it as ``info`` does."""
        return f"{self.name}{self.desc}\0{self.site}"

    @staticmethod
    def describe(what: str, seq: int) -> str:
        op, _, site = what.partition("\0")
        return f"{op} #{seq} at {site}"

    @property
    def info(self) -> bytes:
        """What frames carry to name this operation on the other side (built when first sent:
        operations that move no frames never need it)."""
        if self._info is None:
            self._info = self.describe(self.what, self.seq).encode()
        return self._info

    @property
    def label(self) -> str:
        return f"{self.name} #{self.seq} of {self.group.label}"

    # ---- called by transports while they wait -----------------------------------------------
    def on_idle(self, peer: int | None) -> None:
        """Raise if the job aborted or the timeout passed; report stalls. ``peer``: who we
        wait for (``None``: any rank)."""
        world = self.world
        world.raise_if_aborted()
        now = time.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + _POLL_EVERY
            world.poll_abort()
            if self._published and self.fp:
                self._check_marks()
        if not self._published and now - self.started >= _PUBLISH_AFTER:
            self._published = True
            self.group.mark_arrival(self.seq, self.fp, self.what)
        if now >= self._next_warn:
            self._next_warn = now + world.stall_interval
            logger.warning(
                "rank %d has waited %.1f s in %s (at %s)%s; ranks that have not arrived: %s",
                world.rank,
                now - self.started,
                self.label,
                self.site,
                self._waiting_on(peer),
                self.group.missing(self.seq),
            )
        if now >= self.deadline:
            raise world.fail(
                DistributedError(
                    f"Timed out after {self.timeout:g} s in {self.label} on rank {world.rank} (at "
                    f"{self.site}){self._waiting_on(peer)}; ranks that have not arrived: "
                    f"{self.group.missing(self.seq)}"
                )
            )

    def _check_marks(self) -> None:
        """Raise if another rank waits in this operation's slot with another operation."""
        other = self.group.conflicting(self.seq, self.fp)
        if other is not None:
            rank, theirs = other
            raise self.world.fail(
                DistributedError(
                    f"collective mismatch in {self.group.label}: rank {self.world.rank} called "
                    f"{self.info.decode()}, but rank {rank} called {theirs}"
                )
            )

    def _waiting_on(self, peer: int | None) -> str:
        if peer is None:
            return ", waiting for any rank"
        return f", waiting for rank {peer} ({self.world.describe(peer)})"

    # ---- errors the transports raise ----------------------------------------------------------
    def mismatch(self, peer: int, frame) -> DistributedError:
        """The peer's frame belongs to a different operation than ours."""
        theirs = frame.info.decode(errors="replace") if frame.info else "an unknown operation"
        return self.world.fail(
            DistributedError(
                f"collective mismatch in {self.group.label}: rank {self.world.rank} called "
                f"{self.info.decode()}, but rank {peer} called {theirs}"
            )
        )

    def size_mismatch(self, peer: int, expected: int, got: int, frame) -> DistributedError:
        theirs = frame.info.decode(errors="replace") if frame.info else "?"
        return self.world.fail(
            DistributedError(
                f"size mismatch in {self.group.label}: rank {self.world.rank} expected {expected} "
                f"bytes from rank {peer} for {self.info.decode()}, but rank {peer} sent {got} "
                f"bytes for {theirs}"
            )
        )

    def peer_gone(self, peer: int, reason: str) -> DistributedError:
        # A rank that found a mismatch reports it and then exits; its end of stream must not
        # hide the cause, so prefer a pending abort message over "peer gone".
        cause = self.world.pending_abort()
        if cause is not None:
            return DistributedError(cause)
        return self.world.fail(
            DistBackendError(
                f"rank {peer} ({self.world.describe(peer)}) {reason} while rank {self.world.rank} "
                f"was in {self.label} (at {self.site})"
            )
        )
