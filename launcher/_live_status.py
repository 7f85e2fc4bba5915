"""The live per-rank table for ``ember launch`` on a terminal.

A launched script is plain PyTorch-style code that reports nothing to ember, so the table reads
what each rank prints: a number after ``step``/``iter``/``epoch`` is its step, a number after
``loss`` its loss, and any output counts as a sign of life ("last report"). The workers' lines
are written above the table, which stays at the bottom of the terminal.
"""

from __future__ import annotations

import re
import sys

from ember.distributed.train.live import LiveTable

_STEP = re.compile(r"\b(?:step|iter(?:ation)?|epoch)\s*[=:]?\s*(\d+)", re.IGNORECASE)
_LOSS = re.compile(r"\bloss\s*[=:]?\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)",
                   re.IGNORECASE)


def parse_progress(text: str) -> tuple[int | None, float | None]:
    """``(step, loss)`` read from one output line (``None`` where the line has none)."""
    step = _STEP.search(text)
    loss = _LOSS.search(text)
    return (int(step.group(1)) if step else None, float(loss.group(1)) if loss else None)


class LaunchStatus:
    """Keeps the table under the workers' output (both on the same terminal)."""

    def __init__(self, hosts: list[str]) -> None:
        self.table = LiveTable(hosts, stream=sys.stderr)
        self.table.draw(force=True)

    @staticmethod
    def wanted() -> bool:
        return LiveTable.wanted(sys.stderr) and LiveTable.wanted(sys.stdout)

    def line(self, rank: int, text: str, stream) -> None:
        """Write a worker's line above the table and read its progress."""
        step, loss = parse_progress(text)
        if step is not None:
            self.table.report(rank, step, {} if loss is None else {"loss": loss})
        else:
            self.table.seen(rank)
        self.table.write(text, stream)

    def finished(self, rank: int, code: int) -> None:
        self.table.finished(rank, ok=code == 0)

    def close(self) -> None:
        self.table.close()
