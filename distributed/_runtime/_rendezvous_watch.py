"""The rendezvous watchdog: a rank that dies or is turned away while the others wait for it is
noticed within seconds, and every rank fails with that cause (issue #28), not at the
rendezvous timeout (30 minutes by default) as "did not join".

While ``init_process_group`` runs, each rank's watch thread bumps a heartbeat counter in the
store (``alive/<rank>``, every ``EMBER_RENDEZVOUS_HEARTBEAT_S``, default 0.5 s). Rank 0's watch
looks at every rank that has claimed its rank: one on this host whose process is gone is dead
at once; one elsewhere whose counter has not moved for ``EMBER_RENDEZVOUS_DEAD_S`` (default
10 s) is taken for dead. A rank the store refused (wrong ``EMBER_TOKEN``: its store client names
its rank in the ``x-ember-rank`` header, and the store notes the refusal) and that has not
claimed its rank fails the rendezvous with that cause. The other ranks watch rank 0 the same
way. Whoever finds a problem fails the job through the store's abort key (``World.fail``),
which every waiting rank also checks; a rank whose own set-up raises posts its error there too.

The refusal note can be forged by a local process that can reach the store while the
rendezvous runs and names a rank that has not joined yet; single-host jobs bind loopback
(see ``_auth.bind_host``), which keeps that to the machine itself.
"""

from __future__ import annotations

import hmac
import os
import threading
import time

from ember._tempfiles import pid_alive

from ..errors import DistributedError
from . import _auth
from ._shm_reclaim import namespace_tag

RANK_KEY = "x-ember-rank"  # gRPC metadata: the rank a store client joins as
REFUSED_PREFIX = "ember-refused/"  # store keys (outside any generation) of refused ranks
HEARTBEAT_S = float(os.environ.get("EMBER_RENDEZVOUS_HEARTBEAT_S", 0.5))
DEAD_S = float(os.environ.get("EMBER_RENDEZVOUS_DEAD_S", 10.0))


def note_refusal(kv, context, token: str) -> None:
    """Store side: a call whose token is wrong but which names its rank leaves a note for the
    rendezvous watch (called before the token check turns the call away)."""
    md = dict(context.invocation_metadata())
    rank = md.get(RANK_KEY)
    if rank is None or not rank.isdigit():
        return
    if hmac.compare_digest(md.get(_auth.METADATA_KEY, "").encode(), token.encode()):
        return
    reason = "a wrong" if md.get(_auth.METADATA_KEY) else "no"
    kv.set(f"{REFUSED_PREFIX}{rank}", f"{context.peer()}|{reason}".encode())


class RendezvousWatch:
    """The watch thread of one rank's rendezvous (see the module docstring)."""

    def __init__(self, world, interval: float = HEARTBEAT_S, dead_after: float = DEAD_S):
        self.world = world
        self.interval, self.dead_after = float(interval), float(dead_after)
        self.problem: str | None = None
        self._stop = threading.Event()
        self._seen: dict[int, tuple[int, float]] = {}  # rank -> (heartbeat, when it moved)
        self._thread = threading.Thread(
            target=self._run, name="ember-rendezvous-watch", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5.0)

    def check(self) -> None:
        """Raise the problem found, if any (called by every rendezvous wait)."""
        if self.problem is None and self.world.abort_message is not None:
            self.problem = self.world.abort_message
        if self.problem is not None:
            raise DistributedError(f"rendezvous failed: {self.problem}")

    # ---- the thread ----------------------------------------------------------------------
    def _run(self) -> None:
        w = self.world
        while not self._stop.is_set():
            try:
                w.store.add(f"alive/{w.rank}", 1)
                problem = self._inspect()
            except DistributedError:
                problem = None  # the store is unreachable: the waits report that themselves
            if problem is not None and self.problem is None:
                self.problem = problem
                w.fail(DistributedError(problem))
                return
            self._stop.wait(self.interval)

    def _inspect(self) -> str | None:
        w = self.world
        # rank 0 watches everyone, the others watch rank 0 (one store call each)
        ranks = [r for r in range(w.world_size) if r != w.rank] if w.rank == 0 else [0]
        keys = ["abort"]
        for r in ranks:
            keys += [f"rank/{r}", f"alive/{r}"]
        values = w.store.multi_get_nowait(keys)
        if values[0] is not None:
            return values[0].decode()
        refused = w.base_store.multi_get_nowait([f"{REFUSED_PREFIX}{r}" for r in ranks])
        now = time.monotonic()
        host = _auth.host_identity()
        for i, r in enumerate(ranks):
            claim, beat = values[1 + 2 * i], values[2 + 2 * i]
            if claim is None:
                if refused[i] is not None:
                    peer, reason = refused[i].decode().rsplit("|", 1)
                    return (
                        f"rank {r} was turned away by the store ({peer} sent {reason} job "
                        f"token): every rank must run with the same {_auth.TOKEN_ENV}"
                    )
                continue
            owner_host, pid, tail = claim.decode().split("|", 2)
            same_pids = owner_host == host and tail.split(".")[0] == namespace_tag()
            if same_pids and not pid_alive(int(pid)):
                return f"rank {r} (pid {pid}, this host) exited or was killed during the rendezvous"
            count = int(beat) if beat is not None else 0
            last = self._seen.get(r)
            if last is None or last[0] != count:
                self._seen[r] = (count, now)
            elif now - last[1] > self.dead_after:
                return (
                    f"rank {r} (host {owner_host}, pid {pid}) stopped answering during the "
                    f"rendezvous (no heartbeat for {now - last[1]:.0f} s): it probably exited "
                    "or was killed"
                )
        return None
