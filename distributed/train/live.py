"""A live per-rank status table for ``Trainer.fit()`` on a terminal.

One row per rank: host, state, step (reports so far), the latest ``loss`` it reported, the time
between its last two reports, and how long ago it last reported — the table a user reads to see
which rank is slow or stuck while a job runs. It is redrawn in place (ANSI cursor movement) at
most every ``refresh`` seconds; messages (``write``) go above it. Off a terminal the Trainer
prints one line per report instead, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class _Rank:
    host: str
    state: str = "starting"
    step: int = 0
    loss: float | None = None
    step_time: float | None = None
    last: float | None = None  # time.monotonic() of the latest report
    started: float = field(default_factory=time.monotonic)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 60 else f"{seconds / 60:.1f}m"


class LiveTable:
    """Rank rows redrawn in place on ``stream`` (a terminal)."""

    HEADER = ("rank", "host", "state", "step", "loss", "step time", "last report")

    def __init__(
        self, hosts: list[str], stream: TextIO | None = None, refresh: float = 0.5
    ) -> None:
        self.ranks = [_Rank(h) for h in hosts]
        self.stream = stream or sys.stderr
        self.refresh = refresh
        self._drawn = 0  # lines of the last drawing, to move back over
        self._at = 0.0

    @staticmethod
    def wanted(stream: TextIO | None = None) -> bool:
        """Whether ``stream`` is a terminal that can take the in-place table."""
        stream = stream or sys.stderr
        return bool(getattr(stream, "isatty", lambda: False)())

    # ---- events ------------------------------------------------------------------------
    def report(self, rank: int, step: int, metrics: dict) -> None:
        r = self.ranks[rank]
        now = time.monotonic()
        r.step_time = now - (r.last if r.last is not None else r.started)
        r.last, r.step, r.state = now, step, "running"
        loss = metrics.get("loss")
        if isinstance(loss, (int, float)):
            r.loss = float(loss)
        self.draw()

    def seen(self, rank: int) -> None:
        """The rank showed a sign of life (output) without a new step."""
        r = self.ranks[rank]
        r.last, r.state = time.monotonic(), "running"

    def finished(self, rank: int, ok: bool) -> None:
        self.ranks[rank].state = "done" if ok else "failed"
        self.draw(force=True)

    def write(self, line: str, stream: TextIO | None = None) -> None:
        """A line above the table (the table is drawn again below it); ``stream`` must be
        the same terminal as the table's (stdout beside a stderr table, say)."""
        self._erase()
        self.stream.flush()
        out = stream or self.stream
        out.write(line + "\n")
        out.flush()
        self.draw(force=True)

    # ---- drawing -----------------------------------------------------------------------
    def rows(self, now: float | None = None) -> list[tuple[str, ...]]:
        now = time.monotonic() if now is None else now
        out = []
        for i, r in enumerate(self.ranks):
            out.append(
                (
                    str(i),
                    r.host,
                    r.state,
                    str(r.step),
                    "-" if r.loss is None else f"{r.loss:.4g}",
                    _age(r.step_time),
                    _age(None if r.last is None else now - r.last),
                )
            )
        return out

    def render(self, now: float | None = None) -> list[str]:
        table = [self.HEADER, *self.rows(now)]
        widths = [max(len(row[c]) for row in table) for c in range(len(self.HEADER))]
        return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]

    def draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._at < self.refresh:
            return
        self._at = now
        self._erase()
        lines = self.render(now)
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        self._drawn = len(lines)

    def _erase(self) -> None:
        if self._drawn:
            # up to the table's first line, then clear to the end of the screen
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def close(self) -> None:
        self.draw(force=True)
        self._drawn = 0  # leave the final table on screen
