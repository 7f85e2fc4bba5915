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
_LOSS = re.compile(r"\bloss\s*[=:]?\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)", re.IGNORECASE)


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


_RANK_LINE = re.compile(r"^\[rank(\d+)\]: (.*)$")
_TRAINER_LINE = re.compile(r"^\(ember trainer\) \[iter (\d+)\] (.*)$")


def table_from_log(text: str, state: str) -> list[str]:
    """The per-rank table of a submitted job, read from its output (``ember job status``).

    ``ember launch`` prefixes each line with its rank; a Trainer's driver prints rank 0's
    reports as ``(ember trainer) [iter N] loss=...``. The log has no timestamps, so the ages
    stay empty; ``state`` (the job's) is every rank's state. Returns no lines for a job that
    printed neither.
    """
    seen: dict[int, tuple[int | None, float | None]] = {}
    for line in text.splitlines():
        m = _RANK_LINE.match(line)
        if m:
            rank, body = int(m.group(1)), m.group(2)
        elif (m := _TRAINER_LINE.match(line)) is not None:
            rank, body = 0, f"step {m.group(1)} " + m.group(2).replace("=", " ")
        else:
            continue
        step, loss = parse_progress(body)
        old_step, old_loss = seen.get(rank, (None, None))
        seen[rank] = (old_step if step is None else step, old_loss if loss is None else loss)
    if not seen:
        return []
    table = LiveTable(["-"] * (max(seen) + 1), stream=sys.stderr)
    for rank, (step, loss) in seen.items():
        row = table.ranks[rank]
        row.state, row.step, row.loss = state.lower(), step or 0, loss
    return table.render()
