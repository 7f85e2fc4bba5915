"""The Trainer's progress watchdog, ``FailureConfig(worker_hang_timeout_s=...)`` (issue #28).

Progress is a counter in each worker (``_runtime/_progress.py``) that every collective and
every ``report()`` bumps. With the watchdog on, each worker runs a ``Beacon`` thread that sends
its counter to the driver every ``interval`` seconds (through the report inbox, as a ``Beat``).
The driver's ``HangWatch`` notes, by its own clock, when each rank's counter last moved; a rank
whose counter has not moved for the timeout is hung. The watch then asks every rank for the
Python stacks of all its threads (``faulthandler``; the inbox answers the next beat with
``DUMP``), waits a few beats for them, and fails the attempt with the hung rank's name and
every rank's stacks; the Trainer restarts or raises per its failure policy. A rank that sends
no beats at all (its process is frozen) is hung too, and named without stacks. When several
ranks are still, the one outside any collective is named first: the others wait for it, and
which of them moved last is a race (a rank can enter the next collective before a slower peer
reaches its last ``report()``).

A worker busy in a long computation between collectives, a long first epoch's data loading,
or a step longer than the timeout count as hung: choose the timeout above the longest gap
between two reports or collectives of a healthy run.
"""

from __future__ import annotations

import faulthandler
import tempfile
import threading
import time
from dataclasses import dataclass

from ..._runtime import _progress

ACK, DUMP = b"\x01", b"\x02"  # the inbox's answers to a beat


@dataclass
class Beat:
    """One worker's heartbeat: its rank, the seconds since its last progress, its stacks once
    asked, and whether it is waiting inside a collective."""

    rank: int
    idle: float
    stacks: str | None = None
    in_collective: bool = False


def python_stacks() -> str:
    """Every thread's Python stack in this process, as ``faulthandler`` writes it."""
    with tempfile.TemporaryFile(mode="w+") as f:
        faulthandler.dump_traceback(f, all_threads=True)
        f.seek(0)
        return f.read()


def interval_for(timeout: float) -> float:
    """How often a worker beats: often enough to see a hang within ~1/4 of the timeout."""
    return max(0.05, min(1.0, float(timeout) / 4))


class Beacon:
    """Worker side: a daemon thread beating through ``client.beat`` (see the docstring)."""

    def __init__(self, client, rank: int, interval: float) -> None:
        self.client, self.rank, self.interval = client, int(rank), float(interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ember-hang-beacon", daemon=True)

    def start(self) -> Beacon:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        stacks = None
        while not self._stop.is_set():
            try:
                beat = Beat(self.rank, _progress.idle(), stacks, _progress.running > 0)
                reply = self.client.beat(beat)
            except Exception:
                return  # the driver is gone or ended the run: nothing left to tell it
            stacks = python_stacks() if reply == DUMP else None
            if stacks is None:
                self._stop.wait(self.interval)


class HangWatch:
    """Driver side: which rank is hung, and every rank's stacks (see the module docstring)."""

    def __init__(self, timeout: float, infos, inbox, clock=time.monotonic) -> None:
        self.timeout = float(timeout)
        self.interval = interval_for(timeout)
        self.infos, self.inbox, self.clock = infos, inbox, clock
        self._idle: dict[int, tuple[float, float]] = {}  # rank -> (idle, when it was told)
        self._waiting: dict[int, bool] = {}  # rank -> inside a collective at its last beat
        self._stacks: dict[int, str] = {}
        self._hung: list[tuple[int, float]] | None = None  # (rank, seconds still) when found
        self._collect_until = 0.0

    def take(self, beat: Beat) -> None:
        self._idle[beat.rank] = (float(beat.idle), self.clock())
        self._waiting[beat.rank] = bool(beat.in_collective)
        if beat.stacks is not None and self._hung is not None:
            self._stacks[beat.rank] = beat.stacks

    def _still(self, now: float) -> list[tuple[int, float]]:
        """``(rank, seconds still)`` past the timeout: ranks outside any collective first (the
        cause; the others wait for it), then the longest still."""
        idle = {r: i + now - t for r, (i, t) in self._idle.items()}
        return sorted(
            ((r, s) for r, s in idle.items() if s > self.timeout),
            key=lambda x: (self._waiting.get(x[0], False), -x[1]),
        )

    def check(self):
        """``(rank, node, pid, detail)`` of a hang once the stacks are in (or overdue), else
        ``None``."""
        now = self.clock()
        if self._hung is None:
            # a rank that never beat has not started yet (it is not judged); one that beat
            # once and then fell silent shows as still, like one that beats without progress
            found = self._still(now)
            if not found:
                return None
            self._hung = found
            self._collect_until = now + 3 * self.interval + 2.0
            self.inbox.want_stacks = True
        n = len(self.infos)
        if len(self._stacks) < n and now < self._collect_until:
            return None
        self.inbox.want_stacks = False
        # judged again now: a peer that went still just after the first found one is still too
        hung = self._still(now) or self._hung
        (rank, seconds), info = hung[0], self.infos[hung[0][0]]
        others = ", ".join(f"rank {r} ({s:.1f} s)" for r, s in hung[1:])
        parts = [
            f"rank {rank} (node {info.node_ip}, pid {info.pid}) made no progress (no report(), "
            f"no collective) for {seconds:.1f} s, over FailureConfig.worker_hang_timeout_s="
            f"{self.timeout:g}" + (f"; also still: {others}" if others else "") + ".",
            "Python stacks of all ranks (faulthandler):",
        ]
        for r in range(n):
            text = self._stacks.get(r)
            parts.append(f"--- rank {r} ---")
            parts.append(text.rstrip() if text else "(no answer: the process does not respond)")
        return rank, info.node_ip, info.pid, "\n".join(parts)
